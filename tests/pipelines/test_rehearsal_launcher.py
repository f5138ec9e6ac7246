"""The rehearsal's Launcher: a `python -m` task forked from the warm task process
(pipelines/rehearsal/task_process.py), any other command as a subprocess; output, progress
lines and exit status come back either way, task after task."""

import io
import sys

import pytest

from pipelines.rehearsal.launcher import Launcher
from trainer.errors import UserError

MODULE = "tests.pipelines.launcher_task"


@pytest.fixture(scope="module")
def launcher():
  executors = {"task_executor": {"container": {
      "command": ["python", "-m", MODULE], "lifecycle": {"preCacheCheck": {
          "command": ["python", "-m", "json.tool"]}}}}}
  with Launcher(executors) as launcher:
    yield launcher


def _run(launcher, what, command):
  log, progress = io.StringIO(), []
  log.name = "the-log"
  try:
    launcher.run(what, command, log, progress.append)
  except UserError as e:
    return log.getvalue(), progress, str(e)
  return log.getvalue(), progress, None


def test_the_spec_s_python_modules_are_preloaded(launcher):
  assert launcher.modules == ["json.tool", MODULE]


def test_a_task_runs_forked_with_its_arguments_and_its_children_s_output(launcher):
  out, progress, error = _run(launcher, "forked", [sys.executable, "-m", MODULE, "0"])
  assert error is None
  assert f"=== forked started: {sys.executable} -m {MODULE} 0\n" in out
  assert "=== forked runs in a process forked from one that imported json.tool, " in out
  assert "task argv ['0']\n" in out and "from a child process\n" in out
  assert progress == ["progress: step 1/1"]


def test_the_task_process_preloads_nothing_of_the_project_kfp_or_tfx(launcher):
  # Only the packages `python -m pipelines.rehearsal.task_process` imports on its way, which
  # import nothing: the task imports every project module itself, as the container would.
  out, _, error = _run(launcher, "fresh", [sys.executable, "-m", MODULE, "0"])
  assert error is None
  assert "preloaded ['pipelines', 'pipelines.rehearsal']\n" in out


def test_each_task_s_exit_status_is_its_own(launcher):
  out, _, error = _run(launcher, "failing", [sys.executable, "-m", MODULE, "3"])
  assert error == "rehearsal task failing exited with status 3; its output is in the-log"
  assert "task argv ['3']" in out
  out, _, error = _run(launcher, "crashing", [sys.executable, "-m", MODULE])
  assert "IndexError" in out and "status 1;" in error
  # The task process still serves the next task.
  assert _run(launcher, "again", [sys.executable, "-m", MODULE, "0"])[2] is None


def test_a_last_line_without_a_newline_is_kept_and_the_status_still_read(launcher):
  out, _, error = _run(launcher, "unterminated", [sys.executable, "-m", MODULE, "5", "tail"])
  assert "\ntail\n" in out and "status 5;" in error


def test_any_other_command_runs_as_a_subprocess(launcher):
  out, _, error = _run(launcher, "exec", [sys.executable, "-c", "print('plain'); exit(4)"])
  assert "runs in a process forked" not in out and "plain\n" in out
  assert "status 4;" in error
