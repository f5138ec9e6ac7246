"""The custom artifact type that one component writes and another reads, and how a component
records figures on its artifacts."""

from collections.abc import Mapping

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
