"""The published version's model card: rounded scores, defaults spelled out, paths relative
to the version, both validation losses."""

import json
import pathlib

import pytest
from official.modeling import hyperparams

from components.publish import publish
from trainer import configs, contract, data_spec
from trainer.encoder import TokenDropSchedule

# configs/tiny_token_drop.yaml: 4 layers, 32 tokens kept, token_drop_layer unset; on 64-token
# data (the data_spec.json the run's config derived from).
TINY_CONFIG_FILES = ("wiki_books_pretrain_sequence_pack.yaml",
                     "bert_en_uncased_base_token_drop.yaml", "tiny_token_drop.yaml")
TINY_DATA = data_spec.DataSpec(masking="dynamic", file_type=data_spec.GZIP_FILE_TYPE,
                               seq_length=64, max_predictions_per_seq=10, mask_rate=0.15,
                               next_sentence_labels=False, lower_case=True)
GLUE_REPORT = {
    "glue_score": 0.7791907514450868,
    "tasks": {"rt_sst2": {"display_name": "SST-2 format, Rotten Tomatoes sentences",
                          "score": 0.7791907514450868}},
    "blessing": {"blessed": True, "score": 0.7791907514450868, "threshold": 0.55,
                 "baseline_score": None, "tolerance": 0.02,
                 "reason": "GLUE score 0.7792 >= threshold 0.5500"},
}
EVAL_METRICS = {"step": 300, "validation_loss": 6.123456, "validation_loss_as_trained": 6.98765,
                "masked_lm_accuracy": 0.1234567, "masked_lm_accuracy_as_trained": 0.10001}
DATA_STATS = {"documents": {"read": 60, "kept": 60}, "examples": {"total": 317, "train": 264,
                                                                  "validation": 53},
              "tokens": {"total": 19546, "unk": 0, "unk_rate": 0.0},
              "packing": {"efficiency": 0.997535, "positions": 20288},
              "config": {"learn_vocab_size": None, "vocab_file": "/abs/vocab.txt"}}


def _export(directory: pathlib.Path, init_checkpoint: str = "",
            overrides: dict | None = None) -> pathlib.Path:
  """An export as the trainer writes it, without the weights publish does not read."""
  export_dir = directory / contract.SERVING_SUBDIR
  (export_dir / contract.TF2_DIR).mkdir(parents=True)
  (export_dir / contract.TF2_DIR / (contract.CHECKPOINT_NAME + ".index")).write_text("")
  (export_dir / contract.HF_DIR).mkdir()
  params = configs.build_experiment(
      configs.PRETRAINING, TINY_CONFIG_FILES,
      {"trainer": {"train_steps": 300}, "task": {"init_checkpoint": init_checkpoint},
       **(overrides or {})}, data=TINY_DATA)
  hyperparams.save_params_dict_to_yaml(params, str(export_dir / contract.TRAINING_PARAMS_FILE))
  (export_dir / contract.EVAL_METRICS_FILE).write_text(json.dumps(EVAL_METRICS))
  return export_dir


def _evaluation(directory: pathlib.Path, report: dict) -> pathlib.Path:
  directory.mkdir(parents=True)
  (directory / contract.GLUE_REPORT_JSON).write_text(json.dumps(report))
  (directory / contract.GLUE_REPORT_MD).write_text("# report\n")
  return directory


HUB = {"datasets": ["wikimedia/wikipedia", "bookcorpus/bookcorpus"],
       "hub_model_id": "my-org/tokendrop-bert-base"}


def _publish(tmp_path, name, version, init_checkpoint="", overrides=None, report=None,
             hub=None) -> pathlib.Path:
  stats = tmp_path / f"{name}_stats.json"
  stats.write_text(json.dumps(DATA_STATS))
  export_dir = _export(tmp_path / name, init_checkpoint, overrides)
  published = publish.publish(
      str(tmp_path / "published"), str(export_dir),
      str(_evaluation(tmp_path / f"{name}_eval", report or GLUE_REPORT)),
      str(stats), {"model": {"uri": str(tmp_path / name), "mlmd_id": 7}}, version=version,
      **(hub or {}))
  return pathlib.Path(published)


def _strings_and_nones(value, path=()):
  if isinstance(value, dict):
    for key, item in value.items():
      yield from _strings_and_nones(item, (*path, key))
  elif isinstance(value, list):
    for item in value:
      yield from _strings_and_nones(item, path)
  else:
    yield path, value


def test_scores_and_losses_are_rounded_and_both_losses_are_shown(tmp_path):
  version = _publish(tmp_path, "run1", "v1")
  card = json.loads((version / contract.MODEL_CARD_JSON).read_text())
  assert card["evaluation"]["glue_score"] == 0.7792
  assert card["evaluation"]["tasks"] == {"SST-2 format, Rotten Tomatoes sentences": 0.7792}
  assert card["evaluation"]["blessing"] == {
      "blessed": True, "score": 0.7792, "threshold": 0.55, "tolerance": 0.02,
      "reason": "GLUE score 0.7792 >= threshold 0.5500"}
  assert {k: v for k, v in card["pretraining"].items() if k != "training_flops"} == {
      "validation_step": 300, "validation_loss": 6.1235, "validation_loss_as_trained": 6.9877,
      "masked_lm_accuracy": 0.1235, "masked_lm_accuracy_as_trained": 0.1}
  assert card["data"]["packing_efficiency"] == 0.9975
  markdown = (version / contract.MODEL_CARD_MD).read_text()
  assert "- GLUE score: 0.7792\n" in markdown
  assert "- validation_loss: 6.1235\n- validation_loss_as_trained: 6.9877\n" in markdown
  assert "0.77919" not in markdown and "6.12345" not in markdown


def test_options_that_took_a_default_say_which_value_applied(tmp_path):
  version = _publish(tmp_path, "run1", "v1")
  card = json.loads((version / contract.MODEL_CARD_JSON).read_text())
  dropping = card["token_dropping"]
  assert dropping["token_drop_layer"] == 1 and dropping["kept_tokens"] == 32
  assert "token_keep_ratio" not in dropping
  assert card["defaults_applied"]["token_drop_layer"] == (
      "default: num_layers // 2 - 1 for 4 layers")
  assert [(path, value) for path, value in _strings_and_nones(card) if value is None] == []
  markdown = (version / contract.MODEL_CARD_MD).read_text()
  assert "- token_drop_layer: 1 (default: num_layers // 2 - 1 for 4 layers)\n" in markdown
  assert ("- token_keep_k: 32 (token_keep_ratio unset, so token_keep_k sets the kept count)\n"
          in markdown)
  assert "- kept_tokens: 32 (of seq_length 64, in the dropped middle layers)\n" in markdown
  assert "- token_allow_tokens: [UNK], [CLS], [SEP], [MASK]\n" in markdown
  assert "- warm start: from scratch\n" in markdown
  assert "None" not in markdown and "null" not in markdown


def test_a_keep_ratio_sets_the_kept_count(tmp_path):
  version = _publish(tmp_path, "run1", "v1", overrides={
      "task": {"model": {"encoder": {"any": {"token_keep_ratio": 0.25,
                                             "token_drop_layer": 2}}}}})
  card = json.loads((version / contract.MODEL_CARD_JSON).read_text())
  assert card["token_dropping"]["token_keep_ratio"] == 0.25
  assert card["token_dropping"]["token_drop_layer"] == 2
  assert card["token_dropping"]["kept_tokens"] == 16
  assert card["defaults_applied"] == {
      "token_keep_k": "not used: token_keep_ratio sets the kept count",
      "kept_tokens": "of seq_length 64, in the dropped middle layers"}


@pytest.mark.parametrize("num_layers", range(3, 25))
def test_the_stated_drop_layer_rule_is_the_encoders(num_layers):
  stated = eval(publish.DROP_LAYER_DEFAULT_RULE, {"num_layers": num_layers})  # noqa: S307
  assert stated == TokenDropSchedule.from_encoder_args(num_layers, keep_k=1).drop_layer


def test_paths_are_relative_to_the_version_and_a_warm_start_names_its_version(tmp_path):
  first = _publish(tmp_path, "run1", "v1")
  warm_checkpoint = str(tmp_path / "run1" / contract.SERVING_SUBDIR / contract.TF2_DIR /
                        contract.CHECKPOINT_NAME)
  second = _publish(tmp_path, "run2", "v2", init_checkpoint=warm_checkpoint)
  card = json.loads((second / contract.MODEL_CARD_JSON).read_text())
  assert card["training"]["warm_start"] == {
      "from": "published version v1", "checkpoint": "../v1/tf2/bert_model.ckpt"}
  assert (second / card["training"]["warm_start"]["checkpoint"]).resolve().parent == (
      first / contract.TF2_DIR).resolve()
  assert card["files"] == {"checkpoint": "tf2/bert_model.ckpt", "huggingface": "hf/",
                           "training_params": "training_params.yaml",
                           "glue_report": "glue_report.md", "data_statistics": "data_stats.json"}
  absolute = [path for path, value in _strings_and_nones(card)
              if isinstance(value, str) and value.startswith(str(tmp_path))]
  assert absolute == [("lineage", "model", "uri")]
  markdown = (second / contract.MODEL_CARD_MD).read_text()
  assert "- warm start: from published version v1 (`../v1/tf2/bert_model.ckpt`)\n" in markdown
  assert markdown.count(str(tmp_path)) == 1  # the lineage's MLMD URI


def test_a_warm_start_from_an_unpublished_model_keeps_its_path(tmp_path):
  version = _publish(tmp_path, "run1", "v1", init_checkpoint="/elsewhere/bert_model.ckpt")
  card = json.loads((version / contract.MODEL_CARD_JSON).read_text())
  assert card["training"]["warm_start"] == {"from": "a model that was not published here",
                                            "checkpoint": "/elsewhere/bert_model.ckpt"}


def test_published_versions_are_listed_oldest_first_without_staging_directories(tmp_path):
  assert publish.published_versions(str(tmp_path / "nothing_yet")) == []
  _publish(tmp_path, "run2", "20261202T000000Z")
  _publish(tmp_path, "run1", "20261201T000000Z")
  (tmp_path / "published" / ".staging-20261203T000000Z-0a1b2c3d").mkdir()
  assert publish.published_versions(str(tmp_path / "published")) == [
      "20261201T000000Z", "20261202T000000Z"]


def _task(display_name, metrics, split_metrics, hub_datasets, stand_in=False):
  score = sum(metrics.values()) / len(metrics)
  return {"display_name": display_name, "stand_in": stand_in, "metrics": metrics,
          "score": score, "split_metrics": split_metrics, "hub_datasets": hub_datasets}


# What components/glue_eval/report.task_entry writes, in short (tests/components/glue_eval
# checks those fields there).
HUB_REPORT = {
    "glue_score": 0.7,
    "tasks": {
        "MNLI": _task("MNLI", {"accuracy_matched": 0.81234, "accuracy_mismatched": 0.8},
                      {"matched": {"accuracy": 0.81234}, "mismatched": {"accuracy": 0.8}},
                      {"matched": {"type": "nyu-mll/glue", "name": "GLUE MNLI",
                                   "config": "mnli", "split": "validation_matched"},
                       "mismatched": {"type": "nyu-mll/glue", "name": "GLUE MNLI",
                                      "config": "mnli", "split": "validation_mismatched"}}),
        "CoLA": _task("CoLA", {"mcc": 0.3}, {"dev": {"mcc": 0.3}},
                      {"dev": {"type": "nyu-mll/glue", "name": "GLUE CoLA", "config": "cola",
                               "split": "validation"}}, stand_in=True),
    },
    "blessing": {"blessed": True, "score": 0.7, "threshold": 0.5, "tolerance": 0.0,
                 "reason": "GLUE score 0.7000 >= threshold 0.5000"},
}


def _hub_card(version: pathlib.Path):
  import huggingface_hub

  return huggingface_hub.ModelCard.load(str(version / contract.HF_DIR / "README.md"))


def test_the_hf_folder_carries_a_hub_card_with_the_runs_own_glue_results(tmp_path):
  version = _publish(tmp_path, "run1", "v1", report=HUB_REPORT, hub=HUB)
  card = _hub_card(version)
  data = card.data
  assert (data.library_name, data.pipeline_tag) == ("transformers", "fill-mask")
  assert "token-dropping" in data.tags and "bert" in data.tags
  assert data.datasets == ["wikimedia/wikipedia", "bookcorpus/bookcorpus"]
  assert data.base_model is None  # trained from scratch
  assert data.model_name == "my-org/tokendrop-bert-base"
  # MNLI's two dev sets; CoLA was scored on stand-in data, which is no GLUE result.
  results = {(r.dataset_type, r.dataset_config, r.dataset_split, r.metric_type): r.metric_value
             for r in data.eval_results}
  assert results == {("nyu-mll/glue", "mnli", "validation_matched", "accuracy"): 81.23,
                     ("nyu-mll/glue", "mnli", "validation_mismatched", "accuracy"): 80.0}
  body = card.text
  assert "- 300 steps of 16 sequences of 64 tokens: 307,200 tokens" in body
  assert "of BERT's" in body and "- validation MLM loss at full depth: 6.1235" in body
  assert "- validation MLM loss as trained (tokens dropped): 6.9877" in body
  assert "Scored on stand-in data, not the tasks' own, so not listed as results: CoLA." in body


def test_a_warm_started_version_names_its_base_model(tmp_path):
  first = _publish(tmp_path, "run1", "v1", report=HUB_REPORT, hub=HUB)
  warm = str(tmp_path / "run1" / contract.SERVING_SUBDIR / contract.TF2_DIR /
             contract.CHECKPOINT_NAME)
  second = _publish(tmp_path, "run2", "v2", init_checkpoint=warm, report=HUB_REPORT, hub=HUB)
  assert _hub_card(first).data.base_model is None
  assert _hub_card(second).data.base_model == "my-org/tokendrop-bert-base"
  assert "- started from: published version v1" in _hub_card(second).text
