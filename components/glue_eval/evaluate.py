"""The whole evaluation: read every task, fine-tune, score, decide, write the reports.

`tokendrop evaluate-glue` and an in-process GlueEvaluator run `evaluate_glue`: every task here,
one after the other. A GLUE job (job.py) runs `evaluate_task` for one task and writes its
entry; a GlueEvaluator whose tasks ran as jobs builds the report from the entries with
`finish_report`, as evaluate_glue does.
"""

import dataclasses
import json
import logging
import os
from collections.abc import Sequence

import tensorflow as tf

from components.glue_eval import blessing as blessing_lib
from components.glue_eval import data as data_lib
from components.glue_eval import finetune
from components.glue_eval import report as report_lib
from components.glue_eval.tasks import Task
from components.glue_eval.tokenize import PairEncoder
from trainer import contract

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BlessingPolicy:
  """Bless when the GLUE score >= threshold and >= the baseline's score - tolerance."""
  threshold: float
  tolerance: float = 0.0

  def __post_init__(self):
    if self.tolerance < 0:
      raise ValueError(f"tolerance {self.tolerance} must be >= 0: it is how much worse than the "
                       "baseline a model may score")


def _check_seq_length(checkpoint_dir: str, max_seq_length: int) -> None:
  with tf.io.gfile.GFile(os.path.join(checkpoint_dir, contract.BERT_CONFIG_FILE)) as f:
    max_positions = json.load(f).get("max_position_embeddings")
  if max_positions is not None and max_seq_length > max_positions:
    raise ValueError(f"max_seq_length {max_seq_length} exceeds the checkpoint's "
                     f"max_position_embeddings {max_positions}; use at most {max_positions}")


def evaluate_task(checkpoint_dir: str, data: data_lib.TaskData, config: finetune.FineTuneConfig,
                  lower_case: bool, output_dir: str,
                  strategy: tf.distribute.Strategy | None = None) -> dict:
  """Fine-tunes the checkpoint (an export's tf2/) on one task's data; returns the task's
  report entry (report.task_entry). TensorBoard logs go to output_dir/tensorboard/<task>/."""
  encoder = PairEncoder(os.path.join(checkpoint_dir, contract.VOCAB_FILE), config.max_seq_length,
                        lower_case)
  _log.info("fine-tuning on %s: %d train, %s dev examples", data.task.display_name,
            len(data.train.examples), {s: len(d.examples) for s, d in data.dev.items()})
  result = finetune.fine_tune_task(checkpoint_dir, data, encoder, config,
                                   os.path.join(output_dir, report_lib.TENSORBOARD_DIR), strategy)
  return report_lib.task_entry(data, result)


def check_checkpoint(checkpoint: str, config: finetune.FineTuneConfig) -> str:
  """The export's tf2/ directory, checked against the config; raises naming what is wrong."""
  checkpoint_dir = finetune.find_checkpoint_dir(checkpoint)
  _check_seq_length(checkpoint_dir, config.max_seq_length)
  return checkpoint_dir


def finish_report(checkpoint_dir: str, entries: dict[str, dict], output_dir: str,
                  config: finetune.FineTuneConfig, baseline_report: dict | None = None,
                  policy: BlessingPolicy | None = None, runtime: dict | None = None) -> dict:
  """The report from every task's entry: the GLUE score, the baseline's on the same tasks,
  the blessing decision with a policy; writes the report files to output_dir."""
  report = report_lib.build_report(checkpoint_dir, entries, config, runtime)
  baseline_score = None
  if baseline_report is not None:
    baseline_score = report_lib.baseline_glue_score(baseline_report, list(entries))
    report["baseline"] = {"checkpoint": baseline_report.get("checkpoint"),
                          "glue_score_on_these_tasks": baseline_score}
    if baseline_score is None:
      _log.warning("the baseline report lacks some of the tasks %s; it is not compared",
                   list(entries))
  if policy is not None:
    report["blessing"] = blessing_lib.decide(report["glue_score"], policy.threshold,
                                             baseline_score, policy.tolerance).to_dict()
  report_lib.write_report_files(report, output_dir, baseline_report)
  return report


def evaluate_glue(checkpoint: str, tasks: Sequence[Task], output_dir: str, *,
                  glue_dir: str | None = None, tfds_data_dir: str | None = None,
                  config: finetune.FineTuneConfig | None = None,
                  lower_case: bool = True, baseline_report: dict | None = None,
                  policy: BlessingPolicy | None = None,
                  strategy: tf.distribute.Strategy | None = None,
                  runtime: dict | None = None) -> dict:
  """Fine-tunes `checkpoint` (an export's tf2/ or its root) on `tasks` in this process, one
  after the other; returns the report.

  Every task's data is read before any training, so a missing file fails in seconds. With a
  policy, the report's "blessing" holds the decision, against the baseline report's GLUE
  score when one is given.
  """
  config = config or finetune.FineTuneConfig()
  checkpoint_dir = check_checkpoint(checkpoint, config)
  task_data = [data_lib.read_task(task, glue_dir, tfds_data_dir) for task in tasks]
  entries = {data.task.name: evaluate_task(checkpoint_dir, data, config, lower_case, output_dir,
                                           strategy)
             for data in task_data}
  return finish_report(checkpoint_dir, entries, output_dir, config, baseline_report, policy,
                       runtime)
