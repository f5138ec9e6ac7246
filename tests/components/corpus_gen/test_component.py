"""CorpusGen under LocalDagRunner (SQLite MLMD): the newest span is read, and a new span is
not hidden by the cache; and its Vertex compilation keeps TFX's span-resolving driver."""

import gzip
import json
import pathlib

import ml_metadata as mlmd
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.components.example_gen import utils as example_gen_utils
from tfx.types import Artifact, artifact_utils

from components.corpus_gen.component import CORPUS_SPLIT, corpus_gen
from trainer import contract
from trainer.contract import TEXT_FEATURE

Examples = tfx.types.standard_artifacts.Examples
PIPELINE_NAME = "corpus-gen-test"  # Vertex allows [a-z0-9-] only

# Span 1 and 2 in text files (one sentence per line, a blank line between documents);
# span 3 arrives later.
SPANS = {
    1: {"a.txt": "Span one, first document.\nIts second line.\n\nSpan one, second.\n"},
    2: {"a.txt": "Span two opens.\nWith a second sentence.\n\n\nAnother document.\n",
        "b.txt.gz": "A gzipped document.\n"},
    3: {"a.txt": "Span three alone.\n"},
}
DOCUMENTS = {
    1: ["Span one, first document.\nIts second line.", "Span one, second."],
    2: ["Span two opens.\nWith a second sentence.", "Another document.", "A gzipped document."],
    3: ["Span three alone."],
}


def _write_span(input_base: pathlib.Path, span: int) -> None:
  directory = input_base / f"span-{span}"
  directory.mkdir(parents=True)
  for name, text in SPANS[span].items():
    if name.endswith(".gz"):
      (directory / name).write_bytes(gzip.compress(text.encode()))
    else:
      (directory / name).write_text(text)


def _pipeline(root: pathlib.Path, component) -> tfx.dsl.Pipeline:
  return tfx.dsl.Pipeline(
      pipeline_name=PIPELINE_NAME, pipeline_root=str(root / "pipeline"), components=[component],
      enable_cache=True,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          str(root / "metadata.sqlite")))


def _texts(examples: Artifact) -> list[str]:
  split_dir = artifact_utils.get_split_uri([examples], CORPUS_SPLIT)
  records = tf.data.TFRecordDataset(tf.io.gfile.glob(f"{split_dir}/*"), compression_type="GZIP")
  return [tf.train.Example.FromString(r.numpy()).features.feature[TEXT_FEATURE]
          .bytes_list.value[0].decode() for r in records]


def _located_texts(examples: Artifact) -> list[tuple[str, int, str]]:
  """(chunk key, position, text) of each Example, sorted: where each document was."""
  split_dir = artifact_utils.get_split_uri([examples], CORPUS_SPLIT)
  records = tf.data.TFRecordDataset(tf.io.gfile.glob(f"{split_dir}/*"), compression_type="GZIP")
  located = []
  for record in records:
    feature = tf.train.Example.FromString(record.numpy()).features.feature
    located.append((feature[contract.CHUNK_KEY_FEATURE].bytes_list.value[0].decode(),
                    feature[contract.CHUNK_POSITION_FEATURE].int64_list.value[0],
                    feature[TEXT_FEATURE].bytes_list.value[0].decode()))
  return sorted(located)


def _examples_artifacts(store) -> list[Artifact]:
  artifact_type = store.get_artifact_type(Examples.TYPE_NAME)
  return sorted(artifact_utils.deserialize_artifacts(
      artifact_type, store.get_artifacts_by_type(Examples.TYPE_NAME)), key=lambda a: a.id)


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
  """Run 1 over spans 1-2, run 2 unchanged, run 3 after span 3 arrived: MLMD's Examples and
  the last execution state of each run."""
  root = tmp_path_factory.mktemp("corpus_gen")
  input_base = root / "corpus"
  for span in (1, 2):
    _write_span(input_base, span)
  store = mlmd.MetadataStore(
      tfx.orchestration.metadata.sqlite_metadata_connection_config(str(root / "metadata.sqlite")))
  states = []
  for run in range(3):
    if run == 2:
      _write_span(input_base, 3)
    component = corpus_gen(str(input_base), "span-{SPAN}/*")
    tfx.orchestration.LocalDagRunner().run(_pipeline(root, component))
    executions = sorted(store.get_executions(), key=lambda e: e.id)
    states.append(executions[-1].last_known_state)
  return _examples_artifacts(store), states


def test_the_newest_span_is_registered_one_example_per_document(three_runs):
  artifacts, _ = three_runs
  first = artifacts[0]
  assert first.get_int_custom_property("span") == 2
  assert artifact_utils.decode_split_names(first.split_names) == [CORPUS_SPLIT]
  assert sorted(_texts(first)) == sorted(DOCUMENTS[2])
  # Each Example says where its document was: the file (a.txt, then b.txt.gz), the chunk, and
  # the position, whichever order ExampleGen's writer left them in.
  assert _located_texts(first) == [("000000-000000", 0, DOCUMENTS[2][0]),
                                   ("000000-000000", 1, DOCUMENTS[2][1]),
                                   ("000001-000000", 0, DOCUMENTS[2][2])]
  assert first.get_int_custom_property(contract.DOCUMENTS_WRITTEN) == len(DOCUMENTS[2])
  assert first.get_string_custom_property("file_format") == "tfrecords_gzip"
  # The name the console reads the span by is the one TFX's driver sets.
  assert contract.SPAN == example_gen_utils.SPAN_PROPERTY_NAME


def test_an_unchanged_corpus_is_a_cache_hit_and_a_new_span_is_not(three_runs):
  artifacts, states = three_runs
  execution = metadata_store_pb2.Execution
  assert states == [execution.COMPLETE, execution.CACHED, execution.COMPLETE]
  assert [a.get_int_custom_property("span") for a in artifacts] == [2, 3]
  assert sorted(_texts(artifacts[1])) == DOCUMENTS[3]
  assert artifacts[1].get_int_custom_property(contract.DOCUMENTS_WRITTEN) == len(DOCUMENTS[3])


def test_jsonl_with_versions_reads_the_newest_version_of_the_newest_span(tmp_path):
  for span, version, texts in ((4, 1, ["old"]), (4, 2, ["kept\nand its second line", "too"]),
                               (3, 9, ["older span"])):
    directory = tmp_path / "corpus" / f"{span:03d}" / f"v{version}"
    directory.mkdir(parents=True)
    (directory / "part.jsonl").write_text(
        "".join(json.dumps({"body": t}) + "\n" for t in texts) + "not json\n")
  component = corpus_gen(str(tmp_path / "corpus"), "{SPAN:3}/v{VERSION}/*.jsonl",
                         input_format="jsonl", text_field="body")
  tfx.orchestration.LocalDagRunner().run(_pipeline(tmp_path, component))
  store = mlmd.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
      str(tmp_path / "metadata.sqlite")))
  (examples,) = _examples_artifacts(store)
  assert (examples.get_int_custom_property("span"),
          examples.get_int_custom_property("version")) == (4, 2)
  assert sorted(_texts(examples)) == ["kept\nand its second line", "too"]


def test_bad_arguments_fail_when_the_pipeline_is_built():
  with pytest.raises(ValueError, match="input_format must be one of"):
    corpus_gen("/data", "{SPAN}/*", input_format="csv")
  with pytest.raises(ValueError, match="Version spec provided, but Span or Date spec"):
    corpus_gen("/data", "v{VERSION}/*")


def test_vertex_compilation_keeps_the_span_resolving_driver(tmp_path):
  pipeline = tfx.dsl.Pipeline(
      pipeline_name=PIPELINE_NAME, pipeline_root="gs://bucket/root",
      components=[corpus_gen("gs://bucket/corpus", "span-{SPAN}/*.txt")])
  output = tmp_path / "pipeline.json"
  tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image="example.com/tokendrop:latest"),
      output_filename=str(output)).run(pipeline)
  job = json.loads(output.read_text())
  executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
  (executor,) = executors.values()
  container = executor["container"]
  assert container["lifecycle"]["preCacheCheck"]["command"] == [
      "python", "-m", "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"]
  assert "components.corpus_gen.component.Executor" in container["args"]
