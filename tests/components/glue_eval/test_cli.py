"""`tokendrop evaluate-glue` end to end on a tiny export, and the mistakes it names (the
command line prints each as one line: tests/test_cli_errors.py)."""

import json
import re

import pytest

from components.glue_eval import cli
from trainer.errors import UserError

TRAINING = ["--learning_rates", "1e-2", "--seeds", "1", "--batch_size", "8", "--max_seq_length",
            "32"]


def _run(capsys, argv):
  code = cli.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return code, out, err


def test_evaluates_then_compares_with_the_first_run_as_baseline(tiny_export, sst2_dir, tmp_path,
                                                                capsys):
  first = tmp_path / "first"
  code, out, _ = _run(capsys, ["--checkpoint", tiny_export, "--glue_dir", sst2_dir, "--tasks",
                               "sst-2", "--output_dir", first, "--epochs", "30",
                               "--threshold", "0.9", *TRAINING])
  assert code == 0
  assert sorted(p.name for p in first.iterdir()) == [
      "glue_report.json", "glue_report.md", "glue_report.png", "tensorboard"]
  report = json.loads((first / "glue_report.json").read_text())
  assert report["checkpoint"] == str(tiny_export / "tf2")
  assert report["tasks"]["SST-2"]["metrics"] == {"accuracy": 1.0}
  assert report["blessing"]["blessed"] is True
  assert "| SST-2 | accuracy 100.00 | 100.00 | 0.01 | 1 | 48 | 16 |" in out

  # One epoch cannot learn the task: worse than the baseline by more than the tolerance.
  second = tmp_path / "second"
  code, out, _ = _run(capsys, ["--checkpoint", tiny_export / "tf2", "--glue_dir", sst2_dir,
                               "--tasks", "SST-2", "--output_dir", second, "--epochs", "1",
                               "--baseline_report", first / "glue_report.json",
                               "--threshold", "0.4", "--tolerance", "0.1", *TRAINING])
  assert code == 0
  report = json.loads((second / "glue_report.json").read_text())
  assert report["glue_score"] == 0.5
  assert report["baseline"] == {"checkpoint": str(tiny_export / "tf2"),
                                "glue_score_on_these_tasks": 1.0}
  assert report["blessing"]["blessed"] is False
  assert report["blessing"]["reason"] == ("GLUE score 0.5000 is below the blessed baseline's "
                                          "1.0000 minus the tolerance 0.1000")
  assert "| SST-2 | accuracy 50.00 | 50.00 | 100.00 |" in out


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "{tmp}/nothing", "--tasks", "rt_sst2"], "no exported checkpoint in"),
    (["--checkpoint", "{export}", "--tasks", "SST2"], "unknown task 'SST2'; choose from CoLA"),
    (["--checkpoint", "{export}", "--tasks", "rt_sst2,CoLA"],
     "task CoLA needs GLUE data: pass a GLUE directory"),
    (["--checkpoint", "{export}", "--tasks", "RTE", "--glue_dir", "{glue}"],
     "RTE split '.*/RTE/train.tsv' does not exist"),
    (["--checkpoint", "{export}", "--tasks", "SST-2", "--glue_dir", "{glue}", "--max_seq_length",
      "65"], "max_seq_length 65 exceeds the checkpoint's max_position_embeddings 64"),
    (["--checkpoint", "{export}", "--tasks", "SST-2", "--glue_dir", "{glue}", "--baseline_report",
      "{tmp}/none.json"], "GLUE report '.*none.json' does not exist"),
    (["--checkpoint", "{export}", "--tasks", "SST-2", "--glue_dir", "{glue}", "--threshold", "0.5",
      "--tolerance", "-1"], "tolerance -1.0 must be >= 0"),
    (["--checkpoint", "{export}", "--tasks", "SST-2", "--epochs", "0"],
     "bad fine-tuning config: epochs 0 must be at least 1"),
])
def test_user_mistakes_are_user_errors_that_name_them(tiny_export, sst2_dir, tmp_path, capsys,
                                                      argv, message):
  argv = [a.format(tmp=tmp_path, export=tiny_export, glue=sst2_dir) for a in argv]
  # The tiny export has 64 positions; a case's own --max_seq_length comes later and wins.
  with pytest.raises(UserError) as error:
    cli.main([str(a) for a in ["--max_seq_length", "32", *argv, "--output_dir", tmp_path / "out"]])
  assert len(str(error.value).splitlines()) == 1
  assert re.search(message, str(error.value)), error.value
  assert capsys.readouterr().out == ""
  assert not (tmp_path / "out").exists()


def test_a_malformed_flag_is_a_user_error():
  with pytest.raises(UserError, match="argument --learning_rates: 'fast' is not a "
                     "comma-separated list of numbers"):
    cli.main(["--checkpoint", "x", "--tasks", "rt_sst2", "--output_dir", "y",
              "--learning_rates", "fast"])
