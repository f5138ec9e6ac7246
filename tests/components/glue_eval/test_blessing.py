"""The blessing decision, and ModelBlessings that LatestBlessedModelStrategy reads from MLMD."""

import json
import math
import os

import ml_metadata as mlmd
import pytest
from tfx import v1 as tfx
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.base import base_beam_executor
from tfx.orchestration import metadata
from tfx.types import artifact_utils, standard_artifacts

from components.glue_eval import blessing, component
from trainer import contract


def test_blessed_at_or_above_the_threshold_without_a_baseline():
  decision = blessing.decide(0.5, threshold=0.5)
  assert decision.blessed
  assert decision.reason == "GLUE score 0.5000 >= threshold 0.5000 (no blessed baseline yet)"
  assert not blessing.decide(0.4999, threshold=0.5).blessed


def test_the_baseline_minus_the_tolerance_is_a_second_bar():
  assert blessing.decide(0.5, threshold=0.25, baseline_score=0.75, tolerance=0.25).blessed
  refused = blessing.decide(0.49, threshold=0.25, baseline_score=0.75, tolerance=0.25)
  assert not refused.blessed
  assert refused.reason == ("GLUE score 0.4900 is below the blessed baseline's 0.7500 minus the "
                            "tolerance 0.2500")
  # Better than the baseline is not enough below the threshold, and both failures are named.
  both = blessing.decide(0.2, threshold=0.25, baseline_score=0.3, tolerance=0.0)
  assert not both.blessed
  assert both.reason.count("below") == 2
  assert blessing.decide(0.8, threshold=0.25, baseline_score=0.75).blessed


def test_a_nan_score_is_never_blessed():
  decision = blessing.decide(math.nan, threshold=-1.0)
  assert not decision.blessed
  assert decision.reason == "the GLUE score is NaN"


def test_a_negative_tolerance_is_an_error():
  with pytest.raises(ValueError, match="tolerance -0.1 must be >= 0"):
    blessing.decide(0.5, 0.5, 0.5, tolerance=-0.1)


@pytest.fixture
def store(tmp_path):
  return mlmd.MetadataStore(
      metadata.sqlite_metadata_connection_config(str(tmp_path / "mlmd" / "metadata.sqlite")))


def _publish(store, artifact):
  artifact.type_id = store.put_artifact_type(artifact.artifact_type)
  [artifact.id] = store.put_artifacts([artifact.mlmd_artifact])
  return artifact


def _from_store(store, artifact_class):
  """What an orchestrator hands a resolver: every artifact of the type, read back from MLMD."""
  artifact_type = store.get_artifact_type(artifact_class.TYPE_NAME)
  return artifact_utils.deserialize_artifacts(
      artifact_type, store.get_artifacts_by_type(artifact_class.TYPE_NAME))


def _model(store, tmp_path, name):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / name)
  return _publish(store, model)


def _bless(store, tmp_path, model, score, threshold, baseline=None):
  report = tmp_path / f"report-{model.id}.json"
  report.write_text(json.dumps({"glue_score": score, "tasks": {}}))
  artifact = standard_artifacts.ModelBlessing()
  artifact.uri = str(tmp_path / f"blessing-{model.id}")
  blessing.write_model_blessing(artifact, model, blessing.decide(score, threshold), str(report),
                                baseline)
  return _publish(store, artifact)


def _resolve(store):
  return tfx.dsl.experimental.LatestBlessedModelStrategy().resolve_artifacts(
      store, {"model": _from_store(store, standard_artifacts.Model),
              "model_blessing": _from_store(store, standard_artifacts.ModelBlessing)})


def test_the_strategy_resolves_the_latest_blessed_model(store, tmp_path):
  first, second, third = (_model(store, tmp_path, name) for name in ("a", "b", "c"))
  _bless(store, tmp_path, first, 0.7, threshold=0.5)
  second_blessing = _bless(store, tmp_path, second, 0.6, threshold=0.5, baseline=first)
  _bless(store, tmp_path, third, 0.4, threshold=0.5, baseline=second)
  resolved = _resolve(store)
  assert [m.id for m in resolved["model"]] == [second.id]
  assert [b.id for b in resolved["model_blessing"]] == [second_blessing.id]
  [read_back] = resolved["model_blessing"]
  assert read_back.get_int_custom_property("blessed") == 1
  assert read_back.get_int_custom_property("current_model_id") == second.id
  assert read_back.get_int_custom_property("baseline_model_id") == first.id
  assert read_back.get_float_custom_property("glue_score") == pytest.approx(0.6)


def test_the_strategy_resolves_nothing_without_a_blessed_model(store, tmp_path):
  model = _model(store, tmp_path, "a")
  _bless(store, tmp_path, model, 0.4, threshold=0.5)
  assert _resolve(store) == {"model": [], "model_blessing": []}


def test_the_blessing_directory_has_the_marker_and_the_report(tmp_path):
  model = standard_artifacts.Model()
  model.uri, model.id = str(tmp_path / "model"), 7
  report = tmp_path / "glue_report.json"
  report.write_text(json.dumps({"glue_score": 0.3, "tasks": {"RTE": {"score": 0.3}}}))
  refused, granted = standard_artifacts.ModelBlessing(), standard_artifacts.ModelBlessing()
  refused.uri, granted.uri = str(tmp_path / "refused"), str(tmp_path / "granted")
  blessing.write_model_blessing(refused, model, blessing.decide(0.3, 0.5), str(report))
  blessing.write_model_blessing(granted, model, blessing.decide(0.3, 0.25), str(report))
  assert sorted(os.listdir(refused.uri)) == ["NOT_BLESSED", "glue_report.json"]
  assert sorted(os.listdir(granted.uri)) == ["BLESSED", "glue_report.json"]
  assert (refused.get_int_custom_property("blessed"),
          granted.get_int_custom_property("blessed")) == (0, 1)
  assert refused.get_string_custom_property("current_model") == model.uri
  assert blessing.read_blessing_report(granted)["tasks"] == {"RTE": {"score": 0.3}}


def test_the_decision_is_recorded_by_the_names_tfx_and_the_console_read(tmp_path):
  assert (contract.BLESSED, contract.BLESSING_MESSAGE) == (
      evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
      evaluator_constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY)
  model = standard_artifacts.Model()
  model.uri, model.id = str(tmp_path / "model"), 7
  report = tmp_path / "glue_report.json"
  report.write_text(json.dumps({"glue_score": 0.3, "tasks": {}}))
  refused = standard_artifacts.ModelBlessing()
  refused.uri = str(tmp_path / "refused")
  decision = blessing.decide(0.3, 0.5)
  blessing.write_model_blessing(refused, model, decision, str(report))
  assert refused.get_int_custom_property(contract.BLESSED) == 0
  assert refused.get_string_custom_property(contract.BLESSING_MESSAGE) == decision.reason == (
      "GLUE score 0.3000 is below the threshold 0.5000")
  assert refused.get_float_custom_property(contract.GLUE_SCORE) == 0.3


def test_a_baseline_blessing_without_a_report_is_an_error(tmp_path):
  foreign = standard_artifacts.ModelBlessing()
  foreign.uri = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="has no glue_report.json"):
    blessing.read_blessing_report(foreign)


def test_a_model_that_was_not_trained_is_not_evaluated_and_not_blessed(tmp_path):
  def artifact(cls, name):
    made = cls()
    made.uri = str(tmp_path / name)
    return made

  model = artifact(standard_artifacts.Model, "model")
  model.set_string_custom_property(contract.TRAINING_SKIPPED, "span 1 was already trained on")
  evaluation = artifact(standard_artifacts.ModelEvaluation, "evaluation")
  verdict = artifact(standard_artifacts.ModelBlessing, "blessing")
  properties = {"tasks": "CoLA", "glue_dir": str(tmp_path / "no-glue-data"), "tfds_data_dir": "",
                "checkpoint_subdir": contract.SERVING_SUBDIR, "threshold": 0.5,
                "tolerance": 0.0, "finetune_config": "{}", "lower_case": 1,
                "pipeline_name": "p"}
  context = base_beam_executor.BaseBeamExecutor.Context(tmp_dir=str(tmp_path / "tmp"))
  component.Executor(context).Do(
      {"model": [model]}, {"evaluation": [evaluation], "blessing": [verdict]}, properties)
  assert verdict.get_int_custom_property(contract.BLESSED) == 0
  assert verdict.get_string_custom_property(contract.BLESSING_MESSAGE) == (
      "not evaluated: training was skipped (span 1 was already trained on)")
  assert verdict.get_string_custom_property(contract.PIPELINE_NAME) == "p"
  assert os.listdir(verdict.uri) == [blessing.NOT_BLESSED_FILE]
  assert os.listdir(evaluation.uri) == []
