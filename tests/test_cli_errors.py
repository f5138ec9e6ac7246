"""Every `tokendrop` command shows only its own lines; its logs go to a log file.

A user's mistake is one line on stderr and exit status 2, checked in this process for each
command (TF is imported here already, so these see what the command itself prints), and once
per command in a new process, where TF's and CUDA's start-up logs would show (marked e2e:
each new process imports TensorFlow, 10-30 s). The pipeline's own mistakes are in
tests/pipelines/test_config.py.
"""

import os
import pathlib
import subprocess
import sys

import pytest

from pipelines import cli

REPO = pathlib.Path(__file__).resolve().parent.parent


def _one_line_error(capfd, tmp_path, argv) -> str:
  """Runs `tokendrop ARGV` here; checks that it printed one line on stderr, exit status 2, and
  that its log file holds the mistake too; returns the line."""
  log = tmp_path / "command.log"
  code = cli.main([*argv, "--log_file", str(log)])
  out, err = capfd.readouterr()
  assert (code, out) == (2, ""), out + err
  assert err.endswith("\n") and len(err.splitlines()) == 1, err
  command, message = err.rstrip("\n").split(": ", 1)
  assert command == f"tokendrop {argv[0]}", err
  assert f"UserError: {message}" in log.read_text()
  return message


@pytest.mark.parametrize("flags,message", [
    (["--masking", "bogus"], "masking must be one of ['static', 'dynamic'], got 'bogus'"),
    (["--seq_length", "4"], "seq_length must be at least 8, got 4"),
    (["--seq_length", "four"], "argument --seq_length: invalid int value: 'four'"),
    (["--learn_vocab_size", "100"], "set exactly one of vocab_file (--vocab FILE) or "
     "learn_vocab_size"),
    (["--input", "/nonexistent/*.txt"], "matches no files"),
])
def test_prepare_data(capfd, tmp_path, flags, message):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("one sentence.\n")
  argv = ["prepare-data", "--input", str(corpus), "--output_dir", str(tmp_path / "out"),
          "--vocab", "bert-base-uncased", *flags]
  assert message in _one_line_error(capfd, tmp_path, argv)


@pytest.mark.parametrize("flags,message", [
    (["--tasks", "SST2"], "unknown task 'SST2'"),
    (["--tasks", "SST-2", "--epochs", "0"], "epochs 0 must be at least 1"),
    (["--tasks", "SST-2", "--learning_rates", "fast"],
     "argument --learning_rates: 'fast' is not a comma-separated list of numbers"),
])
def test_evaluate_glue(capfd, tmp_path, flags, message):
  argv = ["evaluate-glue", "--checkpoint", str(tmp_path), "--output_dir", str(tmp_path / "o"),
          *flags]
  assert message in _one_line_error(capfd, tmp_path, argv)


@pytest.mark.parametrize("flags,message", [
    (["--model_dir", "{tmp}/nope", "--output_dir", "{tmp}/out"],
     "{tmp}/nope/params.yaml does not exist"),
    (["--model_dir", "{tmp}/nope"], "the following arguments are required: --output_dir"),
])
def test_export(capfd, tmp_path, flags, message):
  argv = ["export", *(flag.format(tmp=tmp_path) for flag in flags)]
  assert message.format(tmp=tmp_path) in _one_line_error(capfd, tmp_path, argv)


@pytest.mark.parametrize("flags,message", [
    (["--experiment=nope"], "unknown experiment 'nope'"),
    (["--cpu_devices=two"], "flag --cpu_devices=two: invalid literal for int()"),
    (["--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
])
def test_train(capfd, tmp_path, flags, message):
  argv = ["train", "--experiment=token_drop_bert/pretraining", "--mode=train",
          f"--model_dir={tmp_path / 'model'}", *flags]
  assert message in _one_line_error(capfd, tmp_path, argv)


def test_train_starts_from_the_default_flags_every_time(capfd, tmp_path):
  # absl's flags are global: a second run in this process must not inherit the first's.
  first = ["train", "--experiment=nope", "--mode=train", f"--model_dir={tmp_path / 'model'}"]
  assert "unknown experiment 'nope'" in _one_line_error(capfd, tmp_path, first)
  assert "--mode is required" in _one_line_error(capfd, tmp_path, ["train", "--experiment=nope"])


FAKE_STAGE = '''
import logging
import os

from trainer.errors import RunStopped


def main(argv):
  os.write(2, b"native start-up noise\\n")
  logging.getLogger("some.library").info("a library's log record")
  if argv == ["--diverge"]:
    raise RunStopped("the loss diverged")
  print("result: 42")
  print("no newline at the end", end="")
  return 0
'''


@pytest.fixture
def fake_stage(tmp_path, monkeypatch):
  """`tokendrop export` runs a stage that prints, logs and writes to fd 2 as TF does."""
  (tmp_path / "fake_stage.py").write_text(FAKE_STAGE)
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.setitem(cli.SUBCOMMANDS, "export", ("fake_stage", "a stage"))
  monkeypatch.delitem(sys.modules, "fake_stage", raising=False)
  yield
  sys.modules.pop("fake_stage", None)


def test_a_stage_shows_what_it_prints_and_logs_the_rest(fake_stage, capfd, tmp_path):
  log = tmp_path / "stage.log"
  assert cli.main(["export", "--log_file", str(log)]) == 0
  out, err = capfd.readouterr()
  assert (out, err) == (f"result: 42\nno newline at the end\nFull log: {log}\n", "")
  logged = log.read_text()
  for text in ("native start-up noise", "a library's log record", "result: 42"):
    assert text in logged
  # The descriptors are the caller's again.
  print("after")
  assert capfd.readouterr().out == "after\n"


def test_verbose_shows_the_logs_too(fake_stage, capfd, tmp_path):
  assert cli.main(["export", "--verbose", "--log_file", str(tmp_path / "stage.log")]) == 0
  out, err = capfd.readouterr()
  assert out.startswith("result: 42\n")
  assert "native start-up noise" in err and "a library's log record" in err


def test_a_stopped_run_is_one_line_and_exit_1(fake_stage, capfd, tmp_path):
  assert cli.main(["export", "--diverge", "--log_file", str(tmp_path / "stage.log")]) == 1
  assert capfd.readouterr() == ("", "tokendrop export: the loss diverged\n")


@pytest.mark.e2e
@pytest.mark.parametrize("argv,message", [
    pytest.param(["prepare-data", "--input", "{tmp}/none/*.txt", "--output_dir", "{tmp}/out",
                  "--vocab", "bert-base-uncased"],
                 "--input pattern '{tmp}/none/*.txt' matches no files", id="prepare-data"),
    pytest.param(["train", "--experiment=nope", "--mode=train", "--model_dir={tmp}/model"],
                 "unknown experiment 'nope'", id="train"),
    pytest.param(["export", "--model_dir", "{tmp}/nope", "--output_dir", "{tmp}/out"],
                 "{tmp}/nope/params.yaml does not exist", id="export"),
    pytest.param(["evaluate-glue", "--checkpoint", "{tmp}", "--tasks", "SST2", "--output_dir",
                  "{tmp}/o"], "unknown task 'SST2'", id="evaluate-glue"),
    pytest.param(["pipeline", "submit", "--config", f"{REPO}/configs/pipeline_vertex_base_tpu.yaml",
                  "--template", "{tmp}/none.json"], "--template {tmp}/none.json does not exist",
                 id="pipeline-submit"),
])
def test_a_new_process_prints_only_the_mistake(tmp_path, argv, message):
  argv = [arg.format(tmp=tmp_path) for arg in argv]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
  result = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
  assert (result.returncode, result.stdout) == (2, ""), result.stdout + result.stderr
  assert len(result.stderr.splitlines()) == 1, result.stderr
  assert result.stderr.startswith(f"tokendrop {argv[0]}: "), result.stderr
  assert message.format(tmp=tmp_path) in result.stderr
  # Everything else went to the log file, in out/logs under the working directory.
  [log] = (tmp_path / "out" / "logs").glob(f"tokendrop-{argv[0]}-*.log")
  assert log.read_text().endswith(f"UserError: {result.stderr.split(': ', 1)[1]}")
  # TF's C++ start-up lines (fd 2, at import) are in the log, not on the terminal.
  assert "cudart_stub.cc" in log.read_text()
