"""CorpusGen: registers a text corpus as an Examples artifact with a span, one Example a document.

    corpus = corpus_gen(input_base="gs://bucket/corpus", file_pattern="span-{SPAN}/*.txt.gz")

Output `examples` (standard Examples): one split, `corpus`, under
`<uri>/Split-corpus/data_tfrecord-*.gz` (gzip TFRecords, as every ExampleGen
writes them); custom properties `span`, `version` (when the pattern has
{VERSION}), `input_fingerprint` and `documents_written` (contract.DOCUMENTS_WRITTEN,
the Examples written, counted on their way to the writer). Each tf.train.Example
holds one document in the bytes feature `text` (tokenize.TEXT_FEATURE, the raw
feature the TFT transform graph takes), its lines joined by "\\n" so that
one-sentence-per-line documents keep their sentence boundaries. There is no
train/eval split here: TokenizePack splits by a hash of each document's text.

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
bad input as the data pipeline (namespace tokenize_pack), in chunks of the data
options' chunk_chars; documents longer than max_document_chars become several
Examples. ExampleGen's writer shuffles, so the order of documents in the output
files differs between runs; each Example therefore also says where its document
was (corpus.corpus_examples: the chunk key and the position in the chunk), and
TokenizePack puts the chunks back together from that, so one span gives the
same examples on every run and runner.
"""

from typing import Any

import apache_beam as beam
from google.protobuf import struct_pb2
from tfx import types
from tfx.components.example_gen import base_example_gen_executor, utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.common import corpus
from components.common.beam_utils import join, pipeline_options, removes_tfx_dependency_package
from trainer import contract

CORPUS_SPLIT = "corpus"
INPUT_FORMATS = ("text", "jsonl")
# The Beam counter of the Examples written, read back into the artifact's DOCUMENTS_WRITTEN.
COUNTER_NAMESPACE = "corpus_gen"


def _custom_config(input_format: str, text_field: str, max_document_chars: int,
                   chunk_chars: int) -> example_gen_pb2.CustomConfig:
  options = struct_pb2.Struct()
  options.update({"input_format": input_format, "text_field": text_field,
                  "max_document_chars": max_document_chars, "chunk_chars": chunk_chars})
  config = example_gen_pb2.CustomConfig()
  config.custom_config.Pack(options)
  return config


def _read_options(exec_properties: dict) -> dict[str, str | float]:
  config = example_gen_pb2.CustomConfig()
  proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], config)
  options = struct_pb2.Struct()
  config.custom_config.Unpack(options)
  return dict(options)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _ReadCorpusSplit(pipeline: beam.Pipeline, exec_properties: dict,
                     split_pattern: str) -> beam.PCollection:
  """The documents of the files matching the (span-resolved) split pattern, as Examples."""
  options = _read_options(exec_properties)
  files = corpus.list_input_files(
      (join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern),))
  # A Struct holds numbers as floats.
  chunks, _ = pipeline | "ReadDocuments" >> corpus.ReadDocuments(
      files, options["input_format"], options["text_field"],
      int(options["max_document_chars"]), int(options["chunk_chars"]))
  return chunks | "ToExamples" >> beam.FlatMap(corpus.corpus_examples)


class _CountExamples(beam.DoFn):
  """Passes Examples through, counting them into the DOCUMENTS_WRITTEN counter."""

  def __init__(self):
    self._written = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, contract.DOCUMENTS_WRITTEN)

  def start_bundle(self) -> None:
    self._count = 0

  def process(self, example: bytes):
    self._count += 1
    yield example

  def finish_bundle(self) -> None:
    self._written.inc(self._count)


def documents_written(result: beam.runners.runner.PipelineResult) -> int:
  """The committed count of Examples written: each bundle counts once, retries or not."""
  query = result.metrics().query(beam.metrics.MetricsFilter()
                                 .with_namespace(COUNTER_NAMESPACE)
                                 .with_name(contract.DOCUMENTS_WRITTEN))
  return sum(counter.committed for counter in query["counters"])


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """ExampleGen's executor, reading documents with the data pipeline's ReadDocuments, and
  recording how many it wrote on the Examples artifact."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _ReadCorpusSplit

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                             exec_properties: dict[str, Any]) -> dict[str, beam.PCollection]:
    splits = super().GenerateExamplesByBeam(pipeline, exec_properties)
    return {name: examples | f"CountExamples[{name}]" >> beam.ParDo(_CountExamples())
            for name, examples in splits.items()}

  def _make_beam_pipeline(self) -> beam.Pipeline:
    # The same Beam arguments mean the same runner here as in TokenizePack.
    if self._make_beam_pipeline_fn is not None:
      self._pipeline = self._make_beam_pipeline_fn()
    else:
      self._pipeline = beam.Pipeline(options=pipeline_options(self._beam_pipeline_args))
    return self._pipeline

  @removes_tfx_dependency_package
  def Do(self, input_dict: dict[str, list[types.Artifact]],
         output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
    super().Do(input_dict, output_dict, exec_properties)
    # ExampleGen runs its pipeline in a `with` block, which keeps the result on the pipeline.
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    examples.set_int_custom_property(contract.DOCUMENTS_WRITTEN,
                                     documents_written(self._pipeline.result))


class CorpusGen(FileBasedExampleGen):
  """A FileBasedExampleGen with the corpus executor; build it with `corpus_gen`."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)


def corpus_gen(input_base: str, file_pattern: str, input_format: str = "text",
               text_field: str = "text",
               range_config: range_config_pb2.RangeConfig | None = None,
               max_document_chars: int = corpus.MAX_DOCUMENT_CHARS,
               chunk_chars: int = corpus.CHUNK_CHARS) -> CorpusGen:
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
    max_document_chars, chunk_chars: the data options of those names, which decide how
      documents are cut and chunked (TokenizePack packs within CorpusGen's chunks).
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
      custom_config=_custom_config(input_format, text_field, max_document_chars, chunk_chars),
      range_config=range_config)
