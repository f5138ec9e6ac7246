"""Rehearse a Vertex AI Pipelines run on this machine: the compiled PipelineJob JSON, executed
task by task through the container entrypoints Vertex starts.

    result = rehearse(config_lib.load("configs/pipeline_local_tiny.yaml"))
    python -m pipelines.rehearsal --config configs/pipeline_local_tiny.yaml

In order:
1. Compile. vertex_runner.compile_for_rehearsal is `tokendrop pipeline compile`'s
   KubeflowV2DagRunner path, with a local root and vertex_runner.REHEARSAL_IMAGE. Before
   compiling, the Beam arguments become REHEARSAL_BEAM_ARGS: DirectRunner in multi_processing
   mode with 2 workers, which pickles every DoFn into worker processes as Dataflow does. The
   arguments are in the compiled spec, as Dataflow's would be.
2. Run the root DAG in dependency order. Each container task is a new process started with the
   command and args of its executor in the spec (`python -m
   tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor --executor_class_path ...
   --json_serialized_invocation_args {{$}} <beam args>`); `python` is this interpreter, the
   project environment, which is built from the same lock as the image. The executor input
   holds the task's parameters, its input artifacts (upstream outputs, with the metadata their
   executors wrote) and its output URIs under <work_dir>/root. Each task's
   executor_output.json is read back: the artifacts downstream tasks receive carry its metadata.
   A `python -m MODULE` command runs in a process forked from the rehearsal's task process,
   which imported the modules the spec's commands name (TFX's entrypoint and driver, and with
   them TensorFlow, TFMA and Beam) once per rehearsal, instead of importing them again in
   every task (_Launcher, pipelines/task_process.py). The task process is still new, runs
   the module as __main__ with the spec's arguments, and imports every project module itself.
3. CorpusGen's preCacheCheck hook (TFX's kubeflow v2 file_based_example_gen driver) runs first,
   with the task's executor input. Its output (the newest span, the input fingerprint, the
   span's file pattern, the Examples metadata) is applied to the executor input before the
   executor runs, as Vertex applies it before its cache check.
4. Resolver tasks (latest blessed model, its blessing): Vertex evaluates their artifact
   queries against ML Metadata. The rehearsal evaluates the same filter strings against
   <work_dir>/root/artifacts.jsonl, the record of every artifact the rehearsals of this work
   dir produced (name, type, URI, metadata as read back); the newest match wins. The first
   rehearsal resolves nothing, as the first Vertex run does.
5. A Vertex trainer (training.vertex set) would submit a Vertex CustomJob. The rehearsal swaps
   its --executor_class_path for TFX's in-process Trainer executor, every other argument
   unchanged, and says so (RehearsalResult.trainer_swapped, and the log).

kfp.local (kfp 2.16) and where it is adapted:
- Used as is: graph_utils.topological_sort (the task order), io.IOStore (outputs by task),
  OrchestratorUtils.make_task_arguments (a task's arguments from constants and upstream
  outputs), executor_input_utils (task roots, executor input, its dict form),
  placeholder_utils (`{{$}}` and the `{{$.inputs.artifacts[...].metadata[...]}}` in resolver
  filters), executor_output_utils (reading executor_output.json back).
- Not used: dag_orchestrator.run_dag and task_dispatcher. Their dispatch knows importer and
  container executors only, and hands containers to SubprocessTaskHandler, which refuses any
  command that is not a kfp lightweight Python component. This module's _run_dag is that
  loop with three more kinds of step: the preCacheCheck hook, the resolver queries, and a
  container task run as its own command in a new process (forked from the warm task process
  for a `python -m` command) whose output goes to the log.
- TFX's compiler writes task constants in the older `runtimeValue.constantValue` form (intValue,
  doubleValue, stringValue), which make_task_arguments rejects; they are rewritten to
  `constant` values first (_kfp_local_spec).
- TFX's entrypoint reads execution properties from the executor input's older `parameters` map
  when the spec passes no --json_serialized_inputs_spec_args (TFX's compiler passes none);
  kfp.local fills only `parameterValues`, so both are filled, typed by the input definitions.
- kfp.local carries artifacts between tasks as kfp dsl.Artifact objects, which know kfp's
  system.* schema titles only; TFX's artifact types are instance schemas (title: tfx.Model).
  Each input artifact gets its type back from the consuming component's input definition.
- kfp.local names an output artifact after its output key. Vertex gives each artifact a unique
  resource name, which TFX's entrypoint turns into the artifact id that blessings and resolver
  filters refer to; the rehearsal names each output <run>/<task>/<output key>, and makes its
  directory (a local disk needs one where gs:// needs none).
- An output a resolver did not resolve is left out of the consumers' executor input (kfp.local
  would raise), as Vertex leaves out an empty resolver output.

Not rehearsed: the Vertex and Dataflow services themselves (scheduling, Vertex's cache: every
task runs), the CustomJob on TPU, and the image build.
"""

import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable

import yaml
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
from tfx.components.trainer import executor as trainer_executor
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor

from pipelines import config as config_lib
from pipelines import local_runner, task_process, vertex_runner
from pipelines.config import PipelineConfig
from trainer.contract import PROGRESS_PREFIX
from trainer.errors import UserError

REHEARSAL_BEAM_ARGS = ("--runner=DirectRunner", "--direct_running_mode=multi_processing",
                       "--direct_num_workers=2")
ARTIFACT_RECORD = "artifacts.jsonl"
PIPELINE_JSON = "pipeline.json"
EXECUTOR_CLASS_FLAG = "--executor_class_path"


def _class_path(cls: type) -> str:
  return f"{cls.__module__}.{cls.__name__}"


VERTEX_TRAINER_EXECUTOR = _class_path(vertex_trainer_executor.GenericExecutor)
LOCAL_TRAINER_EXECUTOR = _class_path(trainer_executor.GenericExecutor)

# on_task(task name, "started" | "finished", seconds since the task started,
#         output artifact URIs by output name)
TaskCallback = Callable[[str, str, float, dict[str, str]], None]


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
  trainer_swapped: bool  # a Vertex CustomJob trainer ran as TFX's in-process executor


def default_work_dir(config: PipelineConfig) -> str:
  """<root's parent>/rehearsal: beside, never inside, the LocalDagRunner's pipeline root."""
  return os.path.join(os.path.dirname(os.path.abspath(config.root)), "rehearsal")


def rehearsal_config(config: PipelineConfig, pipeline_root: str) -> PipelineConfig:
  """The config compiled for a rehearsal: its own root and REHEARSAL_BEAM_ARGS."""
  runner_flags = ("--runner=", "--direct_running_mode=", "--direct_num_workers=")
  beam_args = [a for a in config.beam_pipeline_args if not a.startswith(runner_flags)]
  return dataclasses.replace(config, root=pipeline_root,
                             beam_pipeline_args=[*beam_args, *REHEARSAL_BEAM_ARGS])


def rehearse(config: PipelineConfig, work_dir: str | None = None,
             on_task: TaskCallback | None = None,
             on_progress: Callable[[str], None] | None = None) -> RehearsalResult:
  """Compiles `config` for Vertex and runs the compiled job here; see the module docstring.

  on_progress receives each task output line's text from PROGRESS_PREFIX on (the trainer's
  and GLUE fine-tuning's ETA lines).

  work_dir (default: default_work_dir) holds pipeline.json, root/ (the pipeline root, with
  artifacts.jsonl) and logs/<run>.log. Published versions go to config.push.destination.
  """
  _check_local_paths(config)
  work_dir = os.path.abspath(work_dir or default_work_dir(config))
  config = rehearsal_config(config, os.path.join(work_dir, "root"))
  local_runner.prepare_local_corpus(config)
  pipeline_json = vertex_runner.compile_for_rehearsal(config,
                                                      os.path.join(work_dir, PIPELINE_JSON))
  with open(pipeline_json, encoding="utf-8") as f:
    job = json.load(f)
  trainer_swapped = _swap_vertex_trainer(job["pipelineSpec"])
  spec = _kfp_local_spec(job["pipelineSpec"])
  pipeline_root = job["runtimeConfig"]["gcsOutputDirectory"]
  run_name = executor_input_utils.get_local_pipeline_resource_name(spec.pipeline_info.name)
  log_path = os.path.join(work_dir, "logs", f"{run_name}.log")
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with open(log_path, "w", encoding="utf-8") as log:
    log.write(f"Rehearsal {run_name} of {pipeline_json}\n")
    if trainer_swapped:
      log.write(f"Trainer: {VERTEX_TRAINER_EXECUTOR} (a Vertex CustomJob) swapped for "
                f"{LOCAL_TRAINER_EXECUTOR} (in-process)\n")
    log.flush()
    tasks = _run_dag(spec, pipeline_root, run_name, log,
                     _ArtifactRecord(os.path.join(pipeline_root, ARTIFACT_RECORD)), on_task,
                     on_progress)
  return RehearsalResult(pipeline_json, log_path, tasks, _published(tasks), trainer_swapped)


def _check_local_paths(config: PipelineConfig) -> None:
  """A rehearsal reads and writes this machine's disk; a gs:// path would fail tasks later."""
  paths = {"root": config.root, "corpus.input_base": config.corpus.input_base,
           "push.destination": config.push.destination, "glue.glue_dir": config.glue.glue_dir}
  remote = sorted(key for key, path in paths.items() if (path or "").startswith("gs://"))
  if remote:
    raise UserError(f"{', '.join(remote)} must be local paths for a rehearsal, which runs on "
                    "this machine: use a local config (configs/pipeline_local_tiny.yaml) or "
                    f"--set {remote[0]}=<local path>")


def _kfp_local_spec(pipeline_spec: dict) -> pipeline_spec_pb2.PipelineSpec:
  """The PipelineSpec with TFX's `constantValue` task constants as kfp.local's `constant`."""
  for task in pipeline_spec["root"]["dag"]["tasks"].values():
    for parameter in task.get("inputs", {}).get("parameters", {}).values():
      runtime = parameter.get("runtimeValue", {})
      if "constantValue" in runtime:
        ((kind, value),) = runtime.pop("constantValue").items()
        runtime["constant"] = {"intValue": int, "doubleValue": float,
                               "stringValue": str}[kind](value)
  spec = pipeline_spec_pb2.PipelineSpec()
  json_format.ParseDict(pipeline_spec, spec)
  return spec


def _swap_vertex_trainer(pipeline_spec: dict) -> bool:
  swapped = False
  for executor in pipeline_spec["deploymentSpec"]["executors"].values():
    args = executor.get("container", {}).get("args", [])
    for i in range(len(args) - 1):
      if args[i] == EXECUTOR_CLASS_FLAG and args[i + 1] == VERTEX_TRAINER_EXECUTOR:
        args[i + 1] = LOCAL_TRAINER_EXECUTOR
        swapped = True
  return swapped


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


def _run_dag(spec: pipeline_spec_pb2.PipelineSpec, pipeline_root: str, run_name: str, log,
             record: "_ArtifactRecord", on_task: TaskCallback | None,
             on_progress: Callable[[str], None] | None = None) -> dict[str, TaskRun]:
  executors = {name: json_format.MessageToDict(executor)
               for name, executor in spec.deployment_spec["executors"].items()}
  with _Launcher(executors) as launcher:
    io_store = io.IOStore()
    produced: dict[str, set[str]] = {}
    runs = {}
    for name in _execution_order(spec.root.dag.tasks):
      task = spec.root.dag.tasks[name]
      component = spec.components[task.component_ref.name]
      task_inputs, component = _without_unresolved_inputs(task.inputs, component, produced)
      arguments = OrchestratorUtils.make_task_arguments(task_inputs, io_store)
      task_root = executor_input_utils.construct_local_task_root(pipeline_root, run_name, name)
      executor_input = executor_input_utils.construct_executor_input(
          component, arguments, task_root, block_input_artifact=False)
      _restore_artifact_types(executor_input, component)
      executor = executors[component.executor_label]
      start = time.monotonic()
      if "resolver" in executor:
        run = _resolve(name, executor["resolver"], executor_input, component, task_inputs,
                       task.inputs, record, on_task)
      else:
        _prepare_outputs(executor_input, run_name, name)
        _fill_kubeflow_parameters(executor_input, component)
        if on_task:
          on_task(name, "started", 0.0, _output_uris(executor_input))
        run = _run_container(name, executor["container"], executor_input, component, run_name,
                             pipeline_root, log, launcher, on_progress)
        for key, artifact in run.outputs.items():
          record.add(artifact, _schema_title(component.output_definitions.artifacts[key]),
                     name, run_name)
      run.seconds = time.monotonic() - start
      log.write(f"=== {name} finished in {run.seconds:.1f} s; outputs: "
                f"{json.dumps(run.outputs, sort_keys=True)}\n")
      log.flush()
      if on_task:
        on_task(name, "finished", run.seconds,
                {key: artifact["uri"] for key, artifact in run.outputs.items()})
      for key, artifact in run.outputs.items():
        io_store.put_task_output(name, key, executor_output_utils.runtime_artifact_to_dsl_artifact(
            _runtime_artifact(artifact)))
      produced[name] = set(run.outputs)
      runs[name] = run
  return runs


def _without_unresolved_inputs(task_inputs, component, produced: dict[str, set[str]]):
  """The task's inputs and component spec without the artifacts no upstream task produced."""
  missing = [key for key, spec in task_inputs.artifacts.items()
             if spec.HasField("task_output_artifact") and
             spec.task_output_artifact.output_artifact_key not in
             produced.get(spec.task_output_artifact.producer_task, ())]
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


def _restore_artifact_types(executor_input, component) -> None:
  for key, artifacts in executor_input.inputs.artifacts.items():
    for artifact in artifacts.artifacts:
      artifact.type.CopyFrom(component.input_definitions.artifacts[key].artifact_type)


def _prepare_outputs(executor_input, run_name: str, task_name: str) -> None:
  """Unique artifact names, and each output's directory: on gs:// a prefix needs no directory,
  on a local disk executors that move files into their outputs need one (TFX's local launcher
  makes them too)."""
  for key, artifacts in executor_input.outputs.artifacts.items():
    for artifact in artifacts.artifacts:
      artifact.name = f"{run_name}/{task_name}/{key}"
      os.makedirs(artifact.uri, exist_ok=True)


def _fill_kubeflow_parameters(executor_input, component) -> None:
  """Copies parameterValues into the older `parameters` map, typed as the component declares."""
  types = {name: spec.type for name, spec in component.input_definitions.parameters.items()}
  for name, value in executor_input.inputs.parameter_values.items():
    _set_kubeflow_value(executor_input.inputs.parameters[name], value, types.get(name))


def _set_kubeflow_value(target, value, declared) -> None:
  kind = value.WhichOneof("kind")
  if kind == "string_value":
    target.string_value = value.string_value
  elif declared == pipeline_spec_pb2.PrimitiveType.DOUBLE:
    target.double_value = value.number_value
  elif declared == pipeline_spec_pb2.PrimitiveType.INT or value.number_value.is_integer():
    # The hook's span and version have no declaration; they are whole numbers.
    target.int_value = int(value.number_value)
  else:
    target.double_value = value.number_value


def _output_uris(executor_input) -> dict[str, str]:
  return {key: artifacts.artifacts[0].uri
          for key, artifacts in executor_input.outputs.artifacts.items()}


def _run_container(name: str, container: dict, executor_input, component, run_name: str,
                   pipeline_root: str, log, launcher: "_Launcher",
                   on_progress: Callable[[str], None] | None = None) -> TaskRun:
  hook_parameters = {}
  hook = container.get("lifecycle", {}).get("preCacheCheck")
  if hook:
    launcher.run(f"{name} preCacheCheck", _command(hook, executor_input, component, name,
                                                   run_name, pipeline_root), log)
    hook_output = executor_output_utils.load_executor_output(executor_input.outputs.output_file)
    _apply_hook_output(executor_input, hook_output)
    hook_parameters = {key: executor_output_utils.pb2_value_to_python(value)
                       for key, value in hook_output.parameter_values.items()}
  command = _command(container, executor_input, component, name, run_name, pipeline_root)
  launcher.run(name, command, log, on_progress)
  outputs = executor_output_utils.get_outputs_for_task(executor_input, component)
  return TaskRun(name=name, seconds=0.0, command=command,
                 executor_input=json_format.MessageToDict(executor_input),
                 outputs={key: _artifact_dict(artifact) for key, artifact in outputs.items()},
                 hook_parameters=hook_parameters)


def _command(container: dict, executor_input, component, name: str, run_name: str,
             pipeline_root: str) -> list[str]:
  command = placeholder_utils.replace_placeholders(
      full_command=[*container["command"], *container.get("args", [])],
      executor_input_dict=executor_input_utils.executor_input_to_dict(executor_input, component),
      pipeline_resource_name=run_name, task_resource_name=name, pipeline_root=pipeline_root,
      unique_pipeline_id=run_name)
  if command[0] == "python":
    command[0] = sys.executable
  return command


def _apply_hook_output(executor_input, hook_output) -> None:
  """What Vertex does with a preCacheCheck hook's ExecutorOutput before the executor runs."""
  for key, value in hook_output.parameter_values.items():
    executor_input.inputs.parameter_values[key].CopyFrom(value)
    _set_kubeflow_value(executor_input.inputs.parameters[key], value, None)
  for key, artifacts in hook_output.artifacts.items():
    executor_input.outputs.artifacts[key].artifacts[0].metadata.update(
        json_format.MessageToDict(artifacts.artifacts[0].metadata))


class _Launcher:
  """Starts each task's command and streams its output to the log (and its progress lines to
  on_progress).

  `python -m MODULE ARGS`, where MODULE is one the spec's commands name, runs in a child
  forked from pipelines/task_process.py, a process that imported those modules once: a new
  process that runs the module as __main__ with the spec's arguments, without importing
  TensorFlow, TFX and Beam again. No project module is preloaded. Any other command runs as
  a subprocess, as is.
  """

  def __init__(self, executors: dict[str, dict]):
    commands = []
    for executor in executors.values():
      container = executor.get("container", {})
      hook = container.get("lifecycle", {}).get("preCacheCheck", {})
      commands += [c["command"] for c in (container, hook) if c.get("command")]
    self.modules = sorted({c[2] for c in commands if len(c) > 2 and c[:2] == ["python", "-m"]})
    # It starts importing now, while the first task's inputs are prepared.
    self._server = subprocess.Popen(
        [sys.executable, "-m", task_process.__name__, *self.modules], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")

  def __enter__(self) -> "_Launcher":
    return self

  def __exit__(self, error_type, *_) -> None:
    if error_type is not None:  # A task may still be running: stop it with the server.
      self._server.kill()
    self._server.stdin.close()
    self._server.stdout.read()
    self._server.wait()

  def run(self, what: str, command: list[str], log,
          on_progress: Callable[[str], None] | None = None) -> None:
    warm = command[:2] == [sys.executable, "-m"] and command[2] in self.modules
    log.write(f"=== {what} started: {shlex.join(command)}\n")
    if warm:
      log.write(f"=== {what} runs in a process forked from one that imported "
                f"{', '.join(self.modules)}\n")
    log.flush()
    status = (self._fork(command[2:], log, on_progress) if warm else
              self._exec(command, log, on_progress))
    log.flush()
    if status != 0:
      raise UserError(f"rehearsal task {what} exited with status {status}; its output is in "
                      f"{log.name}")

  def _fork(self, argv: list[str], log, on_progress) -> int:
    self._server.stdin.write(json.dumps(argv) + "\n")
    self._server.stdin.flush()
    for line in self._server.stdout:
      marker = line.find(task_process.EXIT_MARKER)
      if marker < 0:
        _stream([line], log, on_progress)
        continue
      if marker:  # The task's last line had no newline.
        _stream([line[:marker] + "\n"], log, on_progress)
      return int(line[marker + len(task_process.EXIT_MARKER):])
    raise UserError(f"the rehearsal's task process ({task_process.__name__}) exited while "
                    f"running {argv[0]}; its output is in {log.name}")

  @staticmethod
  def _exec(command: list[str], log, on_progress) -> int:
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as task:
      _stream(task.stdout, log, on_progress)
    return task.returncode


def _stream(lines, log, on_progress: Callable[[str], None] | None) -> None:
  for line in lines:
    log.write(line)
    marker = line.find(PROGRESS_PREFIX)
    if on_progress and marker >= 0:
      on_progress(line[marker:].rstrip("\n"))


def _artifact_dict(artifact) -> dict:
  return {"name": artifact.name, "uri": artifact.uri, "metadata": dict(artifact.metadata)}


def _runtime_artifact(artifact: dict) -> pipeline_spec_pb2.RuntimeArtifact:
  runtime = pipeline_spec_pb2.RuntimeArtifact(name=artifact["name"], uri=artifact["uri"])
  runtime.metadata.update(artifact["metadata"])
  return runtime


def _schema_title(artifact_spec) -> str:
  """The title of a TFX instance schema ("title: tfx.Model ..."), Vertex's schema_title."""
  artifact_type = artifact_spec.artifact_type
  if artifact_type.WhichOneof("kind") == "instance_schema":
    return yaml.safe_load(artifact_type.instance_schema)["title"]
  return artifact_type.schema_title


def _resolve(name: str, resolver: dict, executor_input, component, task_inputs, declared_inputs,
             record: "_ArtifactRecord", on_task: TaskCallback | None) -> TaskRun:
  """Answers a resolver task's artifact queries from the record, as Vertex does from MLMD."""
  if on_task:
    on_task(name, "started", 0.0, {})
  executor_input_dict = executor_input_utils.executor_input_to_dict(executor_input, component)
  outputs, queries = {}, {}
  # An input that upstream did not resolve leaves nothing to query with.
  if len(task_inputs.artifacts) == len(declared_inputs.artifacts):
    for key, query in resolver["outputArtifactQueries"].items():
      queries[key] = placeholder_utils.resolve_io_placeholders(executor_input_dict,
                                                               query["filter"])
      match = record.newest(queries[key])
      if match is not None:
        outputs[key] = match
  return TaskRun(name=name, seconds=0.0, executor_input=executor_input_dict, outputs=outputs,
                 queries=queries)


class _ArtifactRecord:
  """Every artifact the rehearsals produced, one JSON line each: the rehearsal's ML Metadata."""

  def __init__(self, path: str):
    self.path = path

  def add(self, artifact: dict, schema_title: str, task: str, run_name: str) -> None:
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps({**artifact, "schema_title": schema_title, "task": task,
                          "run": run_name}, sort_keys=True) + "\n")

  def newest(self, query: str) -> dict | None:
    if not os.path.exists(self.path):
      return None
    with open(self.path, encoding="utf-8") as f:
      artifacts = [json.loads(line) for line in f]
    clauses = [_parse_clause(clause) for clause in query.split(" AND ")]
    matches = [a for a in artifacts if all(_holds(a, field, value) for field, value in clauses)]
    if not matches:
      return None
    newest = matches[-1]
    return {key: newest[key] for key in ("name", "uri", "metadata")}


# field=value, the value a quoted string or a bare word/number (Vertex's artifact filter syntax).
_CLAUSE = re.compile(r'\s*([A-Za-z_][\w.]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s"]+)\s*')


def _parse_clause(clause: str) -> tuple[str, str | float]:
  match = _CLAUSE.fullmatch(clause)
  if not match:
    raise UserError(f"the rehearsal cannot evaluate the artifact filter clause {clause!r}")
  field, literal = match.groups()
  if literal.startswith('"'):
    return field, json.loads(literal)
  try:
    return field, float(literal)
  except ValueError:
    return field, literal


def _holds(artifact: dict, field: str, value: str | float) -> bool:
  if field in ("schema_title", "name"):
    return artifact[field] == value
  if field == "state":
    return value == "LIVE"  # the rehearsal deletes nothing: every recorded artifact is live
  parts = field.split(".")
  if len(parts) == 3 and parts[0] == "metadata":
    found = artifact["metadata"].get(parts[1])
    if parts[2] == "number_value":
      return isinstance(found, (int, float)) and not isinstance(found, bool) and found == value
    if parts[2] == "string_value":
      return found == value
  raise UserError(f"the rehearsal cannot evaluate the artifact filter field {field!r}")


def _published(tasks: dict[str, TaskRun]) -> str | None:
  for run in tasks.values():
    pushed = run.outputs.get("pushed_model", {}).get("metadata", {})
    if pushed.get("pushed") == 1:
      return pushed["pushed_destination"]
  return None


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m pipelines.rehearsal",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="a local pipeline YAML, e.g. "
                      "configs/pipeline_local_tiny.yaml")
  parser.add_argument("--work-dir", help="default: <root's parent>/rehearsal")
  args = parser.parse_args(argv)

  def print_task(name: str, event: str, seconds: float, uris: dict[str, str]) -> None:
    if event == "finished":
      print(f"{name}: {seconds:.0f} s; " + (", ".join(f"{k} {v}" for k, v in uris.items())
                                             or "nothing resolved"), flush=True)

  try:
    result = rehearse(config_lib.load(args.config), args.work_dir, print_task)
  except UserError as e:
    print(f"rehearsal: {e}", file=sys.stderr)
    return 2
  if result.trainer_swapped:
    print(f"Trainer ran as {LOCAL_TRAINER_EXECUTOR} in place of the Vertex CustomJob")
  print(f"Log: {result.log_path}")
  print(f"Published: {result.published or 'nothing (not blessed)'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
