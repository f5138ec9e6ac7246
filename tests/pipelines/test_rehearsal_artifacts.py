"""The rehearsal's artifact record and filters, and artifacts as its observer sees them."""

import pytest

from pipelines.observer import OutputArtifact
from pipelines.rehearsal import artifacts
from trainer.errors import UserError


def test_custom_properties_lose_tfx_s_prefix_and_win_over_the_typed_ones():
  # As TFX's entrypoint writes an Examples artifact's metadata: a custom span beside the typed
  # one, every number a double.
  metadata = {"span": 0.0, "custom:span": 1.0, "version": 0.0, "split_names": '["corpus"]',
              "file_format": "tfrecords_gzip", "loss": 6.5}
  properties = artifacts.component_properties(metadata)
  assert properties == {"span": 1, "version": 0, "split_names": '["corpus"]',
                        "file_format": "tfrecords_gzip", "loss": 6.5}
  assert type(properties["span"]) is int and type(properties["loss"]) is float


def test_outputs_are_observed_by_key_with_their_properties():
  outputs = {"blessing": {"name": "run/GlueEvaluator/blessing", "uri": "/root/blessing",
                          "metadata": {"blessed": 1.0, "current_model_id": "run/Trainer/model"}}}
  assert artifacts.observed(outputs) == {"blessing": [OutputArtifact(
      "/root/blessing", {"blessed": 1, "current_model_id": "run/Trainer/model"})]}


def test_the_newest_artifact_that_every_clause_holds_for_is_resolved(tmp_path):
  record = artifacts.ArtifactRecord(str(tmp_path / "root" / artifacts.ARTIFACT_RECORD))
  query = 'schema_title="tfx.ModelBlessing" AND state=LIVE AND metadata.blessed.number_value=1'
  assert record.newest(query) is None  # nothing recorded yet
  for run, blessed in (("run-1", 1.0), ("run-2", 1.0), ("run-3", 0.0)):
    record.add({"name": f"{run}/GlueEvaluator/blessing", "uri": f"/{run}/blessing",
                "metadata": {"blessed": blessed}}, "tfx.ModelBlessing", "GlueEvaluator", run)
  record.add({"name": "run-3/Trainer/model", "uri": "/run-3/model", "metadata": {}},
             "tfx.Model", "Trainer", "run-3")
  assert record.newest(query) == {"name": "run-2/GlueEvaluator/blessing",
                                  "uri": "/run-2/blessing", "metadata": {"blessed": 1.0}}
  assert record.newest('schema_title="tfx.Model" AND name="run-3/Trainer/model"')[
      "uri"] == "/run-3/model"
  with pytest.raises(UserError, match="cannot evaluate the artifact filter field 'create_time'"):
    record.newest('create_time="2026-12-01"')
