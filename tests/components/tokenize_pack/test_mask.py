"""Static masking: trainer.masking's rule over a whole chunk, keyed by the chunk; whole words."""

import dataclasses

import numpy as np
import tensorflow as tf

from components.common.tokenizer import make_tokenizer
from components.tokenize_pack import mask, pack
from tests.components.tokenize_pack.conftest import VOCAB, imdb_reviews
from trainer import contract, masking, vocab

SEQ = 64


def _packed(num_reviews: int):
  tokens = vocab.load_vocab(VOCAB)
  special = contract.SpecialTokenIds.from_vocab(tokens)
  ids = make_tokenizer(tokens, lower_case=True).tokenize(imdb_reviews(num_reviews)).to_list()
  return pack.pack_full_sentences([np.array(i, np.int32) for i in ids], SEQ, special)


def _spec():
  return masking.MaskingSpec.from_vocab_file(VOCAB, max_predictions_per_seq=10)


def _continuation():
  return np.array([t.startswith("##") for t in vocab.load_vocab(VOCAB)])


def test_chunk_masking_is_trainer_mask_batch_keyed_by_the_chunk():
  word_ids, input_mask = _packed(10)
  type_ids = np.zeros_like(word_ids)
  seed = mask.chunk_seed(7, "train", "000001-000002", dupe=1)
  masked = mask.make_chunk_masker(_spec(), seq_length=SEQ)(word_ids, input_mask, type_ids, seed)
  reference = masking.mask_batch({"input_word_ids": word_ids, "input_mask": input_mask,
                                  "input_type_ids": type_ids}, tf.constant(seed), _spec())
  for name in mask.MASKED_FEATURES:
    assert np.array_equal(masked[name].numpy(), reference[name].numpy()), name
  assert np.array_equal(mask.chunk_seed(7, "train", "000001-000002", 1), seed)
  for other in (mask.chunk_seed(7, "train", "000001-000002", 0),
                mask.chunk_seed(7, "validation", "000001-000002", 1),
                mask.chunk_seed(7, "train", "000001-000003", 1),
                mask.chunk_seed(8, "train", "000001-000002", 1)):
    assert not np.array_equal(other, seed)
  assert (seed >= 0).all()


def test_whole_word_masking_masks_every_piece_of_a_chosen_word():
  word_ids, input_mask = _packed(20)
  continuation = _continuation()
  spec = _spec()
  masked = mask.make_chunk_masker(spec, SEQ, continuation)(
      word_ids, input_mask, np.zeros_like(word_ids), mask.chunk_seed(3, "train", "0-0", 0))
  weights = masked["masked_lm_weights"].numpy()
  positions = masked["masked_lm_positions"].numpy()
  labels = masked["masked_lm_ids"].numpy()
  assert np.array_equal(masked["input_mask"].numpy(), input_mask)
  split_words = 0
  for row in range(len(word_ids)):
    chosen = set(positions[row][weights[row] == 1].tolist())
    assert 0 < len(chosen) <= spec.max_predictions_per_seq
    assert labels[row][weights[row] == 1].tolist() == word_ids[row][sorted(chosen)].tolist()
    for p in chosen:  # the word's next piece is chosen too, and so is the piece before a '##'
      if p + 1 < SEQ - 1 and continuation[word_ids[row][p + 1]]:
        assert p + 1 in chosen
      if continuation[word_ids[row][p]] and p > 1:
        assert p - 1 in chosen
      split_words += continuation[word_ids[row][p]]
  assert split_words > 0  # the check above saw multi-piece words


def test_whole_word_masking_fills_the_budget_with_whole_words_in_random_order():
  word_ids, input_mask = _packed(20)
  continuation = _continuation()
  spec = _spec()
  masked = mask.make_chunk_masker(spec, SEQ, continuation)(
      word_ids, input_mask, np.zeros_like(word_ids), mask.chunk_seed(3, "train", "0-0", 0))
  weights = masked["masked_lm_weights"].numpy()
  special = contract.SpecialTokenIds.from_vocab(vocab.load_vocab(VOCAB))
  shortfall = []
  for row in range(len(word_ids)):
    candidates = int(np.sum(~np.isin(word_ids[row], special.never_masked) & (input_mask[row] > 0)))
    budget = min(spec.max_predictions_per_seq, max(round(0.15 * candidates), 1))
    assert weights[row].sum() <= budget
    shortfall.append(budget - weights[row].sum())
  # Most words are one piece: the choice stops when a word does not fit, rarely far below.
  assert np.mean(shortfall) < 1.0
  # Rows of one chunk draw different words.
  firsts = {tuple(masked["masked_lm_positions"].numpy()[row][:3]) for row in range(len(word_ids))}
  assert len(firsts) > len(word_ids) // 2


def test_whole_word_masking_keeps_trainer_masking_replacement_rule():
  word_ids, input_mask = _packed(40)
  spec = dataclasses.replace(_spec(), max_predictions_per_seq=10)
  masked = mask.make_chunk_masker(spec, SEQ, _continuation())(
      word_ids, input_mask, np.zeros_like(word_ids), mask.chunk_seed(5, "train", "0-0", 0))
  weights = masked["masked_lm_weights"].numpy() == 1
  rows = np.repeat(np.arange(len(word_ids))[:, None], spec.max_predictions_per_seq, axis=1)
  at_positions = masked["input_word_ids"].numpy()[rows, masked["masked_lm_positions"].numpy()]
  replaced_by_mask = np.mean(at_positions[weights] == spec.mask_token_id)
  assert 0.7 < replaced_by_mask < 0.9
