"""Local runs: LocalDagRunner with SQLite MLMD and Beam's DirectRunner.

Also the `--pipeline_path` for the standard tfx CLI:

    tfx pipeline create --engine=local --pipeline_path=pipelines/local_runner.py
    tfx run create --engine=local --pipeline_name=tokendrop-local-tiny

TOKENDROP_PIPELINE_CONFIG picks the config (default configs/pipeline_local_tiny.yaml).
"""

import contextlib
import logging
import os
from collections.abc import Iterator

from tfx import v1 as tfx

from components.corpus_gen.packaged import prepare_packaged_corpus
from components.glue_eval.miniature import prepare_packaged_glue
from pipelines import config as config_lib
from pipelines import metadata, pipeline
from pipelines.config import PipelineConfig
from pipelines.observer import StageObserver
from trainer.errors import UserError

ABSL_LOGGER = "absl"  # absl.logging's Python logger, which TFX logs through


def check_direct_runner(config: PipelineConfig) -> None:
  args = config.beam_pipeline_args
  if not any(a.startswith("--direct_running_mode=") for a in args):
    raise UserError(
        "beam_pipeline_args must set --direct_running_mode (in_memory, multi_threading or "
        "multi_processing) for a local run, so the runner's behaviour is explicit")


class StageReporter(logging.Handler):
  """Turns LocalDagRunner's "Component X is running/finished." log records into an observer's
  stage calls, each stage's outputs read from MLMD. It hears them while `attached`."""

  # LocalDagRunner's messages (tfx/orchestration/local/local_dag_runner.py).
  RUNNING, FINISHED = "Component %s is running.", "Component %s is finished."

  def __init__(self, config: PipelineConfig, observer: StageObserver):
    super().__init__(logging.INFO)
    self._config = config
    self._observer = observer
    self._before: dict[str, int] = {}

  @contextlib.contextmanager
  def attached(self) -> Iterator[None]:
    """LocalDagRunner logs through absl's logger at INFO. Above INFO (it inherits the root
    logger's WARNING unless absl's verbosity was set), that logger drops the records before any
    handler sees them, so it is at INFO meanwhile."""
    absl_logger = logging.getLogger(ABSL_LOGGER)
    saved_level = absl_logger.level
    if not absl_logger.isEnabledFor(logging.INFO):
      absl_logger.setLevel(logging.INFO)
    absl_logger.addHandler(self)
    try:
      yield
    finally:
      absl_logger.removeHandler(self)
      absl_logger.setLevel(saved_level)

  def emit(self, record: logging.LogRecord) -> None:
    if record.msg not in (self.RUNNING, self.FINISHED) or not record.args:
      return
    node_id = record.args[0]
    outputs, cached = {}, False
    try:
      if record.msg == self.RUNNING:
        self._before[node_id] = metadata.latest_execution_id(self._config.metadata_path)
      else:
        outputs, cached = metadata.node_outputs(
            self._config.metadata_path, self._config.name, node_id, self._before.pop(node_id, 0))
    except Exception:  # noqa: BLE001  (what the terminal shows must not fail the run)
      logging.warning("could not read %s's executions from ML Metadata", node_id, exc_info=True)
    if record.msg == self.RUNNING:
      self._observer.stage_started(node_id)
    else:
      self._observer.stage_finished(node_id, outputs, cached)


def run(config: PipelineConfig, observer: StageObserver | None = None) -> None:
  """Runs the pipeline on LocalDagRunner; with `observer`, reports each stage to it."""
  if config.is_cloud:
    raise UserError(f"{config.name} has a gs:// root: compile and submit it to Vertex "
                    "(tokendrop pipeline compile/submit), or use a local config")
  check_direct_runner(config)
  prepare_packaged_corpus(config.corpus.packaged, config.corpus.input_base,
                          config.corpus.file_pattern, config.corpus.packaged_documents)
  prepare_packaged_glue(config.glue.packaged, config.glue.tasks, config.glue.glue_dir)
  os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
  with (StageReporter(config, observer).attached() if observer is not None
        else contextlib.nullcontext()):
    tfx.orchestration.LocalDagRunner().run(pipeline.create_pipeline(config))


DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "pipeline_local_tiny.yaml")

if __name__ == "__main__":
  run(config_lib.load(os.environ.get("TOKENDROP_PIPELINE_CONFIG", DEFAULT_CONFIG)))
