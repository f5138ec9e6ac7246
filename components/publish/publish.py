"""Publishing a blessed checkpoint: one new version directory, written atomically.

    DESTINATION/<version>/
        tf2/  hf/  saved_model/  token_importance.npy  training_params.yaml   (the export)
        glue_report.json  glue_report.md  glue_report.png                  (the evaluation)
        data_stats.json                                                     (the corpus)
        model_card.md  model_card.json

Everything is staged under DESTINATION/.staging-<version>-<random> and renamed
to DESTINATION/<version> in one step, which fails rather than overwrite. On a
local or POSIX filesystem the rename is atomic. On GCS a directory rename copies
object by object, so readers must wait for the last file, `PUBLISHED`, which is
written after the rename; it is written on every filesystem so consumers need
one rule.
"""

import datetime
import json
import os
import uuid

import tensorflow as tf
import yaml

from trainer import contract, flops
from trainer.export import load_params_file

PUBLISHED_MARKER = "PUBLISHED"
# The corpus statistics, renamed beside the export's own files.
DATA_STATS_NAME = "data_stats.json"


class VersionExistsError(FileExistsError):
  """The version directory is already published; versions are never overwritten."""


def new_version(now: datetime.datetime | None = None) -> str:
  """A sortable version name: the UTC time to the second, e.g. 20261125T181502Z."""
  now = now or datetime.datetime.now(datetime.UTC)
  return now.strftime("%Y%m%dT%H%M%SZ")


def copy_tree(source: str, target: str) -> None:
  """Copies a directory tree with tf.io.gfile (local paths and gs:// alike)."""
  for directory, _, files in tf.io.gfile.walk(source):
    relative = os.path.relpath(directory, source)
    target_dir = target if relative == "." else os.path.join(target, relative)
    tf.io.gfile.makedirs(target_dir)
    for name in files:
      tf.io.gfile.copy(os.path.join(directory, name), os.path.join(target_dir, name))


def _read_text(path: str) -> str:
  with tf.io.gfile.GFile(path) as f:
    return f.read()


def _write_text(path: str, text: str) -> None:
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(text)


def token_drop_settings(training_params: dict) -> dict:
  """The token-dropping fields of a run's encoder config (empty for a non-dropping run)."""
  encoder = training_params.get("task", {}).get("model", {}).get("encoder", {}).get("any", {})
  return {k: v for k, v in sorted(encoder.items()) if k.startswith("token_")}


def pretraining_summary(export_dir: str) -> dict:
  """The run's last validation (full depth and as trained) and its analytic training FLOPs,
  which follow the kept-count schedule; empty parts for an export that lacks them."""
  summary = {}
  metrics_path = os.path.join(export_dir, contract.EVAL_METRICS_FILE)
  if tf.io.gfile.exists(metrics_path):
    metrics = json.loads(_read_text(metrics_path))
    summary["validation_step"] = metrics.get("step")
    for name in ("validation_loss", "masked_lm_accuracy"):
      for key in (name, name + contract.AS_TRAINED_SUFFIX):
        if key in metrics:
          summary[key] = round(metrics[key], 4)
  params_path = os.path.join(export_dir, contract.TRAINING_PARAMS_FILE)
  if tf.io.gfile.exists(params_path):
    run = flops.run_flops(load_params_file(params_path))
    summary["training_flops"] = {"kept_tokens_per_stage": list(run.keep_counts),
                                 "steps_per_stage": list(run.stage_steps),
                                 "mean_per_step": f"{run.mean_step_flops:.4g}",
                                 "total": f"{run.total:.4g}"}
  return summary


def model_card(version: str, training_params: dict, data_stats: dict | None, glue_report: dict,
               lineage: dict, pretraining: dict | None = None) -> dict:
  encoder = training_params.get("task", {}).get("model", {}).get("encoder", {}).get("any", {})
  return {
      "version": version,
      "model": {k: encoder.get(k) for k in ("num_layers", "hidden_size", "num_attention_heads",
                                            "intermediate_size", "vocab_size",
                                            "max_position_embeddings")},
      "token_dropping": token_drop_settings(training_params),
      "training": {
          "train_steps": training_params.get("trainer", {}).get("train_steps"),
          "global_batch_size": training_params.get("task", {}).get("train_data", {}).get(
              "global_batch_size"),
          "seq_length": training_params.get("task", {}).get("train_data", {}).get("seq_length"),
          "init_checkpoint": training_params.get("task", {}).get("init_checkpoint") or None,
      },
      "pretraining": pretraining or {},
      "data": data_stats,
      "evaluation": {
          "glue_score": glue_report.get("glue_score"),
          "tasks": [task.get("display_name", name)
                    for name, task in sorted(glue_report.get("tasks", {}).items())],
          "blessing": glue_report.get("blessing"),
      },
      "lineage": lineage,
  }


def model_card_markdown(card: dict) -> str:
  lines = [f"# Token-dropping BERT, version {card['version']}", "",
           "An ordinary BERT checkpoint (`tf2/` restores into Model Garden's `BertEncoderV2`; "
           "`hf/` loads in Hugging Face `transformers`), pretrained with token dropping "
           "(Hou et al., ACL 2022).", "", "## Model", ""]
  lines += [f"- {k}: {v}" for k, v in card["model"].items()]
  lines += ["", "## Token dropping", ""]
  lines += [f"- {k}: {v}" for k, v in card["token_dropping"].items()] or ["- off"]
  lines += ["", "## Training", ""]
  lines += [f"- {k}: {v}" for k, v in card["training"].items()]
  lines += ["", "## Pretraining validation and cost", "",
            "Validation MLM at full depth (what fine-tuning sees) and as trained (tokens "
            "dropped as in the last training step).", ""]
  lines += [f"- {k}: {v}" for k, v in card.get("pretraining", {}).items()] or [
      "- not recorded"]
  lines += ["", "## Evaluation", "",
            f"- GLUE score: {card['evaluation']['glue_score']}",
            f"- tasks: {card['evaluation']['tasks']}",
            f"- blessing: {card['evaluation']['blessing']}", "",
            "Per-task results: glue_report.md.", "", "## Data", ""]
  data = card["data"] or {}
  lines += [f"- {k}: {json.dumps(v)}" for k, v in data.items()] or ["- no statistics recorded"]
  lines += ["", "## Lineage (ML Metadata)", ""]
  lines += [f"- {k}: {v}" for k, v in card["lineage"].items()]
  return "\n".join(lines) + "\n"


def publish(destination: str, export_dir: str, evaluation_dir: str,
            data_stats_path: str | None, lineage: dict, version: str | None = None) -> str:
  """Publishes one version; returns its directory. Raises VersionExistsError if it exists."""
  version = version or new_version()
  final = os.path.join(destination, version)
  if tf.io.gfile.exists(final):
    raise VersionExistsError(f"{final} is already published; versions are never overwritten "
                             "(pass another version, or remove it by hand)")
  for required in (os.path.join(export_dir, contract.TF2_DIR), os.path.join(evaluation_dir,
                                                                 contract.GLUE_REPORT_JSON)):
    if not tf.io.gfile.exists(required):
      raise FileNotFoundError(f"{required} is missing: publish needs the trainer's export and "
                              "the GLUE evaluation")
  tf.io.gfile.makedirs(destination)
  staging = os.path.join(destination, f".staging-{version}-{uuid.uuid4().hex[:8]}")
  try:
    copy_tree(export_dir, staging)
    for name in (contract.GLUE_REPORT_JSON, contract.GLUE_REPORT_MD, contract.GLUE_REPORT_PNG):
      source = os.path.join(evaluation_dir, name)
      if tf.io.gfile.exists(source):
        tf.io.gfile.copy(source, os.path.join(staging, name))
    data_stats = None
    if data_stats_path:
      data_stats = json.loads(_read_text(data_stats_path))
      _write_text(os.path.join(staging, DATA_STATS_NAME), json.dumps(data_stats, indent=2))
    params_path = os.path.join(export_dir, contract.TRAINING_PARAMS_FILE)
    training_params = (yaml.load(_read_text(params_path), Loader=yaml.FullLoader)
                       if tf.io.gfile.exists(params_path) else {})
    glue_report = json.loads(_read_text(os.path.join(evaluation_dir, contract.GLUE_REPORT_JSON)))
    card = model_card(version, training_params, data_stats, glue_report, lineage,
                      pretraining_summary(export_dir))
    _write_text(os.path.join(staging, contract.MODEL_CARD_JSON),
                json.dumps(card, indent=2, default=str))
    _write_text(os.path.join(staging, contract.MODEL_CARD_MD), model_card_markdown(card))
    try:
      tf.io.gfile.rename(staging, final, overwrite=False)
    except tf.errors.AlreadyExistsError as e:
      raise VersionExistsError(f"{final} was published while this version was staged; "
                               "versions are never overwritten") from e
  finally:
    if tf.io.gfile.exists(staging):
      tf.io.gfile.rmtree(staging)
  _write_text(os.path.join(final, PUBLISHED_MARKER), version + "\n")
  return final
