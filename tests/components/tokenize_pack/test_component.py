"""TokenizePack after CorpusGen under LocalDagRunner (SQLite MLMD), on 50 IMDB reviews.

Three runs: the first computes, the second is a cache hit for both components, the third
changes seq_length, so CorpusGen is still cached and TokenizePack runs again.
"""

import json
import math

import ml_metadata as mlmd
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import base_beam_executor
from tfx.types import Artifact, artifact_utils, standard_artifacts

from components.common.tokenizer import make_tokenizer
from components.corpus_gen.component import CorpusGen, corpus_gen
from components.tokenize_pack import component, pipeline
from components.tokenize_pack.component import PretrainDataStatistics, TokenizePack
from components.tokenize_pack.config import DataOptions
from tests.components.tokenize_pack.conftest import VOCAB, imdb_reviews, write_documents
from trainer import contract, data, data_spec, vocab
from trainer.errors import UserError

NUM_REVIEWS = 50
SEQ_LENGTHS = (64, 64, 32)  # one per run
Execution = metadata_store_pb2.Execution


def _pipeline(root, seq_length: int) -> tfx.dsl.Pipeline:
  corpus = corpus_gen(str(root / "corpus"), "span-{SPAN}/*.txt")
  tokenize_pack = TokenizePack(corpus=corpus.outputs["examples"], options=DataOptions(
      seq_length=seq_length, vocab_file=VOCAB, validation_fraction=0.2, num_shards=2))
  return tfx.dsl.Pipeline(
      pipeline_name="tokenize-pack-test", pipeline_root=str(root / "pipeline"),
      components=[corpus, tokenize_pack], enable_cache=True,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          str(root / "metadata.sqlite")))


def _executions(store, component_class) -> list[metadata_store_pb2.Execution]:
  type_name = f"{component_class.__module__}.{component_class.__name__}"
  return sorted(store.get_executions_by_type(type_name), key=lambda e: e.id)


def _outputs(store, execution) -> dict[str, Artifact]:
  """The execution's output artifacts, by output key, deserialized to their classes."""
  outputs = {}
  for event in store.get_events_by_execution_ids([execution.id]):
    if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.PENDING_OUTPUT):
      (artifact,) = store.get_artifacts_by_id([event.artifact_id])
      artifact_type = store.get_artifact_types_by_id([artifact.type_id])[0]
      (outputs[event.path.steps[0].key],) = artifact_utils.deserialize_artifacts(
          artifact_type, [artifact])
  return outputs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """(store, CorpusGen executions, TokenizePack executions) after the three runs."""
  root = tmp_path_factory.mktemp("tokenize_pack_component")
  (root / "corpus" / "span-1").mkdir(parents=True)
  write_documents(root / "corpus" / "span-1" / "reviews.txt", imdb_reviews(NUM_REVIEWS))
  for seq_length in SEQ_LENGTHS:
    tfx.orchestration.LocalDagRunner().run(_pipeline(root, seq_length))
  store = mlmd.MetadataStore(
      tfx.orchestration.metadata.sqlite_metadata_connection_config(str(root / "metadata.sqlite")))
  return store, _executions(store, CorpusGen), _executions(store, TokenizePack)


def test_outputs_are_registered_with_their_types_splits_and_counts(runs):
  store, corpus_runs, tokenize_runs = runs
  outputs = _outputs(store, tokenize_runs[0])
  examples, graph, statistics = (outputs["examples"], outputs["transform_graph"],
                                 outputs["statistics"])
  assert (examples.type_name, graph.type_name, statistics.type_name) == (
      "Examples", "TransformGraph", PretrainDataStatistics.TYPE_NAME)
  assert artifact_utils.decode_split_names(examples.split_names) == ["train", "validation"]
  assert examples.get_int_custom_property("span") == 1
  assert examples.get_string_custom_property("file_format") == "tfrecords_gzip"
  for split in ("Split-train", "Split-validation"):
    assert sorted(tf.io.gfile.listdir(f"{examples.uri}/{split}")) == [
        "examples-00000-of-00002.tfrecord.gz", "examples-00001-of-00002.tfrecord.gz"]

  with open(f"{statistics.uri}/stats.json") as f:
    stats = json.load(f)
  assert stats["config"]["seq_length"] == 64 and stats["config"]["input_format"] == "tfrecord_text"
  assert stats["documents"]["read"] == stats["documents"]["kept"] == NUM_REVIEWS
  assert {name: statistics.get_custom_property(name)
          for name in component.statistics_properties(stats)} == (
      component.statistics_properties(stats))
  assert statistics.get_int_custom_property(contract.DOCUMENTS_DROPPED) == 0
  assert statistics.get_float_custom_property(contract.PACKING_EFFICIENCY) == (
      stats["packing"]["efficiency"])
  # What CorpusGen says it wrote is what TokenizePack read.
  corpus = _outputs(store, corpus_runs[0])["examples"]
  assert corpus.get_int_custom_property(contract.DOCUMENTS_WRITTEN) == stats["documents"]["read"]
  assert stats["examples"]["train"] > 0 and stats["examples"]["validation"] > 0

  # What the examples are, beside their splits, where the Trainer finds it.
  spec = data_spec.DataSpec.read(f"{examples.uri}/{contract.DATA_SPEC_FILE}")
  assert spec == DataOptions(seq_length=64, vocab_file=VOCAB).to_data_spec(vocab.load_vocab(VOCAB))
  assert spec.vocab_file == f"{graph.uri}/{contract.VOCAB_FILE}"


def test_split_train_is_read_by_the_trainer_loader_as_its_record_says(runs):
  store, _, tokenize_runs = runs
  outputs = _outputs(store, tokenize_runs[0])
  max_predictions = math.ceil(64 * 0.15)
  train = f"{outputs['examples'].uri}/Split-train/*"
  spec = data_spec.find([train], "Split-train")
  params = data.TokenDropPretrainDataConfig(input_path=train, is_training=False,
                                            global_batch_size=16, drop_remainder=False,
                                            **spec.loader_values())
  batches = list(data.TokenDropPretrainDataLoader(params).load())
  word_ids = np.concatenate([b["input_word_ids"].numpy() for b in batches])
  positions = np.concatenate([b["masked_lm_positions"].numpy() for b in batches])
  assert word_ids.shape[1] == 64 and positions.shape[1] == max_predictions
  assert len(word_ids) == outputs["statistics"].get_int_custom_property("examples_train")
  assert (word_ids[:, 0] == vocab.special_token_ids(VOCAB).cls).all()


def test_transform_graph_holds_the_tft_graph_and_the_vocab(runs):
  store, _, tokenize_runs = runs
  graph = _outputs(store, tokenize_runs[0])["transform_graph"]
  assert sorted(tf.io.gfile.listdir(graph.uri)) == [
      "transform_fn", "transformed_metadata", "vocab.txt"]
  assert vocab.load_vocab(f"{graph.uri}/vocab.txt") == vocab.load_vocab(VOCAB)
  texts = imdb_reviews(3, start=NUM_REVIEWS)
  ids = tft.TFTransformOutput(graph.uri).transform_raw_features(
      {"text": tf.constant(texts)})["token_ids"]
  assert ids.to_list() == make_tokenizer(vocab.load_vocab(VOCAB), True).tokenize(texts).to_list()


def test_a_rerun_is_a_cache_hit_and_a_new_seq_length_reruns_only_tokenize_pack(runs):
  store, corpus_runs, tokenize_runs = runs
  assert [e.last_known_state for e in corpus_runs] == [
      Execution.COMPLETE, Execution.CACHED, Execution.CACHED]
  assert [e.last_known_state for e in tokenize_runs] == [
      Execution.COMPLETE, Execution.CACHED, Execution.COMPLETE]
  first, cached, rerun = (_outputs(store, e)["statistics"] for e in tokenize_runs)
  assert cached.id == first.id and rerun.id != first.id
  with open(f"{rerun.uri}/stats.json") as f:
    assert json.load(f)["config"]["seq_length"] == 32


def test_beam_pipeline_args_and_artifact_dirs_reach_the_data_pipeline(monkeypatch, tmp_path):
  seen = {}

  def fake_run(config, pipeline_args, overwrite):
    seen.update(config=config, pipeline_args=pipeline_args)
    raise StopIteration

  monkeypatch.setattr(pipeline, "run", fake_run)
  corpus = standard_artifacts.Examples()
  corpus.uri = str(tmp_path / "corpus")
  corpus.split_names = artifact_utils.encode_split_names(["corpus"])
  outputs = {}
  for key, artifact_class in (("examples", standard_artifacts.Examples),
                              ("transform_graph", standard_artifacts.TransformGraph),
                              ("statistics", PretrainDataStatistics)):
    outputs[key] = [artifact_class()]
    outputs[key][0].uri = str(tmp_path / key)
  dataflow = ["--runner=DataflowRunner", "--project=p", "--region=r",
              "--sdk_container_image=example.com/tokendrop:latest"]
  executor = component.Executor(base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=dataflow))
  with pytest.raises(StopIteration):
    executor.Do({"corpus": [corpus]}, outputs,
                {"seq_length": 128.0, "vocab_file": VOCAB, "lower_case": 0, "whole_word_masking": 1,
                 "special_tokens": "[PAD],[UNK],[CLS],[SEP],[MASK],[unused0]"})
  assert seen["pipeline_args"][:len(dataflow)] == dataflow
  config = seen["config"]
  assert config.input_patterns == (f"{tmp_path}/corpus/Split-corpus/*",)
  assert config.output_dir == str(tmp_path / "transform_graph")
  assert config.split_dirs == (f"{tmp_path}/examples/Split-train",
                               f"{tmp_path}/examples/Split-validation")
  # Vertex may hand ints over as floats, and booleans travel as ints.
  assert (config.seq_length, config.lower_case, config.whole_word_masking) == (128, False, True)
  assert isinstance(config.seq_length, int)
  assert config.special_tokens[-1] == "[unused0]" and len(config.special_tokens) == 6


def test_bad_options_fail_before_the_pipeline_is_built():
  with pytest.raises(UserError, match="set exactly one of vocab_file .* or learn_vocab_size"):
    DataOptions(seq_length=64)
  with pytest.raises(UserError, match="masking must be one of"):
    DataOptions(vocab_file=VOCAB, masking="sometimes")


def test_parameters_are_the_options_and_survive_the_round_trip():
  options = DataOptions(vocab_file=VOCAB, seq_length=96, whole_word_masking=True,
                        special_tokens=("[MASK]", "[SEP]", "[CLS]", "[UNK]", "[PAD]"))
  parameters = component.to_parameters(options)
  assert set(parameters) == {f.name for f in DataOptions.option_fields()}
  assert set(component.TokenizePackSpec.PARAMETERS) == set(parameters)
  assert parameters["whole_word_masking"] == 1
  assert parameters["special_tokens"] == "[MASK],[SEP],[CLS],[UNK],[PAD]"
  assert DataOptions(**component.from_parameters(parameters)) == options


def test_it_compiles_for_vertex_with_the_pipelines_beam_args(tmp_path):
  corpus = corpus_gen("gs://bucket/corpus", "span-{SPAN}/*.txt")
  tokenize_pack = TokenizePack(corpus=corpus.outputs["examples"], options=DataOptions(
      seq_length=128, vocab_file="gs://bucket/vocab.txt", whole_word_masking=True))
  dataflow = ["--runner=DataflowRunner", "--project=p", "--region=r"]
  output = tmp_path / "pipeline.json"
  tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image="example.com/tokendrop:latest"),
      output_filename=str(output)).run(tfx.dsl.Pipeline(
          pipeline_name="tokenize-pack-test", pipeline_root="gs://bucket/root",
          components=[corpus, tokenize_pack], beam_pipeline_args=dataflow))
  spec = json.loads(output.read_text())["pipelineSpec"]
  container = spec["deploymentSpec"]["executors"]["TokenizePack_executor"]["container"]
  assert container["args"][:2] == ["--executor_class_path", f"{component.__name__}.Executor"]
  assert container["args"][-len(dataflow):] == dataflow
  definition = spec["components"]["TokenizePack"]
  parameters = definition["inputDefinitions"]["parameters"]
  assert {name: parameters[name] for name in ("seq_length", "vocab_file", "whole_word_masking",
                                              "masked_lm_prob", "special_tokens")} == {
      "seq_length": {"type": "INT"}, "vocab_file": {"type": "STRING"},
      "whole_word_masking": {"type": "INT"}, "masked_lm_prob": {"type": "DOUBLE"},
      "special_tokens": {"type": "STRING"}}
  # Unset options (learn_vocab_size: None) are not parameters of this pipeline.
  assert "learn_vocab_size" not in parameters
  statistics = definition["outputDefinitions"]["artifacts"]["statistics"]
  assert statistics["artifactType"]["instanceSchema"].startswith(
      f"title: {PretrainDataStatistics.TYPE_NAME}\n")
