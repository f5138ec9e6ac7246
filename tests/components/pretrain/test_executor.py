"""components/pretrain: after TFX's Trainer executor ran run_fn, the Model carries the run's
key figures, read from the export that run_fn wrote."""

import json
import os
import pathlib

import pytest
import yaml
from tfx.dsl.components.base import base_executor
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.pretrain import executor
from trainer import contract

STEPS = 300
METRICS = {"step": STEPS, "validation_loss": 6.123456, "validation_loss_as_trained": 6.98765,
           "masked_lm_accuracy": 0.12}


def exporting_run_fn(fn_args) -> None:
  """A run_fn that exports what trainer.run_fn's export holds for the figures, and no model;
  custom_config["validated"] says whether the run validated (wrote eval_metrics.json)."""
  export_dir = pathlib.Path(fn_args.serving_model_dir)
  export_dir.mkdir(parents=True)
  (export_dir / contract.TRAINING_PARAMS_FILE).write_text(
      yaml.safe_dump({"trainer": {"train_steps": fn_args.train_steps}}))
  if fn_args.custom_config["validated"]:
    (export_dir / contract.EVAL_METRICS_FILE).write_text(json.dumps(METRICS))


def _artifact(cls, uri: pathlib.Path):
  artifact = cls()
  artifact.uri = str(uri)
  return artifact


def _train(tmp_path: pathlib.Path, validated: bool, span: int | None = None,
           base_model=None, **custom):
  """Executor.Do as the Trainer component calls it; returns the output Model."""
  examples = _artifact(standard_artifacts.Examples, tmp_path / "examples")
  examples.split_names = json.dumps(list(contract.SPLITS))
  if span is not None:
    examples.set_int_custom_property(contract.SPAN, span)
  model = _artifact(standard_artifacts.Model, tmp_path / "model")
  outputs = {"model": [model],
             "model_run": [_artifact(standard_artifacts.ModelRun, tmp_path / "model_run")]}
  exec_properties = {
      "run_fn": f"{__name__}.{exporting_run_fn.__name__}",
      "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(splits=["train"],
                                                                    num_steps=STEPS)),
      "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(splits=["validation"])),
      "custom_config": json.dumps({"validated": validated, **custom}),
  }
  inputs = {"examples": [examples]}
  if base_model is not None:
    inputs["base_model"] = [base_model]
  executor.Executor(base_executor.BaseExecutor.Context(tmp_dir=str(tmp_path / "tmp"))).Do(
      inputs, outputs, exec_properties)
  return model


def _base_model(tmp_path: pathlib.Path, span: int, pipeline_name: str):
  """A blessed Model of an earlier run, with what the executor records on every Model."""
  base = _artifact(standard_artifacts.Model, tmp_path / "base")
  (tmp_path / "base" / contract.SERVING_SUBDIR).mkdir(parents=True)
  base.set_int_custom_property(contract.TRAINED_SPAN, span)
  base.set_string_custom_property(contract.PIPELINE_NAME, pipeline_name)
  return base


def test_the_model_carries_the_steps_and_the_last_validation(tmp_path):
  model = _train(tmp_path, validated=True)
  assert os.path.isdir(os.path.join(model.uri, contract.SERVING_SUBDIR))
  recorded = {name: model.get_custom_property(name)
              for name in model.mlmd_artifact.custom_properties}
  assert recorded == {contract.TRAIN_STEPS: STEPS, contract.VALIDATION_STEP: STEPS,
                      contract.VALIDATION_LOSS: METRICS["validation_loss"],
                      contract.VALIDATION_LOSS_AS_TRAINED: METRICS["validation_loss_as_trained"]}
  assert isinstance(recorded[contract.TRAIN_STEPS], int)


def test_a_run_without_validation_records_its_steps_only(tmp_path):
  model = _train(tmp_path, validated=False)
  assert set(model.mlmd_artifact.custom_properties) == {contract.TRAIN_STEPS}


def test_the_model_records_its_span_and_pipeline(tmp_path):
  model = _train(tmp_path, validated=False, span=3, pipeline_name="p")
  assert model.get_int_custom_property(contract.TRAINED_SPAN) == 3
  assert model.get_string_custom_property(contract.PIPELINE_NAME) == "p"


def test_a_span_the_latest_blessed_model_trained_on_is_not_trained_again(tmp_path):
  base = _base_model(tmp_path, span=3, pipeline_name="p")
  model = _train(tmp_path, validated=True, span=3, base_model=base, pipeline_name="p")
  reason = (f"span 3 was already trained on by the latest blessed model ({base.uri}); set "
            "training.retrain_same_span: true to train on it again")
  assert model.get_string_custom_property(contract.TRAINING_SKIPPED) == reason
  assert model.get_int_custom_property(contract.TRAINED_SPAN) == 3
  assert not model.has_custom_property(contract.TRAIN_STEPS)
  assert os.listdir(model.uri) == []  # run_fn never ran: no export


@pytest.mark.parametrize("span,custom", [(4, {}), (3, {contract.RETRAIN_SAME_SPAN_KEY: True})])
def test_a_new_span_or_retrain_same_span_trains(tmp_path, span, custom):
  base = _base_model(tmp_path, span=3, pipeline_name="p")
  model = _train(tmp_path, validated=True, span=span, base_model=base, pipeline_name="p",
                 **custom)
  assert not model.has_custom_property(contract.TRAINING_SKIPPED)
  assert model.get_int_custom_property(contract.TRAIN_STEPS) == STEPS


def test_another_pipelines_model_is_no_warm_start_and_no_reason_to_skip(tmp_path):
  base = _base_model(tmp_path, span=3, pipeline_name="another")
  inputs = {"examples": [_artifact(standard_artifacts.Examples, tmp_path / "e")],
            "base_model": [base]}
  config = {"custom_config": json.dumps({contract.PIPELINE_NAME: "p"})}
  assert "base_model" not in executor.without_foreign_base_model(inputs, config)
  assert executor.without_foreign_base_model(inputs, {"custom_config": json.dumps(
      {contract.PIPELINE_NAME: "another"})}) is inputs
  model = _train(tmp_path, validated=True, span=3, base_model=base, pipeline_name="p")
  assert not model.has_custom_property(contract.TRAINING_SKIPPED)
