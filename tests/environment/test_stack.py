"""Acceptance tests: the pinned stack really works on this machine.

Each test runs the real library (TFT on Beam, TFX LocalDagRunner with MLMD,
the Vertex compiler, Model Garden's encoder) and asserts on its result.
"""

import json
import os
import tempfile

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils
from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import (
    BeamComponentParameter,
    OutputArtifact,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.orchestration import metadata
from tfx.types import standard_artifacts

from trainer import vocab

# "Hello, world! Tokenization" in bert-base-uncased WordPiece ids.
HELLO_WORLD_IDS = [7592, 1010, 2088, 999, 19204, 3989]


def test_tft_fast_bert_tokenizer_on_beam(tmp_path):
  tokens = vocab.load_vocab(vocab.bert_base_uncased_vocab_path())

  def preprocessing_fn(inputs):
    tokenizer = tf_text.FastBertTokenizer(vocab=tokens, lower_case_nfd_strip_accents=True,
                                          token_out_type=tf.int64)
    ids = tokenizer.tokenize(tf.reshape(inputs["text"], [-1]))
    lengths = ids.row_lengths()
    return {"token_ids": ids.to_sparse(), "length": lengths,
            "longest": tf.broadcast_to(tft.max(lengths), tf.shape(lengths))}

  raw = [{"text": "Hello, world! Tokenization"}, {"text": "the"}]
  schema = schema_utils.schema_from_feature_spec({"text": tf.io.FixedLenFeature([], tf.string)})
  with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
      ["--runner=DirectRunner", "--direct_running_mode=in_memory"])) as p:
    with tft_beam.Context(temp_dir=str(tmp_path / "tft")):
      data = p | beam.Create(raw)
      (transformed, _), _ = (data, dataset_metadata.DatasetMetadata(schema)) | (
          tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
      transformed | beam.Map(json.dumps, default=lambda a: a.tolist()) | beam.io.WriteToText(
          str(tmp_path / "out"), shard_name_template="")

  rows = [json.loads(line) for line in (tmp_path / "out").read_text().splitlines()]
  by_length = {row["length"]: row for row in rows}
  assert by_length[6]["token_ids"] == HELLO_WORLD_IDS
  assert by_length[1]["token_ids"] == [1996]  # "the"
  assert all(row["longest"] == 6 for row in rows)


@component(use_beam=True)
def CountWords(text: Parameter[str], counts: OutputArtifact[standard_artifacts.Examples],
               beam_pipeline: BeamComponentParameter[beam.Pipeline] = None):
  with beam_pipeline as p:
    (p | beam.Create(text.split()) | beam.combiners.Count.PerElement()
     | beam.MapTuple(lambda word, n: f"{word}\t{n}")
     | beam.io.WriteToText(os.path.join(counts.uri, "counts"), shard_name_template=""))


def _one_component_pipeline(root, metadata_path=None):
  count = CountWords(text="to be or not to be")
  return tfx.dsl.Pipeline(
      pipeline_name="env-acceptance", pipeline_root=str(root), components=[count],
      metadata_connection_config=(
          tfx.orchestration.metadata.sqlite_metadata_connection_config(str(metadata_path))
          if metadata_path else None),
      beam_pipeline_args=["--runner=DirectRunner", "--direct_running_mode=in_memory"])


def test_local_dag_runner_records_artifact_in_mlmd(monkeypatch, tmp_path):
  # TFX packs itself for Beam's workers into a mkdtemp() it never removes (our executors remove
  # theirs: components/common/beam_utils.py); this plain TFX component's goes under tmp_path.
  (tmp_path / "tmp").mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
  db = tmp_path / "mlmd.sqlite"
  tfx.orchestration.LocalDagRunner().run(_one_component_pipeline(tmp_path / "root", db))

  with metadata.Metadata(tfx.orchestration.metadata.sqlite_metadata_connection_config(
      str(db))) as m:
    artifacts = m.store.get_artifacts_by_type(standard_artifacts.Examples.TYPE_NAME)
  assert len(artifacts) == 1
  lines = open(os.path.join(artifacts[0].uri, "counts")).read().splitlines()
  assert sorted(lines) == ["be\t2", "not\t1", "or\t1", "to\t2"]


def test_kubeflow_v2_runner_compiles_pipeline(tmp_path):
  output = tmp_path / "pipeline.json"
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image="us-docker.pkg.dev/example/tokendrop:latest"),
      output_filename=str(output))
  runner.run(_one_component_pipeline("gs://example-bucket/root"))

  job = json.loads(output.read_text())
  spec = job["pipelineSpec"]
  assert spec["pipelineInfo"]["name"] == "env-acceptance"
  assert list(spec["root"]["dag"]["tasks"]) == ["CountWords"]
  executor = next(iter(spec["deploymentSpec"]["executors"].values()))
  assert executor["container"]["image"] == "us-docker.pkg.dev/example/tokendrop:latest"
  assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://example-bucket/root"


def test_bert_encoder_v2_forward_ignores_padded_positions():
  from official.nlp.modeling import networks

  encoder = networks.BertEncoderV2(vocab_size=100, hidden_size=32, num_layers=2,
                                   num_attention_heads=2, intermediate_size=64,
                                   max_sequence_length=16)
  ids = np.array([[5, 6, 7, 8, 0, 0]], np.int32)
  mask = np.array([[1, 1, 1, 1, 0, 0]], np.int32)
  types = np.zeros_like(ids)
  out = encoder(dict(input_word_ids=ids, input_mask=mask, input_type_ids=types))
  other_padding = encoder(dict(input_word_ids=np.array([[5, 6, 7, 8, 42, 17]], np.int32),
                               input_mask=mask, input_type_ids=types))

  assert out["sequence_output"].shape == (1, 6, 32)
  assert out["pooled_output"].shape == (1, 32)
  np.testing.assert_allclose(out["sequence_output"][:, :4], other_padding["sequence_output"][:, :4],
                             atol=1e-6)
  assert not np.allclose(out["sequence_output"][:, 4:], other_padding["sequence_output"][:, 4:])
