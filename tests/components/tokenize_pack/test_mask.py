"""Static masking: trainer.masking's rule, batched, keyed by content; whole-word masking."""

import dataclasses

import numpy as np
import tensorflow as tf

from components.tokenize_pack import mask, pack
from components.tokenize_pack.tokenize import make_tokenizer
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


def test_batched_masking_is_mask_example_per_row_with_content_indices():
  word_ids, input_mask = _packed(10)
  type_ids = np.zeros_like(word_ids)
  indices = mask.example_indices(word_ids, dupe=1)
  masked = mask.make_batch_masker(_spec(), seed=7, seq_length=SEQ)(word_ids, input_mask, type_ids,
                                                                   indices)
  for row in (0, 5, len(word_ids) - 1):
    one = masking.mask_example({"input_word_ids": word_ids[row], "input_mask": input_mask[row],
                                "input_type_ids": type_ids[row]},
                               tf.constant(indices[row]), _spec(), 7)
    for name in mask.MASKED_FEATURES:
      assert np.array_equal(masked[name][row].numpy(), one[name].numpy()), name
  assert np.array_equal(mask.example_indices(word_ids, 1), indices)
  assert not np.array_equal(mask.example_indices(word_ids, 0), indices)
  assert (indices >= 0).all()


def test_whole_word_masking_masks_every_piece_of_a_chosen_word():
  word_ids, input_mask = _packed(20)
  tokens = vocab.load_vocab(VOCAB)
  continuation = np.array([t.startswith("##") for t in tokens])
  spec = _spec()
  masked = mask.make_batch_masker(spec, 3, SEQ, continuation)(
      word_ids, input_mask, np.zeros_like(word_ids), mask.example_indices(word_ids, 0))
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


def test_whole_word_masking_keeps_trainer_masking_replacement_rule():
  word_ids, input_mask = _packed(40)
  tokens = vocab.load_vocab(VOCAB)
  continuation = np.array([t.startswith("##") for t in tokens])
  spec = dataclasses.replace(_spec(), max_predictions_per_seq=10)
  masked = mask.make_batch_masker(spec, 5, SEQ, continuation)(
      word_ids, input_mask, np.zeros_like(word_ids), mask.example_indices(word_ids, 0))
  weights = masked["masked_lm_weights"].numpy() == 1
  rows = np.repeat(np.arange(len(word_ids))[:, None], spec.max_predictions_per_seq, axis=1)
  at_positions = masked["input_word_ids"].numpy()[rows, masked["masked_lm_positions"].numpy()]
  replaced_by_mask = np.mean(at_positions[weights] == spec.mask_token_id)
  assert 0.7 < replaced_by_mask < 0.9
