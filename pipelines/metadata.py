"""What a LocalDagRunner run recorded in its ML Metadata store (SQLite), read back for the
stage reporter: a node's latest execution, its output artifacts and their properties."""

import os

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import constants as compiler_constants

from pipelines.observer import OutputArtifact, StageOutputs


def _read_only_store(metadata_path: str) -> metadata_store.MetadataStore:
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = metadata_path
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(connection)


def _properties(artifact: metadata_store_pb2.Artifact) -> dict:
  """Typed and custom properties in one map (a component sets custom ones; ExampleGen sets
  span as both)."""
  return {name: getattr(value, value.WhichOneof("value"))
          for properties in (artifact.properties, artifact.custom_properties)
          for name, value in properties.items() if value.WhichOneof("value")}


def latest_execution_id(metadata_path: str) -> int:
  """The id of the newest execution in the store; 0 when there is no store yet."""
  if not os.path.exists(metadata_path):
    return 0
  return max((e.id for e in _read_only_store(metadata_path).get_executions()), default=0)


def node_outputs(metadata_path: str, pipeline_name: str, node_id: str,
                 after_execution_id: int = 0) -> tuple[StageOutputs, bool]:
  """A node's latest execution, if newer than `after_execution_id`: its output artifacts by
  output key, and whether it was a cache hit. ({}, False) when there is none."""
  store = _read_only_store(metadata_path)
  context = store.get_context_by_type_and_name(compiler_constants.NODE_CONTEXT_TYPE_NAME,
                                               f"{pipeline_name}.{node_id}")
  executions = store.get_executions_by_context(context.id) if context else []
  latest = max(executions, key=lambda e: e.id, default=None)
  if latest is None or latest.id <= after_execution_id:
    return {}, False
  # A resolver's execution links what it resolved as INTERNAL_OUTPUT.
  output_types = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INTERNAL_OUTPUT)
  events = [e for e in store.get_events_by_execution_ids([latest.id]) if e.type in output_types]
  artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  outputs: dict[str, list[OutputArtifact]] = {}
  for event in sorted(events, key=lambda e: e.artifact_id):
    artifact = artifacts[event.artifact_id]
    outputs.setdefault(event.path.steps[0].key, []).append(
        OutputArtifact(artifact.uri, _properties(artifact)))
  return outputs, latest.last_known_state == metadata_store_pb2.Execution.CACHED
