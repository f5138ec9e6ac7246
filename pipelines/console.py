"""What a person sees of a pipeline run; everything else goes to a log file.

    with console.session("out/logs/demo.log", verbose=False) as out:
      out.stage_started("Trainer")
      ...
      out.stage_finished("Trainer", {"model": [OutputArtifact(uri, {"train_steps": 300})]})

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

Nothing here knows the orchestrator or the components: `Console` is a StageObserver
(pipelines/observer.py), which each runner tells of stages starting and finishing, with each
stage's output artifacts. A stage's key figure is made of the properties its component
recorded on those artifacts, read by their names in trainer/contract.py
(`stage_key_figure`); no file is read. Progress lines are the log records whose message
starts with "progress: " (the trainer's and GLUE fine-tuning's ETA lines).
"""

import contextlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from pipelines.observer import StageOutputs
from trainer import contract
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
  """The lines a person reads, each written to the terminal and to the log; a StageObserver."""

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

  def stage_started(self, stage: str) -> None:
    self._started[stage] = self._clock()
    self.stage = stage
    self._last_progress = None
    self._stamped(f"{stage} started")

  def stage_finished(self, stage: str, outputs: StageOutputs, cached: bool = False) -> None:
    """The stage's end line: its duration, whether it was cached, its key figure."""
    started = self._started.pop(stage, None)
    took = "" if started is None else f" in {format_duration(self._clock() - started)}"
    try:
      figure = stage_key_figure(stage, outputs)
    except Exception as e:  # noqa: BLE001  (a figure that cannot be read must not fail a run)
      logging.warning("no key figure for %s: %s", stage, e, exc_info=True)
      figure = "(its figures could not be read; see the log)"
    self.stage = None
    self._stamped(f"{stage} finished{took}{' (cached)' if cached else ''}"
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


# --- Key figures, from the properties of a stage's output artifacts ------------------------
# Counts arrive as ints from ML Metadata and as floats from Vertex's artifact metadata (the
# rehearsal's), hence the int() before formatting them.

def _property(outputs: StageOutputs, key: str, name: str) -> Any:
  """Property `name` of the first artifact under output `key`; None if either is missing."""
  artifacts = outputs.get(key) or ()
  return artifacts[0].properties.get(name) if artifacts else None


def _corpus_figure(outputs: StageOutputs) -> str:
  documents = _property(outputs, "examples", contract.DOCUMENTS_WRITTEN)
  span = _property(outputs, "examples", contract.SPAN)
  parts = ([f"{int(documents):,} documents"] if documents is not None else []) + (
      [f"span {int(span)}"] if span is not None else [])
  return ", ".join(parts)


def _tokenize_pack_figure(outputs: StageOutputs) -> str:
  def count(name: str) -> int | None:
    value = _property(outputs, "statistics", name)
    return None if value is None else int(value)

  kept, train, validation = (count(contract.DOCUMENTS_KEPT), count(contract.EXAMPLES_TRAIN),
                             count(contract.EXAMPLES_VALIDATION))
  efficiency = _property(outputs, "statistics", contract.PACKING_EFFICIENCY)
  if None in (kept, train, validation, efficiency):
    return ""
  return (f"{kept:,} documents -> {train + validation:,} examples "
          f"({train:,} train, {validation:,} validation), packing efficiency {efficiency:.1%}")


def _trainer_figure(outputs: StageOutputs) -> str:
  skipped = _property(outputs, "model", contract.TRAINING_SKIPPED)
  if skipped:
    return f"not trained: {skipped}"
  steps = _property(outputs, "model", contract.TRAIN_STEPS)
  loss = _property(outputs, "model", contract.VALIDATION_LOSS)
  parts = [f"{int(steps):,} steps"] if steps is not None else []
  if loss is not None:
    validation = f"validation MLM loss {loss:.4f} at full depth"
    as_trained = _property(outputs, "model", contract.VALIDATION_LOSS_AS_TRAINED)
    if as_trained is not None:
      validation += f", {as_trained:.4f} as trained"
    step = _property(outputs, "model", contract.VALIDATION_STEP)
    parts.append(validation + (f" (step {int(step):,})" if step is not None else ""))
  return "; ".join(parts)


def _glue_figure(outputs: StageOutputs) -> str:
  score = _property(outputs, "evaluation", contract.GLUE_SCORE)
  if score is None:
    message = _property(outputs, "blessing", contract.BLESSING_MESSAGE)
    return message or ""
  figure = f"GLUE score {score:.4f}"
  blessed = _property(outputs, "blessing", contract.BLESSED)
  if blessed is not None:
    figure += "; blessed" if blessed else (
        f"; not blessed: {_property(outputs, 'blessing', contract.BLESSING_MESSAGE)}")
  return figure


def _pusher_figure(outputs: StageOutputs) -> str:
  pushed = _property(outputs, "pushed_model", contract.PUSHED)
  if pushed is None:
    return ""
  if pushed:
    return f"published {_property(outputs, 'pushed_model', contract.PUSHED_DESTINATION)}"
  return f"not pushed: {_property(outputs, 'pushed_model', contract.NOT_PUSHED_REASON)}"


def _other_figure(outputs: StageOutputs) -> str:
  """For a stage without its own figure (the resolver): how many artifacts of each output."""
  if not any(outputs.values()):
    return "no artifacts"
  return ", ".join(f"{key}: {len(artifacts)}" for key, artifacts in sorted(outputs.items()))


# A pipeline node id (pipelines/pipeline.py; tests/pipelines/test_console.py checks that each
# is one) -> its figure, which reads the node's outputs by their output keys.
FIGURES: dict[str, Callable[[StageOutputs], str]] = {
    "CorpusGen": _corpus_figure, "TokenizePack": _tokenize_pack_figure,
    "Trainer": _trainer_figure, "GlueEvaluator": _glue_figure, "BertPusher": _pusher_figure}


def stage_key_figure(stage: str, outputs: StageOutputs) -> str:
  """A stage's key figure, from the properties of its output artifacts.

  Args:
    stage: the pipeline node id (a key of FIGURES; any other id gets a count of its output
      artifacts).
    outputs: output key -> the stage's artifacts, e.g. {"statistics": [OutputArtifact]}.
  Returns:
    e.g. "25,000 documents, span 1", or "" when the artifacts carry no figure.
  """
  return FIGURES.get(stage, _other_figure)(outputs)
