"""BertPusher: publishes a blessed model's standard BERT checkpoint with its GLUE report.

TFX's own Pusher copies only the serving model; users of this pipeline need the
evaluation and a model card beside it, and a version directory that appears
atomically, so this is a Python-function component around publish.publish.

Inputs:
  model: the Trainer's Model; its export is `<model.uri>/Format-Serving` (tf2/, hf/,
    saved_model/, token_importance.npy, training_params.yaml).
  blessing: the GlueEvaluator's ModelBlessing. Not blessed: nothing is published.
  evaluation: the GlueEvaluator's ModelEvaluation (glue_report.json/.md/.png).
  statistics (optional): TokenizePack's statistics (stats.json), for the model card.
Outputs:
  pushed_model (PushedModel): custom properties pushed (1/0), pushed_destination and
    pushed_version, as TFX's Pusher sets them, or not_pushed_reason (contract.py's names).
Parameters:
  push_destination: a local directory or gs:// prefix; each push adds <version>/ under it.
"""

import os

from tfx import v1 as tfx

from components.common.artifacts import PretrainDataStatistics
from components.publish import publish
from trainer import contract


@tfx.dsl.components.component
def BertPusher(  # TFX names components like classes.
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    evaluation: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    pushed_model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.PushedModel],
    statistics: tfx.dsl.components.InputArtifact[PretrainDataStatistics] = None,
    push_destination: tfx.dsl.components.Parameter[str] = "",
) -> None:
  if not push_destination:
    raise ValueError("BertPusher needs push_destination (a directory or gs:// prefix); set "
                     "push.destination in the pipeline config")
  if blessing.get_int_custom_property(contract.BLESSED) != 1:
    pushed_model.set_int_custom_property(contract.PUSHED, 0)
    message = blessing.get_string_custom_property(contract.BLESSING_MESSAGE)
    pushed_model.set_string_custom_property(
        contract.NOT_PUSHED_REASON,
        "the model was not blessed" + (f": {message}" if message else ""))
    return
  lineage = {"model_artifact_id": model.id, "model_uri": model.uri,
             "blessing_artifact_id": blessing.id, "evaluation_artifact_id": evaluation.id}
  stats_path = None
  if statistics is not None:
    lineage["statistics_artifact_id"] = statistics.id
    stats_path = os.path.join(statistics.uri, contract.DATA_STATS_FILE)
  published = publish.publish(push_destination, os.path.join(model.uri, contract.SERVING_SUBDIR),
                              evaluation.uri, stats_path, lineage)
  pushed_model.set_int_custom_property(contract.PUSHED, 1)
  pushed_model.set_string_custom_property(contract.PUSHED_DESTINATION, published)
  pushed_model.set_string_custom_property(contract.PUSHED_VERSION, os.path.basename(published))
