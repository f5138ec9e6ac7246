"""GlueEvaluator: the TFX component that fine-tunes the trained Model on GLUE and blesses it.

It is a Python-function component (tfx.v1.dsl.components.component) rather than a custom
executor class: it needs no Beam, its inputs, outputs and parameters are all declared by the
signature below, and the work is one call to evaluate.evaluate_glue. The same function
runs in-process under LocalDagRunner and in the project's image on Vertex.

Inputs:
  model: the trained Model. Its exported checkpoint is read from
    `<model.uri>/<checkpoint_subdir>`, the export's tf2/ directory or the export root that
    holds tf2/. The default, Format-Serving, is the Trainer's serving_model_dir, where the
    trainer exports (so the checkpoint is Format-Serving/tf2).
  baseline_model, baseline_blessing (optional): the previously blessed Model and its
    ModelBlessing, from a Resolver with LatestBlessedModelStrategy. The blessing's directory
    holds that model's glue_report.json, the baseline for the table, the chart and the
    decision. On the first run the Resolver finds nothing and both are absent.
Outputs:
  evaluation (ModelEvaluation): glue_report.json, glue_report.md, glue_report.png and
    tensorboard/; custom property glue_score.
  blessing (ModelBlessing): custom properties blessed (1/0) and current_model_id, which
    LatestBlessedModelStrategy reads, a BLESSED or NOT_BLESSED file, and glue_report.json.
Parameters:
  tasks: comma-separated task names (default rt_sst2, the offline Rotten Tomatoes task).
  glue_dir / tfds_data_dir: where GLUE tasks are read from (not needed for rt_sst2).
  threshold, tolerance: blessed iff GLUE score >= threshold and >= baseline - tolerance
    (scores are fractions: 0.7 is 70).
  finetune_config: FineTuneConfig as JSON, e.g. '{"learning_rates": [1e-4], "epochs": 2}'.
  lower_case: lower-case and strip accents, as for an uncased vocab.
"""

import os

from tfx import v1 as tfx

from components.glue_eval import blessing as blessing_lib
from components.glue_eval import evaluate, finetune
from components.glue_eval import report as report_lib
from components.glue_eval.tasks import ROTTEN_TOMATOES_TASK, parse_task_list
from trainer import contract

DEFAULT_CHECKPOINT_SUBDIR = contract.SERVING_SUBDIR


@tfx.dsl.components.component
def GlueEvaluator(  # TFX names components like classes.
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    evaluation: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    baseline_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model] = None,
    baseline_blessing: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ModelBlessing] = None,
    tasks: tfx.dsl.components.Parameter[str] = ROTTEN_TOMATOES_TASK,
    glue_dir: tfx.dsl.components.Parameter[str] = "",
    tfds_data_dir: tfx.dsl.components.Parameter[str] = "",
    checkpoint_subdir: tfx.dsl.components.Parameter[str] = DEFAULT_CHECKPOINT_SUBDIR,
    threshold: tfx.dsl.components.Parameter[float] = 0.0,
    tolerance: tfx.dsl.components.Parameter[float] = 0.0,
    finetune_config: tfx.dsl.components.Parameter[str] = "{}",
    lower_case: tfx.dsl.components.Parameter[bool] = True,
) -> None:
  baseline_report = None
  if baseline_blessing is not None:
    baseline_id = baseline_blessing.get_int_custom_property(blessing_lib.CURRENT_MODEL_ID_KEY)
    if baseline_model is not None and baseline_id != baseline_model.id:
      raise ValueError(f"baseline_blessing blesses model {baseline_id} but baseline_model is "
                       f"{baseline_model.id}; pass both outputs of one Resolver")
    baseline_report = blessing_lib.read_blessing_report(baseline_blessing)
  report = evaluate.evaluate_glue(
      os.path.join(model.uri, checkpoint_subdir), parse_task_list(tasks),
      evaluation.uri, glue_dir=glue_dir or None, tfds_data_dir=tfds_data_dir or None,
      config=finetune.FineTuneConfig.from_json(finetune_config),
      # Vertex compiles bool parameters to INT.
      lower_case=bool(lower_case),
      baseline_report=baseline_report, policy=evaluate.BlessingPolicy(threshold, tolerance))
  evaluation.set_float_custom_property(blessing_lib.GLUE_SCORE_KEY, report["glue_score"])
  blessing_lib.write_model_blessing(
      blessing, model, blessing_lib.BlessingDecision(**report["blessing"]),
      os.path.join(evaluation.uri, report_lib.REPORT_JSON), baseline_model)
