"""Local runs: LocalDagRunner with SQLite MLMD and Beam's DirectRunner."""

import glob
import os

from tfx import v1 as tfx

from components.tokenize_pack import read
from pipelines import pipeline
from pipelines.config import PipelineConfig, PipelineConfigError


def prepare_local_corpus(config: PipelineConfig) -> None:
  """With `corpus.packaged`, writes that packaged corpus as span 1 if no span exists yet."""
  if not config.corpus.packaged:
    return
  base = config.corpus.input_base
  if glob.glob(os.path.join(base, config.corpus.file_pattern.replace("{SPAN}", "*")
                            .replace("{VERSION}", "*"))):
    return
  span_dir = os.path.join(base, "span-1")
  os.makedirs(span_dir, exist_ok=True)
  read.export_packaged_corpus(config.corpus.packaged, span_dir)


def check_direct_runner(config: PipelineConfig) -> None:
  args = config.beam_pipeline_args
  if not any(a.startswith("--direct_running_mode=") for a in args):
    raise PipelineConfigError(
        "beam_pipeline_args must set --direct_running_mode (in_memory, multi_threading or "
        "multi_processing) for a local run, so the runner's behaviour is explicit")


def run(config: PipelineConfig) -> None:
  if config.is_cloud:
    raise PipelineConfigError(f"{config.name} has a gs:// root: compile and submit it to Vertex "
                              "(tokendrop pipeline compile/submit), or use a local config")
  check_direct_runner(config)
  prepare_local_corpus(config)
  os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
  tfx.orchestration.LocalDagRunner().run(pipeline.create_pipeline(config))
