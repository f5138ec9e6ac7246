"""The GLUE job (components/glue_eval/job.py) and fine-tuning under a distribution strategy.

Fine-tuning uses static shapes: the last training batch is padded with zero-weight rows and the
last prediction batch with rows whose predictions are dropped. The job runs as its command
line, as a Vertex custom job and a rehearsal start it; under a 2-replica MirroredStrategy (the
CPU split in two, as the trainer's tests do) it must score what one device scores. Dropout is
off in that comparison: each replica draws its own dropout masks, so with dropout the two
differ by the noise of the masks and nothing else.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components.glue_eval import finetune
from components.glue_eval import job as job_lib
from tests.components.glue_eval.conftest import sentiment_rows
from trainer import contract


def _split(count: int) -> finetune.EncodedSplit:
  ids = np.arange(count * 4, dtype=np.int32).reshape(count, 4)
  return finetune.EncodedSplit({"input_word_ids": ids, "input_mask": np.ones_like(ids),
                                "input_type_ids": np.zeros_like(ids)},
                               np.arange(count, dtype=np.int32) % 2)


def test_the_last_training_batch_is_full_and_its_padding_weighs_nothing():
  batches = list(finetune.train_dataset(_split(10), regression=False, batch_size=4, seed=1))
  assert [len(weights) for _, _, weights in batches] == [4, 4, 4]
  weights = np.concatenate([w.numpy() for _, _, w in batches])
  assert weights.tolist() == [1.0] * 10 + [0.0] * 2
  # Every real example once per epoch; the padding repeats real rows, never all-zero ones.
  real = np.concatenate([f["input_word_ids"].numpy()[w.numpy() > 0] for f, _, w in batches])
  assert sorted(real[:, 0].tolist()) == list(range(0, 40, 4))
  padding = np.concatenate([f["input_word_ids"].numpy()[w.numpy() == 0] for f, _, w in batches])
  assert padding[:, 0].tolist() == [0, 4]


def test_prediction_pads_the_last_batch_and_scores_every_row_once():
  features = _split(10).features
  # A stand-in model: only the batching is under test.
  inputs = {name: tf_keras.Input(shape=(4,), dtype=tf.int32, name=name) for name in features}
  logits = tf_keras.layers.Dense(3)(tf.cast(inputs["input_word_ids"], tf.float32))
  classifier = tf_keras.Model(inputs, logits)
  expected = np.argmax(classifier.predict(features, batch_size=10, verbose=0), axis=-1)
  predicted = finetune._predict(classifier, features, regression=False, batch_size=4)  # noqa: SLF001
  assert predicted.tolist() == expected.tolist()


def test_a_batch_that_does_not_split_over_the_replicas_is_refused():
  strategy = tf.distribute.get_strategy()
  finetune.check_replicas(finetune.FineTuneConfig(batch_size=6), strategy)

  class EightReplicas:
    num_replicas_in_sync = 8

  with pytest.raises(ValueError, match=r"batch_size 6 does not split over the 8 replicas"):
    finetune.check_replicas(finetune.FineTuneConfig(batch_size=6), EightReplicas())


def _without_dropout(tiny_export: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
  shutil.copytree(tiny_export / contract.TF2_DIR, target)
  config_path = target / contract.BERT_CONFIG_FILE
  config = json.loads(config_path.read_text())
  config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  config_path.write_text(json.dumps(config))
  return target


def _write_stsb(root: pathlib.Path) -> pathlib.Path:
  """STS-B's layout; the score is 5 for a positive first sentence, 0 for a negative one."""
  task_dir = root / "STS-B"
  task_dir.mkdir(parents=True)
  rows = sentiment_rows(52)
  for name, part in (("train", rows[:36]), ("dev", rows[36:])):
    lines = ["index\tsentence1\tsentence2\tscore"] + [
        f"{i}\t{text}\tthe movie\t{5.0 * label}" for i, (text, label) in enumerate(part)]
    (task_dir / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
  return root


def _run_job(*flags: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", job_lib.__name__, *flags], capture_output=True,
                        text=True, check=False, timeout=600)


# A learning rate small enough that training is not chaotic: at 1e-2 two one-device runs
# under different CPU load ended 0.38 apart on STS-B's pearson; at 2e-3 two agreed exactly.
CONFIG = {"learning_rates": [2e-3], "seeds": [1, 2], "epochs": 4, "batch_size": 8,
          "max_seq_length": 16, "dropout_rate": 0.0}


@pytest.fixture(scope="module")
def one_and_two_replicas(tiny_export, sst2_dir, tmp_path_factory):
  """Each task's entry from the job command under one device and under 2-replica mirrored."""
  checkpoint = _without_dropout(tiny_export, tmp_path_factory.mktemp("ckpt") / "tf2")
  glue_dir = tmp_path_factory.mktemp("glue")
  shutil.copytree(sst2_dir / "SST-2", glue_dir / "SST-2")
  _write_stsb(glue_dir)
  entries = {}
  for name, runtime, devices in (("one", {"distribution_strategy": "one_device"}, 0),
                                 ("two", {"distribution_strategy": "mirrored"}, 2)):
    output = tmp_path_factory.mktemp(name)
    for task in ("SST-2", "STS-B"):
      done = _run_job("--checkpoint", str(checkpoint), "--task", task, "--glue_dir",
                      str(glue_dir), "--output_dir", str(output), "--finetune_config",
                      json.dumps(CONFIG), "--runtime", json.dumps(runtime),
                      "--cpu_devices", str(devices))
      assert done.returncode == 0, done.stderr[-3000:]
      entries[name, task] = json.loads(pathlib.Path(job_lib.entry_path(str(output), task))
                                       .read_text())
      entries[name, task, "stdout"] = done.stdout
  return entries


def test_two_replicas_score_what_one_device_scores(one_and_two_replicas):
  entries = one_and_two_replicas
  assert "MirroredStrategy with 2 replica(s)" in entries["two", "SST-2", "stdout"]
  assert "OneDeviceStrategy with 1 replica(s)" in entries["one", "SST-2", "stdout"]
  for task in ("SST-2", "STS-B"):
    one, two = entries["one", task], entries["two", task]
    assert (one["train_size"], one["dev_sizes"]) == (two["train_size"], two["dev_sizes"])
    for run_one, run_two in zip(one["runs"], two["runs"], strict=True):
      assert run_one["seed"] == run_two["seed"]
      for metric, value in run_one["metrics"].items():
        # Float summation order only: 1.5e-4 apart on STS-B's pearson (measured); at lr 1e-2,
        # clipping each replica's gradients, as Model Garden's optimizer does by itself, put
        # them 0.074 apart, and clipping their sum 2.6e-4.
        assert run_two["metrics"][metric] == pytest.approx(value, abs=2e-3), (task, metric)
  # STS-B's pearson is continuous in the predictions, which vary (constant ones have none):
  # equal scores mean equal models.
  assert all(np.isfinite(run["metrics"]["pearson"]) and run["metrics"]["pearson"] != 0
             for run in entries["one", "STS-B"]["runs"])
  # The padded last batch (36 and 48 training rows, batch 8) was trained on, not dropped.
  assert entries["one", "STS-B"]["train_size"] == 36


def _error(done: subprocess.CompletedProcess) -> str:
  """The job's one line of error (TensorFlow's own start-up lines aside), without a traceback."""
  prefix = f"{job_lib.__name__}: "
  lines = [line for line in done.stderr.splitlines() if line.startswith(prefix)]
  assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
  return lines[0].removeprefix(prefix)


def test_the_job_refuses_a_bad_runtime_and_a_missing_accelerator_in_one_line(tiny_export,
                                                                              sst2_dir, tmp_path):
  common = ["--checkpoint", str(tiny_export), "--task", "SST-2", "--glue_dir", str(sst2_dir),
            "--output_dir", str(tmp_path), "--finetune_config", '{"max_seq_length": 32}']
  bad_key = _run_job(*common, "--runtime", '{"distribution_stratgy": "tpu"}')
  assert bad_key.returncode == 2
  assert _error(bad_key).startswith("unknown GLUE runtime key(s) ['distribution_stratgy']; ")
  no_tpu = _run_job(*common, "--runtime", '{"distribution_strategy": "tpu", "tpu": "local"}')
  assert no_tpu.returncode == 2
  assert _error(no_tpu).startswith("runtime.distribution_strategy is tpu but TensorFlow finds "
                                   "no TPU here")
  unknown_task = _run_job(*common[:2], "--task", "SST-3", *common[4:])
  assert unknown_task.returncode == 2
  assert _error(unknown_task).startswith("unknown task 'SST-3'")
  assert not (tmp_path / job_lib.TASKS_DIR).exists()
