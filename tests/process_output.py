"""What a command run in this process printed, as a new process running it would show it.

    with process_output.captured() as output:
      status = cli.main(["train", ...])
    output.stderr  # its fd 2, sys.stderr and its log records at INFO

A command run in pytest's process writes through three paths that pytest would otherwise
take: file descriptors 1 and 2 (TF's C++ logging, subprocesses), sys.stdout / sys.stderr
(prints), and Python and absl log records (which a new process writes to stderr, and which
here would go to pytest's log capture). All three go to temporary files for the block.
"""

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

from absl import logging as absl_logging


@dataclasses.dataclass
class Output:
  stdout: str = ""
  stderr: str = ""


def _text_stream(fd: int):
  return open(fd, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115


@contextlib.contextmanager
def captured(merge: bool = False, log_records: bool = True) -> Iterator[Output]:
  """merge=True: stdout's text goes to stderr too (one stream, in order), as `2>&1` would.
  log_records=False: for a command that sends its log records somewhere itself."""
  output = Output()
  saved_streams = sys.stdout, sys.stderr
  for stream in saved_streams:
    stream.flush()
  saved_fds = os.dup(1), os.dup(2)
  root = logging.getLogger()
  saved_level, saved_verbosity = root.level, absl_logging.get_verbosity()
  with contextlib.ExitStack() as files:
    err_file = files.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8",
                                                          errors="replace"))
    out_file = err_file if merge else files.enter_context(
        tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace"))
    os.dup2(out_file.fileno(), 1)
    os.dup2(err_file.fileno(), 2)
    sys.stdout, sys.stderr = _text_stream(1), _text_stream(2)
    # Its own stream: absl's app.run removes root handlers that write to sys.stderr.
    records = logging.StreamHandler(_text_stream(2))
    if log_records:
      records.setLevel(logging.INFO)
      root.addHandler(records)
      root.setLevel(logging.INFO)
      absl_logging.set_verbosity(absl_logging.INFO)
    try:
      yield output
    finally:
      root.removeHandler(records)
      root.setLevel(saved_level)
      absl_logging.set_verbosity(saved_verbosity)
      for stream in (sys.stdout, sys.stderr, records.stream):
        stream.close()
      sys.stdout, sys.stderr = saved_streams
      for fd, saved in zip((1, 2), saved_fds, strict=True):
        os.dup2(saved, fd)
        os.close(saved)
      err_file.seek(0)
      output.stderr = err_file.read()
      if not merge:
        out_file.seek(0)
        output.stdout = out_file.read()
