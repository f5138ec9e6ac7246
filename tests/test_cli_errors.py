"""Every `tokendrop` subcommand turns a user's mistake into one line on stderr and exit 2.

`tokendrop train`'s mistakes run as subprocesses in tests/trainer/test_train.py, the
pipeline's in tests/pipelines/test_config.py; these are the other stages'.
"""

import pytest

from pipelines import cli


def _one_line_error(capsys, argv) -> str:
  code = cli.main(argv)
  err = capsys.readouterr().err
  lines = err.strip().splitlines()
  assert code == 2, err
  assert "Traceback" not in err and len(lines) == 1, err
  return lines[0]


@pytest.mark.parametrize("flags,message", [
    (["--masking", "bogus"], "masking must be one of ['static', 'dynamic'], got 'bogus'"),
    (["--seq_length", "4"], "seq_length must be at least 8, got 4"),
    (["--learn_vocab_size", "100"], "set exactly one of vocab_file (--vocab FILE) or "
     "learn_vocab_size"),
    (["--input", "/nonexistent/*.txt"], "matches no files"),
])
def test_prepare_data(capsys, tmp_path, flags, message):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("one sentence.\n")
  argv = ["prepare-data", "--input", str(corpus), "--output_dir", str(tmp_path / "out"),
          "--vocab", "bert-base-uncased", *flags]
  line = _one_line_error(capsys, argv)
  assert line.startswith("tokendrop prepare-data: error: ") and message in line, line


@pytest.mark.parametrize("flags,message", [
    (["--tasks", "SST2"], "unknown task 'SST2'"),
    (["--tasks", "SST-2", "--epochs", "0"], "epochs 0 must be at least 1"),
])
def test_evaluate_glue(capsys, tmp_path, flags, message):
  argv = ["evaluate-glue", "--checkpoint", str(tmp_path), "--output_dir", str(tmp_path / "o"),
          *flags]
  line = _one_line_error(capsys, argv)
  assert line.startswith("tokendrop evaluate-glue: error: ") and message in line, line


def test_export_of_a_directory_that_is_not_a_run(capsys, tmp_path):
  line = _one_line_error(capsys, ["export", "--model_dir", str(tmp_path / "nope"),
                                  "--output_dir", str(tmp_path / "out")])
  assert line.startswith("tokendrop export: ") and "params.yaml" in line, line
