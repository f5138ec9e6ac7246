"""A training task killed mid-run in a rehearsal of the production config: the task's retry
policy runs it again, it resumes from the last checkpoint, and the model it publishes equals
the one an uninterrupted rehearsal publishes.

Two rehearsals of configs/pipeline_vertex_base_tpu.yaml in miniature, each in a work dir of
its own, on the same corpus. Both checkpoint every 10 of the 20 steps and train without
dropout: a resumed run's input position, weights, optimizer state, step and importance table
come back from the checkpoint, but dropout's random stream starts afresh, so with dropout the
two runs would differ by chance alone (README, "Training on a TPU").
"""

import os
import pathlib
import re
import signal
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from pipelines import config as config_lib
from pipelines import rehearsal
from trainer import contract

pytestmark = pytest.mark.e2e

PRODUCTION = "configs/pipeline_vertex_base_tpu.yaml"
KILL_AFTER_STEP = 10


def _config(root: pathlib.Path):
  config, _ = config_lib.load_miniature(PRODUCTION, {
      "root": str(root / "unused-local-root"),
      "metadata_path": str(root / "unused-mlmd.sqlite"),
      "corpus": {"input_base": str(root / "corpus")},
      "glue": {"glue_dir": str(root / "glue_data")},
      "push": {"destination": str(root / "published")},
      "training": {"params_override": {
          "trainer": {"checkpoint_interval": KILL_AFTER_STEP},
          "task": {"model": {"encoder": {"any": {"dropout_rate": 0.0,
                                                 "attention_dropout_rate": 0.0}}}}}},
  })
  return config


def _children(pid: int) -> list[int]:
  children = []
  for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
    try:
      fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
      continue
    if int(fields[1]) == pid:
      children.append(int(stat.parent.name))
  return children


class Preemption(threading.Thread):
  """Kills the running task (a child of the task process) once the first checkpoint of the
  training is complete on disk, as a TPU VM's maintenance event would."""

  def __init__(self, task_process: int, checkpoints: pathlib.Path):
    super().__init__(daemon=True)
    self.task_process, self.checkpoints = task_process, checkpoints
    self.killed: list[int] = []
    self.done = threading.Event()

  def run(self) -> None:
    # The checkpoint is complete once the CheckpointManager's state file names it: its .index
    # appears earlier, and a kill between the two left the retry nothing to restore (seen in
    # CI under load: the retry started again from step 0).
    latest = f'model_checkpoint_path: "ckpt-{KILL_AFTER_STEP}"'
    while not self.done.is_set():
      if any(latest in state.read_text() for state in self.checkpoints.glob("*/checkpoint")):
        for child in _children(self.task_process):
          os.kill(child, signal.SIGKILL)
          self.killed.append(child)
        return
      time.sleep(0.05)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{"uninterrupted": (result, root), "preempted": (result, root, preemption)}."""
  results = {}
  for name in ("uninterrupted", "preempted"):
    root = tmp_path_factory.mktemp(name)
    with rehearsal.Rehearsal(_config(root), str(root / "work")) as rehearsed:
      preemption = None
      if name == "preempted":
        preemption = Preemption(rehearsed.task_process_pid,
                                root / "work" / "root" / "checkpoints")
        preemption.start()
      result = rehearsed.run()
      if preemption is not None:
        preemption.done.set()
        preemption.join()
    results[name] = (result, root, preemption)
  return results


def test_the_killed_training_task_was_retried_and_resumed_from_its_last_checkpoint(runs):
  result, root, preemption = runs["preempted"]
  assert preemption.killed, "the training task was never killed"
  log = pathlib.Path(result.log_path).read_text(encoding="utf-8")
  assert re.search(r"=== Trainer failed \(rehearsal task Trainer exited with status -9; .*\); "
                   r"retry 1 of 2 \(the task's retryPolicy\)", log)
  assert log.count("=== Trainer started: ") == 2
  # The retry restored the checkpoint of step 10 (orbit says so) and trained the rest.
  after_failure = log.split("=== Trainer failed", 1)[1]
  assert f"ckpt-{KILL_AFTER_STEP}" in after_failure
  assert f"train | step:     {KILL_AFTER_STEP} | training until step 20" in after_failure
  (model_dir,) = (root / "work" / "root" / "checkpoints").iterdir()
  assert sorted(p.name for p in model_dir.glob("ckpt-*.index")) == [
      f"ckpt-{KILL_AFTER_STEP}.index", "ckpt-20.index"]
  assert result.published is not None


def test_the_resumed_run_publishes_what_an_uninterrupted_run_publishes(runs):
  published = {name: pathlib.Path(runs[name][0].published) for name in runs}
  checkpoints = {name: tf.train.load_checkpoint(
      str(path / contract.TF2_DIR / contract.CHECKPOINT_NAME)) for name, path in published.items()}
  names = checkpoints["uninterrupted"].get_variable_to_shape_map()
  assert names == checkpoints["preempted"].get_variable_to_shape_map()
  compared = 0
  for name in names:
    if name == "_CHECKPOINTABLE_OBJECT_GRAPH":
      continue
    np.testing.assert_allclose(checkpoints["preempted"].get_tensor(name),
                               checkpoints["uninterrupted"].get_tensor(name), atol=1e-6,
                               err_msg=name)
    compared += 1
  assert compared > 20
  tables = [np.load(path / contract.TOKEN_IMPORTANCE_FILE) for path in published.values()]
  np.testing.assert_allclose(*tables, atol=1e-6)
