"""run_fn's mapping of the TFX Trainer's fn_args onto the experiment config."""

import types

import numpy as np
import pytest

from trainer import contract, data_spec, run_fn
from trainer.errors import UserError

CONFIGS = ["wiki_books_pretrain_sequence_pack.yaml", "bert_en_uncased_base_token_drop.yaml",
           "tiny_token_drop.yaml"]


def _fn_args(tmp_path, **changes):
  # One (empty) file in each split, as TFX hands the Trainer: input paths must match files.
  for split in ("Split-train", "Split-validation"):
    (tmp_path / split).mkdir(exist_ok=True)
    (tmp_path / split / "examples-00000-of-00001.tfrecord.gz").touch()
  values = dict(train_files=[f"{tmp_path}/Split-train/*"],
                eval_files=[f"{tmp_path}/Split-validation/*"],
                transform_output=f"{tmp_path}/transform_graph", train_steps=50, eval_steps=3,
                base_model=None, custom_config={"config_files": CONFIGS})
  values.update(changes)
  return types.SimpleNamespace(**values)


def test_fn_args_become_the_experiment_config(tmp_path):
  params = run_fn.experiment_params(_fn_args(tmp_path), {"config_files": CONFIGS})
  assert params.task.train_data.input_path == f"{tmp_path}/Split-train/*"
  assert params.task.validation_data.input_path == f"{tmp_path}/Split-validation/*"
  assert params.task.vocab_file == f"{tmp_path}/transform_graph/vocab.txt"
  assert (params.trainer.train_steps, params.trainer.validation_steps) == (50, 3)
  # The decay follows the run length (the tiny config alone decays over 200 steps).
  assert params.trainer.optimizer_config.learning_rate.polynomial.decay_steps == 50
  assert params.task.model.encoder.any.hidden_size == 64
  assert params.task.init_checkpoint == "" and params.task.init_token_importance == ""


def test_a_base_model_warm_starts_weights_and_importance(tmp_path):
  base = tmp_path / "base" / "Format-Serving"
  base.mkdir(parents=True)
  np.save(base / contract.TOKEN_IMPORTANCE_FILE, np.ones(30522, np.float32))
  params = run_fn.experiment_params(_fn_args(tmp_path, base_model=str(base)),
                                    {"config_files": CONFIGS})
  assert params.task.init_checkpoint == f"{base}/tf2/bert_model.ckpt"
  assert params.task.init_token_importance == f"{base}/{contract.TOKEN_IMPORTANCE_FILE}"


def test_overrides_apply_last_and_mistakes_are_config_errors(tmp_path):
  custom = {"config_files": CONFIGS,
            "params_override": {"trainer": {"optimizer_config": {"learning_rate": {
                "polynomial": {"decay_steps": 1000}}}}}}
  params = run_fn.experiment_params(_fn_args(tmp_path), custom)
  assert params.trainer.optimizer_config.learning_rate.polynomial.decay_steps == 1000
  with pytest.raises(UserError, match="params_override does not fit"):
    run_fn.experiment_params(_fn_args(tmp_path), {"params_override": {"task": {"nope": 1}}})


def test_the_examples_record_decides_the_data_keys_and_the_exported_casing(tmp_path):
  examples = tmp_path / "Examples"
  for split in ("Split-train", "Split-validation"):
    (examples / split).mkdir(parents=True)
    (examples / split / "examples-00000-of-00001.tfrecord.gz").write_bytes(b"")
  data_spec.DataSpec(masking="static", file_type="tfrecord_compressed", seq_length=32,
                     max_predictions_per_seq=5, mask_rate=0.2, next_sentence_labels=False,
                     lower_case=False).write(str(examples))
  fn_args = _fn_args(tmp_path, train_files=[f"{examples}/Split-train/*"],
                     eval_files=[f"{examples}/Split-validation/*"])
  params = run_fn.experiment_params(fn_args, {"config_files": CONFIGS})
  for data_config in (params.task.train_data, params.task.validation_data):
    assert (data_config.masking, data_config.file_type, data_config.seq_length,
            data_config.max_predictions_per_seq, data_config.mask_rate) == (
        "static", "tfrecord_compressed", 32, 5, 0.2)
  assert run_fn.lower_case(fn_args, {}) is False
  with pytest.raises(UserError, match="custom_config lower_case is True but the data has "
                                      "lower_case False"):
    run_fn.lower_case(fn_args, {"lower_case": True})


def test_with_a_checkpoint_root_the_same_inputs_share_a_model_dir_named_in_the_model_run(
    tmp_path):
  """A retried task (new model_run_dir, same inputs) resumes in the failed one's model_dir."""
  custom = {"config_files": CONFIGS, contract.CHECKPOINT_ROOT_KEY: str(tmp_path / "ckpt")}
  first = _fn_args(tmp_path, model_run_dir=str(tmp_path / "run1" / "model_run"))
  retried = _fn_args(tmp_path, model_run_dir=str(tmp_path / "run2" / "model_run"))
  directory = run_fn.model_dir(first, custom)
  assert directory == run_fn.model_dir(retried, custom)
  assert directory.startswith(f"{tmp_path}/ckpt/") and len(directory.split("/")[-1]) == 16
  for run in ("run1", "run2"):
    assert (tmp_path / run / "model_run" / contract.MODEL_DIR_FILE).read_text() == directory + "\n"
  warm = _fn_args(tmp_path, model_run_dir=str(tmp_path / "run3"), base_model=str(tmp_path / "b"))
  longer = _fn_args(tmp_path, model_run_dir=str(tmp_path / "run4"), train_steps=60)
  assert len({directory, run_fn.model_dir(warm, custom), run_fn.model_dir(longer, custom)}) == 3
  # Without a checkpoint root, the model_dir is the task's own ModelRun.
  assert run_fn.model_dir(first, {"config_files": CONFIGS}) == first.model_run_dir


def test_a_warm_start_with_continue_steps_trains_a_continuation_with_its_own_schedule(
    tmp_path):
  base = tmp_path / "base" / "Format-Serving"
  base.mkdir(parents=True)
  custom = {"config_files": CONFIGS, contract.CONTINUE_STEPS_KEY: 10}
  warm = run_fn.experiment_params(_fn_args(tmp_path, base_model=str(base)), custom)
  assert warm.trainer.train_steps == 10
  assert warm.trainer.optimizer_config.learning_rate.polynomial.decay_steps == 10
  # tiny_token_drop.yaml warms up for 20 of its steps; the run is 50 steps (train_steps), so
  # the continuation warms up for the same fraction of its 10: 4.
  assert warm.trainer.optimizer_config.warmup.polynomial.warmup_steps == 4
  # The first run (no base model) trains the full schedule.
  cold = run_fn.experiment_params(_fn_args(tmp_path), custom)
  assert cold.trainer.train_steps == 50
  assert cold.trainer.optimizer_config.warmup.polynomial.warmup_steps == 20
