"""The Vertex CustomJob that the TPU config's Trainer would start.

The Trainer task of the compiled Vertex JSON runs TFX's Vertex trainer executor
(tfx.extensions.google_cloud_ai_platform.Trainer). Here that executor's real code path runs
with the task's parameters from the compiled spec, down to the aiplatform JobServiceClient it
constructs, which is replaced by a recorder: the test checks the CustomJob request Vertex
would receive. Nothing reaches the network.
"""

import json

import pytest
from google.cloud.aiplatform import gapic
from google.cloud.aiplatform_v1.types.custom_job import CustomJob
from google.cloud.aiplatform_v1.types.job_state import JobState
from tfx.dsl.components.base import base_executor
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer
from tfx.types import standard_artifacts

from pipelines import config as config_lib
from pipelines import pipeline, vertex_runner

CONFIG = "configs/pipeline_vertex_base_tpu.yaml"
ROOT = "gs://my-bucket/tokendrop/pipeline-root/run-1"


class RecordingJobServiceClient:
  """Records what the executor sends; answers as Vertex would for a job that succeeded."""

  requests: list = []

  def __init__(self, client_options=None, **kwargs):
    self.requests.append(("client", client_options, kwargs))

  def create_custom_job(self, parent=None, custom_job=None):
    self.requests.append(("create_custom_job", parent, custom_job))
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
  return args, parameters


def _artifact(cls, uri):
  artifact = cls()
  artifact.uri = uri
  return artifact


@pytest.fixture
def sent(trainer_task, monkeypatch, tmp_path):
  """Runs the Vertex trainer executor on the compiled parameters; returns what it sent."""
  args, parameters = trainer_task
  assert args[:2] == ["--executor_class_path", f"{vertex_trainer.__name__}.GenericExecutor"]
  RecordingJobServiceClient.requests = []
  monkeypatch.setattr(gapic, "JobServiceClient", RecordingJobServiceClient)
  examples = _artifact(standard_artifacts.Examples, f"{ROOT}/TokenizePack/examples")
  examples.split_names = '["train", "validation"]'
  inputs = {"examples": [examples],
            "transform_graph": [_artifact(standard_artifacts.TransformGraph,
                                          f"{ROOT}/TokenizePack/transform_graph")]}
  outputs = {"model": [_artifact(standard_artifacts.Model, f"{ROOT}/Trainer/model")],
             "model_run": [_artifact(standard_artifacts.ModelRun, f"{ROOT}/Trainer/model_run")]}
  executor = vertex_trainer.GenericExecutor(base_executor.BaseExecutor.Context(
      tmp_dir=str(tmp_path), unique_id="Trainer"))
  executor.Do(inputs, outputs, parameters)
  return RecordingJobServiceClient.requests, parameters


def test_the_custom_job_goes_to_the_configured_region_and_project(sent):
  requests, _ = sent
  endpoints = {r[1]["api_endpoint"] for r in requests if r[0] == "client"}
  assert endpoints == {"us-central1-aiplatform.googleapis.com"}
  (created,) = [r for r in requests if r[0] == "create_custom_job"]
  assert created[1] == "projects/my-project/locations/us-central1"


def test_one_tpu_v3_8_worker_runs_the_project_image(sent):
  requests, _ = sent
  (_, _, job) = next(r for r in requests if r[0] == "create_custom_job")
  config = config_lib.load(CONFIG)
  (pool,) = job["job_spec"]["worker_pool_specs"]
  assert pool["machine_spec"] == {"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3",
                                  "accelerator_count": 8}
  assert pool["replica_count"] == 1
  assert pool["container_spec"]["image_uri"] == config.vertex.image
  assert "project" not in job["job_spec"]  # consumed as the request's parent


def test_the_worker_runs_tfx_trainer_with_the_run_fn_and_the_experiment(sent):
  requests, parameters = sent
  (_, _, job) = next(r for r in requests if r[0] == "create_custom_job")
  command = job["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"]
  assert command[:5] == ["python", "-m", "tfx.scripts.run_executor", "--executor_class_path",
                         "tfx.components.trainer.executor.GenericExecutor"]
  flags = dict(zip(command[3::2], command[4::2], strict=True))
  assert set(flags) == {"--executor_class_path", "--inputs", "--outputs", "--exec-properties"}
  exec_properties = json.loads(flags["--exec-properties"])
  assert exec_properties == parameters
  assert exec_properties["run_fn"] == pipeline.RUN_FN == "trainer.run_fn.run_fn"
  custom = json.loads(exec_properties["custom_config"])
  assert custom["experiment"] == "token_drop_bert/pretraining"
  assert custom["params_override"] == config_lib.load(CONFIG).training.params_override
  assert custom["params_override"]["runtime"]["distribution_strategy"] == "tpu"
  inputs = json.loads(flags["--inputs"])
  outputs = json.loads(flags["--outputs"])
  assert inputs["examples"][0]["artifact"]["uri"] == f"{ROOT}/TokenizePack/examples"
  assert outputs["model"][0]["artifact"]["uri"] == f"{ROOT}/Trainer/model"
