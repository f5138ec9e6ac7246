"""BertPusher's executor: it publishes a blessed model, and records on its PushedModel where
the version went, or why nothing was pushed."""

import json
import os
import pathlib

from tfx.dsl.components.base import base_executor
from tfx.types import standard_artifacts

from components.publish import publish
from components.publish.component import BertPusher
from trainer import contract


def _artifact(cls, uri: pathlib.Path):
  artifact = cls()
  artifact.uri = str(uri)
  return artifact


def _push(tmp_path: pathlib.Path, blessed: bool, message: str = ""):
  """Runs BertPusher's executor on a minimal export and evaluation; returns its PushedModel."""
  model = _artifact(standard_artifacts.Model, tmp_path / "model")
  (tmp_path / "model" / contract.SERVING_SUBDIR / contract.TF2_DIR).mkdir(parents=True)
  evaluation = _artifact(standard_artifacts.ModelEvaluation, tmp_path / "evaluation")
  (tmp_path / "evaluation").mkdir()
  (tmp_path / "evaluation" / contract.GLUE_REPORT_JSON).write_text(json.dumps(
      {"glue_score": 0.8, "tasks": {}}))
  blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
  blessing.set_int_custom_property(contract.BLESSED, int(blessed))
  if message:
    blessing.set_string_custom_property(contract.BLESSING_MESSAGE, message)
  pushed = _artifact(standard_artifacts.PushedModel, tmp_path / "pushed")
  executor = BertPusher.EXECUTOR_SPEC.executor_class(
      base_executor.BaseExecutor.Context(tmp_dir=str(tmp_path / "tmp")))
  executor.Do({"model": [model], "blessing": [blessing], "evaluation": [evaluation]},
              {"pushed_model": [pushed]}, {"push_destination": str(tmp_path / "published")})
  return pushed


def _recorded(artifact) -> dict:
  return {name: artifact.get_custom_property(name)
          for name in artifact.mlmd_artifact.custom_properties}


def test_a_blessed_model_is_published_and_the_push_says_where(tmp_path):
  pushed = _push(tmp_path, blessed=True)
  (version,) = publish.published_versions(str(tmp_path / "published"))
  destination = os.path.join(tmp_path, "published", version)
  assert os.path.isfile(os.path.join(destination, publish.PUBLISHED_MARKER))
  assert _recorded(pushed) == {contract.PUSHED: 1, contract.PUSHED_DESTINATION: destination,
                               contract.PUSHED_VERSION: version}


def test_a_model_that_was_not_blessed_is_not_pushed_and_the_push_says_why(tmp_path):
  pushed = _push(tmp_path, blessed=False)
  assert publish.published_versions(str(tmp_path / "published")) == []
  assert _recorded(pushed) == {contract.PUSHED: 0,
                               contract.NOT_PUSHED_REASON: "the model was not blessed"}
  # With the blessing's reason, when it gives one.
  pushed = _push(tmp_path / "again", blessed=False, message="GLUE score 0.5 < threshold 0.7")
  assert _recorded(pushed)[contract.NOT_PUSHED_REASON] == (
      "the model was not blessed: GLUE score 0.5 < threshold 0.7")
