"""The Vertex CustomJob that the TPU config's Trainer would start.

The Trainer task of the compiled Vertex JSON runs components.pretrain.executor.VertexExecutor,
which builds the FnArgs that TFX's Trainer would hand run_fn and starts a custom job running
`python -m trainer.job` with them in the training image, through TFX's Vertex job client,
then records the run's key figures on the Model. Here that executor's real code path runs
with the task's parameters from the compiled spec, down to the aiplatform JobServiceClient it
constructs, which is replaced by a recorder: the test checks the CustomJob request Vertex
would receive, and the figures read from the export that the job's worker wrote. Nothing
reaches the network.
"""

import json
import pathlib

import pytest
import yaml
from google.cloud.aiplatform import gapic
from google.cloud.aiplatform_v1.types.custom_job import CustomJob
from google.cloud.aiplatform_v1.types.job_state import JobState
from tfx.dsl.components.base import base_executor
from tfx.types import standard_artifacts

from components.pretrain import executor as pretrain_executor
from pipelines import config as config_lib
from pipelines import vertex_runner
from trainer import contract
from trainer import job as training_job

CONFIG = "configs/pipeline_vertex_base_tpu.yaml"
ROOT = "gs://my-bucket/tokendrop/pipeline-root/run-1"


# What the job's worker exports: its training_params.yaml and eval_metrics.json, in short.
TRAIN_STEPS = 750_000
EVAL_METRICS = {"step": TRAIN_STEPS, "validation_loss": 1.875, "validation_loss_as_trained": 2.25}


def _fn_args(custom_job: dict) -> dict:
  command = custom_job["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"]
  return json.loads(command[command.index("--fn_args") + 1])


def _worker_exports(custom_job: dict) -> None:
  """What the job's worker leaves in its Model output: an export with the run's figures."""
  export_dir = pathlib.Path(_fn_args(custom_job)["serving_model_dir"])
  export_dir.mkdir(parents=True)
  (export_dir / contract.TRAINING_PARAMS_FILE).write_text(
      yaml.safe_dump({"trainer": {"train_steps": TRAIN_STEPS}}))
  (export_dir / contract.EVAL_METRICS_FILE).write_text(json.dumps(EVAL_METRICS))


class RecordingJobServiceClient:
  """Records what the executor sends; answers as Vertex would for a job that succeeded, whose
  worker exported the model."""

  requests: list = []

  def __init__(self, client_options=None, **kwargs):
    self.requests.append(("client", client_options, kwargs))

  def create_custom_job(self, parent=None, custom_job=None):
    self.requests.append(("create_custom_job", parent, custom_job))
    _worker_exports(custom_job)
    return CustomJob(name=f"{parent}/customJobs/42")

  def get_custom_job(self, name=None, retry=None):
    return CustomJob(name=name, state=JobState.JOB_STATE_SUCCEEDED)


@pytest.fixture(scope="module")
def trainer_task(tmp_path_factory):
  """The Trainer's executor args and parameters in the compiled Vertex JSON."""
  output = tmp_path_factory.mktemp("vertex") / "pipeline.json"
  vertex_runner.compile_pipeline(config_lib.load(CONFIG), str(output))
  spec = json.loads(output.read_text())["pipelineSpec"]
  task = spec["root"]["dag"]["tasks"]["Trainer"]
  parameters = {name: value["runtimeValue"]["constantValue"]["stringValue"]
                for name, value in task["inputs"]["parameters"].items()}
  args = spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]["args"]
  return args, parameters, spec["root"]["dag"]["tasks"]


def _artifact(cls, uri):
  artifact = cls()
  artifact.uri = uri
  return artifact


@pytest.fixture
def sent(trainer_task, monkeypatch, tmp_path):
  """Runs the Vertex trainer executor on the compiled parameters; returns what it sent, the
  parameters, and the Model artifact after the run. The Model is on the local disk, where the
  recorder's worker can write its export."""
  args, parameters, _ = trainer_task
  vertex_executor = pretrain_executor.VertexExecutor
  assert args[:2] == ["--executor_class_path",
                      f"{vertex_executor.__module__}.{vertex_executor.__name__}"]
  RecordingJobServiceClient.requests = []
  monkeypatch.setattr(gapic, "JobServiceClient", RecordingJobServiceClient)
  examples = _artifact(standard_artifacts.Examples, f"{ROOT}/TokenizePack/examples")
  examples.split_names = '["train", "validation"]'
  inputs = {"examples": [examples],
            "transform_graph": [_artifact(standard_artifacts.TransformGraph,
                                          f"{ROOT}/TokenizePack/transform_graph")]}
  model = _artifact(standard_artifacts.Model, str(tmp_path / "Trainer" / "model"))
  outputs = {"model": [model],
             "model_run": [_artifact(standard_artifacts.ModelRun, f"{ROOT}/Trainer/model_run")]}
  executor = vertex_executor(base_executor.BaseExecutor.Context(
      tmp_dir=str(tmp_path), unique_id="Trainer"))
  executor.Do(inputs, outputs, parameters)
  return RecordingJobServiceClient.requests, parameters, model


def test_the_custom_job_goes_to_the_configured_region_and_project(sent):
  requests, _, _ = sent
  endpoints = {r[1]["api_endpoint"] for r in requests if r[0] == "client"}
  assert endpoints == {"us-central1-aiplatform.googleapis.com"}
  (created,) = [r for r in requests if r[0] == "create_custom_job"]
  assert created[1] == "projects/my-project/locations/us-central1"


def test_one_tpu_v3_8_worker_runs_the_training_image_and_restarts_with_its_workers(sent):
  requests, _, _ = sent
  (_, _, job) = next(r for r in requests if r[0] == "create_custom_job")
  config = config_lib.load(CONFIG)
  (pool,) = job["job_spec"]["worker_pool_specs"]
  assert pool["machine_spec"] == {"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3",
                                  "accelerator_count": 8}
  assert pool["replica_count"] == 1
  assert pool["container_spec"]["image_uri"] == config.training.vertex.image != config.vertex.image
  assert job["job_spec"]["scheduling"] == {"restart_job_on_worker_restart": True,
                                           "timeout": f"{168 * 3600}s"}
  assert "project" not in job and "project" not in job["job_spec"]  # the request's parent


def test_the_worker_runs_the_trainers_own_command_with_tfx_fn_args(sent):
  requests, parameters, model = sent
  (_, _, job) = next(r for r in requests if r[0] == "create_custom_job")
  command = job["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"]
  assert command[:4] == ["python", "-m", "trainer.job", "--fn_args"] and len(command) == 5
  fn_args = _fn_args(job)
  assert set(fn_args) == set(training_job.FN_ARGS_FIELDS)
  assert fn_args["train_files"] == [f"{ROOT}/TokenizePack/examples/Split-train/*"]
  assert fn_args["eval_files"] == [f"{ROOT}/TokenizePack/examples/Split-validation/*"]
  assert fn_args["transform_output"] == f"{ROOT}/TokenizePack/transform_graph"
  assert fn_args["model_run_dir"] == f"{ROOT}/Trainer/model_run"
  assert fn_args["serving_model_dir"] == f"{model.uri}/{contract.SERVING_SUBDIR}"
  assert fn_args["train_steps"] == 750_000 and fn_args["base_model"] is None
  custom = fn_args["custom_config"]
  # What run_fn reads, without the Vertex job's own keys.
  assert not set(custom) & set(pretrain_executor.VERTEX_KEYS)
  config = config_lib.load(CONFIG)
  assert custom["experiment"] == "token_drop_bert/pretraining"
  assert custom["params_override"] == config.training.params_override
  assert custom["params_override"]["runtime"] == {
      "distribution_strategy": "tpu", "tpu": "local", "mixed_precision_dtype": "bfloat16",
      "enable_xla": True}
  assert custom[contract.CHECKPOINT_ROOT_KEY] == f"{config.root}/checkpoints"
  assert json.loads(parameters["custom_config"])["ai_platform_training_args"]


def test_the_compiled_training_task_retries_and_nothing_else_does(trainer_task):
  *_, tasks = trainer_task
  policies = {name: task.get("retryPolicy") for name, task in tasks.items()}
  assert policies.pop("Trainer") == {"maxRetryCount": 2, "backoffDuration": "300s",
                                     "backoffFactor": 2.0, "backoffMaxDuration": "3600s"}
  assert set(policies.values()) == {None}


def test_after_the_job_the_model_carries_the_figures_of_the_export_it_wrote(sent):
  _, _, model = sent
  assert {name: model.get_custom_property(name) for name in (
      contract.TRAIN_STEPS, contract.VALIDATION_STEP, contract.VALIDATION_LOSS,
      contract.VALIDATION_LOSS_AS_TRAINED)} == {
          contract.TRAIN_STEPS: TRAIN_STEPS, contract.VALIDATION_STEP: TRAIN_STEPS,
          contract.VALIDATION_LOSS: 1.875, contract.VALIDATION_LOSS_AS_TRAINED: 2.25}


def test_the_latest_blessed_model_query_is_this_pipelines_only(tmp_path):
  """Vertex's metadata is shared by every pipeline of a project and region: without the
  pipeline term another pipeline's blessing could be the warm start and the baseline."""
  output = tmp_path / "pipeline.json"
  config = config_lib.load(CONFIG)
  vertex_runner.compile_pipeline(config, str(output))
  executors = json.loads(output.read_text())["pipelineSpec"]["deploymentSpec"]["executors"]
  filters = sorted(query["filter"] for executor in executors.values()
                   for query in executor.get("resolver", {}).get(
                       "outputArtifactQueries", {}).values())
  assert filters == [
      'schema_title="tfx.Model" AND state=LIVE AND '
      'name="{{$.inputs.artifacts[\'input\'].metadata[\'current_model_id\']}}"',
      'schema_title="tfx.ModelBlessing" AND state=LIVE AND metadata.blessed.number_value=1 '
      f'AND metadata.{contract.PIPELINE_NAME}.string_value="{config.name}"']
