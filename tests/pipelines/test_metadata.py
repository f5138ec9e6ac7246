"""pipelines/metadata.py: a node's outputs and their properties, read back from the ML Metadata
that a LocalDagRunner run wrote; and local_runner.StageReporter, which tells an observer of
each stage with those outputs."""

import types

import pytest
from tfx import v1 as tfx

from pipelines import local_runner, metadata
from pipelines.observer import OutputArtifact

PIPELINE_NAME = "metadata-test"


@tfx.dsl.components.component
def Recorder(  # TFX names components like classes.
    model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model]) -> None:
  model.set_int_custom_property("steps", 300)
  model.set_float_custom_property("loss", 6.125)
  model.set_string_custom_property("note", "a note")


class RecordingObserver:
  def __init__(self):
    self.calls = []

  def stage_started(self, stage):
    self.calls.append(("started", stage))

  def stage_finished(self, stage, outputs, cached=False):
    self.calls.append(("finished", stage, outputs, cached))

  def progress(self, message):
    self.calls.append(("progress", message))


def _run(root, observer) -> None:
  """One LocalDagRunner run, reported to `observer` as local_runner.run reports it."""
  path = str(root / "metadata.sqlite")
  config = types.SimpleNamespace(name=PIPELINE_NAME, metadata_path=path)
  with local_runner.StageReporter(config, observer).attached():
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME, pipeline_root=str(root / "pipeline"),
        components=[Recorder()], enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            path)))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
  """One run and a second, cached one: (the store's path, [(latest execution id, node outputs)
  after each run], what the observer was told)."""
  root = tmp_path_factory.mktemp("metadata")
  path = str(root / "metadata.sqlite")
  assert metadata.latest_execution_id(path) == 0  # no store yet
  after, observer = [], RecordingObserver()
  for _ in range(2):
    _run(root, observer)
    after.append((metadata.latest_execution_id(path),
                  metadata.node_outputs(path, PIPELINE_NAME, "Recorder")))
  return path, after, observer.calls


def test_a_nodes_outputs_carry_the_properties_its_executor_recorded(two_runs):
  _, after, _ = two_runs
  (_, (outputs, cached)) = after[0]
  (model,) = outputs["model"]
  assert isinstance(model, OutputArtifact) and model.uri.startswith("/")
  # TFX adds its own (tfx_version, is_external).
  assert {name: model.properties[name] for name in ("steps", "loss", "note")} == {
      "steps": 300, "loss": 6.125, "note": "a note"}
  assert not cached


def test_a_cache_hit_is_reported_with_the_cached_artifacts(two_runs):
  _, after, _ = two_runs
  (first_id, (first, _)), (second_id, (second, cached)) = after
  assert second_id > first_id and cached
  assert second == first


def test_an_execution_no_newer_than_the_given_one_is_not_reported(two_runs):
  path, after, _ = two_runs
  latest_id = after[-1][0]
  assert metadata.node_outputs(path, PIPELINE_NAME, "Recorder", latest_id) == ({}, False)
  assert metadata.node_outputs(path, PIPELINE_NAME, "NoSuchNode") == ({}, False)


def test_the_stage_reporter_tells_the_observer_of_each_stage_and_its_outputs(two_runs):
  _, after, calls = two_runs
  (_, (first, _)), (_, (second, _)) = after
  assert calls == [("started", "Recorder"), ("finished", "Recorder", first, False),
                   ("started", "Recorder"), ("finished", "Recorder", second, True)]
