"""Suite-wide pytest hooks."""

import pathlib

import pytest

TESTS = pathlib.Path(__file__).parent
# The files that take longest without an e2e test, longest first: each compiles and runs
# whole training steps several times. Seconds measured in one `make test-fast` on 2 cores,
# 2026-12-02.
LONGEST_FILES = (
    "trainer/test_xla_train_step.py",  # 97-124 s
    "trainer/test_train.py",  # 99-114 s without its e2e tests
    "components/tokenize_pack/test_pipeline.py",  # 65 s
    "components/glue_eval/test_finetune.py",  # 32 s
    "trainer/test_data_contract.py",  # 28-33 s
    "trainer/test_task.py",  # 27-29 s
    "components/tokenize_pack/test_component.py",  # 24 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
  """Files with end-to-end tests first, then LONGEST_FILES, each file's tests in their order.

  `make test` hands whole files to pytest-xdist workers in collection order. The e2e files
  (pipeline runs, rehearsals, training in new processes) take minutes each; started first,
  they run side by side while the short files fill the gaps, instead of ending the run on
  one worker while the other idles. The same holds for the longest of the other files, which
  decide when `make test-fast` ends.
  """
  e2e_files = {item.path for item in items if item.get_closest_marker("e2e")}
  longest = {TESTS / name: rank for rank, name in enumerate(LONGEST_FILES)}
  items.sort(key=lambda item: (item.path not in e2e_files,
                               longest.get(item.path, len(longest))))
