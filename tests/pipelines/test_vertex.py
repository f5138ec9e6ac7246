"""Vertex AI Pipelines: the compiled JSON, and what submit and schedule would send.

No credentials exist here, so submit and schedule run the real aiplatform client
down to its service stubs, which are replaced by recorders: the test checks the
request objects that would go to Vertex, never a cloud run.
"""

import json
import os
import pathlib
import subprocess

import google.auth.credentials
import pytest
from google.cloud.aiplatform.utils import gcs_utils
from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient
from google.cloud.aiplatform_v1.types import pipeline_job as gca_pipeline_job
from google.cloud.aiplatform_v1.types import schedule as gca_schedule

from pipelines import cli
from pipelines import config as config_lib
from pipelines import vertex_runner as vertex
from trainer.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = "configs/pipeline_vertex_base_tpu.yaml"
COMPONENTS = {"CorpusGen", "TokenizePack", "Trainer", "GlueEvaluator", "BertPusher"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
  output = tmp_path_factory.mktemp("vertex") / "pipeline.json"
  assert cli.main(["pipeline", "compile", "--config", CONFIG, "--output", str(output)]) == 0
  return output, json.loads(output.read_text())


def _parameter(task: dict, name: str):
  return task["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]["stringValue"]


def test_every_component_runs_in_the_project_image(compiled):
  _, job = compiled
  spec = job["pipelineSpec"]
  tasks = spec["root"]["dag"]["tasks"]
  assert COMPONENTS <= set(tasks)
  assert {"latest_blessed_model-model-resolver", "latest_blessed_model-model-blessing-resolver"
          } <= set(tasks)
  image = config_lib.load(CONFIG).vertex.image
  containers = {name: executor["container"]
                for name, executor in spec["deploymentSpec"]["executors"].items()
                if "container" in executor}
  assert {f"{c}_executor" for c in COMPONENTS} <= set(containers)
  assert all(container["image"] == image for container in containers.values())
  assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://my-bucket/tokendrop/pipeline-root"


def test_beam_components_run_on_dataflow_and_corpus_spans_resolve_before_the_cache(compiled):
  _, job = compiled
  executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
  for name in ("CorpusGen_executor", "TokenizePack_executor"):
    args = executors[name]["container"]["args"]
    assert "--runner=DataflowRunner" in args and "--project=my-project" in args
    assert any(a.startswith("--sdk_container_image=") for a in args)
  # TFX's FileBasedExampleGen driver picks the newest {SPAN} before the cache check.
  driver = executors["CorpusGen_executor"]["container"]["lifecycle"]["preCacheCheck"]
  assert driver["command"][-1] == "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"


def test_trainer_asks_vertex_for_a_tpu_and_runs_the_token_drop_experiment(compiled):
  _, job = compiled
  trainer = job["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"]
  assert _parameter(trainer, "run_fn") == "trainer.run_fn.run_fn"
  custom = json.loads(_parameter(trainer, "custom_config"))
  assert custom["ai_platform_enable_vertex"] is True
  assert custom["ai_platform_vertex_region"] == "us-central1"
  (pool,) = custom["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]
  assert pool["machine_spec"] == {"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3",
                                  "accelerator_count": 8}
  assert custom["experiment"] == "token_drop_bert/pretraining"
  assert custom["params_override"]["runtime"]["distribution_strategy"] == "tpu"
  # TFX's Vertex trainer executor, which also records the run's key figures on the Model.
  executor = job["pipelineSpec"]["deploymentSpec"]["executors"]["Trainer_executor"]
  assert executor["container"]["args"][1] == "components.pretrain.executor.VertexExecutor"


@pytest.fixture
def recorded(monkeypatch):
  """Replaces the Vertex service calls with recorders of the requests.

  Submitting also gets or creates the pipeline root's bucket through the Cloud Storage client;
  without a network that call retries for minutes, so it is recorded too.
  """
  requests = {}

  def create_bucket_if_missing(output_artifacts_gcs_dir=None, **kwargs):
    requests.setdefault("bucket", []).append(output_artifacts_gcs_dir)

  def create_pipeline_job(self, request=None, *, parent=None, pipeline_job=None,
                          pipeline_job_id=None, **kwargs):
    requests["pipeline_job"] = (parent, pipeline_job, pipeline_job_id)
    return gca_pipeline_job.PipelineJob(
        name=f"{parent}/pipelineJobs/{pipeline_job_id}", state="PIPELINE_STATE_PENDING")

  def create_schedule(self, request=None, *, parent=None, schedule=None, **kwargs):
    requests["schedule"] = (parent, schedule)
    return gca_schedule.Schedule(name=f"{parent}/schedules/123", cron=schedule.cron)

  monkeypatch.setattr(PipelineServiceClient, "create_pipeline_job", create_pipeline_job)
  monkeypatch.setattr(ScheduleServiceClient, "create_schedule", create_schedule)
  monkeypatch.setattr(gcs_utils, "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
                      create_bucket_if_missing)
  return requests


def test_submit_sends_one_pipeline_job(compiled, recorded):
  template, _ = compiled
  config = config_lib.load(CONFIG)
  job = vertex.submit(config, str(template), credentials=google.auth.credentials.
                      AnonymousCredentials())
  parent, sent, job_id = recorded["pipeline_job"]
  assert parent == "projects/my-project/locations/us-central1"
  assert job_id.startswith("tokendrop-bert-base-")
  assert sent.runtime_config.gcs_output_directory == config.root
  assert set(sent.pipeline_spec["root"]["dag"]["tasks"]) >= COMPONENTS
  assert job.resource_name == f"{parent}/pipelineJobs/{job_id}"
  assert recorded["bucket"] == [config.root]


def test_schedule_sends_a_cron_schedule_of_the_pipeline(compiled, recorded):
  template, _ = compiled
  config = config_lib.load(CONFIG)
  vertex.schedule(config, str(template), "0 3 * * 0",
                  credentials=google.auth.credentials.AnonymousCredentials())
  parent, sent = recorded["schedule"]
  assert parent == "projects/my-project/locations/us-central1"
  assert sent.cron == "0 3 * * 0" and sent.max_concurrent_run_count == 1
  request = sent.create_pipeline_job_request
  assert request.parent == parent
  assert request.pipeline_job.runtime_config.gcs_output_directory == config.root
  assert set(request.pipeline_job.pipeline_spec["root"]["dag"]["tasks"]) >= COMPONENTS


def test_vertex_needs_a_gs_root(tmp_path):
  config = config_lib.load(CONFIG, {"root": str(tmp_path),
                                   "metadata_path": str(tmp_path / "m.sqlite")})
  with pytest.raises(UserError, match="must be a gs:// path for Vertex"):
    vertex.compile_pipeline(config, str(tmp_path / "p.json"))


@pytest.mark.e2e
def test_tfx_cli_compiles_the_vertex_runner(tmp_path):
  output = tmp_path / "pipeline.json"
  result = subprocess.run(
      ["tfx", "pipeline", "compile", "--engine=vertex",
       "--pipeline_path=pipelines/vertex_runner.py"],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env={**os.environ, "VERTEX_HOME": str(tmp_path / "home"),
           "TOKENDROP_PIPELINE_JSON": str(output)})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Pipeline tokendrop-bert-base compiled successfully." in result.stdout
  spec = json.loads(output.read_text())["pipelineSpec"]
  assert COMPONENTS <= set(spec["root"]["dag"]["tasks"])


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
  """No Application Default Credentials: no key file, an empty gcloud config, not on GCE."""
  monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
  monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
  monkeypatch.setenv("NO_GCE_CHECK", "True")


@pytest.mark.parametrize("argv,message", [
    (["submit"], "no Google Cloud credentials: submitting and scheduling use Application Default "
     "Credentials (ADC)"),
    (["schedule", "--cron", "0 3 * * 0"], "`gcloud auth application-default login`"),
    (["submit", "--template", "missing.json"], "--template missing.json does not exist; "
     "compile one with `tokendrop pipeline compile"),
    (["submit", "--template", "configs/miniature.yaml"], "--template configs/miniature.yaml is "
     "not a readable pipeline JSON"),
    (["schedule", "--cron", "0 3 * *"], "--cron '0 3 * *' must have 5 fields"),
    (["schedule", "--cron", "0 25 * * 0"], "the hour field '25' is not a number in 0-23"),
    (["schedule", "--cron", "*/0 3 * * MON"], "the minute field '*/0' is not a number"),
    (["submit", "--set", "vertex.image=tokendrop:latest"], "vertex.image 'tokendrop:latest' is "
     "not a container image in a registry"),
])
def test_cloud_command_mistakes_are_one_line_before_anything_is_sent(
    no_credentials, capfd, argv, message):
  action, *flags = argv
  assert cli.main(["pipeline", action, "--config", CONFIG, *flags]) == 2
  lines = capfd.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("tokendrop pipeline: "), lines
  assert message in lines[0]


def test_cron_expressions_vertex_takes_pass():
  for cron in ("0 3 * * 0", "*/15 0-6 1,15 * 1-5", "TZ=America/New_York 30 2 * 1-12/2 7",
               "0 4 * JAN-MAR mon-fri"):
    vertex.check_cron(cron)
