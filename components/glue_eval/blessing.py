"""The blessing: is the model good enough, and not worse than the last blessed one?

A model is blessed when its GLUE score is at least an absolute threshold and at least the
previously blessed model's score minus a tolerance (scores are fractions, as in
metrics.py). The decision is recorded on a TFX ModelBlessing the way TFX's Evaluator records
its own: int custom properties `blessed` (1/0) and `current_model_id` (the Model artifact's
MLMD id), which tfx.v1.dsl.experimental.LatestBlessedModelStrategy matches against Model
ids, plus a BLESSED or NOT_BLESSED marker file. On Vertex, TFX's entrypoint rewrites the ids
as the artifacts' resource names, which Vertex's resolver matches (component.py says when).
The blessing's directory also holds the model's glue_report.json, so whoever resolves this
blessing as a baseline has the report to compare against.
"""

import dataclasses
import math
import os
from typing import TYPE_CHECKING

import tensorflow as tf

from components.glue_eval import report as report_lib
from trainer import contract

if TYPE_CHECKING:  # The CLI decides blessings too, without importing TFX.
  from tfx import types

# The names TFX's Evaluator and LatestBlessedModelStrategy use (tfx.components.evaluator.constants);
# contract.BLESSED and contract.BLESSING_MESSAGE are TFX's names too.
CURRENT_MODEL_ID_KEY = "current_model_id"
CURRENT_MODEL_URI_KEY = "current_model"
BASELINE_MODEL_ID_KEY = "baseline_model_id"
BASELINE_MODEL_URI_KEY = "baseline_model"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"


@dataclasses.dataclass(frozen=True)
class BlessingDecision:
  blessed: bool
  score: float
  threshold: float
  baseline_score: float | None
  tolerance: float
  reason: str

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def decide(score: float, threshold: float, baseline_score: float | None = None,
           tolerance: float = 0.0) -> BlessingDecision:
  """Blessed iff score >= threshold and (no baseline or score >= baseline_score - tolerance)."""
  if tolerance < 0:
    raise ValueError(f"tolerance {tolerance} must be >= 0: it is how much worse than the "
                     "baseline a model may score")
  failures = []
  if math.isnan(score):
    failures.append("the GLUE score is NaN")
  elif score < threshold:
    failures.append(f"GLUE score {score:.4f} is below the threshold {threshold:.4f}")
  if baseline_score is not None and not score >= baseline_score - tolerance:
    failures.append(f"GLUE score {score:.4f} is below the blessed baseline's {baseline_score:.4f}"
                    f" minus the tolerance {tolerance:.4f}")
  if failures:
    reason = "; ".join(failures)
  else:
    reason = f"GLUE score {score:.4f} >= threshold {threshold:.4f}" + (
        f" and >= baseline {baseline_score:.4f} - tolerance {tolerance:.4f}"
        if baseline_score is not None else " (no blessed baseline yet)")
  return BlessingDecision(not failures, score, threshold, baseline_score, tolerance, reason)


def write_model_blessing(blessing: "types.Artifact", model: "types.Artifact",
                         decision: BlessingDecision, report_path: str,
                         baseline_model: "types.Artifact | None" = None,
                         pipeline_name: str = "") -> None:
  """Records `decision` on the ModelBlessing `blessing` for the Model `model`, made by the
  pipeline `pipeline_name`."""
  blessing.set_int_custom_property(contract.BLESSED, int(decision.blessed))
  if pipeline_name:
    blessing.set_string_custom_property(contract.PIPELINE_NAME, pipeline_name)
  blessing.set_int_custom_property(CURRENT_MODEL_ID_KEY, model.id)
  blessing.set_string_custom_property(CURRENT_MODEL_URI_KEY, model.uri)
  blessing.set_string_custom_property(contract.BLESSING_MESSAGE, decision.reason)
  if not math.isnan(decision.score):
    blessing.set_float_custom_property(contract.GLUE_SCORE, decision.score)
  if baseline_model is not None:
    blessing.set_int_custom_property(BASELINE_MODEL_ID_KEY, baseline_model.id)
    blessing.set_string_custom_property(BASELINE_MODEL_URI_KEY, baseline_model.uri)
  tf.io.gfile.makedirs(blessing.uri)
  marker = BLESSED_FILE if decision.blessed else NOT_BLESSED_FILE
  with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), "w") as f:
    f.write("")
  tf.io.gfile.copy(report_path, os.path.join(blessing.uri, report_lib.REPORT_JSON),
                   overwrite=True)


def write_skipped_blessing(blessing: "types.Artifact", model: "types.Artifact", reason: str,
                           pipeline_name: str = "") -> None:
  """Records on `blessing` that `model` was not evaluated, because it was not trained
  (contract.TRAINING_SKIPPED gives `reason`): not blessed, so nothing is published and the
  latest blessed model stays the baseline."""
  blessing.set_int_custom_property(contract.BLESSED, 0)
  blessing.set_int_custom_property(CURRENT_MODEL_ID_KEY, model.id)
  blessing.set_string_custom_property(CURRENT_MODEL_URI_KEY, model.uri)
  blessing.set_string_custom_property(contract.BLESSING_MESSAGE,
                                      f"not evaluated: training was skipped ({reason})")
  if pipeline_name:
    blessing.set_string_custom_property(contract.PIPELINE_NAME, pipeline_name)
  tf.io.gfile.makedirs(blessing.uri)
  with tf.io.gfile.GFile(os.path.join(blessing.uri, NOT_BLESSED_FILE), "w") as f:
    f.write("")


def read_blessing_report(blessing: "types.Artifact") -> dict:
  """The glue_report.json that write_model_blessing stored beside a blessing."""
  path = os.path.join(blessing.uri, report_lib.REPORT_JSON)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"the baseline ModelBlessing {blessing.uri!r} has no "
                            f"{report_lib.REPORT_JSON}; only blessings written by GlueEvaluator "
                            "can serve as a baseline")
  return report_lib.read_report(path)
