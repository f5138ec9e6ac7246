"""Vertex AI Pipelines: compile with KubeflowV2DagRunner, submit a PipelineJob, schedule it.

Submitting and scheduling need Google Cloud credentials (Application Default
Credentials, or `credentials=`). Nothing here pretends to have run in the cloud:
each function returns what Vertex returned.

Also the `--pipeline_path` for the tfx CLI:

    tfx pipeline compile --engine=vertex --pipeline_path=pipelines/vertex_runner.py

TOKENDROP_PIPELINE_CONFIG picks the config (default configs/pipeline_vertex_base_tpu.yaml);
TOKENDROP_PIPELINE_JSON the output file (default <pipeline name>_pipeline.json).
"""

import os

from google.cloud import aiplatform
from tfx import v1 as tfx

from pipelines import config as config_lib
from pipelines import pipeline
from pipelines.config import PipelineConfig
from trainer.errors import UserError

# A rehearsal never pulls an image: it runs each task's command in the project's environment,
# which is built from the same lock as the image. The name only fills the spec's image field.
REHEARSAL_IMAGE = "tokendrop-rehearsal:local"


def _check(config: PipelineConfig) -> None:
  if config.vertex is None:
    raise UserError(f"{config.name} has no vertex: section; Vertex needs project, "
                              "region and image")
  missing = [k for k in ("project", "region", "image") if not getattr(config.vertex, k)]
  if missing:
    raise UserError(f"vertex.{', vertex.'.join(missing)} must be set")
  if not config.is_cloud:
    raise UserError(f"root {config.root!r} must be a gs:// path for Vertex")


def compile_pipeline(config: PipelineConfig, output: str) -> str:
  """Writes the Vertex pipeline JSON; returns its path."""
  _check(config)
  return _compile(config, output, config.vertex.image)


def compile_for_rehearsal(config: PipelineConfig, output: str) -> str:
  """The same compilation for a local config (pipelines/rehearsal/): a local root, and
  REHEARSAL_IMAGE where the project's image would be."""
  if config.is_cloud:
    raise UserError(f"root {config.root!r} is on gs://; a rehearsal writes a local root, so "
                    "use a local config (e.g. configs/pipeline_local_tiny.yaml)")
  return _compile(config, output, REHEARSAL_IMAGE)


def _compile(config: PipelineConfig, output: str, image: str) -> str:
  directory = os.path.dirname(os.path.abspath(output))
  os.makedirs(directory, exist_ok=True)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
      output_dir=directory, output_filename=os.path.basename(output))
  runner.run(pipeline.create_pipeline(config))
  return os.path.abspath(output)


def pipeline_job(config: PipelineConfig, template: str, credentials=None) -> aiplatform.PipelineJob:
  _check(config)
  aiplatform.init(project=config.vertex.project, location=config.vertex.region,
                  credentials=credentials)
  return aiplatform.PipelineJob(
      display_name=config.name, template_path=template, pipeline_root=config.root,
      enable_caching=config.enable_cache, project=config.vertex.project,
      location=config.vertex.region, credentials=credentials)


def submit(config: PipelineConfig, template: str, credentials=None) -> aiplatform.PipelineJob:
  """Starts one run; returns the job (its resource_name names it in the console)."""
  job = pipeline_job(config, template, credentials)
  job.submit(service_account=config.vertex.service_account or None)
  return job


def schedule(config: PipelineConfig, template: str, cron: str, max_concurrent_runs: int = 1,
             credentials=None) -> aiplatform.PipelineJobSchedule:
  """Creates a Vertex pipeline schedule: scheduled retraining, e.g. cron "0 3 * * 0".

  Each scheduled run ingests the newest corpus span and warm-starts from the latest
  blessed model (see pipelines/pipeline.py).
  """
  job = pipeline_job(config, template, credentials)
  job_schedule = aiplatform.PipelineJobSchedule(pipeline_job=job,
                                                display_name=f"{config.name}-schedule",
                                                credentials=credentials)
  job_schedule.create(cron=cron, max_concurrent_run_count=max_concurrent_runs,
                      service_account=config.vertex.service_account or None)
  return job_schedule


DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "pipeline_vertex_base_tpu.yaml")

if __name__ == "__main__":
  pipeline_config = config_lib.load(os.environ.get("TOKENDROP_PIPELINE_CONFIG", DEFAULT_CONFIG))
  compile_pipeline(pipeline_config, os.environ.get("TOKENDROP_PIPELINE_JSON",
                                                   f"{pipeline_config.name}_pipeline.json"))
