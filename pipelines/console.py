"""What a person sees of a pipeline run; everything else goes to a log file.

    with console.session("out/logs/demo.log", verbose=False) as out:
      out.stage_started("Trainer")
      ...
      out.stage_finished("Trainer", {"model": [uri], "model_run": [uri]})

Inside a session, file descriptors 1 and 2 point at the log file, so every log reaches it:
Python logging and absl (a handler at INFO on the root logger), TF's C++ logging (which
writes to fd 2 itself), warnings, stray prints, and subprocesses such as Beam workers,
which inherit the descriptors. The terminal gets only what `Console` writes: one line as
each stage starts and ends (its duration and key figure), progress lines with an ETA at
most every `progress_interval` seconds per stage, and the caller's summary; each of those
lines is also written to the log. With verbose=True a thread copies the log stream to the
terminal as well, as if there were no session.

A run that raises shows the user one line and the log's path: a UserError is re-raised
as it is (each CLI prints it as one line), any other exception is written to the log
with its traceback, its last lines go to the terminal, and RunFailed is raised from it.

Nothing here knows the orchestrator: a runner reports stages with `stage_started` and
`stage_finished(component_id, outputs)`, where outputs are the stage's output artifact
URIs by output key, and `stage_key_figure` reads the figure from those artifacts.
Progress lines are the log records whose message starts with "progress: " (the trainer's
and GLUE fine-tuning's ETA lines).
"""

import contextlib
import functools
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO

from trainer.contract import PROGRESS_PREFIX
from trainer.errors import UserError, first_line

DEFAULT_PROGRESS_INTERVAL = 20.0
# Lines of an unexpected exception's traceback shown on the terminal; the log has all of it.
FAILURE_TAIL_LINES = 6
LOG_FORMAT = "%(asctime)s %(levelname).1s %(name)s] %(message)s"


class RunFailed(Exception):
  """A run raised something other than a UserError; its message names the log."""


def format_duration(seconds: float) -> str:
  """12.3 -> "12 s", 754 -> "12 min 34 s", 7384 -> "2 h 3 min"."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds} s"
  minutes, secs = divmod(seconds, 60)
  if minutes < 60:
    return f"{minutes} min {secs} s"
  hours, minutes = divmod(minutes, 60)
  return f"{hours} h {minutes} min"


class Console:
  """The lines a person reads, each written to the terminal and to the log."""

  def __init__(self, terminal: TextIO, log: TextIO | None = None,
               progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
               clock: Callable[[], float] = time.monotonic):
    self._terminal = terminal
    self._log = log
    self._progress_interval = progress_interval
    self._clock = clock
    self._started: dict[str, float] = {}
    self._last_progress: float | None = None
    self._lock = threading.Lock()
    self.stage: str | None = None

  def line(self, text: str) -> None:
    with self._lock:
      for stream in (self._terminal, self._log):
        if stream is not None:
          stream.write(text + "\n")
          stream.flush()

  def _stamped(self, text: str) -> None:
    self.line(f"[{time.strftime('%H:%M:%S')}] {text}")

  def stage_started(self, component_id: str) -> None:
    self._started[component_id] = self._clock()
    self.stage = component_id
    self._last_progress = None
    self._stamped(f"{component_id} started")

  def stage_finished(self, component_id: str, outputs: Mapping[str, Sequence[str]],
                     properties: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                     cached: bool = False) -> None:
    """The stage's end line; `properties` and `cached` as for stage_key_figure."""
    started = self._started.pop(component_id, None)
    took = "" if started is None else f" in {format_duration(self._clock() - started)}"
    try:
      figure = stage_key_figure(component_id, outputs, properties)
    except Exception as e:  # noqa: BLE001  (a figure that cannot be read must not fail a run)
      logging.warning("no key figure for %s: %s", component_id, e, exc_info=True)
      figure = "(its figures could not be read; see the log)"
    self.stage = None
    self._stamped(f"{component_id} finished{took}{' (cached)' if cached else ''}"
                  f"{': ' + figure if figure else ''}")

  def progress(self, message: str) -> None:
    """A progress message, shown if none was shown in the last progress_interval seconds."""
    now = self._clock()
    if self._last_progress is not None and now - self._last_progress < self._progress_interval:
      return
    self._last_progress = now
    where = f"{self.stage}: " if self.stage else ""
    self._stamped(f"  {where}{message.removeprefix(PROGRESS_PREFIX)}")


class _ProgressHandler(logging.Handler):
  """Hands progress records to the console."""

  def __init__(self, console: Console):
    super().__init__(logging.INFO)
    self._console = console

  def emit(self, record: logging.LogRecord) -> None:
    message = record.getMessage()
    if message.startswith(PROGRESS_PREFIX):
      self._console.progress(message)


def _copy_stream(source_fd: int, targets: Sequence[int]) -> None:
  while chunk := os.read(source_fd, 65536):
    for target in targets:
      view = memoryview(chunk)
      while view:
        view = view[os.write(target, view):]
  os.close(source_fd)


@contextlib.contextmanager
def session(log_path: str, verbose: bool = False,
            progress_interval: float = DEFAULT_PROGRESS_INTERVAL) -> Iterator[Console]:
  """Sends fds 1 and 2 (every log) to `log_path`; yields the Console that writes the terminal.

  verbose=True also copies the log stream to the terminal. See the module docstring for
  what happens to an exception.
  """
  directory = os.path.dirname(os.path.abspath(log_path))
  os.makedirs(directory, exist_ok=True)
  sys.stdout.flush()
  sys.stderr.flush()
  # O_APPEND: the console, fds 1 and 2 and subprocesses all write to the end, never over
  # one another.
  log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
  saved_out, saved_err = os.dup(1), os.dup(2)
  terminal = os.fdopen(os.dup(saved_out), "w")
  log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115  (closed below)
  copier = None
  if verbose:
    read_end, write_end = os.pipe()
    copier = threading.Thread(target=_copy_stream, args=(read_end, (log_fd, saved_err)),
                              daemon=True)
    copier.start()
    stream_fd = write_end
  else:
    stream_fd = log_fd
  os.dup2(stream_fd, 1)
  os.dup2(stream_fd, 2)
  # Python logging writes to the stream fd itself, not to sys.stderr, which a caller (pytest's
  # capsys, for one) may have replaced.
  log_stream = open(stream_fd, "w", encoding="utf-8", buffering=1,  # noqa: SIM115
                    closefd=verbose)
  out = Console(terminal, log, progress_interval)
  root = logging.getLogger()
  saved_level = root.level
  log_handler = logging.StreamHandler(log_stream)
  log_handler.setFormatter(logging.Formatter(LOG_FORMAT))
  progress_handler = _ProgressHandler(out)
  root.addHandler(log_handler)
  root.addHandler(progress_handler)
  root.setLevel(logging.INFO)
  _absl_at_info()
  try:
    yield out
  except UserError as e:
    log.write(f"UserError: {e}\n")
    raise
  except Exception as e:
    log.write(traceback.format_exc())
    tail = traceback.format_exception(e)
    tail_lines = "".join(tail).rstrip("\n").splitlines()[-FAILURE_TAIL_LINES:]
    out.line("\n".join(tail_lines))
    raise RunFailed(f"{type(e).__name__}: {first_line(e)} (full log: {log_path})") from e
  finally:
    for handler in (log_handler, progress_handler):
      root.removeHandler(handler)
    root.setLevel(saved_level)
    sys.stdout.flush()
    sys.stderr.flush()
    log_stream.close()
    os.dup2(saved_out, 1)
    os.dup2(saved_err, 2)
    if copier is not None:
      # Beam workers may still hold the pipe; the copy stops when the last writer is gone.
      copier.join(timeout=10)
    for fd in (saved_out, saved_err, log_fd):
      os.close(fd)
    terminal.close()
    log.close()


def _absl_at_info() -> None:
  """TFX and Model Garden log through absl; without this its INFO records are dropped."""
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.INFO)


# --- Key figures, read from a stage's output artifacts -------------------------------------

def _only(outputs: Mapping[str, Sequence[str]], key: str) -> str | None:
  uris = outputs.get(key) or ()
  return uris[0] if uris else None


def _read_json(path: str) -> dict | None:
  import tensorflow as tf

  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _corpus_figure(outputs, properties) -> str:
  import tensorflow as tf

  uri = _only(outputs, "examples")
  if uri is None:
    return ""
  files = tf.io.gfile.glob(os.path.join(uri, "Split-*", "*"))
  documents = int(tf.data.TFRecordDataset(files, compression_type="GZIP").reduce(
      0, lambda count, _: count + 1)) if files else 0
  figure = f"{documents:,} documents"
  span = ((properties or {}).get("examples") or [{}])[0].get("span")
  return figure + (f", span {span}" if span is not None else "")


def _tokenize_pack_figure(outputs, properties) -> str:
  from trainer import contract

  uri = _only(outputs, "statistics")
  stats = uri and _read_json(os.path.join(uri, contract.DATA_STATS_FILE))
  if not stats:
    return ""
  examples = stats["examples"]
  return (f"{stats['documents']['kept']:,} documents -> {examples['total']:,} examples "
          f"({examples['train']:,} train, {examples['validation']:,} validation), "
          f"packing efficiency {stats['packing']['efficiency']:.1%}")


def _trainer_figure(outputs, properties) -> str:
  import yaml

  from trainer import contract

  uri = _only(outputs, "model")
  if uri is None:
    return ""
  export_dir = os.path.join(uri, contract.SERVING_SUBDIR)
  parts = []
  params_path = os.path.join(export_dir, contract.TRAINING_PARAMS_FILE)
  import tensorflow as tf

  if tf.io.gfile.exists(params_path):
    with tf.io.gfile.GFile(params_path) as f:
      params = yaml.load(f, Loader=yaml.FullLoader)
    parts.append(f"{params['trainer']['train_steps']:,} steps")
  metrics = _read_json(os.path.join(export_dir, contract.EVAL_METRICS_FILE))
  if metrics and "validation_loss" in metrics:
    loss = f"validation MLM loss {metrics['validation_loss']:.4f} at full depth"
    as_trained = metrics.get("validation_loss" + contract.AS_TRAINED_SUFFIX)
    if as_trained is not None:
      loss += f", {as_trained:.4f} as trained"
    parts.append(loss + f" (step {metrics['step']:,})")
  return "; ".join(parts)


def _glue_figure(outputs, properties) -> str:
  from trainer import contract

  uri = _only(outputs, "evaluation")
  report = uri and _read_json(os.path.join(uri, contract.GLUE_REPORT_JSON))
  if not report:
    return ""
  figure = f"GLUE score {report['glue_score']:.4f}"
  blessing = report.get("blessing")
  if blessing:
    figure += "; blessed" if blessing["blessed"] else f"; not blessed: {blessing['reason']}"
  return figure


def _pusher_figure(outputs, properties) -> str:
  from components.publish import publish

  uri = _only(outputs, "pushed_model")
  record = uri and _read_json(os.path.join(uri, publish.PUSH_RECORD_FILE))
  if not record:
    return ""
  if record["pushed"]:
    return f"published {record['destination']}"
  return f"not pushed: {record['reason']}"


def _other_figure(outputs, properties) -> str:
  """For a stage without its own figure (the resolver): how many artifacts of each output."""
  if not any(outputs.values()):
    return "no artifacts"
  return ", ".join(f"{key}: {len(uris)}" for key, uris in sorted(outputs.items()))


@functools.cache
def _figures() -> dict[str, Callable]:
  # Imported here: a session starts before TF and TFX are imported, so their import-time
  # logs go to the log file too.
  from tfx import v1 as tfx

  from components.corpus_gen.component import CorpusGen
  from components.glue_eval.component import GlueEvaluator
  from components.publish.component import BertPusher
  from components.tokenize_pack.component import TokenizePack

  # A component's id is its class name unless the pipeline sets another (pipelines/pipeline.py).
  return {CorpusGen.__name__: _corpus_figure, TokenizePack.__name__: _tokenize_pack_figure,
          tfx.components.Trainer.__name__: _trainer_figure,
          GlueEvaluator.__name__: _glue_figure, BertPusher.__name__: _pusher_figure}


def stage_key_figure(component_id: str, outputs: dict[str, list[str]],
                     properties: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> str:
  """A stage's key figure, read from its output artifacts.

  Args:
    component_id: the pipeline node id (CorpusGen, TokenizePack, Trainer, GlueEvaluator,
      BertPusher; any other id gets a count of its output artifacts).
    outputs: output key -> the URIs of its artifacts, e.g. {"statistics": [uri]}.
    properties: optionally, output key -> each artifact's custom properties, as MLMD or
      executor_output.json hold them; CorpusGen's span is read from there.
  Returns:
    e.g. "25,000 documents, span 1", or "" when the artifacts hold no figure.
  """
  return _figures().get(component_id, _other_figure)(outputs, properties)
