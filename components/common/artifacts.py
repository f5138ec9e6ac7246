"""The custom artifact type that one component writes and another reads."""

from tfx import types


class PretrainDataStatistics(types.Artifact):
  """TokenizePack's stats.json (contract.DATA_STATS_FILE), its headline counts as custom
  properties; BertPusher puts it in the model card."""

  # KubeflowV2DagRunner compiles a custom type's name as its schema title, which must read
  # namespace.Title, and Vertex's TFX entrypoint imports the type by that title as a class
  # path: components/__init__.py provides components.PretrainDataStatistics.
  TYPE_NAME = "components.PretrainDataStatistics"
