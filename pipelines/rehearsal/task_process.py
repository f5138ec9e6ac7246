"""The rehearsal's warm interpreter: it imports the modules the compiled spec's commands name
once, then runs each task's `python -m MODULE ARGS` in a child forked from itself.

    python -m pipelines.rehearsal.task_process MODULE [MODULE ...]

Started by pipelines/rehearsal/launcher.py with MODULE = TFX's Vertex entrypoint and
example-gen driver, so TensorFlow, TFX, TFMA and Beam are imported once per Rehearsal instead
of once per task (tens of seconds each on 2 cores). One task at a time: the parent writes the
task's argv as a JSON list on one line of stdin; a forked child runs argv[0] as __main__ with
sys.argv = argv (runpy, as `python -m` does), its stdin /dev/null and its stdout and stderr
this process's (which the parent reads); the child exits as that program would, by SystemExit
or an uncaught exception, atexit handlers included. When it has exited this process prints
EXIT_MARKER and its exit status on a line of their own.

This module imports only the standard library, and so does the package's __init__ (which
`python -m` imports first), so a task imports every project module itself, through its own
--executor_class_path, as the container would.

multiprocessing's forkserver would not do: each of its children first imports the parent's
__main__ (the tokendrop CLI, or a script with no __main__ guard that then runs again).
"""

import importlib
import json
import os
import runpy
import sys

EXIT_MARKER = "\x00task-exit "


def _run_child(argv: list[str]) -> None:
  devnull = os.open(os.devnull, os.O_RDONLY)
  os.dup2(devnull, 0)
  os.close(devnull)
  sys.argv = list(argv)
  runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
  sys.exit(0)


def serve(modules: list[str]) -> None:
  for module in modules:
    importlib.import_module(module)
  sys.stdout.flush()
  sys.stderr.flush()
  for line in sys.stdin:
    argv = json.loads(line)
    pid = os.fork()
    if pid == 0:
      _run_child(argv)  # Never returns: the child exits as the task's program does.
    _, status = os.waitpid(pid, 0)
    print(f"{EXIT_MARKER}{os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
  serve(sys.argv[1:])
