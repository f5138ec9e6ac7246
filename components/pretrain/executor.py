"""The Trainer's executors: TFX's, which train through trainer.run_fn, then the key figures.

After the training, each reads the export that run_fn wrote under the Model's
Format-Serving/ (contract.SERVING_SUBDIR) and records on the Model, as custom properties
named in trainer/contract.py:

    train_steps                  the run's trainer.train_steps (training_params.yaml)
    validation_step              the step of the last validation (eval_metrics.json)
    validation_loss              its MLM loss at full depth
    validation_loss_as_trained   its MLM loss with the run's token dropping

A figure whose file the export lacks (a run without validation has no eval_metrics.json) is
not recorded.

`Executor` trains in this process (TFX's GenericExecutor). `VertexExecutor` submits a Vertex
CustomJob and waits for it (TFX's Vertex GenericExecutor); the job's worker runs TFX's own
GenericExecutor, so the figures are read here, from the export the job wrote (gs://). The
rehearsal (pipelines/rehearsal) runs `Executor` in place of `VertexExecutor`, by class path.
"""

import json
import os
from typing import Any

import tensorflow as tf
import yaml
from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor
from tfx.types import artifact_utils, standard_component_specs

from components.common.artifacts import set_custom_properties
from trainer import contract


def training_figures(export_dir: str) -> dict[str, int | float]:
  """The key figures of an export (`tokendrop export`'s layout), by their property names."""
  figures: dict[str, int | float] = {}
  params_path = os.path.join(export_dir, contract.TRAINING_PARAMS_FILE)
  if tf.io.gfile.exists(params_path):
    with tf.io.gfile.GFile(params_path) as f:
      # Model Garden writes tuples with Python tags, which safe_load refuses.
      params = yaml.load(f, Loader=yaml.FullLoader)
    figures[contract.TRAIN_STEPS] = int(params["trainer"]["train_steps"])
  metrics_path = os.path.join(export_dir, contract.EVAL_METRICS_FILE)
  if tf.io.gfile.exists(metrics_path):
    with tf.io.gfile.GFile(metrics_path) as f:
      metrics = json.load(f)
    if "step" in metrics:
      figures[contract.VALIDATION_STEP] = int(metrics["step"])
    for name in (contract.VALIDATION_LOSS, contract.VALIDATION_LOSS_AS_TRAINED):
      if name in metrics:
        figures[name] = float(metrics[name])
  return figures


def record_training_figures(output_dict: dict[str, list[types.Artifact]]) -> None:
  """Sets the export's key figures as custom properties of the output Model."""
  model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
  set_custom_properties(model, training_figures(os.path.join(model.uri, contract.SERVING_SUBDIR)))


class Executor(trainer_executor.GenericExecutor):
  """Trains in this process through run_fn, then records the key figures on the Model."""

  def Do(self, input_dict: dict[str, list[types.Artifact]],
         output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
    super().Do(input_dict, output_dict, exec_properties)
    record_training_figures(output_dict)


class VertexExecutor(vertex_executor.GenericExecutor):
  """Trains in a Vertex CustomJob through run_fn, then records the key figures on the Model."""

  def Do(self, input_dict: dict[str, list[types.Artifact]],
         output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
    super().Do(input_dict, output_dict, exec_properties)
    record_training_figures(output_dict)
