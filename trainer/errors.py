"""The exceptions a command line prints as one line, without a traceback.

UserError: a mistake the user can fix (a bad config, flag, path or input); its message
names the field or file and the fix. Exit status 2.
RunStopped: a run that could not go on, for a reason its message explains (the loss
diverged). Exit status 1.

Each command line catches them in one place (pipelines/cli.py for `tokendrop`).
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn


class UserError(ValueError):
  """A mistake in what the user passed, explained in one line."""


class RunStopped(RuntimeError):
  """A run stopped on purpose, explained in one line: not a crash, and not a mistake in a flag."""


class ArgumentParser(argparse.ArgumentParser):
  """argparse that raises a mistake in the arguments as a UserError instead of printing usage
  and exiting, so it reaches the user the way every other mistake does, wherever stderr goes
  (a command's logs may go to a file)."""

  def error(self, message: str) -> NoReturn:
    raise UserError(message)


def run_main(prog: str, main: Callable[[list[str]], int], argv: Sequence[str]) -> NoReturn:
  """Exits with `main(argv)`'s status; a UserError or RunStopped is one line on stderr,
  "PROG: message", exit status 2 or 1 (for a `python -m` entry point's __main__ block)."""
  try:
    sys.exit(main(list(argv)))
  except (UserError, RunStopped) as e:
    print(f"{prog}: {e}", file=sys.stderr)
    sys.exit(2 if isinstance(e, UserError) else 1)


def first_line(error: BaseException) -> str:
  """An exception's message without what libraries append (gin adds "In call to ..." lines)."""
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__
