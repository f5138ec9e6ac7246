"""pipelines/console.py: what reaches the terminal, what reaches the log file, key figures."""

import io
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from pipelines import config as config_lib
from pipelines import console, pipeline
from pipelines.observer import OutputArtifact
from trainer import contract

REPO = pathlib.Path(__file__).resolve().parents[2]

# A run in miniature: two stages, each logging through Python logging, absl, fd 2 directly
# (as TF's C++ logging does), print, and a subprocess; a burst of progress records. Or a run
# that fails at once, without or with a mistake of the user's.
SIMULATED_RUN = textwrap.dedent("""
    import logging, os, subprocess, sys
    from absl import logging as absl_logging
    from pipelines import console
    from pipelines.observer import OutputArtifact
    from trainer.errors import UserError

    try:
      with console.session(sys.argv[1], verbose=sys.argv[2] == "verbose") as out:
        out.line("Pipeline simulated")
        logging.info("the first log line")
        if sys.argv[3] == "fail":
          raise RuntimeError("boom in the first stage")
        if sys.argv[3] == "user_error":
          raise UserError("bad key x.y")
        for stage in ("StageA", "StageB"):
          out.stage_started(stage)
          import tensorflow  # as a stage does: its C++ logging writes to fd 2 itself
          for i in range(200):
            logging.info("python log %d of %s", i, stage)
          absl_logging.info("absl log of %s", stage)
          os.write(2, b"fd 2 line of " + stage.encode() + b"\\n")
          print("a stray print of", stage)
          subprocess.run([sys.executable, "-c", "import sys; print('child stdout'); "
                          "print('child stderr', file=sys.stderr)"], check=True)
          for step in range(100):
            logging.info("progress: step %d/100, ETA 0:00:01", step)
          out.stage_finished(stage, {"examples": [OutputArtifact("/nowhere")]})
        out.line("Summary line")
    except console.RunFailed as e:
      print(f"failed: {e}", file=sys.stderr)
      sys.exit(1)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    """)


def _simulate(tmp_path, mode="quiet", ending="ok"):
  log = tmp_path / "logs" / "run.log"
  result = subprocess.run([sys.executable, "-c", SIMULATED_RUN, str(log), mode, ending],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  return result, log.read_text()


def _terminal_lines(result) -> list[str]:
  return result.stdout.splitlines() + result.stderr.splitlines()


def _strip_time(line: str) -> str:
  """"[21:03:05] StageA started" -> "StageA started"."""
  return line.split("] ", 1)[1] if line.startswith("[") else line


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory):
  return _simulate(tmp_path_factory.mktemp("quiet"))


def test_the_terminal_gets_the_stage_lines_only(quiet_run):
  result, _ = quiet_run
  assert result.returncode == 0, result.stderr
  assert result.stderr == ""
  # The whole burst of progress records falls within one progress interval: one progress
  # line per stage. Durations are wall-clock seconds.
  lines = [re.sub(r" in \d+ s:", " in N s:", _strip_time(line))
           for line in result.stdout.splitlines()]
  assert lines == ["Pipeline simulated",
                   "StageA started", "  StageA: step 0/100, ETA 0:00:01",
                   "StageA finished in N s: examples: 1",
                   "StageB started", "  StageB: step 0/100, ETA 0:00:01",
                   "StageB finished in N s: examples: 1",
                   "Summary line"]


def test_the_log_file_gets_everything(quiet_run):
  _, log = quiet_run
  for stage in ("StageA", "StageB"):
    assert log.count(f"python log 199 of {stage}") == 1
    assert f"I absl] absl log of {stage}" in log
    assert f"fd 2 line of {stage}\n" in log
    assert f"a stray print of {stage}\n" in log
  assert log.count("progress: step 99/100") == 2
  assert log.count("child stdout\n") == 2 and log.count("child stderr\n") == 2
  # TF's C++ logging, from the stage's import (fd 2, not Python).
  assert "cudart_stub.cc" in log or "port.cc" in log
  # The console's own lines, too.
  assert "Pipeline simulated\n" in log and "Summary line\n" in log
  assert log.count(" started\n") == 2 and log.count(" finished in ") == 2


def test_verbose_shows_every_log_and_still_writes_the_file(tmp_path):
  result, log = _simulate(tmp_path, "verbose")
  assert result.returncode == 0, result.stderr
  terminal = result.stdout + result.stderr
  for text in ("python log 199 of StageB", "absl log of StageA", "fd 2 line of StageB",
               "a stray print of StageA", "child stderr", "progress: step 99/100"):
    assert text in terminal and text in log, text
  assert terminal.count("python log ") == 400 and log.count("python log ") == 400
  assert "StageB started" in result.stdout and "Summary line" in result.stdout


def test_an_unexpected_exception_shows_its_last_lines_and_the_log(tmp_path):
  result, log = _simulate(tmp_path, ending="fail")
  assert result.returncode == 1
  log_path = tmp_path / "logs" / "run.log"
  assert result.stderr == (f"failed: RuntimeError: boom in the first stage (full log: "
                           f"{log_path})\n")
  lines = result.stdout.splitlines()
  assert len(lines) == 1 + console.FAILURE_TAIL_LINES
  assert lines[0] == "Pipeline simulated" and lines[-1] == "RuntimeError: boom in the first stage"
  # The log has the whole traceback, then the console's copy of its last lines.
  tail = console.FAILURE_TAIL_LINES
  assert lines[1:] == log.splitlines()[-tail:] == log.splitlines()[-2 * tail:-tail]
  assert "Traceback (most recent call last)" in log and "the first log line" in log


def test_a_user_error_stays_one_line(tmp_path):
  result, log = _simulate(tmp_path, ending="user_error")
  assert result.returncode == 2
  assert result.stderr == "error: bad key x.y\n"
  assert result.stdout == "Pipeline simulated\n"
  assert "UserError: bad key x.y\n" in log and "the first log line" in log


def test_progress_is_shown_at_most_once_per_interval_and_durations_read_well():
  now = [0.0]
  terminal = io.StringIO()
  out = console.Console(terminal, progress_interval=20.0, clock=lambda: now[0])
  out.stage_started("Trainer")
  for now[0] in (1.0, 5.0, 21.5, 30.0, 41.5, 61.4):
    out.progress(f"progress: step {int(now[0])}/300")
  now[0] = 754.0
  out.stage_finished("Other", {"model": [], "model_blessing": []})
  lines = [_strip_time(line) for line in terminal.getvalue().splitlines()]
  assert lines == ["Trainer started", "  Trainer: step 1/300", "  Trainer: step 21/300",
                   "  Trainer: step 41/300", "Other finished: no artifacts"]
  assert [console.format_duration(s) for s in (0.4, 59.6, 754, 7384)] == [
      "0 s", "1 min 0 s", "12 min 34 s", "2 h 3 min"]


def test_key_figures_are_made_of_the_properties_the_components_recorded():
  def figure(stage, **outputs):
    return console.stage_key_figure(stage, {key: [OutputArtifact(f"/{key}", properties)]
                                            for key, properties in outputs.items()})

  # ML Metadata gives ints; Vertex's artifact metadata (the rehearsal's) gives floats.
  for number in (int, float):
    assert figure("CorpusGen", examples={contract.DOCUMENTS_WRITTEN: number(25000),
                                         contract.SPAN: number(2)}) == (
        "25,000 documents, span 2")
    assert figure("TokenizePack", statistics={
        contract.DOCUMENTS_KEPT: number(25000), contract.EXAMPLES_TRAIN: number(40400),
        contract.EXAMPLES_VALIDATION: number(830), contract.PACKING_EFFICIENCY: 0.997535,
        contract.DOCUMENTS_READ: number(25010)}) == (
        "25,000 documents -> 41,230 examples (40,400 train, 830 validation), "
        "packing efficiency 99.8%")
    assert figure("Trainer", model={
        contract.TRAIN_STEPS: number(3000), contract.VALIDATION_STEP: number(3000),
        contract.VALIDATION_LOSS: 6.123456, contract.VALIDATION_LOSS_AS_TRAINED: 6.98765},
        model_run={}) == (
        "3,000 steps; validation MLM loss 6.1235 at full depth, 6.9877 as trained (step 3,000)")
    reason = "GLUE score 0.7792 is below the threshold 0.8000"
    assert figure("GlueEvaluator", evaluation={contract.GLUE_SCORE: 0.7791907514450868},
                  blessing={contract.BLESSED: number(0), contract.BLESSING_MESSAGE: reason}) == (
        f"GLUE score 0.7792; not blessed: {reason}")
    assert figure("GlueEvaluator", evaluation={contract.GLUE_SCORE: 0.81},
                  blessing={contract.BLESSED: number(1), contract.BLESSING_MESSAGE: "ok"}) == (
        "GLUE score 0.8100; blessed")
    assert figure("BertPusher", pushed_model={
        contract.PUSHED: number(1), contract.PUSHED_DESTINATION: "/dest/20261201T210000Z"}) == (
        "published /dest/20261201T210000Z")
    assert figure("BertPusher", pushed_model={
        contract.PUSHED: number(0), contract.NOT_PUSHED_REASON: "the model was not blessed"}) == (
        "not pushed: the model was not blessed")
    # A run on a span the latest blessed model was trained on: each stage says so.
    skipped = "span 2 was already trained on by the latest blessed model (gs://m)"
    assert figure("Trainer", model={contract.TRAINING_SKIPPED: skipped,
                                    contract.TRAINED_SPAN: number(2)}, model_run={}) == (
        f"not trained: {skipped}")
    message = f"not evaluated: training was skipped ({skipped})"
    assert figure("GlueEvaluator", evaluation={}, blessing={
        contract.BLESSED: number(0), contract.BLESSING_MESSAGE: message}) == message


def test_a_stage_without_a_figure_counts_its_artifacts_and_missing_properties_give_none():
  assert console.stage_key_figure("latest_blessed_model", {
      "model": [OutputArtifact("/m", {contract.TRAIN_STEPS: 10})],
      "model_blessing": [OutputArtifact("/b")]}) == "model: 1, model_blessing: 1"
  # A run without validation: the Trainer's figure has its steps only.
  assert console.stage_key_figure("Trainer", {"model": [
      OutputArtifact("/m", {contract.TRAIN_STEPS: 10})]}) == "10 steps"
  for stage in console.FIGURES:
    assert console.stage_key_figure(stage, {}) == ""


@pytest.mark.parametrize("config_name",
                         ["pipeline_local_tiny.yaml", "pipeline_vertex_base_tpu.yaml"])
def test_each_figure_is_named_after_a_node_of_the_pipeline(config_name):
  config = config_lib.load(str(REPO / "configs" / config_name))
  node_ids = {node.id for node in pipeline.create_pipeline(config).components}
  assert set(console.FIGURES) <= node_ids
  assert node_ids - set(console.FIGURES) == {"latest_blessed_model"}


def test_a_figure_that_cannot_be_made_does_not_fail_the_stage_line():
  terminal = io.StringIO()
  out = console.Console(terminal)
  out.stage_finished("Trainer", {"model": [OutputArtifact("/m", {contract.TRAIN_STEPS: "x"})]})
  assert _strip_time(terminal.getvalue().strip()) == (
      "Trainer finished: (its figures could not be read; see the log)")
