"""Suite-wide pytest hooks."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
  """Files with end-to-end tests first, each file's tests in their order.

  `make test` hands whole files to pytest-xdist workers in collection order. The e2e files
  (pipeline runs, rehearsals, training in new processes) take minutes each; started first,
  they run side by side while the short files fill the gaps, instead of ending the run on
  one worker while the other idles.
  """
  e2e_files = {item.path for item in items if item.get_closest_marker("e2e")}
  items.sort(key=lambda item: item.path not in e2e_files)
