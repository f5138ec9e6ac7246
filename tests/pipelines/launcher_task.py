"""A task module for test_rehearsal_launcher.py: `python -m tests.pipelines.launcher_task CODE`
prints, prints through a child process, prints a progress line and exits with CODE."""

import subprocess
import sys

from trainer.contract import PROGRESS_PREFIX

if __name__ == "__main__":
  print(f"task argv {sys.argv[1:]}", flush=True)
  subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
  print(f"{PROGRESS_PREFIX}step 1/1", flush=True)
  sys.exit(int(sys.argv[1]))
