"""The compiled PipelineJob a rehearsal runs, and what it takes for kfp.local's pieces to run it.

Compiling: vertex_runner.compile_for_rehearsal is `tokendrop pipeline compile`'s
KubeflowV2DagRunner path, with a local root and vertex_runner.REHEARSAL_IMAGE. Before
compiling, the Beam arguments become REHEARSAL_BEAM_ARGS: DirectRunner in multi_processing
mode with 2 workers, which pickles every DoFn into worker processes as Dataflow does. The
arguments are in the compiled spec, as Dataflow's would be.

The compiled JSON on disk is what Vertex would be sent. Nothing in it is run-specific: Vertex
runs one compiled template any number of times, each run with its own job name, and so does
a Rehearsal (pipelines/rehearsal/run.py). In memory, two patches:
- A Vertex trainer (training.vertex set) would submit a Vertex CustomJob. Its
  --executor_class_path becomes the in-process Trainer executor (components/pretrain), every
  other argument unchanged; the rehearsal says so (RehearsalResult.trainer_swapped, and the
  log).
- GlueEvaluator's executor becomes its LocalJobsExecutor: with glue.vertex set, the GLUE
  jobs' commands (components/glue_eval/job.py) run as local processes instead of Vertex
  custom jobs, every argument the same (RehearsalResult.glue_jobs_local, and the log).
- TFX's compiler writes task constants in the older `runtimeValue.constantValue` form
  (intValue, doubleValue, stringValue), which kfp.local's make_task_arguments rejects; they
  are rewritten to `constant` values.

Two fixes to each executor input kfp.local builds, both read from the component's spec:
- kfp.local carries artifacts between tasks as kfp dsl.Artifact objects, which know kfp's
  system.* schema titles only; TFX's artifact types are instance schemas (title: tfx.Model).
  Each input artifact gets its type back from the consuming component's input definition.
- TFX's entrypoint reads execution properties from the executor input's older `parameters`
  map when the spec passes no --json_serialized_inputs_spec_args (TFX's compiler passes
  none); kfp.local fills only `parameterValues`, so both are filled, typed by the input
  definitions.
"""

import dataclasses
import json
import os

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components.glue_eval import component as glue_component
from components.pretrain import executor as pretrain_executor
from pipelines import vertex_runner
from pipelines.config import PipelineConfig
from trainer.errors import UserError

REHEARSAL_BEAM_ARGS = ("--runner=DirectRunner", "--direct_running_mode=multi_processing",
                       "--direct_num_workers=2")
PIPELINE_JSON = "pipeline.json"
EXECUTOR_CLASS_FLAG = "--executor_class_path"


def _class_path(cls: type) -> str:
  return f"{cls.__module__}.{cls.__name__}"


VERTEX_TRAINER_EXECUTOR = _class_path(pretrain_executor.VertexExecutor)
LOCAL_TRAINER_EXECUTOR = _class_path(pretrain_executor.Executor)
GLUE_EXECUTOR = _class_path(glue_component.Executor)
GLUE_LOCAL_JOBS_EXECUTOR = _class_path(glue_component.LocalJobsExecutor)
# Each executor a rehearsal runs in place of one that would start Vertex custom jobs.
SWAPS = {VERTEX_TRAINER_EXECUTOR: LOCAL_TRAINER_EXECUTOR, GLUE_EXECUTOR: GLUE_LOCAL_JOBS_EXECUTOR}


@dataclasses.dataclass(frozen=True)
class CompiledJob:
  """A compiled PipelineJob, patched as the module docstring says; every run reads it only."""
  path: str  # the JSON as compiled, unpatched: what Vertex would be sent
  spec: pipeline_spec_pb2.PipelineSpec
  executors: dict[str, dict]  # executor label -> its deploymentSpec entry
  pipeline_root: str
  trainer_swapped: bool  # a Vertex CustomJob trainer runs as the in-process executor
  glue_jobs_local: bool  # GLUE's Vertex custom jobs run as local processes


def rehearsal_config(config: PipelineConfig, pipeline_root: str) -> PipelineConfig:
  """The config compiled for a rehearsal: its own root and REHEARSAL_BEAM_ARGS."""
  runner_flags = ("--runner=", "--direct_running_mode=", "--direct_num_workers=")
  beam_args = [a for a in config.beam_pipeline_args if not a.startswith(runner_flags)]
  return dataclasses.replace(config, root=pipeline_root,
                             beam_pipeline_args=[*beam_args, *REHEARSAL_BEAM_ARGS])


def check_local_paths(config: PipelineConfig) -> None:
  """A rehearsal reads and writes this machine's disk; a gs:// path would fail tasks later."""
  paths = {"root": config.root, "corpus.input_base": config.corpus.input_base,
           "push.destination": config.push.destination, "glue.glue_dir": config.glue.glue_dir}
  remote = sorted(key for key, path in paths.items() if (path or "").startswith("gs://"))
  if remote:
    raise UserError(f"{', '.join(remote)} must be local paths for a rehearsal, which runs on "
                    "this machine: use a local config (configs/pipeline_local_tiny.yaml) or "
                    f"--set {remote[0]}=<local path>")


def compile_job(config: PipelineConfig, work_dir: str) -> CompiledJob:
  """Compiles `config` (a rehearsal_config) to <work_dir>/pipeline.json and patches it."""
  path = vertex_runner.compile_for_rehearsal(config, os.path.join(work_dir, PIPELINE_JSON))
  with open(path, encoding="utf-8") as f:
    job = json.load(f)
  glue_jobs = runs_glue_jobs(job["pipelineSpec"])
  swapped = swap_executors(job["pipelineSpec"])
  spec = kfp_local_spec(job["pipelineSpec"])
  executors = {label: json_format.MessageToDict(executor)
               for label, executor in spec.deployment_spec["executors"].items()}
  return CompiledJob(path, spec, executors, job["runtimeConfig"]["gcsOutputDirectory"],
                     VERTEX_TRAINER_EXECUTOR in swapped,
                     glue_jobs and GLUE_EXECUTOR in swapped)


def kfp_local_spec(pipeline_spec: dict) -> pipeline_spec_pb2.PipelineSpec:
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


def swap_executors(pipeline_spec: dict) -> set[str]:
  """Points each --executor_class_path in SWAPS at its stand-in; the class paths swapped."""
  swapped = set()
  for executor in pipeline_spec["deploymentSpec"]["executors"].values():
    args = executor.get("container", {}).get("args", [])
    for i in range(len(args) - 1):
      if args[i] == EXECUTOR_CLASS_FLAG and args[i + 1] in SWAPS:
        swapped.add(args[i + 1])
        args[i + 1] = SWAPS[args[i + 1]]
  return swapped


def runs_glue_jobs(pipeline_spec: dict) -> bool:
  """Whether a GlueEvaluator task in the (unpatched) spec starts Vertex jobs: its vertex_job
  parameter is set (pipelines/pipeline.py, glue.vertex)."""
  for task in pipeline_spec["root"]["dag"]["tasks"].values():
    parameter = task.get("inputs", {}).get("parameters", {}).get("vertex_job", {})
    if parameter.get("runtimeValue", {}).get("constantValue", {}).get("stringValue"):
      return True
  return False


def restore_artifact_types(executor_input: pipeline_spec_pb2.ExecutorInput,
                           component: pipeline_spec_pb2.ComponentSpec) -> None:
  for key, artifacts in executor_input.inputs.artifacts.items():
    for artifact in artifacts.artifacts:
      artifact.type.CopyFrom(component.input_definitions.artifacts[key].artifact_type)


def fill_kubeflow_parameters(executor_input: pipeline_spec_pb2.ExecutorInput,
                             component: pipeline_spec_pb2.ComponentSpec) -> None:
  """Copies parameterValues into the older `parameters` map, typed as the component declares."""
  types = {name: spec.type for name, spec in component.input_definitions.parameters.items()}
  for name, value in executor_input.inputs.parameter_values.items():
    set_kubeflow_value(executor_input.inputs.parameters[name], value, types.get(name))


def set_kubeflow_value(target: pipeline_spec_pb2.Value, value, declared: int | None) -> None:
  """`value` (a protobuf Value) as a `parameters` entry of the `declared` PrimitiveType."""
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
