"""The lines a local run (`tokendrop demo`, `tokendrop pipeline run|rehearse`) ends with: what
it published, read from the new version's model card."""

import json
import os

from components.publish import publish
from pipelines.config import PipelineConfig
from trainer import contract


def summary(config: PipelineConfig, before: set[str]) -> list[str]:
  """What a run published: the newest of the versions not in `before` (those published before
  the run, publish.published_versions), or why there is none."""
  new = sorted(set(publish.published_versions(config.push.destination)) - before)
  if not new:
    return ["No new version was published (the model was not blessed, the newest span was "
            "trained on already, or every stage was cached); the run's artifacts are under "
            f"{config.root}"]
  published = os.path.join(config.push.destination, new[-1])
  with open(os.path.join(published, contract.MODEL_CARD_JSON), encoding="utf-8") as f:
    card = json.load(f)
  evaluation = card["evaluation"]
  lines = [f"Published {published}/",
           f"  {contract.TF2_DIR}/ (Model Garden BertEncoderV2), {contract.HF_DIR}/ "
           f"(Hugging Face transformers), {contract.MODEL_CARD_MD}, {contract.GLUE_REPORT_MD}",
           f"  GLUE score {evaluation['glue_score']:.4f} on {', '.join(evaluation['tasks'])}"]
  pretraining = card.get("pretraining", {})
  if "validation_loss" in pretraining:
    as_trained = pretraining.get("validation_loss" + contract.AS_TRAINED_SUFFIX)
    lines.append(f"  validation MLM loss {pretraining['validation_loss']:.4f} at full depth" +
                 (f", {as_trained:.4f} as trained" if as_trained is not None else "") +
                 f" (step {pretraining.get('validation_step')})")
  data = card.get("data", {})
  if data:
    lines.append(f"  data: {data['examples']['train']:,} training examples, packing "
                 f"efficiency {data['packing_efficiency']:.1%}")
  return lines
