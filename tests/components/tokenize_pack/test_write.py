"""Example serialization and staged gzip TFRecords, checked against protobuf and tf.data."""

import numpy as np
import tensorflow as tf

from components.tokenize_pack import write


def _proto_bytes(features: dict[str, np.ndarray], row: int) -> bytes:
  feature = {}
  for name, values in features.items():
    values = values.reshape(len(values), -1)[row]
    if np.issubdtype(values.dtype, np.floating):
      feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))
    else:
      feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values.tolist()))
  example = tf.train.Example(features=tf.train.Features(feature=feature))
  return example.SerializeToString(deterministic=True)


def test_serialized_examples_are_protobufs_deterministic_bytes():
  rng = np.random.default_rng(0)
  features = {
      "input_word_ids": rng.integers(0, 2**21, size=(5, 40)).astype(np.int32),
      "input_mask": np.ones((5, 40), np.int32),
      "masked_lm_ids": np.array([[0, 127, 128, 16383, 16384, 2**28, 2**35 + 5]] * 5),
      "masked_lm_weights": rng.random((5, 7)).astype(np.float32),
      "next_sentence_labels": np.array([[0], [1], [1], [0], [1]], np.int32),
  }
  encoded = write.serialize_examples(features)
  assert encoded == [_proto_bytes(features, row) for row in range(5)]


def test_staged_gzip_files_concatenate_into_one_readable_file(tmp_path):
  rng = np.random.default_rng(0)
  batches = [[rng.bytes(int(n)) for n in rng.integers(1, 50_000, size=int(k))]
             for k in rng.integers(1, 20, size=12)]
  staged = []
  for i, batch in enumerate(batches):
    staged.append(tmp_path / "staging" / f"{i}.tfrecord.gz")
    write.write_tfrecord_gzip(str(staged[-1]), batch)
  path = tmp_path / "joined.tfrecord.gz"
  path.write_bytes(b"".join(p.read_bytes() for p in staged))
  records = list(tf.data.TFRecordDataset(str(path), compression_type="GZIP").as_numpy_iterator())
  assert records == [record for batch in batches for record in batch]
  empty = tmp_path / "empty.tfrecord.gz"
  write.write_tfrecord_gzip(str(empty), [])
  assert list(tf.data.TFRecordDataset(str(empty), compression_type="GZIP")) == []
  write.write_tfrecord_gzip(str(tmp_path / "again.tfrecord.gz"), batches[0])
  assert (tmp_path / "again.tfrecord.gz").read_bytes() == staged[0].read_bytes()


def test_chunks_of_a_file_are_dealt_round_robin():
  assert [write.shard_of(f"000003-{i:06d}", 4) for i in range(6)] == [3, 0, 1, 2, 3, 0]
