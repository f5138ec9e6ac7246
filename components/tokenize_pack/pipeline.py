"""The data-preparation pipeline: read -> tokenize -> split -> pack -> mask -> write.

    OUT/vocab.txt                                   the vocabulary (given, or learned first)
    OUT/train/examples-SSSSS-of-NNNNN.tfrecord.gz   gzip TFRecords of tf.train.Examples
    OUT/validation/examples-SSSSS-of-NNNNN.tfrecord.gz
    OUT/transform_fn/, OUT/transformed_metadata/    the TFT text -> ids graph
    OUT/stats.json                                  every count, exact, with derived rates
    OUT/data_spec.json                              what the examples are, for the trainer
                                                    (trainer/data_spec.py); written last

The split directories can be put elsewhere (`split_dirs`), as the TokenizePack
component does to write straight into its Examples artifact's Split-* folders;
data_spec.json goes into their parent, where the trainer looks for it.

`run` builds and runs it on the runner named in the Beam pipeline arguments
(DirectRunner in memory by default), then reads back stats.json.
"""

import dataclasses
import json

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components.common.beam_utils import check_remote_paths, join, pipeline_options
from components.common.corpus import (
  PACKAGED_PREFIX,
  ReadDocuments,
  export_packaged_corpus,
  list_input_files,
)
from components.common.counts import SumCounts
from components.tokenize_pack import stats as stats_lib
from components.tokenize_pack.config import PrepareDataConfig
from components.tokenize_pack.learn_vocab import LearnVocab
from components.tokenize_pack.mask import MaskTokens
from components.tokenize_pack.pack import PackSequences, SplitTrainEval
from components.tokenize_pack.tokenize import TokenizeDocuments, make_preprocessing_fn
from components.tokenize_pack.write import WriteExamples
from trainer import contract
from trainer import vocab as vocab_lib
from trainer.errors import UserError


class NoUsableTextError(UserError):
  """The corpus yielded no example; the message says what was dropped and why."""


@dataclasses.dataclass
class PrepareDataResult:
  stats: dict  # stats.json as written
  metric_counts: dict[str, int]  # the same counts, from the runner's Beam metrics
  example_files: list[str]


def outputs(config: PrepareDataConfig) -> list[str]:
  """What a run writes; --overwrite removes these (and nothing else) first."""
  out = config.output_dir
  return [*config.split_dirs, join(out, tft.TFTransformOutput.TRANSFORM_FN_DIR),
          join(out, tft.TFTransformOutput.TRANSFORMED_METADATA_DIR), stats_path(config),
          join(config.data_spec_dir, contract.DATA_SPEC_FILE), config.output_vocab_file,
          config.staging_dir]


def stats_path(config: PrepareDataConfig) -> str:
  return join(config.output_dir, contract.DATA_STATS_FILE)


def _is_directory(path: str) -> bool:
  """Whether anything is under `path` as a directory. On GCS a directory is only a prefix:
  exists() looks for one object of that exact name, and finds none."""
  return bool(FileSystems.match([path.rstrip("/") + "/*"])[0].metadata_list)


def _present(path: str) -> bool:
  return _is_directory(path) or FileSystems.exists(path)


def delete_tree(path: str) -> None:
  """Deletes the file, or the directory and everything under it, at `path` on any Beam
  filesystem; nothing if it is absent. A directory is deleted by its name with a trailing "/",
  the only form in which Beam's GCS filesystem deletes what is under a prefix."""
  if _is_directory(path):
    FileSystems.delete([path.rstrip("/") + "/"])
  elif FileSystems.exists(path):
    FileSystems.delete([path])


def _clear_outputs(config: PrepareDataConfig, overwrite: bool) -> None:
  present = [path for path in outputs(config) if _present(path)]
  if present and not overwrite:
    raise FileExistsError(f"--output_dir {config.output_dir}: {present} already exist; pass "
                          "--overwrite to replace them, or choose another directory")
  for path in present:
    delete_tree(path)


def resolve_input_files(config: PrepareDataConfig) -> list[str]:
  patterns = []
  for pattern in config.input_patterns:
    if pattern.startswith(PACKAGED_PREFIX):
      pattern = export_packaged_corpus(pattern[len(PACKAGED_PREFIX):],
                                       join(config.staging_dir, "packaged"))
    patterns.append(pattern)
  return list_input_files(tuple(patterns))


def _read(pipeline: beam.Pipeline, config: PrepareDataConfig, files: list[str]):
  return pipeline | "ReadDocuments" >> ReadDocuments(
      files, config.input_format, config.text_field, config.max_document_chars,
      config.chunk_chars)


def write_vocab(config: PrepareDataConfig, given: list[str] | None, files: list[str],
                options: PipelineOptions) -> None:
  """OUT/vocab.txt: the given vocab's tokens, or a vocab learned from the corpus on Beam."""
  if given is not None:
    _write_text(config.output_vocab_file, "".join(f"{token}\n" for token in given))
    return
  pipeline = beam.Pipeline(options=options)
  chunks, _ = _read(pipeline, config, files)
  _ = chunks | "LearnVocab" >> LearnVocab(config.output_vocab_file, config.learn_vocab_size,
                                          config.special_tokens, config.lower_case)
  _run(pipeline)


def _run(pipeline: beam.Pipeline) -> beam.runners.runner.PipelineResult:
  result = pipeline.run()
  state = result.wait_until_finish()
  if state != beam.runners.runner.PipelineState.DONE:
    raise RuntimeError(f"the Beam pipeline ended in state {state}")
  return result


def _write_text(path: str, text: str) -> None:
  with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    f.write(text.encode("utf-8"))


def _recorded_config(config: PrepareDataConfig) -> dict:
  # The output directories are left out: two runs into different places give equal stats.json.
  recorded = dataclasses.asdict(config)
  del recorded["output_dir"], recorded["split_dirs"]
  recorded["input_patterns"] = list(config.input_patterns)
  recorded["special_tokens"] = list(config.special_tokens)
  return recorded


def build_pipeline(pipeline: beam.Pipeline, config: PrepareDataConfig, files: list[str]) -> None:
  vocab_file = config.output_vocab_file
  chunks, read_stats = _read(pipeline, config, files)
  tokenized, tokenize_stats = chunks | "TokenizeDocuments" >> TokenizeDocuments(
      vocab_file, config.lower_case)
  split, split_stats = tokenized | "SplitTrainEval" >> SplitTrainEval(config.validation_fraction)
  packed, pack_stats = split | "PackSequences" >> PackSequences(
      config.packing, config.seq_length, vocab_file, config.seed, config.short_seq_prob)
  all_stats = [read_stats, tokenize_stats, split_stats, pack_stats]
  if config.masking == "static":
    packed, mask_stats = packed | "MaskTokens" >> MaskTokens(
        vocab_file, config.seq_length, config.max_predictions_per_seq, config.masked_lm_prob,
        config.dupe_factor, config.whole_word_masking, config.seed)
    all_stats.append(mask_stats)
  _, write_stats = packed | "WriteExamples" >> WriteExamples(
      config.split_dir_by_name, join(config.staging_dir, "examples"),
      config.num_shards, config.seed)
  all_stats.append(write_stats)

  recorded = _recorded_config(config)
  path = stats_path(config)
  _ = (all_stats
       | "FlattenStats" >> beam.Flatten()
       | "SumStats" >> beam.CombineGlobally(SumCounts(stats_lib.COUNTERS))
       | "WriteStats" >> beam.Map(
           lambda counts: _write_text(path, stats_lib.stats_json(counts, recorded))))

  if config.write_transform_fn:
    tokens = vocab_lib.load_vocab(vocab_file)
    schema = schema_utils.schema_from_feature_spec(
        {contract.TEXT_FEATURE: tf.io.FixedLenFeature([], tf.string)})
    # The preprocessing_fn has no analyzers, so the graph needs no data to be built.
    no_data = pipeline | "NoRawData" >> beam.Create([], reshuffle=False)
    transform_fn = ((no_data, dataset_metadata.DatasetMetadata(schema))
                    | "AnalyzeTokenizer" >> tft_beam.AnalyzeDataset(
                        make_preprocessing_fn(tokens, config.lower_case)))
    _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(config.output_dir)


def describe_empty(stats: dict, config: PrepareDataConfig) -> str:
  files, documents = stats["files"], stats["documents"]
  dropped = {reason: n for reason, n in documents["dropped"].items() if n}
  hints = []
  if files["skipped_binary"]:
    hints.append(f"{files['skipped_binary']} file(s) were binary: pass text or JSONL files")
  if dropped.get("missing_text_field"):
    records = "JSONL records" if config.input_format == "jsonl" else "tf.train.Examples"
    hints.append(f"{records} lack the field {config.text_field!r}: set --text_field")
  if dropped.get("invalid_example"):
    hints.append("records are not tf.train.Examples: is the input text? use --format text")
  if dropped.get("invalid_json") and config.input_format == "jsonl":
    hints.append("lines are not JSON objects: is the input plain text? use --format text")
  if not hints:
    hints.append("check that --input points at the corpus and that --format matches it")
  return (f"no usable text in --input {','.join(config.input_patterns)}: {files['read']} file(s) "
          f"read ({files['empty']} empty, {files['skipped_binary']} binary), "
          f"{documents['read']} document(s) found, dropped {dropped or 'none'}, so no example "
          f"was written. Fix: " + "; ".join(hints) + ".")


def run(config: PrepareDataConfig, pipeline_args: list[str],
        overwrite: bool = False) -> PrepareDataResult:
  """Runs the whole preparation; raises NoUsableTextError when no example could be made."""
  options = pipeline_options(pipeline_args)
  check_remote_paths(options, [("--output_dir", config.output_dir)] + [
      ("--input", p) for p in config.input_patterns if not p.startswith(PACKAGED_PREFIX)])
  given = None
  if config.vocab_file is not None:  # read first: it may be an earlier run's OUT/vocab.txt
    given = vocab_lib.load_vocab(config.vocab_file)
    contract.SpecialTokenIds.from_vocab(given, source=f"--vocab {config.vocab_file!r}")
  _clear_outputs(config, overwrite)
  files = resolve_input_files(config)
  write_vocab(config, given, files, options)

  pipeline = beam.Pipeline(options=options)
  with tft_beam.Context(temp_dir=join(config.staging_dir, "tft")):
    build_pipeline(pipeline, config, files)
    result = _run(pipeline)
  delete_tree(config.staging_dir)

  with FileSystems.open(stats_path(config),
                        compression_type=CompressionTypes.UNCOMPRESSED) as f:
    stats = json.loads(f.read().decode("utf-8"))
  if not stats["examples"]["total"]:
    raise NoUsableTextError(describe_empty(stats, config))
  tokens = vocab_lib.load_vocab(config.output_vocab_file)
  config.to_data_spec(tokens, config.output_vocab_file).write(config.data_spec_dir)
  example_files = sorted(
      join(split_dir, contract.shard_name(shard, config.num_shards))
      for split_dir in config.split_dirs for shard in range(config.num_shards))
  return PrepareDataResult(stats=stats, metric_counts=stats_lib.counts_from_metrics(result),
                           example_files=example_files)
