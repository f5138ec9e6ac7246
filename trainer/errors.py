"""The one exception for mistakes a user can fix: a bad config, flag, path or input.

Its message names the field or file and the fix. Each command line catches it in
one place and prints it as one line (exit status 2), without a traceback.
"""


class UserError(ValueError):
  """A mistake in what the user passed, explained in one line."""


def first_line(error: BaseException) -> str:
  """An exception's message without what libraries append (gin adds "In call to ..." lines)."""
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__
