"""WriteExamples: a fixed number of gzip TFRecord shards per split, byte-identical on any runner.

Each chunk's examples are serialized, framed as TFRecords and gzipped by the
worker that made them, into one staging file (gzip streams can be joined: a
concatenation of gzip members is a valid gzip file). Chunks are dealt to
shards by their key; each shard is then the concatenation of its chunks'
files in key order. Only file names are shuffled, so a worker's memory is one
chunk whatever the corpus size, and the bytes do not depend on which worker
did what.
"""

import functools
import hashlib
import struct
import zlib

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.tokenize_pack import config as config_lib
from components.tokenize_pack.pack import PackedChunk
from components.tokenize_pack.read import masked_crc32c
from components.tokenize_pack.stats import STATS_TAG, Tally

_COPY_BYTES = 1 << 22


@functools.lru_cache(maxsize=1 << 16)
def _varint(value: int) -> bytes:
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _packed_varints(rows: np.ndarray) -> list[bytes]:
  """Protobuf's packed encoding of each row of non-negative integers, vectorized."""
  if rows.size and rows.min() < 0:
    raise ValueError("only non-negative integer features can be serialized")
  width = rows.shape[1]
  if rows.max(initial=0) < 0x80:  # masks, type ids, labels: one byte per value
    flat = rows.astype(np.uint8).tobytes()
    return [flat[i * width:(i + 1) * width] for i in range(len(rows))]
  values = rows.astype(np.uint32 if rows.max() < 1 << 32 else np.uint64)
  seven = values.dtype.type(7)
  num_bytes = np.ones(values.shape, np.int64)
  groups = [values & 0x7F]
  rest = values >> seven
  while rest.any():
    num_bytes += rest > 0
    groups.append(rest & 0x7F)
    rest >>= seven
  stacked = np.stack(groups, axis=-1).astype(np.uint8)
  position = np.arange(len(groups))
  stacked |= np.where(position < (num_bytes - 1)[..., None], 0x80, 0).astype(np.uint8)
  flat = stacked[position < num_bytes[..., None]].tobytes()
  ends = np.cumsum(num_bytes.sum(axis=1))
  return [flat[start:end] for start, end in zip(np.concatenate([[0], ends[:-1]]), ends,
                                                 strict=True)]


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def serialize_examples(features: dict[str, np.ndarray]) -> list[bytes]:
  """tf.train.Examples, byte-identical to SerializeToString(deterministic=True).

  Float arrays become float_list, integer arrays int64_list; features are
  written sorted by name, as deterministic serialization orders map keys.
  Building protos in Python costs ~200 us per 512-token example; this ~10.
  """
  encoded = {}
  for name, values in features.items():
    values = values.reshape(len(values), -1)
    if np.issubdtype(values.dtype, np.floating):
      # Feature.float_list (2) holding FloatList.value (1), packed little-endian floats.
      encoded[name] = [_field(2, _field(1, row.astype("<f4").tobytes())) for row in values]
    else:
      encoded[name] = [_field(3, _field(1, packed)) for packed in _packed_varints(values)]
  keys = {name: _field(1, name.encode()) for name in encoded}
  names = sorted(encoded)
  return [
      # Example.features (1) -> Features.feature (1): map entries {key (1), value (2)}.
      _field(1, b"".join(_field(1, keys[name] + _field(2, encoded[name][i])) for name in names))
      for i in range(len(encoded[names[0]]))
  ]


def tfrecord_gzip(records: list[bytes]) -> bytes:
  """A gzip member holding the records in TFRecord framing (as tf.io.TFRecordWriter writes)."""
  framed = []
  for record in records:
    length = struct.pack("<Q", len(record))
    framed += [length, masked_crc32c(length), record, masked_crc32c(record)]
  # wbits 31: a gzip header with mtime 0, so equal records give equal bytes.
  compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
  return compressor.compress(b"".join(framed)) + compressor.flush()


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
    tally = Tally()
    # Dupe copies and neighbours leave the chunk interleaved, in an order fixed by its key.
    digest = hashlib.blake2b(f"{self._seed}/{chunk.split}/{chunk.key}".encode(), digest_size=8)
    order = np.random.default_rng(int.from_bytes(digest.digest(), "little")).permutation(
        chunk.num_examples)
    records = serialize_examples({name: values[order] for name, values in chunk.features.items()})
    path = config_lib.join(self._staging_dir, chunk.split, f"{chunk.key}.tfrecord.gz")
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
      f.write(tfrecord_gzip(records))
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
    path = config_lib.shard_path(self._split_dirs[split], shard, self._num_shards)
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as out:
      if not staged:
        out.write(tfrecord_gzip([]))
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
         for shard in range(self._num_shards)])
    num_staged = staged.staged | "CountStaged" >> beam.combiners.Count.Globally()
    written = ((staged.staged, every_shard)
               | "WithEmptyShards" >> beam.Flatten()
               | "GroupByShard" >> beam.GroupByKey()
               | "ConcatenateShards" >> beam.ParDo(_ConcatenateShard(self._split_dirs,
                                                                     self._num_shards),
                                                   beam.pvalue.AsSingleton(num_staged)))
    return written, staged[STATS_TAG]
