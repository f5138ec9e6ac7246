"""Starts each rehearsal task's command and streams its output to the log.

Each container task is a new process started with the command and args of its executor in
the spec (`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor
--executor_class_path ... --json_serialized_invocation_args {{$}} <beam args>`); `python` is
the interpreter of the image's pins (task_python()).

A `python -m MODULE` command runs in a process forked from the task process
(pipelines/rehearsal/task_process.py), which imported the modules the spec's commands name
(TFX's entrypoint and driver, and with them TensorFlow, TFMA and Beam) once, instead of
importing them again in every task; one task process serves every run of a Rehearsal. The
task's process is still new, runs the module as __main__ with the spec's arguments, and
imports every project module itself. Any other command runs as a subprocess, as is.

With an image (container.Image), every command runs as its own container of it instead, as
Vertex runs each task: no task process, and `python` is the image's.
"""

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

from pipelines.rehearsal import task_process
from pipelines.rehearsal.container import Image
from trainer.contract import PROGRESS_PREFIX
from trainer.errors import UserError

# Set by scripts/in-env: the Python of an environment built from requirements/lock.txt alone,
# the image's pins, without the test extra.
RUNTIME_PYTHON_VARIABLE = "TOKENDROP_RUNTIME_PYTHON"


class TaskFailed(UserError):
  """A task's command exited with a nonzero status (which a retryPolicy may retry)."""

  def __init__(self, what: str, status: int, log_name: str):
    super().__init__(f"rehearsal task {what} exited with status {status}; its output is in "
                     f"{log_name}")
    self.status = status


def task_python() -> str:
  """The interpreter rehearsal tasks run on: the image's pins where scripts/in-env built them,
  else this one."""
  return os.environ.get(RUNTIME_PYTHON_VARIABLE) or sys.executable


class Launcher:
  """Runs task commands one at a time; a context manager that stops its task process."""

  def __init__(self, executors: dict[str, dict], python: str = sys.executable,
               image: Image | None = None, work_dir: str | None = None):
    """executors: the spec's deploymentSpec executors, by label; their `python -m` modules are
    the ones the task process imports. python: the interpreter that stands for the spec's
    `python` (see task_python()). image: run each command in a container of it instead, which
    sees work_dir only."""
    self.image, self.work_dir = image, work_dir
    if image is not None:
      self.python, self.modules, self._server = "python", [], None
      return
    self.python = python
    commands = []
    for executor in executors.values():
      container = executor.get("container", {})
      hook = container.get("lifecycle", {}).get("preCacheCheck", {})
      commands += [c["command"] for c in (container, hook) if c.get("command")]
    self.modules = sorted({c[2] for c in commands if len(c) > 2 and c[:2] == ["python", "-m"]})
    # It starts importing now, while the first task's inputs are prepared.
    self._server = subprocess.Popen(
        [python, "-m", task_process.__name__, *self.modules], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")

  @property
  def pid(self) -> int:
    """The task process's pid: a warm task (a `python -m` command) runs in a child of it."""
    if self._server is None:
      raise RuntimeError("tasks in an image run in containers, not in a task process")
    return self._server.pid

  def __enter__(self) -> "Launcher":
    return self

  def __exit__(self, error_type, *_) -> None:
    self.close(kill=error_type is not None)

  def close(self, kill: bool = False) -> None:
    """Stops the task process; kill=True when a task may still be running in it."""
    if self._server is None:
      return
    if kill:
      self._server.kill()
    self._server.stdin.close()
    self._server.stdout.read()
    self._server.wait()

  def run(self, what: str, command: list[str], log: TextIO,
          progress: Callable[[str], None] | None = None) -> None:
    """Runs `command`, its output to `log` and each line's text from PROGRESS_PREFIX on to
    `progress`; raises TaskFailed, naming `what` and the log, if it exits with a nonzero
    status."""
    if self.image is not None:
      command = self.image.command(command, self.work_dir)
    warm = command[:2] == [self.python, "-m"] and command[2] in self.modules
    log.write(f"=== {what} started: {shlex.join(command)}\n")
    if warm:
      log.write(f"=== {what} runs in a process forked from one that imported "
                f"{', '.join(self.modules)}\n")
    log.flush()
    status = (self._fork(command[2:], log, progress) if warm else
              self._exec(command, log, progress))
    log.flush()
    if status != 0:
      raise TaskFailed(what, status, log.name)

  def _fork(self, argv: list[str], log: TextIO, progress) -> int:
    self._server.stdin.write(json.dumps(argv) + "\n")
    self._server.stdin.flush()
    for line in self._server.stdout:
      marker = line.find(task_process.EXIT_MARKER)
      if marker < 0:
        _stream([line], log, progress)
        continue
      if marker:  # The task's last line had no newline.
        _stream([line[:marker] + "\n"], log, progress)
      return int(line[marker + len(task_process.EXIT_MARKER):])
    raise UserError(f"the rehearsal's task process ({task_process.__name__}) exited while "
                    f"running {argv[0]}; its output is in {log.name}")

  @staticmethod
  def _exec(command: list[str], log: TextIO, progress) -> int:
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as task:
      _stream(task.stdout, log, progress)
    return task.returncode


def _stream(lines: Iterable[str], log: TextIO, progress: Callable[[str], None] | None) -> None:
  for line in lines:
    log.write(line)
    marker = line.find(PROGRESS_PREFIX)
    if progress and marker >= 0:
      progress(line[marker:].rstrip("\n"))
