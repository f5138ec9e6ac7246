"""WriteExamples: a fixed number of gzip TFRecord shards per split, byte-identical on any runner.

Each chunk's examples are serialized (tf.io.encode_proto) and written as a gzip
TFRecord file (tf.io.TFRecordWriter) by the worker that made them, into one
staging file. Chunks are dealt to shards by their key; each shard is then the
concatenation of its chunks' files in key order (a concatenation of gzip
members is a valid gzip file, which TF's reader reads through). Only file names
are shuffled, so a worker's memory is one chunk whatever the corpus size, and
the bytes do not depend on which worker did what.

Beam's WriteToTFRecord does not fit: with a fixed shard count it deals records
to shards from a random start and groups every record by shard, so neither the
bytes nor a worker's memory would be fixed.
"""

import functools
import hashlib
import posixpath

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.common.beam_utils import join
from components.common.counts import STATS_TAG, Tally
from components.tokenize_pack.pack import PackedChunk
from components.tokenize_pack.stats import COUNTERS
from trainer import contract

_COPY_BYTES = 1 << 22
# zlib's fastest level: TF's writer took 0.55x the time of its default (level 6) on the IMDB
# examples (42.5 MB of records), for 3% more bytes (15.9 MB against 15.4 MB). Level 6 was
# 1.7 of the 11 CPU seconds of a one-worker IMDB run (profiled).
_GZIP_LEVEL = 1


def _encode(message_type: str, fields: dict[str, tf.Tensor]) -> tf.Tensor:
  """One serialized `message_type` per row; each field's values are [rows, count]."""
  rows = tf.shape(next(iter(fields.values())))[0]
  sizes = tf.stack([tf.fill([rows], tf.shape(values)[1]) for values in fields.values()], axis=1)
  return tf.io.encode_proto(sizes, list(fields.values()), list(fields), message_type)


def _serialize(features: dict[str, tf.Tensor]) -> tf.Tensor:
  entries = []
  for name in sorted(features):  # as deterministic serialization orders map keys
    values = features[name]
    if values.dtype.is_floating:
      feature = {"float_list": _encode("tensorflow.FloatList", {"value": values})}
    else:
      feature = {"int64_list": _encode("tensorflow.Int64List",
                                       {"value": tf.cast(values, tf.int64)})}
    value = _encode("tensorflow.Feature", {kind: lists[:, None] for kind, lists in feature.items()})
    key = tf.fill([tf.shape(values)[0], 1], name)
    entries.append(_encode("tensorflow.Features.FeatureEntry",
                           {"key": key, "value": value[:, None]}))
  features_proto = _encode("tensorflow.Features", {"feature": tf.stack(entries, axis=1)})
  return _encode("tensorflow.Example", {"features": features_proto[:, None]})


@functools.cache
def _serializer(layout: tuple[tuple[str, tf.DType], ...]):
  """`_serialize` traced once per process for each set of (feature name, dtype).

  Tracing builds ~100 encode_proto ops and took 0.4-0.7 s (profiled); a
  shape-polymorphic signature keeps every chunk on that one trace.
  """
  signature = {name: tf.TensorSpec([None, None], dtype) for name, dtype in layout}
  return tf.function(_serialize, input_signature=[signature], autograph=False)


def serialize_examples(features: dict[str, np.ndarray]) -> list[bytes]:
  """tf.train.Examples, byte-identical to SerializeToString(deterministic=True).

  Float arrays become float_list, integer arrays int64_list. TF's encode_proto
  builds them for a whole chunk in C++; Python protos cost ~10x, and tfx_bsl's
  example encoder orders a map's entries by hash, so its bytes are not fixed.
  """
  arrays = {}
  for name, values in features.items():
    values = values.reshape(len(values), -1)
    if np.issubdtype(values.dtype, np.floating):
      values = values.astype(np.float32, copy=False)
    else:
      if values.size and values.min() < 0:
        raise ValueError(f"feature {name} holds negative ids; only non-negative integer "
                         "features can be written")
      # int32 ids go in as they are; the graph widens them to int64.
      if values.dtype != np.int32:
        values = values.astype(np.int64, copy=False)
    arrays[name] = values
  serialize = _serializer(tuple(sorted((name, tf.as_dtype(values.dtype))
                                       for name, values in arrays.items())))
  return serialize(arrays).numpy().tolist()


def write_tfrecord_gzip(path: str, records: list[bytes]) -> None:
  """One gzip TFRecord file, as TF writes it (a gzip header with mtime 0: equal in, equal out)."""
  tf.io.gfile.makedirs(posixpath.dirname(path))
  options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=_GZIP_LEVEL)
  with tf.io.TFRecordWriter(path, options) as writer:
    for record in records:
      writer.write(record)


def shard_of(chunk_key: str, num_shards: int) -> int:
  """Deals a file's consecutive chunks round-robin over the shards."""
  file_index, chunk_index = (int(part) for part in chunk_key.split("-"))
  return (file_index + chunk_index) % num_shards


class _StageChunk(beam.DoFn):
  def __init__(self, staging_dir: str, num_shards: int, seed: int):
    self._staging_dir = staging_dir
    self._num_shards = num_shards
    self._seed = seed

  def process(self, chunk: PackedChunk):
    tally = Tally(COUNTERS)
    # Dupe copies and neighbours leave the chunk interleaved, in an order fixed by its key.
    digest = hashlib.blake2b(f"{self._seed}/{chunk.split}/{chunk.key}".encode(), digest_size=8)
    order = np.random.default_rng(int.from_bytes(digest.digest(), "little")).permutation(
        chunk.num_examples)
    records = serialize_examples({name: values[order] for name, values in chunk.features.items()})
    path = join(self._staging_dir, chunk.split, f"{chunk.key}{contract.SHARD_SUFFIX}")
    write_tfrecord_gzip(path, records)
    tally.add(f"examples_{chunk.split}", len(records))
    yield (chunk.split, shard_of(chunk.key, self._num_shards)), (chunk.key, path)
    yield from tally.flush()


class _ConcatenateShard(beam.DoFn):
  def __init__(self, split_dirs: dict[str, str], num_shards: int):
    self._split_dirs = split_dirs
    self._num_shards = num_shards

  def process(self, element, num_staged: int):
    (split, shard), staged = element
    # No usable text: write no examples at all; the launcher reports why from stats.json.
    if not num_staged:
      return
    # Staged chunks always hold examples: TF's gzip reader stops at an empty member.
    staged = sorted(entry for entry in staged if entry is not None)
    path = join(self._split_dirs[split], contract.shard_name(shard, self._num_shards))
    if not staged:
      write_tfrecord_gzip(path, [])
      yield path
      return
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as out:
      for _, staged_path in staged:
        with FileSystems.open(staged_path,
                              compression_type=CompressionTypes.UNCOMPRESSED) as source:
          while block := source.read(_COPY_BYTES):
            out.write(block)
    # Staged files stay until the run has succeeded (the launcher removes them), so
    # a retried shard still finds its inputs.
    yield path


class WriteExamples(beam.PTransform):
  """PackedChunks -> (paths of {split dir}/examples-SSSSS-of-NNNNN.tfrecord.gz, stats).

  `split_dirs` maps each split name to its directory. When no chunk has an
  example (no usable text), no file is written at all.
  """

  def __init__(self, split_dirs: dict[str, str], staging_dir: str, num_shards: int, seed: int):
    super().__init__()
    self._split_dirs = split_dirs
    self._num_shards = num_shards
    self._stage = _StageChunk(staging_dir, num_shards, seed)

  def expand(self, chunks):
    staged = chunks | "StageChunks" >> beam.ParDo(self._stage).with_outputs(
        STATS_TAG, main="staged")
    # Every shard exists, even one that no chunk was dealt to.
    every_shard = staged.staged.pipeline | "EveryShard" >> beam.Create(
        [((split, shard), None) for split in self._split_dirs
         for shard in range(self._num_shards)], reshuffle=False)
    num_staged = staged.staged | "CountStaged" >> beam.combiners.Count.Globally()
    written = ((staged.staged, every_shard)
               | "WithEmptyShards" >> beam.Flatten()
               | "GroupByShard" >> beam.GroupByKey()
               | "ConcatenateShards" >> beam.ParDo(_ConcatenateShard(self._split_dirs,
                                                                     self._num_shards),
                                                   beam.pvalue.AsSingleton(num_staged)))
    return written, staged[STATS_TAG]
