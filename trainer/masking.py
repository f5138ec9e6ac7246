"""Dynamic BERT masking of packed, unmasked sequences, as a tf.data map.

Each example is masked with a stateless RNG seeded by (seed, example index), so
a run is reproducible while every epoch (a new index) sees a new mask.
"""

import dataclasses

import tensorflow as tf

from trainer import contract, vocab


@dataclasses.dataclass(frozen=True)
class MaskingSpec:
  """What to mask and with what; ids come from the vocab file."""
  max_predictions_per_seq: int
  mask_token_id: int
  never_mask_ids: tuple[int, ...]
  replacement_ids: tuple[int, ...]
  mask_rate: float = 0.15
  mask_token_rate: float = 0.8
  random_token_rate: float = 0.1

  def __post_init__(self):
    if self.max_predictions_per_seq < 1:
      raise ValueError("max_predictions_per_seq must be at least 1, got "
                       f"{self.max_predictions_per_seq}")
    if not 0.0 < self.mask_rate <= 1.0:
      raise ValueError(f"mask_rate must be in (0, 1], got {self.mask_rate}")
    if self.mask_token_rate < 0 or self.random_token_rate < 0 or (
        self.mask_token_rate + self.random_token_rate > 1.0):
      raise ValueError("mask_token_rate and random_token_rate must be >= 0 and sum to <= 1, got "
                       f"{self.mask_token_rate} and {self.random_token_rate}")
    if not self.replacement_ids:
      raise ValueError("the vocab has no ordinary (non-reserved) token to sample replacements from")

  @classmethod
  def from_vocab_file(cls, path: str, max_predictions_per_seq: int, **rates) -> "MaskingSpec":
    tokens = vocab.load_vocab(path)
    special = contract.SpecialTokenIds.from_vocab(tokens, source=f"vocab file {path!r}")
    # [UNK] may be masked (it is a real input position); the markers may not.
    return cls(max_predictions_per_seq=max_predictions_per_seq, mask_token_id=special.mask,
               never_mask_ids=(special.pad, special.cls, special.sep, special.mask),
               replacement_ids=tuple(vocab.ordinary_token_ids(tokens)), **rates)


def mask_example(features: dict[str, tf.Tensor], index: tf.Tensor, spec: MaskingSpec,
                 seed: int) -> dict[str, tf.Tensor]:
  """Masks one example with BERT's 80/10/10 rule.

  Args:
    features: `input_word_ids` [seq], `input_mask` [seq], `input_type_ids` [seq].
    index: the example's position in the stream (int64 scalar), part of the seed.
    spec: what to mask.
    seed: the run's masking seed.

  Returns:
    The features with `input_word_ids` masked, plus `masked_lm_positions`,
    `masked_lm_ids` (int32) and `masked_lm_weights` (float32), each
    [max_predictions_per_seq], padded with zeros (weight 0).
  """
  word_ids = tf.cast(features["input_word_ids"], tf.int32)
  input_mask = tf.cast(features["input_mask"], tf.int32)
  num_predictions = spec.max_predictions_per_seq
  seeds = tf.random.experimental.stateless_split(
      tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)]), num=3)

  never = tf.reduce_any(word_ids[:, None] == tf.constant(spec.never_mask_ids, tf.int32), axis=1)
  candidate = tf.logical_and(tf.logical_not(never), input_mask > 0)
  num_candidates = tf.reduce_sum(tf.cast(candidate, tf.int32))
  num_masked = tf.minimum(
      num_predictions,
      tf.maximum(tf.cast(tf.round(spec.mask_rate * tf.cast(num_candidates, tf.float32)), tf.int32),
                 tf.minimum(num_candidates, 1)))

  # A random score per position; non-candidates sort last. top_k over a fixed
  # k keeps shapes static (TPU); only the first num_masked picks are used.
  scores = tf.where(candidate, tf.random.stateless_uniform(tf.shape(word_ids), seeds[0]), -1.0)
  k = tf.minimum(num_predictions, tf.shape(word_ids)[0])
  picked = tf.math.top_k(scores, k=k, sorted=True).indices
  is_real = tf.range(k) < num_masked
  positions = tf.sort(tf.where(is_real, picked, tf.int32.max))
  is_real = positions < tf.int32.max
  positions = tf.where(is_real, positions, 0)

  original = tf.gather(word_ids, positions)
  roll = tf.random.stateless_uniform([k], seeds[1])
  random_ids = tf.gather(tf.constant(spec.replacement_ids, tf.int32),
                         tf.random.stateless_uniform([k], seeds[2], minval=0,
                                                     maxval=len(spec.replacement_ids),
                                                     dtype=tf.int32))
  replacement = tf.where(
      roll < spec.mask_token_rate, spec.mask_token_id,
      tf.where(roll < spec.mask_token_rate + spec.random_token_rate, random_ids, original))
  real_positions = tf.boolean_mask(positions, is_real)
  masked_word_ids = tf.tensor_scatter_nd_update(
      word_ids, real_positions[:, None], tf.boolean_mask(replacement, is_real))

  pad = num_predictions - k
  weights = tf.cast(is_real, tf.float32)
  return dict(
      features,
      input_word_ids=masked_word_ids,
      input_mask=input_mask,
      input_type_ids=tf.cast(features["input_type_ids"], tf.int32),
      masked_lm_positions=tf.pad(positions, [[0, pad]]),
      masked_lm_ids=tf.pad(tf.where(is_real, original, 0), [[0, pad]]),
      masked_lm_weights=tf.pad(weights, [[0, pad]]),
  )
