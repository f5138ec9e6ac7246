"""Local runs: LocalDagRunner with SQLite MLMD and Beam's DirectRunner.

Also the `--pipeline_path` for the standard tfx CLI:

    tfx pipeline create --engine=local --pipeline_path=pipelines/local_runner.py
    tfx run create --engine=local --pipeline_name=tokendrop-local-tiny

TOKENDROP_PIPELINE_CONFIG picks the config (default configs/pipeline_local_tiny.yaml).
"""

import glob
import json
import os

from tfx import v1 as tfx

from components.common import corpus
from pipelines import config as config_lib
from pipelines import pipeline
from pipelines.config import PipelineConfig
from trainer import contract
from trainer.errors import UserError


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
  corpus.export_packaged_corpus(config.corpus.packaged, span_dir)


def check_direct_runner(config: PipelineConfig) -> None:
  args = config.beam_pipeline_args
  if not any(a.startswith("--direct_running_mode=") for a in args):
    raise UserError(
        "beam_pipeline_args must set --direct_running_mode (in_memory, multi_threading or "
        "multi_processing) for a local run, so the runner's behaviour is explicit")


def run(config: PipelineConfig) -> None:
  if config.is_cloud:
    raise UserError(f"{config.name} has a gs:// root: compile and submit it to Vertex "
                              "(tokendrop pipeline compile/submit), or use a local config")
  check_direct_runner(config)
  prepare_local_corpus(config)
  os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
  tfx.orchestration.LocalDagRunner().run(pipeline.create_pipeline(config))


def published_versions(destination: str) -> list[str]:
  """The version directories under a local push destination."""
  if not os.path.isdir(destination):
    return []
  return sorted(name for name in os.listdir(destination) if not name.startswith("."))


def summary(config: PipelineConfig, before: set[str]) -> list[str]:
  """What a run published (versions not in `before`), read from its model card."""
  new = sorted(set(published_versions(config.push.destination)) - before)
  if not new:
    return [f"No new version was published (not blessed, or cached); see {config.root}"]
  published = os.path.join(config.push.destination, new[-1])
  with open(os.path.join(published, contract.MODEL_CARD_JSON), encoding="utf-8") as f:
    card = json.load(f)
  lines = [f"Published checkpoint: {published}/{contract.TF2_DIR} (BertEncoderV2), "
           f"{published}/{contract.HF_DIR} (transformers)",
           f"GLUE report:          {published}/{contract.GLUE_REPORT_MD}",
           f"Model card:           {published}/{contract.MODEL_CARD_MD}"]
  pretraining = card.get("pretraining", {})
  if "validation_loss" in pretraining:
    lines.append(f"Validation MLM loss {pretraining['validation_loss']:.4f} at full depth, "
                 f"{pretraining.get('validation_loss_as_trained', float('nan')):.4f} as trained "
                 f"(step {pretraining.get('validation_step')})")
  lines.append(f"GLUE score {card['evaluation']['glue_score']:.4f} on "
               f"{card['evaluation']['tasks']}; data: {card['data']['examples']['train']} "
               f"training examples, packing efficiency "
               f"{card['data']['packing']['efficiency']:.4f}")
  return lines


DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "pipeline_local_tiny.yaml")

if __name__ == "__main__":
  run(config_lib.load(os.environ.get("TOKENDROP_PIPELINE_CONFIG", DEFAULT_CONFIG)))
