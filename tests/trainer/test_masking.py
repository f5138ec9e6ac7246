"""Dynamic masking: exact counts, BERT's 80/10/10 rule, vocab-derived ids, determinism."""

import numpy as np
import pytest
import tensorflow as tf

from trainer import masking, vocab

VOCAB = vocab.bert_base_uncased_vocab_path()


def _spec(**rates):
  return masking.MaskingSpec.from_vocab_file(str(VOCAB), max_predictions_per_seq=20, **rates)


def _example(word_ids, real_length=None):
  real_length = len(word_ids) if real_length is None else real_length
  mask = [1] * real_length + [0] * (len(word_ids) - real_length)
  return {"input_word_ids": tf.constant(word_ids, tf.int64),
          "input_mask": tf.constant(mask, tf.int64),
          "input_type_ids": tf.zeros([len(word_ids)], tf.int64)}


def test_spec_ids_come_from_the_vocab():
  spec = _spec()
  tokens = vocab.load_vocab(VOCAB)
  assert tokens[spec.mask_token_id] == "[MASK]"
  assert sorted(tokens[i] for i in spec.never_mask_ids) == ["[CLS]", "[MASK]", "[PAD]", "[SEP]"]
  assert not any(tokens[i].startswith("[") and tokens[i].endswith("]")
                 for i in spec.replacement_ids)
  assert len(spec.replacement_ids) == len(tokens) - 5 - sum(
      t.startswith("[unused") for t in tokens)


def test_counts_positions_and_labels():
  special = vocab.special_token_ids(VOCAB)
  body = list(range(2000, 2058))  # 58 ordinary tokens
  ids = [special.cls, *body, special.sep, 0, 0, 0, 0]  # 64 with 4 [PAD]
  out = masking.mask_example(_example(ids, real_length=60), tf.constant(7, tf.int64), _spec(), 3)
  weights = out["masked_lm_weights"].numpy()
  positions = out["masked_lm_positions"].numpy()
  num_real = int(weights.sum())
  assert num_real == round(0.15 * 58) == 9
  assert weights.tolist() == [1.0] * 9 + [0.0] * 11
  real = positions[:9]
  assert list(real) == sorted(real) and len(set(real)) == 9
  assert all(1 <= p <= 58 for p in real)  # never [CLS], [SEP] or padding
  assert positions[9:].tolist() == [0] * 11
  assert out["masked_lm_ids"].numpy()[:9].tolist() == [ids[p] for p in real]
  assert out["masked_lm_ids"].numpy()[9:].tolist() == [0] * 11
  masked = out["input_word_ids"].numpy()
  untouched = [i for i in range(64) if i not in set(real)]
  assert masked[untouched].tolist() == [ids[i] for i in untouched]


def test_cap_at_max_predictions_and_short_sequences():
  special = vocab.special_token_ids(VOCAB)
  long_ids = [special.cls, *range(3000, 3498), special.sep]
  out = masking.mask_example(_example(long_ids), tf.constant(0, tf.int64), _spec(), 0)
  assert out["masked_lm_weights"].numpy().sum() == 20  # round(0.15 * 498) = 75, capped
  short = [special.cls, 2000, 2001, special.sep]
  out = masking.mask_example(_example(short), tf.constant(0, tf.int64), _spec(), 0)
  assert out["masked_lm_weights"].shape == (20,)
  assert out["masked_lm_weights"].numpy().sum() == 1  # at least one prediction


def test_80_10_10_rule_over_many_examples():
  special = vocab.special_token_ids(VOCAB)
  spec = _spec()
  ids = [special.cls, *range(2000, 2126), special.sep]
  replaced_by_mask = replaced_randomly = kept = 0
  for index in range(400):
    out = masking.mask_example(_example(ids), tf.constant(index, tf.int64), spec, 11)
    n = int(out["masked_lm_weights"].numpy().sum())
    new = out["input_word_ids"].numpy()[out["masked_lm_positions"].numpy()[:n]]
    old = out["masked_lm_ids"].numpy()[:n]
    replaced_by_mask += int(np.sum(new == special.mask))
    kept += int(np.sum(new == old))
    replaced_randomly += int(np.sum((new != special.mask) & (new != old)))
    assert set(new[(new != special.mask) & (new != old)]) <= set(spec.replacement_ids)
  total = replaced_by_mask + replaced_randomly + kept
  assert total == 400 * 19  # round(0.15 * 126) = 19 per example
  assert abs(replaced_by_mask / total - 0.8) < 0.02
  # A random draw equals the original 1 time in ~30k; "kept" absorbs those.
  assert abs(replaced_randomly / total - 0.1) < 0.015
  assert abs(kept / total - 0.1) < 0.015


def test_same_seed_and_index_repeat_other_index_differs():
  special = vocab.special_token_ids(VOCAB)
  ids = [special.cls, *range(2000, 2062), special.sep]
  spec = _spec()

  def run(index, seed):
    out = masking.mask_example(_example(ids), tf.constant(index, tf.int64), spec, seed)
    return out["input_word_ids"].numpy().tolist(), out["masked_lm_positions"].numpy().tolist()

  assert run(5, 1) == run(5, 1)
  assert run(5, 1) != run(6, 1)
  assert run(5, 1) != run(5, 2)


def test_a_batch_is_masked_row_by_row_with_one_key():
  special = vocab.special_token_ids(VOCAB)
  spec = _spec()
  rng = np.random.default_rng(0)
  lengths = [64, 40, 3, 64, 20]
  word_ids = np.full((5, 64), special.pad, np.int32)
  for row, length in enumerate(lengths):
    word_ids[row, :length] = [special.cls, *rng.integers(2000, 9000, length - 2), special.sep]
  input_mask = (word_ids != special.pad).astype(np.int32)
  batch = {"input_word_ids": word_ids, "input_mask": input_mask,
           "input_type_ids": np.zeros_like(word_ids)}
  out = {k: v.numpy() for k, v in masking.mask_batch(batch, tf.constant([4, 9], tf.int64),
                                                     spec).items()}
  for row, length in enumerate(lengths):
    n = int(out["masked_lm_weights"][row].sum())
    assert n == min(20, max(round(0.15 * (length - 2)), 1))
    positions = out["masked_lm_positions"][row]
    assert list(positions[:n]) == sorted(set(positions[:n])) and (positions[n:] == 0).all()
    assert all(1 <= p <= length - 2 for p in positions[:n])
    assert out["masked_lm_ids"][row][:n].tolist() == word_ids[row][positions[:n]].tolist()
    untouched = np.setdiff1d(np.arange(64), positions[:n])
    assert (out["input_word_ids"][row][untouched] == word_ids[row][untouched]).all()
  assert out["masked_lm_positions"][0].tolist() != out["masked_lm_positions"][3].tolist()
  again = masking.mask_batch(batch, tf.constant([4, 9], tf.int64), spec)
  assert (again["input_word_ids"].numpy() == out["input_word_ids"]).all()


def test_mask_example_is_mask_batch_on_one_row_keyed_by_seed_and_index():
  special = vocab.special_token_ids(VOCAB)
  ids = [special.cls, *range(2000, 2062), special.sep]
  one = masking.mask_example(_example(ids), tf.constant(6, tf.int64), _spec(), 3)
  batch = masking.mask_batch({k: v[None] for k, v in _example(ids).items()},
                             tf.constant([3, 6], tf.int64), _spec())
  for name in ("input_word_ids", "masked_lm_positions", "masked_lm_ids", "masked_lm_weights"):
    assert one[name].numpy().tolist() == batch[name][0].numpy().tolist(), name


def test_bad_rates_are_config_errors():
  with pytest.raises(ValueError, match="mask_rate must be in"):
    _spec(mask_rate=0.0)
  with pytest.raises(ValueError, match="sum to <= 1"):
    _spec(mask_token_rate=0.9, random_token_rate=0.2)
