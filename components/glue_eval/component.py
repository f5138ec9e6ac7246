"""GlueEvaluator: the TFX component that fine-tunes the trained Model on GLUE and blesses it.

    evaluator = GlueEvaluator(model=trainer.outputs["model"],
                              baseline_model=resolver.outputs["model"],
                              baseline_blessing=resolver.outputs["model_blessing"],
                              tasks="rt_sst2", threshold=0.7)

Its executor is a subclass of TFX's Evaluator executor, though it runs no TFMA: that is what
makes TFX's Vertex entrypoint (kubeflow_v2_run_executor) treat its `blessing` output as an
Evaluator's. On Vertex an artifact's id is a hash of its resource name; for an Evaluator the
entrypoint writes the blessing's current_model_id and baseline_model_id back as those names
(kubeflow_v2_entrypoint_utils.refactor_model_blessing), and Vertex's latest-blessed-model
resolver looks the model up by `name="<current_model_id>"`. With any other executor class the
ids stay hashes, nothing matches, and no scheduled run ever warm-starts or compares with a
baseline. Under LocalDagRunner the ids are MLMD's, as LatestBlessedModelStrategy expects.

Inputs:
  model: the trained Model. A Model the Trainer did not train (contract.TRAINING_SKIPPED) is
    not evaluated: the blessing says why and is not blessed. Its exported checkpoint is read from
    `<model.uri>/<checkpoint_subdir>`, the export's tf2/ directory or the export root that
    holds tf2/. The default, Format-Serving, is the Trainer's serving_model_dir, where the
    trainer exports (so the checkpoint is Format-Serving/tf2).
  baseline_model, baseline_blessing (optional): the previously blessed Model and its
    ModelBlessing, from a latest-blessed-model Resolver. The blessing's directory holds that
    model's glue_report.json, the baseline for the table, the chart and the decision. On the
    first run the Resolver finds nothing and both are absent.
Outputs:
  evaluation (ModelEvaluation): glue_report.json, glue_report.md, glue_report.png and
    tensorboard/; custom property glue_score.
  blessing (ModelBlessing): custom properties blessed (1/0), current_model_id and
    current_model (the Model's URI), a BLESSED or NOT_BLESSED file, and glue_report.json.
Parameters:
  tasks: comma-separated task names (default rt_sst2, the offline Rotten Tomatoes task).
  glue_dir / tfds_data_dir: where GLUE tasks are read from (not needed for rt_sst2).
  threshold, tolerance: blessed iff GLUE score >= threshold and >= baseline - tolerance
    (scores are fractions: 0.7 is 70).
  finetune_config: FineTuneConfig as JSON, e.g. '{"learning_rates": [1e-4], "epochs": 2}'.
  lower_case: lower-case and strip accents, as for an uncased vocab. An int (1/0), since
    Vertex parameters have no boolean type.
  pipeline_name: the pipeline this evaluator belongs to, recorded on the blessing. A baseline
    blessed by another pipeline (contract.PIPELINE_NAME differs) is not used: the run is
    scored without a baseline, and the log says why.
  runtime: Model Garden's RuntimeConfig keys as JSON (distribution_strategy, tpu, num_gpus,
    mixed_precision_dtype): where each task fine-tunes. Empty: one device, float32.
  vertex_job: JSON with project, region and job_args (a CustomJob's job_spec: worker pool,
    machine, accelerator, image; pipelines/pipeline.py writes it from glue.vertex). Set: each
    task runs as its own Vertex custom job, all at once, with the command of
    components/glue_eval/job.py under `runtime`; the executor waits for every job and builds
    the one report from their entries (evaluation's tasks/<task>.json). A failed job is an
    error naming its task and job. Empty: the tasks run in this process, one by one.
    LocalJobsExecutor, which a rehearsal runs instead, starts the same commands as local
    processes.
"""

import json
import os
import sys
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.common.artifacts import foreign
from components.common.beam_utils import removes_tfx_dependency_package
from components.glue_eval import blessing as blessing_lib
from components.glue_eval import evaluate, finetune, jobs
from components.glue_eval import job as job_lib
from components.glue_eval import report as report_lib
from components.glue_eval.tasks import ROTTEN_TOMATOES_TASK, parse_task_list
from trainer import contract

DEFAULT_CHECKPOINT_SUBDIR = contract.SERVING_SUBDIR

# TFX's Evaluator's names. TFX's entrypoint rewrites the ids of an Evaluator's output under
# BLESSING_KEY only.
MODEL_KEY = standard_component_specs.MODEL_KEY
BASELINE_MODEL_KEY = standard_component_specs.BASELINE_MODEL_KEY
EVALUATION_KEY = standard_component_specs.EVALUATION_KEY
BLESSING_KEY = standard_component_specs.BLESSING_KEY
BASELINE_BLESSING_KEY = "baseline_blessing"
# Under the evaluation: each local job's log (LocalJobsExecutor).
JOB_LOGS_DIR = "job_logs"


def _optional(input_dict: dict[str, list[types.Artifact]], key: str) -> types.Artifact | None:
  artifacts = input_dict.get(key) or []
  return artifact_utils.get_single_instance(artifacts) if artifacts else None


def _check_baseline_pair(baseline_model: types.Artifact | None,
                         baseline_blessing: types.Artifact) -> None:
  """The blessing must be the baseline model's. Compared by URI: the id the blessing records
  is MLMD's under LocalDagRunner and the model's resource name on Vertex."""
  if baseline_model is None:
    return
  blessed_uri = baseline_blessing.get_string_custom_property(blessing_lib.CURRENT_MODEL_URI_KEY)
  if blessed_uri != baseline_model.uri:
    raise ValueError(f"baseline_blessing {baseline_blessing.uri} blesses the model at "
                     f"{blessed_uri!r} but baseline_model is {baseline_model.uri!r}; pass both "
                     "outputs of one latest-blessed-model Resolver")


def _gather_entries(output_dir: str, task_jobs: list[jobs.TaskJob]) -> dict[str, dict]:
  """Each job's report entry, in the tasks' order."""
  entries = {}
  for task_job in task_jobs:
    path = job_lib.entry_path(output_dir, task_job.task)
    if not tf.io.gfile.exists(path):
      raise jobs.JobsFailed(f"GLUE job {task_job.display_name!r} (task {task_job.task}) ended "
                            f"without writing {path}")
    with tf.io.gfile.GFile(path) as f:
      entries[task_job.task] = json.load(f)
  return entries


def _evaluate_here(checkpoint: str, task_list, output_dir: str, exec_properties: dict[str, Any],
                   config: finetune.FineTuneConfig, baseline_report: dict | None,
                   policy: evaluate.BlessingPolicy, runtime: dict) -> dict:
  """Every task in this process, under the runtime's strategy and precision."""
  from official.modeling import performance

  from trainer.train_lib import strategy_for

  runtime_config = job_lib.runtime_config(runtime)
  performance.set_mixed_precision_policy(runtime_config.mixed_precision_dtype or tf.float32)
  try:
    return evaluate.evaluate_glue(
        checkpoint, task_list, output_dir, glue_dir=exec_properties["glue_dir"] or None,
        tfds_data_dir=exec_properties["tfds_data_dir"] or None, config=config,
        lower_case=bool(exec_properties["lower_case"]), baseline_report=baseline_report,
        policy=policy, strategy=strategy_for(runtime_config), runtime=runtime)
  finally:
    # Process-wide: a later run in this process (LocalDagRunner) starts from float32.
    performance.set_mixed_precision_policy(tf.float32)


class Executor(evaluator_executor.Executor):
  """Fine-tunes on GLUE and writes the evaluation and the blessing. TFX's Evaluator executor is
  the base class only for the Vertex entrypoint's sake (see the module docstring)."""

  @removes_tfx_dependency_package
  def Do(self, input_dict: dict[str, list[types.Artifact]],
         output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
    evaluation = artifact_utils.get_single_instance(output_dict[EVALUATION_KEY])
    blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
    baseline_model = _optional(input_dict, BASELINE_MODEL_KEY)
    baseline_blessing = _optional(input_dict, BASELINE_BLESSING_KEY)
    pipeline_name = exec_properties.get("pipeline_name") or ""
    skipped = model.get_string_custom_property(contract.TRAINING_SKIPPED)
    if skipped:
      logging.info("not evaluating: the Trainer did not train (%s)", skipped)
      tf.io.gfile.makedirs(evaluation.uri)
      blessing_lib.write_skipped_blessing(blessing, model, skipped, pipeline_name)
      return
    if foreign(baseline_blessing, pipeline_name):
      logging.warning(
          "baseline_blessing %s was made by pipeline %r, not %r: scoring without a baseline",
          baseline_blessing.uri,
          baseline_blessing.get_string_custom_property(contract.PIPELINE_NAME), pipeline_name)
      baseline_model = baseline_blessing = None
    baseline_report = None
    if baseline_blessing is not None:
      _check_baseline_pair(baseline_model, baseline_blessing)
      baseline_report = blessing_lib.read_blessing_report(baseline_blessing)
    config = finetune.FineTuneConfig.from_json(exec_properties["finetune_config"])
    policy = evaluate.BlessingPolicy(exec_properties["threshold"], exec_properties["tolerance"])
    checkpoint = os.path.join(model.uri, exec_properties["checkpoint_subdir"])
    task_list = parse_task_list(exec_properties["tasks"])
    runtime = json.loads(exec_properties.get("runtime") or "{}")
    vertex_job = json.loads(exec_properties.get("vertex_job") or "{}")
    if vertex_job:
      checkpoint_dir = evaluate.check_checkpoint(checkpoint, config)
      task_jobs = jobs.task_jobs(
          [task.name for task in task_list], checkpoint_dir, evaluation.uri,
          glue_dir=exec_properties["glue_dir"], tfds_data_dir=exec_properties["tfds_data_dir"],
          finetune_config=config.to_json(), lower_case=bool(exec_properties["lower_case"]),
          runtime=runtime, name_prefix=f"{pipeline_name or 'glue'}-glue")
      self._job_runner(vertex_job, evaluation.uri).run(task_jobs)
      report = evaluate.finish_report(
          checkpoint_dir, _gather_entries(evaluation.uri, task_jobs), evaluation.uri, config,
          baseline_report, policy,
          runtime={**runtime, "jobs": {job.task: job.display_name for job in task_jobs}})
    else:
      report = _evaluate_here(checkpoint, task_list, evaluation.uri, exec_properties, config,
                              baseline_report, policy, runtime)
    evaluation.set_float_custom_property(contract.GLUE_SCORE, report["glue_score"])
    blessing_lib.write_model_blessing(
        blessing, model, blessing_lib.BlessingDecision(**report["blessing"]),
        os.path.join(evaluation.uri, report_lib.REPORT_JSON), baseline_model, pipeline_name)

  def _job_runner(self, vertex_job: dict, output_dir: str) -> jobs.VertexJobs | jobs.LocalJobs:
    """Where the GLUE jobs run: Vertex custom jobs with vertex_job's project, region and job
    args (pipelines/pipeline.py writes them)."""
    del output_dir
    return jobs.VertexJobs(vertex_job["project"], vertex_job["region"], vertex_job["job_args"])


class LocalJobsExecutor(Executor):
  """The same jobs as local processes of the training interpreter, TOKENDROP_TRAIN_PYTHON
  (scripts/in-env's stand-in for the training image), or this one: what a rehearsal
  (pipelines/rehearsal) runs in place of Executor's Vertex jobs. Logs go to the evaluation's
  job_logs/."""

  def _job_runner(self, vertex_job: dict, output_dir: str) -> jobs.LocalJobs:
    del vertex_job
    python = os.environ.get("TOKENDROP_TRAIN_PYTHON") or sys.executable
    return jobs.LocalJobs(python, os.path.join(output_dir, JOB_LOGS_DIR),
                          parallel=min(2, os.cpu_count() or 1))


class GlueEvaluatorSpec(ComponentSpec):
  PARAMETERS = {
      "tasks": ExecutionParameter(type=str),
      "glue_dir": ExecutionParameter(type=str),
      "tfds_data_dir": ExecutionParameter(type=str),
      "checkpoint_subdir": ExecutionParameter(type=str),
      "threshold": ExecutionParameter(type=float),
      "tolerance": ExecutionParameter(type=float),
      "finetune_config": ExecutionParameter(type=str),
      "lower_case": ExecutionParameter(type=int),
      "pipeline_name": ExecutionParameter(type=str, optional=True),
      "runtime": ExecutionParameter(type=str, optional=True),
      "vertex_job": ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
      BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
      BASELINE_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing,
                                              optional=True),
  }
  OUTPUTS = {
      EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
      BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
  }


class GlueEvaluator(base_beam_component.BaseBeamComponent):
  """Fine-tune the Model on GLUE and bless it; see the module docstring. A Beam component
  only because its executor's base class is one; it runs no Beam pipeline."""
  SPEC_CLASS = GlueEvaluatorSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, model: types.BaseChannel,
               baseline_model: types.BaseChannel | None = None,
               baseline_blessing: types.BaseChannel | None = None,
               tasks: str = ROTTEN_TOMATOES_TASK, glue_dir: str = "", tfds_data_dir: str = "",
               checkpoint_subdir: str = DEFAULT_CHECKPOINT_SUBDIR, threshold: float = 0.0,
               tolerance: float = 0.0, finetune_config: str = "{}", lower_case: bool = True,
               pipeline_name: str = "", runtime: dict | None = None,
               vertex_job: dict | None = None):
    parse_task_list(tasks)  # A wrong task name fails here, not hours later on Vertex.
    finetune.FineTuneConfig.from_json(finetune_config)
    job_lib.runtime_config(runtime or {})
    evaluate.BlessingPolicy(threshold, tolerance)
    super().__init__(spec=GlueEvaluatorSpec(
        model=model, baseline_model=baseline_model, baseline_blessing=baseline_blessing,
        evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        tasks=tasks, glue_dir=glue_dir, tfds_data_dir=tfds_data_dir,
        checkpoint_subdir=checkpoint_subdir, threshold=float(threshold),
        tolerance=float(tolerance), finetune_config=finetune_config,
        lower_case=int(lower_case), pipeline_name=pipeline_name,
        runtime=json.dumps(runtime or {}, sort_keys=True),
        vertex_job=json.dumps(vertex_job, sort_keys=True) if vertex_job else ""))
