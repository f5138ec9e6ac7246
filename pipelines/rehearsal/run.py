"""Runs a compiled job's root DAG here, task by task, as Vertex runs a submitted PipelineJob.

Tasks run in dependency order. Each task's executor input holds its parameters, its input
artifacts (upstream outputs, with the metadata their executors wrote) and its output URIs
under <work_dir>/root. Each task's executor_output.json is read back: the artifacts
downstream tasks receive carry its metadata, and so do the outputs the observer is told of.

CorpusGen's preCacheCheck hook (TFX's kubeflow v2 file_based_example_gen driver) runs first,
with the task's executor input. Its output (the newest span, the input fingerprint, the
span's file pattern, the Examples metadata) is applied to the executor input before the
executor runs, as Vertex applies it before its cache check.

kfp.local (kfp 2.16) and where it is adapted:
- Used as is: graph_utils.topological_sort (the task order), io.IOStore (outputs by task),
  OrchestratorUtils.make_task_arguments (a task's arguments from constants and upstream
  outputs), executor_input_utils (task roots, executor input, its dict form),
  placeholder_utils (`{{$}}` in commands), executor_output_utils (reading
  executor_output.json back).
- Not used: dag_orchestrator.run_dag and task_dispatcher. Their dispatch knows importer and
  container executors only, and hands containers to SubprocessTaskHandler, which refuses any
  command that is not a kfp lightweight Python component. This module's _run_dag is that
  loop with three more kinds of step: the preCacheCheck hook, the resolver queries
  (artifacts.py), and a container task run as its own command in a new process (launcher.py)
  whose output goes to the log.
- The spec's constants, and each executor input's artifact types and `parameters` map, are
  fixed as spec.py says.
- kfp.local names an output artifact after its output key. Vertex gives each artifact a unique
  resource name, which TFX's entrypoint turns into the artifact id that blessings and resolver
  filters refer to; the rehearsal names each output <run>/<task>/<output key>, and makes its
  directory (a local disk needs one where gs:// needs none).
- An output a resolver did not resolve is left out of the consumers' executor input (kfp.local
  would raise), as Vertex leaves out an empty resolver output.
"""

import dataclasses
import json
import os
import time
from typing import TextIO

from google.protobuf import json_format
from kfp.local import (
  executor_input_utils,
  executor_output_utils,
  graph_utils,
  io,
  placeholder_utils,
)
from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils
from kfp.pipeline_spec import pipeline_spec_pb2

from components.corpus_gen.packaged import prepare_packaged_corpus
from components.glue_eval.miniature import prepare_packaged_glue
from pipelines.config import PipelineConfig
from pipelines.observer import StageObserver
from pipelines.rehearsal import artifacts, container, spec
from pipelines.rehearsal.launcher import Launcher, TaskFailed, task_python


@dataclasses.dataclass
class TaskRun:
  """One task of a rehearsal, as it ran."""
  name: str
  seconds: float
  # The executor input as sent (container tasks) or the resolver's (resolver tasks).
  executor_input: dict
  # Output name -> {"name", "uri", "metadata"}, as read back; an unresolved output is absent.
  outputs: dict[str, dict]
  command: list[str] = dataclasses.field(default_factory=list)  # empty for resolvers
  # The preCacheCheck hook's output parameters (CorpusGen: span, input_fingerprint, ...).
  hook_parameters: dict = dataclasses.field(default_factory=dict)
  # The resolver's filters, placeholders resolved, by output name.
  queries: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RehearsalResult:
  pipeline_json: str
  log_path: str
  tasks: dict[str, TaskRun]  # in the order they ran
  published: str | None  # the version directory BertPusher wrote, if it pushed
  trainer_swapped: bool  # a Vertex CustomJob trainer ran as the in-process executor
  glue_jobs_local: bool  # GLUE's Vertex custom jobs ran as local processes
  task_python: str  # the interpreter each task's `python` ran on (launcher.task_python())
  image: container.Image | None = None  # the image every container task ran in, if any


def default_work_dir(config: PipelineConfig) -> str:
  """<root's parent>/rehearsal: beside, never inside, the LocalDagRunner's pipeline root."""
  return os.path.join(os.path.dirname(os.path.abspath(config.root)), "rehearsal")


class Rehearsal:
  """`config` compiled for Vertex once, and one warm task process; each run() rehearses the
  compiled job once, as each submission of one compiled template is a Vertex run.

      with Rehearsal(config, work_dir) as rehearsal:
        first = rehearsal.run(observer)
        second = rehearsal.run(observer)  # resolves the first one's artifacts

  work_dir (default: default_work_dir) holds pipeline.json, root/ (the pipeline root, with
  artifacts.jsonl, which every run of this work dir adds to and resolves from) and
  logs/<run>.log. Published versions go to config.push.destination.

  image: an OCI archive (`make image`): every container task runs in its own container of it
  (container.py), which sees only work_dir; the config's corpus, GLUE data and publishing
  directory must be inside work_dir (container.in_work_dir moves them there).
  """

  def __init__(self, config: PipelineConfig, work_dir: str | None = None,
               image: str | None = None):
    spec.check_local_paths(config)
    self.work_dir = os.path.abspath(work_dir or default_work_dir(config))
    if image is not None:
      container.check_in_work_dir(config, self.work_dir)
    self.image = container.Image.load(image) if image is not None else None
    self.config = spec.rehearsal_config(config, os.path.join(self.work_dir, "root"))
    self.job = spec.compile_job(self.config, self.work_dir)
    self._record = artifacts.ArtifactRecord(
        os.path.join(self.job.pipeline_root, artifacts.ARTIFACT_RECORD))
    self.task_python = (f"python of image {self.image.id[:12]} ({self.image.archive})"
                        if self.image is not None else task_python())
    self._launcher: Launcher | None = Launcher(self.job.executors, task_python(), self.image,
                                               self.work_dir)

  @property
  def task_process_pid(self) -> int:
    """The warm task process's pid; the task running now is a child of it (to interrupt a
    task as a preempted Vertex worker would be)."""
    if self._launcher is None:
      raise RuntimeError("this Rehearsal is closed")
    return self._launcher.pid

  def __enter__(self) -> "Rehearsal":
    return self

  def __exit__(self, *_) -> None:
    self.close()

  def close(self) -> None:
    """Stops the task process."""
    if self._launcher is not None:
      self._launcher.close()
      self._launcher = None

  def run(self, observer: StageObserver | None = None,
          log_path: str | None = None) -> RehearsalResult:
    """Runs the compiled job once, each task reported to `observer`.

    log_path: where each task's command and output go, appended (default
    <work_dir>/logs/<run>.log).
    """
    if self._launcher is None:
      raise RuntimeError("this Rehearsal is closed (after a failed run, or by close())")
    corpus = self.config.corpus
    prepare_packaged_corpus(corpus.packaged, corpus.input_base, corpus.file_pattern,
                            corpus.packaged_documents)
    glue = self.config.glue
    prepare_packaged_glue(glue.packaged, glue.tasks, glue.glue_dir)
    run_name = executor_input_utils.get_local_pipeline_resource_name(
        self.job.spec.pipeline_info.name)
    log_path = os.path.abspath(log_path or os.path.join(self.work_dir, "logs",
                                                        f"{run_name}.log"))
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    try:
      with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"Rehearsal {run_name} of {self.job.path}\n"
                  f"Tasks run on {self.task_python}\n")
        if self.image is not None:
          log.write(f"Each container task runs in its own container of image {self.image.id} "
                    f"(podman), which sees only {self.work_dir}\n")
        if self.job.trainer_swapped:
          log.write(f"Trainer: {spec.VERTEX_TRAINER_EXECUTOR} (a Vertex CustomJob) swapped "
                    f"for {spec.LOCAL_TRAINER_EXECUTOR} (in-process)\n")
        if self.job.glue_jobs_local:
          log.write(f"GlueEvaluator: {spec.GLUE_LOCAL_JOBS_EXECUTOR} runs each GLUE task's "
                    "Vertex custom job command as a local process\n")
        log.flush()
        tasks = _run_dag(self.job, run_name, log, self._record, self._launcher, observer)
    except BaseException:
      # A task may still be running in the task process: stop it, and this Rehearsal with it.
      self._launcher.close(kill=True)
      self._launcher = None
      raise
    return RehearsalResult(self.job.path, log_path, tasks, _published(tasks),
                           self.job.trainer_swapped, self.job.glue_jobs_local,
                           self.task_python, self.image)


def rehearse(config: PipelineConfig, work_dir: str | None = None,
             observer: StageObserver | None = None,
             log_path: str | None = None, image: str | None = None) -> RehearsalResult:
  """Compiles `config` for Vertex and runs the compiled job here once; see Rehearsal."""
  with Rehearsal(config, work_dir, image) as rehearsal:
    return rehearsal.run(observer, log_path)


def _execution_order(tasks) -> list[str]:
  """Tasks in an order where each follows every task it consumes an output of.

  TFX's compiler lists a resolver feeding only another resolver in no dependentTasks, so the
  producers named in each task's inputs count as dependencies too.
  """
  dependencies = {}
  for name, task in tasks.items():
    producers = {a.task_output_artifact.producer_task for a in task.inputs.artifacts.values()
                 if a.HasField("task_output_artifact")}
    dependencies[name] = sorted(set(task.dependent_tasks) | producers)
  # kfp.local's order is a stack: the next task is popped off the end.
  return graph_utils.topological_sort(dependencies)[::-1]


def _run_dag(job: spec.CompiledJob, run_name: str, log: TextIO,
             record: artifacts.ArtifactRecord, launcher: Launcher,
             observer: StageObserver | None) -> dict[str, TaskRun]:
  io_store = io.IOStore()
  produced: dict[str, set[str]] = {}
  runs = {}
  for name in _execution_order(job.spec.root.dag.tasks):
    task = job.spec.root.dag.tasks[name]
    component = job.spec.components[task.component_ref.name]
    task_inputs, component = _without_unresolved_inputs(task.inputs, component, produced)
    arguments = OrchestratorUtils.make_task_arguments(task_inputs, io_store)
    task_root = executor_input_utils.construct_local_task_root(job.pipeline_root, run_name,
                                                               name)
    executor_input = executor_input_utils.construct_executor_input(
        component, arguments, task_root, block_input_artifact=False)
    spec.restore_artifact_types(executor_input, component)
    executor = job.executors[component.executor_label]
    start = time.monotonic()
    if observer is not None:
      observer.stage_started(name)
    if "resolver" in executor:
      executor_input_dict = executor_input_utils.executor_input_to_dict(executor_input,
                                                                        component)
      queries, outputs = artifacts.resolve(
          executor["resolver"], executor_input_dict,
          len(task_inputs.artifacts) == len(task.inputs.artifacts), record)
      run = TaskRun(name=name, seconds=0.0, executor_input=executor_input_dict,
                    outputs=outputs, queries=queries)
    else:
      _prepare_outputs(executor_input, run_name, name)
      spec.fill_kubeflow_parameters(executor_input, component)
      run = _run_container(name, executor["container"], executor_input, component, run_name,
                           job.pipeline_root, log, launcher,
                           observer.progress if observer is not None else None,
                           task.retry_policy.max_retry_count)
      for key, artifact in run.outputs.items():
        record.add(artifact, artifacts.schema_title(component.output_definitions.artifacts[key]),
                   name, run_name)
    run.seconds = time.monotonic() - start
    log.write(f"=== {name} finished in {run.seconds:.1f} s; outputs: "
              f"{json.dumps(run.outputs, sort_keys=True)}\n")
    log.flush()
    if observer is not None:
      observer.stage_finished(name, artifacts.observed(run.outputs))
    for key, artifact in run.outputs.items():
      io_store.put_task_output(name, key, executor_output_utils.runtime_artifact_to_dsl_artifact(
          _runtime_artifact(artifact)))
    produced[name] = set(run.outputs)
    runs[name] = run
  return runs


def _without_unresolved_inputs(task_inputs, component, produced: dict[str, set[str]]):
  """The task's inputs and component spec without the artifacts no upstream task produced."""
  missing = [key for key, artifact_spec in task_inputs.artifacts.items()
             if artifact_spec.HasField("task_output_artifact") and
             artifact_spec.task_output_artifact.output_artifact_key not in
             produced.get(artifact_spec.task_output_artifact.producer_task, ())]
  if not missing:
    return task_inputs, component
  task_inputs, component = _copy(task_inputs), _copy(component)
  for key in missing:
    del task_inputs.artifacts[key]
    del component.input_definitions.artifacts[key]
  return task_inputs, component


def _copy(message):
  copied = type(message)()
  copied.CopyFrom(message)
  return copied


def _prepare_outputs(executor_input, run_name: str, task_name: str) -> None:
  """Unique artifact names, and each output's directory: on gs:// a prefix needs no directory,
  on a local disk executors that move files into their outputs need one (TFX's local launcher
  makes them too)."""
  for key, artifact_list in executor_input.outputs.artifacts.items():
    for artifact in artifact_list.artifacts:
      artifact.name = f"{run_name}/{task_name}/{key}"
      os.makedirs(artifact.uri, exist_ok=True)


def _run_container(name: str, container: dict, executor_input, component, run_name: str,
                   pipeline_root: str, log: TextIO, launcher: Launcher, progress,
                   retries: int = 0) -> TaskRun:
  hook_parameters = {}
  hook = container.get("lifecycle", {}).get("preCacheCheck")
  if hook:
    launcher.run(f"{name} preCacheCheck", _command(hook, executor_input, component, name,
                                                   run_name, pipeline_root, launcher.python),
                 log)
    hook_output = executor_output_utils.load_executor_output(executor_input.outputs.output_file)
    _apply_hook_output(executor_input, hook_output)
    hook_parameters = {key: executor_output_utils.pb2_value_to_python(value)
                       for key, value in hook_output.parameter_values.items()}
  command = _command(container, executor_input, component, name, run_name, pipeline_root,
                     launcher.python)
  # As Vertex retries a task with a retryPolicy: the same command, the same outputs (no
  # backoff here: nothing remote needs to recover).
  for attempt in range(retries + 1):
    try:
      launcher.run(name, command, log, progress)
      break
    except TaskFailed as e:
      if attempt == retries:
        raise
      log.write(f"=== {name} failed ({e}); retry {attempt + 1} of {retries} "
                "(the task's retryPolicy)\n")
      log.flush()
  outputs = executor_output_utils.get_outputs_for_task(executor_input, component)
  return TaskRun(name=name, seconds=0.0, command=command,
                 executor_input=json_format.MessageToDict(executor_input),
                 outputs={key: _artifact_dict(artifact) for key, artifact in outputs.items()},
                 hook_parameters=hook_parameters)


def _command(container: dict, executor_input, component, name: str, run_name: str,
             pipeline_root: str, python: str) -> list[str]:
  command = placeholder_utils.replace_placeholders(
      full_command=[*container["command"], *container.get("args", [])],
      executor_input_dict=executor_input_utils.executor_input_to_dict(executor_input, component),
      pipeline_resource_name=run_name, task_resource_name=name, pipeline_root=pipeline_root,
      unique_pipeline_id=run_name)
  if command[0] == "python":
    command[0] = python
  return command


def _apply_hook_output(executor_input, hook_output) -> None:
  """What Vertex does with a preCacheCheck hook's ExecutorOutput before the executor runs."""
  for key, value in hook_output.parameter_values.items():
    executor_input.inputs.parameter_values[key].CopyFrom(value)
    spec.set_kubeflow_value(executor_input.inputs.parameters[key], value, None)
  for key, artifact_list in hook_output.artifacts.items():
    executor_input.outputs.artifacts[key].artifacts[0].metadata.update(
        json_format.MessageToDict(artifact_list.artifacts[0].metadata))


def _artifact_dict(artifact) -> dict:
  return {"name": artifact.name, "uri": artifact.uri, "metadata": dict(artifact.metadata)}


def _runtime_artifact(artifact: dict) -> pipeline_spec_pb2.RuntimeArtifact:
  runtime = pipeline_spec_pb2.RuntimeArtifact(name=artifact["name"], uri=artifact["uri"])
  runtime.metadata.update(artifact["metadata"])
  return runtime


def _published(tasks: dict[str, TaskRun]) -> str | None:
  for run in tasks.values():
    pushed = run.outputs.get("pushed_model", {}).get("metadata", {})
    if pushed.get("pushed") == 1:
      return pushed["pushed_destination"]
  return None
