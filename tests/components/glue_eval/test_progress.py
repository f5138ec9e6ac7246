"""Fine-tuning's progress lines: one per interval, with an ETA for the task's whole grid."""

import logging

from components.glue_eval import finetune
from components.glue_eval.tasks import ROTTEN_TOMATOES


def test_progress_lines_come_once_per_interval_with_the_grids_eta(caplog):
  now = [100.0]
  # 2 runs of 10 steps; the first step (model built, step traced) starts the clock.
  progress = finetune.GridProgress(ROTTEN_TOMATOES, runs=2, steps_per_run=10, interval=15.0,
                                   clock=lambda: now[0])
  times = [100.0] + [100.0 + 2.0 * step for step in range(1, 10)] + [
      160.0 + 2.0 * step for step in range(10)]
  with caplog.at_level(logging.INFO, logger=finetune.__name__):
    for step, now[0] in enumerate(times):
      progress.step(1 if step < 10 else 2)
  assert [r.getMessage() for r in caplog.records] == [
      # step 9 of run 1 at t=116: 8 steps in 16 s; 11 steps left.
      "progress: fine-tuning SST-2 format, Rotten Tomatoes sentences, run 1/2, step 9/20, "
      "0.50 steps/s, ETA 0:00:22",
      # step 11 (run 2's first) at t=160, after 40 s of building run 2's model.
      "progress: fine-tuning SST-2 format, Rotten Tomatoes sentences, run 2/2, step 11/20, "
      "0.17 steps/s, ETA 0:00:54",
      "progress: fine-tuning SST-2 format, Rotten Tomatoes sentences, run 2/2, step 19/20, "
      "0.24 steps/s, ETA 0:00:04"]


def test_steps_per_run_counts_every_epochs_last_partial_batch():
  config = finetune.FineTuneConfig(batch_size=32, epochs=3)
  assert finetune.steps_per_run(7665, config) == 240 * 3
  assert finetune.steps_per_run(64, config) == 6
