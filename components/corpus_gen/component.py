"""CorpusGen: registers a text corpus as an Examples artifact with a span, one Example a document.

    corpus = corpus_gen(input_base="gs://bucket/corpus", file_pattern="span-{SPAN}/*.txt.gz")

Output `examples` (standard Examples): one split, `corpus`, under
`<uri>/Split-corpus/data_tfrecord-*.gz` (gzip TFRecords, as every ExampleGen
writes them); custom properties `span`, `version` (when the pattern has
{VERSION}) and `input_fingerprint`. Each tf.train.Example holds one document in
the bytes feature `text` (tokenize.TEXT_FEATURE, the raw feature the TFT
transform graph takes), its lines joined by "\\n" so that one-sentence-per-line
documents keep their sentence boundaries. There is no train/eval split here:
TokenizePack splits by a hash of each document's text.

Why an ExampleGen and not a Python-function component: a scheduled run must
notice a new span. FileBasedExampleGen's driver resolves `{SPAN}` (and
`{VERSION}`) to the newest match and fingerprints the matched files *before*
the cache lookup, and writes both into the execution properties; so a new span
or changed files miss the cache, and an unchanged corpus hits it. A
function component has no driver: its cache key would be the unchanged
pattern, so a cached run would never see span 3. The same holds on Vertex:
TFX's Vertex compiler gives any FileBasedExampleGen (subclasses included) a
`pre_cache_check` hook that runs
tfx.orchestration.kubeflow.v2.file_based_example_gen.driver, the same span
resolution, before Vertex's own cache check. Only the executor is ours.

The executor reads the resolved split's files with ReadDocuments: text (a blank
line ends a document) or JSONL, gzipped or not, with the same Beam counters for
bad input as the data pipeline (namespace tokenize_pack). Documents longer than
ReadDocuments' limit (1,000,000 characters) become several Examples.
ExampleGen's writer shuffles, so the order of documents in the output (and
hence which documents TokenizePack packs together) can differ between runs;
which documents go to train or validation cannot, since that is a hash of
the text.
"""

import apache_beam as beam
import tensorflow as tf
from google.protobuf import struct_pb2
from tfx.components.example_gen import base_example_gen_executor, utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components.common import corpus
from components.common.beam_utils import join, pipeline_options
from trainer.contract import TEXT_FEATURE

CORPUS_SPLIT = "corpus"
INPUT_FORMATS = ("text", "jsonl")


def _custom_config(input_format: str, text_field: str) -> example_gen_pb2.CustomConfig:
  options = struct_pb2.Struct()
  options.update({"input_format": input_format, "text_field": text_field})
  config = example_gen_pb2.CustomConfig()
  config.custom_config.Pack(options)
  return config


def _read_options(exec_properties: dict) -> dict[str, str]:
  config = example_gen_pb2.CustomConfig()
  proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], config)
  options = struct_pb2.Struct()
  config.custom_config.Unpack(options)
  return dict(options)


def _document_example(document: tuple[str, ...]) -> bytes:
  text = "\n".join(document).encode("utf-8")
  feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text]))
  return tf.train.Example(
      features=tf.train.Features(feature={TEXT_FEATURE: feature})).SerializeToString()


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _ReadCorpusSplit(pipeline: beam.Pipeline, exec_properties: dict,
                     split_pattern: str) -> beam.PCollection:
  """The documents of the files matching the (span-resolved) split pattern, as Examples."""
  options = _read_options(exec_properties)
  files = corpus.list_input_files(
      (join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern),))
  chunks, _ = pipeline | "ReadDocuments" >> corpus.ReadDocuments(
      files, options["input_format"], options["text_field"])
  return (chunks
          | "Documents" >> beam.FlatMap(lambda chunk: chunk.documents)
          | "ToExamples" >> beam.Map(_document_example))


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """ExampleGen's executor, reading documents with the data pipeline's ReadDocuments."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _ReadCorpusSplit

  def _make_beam_pipeline(self) -> beam.Pipeline:
    # The same Beam arguments mean the same runner here as in TokenizePack.
    if self._make_beam_pipeline_fn is not None:
      return self._make_beam_pipeline_fn()
    return beam.Pipeline(options=pipeline_options(self._beam_pipeline_args))


class CorpusGen(FileBasedExampleGen):
  """A FileBasedExampleGen with the corpus executor; build it with `corpus_gen`."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)


def corpus_gen(input_base: str, file_pattern: str, input_format: str = "text",
               text_field: str = "text",
               range_config: range_config_pb2.RangeConfig | None = None) -> CorpusGen:
  """The corpus ingestion component.

  Args:
    input_base: the corpus root, local or gs://.
    file_pattern: a glob relative to input_base with TFX's span placeholder
      (`{SPAN}`, or TFX's date form of it) and, optionally, `{VERSION}`; for
      instance "span-{SPAN}/v{VERSION}/*.jsonl.gz". Each run reads the newest
      span and its newest version. A pattern with no placeholder reads every
      matching file as span 0.
    input_format: "text" (a blank line ends a document) or "jsonl".
    text_field: the JSONL field that holds a document's text.
    range_config: pins the span (RangeConfig.static_range), e.g. to backfill.
  """
  if input_format not in INPUT_FORMATS:
    raise ValueError(f"corpus_gen input_format must be one of {list(INPUT_FORMATS)}, "
                     f"got {input_format!r}")
  if input_format == "jsonl" and not text_field:
    raise ValueError("corpus_gen text_field is empty; name the JSON field that holds the text")
  split = example_gen_pb2.Input.Split(name=CORPUS_SPLIT, pattern=file_pattern)
  # Rejects a malformed pattern (two {SPAN}s, {VERSION} without {SPAN}) now, not at run time.
  utils.verify_split_pattern_specs(split)
  return CorpusGen(
      input_base=input_base,
      input_config=example_gen_pb2.Input(splits=[split]),
      # An empty Output keeps the input's one split; None would mean a 2:1 train/eval split.
      output_config=example_gen_pb2.Output(),
      custom_config=_custom_config(input_format, text_field),
      range_config=range_config)
