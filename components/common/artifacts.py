"""The custom artifact type that one component writes and another reads, and how a component
records figures on its artifacts."""

import json
import sys
from collections.abc import Mapping, Sequence

from tfx import types

from trainer import contract


class PretrainDataStatistics(types.Artifact):
  """TokenizePack's stats.json (contract.DATA_STATS_FILE), its headline counts as custom
  properties; BertPusher puts it in the model card."""

  # KubeflowV2DagRunner compiles a custom type's name as its schema title, which must read
  # namespace.Title, and Vertex's TFX entrypoint imports the type by that title as a class
  # path: components/__init__.py provides components.PretrainDataStatistics.
  TYPE_NAME = "components.PretrainDataStatistics"


def foreign(artifact: types.Artifact | None, pipeline_name: str) -> bool:
  """Whether `artifact` was made by a pipeline other than `pipeline_name` (contract.
  PIPELINE_NAME). An artifact that records no pipeline predates the property and counts as
  this pipeline's."""
  if artifact is None or not pipeline_name:
    return False
  recorded = artifact.get_string_custom_property(contract.PIPELINE_NAME)
  return bool(recorded) and recorded != pipeline_name


def set_custom_properties(artifact: types.Artifact, values: Mapping[str, int | float]) -> None:
  """Records counts as int custom properties and ratios or losses as float ones, the types
  ML Metadata keeps them as."""
  for name, value in values.items():
    if isinstance(value, float):
      artifact.set_float_custom_property(name, value)
    else:
      artifact.set_int_custom_property(name, value)


# The flag through which Vertex (and a rehearsal) hands TFX's entrypoint its executor input.
INVOCATION_FLAG = "--json_serialized_invocation_args"


def resource_names(argv: Sequence[str] | None = None) -> dict[str, str]:
  """{artifact URI: resource name} of the running task's input and output artifacts, on Vertex
  (projects/P/locations/L/metadataStores/default/artifacts/ID). TFX's Vertex entrypoint keeps
  a name only as an integer id hashed from it, so the names are read from the executor input
  it was started with (argv's INVOCATION_FLAG). Empty elsewhere (LocalDagRunner)."""
  argv = list(sys.argv if argv is None else argv)
  text = next((argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == INVOCATION_FLAG), None)
  text = text or next((arg.split("=", 1)[1] for arg in argv
                       if arg.startswith(INVOCATION_FLAG + "=")), None)
  if not text:
    return {}
  invocation = json.loads(text)
  names = {}
  for section in ("inputs", "outputs"):
    for entry in invocation.get(section, {}).get("artifacts", {}).values():
      for artifact in entry.get("artifacts", []):
        if artifact.get("name") and artifact.get("uri"):
          names[artifact["uri"]] = artifact["name"]
  return names


def lineage_entry(artifact: types.Artifact, names: Mapping[str, str]) -> dict:
  """What a reader can look an artifact up by: its URI, and its resource name on Vertex, or
  its ML Metadata id in a local run's SQLite store."""
  entry = {"uri": artifact.uri}
  if artifact.uri in names:
    entry["resource_name"] = names[artifact.uri]
  elif artifact.id:
    entry["mlmd_id"] = artifact.id
  return entry
