"""Publishing a blessed checkpoint: one new version directory, written atomically.

    DESTINATION/<version>/
        tf2/  hf/  saved_model/  token_importance.npy  training_params.yaml   (the export)
        hf/README.md: Hugging Face's model card (metadata block: library, pipeline_tag, tags,
          datasets, base_model when warm-started, model-index with the run's GLUE results);
          uploading hf/ as it is gives a working model page
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

from trainer import configs, contract, flops
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


# Scores and losses in the card, to this many decimals.
DECIMALS = 4
# What trainer/encoder.py's TokenDropSchedule.from_encoder_args does with an unset drop
# layer; tests/components/publish/test_publish.py checks this rule against it for many depths.
DROP_LAYER_DEFAULT_RULE = "num_layers // 2 - 1"


def _rounded(value):
  return None if value is None else round(float(value), DECIMALS)


def _encoder_params(training_params: dict) -> dict:
  return training_params.get("task", {}).get("model", {}).get("encoder", {}).get("any", {})


def token_drop_settings(training_params: dict) -> tuple[dict, dict]:
  """The token-dropping settings that applied, and a note for each that took a default.

  An unset setting is replaced by the value that applied: token_drop_layer by the layer
  the encoder used, token_keep_ratio (unset: token_keep_k counts) by the kept count. Empty
  for a run without token-dropping settings.
  """
  encoder = _encoder_params(training_params)
  settings = {k: list(v) if isinstance(v, tuple) else v
              for k, v in sorted(encoder.items()) if k.startswith("token_")}
  if not settings:
    return {}, {}
  encoder_config = configs.TokenDropBertEncoderConfig()
  encoder_config.override(encoder, is_strict=False)
  schedule = encoder_config.layer_schedule()
  seq_length = training_params.get("task", {}).get("train_data", {}).get("seq_length")
  notes = {}
  if settings.get("token_drop_layer") is None:
    settings["token_drop_layer"] = schedule.drop_layer
    notes["token_drop_layer"] = (f"default: {DROP_LAYER_DEFAULT_RULE} for "
                                 f"{schedule.num_layers} layers")
  if settings.get("token_keep_ratio") is None:
    del settings["token_keep_ratio"]
    notes["token_keep_k"] = "token_keep_ratio unset, so token_keep_k sets the kept count"
  else:
    notes["token_keep_k"] = "not used: token_keep_ratio sets the kept count"
  if seq_length:
    settings["kept_tokens"] = schedule.keep_count(seq_length) if schedule.drops_tokens else (
        seq_length)
    notes["kept_tokens"] = f"of seq_length {seq_length}, in the dropped middle layers"
  return settings, notes


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
          summary[key] = _rounded(metrics[key])
  params_path = os.path.join(export_dir, contract.TRAINING_PARAMS_FILE)
  if tf.io.gfile.exists(params_path):
    params = load_params_file(params_path)
    run = flops.run_flops(params)
    bert = flops.run_flops(flops.without_dropping(params))
    summary["training_flops"] = {"kept_tokens_per_stage": list(run.keep_counts),
                                 "steps_per_stage": list(run.stage_steps),
                                 "mean_per_step": f"{run.mean_step_flops:.4g}",
                                 "total": f"{run.total:.4g}",
                                 "bert_without_dropping": f"{bert.total:.4g}",
                                 "fraction_of_bert": _rounded(run.total / bert.total)}
  return summary


def warm_start(init_checkpoint: str, destination: str) -> dict:
  """Where the run started: {"from": "scratch"}, or the checkpoint, relative to this version
  when it is that of a version published under `destination` (a warm start from the last
  blessed model always is, unless that version was removed)."""
  if not init_checkpoint:
    return {"from": "scratch"}
  for version in sorted(tf.io.gfile.listdir(destination), reverse=True):
    version = version.rstrip("/")
    card_path = os.path.join(destination, version, contract.MODEL_CARD_JSON)
    if version.startswith(".") or not tf.io.gfile.exists(card_path):
      continue
    lineage = json.loads(_read_text(card_path)).get("lineage", {})
    # "model_uri": versions published before lineage named each artifact.
    model_uri = lineage.get("model", {}).get("uri") or lineage.get("model_uri", "")
    export_dir = os.path.join(model_uri, contract.SERVING_SUBDIR)
    if model_uri and init_checkpoint.startswith(export_dir + "/"):
      return {"from": f"published version {version}",
              "checkpoint": os.path.join("..", version,
                                         os.path.relpath(init_checkpoint, export_dir))}
  return {"from": "a model that was not published here", "checkpoint": init_checkpoint}


def _data_summary(data_stats: dict | None) -> dict:
  """The corpus figures of TokenizePack's statistics; all of them are in data_stats.json."""
  if not data_stats:
    return {}
  packing = data_stats.get("packing", {})
  return {
      "documents": data_stats.get("documents", {}).get("kept"),
      "examples": data_stats.get("examples"),
      "tokens": data_stats.get("tokens", {}).get("total"),
      "unk_rate": _rounded(data_stats.get("tokens", {}).get("unk_rate")),
      "packing_efficiency": _rounded(packing.get("efficiency")),
      "all_statistics": DATA_STATS_NAME,
  }


def _present(staging: str) -> dict:
  """The version's own files, relative to it."""
  files = {"checkpoint": os.path.join(contract.TF2_DIR, contract.CHECKPOINT_NAME),
           "huggingface": contract.HF_DIR + "/",
           "saved_model": contract.SAVED_MODEL_DIR + "/",
           "token_importance": contract.TOKEN_IMPORTANCE_FILE,
           "training_params": contract.TRAINING_PARAMS_FILE,
           "glue_report": contract.GLUE_REPORT_MD,
           "data_statistics": DATA_STATS_NAME}
  return {name: path for name, path in files.items()
          if tf.io.gfile.exists(os.path.join(staging, path.rstrip("/")))
          or tf.io.gfile.exists(os.path.join(staging, path + ".index"))}


def model_card(version: str, training_params: dict, data_stats: dict | None, glue_report: dict,
               lineage: dict, pretraining: dict | None = None,
               warm_start_from: dict | None = None, files: dict | None = None) -> dict:
  """The card as JSON: no value is None, scores have DECIMALS decimals, paths are relative
  to the version's directory (lineage: each artifact's URI, and its resource name on Vertex
  or its ML Metadata id in a local run)."""
  encoder = _encoder_params(training_params)
  token_dropping, defaults = token_drop_settings(training_params)
  # A first model has no baseline_score; its reason says what it was compared with.
  blessing = {k: _rounded(v) if k in ("score", "baseline_score", "threshold", "tolerance")
              else v for k, v in (glue_report.get("blessing") or {}).items() if v is not None}
  train_data = training_params.get("task", {}).get("train_data", {})
  card = {
      "version": version,
      "files": files or {},
      "model": {k: encoder[k] for k in ("num_layers", "hidden_size", "num_attention_heads",
                                        "intermediate_size", "vocab_size",
                                        "max_position_embeddings") if k in encoder},
      "token_dropping": token_dropping,
      "defaults_applied": defaults,
      "training": {
          "train_steps": training_params.get("trainer", {}).get("train_steps"),
          "global_batch_size": train_data.get("global_batch_size"),
          "seq_length": train_data.get("seq_length"),
          "warm_start": warm_start_from or {"from": "scratch"},
      },
      "pretraining": pretraining or {},
      "data": _data_summary(data_stats),
      "evaluation": {
          "glue_score": _rounded(glue_report.get("glue_score")),
          "tasks": {task.get("display_name", name): _rounded(task.get("score"))
                    for name, task in sorted(glue_report.get("tasks", {}).items())},
          "blessing": blessing,
      },
      "lineage": lineage,
  }
  card["training"] = {k: v for k, v in card["training"].items() if v is not None}
  return card


def _markdown_value(value) -> str:
  if isinstance(value, list | tuple):
    return ", ".join(str(v) for v in value) if value else "none"
  if isinstance(value, dict):
    return ", ".join(f"{k} {_markdown_value(v)}" for k, v in value.items())
  return str(value)


def model_card_markdown(card: dict) -> str:
  lines = [f"# Token-dropping BERT, version {card['version']}", "",
           "An ordinary BERT checkpoint (`tf2/` restores into Model Garden's `BertEncoderV2`; "
           "`hf/` loads in Hugging Face `transformers`), pretrained with token dropping "
           "(Hou et al., ACL 2022). Paths are relative to this directory.", "", "## Files", ""]
  lines += [f"- {k}: `{v}`" for k, v in card["files"].items()] or ["- none recorded"]
  lines += ["", "## Model", ""]
  lines += [f"- {k}: {v}" for k, v in card["model"].items()]
  lines += ["", "## Token dropping", ""]
  notes = card.get("defaults_applied", {})
  lines += [f"- {k}: {_markdown_value(v)}" + (f" ({notes[k]})" if k in notes else "")
            for k, v in card["token_dropping"].items()] or ["- off"]
  lines += ["", "## Training", ""]
  training = dict(card["training"])
  start = training.pop("warm_start")
  lines += [f"- {k}: {v}" for k, v in training.items()]
  lines.append(f"- warm start: from {start['from']}" +
               (f" (`{start['checkpoint']}`)" if "checkpoint" in start else ""))
  lines += ["", "## Pretraining validation and cost", "",
            "Validation MLM at full depth (what fine-tuning sees) and as trained (tokens "
            "dropped as in the last training step).", ""]
  pretraining = dict(card.get("pretraining", {}))
  flops_summary = pretraining.pop("training_flops", None)
  lines += [f"- {k}: {v}" for k, v in pretraining.items()] or ["- not recorded"]
  if flops_summary:
    lines.append("- training FLOPs: " + _markdown_value(flops_summary))
  evaluation = card["evaluation"]
  blessing = evaluation["blessing"]
  lines += ["", "## Evaluation", "", f"- GLUE score: {evaluation['glue_score']}"]
  lines += [f"- {task}: {score}" for task, score in evaluation["tasks"].items()]
  if blessing:
    lines.append(f"- blessed: {'yes' if blessing.get('blessed') else 'no'} "
                 f"({blessing.get('reason')})")
  lines += ["", "Per-task results: `glue_report.md`.", "", "## Data", ""]
  lines += [f"- {k}: {_markdown_value(v)}" for k, v in card["data"].items()] or [
      "- no statistics recorded"]
  lines += ["", "## Lineage", "",
            "Each artifact's URI; on Vertex its ML Metadata resource name, in a local run its id "
            "in the run's SQLite store.", ""]
  lines += [f"- {k}: {_markdown_value(v)}" for k, v in card["lineage"].items()]
  return "\n".join(lines) + "\n"


# How the Hub names the GLUE report's metrics.
HUB_METRICS = {"accuracy": "accuracy", "f1": "f1", "mcc": "matthews_correlation",
               "pearson": "pearsonr", "spearman": "spearmanr"}
HUB_README = "README.md"


def _hub_results(glue_report: dict) -> list[dict]:
  """model-index results: one per task and dev split, from the run's own report (each entry
  names its dev sets' Hub datasets). A task scored on stand-in data (a miniature GLUE
  directory) is not a result and is left out."""
  results = []
  for entry in glue_report.get("tasks", {}).values():
    if entry.get("stand_in"):
      continue
    for split, dataset in entry.get("hub_datasets", {}).items():
      values = [{"type": HUB_METRICS.get(metric, metric), "value": round(100 * value, 2),
                 "name": f"{metric} (x100)"}
                for metric, value in entry["split_metrics"][split].items()]
      results.append({"task": {"type": "text-classification", "name": "Text Classification"},
                      "dataset": dataset, "metrics": values})
  return results


def hub_readme(card: dict, glue_report: dict, datasets: list[str], model_name: str) -> str:
  """hf/README.md: Hugging Face's model card, its metadata block and how the model was made.
  `model_name` names the model on the Hub (push.hub_model_id) or, unset, the version;
  base_model is set for a warm-started run with a Hub name to point at."""
  metadata = {"library_name": "transformers", "pipeline_tag": "fill-mask",
              "tags": ["bert", "fill-mask", "token-dropping", "tensorflow-model-garden"]}
  if datasets:
    metadata["datasets"] = list(datasets)
  start = card["training"]["warm_start"]
  if start.get("from", "scratch") != "scratch" and "/" in model_name:
    metadata["base_model"] = model_name
  results = _hub_results(glue_report)
  if results:
    metadata["model-index"] = [{"name": model_name, "results": results}]
  training = card["training"]
  steps, batch, length = (training.get("train_steps"), training.get("global_batch_size"),
                          training.get("seq_length"))
  dropping = card.get("token_dropping", {})
  pretraining = card.get("pretraining", {})
  spent = pretraining.get("training_flops", {})
  lines = ["---", yaml.safe_dump(metadata, sort_keys=False).rstrip(), "---", "",
           f"# {model_name}", "",
           "A BERT masked language model pretrained with token dropping (Hou et al., \"Token "
           "Dropping for Efficient BERT Pretraining\", ACL 2022): from a middle layer on, the "
           "least important tokens (by a moving average of their MLM loss) skip the layers up "
           "to the last, which sees every token again. The weights are an ordinary BERT's.", "",
           "```python", "from transformers import pipeline", "",
           f'fill = pipeline("fill-mask", model="{model_name}")',
           'fill("The movie was [MASK].")', "```", "", "## Training", ""]
  if steps:
    lines.append(f"- {steps:,} steps" + (f" of {batch} sequences of {length} tokens: "
                                         f"{steps * batch * length:,} tokens"
                                         if batch and length else ""))
  lines.append(f"- started from: {start.get('from', 'scratch')}")
  if dropping:
    lines.append(f"- kept tokens in the dropped layers: {dropping.get('kept_tokens')} of "
                 f"{length} (from layer {dropping.get('token_drop_layer')}; selection "
                 f"{dropping.get('token_selection', 'importance')})")
  if spent:
    lines.append(f"- training FLOPs: {spent['total']}, {spent['fraction_of_bert']} of BERT's "
                 f"{spent['bert_without_dropping']} for the same steps (trainer/flops.py)")
  for key, what in (("validation_loss", "validation MLM loss at full depth"),
                    ("validation_loss" + contract.AS_TRAINED_SUFFIX,
                     "validation MLM loss as trained (tokens dropped)")):
    if key in pretraining:
      lines.append(f"- {what}: {pretraining[key]}")
  if datasets:
    lines.append(f"- data: {', '.join(datasets)}")
  lines += ["", "## Evaluation", ""]
  evaluation = card["evaluation"]
  lines.append(f"GLUE score {evaluation['glue_score']} (dev sets; per task: the median over "
               "seeds at the best learning rate): " + ", ".join(
                   f"{task} {score}" for task, score in evaluation["tasks"].items()) + ".")
  stand_ins = [entry["display_name"] for entry in glue_report.get("tasks", {}).values()
               if entry.get("stand_in")]
  if stand_ins:
    lines.append(f"Scored on stand-in data, not the tasks' own, so not listed as results: "
                 f"{', '.join(stand_ins)}.")
  lines += ["", f"Version {card['version']}; its model_card.md beside this folder has the "
            "full record and the lineage.", ""]
  return "\n".join(lines)


def published_versions(destination: str) -> list[str]:
  """The versions under a push destination, oldest first (version names sort by time)."""
  if not tf.io.gfile.isdir(destination):
    return []
  return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(destination)
                if not name.startswith("."))


def publish(destination: str, export_dir: str, evaluation_dir: str,
            data_stats_path: str | None, lineage: dict, version: str | None = None,
            datasets: list[str] = (), hub_model_id: str = "") -> str:
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
                      pretraining_summary(export_dir),
                      warm_start(training_params.get("task", {}).get("init_checkpoint", ""),
                                 destination),
                      _present(staging))
    _write_text(os.path.join(staging, contract.MODEL_CARD_JSON),
                json.dumps(card, indent=2, default=str))
    _write_text(os.path.join(staging, contract.MODEL_CARD_MD), model_card_markdown(card))
    if tf.io.gfile.isdir(os.path.join(staging, contract.HF_DIR)):
      _write_text(os.path.join(staging, contract.HF_DIR, HUB_README),
                  hub_readme(card, glue_report, list(datasets),
                             hub_model_id or f"tokendrop-bert-{version}"))
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
