"""GlueEvaluator in a LocalDagRunner pipeline with SQLite MLMD, fed by LatestBlessedModelStrategy.

Three runs, each importing a new Model: A is blessed; B is refused by its threshold, with A as
its baseline; C is blessed, and its baseline is still A, since B was never blessed.
"""

import json
import shutil

import ml_metadata as mlmd
import pytest
from tfx import v1 as tfx
from tfx.types import artifact_utils

from components.glue_eval.component import DEFAULT_CHECKPOINT_SUBDIR, GlueEvaluator

Model = tfx.types.standard_artifacts.Model
ModelBlessing = tfx.types.standard_artifacts.ModelBlessing
FINETUNE = json.dumps({"learning_rates": [1e-2], "seeds": [1], "epochs": 1, "batch_size": 16,
                       "max_seq_length": 32})


def _pipeline(root, model_uri, glue_dir, threshold, tolerance):
  model = tfx.dsl.Importer(source_uri=str(model_uri), artifact_type=Model).with_id("model")
  resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=Model),
      model_blessing=tfx.dsl.Channel(type=ModelBlessing)).with_id("latest_blessed_model")
  evaluator = GlueEvaluator(
      model=model.outputs["result"], baseline_model=resolver.outputs["model"],
      baseline_blessing=resolver.outputs["model_blessing"], tasks="SST-2",
      glue_dir=str(glue_dir), threshold=threshold, tolerance=tolerance, finetune_config=FINETUNE)
  return tfx.dsl.Pipeline(
      pipeline_name="glue_eval_test", pipeline_root=str(root / "pipeline"),
      components=[model, resolver, evaluator], enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          str(root / "metadata.sqlite")))


def _artifacts(store, artifact_class):
  artifact_type = store.get_artifact_type(artifact_class.TYPE_NAME)
  return sorted(artifact_utils.deserialize_artifacts(
      artifact_type, store.get_artifacts_by_type(artifact_class.TYPE_NAME)), key=lambda a: a.id)


@pytest.fixture(scope="module")
def store(tiny_export, sst2_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("pipeline")
  for name, threshold, tolerance in (("a", 0.0, 0.0), ("b", 1.01, 0.0), ("c", 0.0, 1.0)):
    shutil.copytree(tiny_export / "tf2", root / name / DEFAULT_CHECKPOINT_SUBDIR / "tf2")
    tfx.orchestration.LocalDagRunner().run(
        _pipeline(root, root / name, sst2_dir, threshold, tolerance))
  return mlmd.MetadataStore(
      tfx.orchestration.metadata.sqlite_metadata_connection_config(str(root / "metadata.sqlite")))


def test_each_run_blesses_or_refuses_against_the_latest_blessed_model(store):
  a, b, c = _artifacts(store, Model)
  blessings = _artifacts(store, ModelBlessing)
  assert [(x.get_int_custom_property("current_model_id"), x.get_int_custom_property("blessed"))
          for x in blessings] == [(a.id, 1), (b.id, 0), (c.id, 1)]
  # A had no baseline; B and C were both compared with A, the latest blessed model then.
  assert [x.has_custom_property("baseline_model_id") for x in blessings] == [False, True, True]
  assert [x.get_int_custom_property("baseline_model_id") for x in blessings[1:]] == [a.id, a.id]
  assert "below the threshold 1.0100" in blessings[1].get_string_custom_property(
      "blessing_message")


def test_the_artifacts_hold_the_reports(store):
  blessings = _artifacts(store, ModelBlessing)
  evaluations = _artifacts(store, tfx.types.standard_artifacts.ModelEvaluation)
  assert len(evaluations) == 3
  for evaluation, blessing in zip(evaluations, blessings, strict=True):
    with open(f"{evaluation.uri}/glue_report.json") as f:
      report = json.load(f)
    with open(f"{blessing.uri}/glue_report.json") as f:
      assert json.load(f) == report
    assert evaluation.get_float_custom_property("glue_score") == pytest.approx(report["glue_score"])
    assert blessing.get_float_custom_property("glue_score") == pytest.approx(report["glue_score"])
    assert report["checkpoint"].endswith(f"/{DEFAULT_CHECKPOINT_SUBDIR}/tf2")
  with open(f"{evaluations[2].uri}/glue_report.md") as f:
    assert "| Baseline |" in f.read()


def test_the_strategy_now_resolves_the_last_blessed_model(store):
  models, blessings = _artifacts(store, Model), _artifacts(store, ModelBlessing)
  last_model, last_blessing = models[-1].id, blessings[-1].id
  # The strategy sorts the lists it is given in place.
  resolved = tfx.dsl.experimental.LatestBlessedModelStrategy().resolve_artifacts(
      store, {"model": models, "model_blessing": blessings})
  assert [m.id for m in resolved["model"]] == [last_model]
  assert [b.id for b in resolved["model_blessing"]] == [last_blessing]
