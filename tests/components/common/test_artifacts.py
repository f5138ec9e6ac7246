"""components/common/artifacts.py: which pipeline an artifact came from."""

import pytest
from tfx.types import standard_artifacts

from components.common.artifacts import foreign
from trainer import contract


@pytest.mark.parametrize("recorded,expected", [("p", False), ("q", True), (None, False)])
def test_foreign_means_recorded_by_another_pipeline(recorded, expected):
  model = standard_artifacts.Model()
  if recorded is not None:
    model.set_string_custom_property(contract.PIPELINE_NAME, recorded)
  assert foreign(model, "p") is expected
  assert foreign(model, "") is False  # a caller that names no pipeline takes any
  assert foreign(None, "p") is False
