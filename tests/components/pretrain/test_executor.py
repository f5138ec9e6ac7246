"""components/pretrain: after TFX's Trainer executor ran run_fn, the Model carries the run's
key figures, read from the export that run_fn wrote."""

import json
import os
import pathlib

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


def _train(tmp_path: pathlib.Path, validated: bool):
  """Executor.Do as the Trainer component calls it; returns the output Model."""
  examples = _artifact(standard_artifacts.Examples, tmp_path / "examples")
  examples.split_names = json.dumps(list(contract.SPLITS))
  model = _artifact(standard_artifacts.Model, tmp_path / "model")
  outputs = {"model": [model],
             "model_run": [_artifact(standard_artifacts.ModelRun, tmp_path / "model_run")]}
  exec_properties = {
      "run_fn": f"{__name__}.{exporting_run_fn.__name__}",
      "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(splits=["train"],
                                                                    num_steps=STEPS)),
      "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(splits=["validation"])),
      "custom_config": json.dumps({"validated": validated}),
  }
  executor.Executor(base_executor.BaseExecutor.Context(tmp_dir=str(tmp_path / "tmp"))).Do(
      {"examples": [examples]}, outputs, exec_properties)
  return model


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
