"""Vertex AI Pipelines: compile with KubeflowV2DagRunner, submit a PipelineJob, schedule it.

Submitting and scheduling need Google Cloud credentials (Application Default
Credentials, or `credentials=`). Nothing here pretends to have run in the cloud:
each function returns what Vertex returned.

Also the `--pipeline_path` for the tfx CLI:

    tfx pipeline compile --engine=vertex --pipeline_path=pipelines/vertex_runner.py

TOKENDROP_PIPELINE_CONFIG picks the config (default configs/pipeline_vertex_base_tpu.yaml);
TOKENDROP_PIPELINE_JSON the output file (default <pipeline name>_pipeline.json). A config with a
stage that `tokendrop pipeline plan` finds cannot finish within its service's limit is
refused, unless TOKENDROP_ALLOW_LONG is set (--allow-long's equivalent).
"""

import json
import os
import re

from google.cloud import aiplatform
from tfx import v1 as tfx

from pipelines import config as config_lib
from pipelines import pipeline
from pipelines.config import PipelineConfig
from trainer import contract
from trainer.errors import UserError, first_line

# A rehearsal never pulls an image: it runs each task's command in the project's environment,
# which is built from the same lock as the image. The name only fills the spec's image field.
REHEARSAL_IMAGE = "tokendrop-rehearsal:local"


# A container image reference as Docker and Vertex read it: a registry host (with a dot or a
# port, or localhost), a lowercase path, and a tag or a digest.
_IMAGE = re.compile(
    r"^(?P<registry>(?:[a-zA-Z0-9-]+\.)+[a-zA-Z0-9-]+(?::[0-9]+)?|localhost(?::[0-9]+)?)"
    r"/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")
# A cron field: *, a number, a range, a list, each with an optional /step.
_CRON_RANGES = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 7))
_CRON_NUMBERS = {**{m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL",
                                                 "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)},
                 **{d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}}
_CRON_NAMES = re.compile(r"\b[a-zA-Z]{3}\b")
_CRON_PART = re.compile(r"^(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$")


def check_config(config: PipelineConfig) -> None:
  if config.vertex is None:
    raise UserError(f"{config.name} has no vertex: section; Vertex needs project, "
                              "region and image")
  missing = [k for k in ("project", "region", "image") if not getattr(config.vertex, k)]
  if missing:
    raise UserError(f"vertex.{', vertex.'.join(missing)} must be set")
  if not config.is_cloud:
    raise UserError(f"root {config.root!r} must be a gs:// path for Vertex")
  check_image(config.vertex.image, "vertex.image")
  for key, job in (("training", config.training.vertex), ("glue", config.glue.vertex)):
    if job is not None:
      check_image(job.image, f"{key}.vertex.image")
  from apache_beam.options.pipeline_options import PipelineOptions, WorkerOptions

  sdk_image = PipelineOptions(config.beam_pipeline_args).view_as(WorkerOptions).sdk_container_image
  if sdk_image:
    check_image(sdk_image, f"beam_pipeline_args {config_lib.SDK_CONTAINER_IMAGE_FLAG}")


def check_image(image: str, key: str) -> None:
  """Refuses an image reference that no registry could serve."""
  if not _IMAGE.match(image):
    raise UserError(f"{key} {image!r} is not a container image in a registry; give "
                    "REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE:TAG (Artifact Registry), as "
                    "pushed by the README's build step")


def check_cron(cron: str) -> None:
  """Refuses what Vertex's scheduler would: a cron expression other than five fields of
  minute, hour, day of month, month and day of week (numbers, *, ranges, lists, /steps),
  optionally after TZ=ZONE or CRON_TZ=ZONE."""
  fields = cron.split()
  if fields and fields[0].startswith(("TZ=", "CRON_TZ=")):
    fields = fields[1:]
  example = 'e.g. "0 3 * * 0" (Sundays 03:00 UTC)'
  if len(fields) != 5:
    raise UserError(f"--cron {cron!r} must have 5 fields (minute hour day-of-month month "
                    f"day-of-week), {example}")
  for index, (field, (name, low, high)) in enumerate(zip(fields, _CRON_RANGES, strict=True)):
    numbered = field if index < 3 else _CRON_NAMES.sub(
        lambda m: str(_CRON_NUMBERS.get(m.group(0).upper(), m.group(0))), field)
    for part in numbered.split(","):
      match = _CRON_PART.match(part)
      valid = False
      if match:
        start, end, step = (None if n is None else int(n) for n in match.groups()[1:])
        valid = (all(low <= n <= high for n in (start, end) if n is not None)
                 and (end is None or start <= end) and step != 0)
      if not valid:
        raise UserError(f"--cron {cron!r}: the {name} field {field!r} is not a number in "
                        f"{low}-{high}, *, a range, a list or a /step; {example}")


def check_template(template: str) -> None:
  """Refuses a --template that is not a readable compiled pipeline JSON."""
  try:
    with open(template, encoding="utf-8") as f:
      job = json.load(f)
  except FileNotFoundError:
    raise UserError(f"--template {template} does not exist; compile one with `tokendrop "
                    "pipeline compile --config ... --output FILE.json`, or leave --template out "
                    "to compile the config first") from None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f"--template {template} is not a readable pipeline JSON ({first_line(e)}); "
                    "pass the file `tokendrop pipeline compile` wrote") from None
  if not isinstance(job, dict) or "pipelineSpec" not in job:
    raise UserError(f"--template {template} has no pipelineSpec: it is not a compiled pipeline; "
                    "pass the file `tokendrop pipeline compile` wrote")


def check_credentials() -> None:
  """Refuses to start without Application Default Credentials, before anything is compiled."""
  import google.auth
  from google.auth import exceptions

  try:
    google.auth.default()
  except exceptions.DefaultCredentialsError:
    raise UserError(
        "no Google Cloud credentials: submitting and scheduling use Application Default "
        "Credentials (ADC), the account Google's client libraries find by themselves; set "
        "them up with `gcloud auth application-default login`, or point "
        "GOOGLE_APPLICATION_CREDENTIALS at a service account's key file") from None


def compile_pipeline(config: PipelineConfig, output: str) -> str:
  """Writes the Vertex pipeline JSON; returns its path."""
  check_config(config)
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
  with open(output, encoding="utf-8") as f:
    job = json.load(f)
  _scope_latest_blessed(job, config)
  _set_training_retries(job, config)
  with open(output, "w", encoding="utf-8") as f:
    json.dump(job, f, indent=2, sort_keys=True)
  return os.path.abspath(output)


def _scope_latest_blessed(job: dict, config: PipelineConfig) -> None:
  """Limits the latest-blessed-model query to this pipeline's blessings. TFX compiles it as
  every live blessed ModelBlessing in the project's metadata, which on Vertex every pipeline
  of the project and region shares; GlueEvaluator records the pipeline's name on each
  blessing (contract.PIPELINE_NAME), and the model query follows the blessing."""
  term = f" AND metadata.{contract.PIPELINE_NAME}.string_value={json.dumps(config.name)}"
  scoped = 0
  for executor in job["pipelineSpec"]["deploymentSpec"]["executors"].values():
    for query in executor.get("resolver", {}).get("outputArtifactQueries", {}).values():
      if query["filter"].startswith('schema_title="tfx.ModelBlessing"'):
        query["filter"] += term
        scoped += 1
  if scoped != 1:
    raise RuntimeError(f"expected one latest-blessed-model query in the compiled pipeline, "
                       f"found {scoped}: TFX's compiler changed; update _scope_latest_blessed")


def _set_training_retries(job: dict, config: PipelineConfig) -> None:
  """Gives the training task the retry policy that training.vertex.retries asks for (TFX's
  compiler sets none). A retried task starts a new custom job, which resumes from the
  checkpoints of the one that failed (trainer/run_fn.py, checkpoint_root)."""
  if config.training.vertex is None or not config.training.vertex.retries:
    return
  job["pipelineSpec"]["root"]["dag"]["tasks"][pipeline.TRAINER_ID]["retryPolicy"] = {
      "maxRetryCount": config.training.vertex.retries,
      # Vertex's defaults but the first wait: a TPU VM after a maintenance event, or a
      # stockout, needs minutes rather than seconds.
      "backoffDuration": "300s", "backoffFactor": 2.0, "backoffMaxDuration": "3600s"}


def pipeline_job(config: PipelineConfig, template: str, credentials=None) -> aiplatform.PipelineJob:
  check_config(config)
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
  if not os.environ.get("TOKENDROP_ALLOW_LONG"):
    from pipelines import plan

    # As `tokendrop pipeline compile` without --allow-long.
    plan.check_limits(plan.make_plan(pipeline_config))
  compile_pipeline(pipeline_config, os.environ.get("TOKENDROP_PIPELINE_JSON",
                                                   f"{pipeline_config.name}_pipeline.json"))
