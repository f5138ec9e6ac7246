"""The Trainer's executors: TFX's, which train through trainer.run_fn, then the key figures.

After the training, each reads the export that run_fn wrote under the Model's
Format-Serving/ (contract.SERVING_SUBDIR) and records on the Model, as custom properties
named in trainer/contract.py:

    train_steps                  the run's trainer.train_steps (training_params.yaml)
    validation_step              the step of the last validation (eval_metrics.json)
    validation_loss              its MLM loss at full depth
    validation_loss_as_trained   its MLM loss with the run's token dropping

A figure whose file the export lacks (a run without validation has no eval_metrics.json) is
not recorded. Every Model also records trained_span (the examples' span) and pipeline_name.

Before training, each executor:
- drops a base model that another pipeline made (pipeline_name differs): no warm start;
- does not train when the base model, the latest blessed one, was trained on the examples'
  span already (unless custom_config has retrain_same_span): the Model then records why in
  training_skipped and holds no export, and GlueEvaluator and the Pusher pass it by. A
  scheduled run on an unchanged span costs no training or GLUE time.

`Executor` trains in this process (TFX's GenericExecutor). `VertexExecutor` submits a Vertex
CustomJob and waits for it, through TFX's Vertex job client and polling loop. The job runs
the training image's own command, `python -m trainer.job --fn_args JSON` (trainer/job.py),
not TFX's run_executor (components/common/vertex_jobs.py): the training image has TensorFlow
built for TPU VMs and no TFX. The
JSON holds the FnArgs that TFX's Trainer makes for run_fn, so the job trains what `Executor`
would. The figures are read here, from the export the job wrote (gs://). The rehearsal
(pipelines/rehearsal) runs `Executor` in place of `VertexExecutor`, by class path.
"""

import json
import os
from typing import Any

import tensorflow as tf
import yaml
from absl import logging
from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_executor
from tfx.extensions.google_cloud_ai_platform import constants as vertex_constants
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from components.common import vertex_jobs
from components.common.artifacts import foreign, set_custom_properties
from trainer import contract, job

# custom_config keys that configure the Vertex job rather than the training.
VERTEX_KEYS = (vertex_constants.ENABLE_VERTEX_KEY, vertex_constants.VERTEX_REGION_KEY,
               vertex_executor.TRAINING_ARGS_KEY, vertex_executor.JOB_ID_KEY)


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


def record_training_figures(input_dict: dict[str, list[types.Artifact]],
                            output_dict: dict[str, list[types.Artifact]],
                            exec_properties: dict[str, Any]) -> None:
  """Sets the export's key figures, the span trained on and the pipeline that made it, as
  custom properties of the output Model."""
  model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
  set_custom_properties(model, training_figures(os.path.join(model.uri, contract.SERVING_SUBDIR)))
  _record_origin(model, input_dict, exec_properties)


def _record_origin(model: types.Artifact, input_dict: dict[str, list[types.Artifact]],
                   exec_properties: dict[str, Any]) -> None:
  span = examples_span(input_dict)
  if span is not None:
    model.set_int_custom_property(contract.TRAINED_SPAN, span)
  pipeline_name = _custom_config(exec_properties).get(contract.PIPELINE_NAME)
  if pipeline_name:
    model.set_string_custom_property(contract.PIPELINE_NAME, pipeline_name)


def examples_span(input_dict: dict[str, list[types.Artifact]]) -> int | None:
  """The span of the Trainer's examples (TokenizePack copies CorpusGen's), or None."""
  examples = input_dict.get(standard_component_specs.EXAMPLES_KEY) or []
  if len(examples) != 1:
    return None
  if examples[0].has_custom_property(contract.SPAN):
    return examples[0].get_int_custom_property(contract.SPAN)
  return None


def skip_reason(input_dict: dict[str, list[types.Artifact]],
                exec_properties: dict[str, Any]) -> str | None:
  """Why this run need not train: the latest blessed model (its base model) was trained on
  the same span. None: train (no base model, a new span, or custom_config asks to retrain)."""
  if _custom_config(exec_properties).get(contract.RETRAIN_SAME_SPAN_KEY):
    return None
  base_models = input_dict.get(standard_component_specs.BASE_MODEL_KEY) or []
  span = examples_span(input_dict)
  if not base_models or span is None:
    return None
  base = base_models[0]
  if not base.has_custom_property(contract.TRAINED_SPAN) or (
      base.get_int_custom_property(contract.TRAINED_SPAN) != span):
    return None
  return (f"span {span} was already trained on by the latest blessed model ({base.uri}); "
          "set training.retrain_same_span: true to train on it again")


def record_skip(input_dict: dict[str, list[types.Artifact]],
                output_dict: dict[str, list[types.Artifact]],
                exec_properties: dict[str, Any], reason: str) -> None:
  """A Model that says why it was not trained (contract.TRAINING_SKIPPED), with no export."""
  logging.info("not training: %s", reason)
  model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
  model.set_string_custom_property(contract.TRAINING_SKIPPED, reason)
  _record_origin(model, input_dict, exec_properties)
  tf.io.gfile.makedirs(model.uri)


def inputs_to_train(input_dict: dict[str, list[types.Artifact]],
                    output_dict: dict[str, list[types.Artifact]],
                    exec_properties: dict[str, Any]) -> dict[str, list[types.Artifact]] | None:
  """What both executors do before training: the inputs without a foreign base model, or
  None when there is nothing to train (the Model then says why: record_skip)."""
  input_dict = without_foreign_base_model(input_dict, exec_properties)
  reason = skip_reason(input_dict, exec_properties)
  if reason:
    record_skip(input_dict, output_dict, exec_properties, reason)
    return None
  return input_dict


def _custom_config(exec_properties: dict[str, Any]) -> dict[str, Any]:
  return json_utils.loads(
      exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY, "null")) or {}


def without_foreign_base_model(input_dict: dict[str, list[types.Artifact]],
                               exec_properties: dict[str, Any]) -> dict[str, list[types.Artifact]]:
  """input_dict without a base model that another pipeline made (custom_config's
  pipeline_name differs from the Model's): that run trains from scratch, and the log says
  why."""
  base_models = input_dict.get(standard_component_specs.BASE_MODEL_KEY) or []
  pipeline_name = _custom_config(exec_properties).get(contract.PIPELINE_NAME, "")
  if not base_models or not foreign(base_models[0], pipeline_name):
    return input_dict
  logging.warning("base_model %s was made by pipeline %r, not %r: no warm start",
                  base_models[0].uri,
                  base_models[0].get_string_custom_property(contract.PIPELINE_NAME),
                  pipeline_name)
  return {key: value for key, value in input_dict.items()
          if key != standard_component_specs.BASE_MODEL_KEY}


class Executor(trainer_executor.GenericExecutor):
  """Trains in this process through run_fn, then records the key figures on the Model."""

  def Do(self, input_dict: dict[str, list[types.Artifact]],
         output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
    input_dict = inputs_to_train(input_dict, output_dict, exec_properties)
    if input_dict is None:
      return
    super().Do(input_dict, output_dict, exec_properties)
    record_training_figures(input_dict, output_dict, exec_properties)


def job_fn_args(input_dict: dict[str, list[types.Artifact]],
                output_dict: dict[str, list[types.Artifact]],
                exec_properties: dict[str, Any]) -> dict[str, Any]:
  """The FnArgs that TFX's Trainer would hand run_fn, as trainer.job reads them: its fields
  in job.FN_ARGS_FIELDS, and custom_config without the Vertex job's own keys."""
  fn_args = trainer_executor.GenericExecutor(base_executor.BaseExecutor.Context())._GetFnArgs(  # noqa: SLF001
      input_dict, output_dict, exec_properties)
  values = {name: getattr(fn_args, name) for name in job.FN_ARGS_FIELDS}
  values["custom_config"] = {key: value for key, value in (fn_args.custom_config or {}).items()
                             if key not in VERTEX_KEYS}
  return values


def job_command(fn_args: dict[str, Any]) -> list[str]:
  """The training job's command in its image (Dockerfile.train puts its venv on PATH)."""
  return ["python", "-m", "trainer.job", "--fn_args", json.dumps(fn_args, sort_keys=True)]


class VertexExecutor(base_executor.BaseExecutor):
  """Trains in a Vertex CustomJob running trainer.job, then records the key figures on the
  Model. custom_config carries the job as TFX's Vertex Trainer reads it (TRAINING_ARGS_KEY,
  VERTEX_REGION_KEY; pipelines/pipeline.py writes them)."""

  def Do(self, input_dict: dict[str, list[types.Artifact]],
         output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    input_dict = inputs_to_train(input_dict, output_dict, exec_properties)
    if input_dict is None:  # Decided here: no custom job is started.
      return
    custom_config = _custom_config(exec_properties)
    job_args = dict(custom_config[vertex_executor.TRAINING_ARGS_KEY])
    project = job_args.pop("project")
    region = custom_config[vertex_constants.VERTEX_REGION_KEY]
    custom_job = vertex_jobs.command_job(
        region, job_command(job_fn_args(input_dict, output_dict, exec_properties)), job_args,
        custom_config.get(vertex_executor.JOB_ID_KEY), executor_class_path=job.__name__)
    vertex_jobs.run_job(project, region, custom_job)
    record_training_figures(input_dict, output_dict, exec_properties)
