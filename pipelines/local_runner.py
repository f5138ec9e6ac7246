"""Local runs: LocalDagRunner with SQLite MLMD and Beam's DirectRunner.

Also the `--pipeline_path` for the standard tfx CLI:

    tfx pipeline create --engine=local --pipeline_path=pipelines/local_runner.py
    tfx run create --engine=local --pipeline_name=tokendrop-local-tiny

TOKENDROP_PIPELINE_CONFIG picks the config (default configs/pipeline_local_tiny.yaml).
"""

import glob
import json
import logging
import os

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.dsl.compiler import constants as compiler_constants

from components.common import corpus
from pipelines import config as config_lib
from pipelines import console, pipeline
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


def node_outputs(metadata_path: str, pipeline_name: str, node_id: str,
                 after_execution_id: int = 0) -> tuple[dict, dict, bool]:
  """A node's latest execution in MLMD, if newer than `after_execution_id`: its output URIs
  and artifact properties by output key, and whether it was a cache hit."""
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = metadata_path
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  store = metadata_store.MetadataStore(connection)
  context = store.get_context_by_type_and_name(compiler_constants.NODE_CONTEXT_TYPE_NAME,
                                               f"{pipeline_name}.{node_id}")
  executions = store.get_executions_by_context(context.id) if context else []
  latest = max(executions, key=lambda e: e.id, default=None)
  if latest is None or latest.id <= after_execution_id:
    return {}, {}, False
  # A resolver's execution links what it resolved as INTERNAL_OUTPUT.
  output_types = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INTERNAL_OUTPUT)
  events = [e for e in store.get_events_by_execution_ids([latest.id]) if e.type in output_types]
  artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  outputs: dict[str, list[str]] = {}
  properties: dict[str, list[dict]] = {}
  for event in sorted(events, key=lambda e: e.artifact_id):
    artifact = artifacts[event.artifact_id]
    key = event.path.steps[0].key
    outputs.setdefault(key, []).append(artifact.uri)
    properties.setdefault(key, []).append(
        {name: getattr(value, value.WhichOneof("value"))
         for props in (artifact.properties, artifact.custom_properties)
         for name, value in props.items() if value.WhichOneof("value")})
  return outputs, properties, latest.last_known_state == metadata_store_pb2.Execution.CACHED


def latest_execution_id(metadata_path: str) -> int:
  if not os.path.exists(metadata_path):
    return 0
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = metadata_path
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return max((e.id for e in metadata_store.MetadataStore(connection).get_executions()),
             default=0)


class StageReporter(logging.Handler):
  """Turns LocalDagRunner's "Component X is running/finished." log records into the
  console's stage lines, each stage's outputs read from MLMD."""

  # LocalDagRunner's messages (tfx/orchestration/local/local_dag_runner.py).
  RUNNING, FINISHED = "Component %s is running.", "Component %s is finished."

  def __init__(self, config: PipelineConfig, out: console.Console):
    super().__init__(logging.INFO)
    self._config = config
    self._out = out
    self._before: dict[str, int] = {}

  def emit(self, record: logging.LogRecord) -> None:
    if record.msg not in (self.RUNNING, self.FINISHED) or not record.args:
      return
    node_id = record.args[0]
    outputs, properties, cached = {}, {}, False
    try:
      if record.msg == self.RUNNING:
        self._before[node_id] = latest_execution_id(self._config.metadata_path)
      else:
        outputs, properties, cached = node_outputs(
            self._config.metadata_path, self._config.name, node_id, self._before.pop(node_id, 0))
    except Exception:  # noqa: BLE001  (what the terminal shows must not fail the run)
      logging.warning("could not read %s's executions from ML Metadata", node_id, exc_info=True)
    if record.msg == self.RUNNING:
      self._out.stage_started(node_id)
    else:
      self._out.stage_finished(node_id, outputs, properties, cached)


def run(config: PipelineConfig, out: console.Console | None = None) -> None:
  """Runs the pipeline on LocalDagRunner; with `out`, reports each stage there."""
  if config.is_cloud:
    raise UserError(f"{config.name} has a gs:// root: compile and submit it to Vertex "
                              "(tokendrop pipeline compile/submit), or use a local config")
  check_direct_runner(config)
  prepare_local_corpus(config)
  os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
  reporter = StageReporter(config, out) if out is not None else None
  if reporter is not None:
    logging.getLogger().addHandler(reporter)
  try:
    tfx.orchestration.LocalDagRunner().run(pipeline.create_pipeline(config))
  finally:
    if reporter is not None:
      logging.getLogger().removeHandler(reporter)


def published_versions(destination: str) -> list[str]:
  """The version directories under a local push destination."""
  if not os.path.isdir(destination):
    return []
  return sorted(name for name in os.listdir(destination) if not name.startswith("."))


def summary(config: PipelineConfig, before: set[str]) -> list[str]:
  """What a run published (versions not in `before`), read from its model card."""
  new = sorted(set(published_versions(config.push.destination)) - before)
  if not new:
    return ["No new version was published (the model was not blessed, or every stage was "
            f"cached); the run's artifacts are under {config.root}"]
  published = os.path.join(config.push.destination, new[-1])
  with open(os.path.join(published, contract.MODEL_CARD_JSON), encoding="utf-8") as f:
    card = json.load(f)
  evaluation = card["evaluation"]
  lines = [f"Published {published}/",
           f"  {contract.TF2_DIR}/ (Model Garden BertEncoderV2), {contract.HF_DIR}/ "
           f"(Hugging Face transformers), {contract.MODEL_CARD_MD}, {contract.GLUE_REPORT_MD}",
           f"  GLUE score {evaluation['glue_score']:.4f} on {', '.join(evaluation['tasks'])}"]
  pretraining = card.get("pretraining", {})
  if "validation_loss" in pretraining:
    as_trained = pretraining.get("validation_loss" + contract.AS_TRAINED_SUFFIX)
    lines.append(f"  validation MLM loss {pretraining['validation_loss']:.4f} at full depth" +
                 (f", {as_trained:.4f} as trained" if as_trained is not None else "") +
                 f" (step {pretraining.get('validation_step')})")
  data = card.get("data", {})
  if data:
    lines.append(f"  data: {data['examples']['train']:,} training examples, packing "
                 f"efficiency {data['packing_efficiency']:.1%}")
  return lines


DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "pipeline_local_tiny.yaml")

if __name__ == "__main__":
  run(config_lib.load(os.environ.get("TOKENDROP_PIPELINE_CONFIG", DEFAULT_CONFIG)))
