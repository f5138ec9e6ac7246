"""The custom artifact type that one component writes and another reads."""

from tfx import types


class PretrainDataStatistics(types.Artifact):
  """TokenizePack's stats.json (contract.DATA_STATS_FILE), its headline counts as custom
  properties; BertPusher puts it in the model card."""

  # Vertex (KubeflowV2DagRunner) needs custom type names of the form namespace.Title.
  TYPE_NAME = "tokendrop.PretrainDataStatistics"
