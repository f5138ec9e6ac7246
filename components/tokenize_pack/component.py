"""TokenizePack: the TFX component that runs the data pipeline (pipeline.run) on a corpus.

    tokenize_pack = TokenizePack(corpus=corpus_gen.outputs["examples"], seq_length=128,
                                 vocab="gs://bucket/vocab.txt")

Input:
  corpus (Examples): text documents as tf.train.Examples with the bytes feature
    `text`, as components.corpus_gen writes them; every split is read, since
    documents are split into train and validation here, by a hash of their text.
    CorpusGen's records also say where each document was, and are put back in
    that order (components/common/corpus.py), so one span gives the same bytes on
    every run.
Outputs:
  examples (Examples): split_names ["train", "validation"], the pretraining
    records in `<uri>/Split-train/examples-SSSSS-of-NNNNN.tfrecord.gz` and
    `<uri>/Split-validation/...` (gzip TFRecords of tf.train.Examples, the
    features that trainer.data reads for the chosen masking), and
    `<uri>/data_spec.json`, what they are (trainer/data_spec.py), from which the
    Trainer's run_fn derives its data config. Custom properties: span and version,
    copied from a single corpus artifact.
  transform_graph (TransformGraph): `<uri>/transform_fn/` and
    `<uri>/transformed_metadata/`, the TFT graph text -> WordPiece ids, and
    `<uri>/vocab.txt`, the vocabulary the ids index. The trainer reads its
    vocab from `<transform_graph uri>/vocab.txt`.
  statistics (PretrainDataStatistics): `<uri>/stats.json`, every count the
    pipeline kept (stats.nest's layout) and the config; custom properties
    examples_train, examples_validation, documents_read, documents_kept,
    documents_dropped and tokens (ints), and packing_efficiency (a float), the
    headline counts (statistics_properties), by their names in trainer/contract.py.
Parameters: one per DataOptions field, of the same name (config.py), checked when
  the component is built. Booleans travel as ints and tuples as comma-separated
  strings, since Vertex parameters have neither type.

The component's `beam_pipeline_args` (from the Pipeline, or with_beam_pipeline_args)
go to pipeline.run unchanged: DirectRunner in this process when they name no
runner, DataflowRunner when they say so.
"""

from typing import Any

from apache_beam.io.filesystems import FileSystems
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.common.artifacts import PretrainDataStatistics, set_custom_properties
from components.common.beam_utils import join, removes_tfx_dependency_package
from components.tokenize_pack import pipeline
from components.tokenize_pack.config import DataOptions, PrepareDataConfig
from trainer import contract

CORPUS_KEY = "corpus"
EXAMPLES_KEY = "examples"
TRANSFORM_GRAPH_KEY = "transform_graph"
STATISTICS_KEY = "statistics"
TFX_FILE_FORMAT = "tfrecords_gzip"
_OPTION_TYPES = DataOptions.option_types()


def _parameter_type(kind: type) -> type:
  return {bool: int, tuple: str}.get(kind, kind)


def to_parameters(options: DataOptions) -> dict[str, Any]:
  """DataOptions -> the component's parameters (None stays unset)."""
  parameters = {}
  for name, value in options.options().items():
    if isinstance(value, bool):
      value = int(value)
    elif isinstance(value, tuple):
      value = ",".join(value)
    parameters[name] = value
  return parameters


def from_parameters(exec_properties: dict[str, Any]) -> dict[str, Any]:
  """The component's parameters -> DataOptions keyword arguments."""
  options = {}
  for name, kind in _OPTION_TYPES.items():
    value = exec_properties.get(name)
    if value is None:
      continue
    options[name] = tuple(value.split(",")) if kind is tuple else kind(value)
  return options


def statistics_properties(stats: dict) -> dict[str, int | float]:
  """The custom properties of a PretrainDataStatistics artifact, from its stats.json."""
  documents = stats["documents"]
  return {
      contract.EXAMPLES_TRAIN: stats["examples"]["train"],
      contract.EXAMPLES_VALIDATION: stats["examples"]["validation"],
      contract.DOCUMENTS_READ: documents["read"],
      contract.DOCUMENTS_KEPT: documents["kept"],
      contract.DOCUMENTS_DROPPED: sum(documents["dropped"].values()),
      contract.TOKENS: stats["tokens"]["total"],
      contract.PACKING_EFFICIENCY: float(stats["packing"]["efficiency"]),
  }


def _data_config(corpus_patterns: tuple[str, ...], output_dir: str,
                 split_dirs: tuple[str, ...] | None,
                 exec_properties: dict[str, Any]) -> PrepareDataConfig:
  return PrepareDataConfig(input_patterns=corpus_patterns, output_dir=output_dir,
                           split_dirs=split_dirs, input_format="tfrecord_text",
                           text_field=contract.TEXT_FEATURE, **from_parameters(exec_properties))


def _corpus_patterns(corpus: list[types.Artifact]) -> tuple[str, ...]:
  patterns = []
  for artifact in corpus:
    if examples_utils.get_payload_format(artifact) != example_gen_pb2.FORMAT_TF_EXAMPLE:
      raise ValueError(f"TokenizePack reads tf.train.Examples, but the corpus artifact "
                       f"{artifact.uri} holds {examples_utils.get_payload_format_string(artifact)}"
                       "; produce it with components.corpus_gen")
    for split in artifact_utils.decode_split_names(artifact.split_names):
      patterns += examples_utils.get_split_file_patterns([artifact], split)
  return tuple(patterns)


def _copy_span(corpus: list[types.Artifact], examples: types.Artifact) -> None:
  if len(corpus) != 1:
    return
  for name in (example_gen_utils.SPAN_PROPERTY_NAME, example_gen_utils.VERSION_PROPERTY_NAME):
    if corpus[0].has_custom_property(name):
      examples.set_int_custom_property(name, corpus[0].get_int_custom_property(name))


class Executor(base_beam_executor.BaseBeamExecutor):
  """Runs pipeline.run with the component's Beam arguments, writing into the output artifacts."""

  @removes_tfx_dependency_package
  def Do(self, input_dict: dict[str, list[types.Artifact]],
         output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    corpus = input_dict[CORPUS_KEY]
    examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
    transform_graph = artifact_utils.get_single_instance(output_dict[TRANSFORM_GRAPH_KEY])
    statistics = artifact_utils.get_single_instance(output_dict[STATISTICS_KEY])

    examples.split_names = artifact_utils.encode_split_names(list(contract.SPLITS))
    split_dirs = tuple(artifact_utils.get_split_uri([examples], split)
                       for split in contract.SPLITS)
    config = _data_config(_corpus_patterns(corpus), transform_graph.uri, split_dirs,
                          exec_properties)
    # The output URIs belong to this execution alone; a retried attempt replaces its files.
    result = pipeline.run(config, list(self._beam_pipeline_args), overwrite=True)

    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, TFX_FILE_FORMAT)
    _copy_span(corpus, examples)

    FileSystems.rename([join(transform_graph.uri, contract.DATA_STATS_FILE)],
                       [join(statistics.uri, contract.DATA_STATS_FILE)])
    set_custom_properties(statistics, statistics_properties(result.stats))


class TokenizePackSpec(ComponentSpec):
  PARAMETERS = {name: ExecutionParameter(type=_parameter_type(kind), optional=True)
                for name, kind in _OPTION_TYPES.items()}
  INPUTS = {CORPUS_KEY: ChannelParameter(type=standard_artifacts.Examples)}
  OUTPUTS = {
      EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
      TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph),
      STATISTICS_KEY: ChannelParameter(type=PretrainDataStatistics),
  }


class TokenizePack(base_beam_component.BaseBeamComponent):
  """Tokenize, pack and mask the corpus into pretraining Examples; see the module docstring."""

  SPEC_CLASS = TokenizePackSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, corpus: types.BaseChannel, options: DataOptions):
    super().__init__(spec=TokenizePackSpec(
        corpus=corpus,
        examples=types.Channel(type=standard_artifacts.Examples),
        transform_graph=types.Channel(type=standard_artifacts.TransformGraph),
        statistics=types.Channel(type=PretrainDataStatistics),
        **{name: value for name, value in to_parameters(options).items() if value is not None}))
