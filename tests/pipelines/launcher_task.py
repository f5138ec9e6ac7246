"""A task module for test_rehearsal_launcher.py: `python -m tests.pipelines.launcher_task CODE`
prints the project, kfp and TFX modules it found imported, prints, prints through a child
process, prints a progress line and exits with CODE; with a second argument, that is its last
output, with no newline."""

import subprocess
import sys

from trainer.contract import PROGRESS_PREFIX

if __name__ == "__main__":
  print("preloaded", sorted(name for name in sys.modules
                            if name.split(".")[0] in ("pipelines", "components", "kfp", "tfx")))
  print(f"task argv {sys.argv[1:]}", flush=True)
  subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
  print(f"{PROGRESS_PREFIX}step 1/1", flush=True)
  if len(sys.argv) > 2:
    sys.stdout.write(sys.argv[2])
  sys.exit(int(sys.argv[1]))
