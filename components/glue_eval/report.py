"""The evaluation's reports: glue_report.json, glue_report.md, glue_report.png, TensorBoard.

Every report names a task by its display name, so the offline Rotten Tomatoes task reads
"SST-2 format, Rotten Tomatoes sentences" and never "SST-2". Scores are stored as fractions
and printed x100.
"""

import io
import json
import os
import textwrap
from collections.abc import Mapping

import tensorflow as tf

from components.glue_eval import metrics
from components.glue_eval.data import TaskData
from components.glue_eval.finetune import FineTuneConfig, TaskResult
from trainer import contract

REPORT_JSON = contract.GLUE_REPORT_JSON
REPORT_MARKDOWN = contract.GLUE_REPORT_MD
REPORT_CHART = contract.GLUE_REPORT_PNG
TENSORBOARD_DIR = "tensorboard"


def task_entry(data: TaskData, result: TaskResult) -> dict:
  """One task's part of the report: its median metrics, best lr, sizes, sources and every
  (learning rate, seed) run. A GLUE job (components/glue_eval/job.py) writes it as JSON."""
  splits = {"train": data.train, **data.dev}
  return {
      "display_name": data.task.display_name,
      "stand_in": data.stand_in,
      "metrics": result.metrics,
      # Per dev split: its metrics, unsuffixed, and its dataset on the Hugging Face Hub.
      "split_metrics": {split: {metric: result.metrics[name] for metric, name in zip(
          data.task.metrics, data.task.metric_names[i * len(data.task.metrics):],
          strict=False)} for i, split in enumerate(data.task.dev_splits)},
      "hub_datasets": {split: data.task.hub_dataset(split) for split in data.task.dev_splits},
      "score": result.score,
      "best_learning_rate": result.best_learning_rate,
      "train_size": result.train_size,
      "dev_sizes": result.dev_sizes,
      "sources": {split: s.source for split, s in splits.items()},
      "malformed_rows": {split: s.malformed_rows for split, s in splits.items()},
      "malformed_examples": {split: list(s.malformed_examples) for split, s in splits.items()
                             if s.malformed_examples},
      "seeds": [{"seed": run.seed, "metrics": run.metrics, "score": run.score}
                for run in result.runs if run.learning_rate == result.best_learning_rate],
      "runs": [{"learning_rate": run.learning_rate, "seed": run.seed, "metrics": run.metrics,
                "score": run.score} for run in result.runs],
  }


def build_report(checkpoint_dir: str, tasks: Mapping[str, dict], config: FineTuneConfig,
                 runtime: Mapping | None = None) -> dict:
  """The JSON report from each task's entry (task_entry), in the given order; `runtime` is
  where the fine-tuning ran (strategy, precision, and the jobs when there were any)."""
  report = {
      "checkpoint": checkpoint_dir,
      "glue_score": metrics.glue_score(task["score"] for task in tasks.values()),
      "tasks": dict(tasks),
      "finetune_config": config.to_dict(),
  }
  if runtime:
    report["runtime"] = dict(runtime)
  return report


def read_report(path: str) -> dict:
  """A glue_report.json, checked to have what comparisons need."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"GLUE report {path!r} does not exist")
  with tf.io.gfile.GFile(path) as f:
    try:
      report = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"GLUE report {path!r} is not valid JSON: {e}") from e
  if not isinstance(report, dict) or "glue_score" not in report or not isinstance(
      report.get("tasks"), dict):
    raise ValueError(f"{path!r} is not a glue_report.json: it lacks glue_score or tasks")
  return report


def baseline_glue_score(baseline: dict, task_names: list[str]) -> float | None:
  """The baseline's GLUE score over exactly these tasks; None if it lacks one of them.

  A score over other tasks would compare unlike things, so it is not compared at all.
  """
  tasks = baseline["tasks"]
  if any(name not in tasks for name in task_names):
    return None
  return metrics.glue_score(tasks[name]["score"] for name in task_names)


def _percent(value: float) -> str:
  return f"{100 * value:.2f}"


def markdown(report: dict, baseline: dict | None = None) -> str:
  """glue_report.md: a table of tasks, the score, and how they were obtained."""
  config = report["finetune_config"]
  tasks = report["tasks"]
  baseline_tasks = baseline["tasks"] if baseline else {}
  header = ["Task", "Dev metrics (x100)", "Score"] + (["Baseline"] if baseline else []) + [
      "Best lr", "Seeds", "Train", "Dev"]
  lines = ["# GLUE evaluation", "", f"Checkpoint: `{report['checkpoint']}`", "",
           "| " + " | ".join(header) + " |",
           "| --- | --- | " + " | ".join(["---:"] * (len(header) - 2)) + " |"]
  for name, task in tasks.items():
    row = [task["display_name"],
           ", ".join(f"{metric} {_percent(value)}" for metric, value in task["metrics"].items()),
           _percent(task["score"])]
    if baseline:
      row.append(_percent(baseline_tasks[name]["score"]) if name in baseline_tasks else "-")
    row += [f"{task['best_learning_rate']:g}", str(len(task["seeds"])),
            f"{task['train_size']:,}", " + ".join(f"{n:,}" for n in task["dev_sizes"].values())]
    lines.append("| " + " | ".join(row) + " |")
  total = [f"**GLUE score** (mean of {len(tasks)} task score{'s' * (len(tasks) != 1)})", "",
           f"**{_percent(report['glue_score'])}**"]
  if baseline:
    score = baseline_glue_score(baseline, list(tasks))
    total.append("-" if score is None else _percent(score))
  lines += ["| " + " | ".join(total + [""] * 4) + " |", ""]
  lines.append(
      f"Each score is the median over seeds {config['seeds']} at the learning rate, chosen from "
      f"{config['learning_rates']}, whose median dev score is best; a task with two metrics "
      f"scores their mean. {config['epochs']} epoch(s), batch size {config['batch_size']}, "
      f"max_seq_length {config['max_seq_length']}, warmup {config['warmup_fraction']:g} of the "
      "steps.")
  malformed = [f"{task['display_name']} {split}: {count}"
               for task in tasks.values() for split, count in task["malformed_rows"].items()
               if count]
  if malformed:
    lines += ["", "Malformed rows skipped: " + "; ".join(malformed) + "."]
  stand_ins = [task["display_name"] for task in tasks.values() if task.get("stand_in")]
  if stand_ins:
    lines += ["", "Stand-in data, not the tasks' own (a miniature GLUE directory): "
              + ", ".join(stand_ins) + ". These scores are not GLUE results."]
  if baseline:
    lines += ["", f"Baseline: `{baseline.get('checkpoint', '?')}`."]
  if "blessing" in report:
    blessing = report["blessing"]
    lines += ["", f"Blessing: **{'blessed' if blessing['blessed'] else 'not blessed'}**: "
              f"{blessing['reason']}."]
  return "\n".join(lines) + "\n"


def chart_png(report: dict, baseline: dict | None = None) -> bytes:
  """A bar per task score and the GLUE score, beside the baseline's when given."""
  # Figure and its Agg canvas directly: no pyplot, so no global backend or open figures.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  names = list(report["tasks"])
  labels = [textwrap.fill(report["tasks"][n]["display_name"], 16) for n in names] + [
      "GLUE score"]
  scores = [100 * report["tasks"][n]["score"] for n in names] + [100 * report["glue_score"]]
  figure = Figure(figsize=(max(4.0, 1.6 * len(labels) + 1.5), 4.0))
  FigureCanvasAgg(figure)
  axes = figure.add_subplot()
  positions = list(range(len(labels)))
  width = 0.38 if baseline else 0.6
  offset = width / 2 if baseline else 0.0
  bars = axes.bar([p - offset for p in positions], scores, width, label="this model")
  axes.bar_label(bars, fmt="%.1f", fontsize=8)
  if baseline:
    baseline_total = baseline_glue_score(baseline, names)
    baseline_scores = [100 * baseline["tasks"][n]["score"] if n in baseline["tasks"] else 0.0
                       for n in names] + [100 * (baseline_total or 0.0)]
    bars = axes.bar([p + offset for p in positions], baseline_scores, width, label="baseline")
    axes.bar_label(bars, fmt="%.1f", fontsize=8)
    # Headroom above the tallest bar keeps the legend off the bars.
    axes.set_ylim(top=1.3 * max(scores + baseline_scores + [1.0]))
    axes.legend(loc="upper right", ncols=2)
  axes.set_xticks(positions, labels, fontsize=8)
  axes.set_ylabel("dev score (x100)")
  axes.set_title("GLUE evaluation")
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=100)
  return buffer.getvalue()


def write_tensorboard(report: dict, log_dir: str) -> None:
  """Each task's metrics and score, the GLUE score, and the Markdown table, at step 0."""
  writer = tf.summary.create_file_writer(log_dir)
  with writer.as_default():
    for name, task in report["tasks"].items():
      for metric, value in task["metrics"].items():
        tf.summary.scalar(f"{name}/{metric}", value, step=0)
      tf.summary.scalar(f"{name}/score", task["score"], step=0)
    tf.summary.scalar("glue_score", report["glue_score"], step=0)
    tf.summary.text("glue_report", markdown(report), step=0)
  writer.close()


def write_report_files(report: dict, output_dir: str, baseline: dict | None = None) -> None:
  """Writes OUTPUT_DIR/glue_report.{json,md,png} and OUTPUT_DIR/tensorboard."""
  tf.io.gfile.makedirs(output_dir)
  with tf.io.gfile.GFile(os.path.join(output_dir, REPORT_JSON), "w") as f:
    f.write(json.dumps(report, indent=2) + "\n")
  with tf.io.gfile.GFile(os.path.join(output_dir, REPORT_MARKDOWN), "w") as f:
    f.write(markdown(report, baseline))
  with tf.io.gfile.GFile(os.path.join(output_dir, REPORT_CHART), "wb") as f:
    f.write(chart_png(report, baseline))
  write_tensorboard(report, os.path.join(output_dir, TENSORBOARD_DIR))
