"""The rehearsal's ML Metadata: the record of every artifact its runs produced, the resolver
tasks' queries against it, and artifacts as an observer sees them.

Resolver tasks (latest blessed model, its blessing): Vertex evaluates their artifact queries
against ML Metadata. The rehearsal evaluates the same filter strings (their
`{{$.inputs.artifacts[...].metadata[...]}}` placeholders resolved by kfp.local's
placeholder_utils) against <work_dir>/root/artifacts.jsonl, the record of every artifact the
rehearsals of this work dir produced (name, type, URI, metadata as read back); the newest
match wins. The first rehearsal resolves nothing, as the first Vertex run does.
"""

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml
from kfp.local import placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.types.artifact import CUSTOM_PROPERTIES_PREFIX

from pipelines.observer import OutputArtifact
from trainer.errors import UserError

ARTIFACT_RECORD = "artifacts.jsonl"


class ArtifactRecord:
  """Every artifact the rehearsals produced, one JSON line each: the rehearsal's ML Metadata."""

  def __init__(self, path: str):
    self.path = path

  def add(self, artifact: dict, schema_title: str, task: str, run_name: str) -> None:
    """Records `artifact` ({"name", "uri", "metadata"}), an output of `task` in `run_name`."""
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps({**artifact, "schema_title": schema_title, "task": task,
                          "run": run_name}, sort_keys=True) + "\n")

  def newest(self, query: str) -> dict | None:
    """The newest artifact that Vertex's artifact filter `query` matches, or None."""
    if not os.path.exists(self.path):
      return None
    with open(self.path, encoding="utf-8") as f:
      artifacts = [json.loads(line) for line in f]
    clauses = [_parse_clause(clause) for clause in query.split(" AND ")]
    matches = [a for a in artifacts if all(_holds(a, field, value) for field, value in clauses)]
    if not matches:
      return None
    newest = matches[-1]
    return {key: newest[key] for key in ("name", "uri", "metadata")}


def resolve(resolver: dict, executor_input_dict: dict, inputs_complete: bool,
            record: ArtifactRecord) -> tuple[dict[str, str], dict[str, dict]]:
  """A resolver task's queries (placeholders resolved) and the artifacts they found, by output
  key; an output nothing matched is absent.

  resolver is the executor's `resolver` entry; inputs_complete: every input the task declares
  was resolved upstream (an input that upstream did not resolve leaves nothing to query with).
  """
  queries, outputs = {}, {}
  if inputs_complete:
    for key, query in resolver["outputArtifactQueries"].items():
      queries[key] = placeholder_utils.resolve_io_placeholders(executor_input_dict,
                                                               query["filter"])
      match = record.newest(queries[key])
      if match is not None:
        outputs[key] = match
  return queries, outputs


def schema_title(artifact_spec: pipeline_spec_pb2.ComponentOutputsSpec.ArtifactSpec) -> str:
  """The title of a TFX instance schema ("title: tfx.Model ..."), Vertex's schema_title."""
  artifact_type = artifact_spec.artifact_type
  if artifact_type.WhichOneof("kind") == "instance_schema":
    return yaml.safe_load(artifact_type.instance_schema)["title"]
  return artifact_type.schema_title


def observed(outputs: Mapping[str, dict]) -> dict[str, list[OutputArtifact]]:
  """A task's outputs ({"name", "uri", "metadata"} by output key) as an observer sees them."""
  return {key: [OutputArtifact(artifact["uri"], component_properties(artifact["metadata"]))]
          for key, artifact in outputs.items()}


def component_properties(metadata: Mapping[str, Any]) -> dict[str, Any]:
  """An artifact's metadata by the names its component gave the properties.

  TFX's entrypoint writes a custom property named like one of the type's properties as
  "custom:NAME", and it wins over the typed one here, as custom properties do where a local
  run's properties are read from ML Metadata (pipelines/metadata.py). Metadata numbers are
  doubles: TFX wrote its integer properties as whole doubles, so a whole number comes back as
  an int, as ML Metadata gives it.
  """
  typed = {name: value for name, value in metadata.items()
           if not name.startswith(CUSTOM_PROPERTIES_PREFIX)}
  custom = {name.removeprefix(CUSTOM_PROPERTIES_PREFIX): value
            for name, value in metadata.items() if name.startswith(CUSTOM_PROPERTIES_PREFIX)}
  return {name: int(value) if isinstance(value, float) and value.is_integer() else value
          for name, value in {**typed, **custom}.items()}


# field=value, the value a quoted string or a bare word/number (Vertex's artifact filter syntax).
_CLAUSE = re.compile(r'\s*([A-Za-z_][\w.]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s"]+)\s*')


def _parse_clause(clause: str) -> tuple[str, str | float]:
  match = _CLAUSE.fullmatch(clause)
  if not match:
    raise UserError(f"the rehearsal cannot evaluate the artifact filter clause {clause!r}")
  field, literal = match.groups()
  if literal.startswith('"'):
    return field, json.loads(literal)
  try:
    return field, float(literal)
  except ValueError:
    return field, literal


def _holds(artifact: dict, field: str, value: str | float) -> bool:
  if field in ("schema_title", "name"):
    return artifact[field] == value
  if field == "state":
    return value == "LIVE"  # the rehearsal deletes nothing: every recorded artifact is live
  parts = field.split(".")
  if len(parts) == 3 and parts[0] == "metadata":
    found = artifact["metadata"].get(parts[1])
    if parts[2] == "number_value":
      return isinstance(found, (int, float)) and not isinstance(found, bool) and found == value
    if parts[2] == "string_value":
      return found == value
  raise UserError(f"the rehearsal cannot evaluate the artifact filter field {field!r}")
