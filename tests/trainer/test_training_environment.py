"""The training job's own environment (requirements/lock-train.txt): it trains and exports.

The Vertex training job runs `python -m trainer.job` in the training image, whose TensorFlow
is Cloud TPU's (2.18), not the pipeline's (2.21). Here the same command runs in the same lock,
installed at TOKENDROP_TRAIN_PYTHON with PyPI's CPU build of that TensorFlow version (the
TPU-VM build cannot be fetched here), on `tokendrop prepare-data` output. Its export must
restore in the pipeline's environment, where GlueEvaluator and the Pusher read it.
"""

import json
import os
import pathlib
import re
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from components.pretrain.executor import training_figures
from tests.trainer.conftest import prepare_imdb
from trainer import contract, export
from trainer import job as training_job

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]
TRAIN_STEPS = 10
CONFIGS = ["wiki_books_pretrain_sequence_pack.yaml", "bert_en_uncased_base_token_drop.yaml",
           "tiny_token_drop.yaml"]


def _lock_pin(name: str) -> str:
  text = (REPO / "requirements" / "lock-train.txt").read_text()
  return re.search(rf"^{re.escape(name)}==([^ ;\\]+)", text, re.M).group(1)


def _train_python(*args, **kwargs) -> subprocess.CompletedProcess:
  return subprocess.run([os.environ["TOKENDROP_TRAIN_PYTHON"], *args], capture_output=True,
                        text=True, timeout=900, **kwargs)


@pytest.fixture(scope="module")
def job(tmp_path_factory):  # noqa: F811  (not the trainer.job module, imported as training_job)
  """The training job's command, as the Vertex Trainer starts it, on real packed data."""
  root = tmp_path_factory.mktemp("job")
  data, _ = prepare_imdb(root, 140, "dynamic")
  fn_args = {"train_files": [str(data / "train" / "*")],
             "eval_files": [str(data / "validation" / "*")],
             "transform_output": None, "base_model": None,
             "model_run_dir": str(root / "model_run"),
             "serving_model_dir": str(root / "model" / contract.SERVING_SUBDIR),
             "train_steps": TRAIN_STEPS, "eval_steps": 2,
             "custom_config": {"config_files": CONFIGS}}
  result = _train_python("-m", "trainer.job", "--fn_args", json.dumps(fn_args))
  return root, result


def test_the_training_environment_has_the_locks_tensorflow_and_no_tfx():
  result = _train_python("-c", "import importlib.util, sys, tensorflow as tf; "
                         "print(tf.__version__, sys.version_info[:2], "
                         "importlib.util.find_spec('tfx') is None)")
  assert result.returncode == 0, result.stderr[-2000:]
  version, *_, no_tfx = result.stdout.split()
  assert version == _lock_pin("tensorflow") == "2.18.0"
  assert no_tfx == "True"


def test_the_job_trains_and_exports_in_the_training_environment(job):
  root, result = job
  assert result.returncode == 0, result.stderr[-3000:]
  export_dir = root / "model" / contract.SERVING_SUBDIR
  assert training_figures(str(export_dir))[contract.TRAIN_STEPS] == TRAIN_STEPS
  assert (root / "model_run" / f"ckpt-{TRAIN_STEPS}.index").exists()


def test_its_export_restores_in_the_pipeline_environment(job):
  root, result = job
  assert result.returncode == 0, result.stderr[-3000:]
  assert not tf.__version__.startswith("2.18")  # this process is the pipeline's TensorFlow
  export_dir = root / "model" / contract.SERVING_SUBDIR
  tf2 = export_dir / contract.TF2_DIR
  encoder = export.build_bert_encoder_from_bert_config(str(tf2 / contract.BERT_CONFIG_FILE))
  export.restore_encoder(encoder, str(tf2 / contract.CHECKPOINT_NAME))
  rng = np.random.default_rng(0)
  inputs = {"input_word_ids": tf.constant(rng.integers(0, 30522, (2, 64)), tf.int32),
            "input_mask": tf.ones((2, 64), tf.int32),
            "input_type_ids": tf.zeros((2, 64), tf.int32)}
  served = tf.saved_model.load(str(export_dir / contract.SAVED_MODEL_DIR))
  outputs = served.signatures["serving_default"](**inputs)
  np.testing.assert_allclose(outputs["sequence_output"].numpy(),
                             encoder(inputs)["sequence_output"].numpy(), atol=1e-5)


def test_a_mistake_in_the_jobs_arguments_is_one_line():
  result = _train_python("-m", "trainer.job", "--fn_args", '{"train_files": ["x"], "nope": 1}',
                         cwd=REPO)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      "trainer.job: --fn_args has unknown fields ['nope']; known: "
      f"{list(training_job.FN_ARGS_FIELDS)}")
