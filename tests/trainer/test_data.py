"""The dynamic loader's training order: files in a new seeded order every epoch, disjoint across
input pipelines, and a record shuffle buffer sized for the batch."""

import numpy as np
import pytest
import tensorflow as tf

from trainer import contract, data, masking, vocab

FILES = [f"shard-{i}" for i in range(6)]


def _epochs(dataset: tf.data.Dataset, epochs: int, size: int) -> list[list[str]]:
  names = [name.decode() for name in dataset.take(epochs * size).as_numpy_iterator()]
  return [names[i * size:(i + 1) * size] for i in range(epochs)]


def test_each_epoch_reads_the_files_in_a_new_order_and_the_seed_fixes_the_orders():
  epochs = _epochs(data.file_order(FILES, seed=3, is_training=True), 3, len(FILES))
  assert all(sorted(epoch) == FILES for epoch in epochs)
  assert len({tuple(epoch) for epoch in epochs}) == 3
  assert _epochs(data.file_order(FILES, seed=3, is_training=True), 3, len(FILES)) == epochs
  assert _epochs(data.file_order(FILES, seed=4, is_training=True), 3, len(FILES)) != epochs
  # Evaluation reads each file once, in the order given.
  assert list(data.file_order(FILES, seed=3, is_training=False).as_numpy_iterator()) == [
      name.encode() for name in FILES]


def test_input_pipelines_read_disjoint_files_in_every_epoch():
  shares = [_epochs(data.file_order(FILES, seed=3, is_training=True, num_pipelines=2,
                                    pipeline_id=i), 3, len(FILES) // 2) for i in range(2)]
  for epoch in range(3):
    assert sorted(shares[0][epoch] + shares[1][epoch]) == FILES
  assert shares[0][0] != shares[0][1]


def test_the_shuffle_buffer_holds_sixteen_steps_of_examples_unless_set():
  params = data.TokenDropPretrainDataConfig(global_batch_size=512)
  assert data.shuffle_buffer(params) == data.SHUFFLE_BUFFER_STEPS * 512 == 8192
  context = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=1,
                                       num_replicas_in_sync=8)
  assert data.shuffle_buffer(params, context) == 16 * 128
  assert data.shuffle_buffer(params.replace(shuffle_buffer_size=100), context) == 100


@pytest.fixture(scope="module")
def numbered_shards(tmp_path_factory) -> list[str]:
  """Four gzip shards of three packed examples each; input_type_ids holds the shard's number,
  which masking leaves alone."""
  root = tmp_path_factory.mktemp("shards")
  special = vocab.special_token_ids(vocab.bert_base_uncased_vocab_path())
  paths = []
  for shard in range(4):
    path = str(root / f"examples-{shard}.tfrecord.gz")
    with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
      for _ in range(3):
        ids = [special.cls, 2000, 2001, 2002, 2003, 2004, 2005, special.sep]
        feature = {contract.WORD_IDS: ids, contract.INPUT_MASK: [1] * 8,
                   contract.TYPE_IDS: [shard] * 8}
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            name: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
            for name, values in feature.items()})).SerializeToString())
    paths.append(path)
  return paths


def test_the_loader_reads_the_shards_in_the_seeded_order_of_each_epoch(numbered_shards):
  # One file at a time and no record shuffle, so the stream shows the file order.
  params = data.TokenDropPretrainDataConfig(
      input_path=",".join(numbered_shards), masking="dynamic", seq_length=8,
      max_predictions_per_seq=2, global_batch_size=3, use_next_sentence_label=False,
      use_v2_feature_names=True, file_type="tfrecord_compressed", cycle_length=1,
      shuffle_buffer_size=1, masking_seed=5)
  spec = masking.MaskingSpec.from_vocab_file(str(vocab.bert_base_uncased_vocab_path()), 2)
  batches = data.TokenDropPretrainDataLoader(params, spec).load().take(8)
  shards = [batch[contract.TYPE_IDS].numpy() for batch in batches]
  assert all((batch == batch[0, 0]).all() for batch in shards)  # a batch is one shard
  read = [int(batch[0, 0]) for batch in shards]
  expected = _epochs(data.file_order(numbered_shards, 5, is_training=True), 2, 4)
  assert [[numbered_shards[i] for i in read[:4]], [numbered_shards[i] for i in read[4:]]] == (
      expected)
  assert sorted(read[:4]) == sorted(read[4:]) == [0, 1, 2, 3] and read[:4] != read[4:]
  np.testing.assert_array_equal(
      [int(b[contract.TYPE_IDS][0, 0]) for b in
       data.TokenDropPretrainDataLoader(params, spec).load().take(8)], read)
