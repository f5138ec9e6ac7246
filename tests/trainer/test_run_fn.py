"""run_fn's mapping of the TFX Trainer's fn_args onto the experiment config."""

import types

import numpy as np
import pytest

from trainer import contract, run_fn
from trainer.errors import UserError

CONFIGS = ["wiki_books_pretrain_sequence_pack.yaml", "bert_en_uncased_base_token_drop.yaml",
           "tiny_token_drop.yaml"]


def _fn_args(tmp_path, **changes):
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
