"""The reports from known results: JSON content, the Markdown table, the chart, TensorBoard."""

import io
import json

import matplotlib.image
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from components.glue_eval import finetune, report, tasks
from components.glue_eval.data import Example, Split, TaskData
from components.glue_eval.finetune import Run, TaskResult

CONFIG = finetune.FineTuneConfig(learning_rates=(1e-4, 3e-4), seeds=(1, 2), epochs=2)


def _split(source, count, malformed=0):
  return Split(source, [Example("text", None, 0)] * count, malformed,
               ("line 3: label 'x' is none of ['0', '1']",) if malformed else ())


@pytest.fixture(scope="module")
def results():
  rt = TaskData(tasks.get_task("rt_sst2"), _split("rt train", 30), {"dev": _split("rt dev", 4)})
  rt_result = TaskResult(
      runs=(Run(1e-4, 1, {"accuracy": 0.75}, 0.75), Run(1e-4, 2, {"accuracy": 0.5}, 0.5),
            Run(3e-4, 1, {"accuracy": 0.25}, 0.25), Run(3e-4, 2, {"accuracy": 0.5}, 0.5)),
      best_learning_rate=1e-4, metrics={"accuracy": 0.625}, score=0.625, train_size=30,
      dev_sizes={"dev": 4})
  mrpc = TaskData(tasks.get_task("MRPC"), _split("MRPC/train.tsv", 20, malformed=2),
                  {"dev": _split("MRPC/dev.tsv", 8)})
  mrpc_metrics = {"f1": 0.8, "accuracy": 0.7}
  mrpc_result = TaskResult(
      runs=tuple(Run(rate, seed, mrpc_metrics, 0.75) for rate in (1e-4, 3e-4) for seed in (1, 2)),
      best_learning_rate=3e-4, metrics=mrpc_metrics, score=0.75, train_size=20,
      dev_sizes={"dev": 8})
  return {"rt_sst2": (rt, rt_result), "MRPC": (mrpc, mrpc_result)}


@pytest.fixture(scope="module")
def built(results):
  return report.build_report("/models/tf2", {name: report.task_entry(*pair)
                                             for name, pair in results.items()}, CONFIG)


def test_the_json_report_has_every_seed_the_best_lr_and_the_sizes(built):
  assert built["glue_score"] == pytest.approx((0.625 + 0.75) / 2)
  rt = built["tasks"]["rt_sst2"]
  assert rt["display_name"] == "SST-2 format, Rotten Tomatoes sentences"
  assert (rt["best_learning_rate"], rt["train_size"], rt["dev_sizes"]) == (1e-4, 30, {"dev": 4})
  assert rt["seeds"] == [{"seed": 1, "metrics": {"accuracy": 0.75}, "score": 0.75},
                         {"seed": 2, "metrics": {"accuracy": 0.5}, "score": 0.5}]
  assert len(rt["runs"]) == 4
  assert built["tasks"]["MRPC"]["malformed_rows"] == {"train": 2, "dev": 0}
  assert built["tasks"]["MRPC"]["malformed_examples"] == {
      "train": ["line 3: label 'x' is none of ['0', '1']"]}
  assert built["finetune_config"]["learning_rates"] == [1e-4, 3e-4]
  # JSON-safe as it is.
  assert json.loads(json.dumps(built)) == built


def test_the_markdown_table(built):
  assert report.markdown(built) == """\
# GLUE evaluation

Checkpoint: `/models/tf2`

| Task | Dev metrics (x100) | Score | Best lr | Seeds | Train | Dev |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
| SST-2 format, Rotten Tomatoes sentences | accuracy 62.50 | 62.50 | 0.0001 | 2 | 30 | 4 |
| MRPC | f1 80.00, accuracy 70.00 | 75.00 | 0.0003 | 2 | 20 | 8 |
| **GLUE score** (mean of 2 task scores) |  | **68.75** |  |  |  |  |

Each score is the median over seeds [1, 2] at the learning rate, chosen from [0.0001, 0.0003], \
whose median dev score is best; a task with two metrics scores their mean. 2 epoch(s), batch size \
32, max_seq_length 128, warmup 0.1 of the steps.

Malformed rows skipped: MRPC train: 2.
"""


def test_the_markdown_compares_with_a_baseline_on_the_same_tasks_only(built):
  baseline = {"checkpoint": "/old/tf2", "glue_score": 0.9,
              "tasks": {"rt_sst2": {"score": 0.5}, "MRPC": {"score": 0.7}, "RTE": {"score": 0.9}}}
  lines = report.markdown(built, baseline).splitlines()
  assert lines[4] == ("| Task | Dev metrics (x100) | Score | Baseline | Best lr | Seeds | Train "
                      "| Dev |")
  assert lines[6].split(" | ")[2:4] == ["62.50", "50.00"]
  # The baseline's score over these two tasks, not its own over three.
  assert lines[8].split(" | ")[2:4] == ["**68.75**", "60.00"]
  assert "Baseline: `/old/tf2`." in lines
  assert report.baseline_glue_score(baseline, ["rt_sst2", "MRPC"]) == pytest.approx(0.6)
  assert report.baseline_glue_score(baseline, ["rt_sst2", "CoLA"]) is None


def test_the_chart_is_a_png_that_widens_for_a_baseline(built):
  alone = matplotlib.image.imread(io.BytesIO(report.chart_png(built)), format="png")
  baseline = {"glue_score": 0.6, "tasks": {"rt_sst2": {"score": 0.5}, "MRPC": {"score": 0.7}}}
  compared = matplotlib.image.imread(io.BytesIO(report.chart_png(built, baseline)), format="png")
  # 100 dpi, 1.6 inches per bar group plus 1.5, 4 inches high.
  assert alone.shape[:2] == compared.shape[:2] == (400, 630)
  assert (alone != compared).any()


def test_report_files_and_tensorboard_summaries(built, tmp_path):
  report.write_report_files(built, str(tmp_path))
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      "glue_report.json", "glue_report.md", "glue_report.png", "tensorboard"]
  assert report.read_report(str(tmp_path / "glue_report.json")) == built
  events = event_accumulator.EventAccumulator(
      str(tmp_path / "tensorboard"), size_guidance={event_accumulator.TENSORS: 0})
  events.Reload()
  values = {tag: float(tf.make_ndarray(events.Tensors(tag)[0].tensor_proto))
            for tag in events.Tags()["tensors"] if tag != "glue_report"}
  assert values == pytest.approx({"rt_sst2/accuracy": 0.625, "rt_sst2/score": 0.625,
                                  "MRPC/f1": 0.8, "MRPC/accuracy": 0.7, "MRPC/score": 0.75,
                                  "glue_score": 0.6875})
  text = tf.make_ndarray(events.Tensors("glue_report")[0].tensor_proto).item().decode()
  assert text == report.markdown(built)


def test_reading_something_else_is_a_clear_error(tmp_path):
  path = tmp_path / "other.json"
  path.write_text('{"accuracy": 0.5}')
  with pytest.raises(ValueError, match="is not a glue_report.json: it lacks glue_score or tasks"):
    report.read_report(str(path))
  with pytest.raises(FileNotFoundError, match="GLUE report '.*missing.json' does not exist"):
    report.read_report(str(tmp_path / "missing.json"))
