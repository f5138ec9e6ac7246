"""[CLS] a [SEP] b [SEP] with type ids, BERT's longest-first truncation, ids from the vocab."""

import numpy as np
import pytest

from components.glue_eval.data import Example
from components.glue_eval.tokenize import PairEncoder, truncated_lengths
from tests.components.glue_eval.conftest import VOCAB
from trainer import vocab


def _bert_truncate(length_a: int, length_b: int, budget: int) -> tuple[int, int]:
  """Original BERT's _truncate_seq_pair, on lengths."""
  while length_a + length_b > budget:
    if length_a > length_b:
      length_a -= 1
    else:
      length_b -= 1
  return length_a, length_b


def test_truncation_matches_berts_loop():
  for budget in range(1, 16):
    for length_a in range(13):
      for length_b in range(13):
        assert truncated_lengths(length_a, length_b, budget) == _bert_truncate(
            length_a, length_b, budget), (length_a, length_b, budget)


@pytest.fixture(scope="module")
def ids():
  index = {token: i for i, token in enumerate(vocab.load_vocab(VOCAB))}
  return lambda text: [index[token] for token in text.split()]


def test_single_sentences_are_lower_cased_and_padded_to_the_longest(ids):
  encoder = PairEncoder(VOCAB, max_seq_length=16)
  encoded = encoder.encode([Example("The movie was GOOD!", None, 1), Example("Café.", None, 0)])
  np.testing.assert_array_equal(encoded["input_word_ids"], [
      ids("[CLS] the movie was good ! [SEP]"),
      ids("[CLS] cafe . [SEP] [PAD] [PAD] [PAD]")])
  np.testing.assert_array_equal(encoded["input_mask"], [[1] * 7, [1] * 4 + [0] * 3])
  np.testing.assert_array_equal(encoded["input_type_ids"], np.zeros([2, 7]))
  assert {a.dtype for a in encoded.values()} == {np.dtype(np.int32)}


def test_pairs_get_type_ids_and_longest_first_truncation(ids):
  encoder = PairEncoder(VOCAB, max_seq_length=10)
  encoded = encoder.encode([
      Example("is it good?", "it is.", 1),
      # 8 + 2 tokens in a budget of 7: a keeps 5, b keeps both.
      Example("one two three four five six seven eight", "nine ten", 0),
  ])
  np.testing.assert_array_equal(encoded["input_word_ids"], [
      ids("[CLS] is it good ? [SEP] it is . [SEP]"),
      ids("[CLS] one two three four five [SEP] nine ten [SEP]")])
  np.testing.assert_array_equal(encoded["input_type_ids"], [[0] * 6 + [1] * 4, [0] * 7 + [1] * 3])
  np.testing.assert_array_equal(encoded["input_mask"], np.ones([2, 10]))


def test_single_sentences_are_truncated_to_fit(ids):
  encoded = PairEncoder(VOCAB, max_seq_length=5).encode([Example("one two three four", None, 0)])
  np.testing.assert_array_equal(encoded["input_word_ids"], [ids("[CLS] one two three [SEP]")])


def test_special_ids_come_from_the_vocab(tmp_path):
  tokens = ["[unused0]", "[SEP]", "[PAD]", "good", "[CLS]", "[MASK]", "[UNK]", "movie"]
  path = tmp_path / "vocab.txt"
  path.write_text("\n".join(tokens) + "\n")
  encoded = PairEncoder(str(path), max_seq_length=8).encode(
      [Example("movie good", "plot", 1), Example("good", None, 0)])
  # "plot" is not in this vocab: [UNK].
  np.testing.assert_array_equal(encoded["input_word_ids"], [[4, 7, 3, 1, 6, 1], [4, 3, 1, 2, 2, 2]])


def test_too_short_a_sequence_is_an_error():
  with pytest.raises(ValueError, match="max_seq_length 3 is too short"):
    PairEncoder(VOCAB, max_seq_length=3)
