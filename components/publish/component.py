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
  hub_datasets: comma-separated Hugging Face Hub dataset ids of the pretraining corpus, for
    hf/README.md's metadata.
  hub_model_id: the model's name on the Hub (e.g. my-org/tokendrop-bert-base); hf/README.md
    uses it, and names it as base_model of a warm-started version.

The model card's lineage names each artifact by its URI, and on Vertex by its resource name
(read from the task's executor input; TFX's entrypoint keeps only a hashed id), or in a local
run by its id in the SQLite ML Metadata store.
"""

import os

from tfx import v1 as tfx

from components.common.artifacts import PretrainDataStatistics, lineage_entry, resource_names
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
    hub_datasets: tfx.dsl.components.Parameter[str] = "",
    hub_model_id: tfx.dsl.components.Parameter[str] = "",
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
  names = resource_names()
  lineage = {"model": lineage_entry(model, names), "blessing": lineage_entry(blessing, names),
             "evaluation": lineage_entry(evaluation, names)}
  stats_path = None
  if statistics is not None:
    lineage["statistics"] = lineage_entry(statistics, names)
    stats_path = os.path.join(statistics.uri, contract.DATA_STATS_FILE)
  published = publish.publish(push_destination, os.path.join(model.uri, contract.SERVING_SUBDIR),
                              evaluation.uri, stats_path, lineage,
                              datasets=[d.strip() for d in hub_datasets.split(",") if d.strip()],
                              hub_model_id=hub_model_id)
  pushed_model.set_int_custom_property(contract.PUSHED, 1)
  pushed_model.set_string_custom_property(contract.PUSHED_DESTINATION, published)
  pushed_model.set_string_custom_property(contract.PUSHED_VERSION, os.path.basename(published))
