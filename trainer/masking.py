"""BERT masking of packed sequences: one rule for dynamic masking (tf.data) and static (Beam).

`mask_batch` masks a whole batch in one pass of batched ops, drawing from one
stateless RNG stream keyed by a seed pair: the data pipeline keys it by (seed,
chunk), so a chunk is masked in a handful of ops. `mask_example` is the same
rule on a batch of one keyed by (seed, example index), the tf.data map of
dynamic masking: a run is reproducible while every epoch (a new index) sees a
new mask.

tensorflow_text's RandomItemSelector and MaskValuesChooser are not used: the
chooser draws from the stateful `tf.random.uniform` with no seed argument and
over the whole vocab (reserved tokens too), and the selector shuffles one row
at a time (map_fn) with a shuffle_fn that is not told the row, so neither can
be keyed per example or chunk to give the same mask on every runner.
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
    return cls(max_predictions_per_seq=max_predictions_per_seq, mask_token_id=special.mask,
               never_mask_ids=special.never_masked,
               replacement_ids=tuple(vocab.ordinary_token_ids(tokens)), **rates)


def mask_batch(features: dict[str, tf.Tensor], seed: tf.Tensor,
               spec: MaskingSpec) -> dict[str, tf.Tensor]:
  """Masks every row of a batch with BERT's 80/10/10 rule.

  Args:
    features: `input_word_ids` [batch, seq], `input_mask` [batch, seq],
      `input_type_ids` [batch, seq].
    seed: int64 [2], the stateless RNG key of the whole batch.
    spec: what to mask.

  Returns:
    The features with `input_word_ids` masked, plus `masked_lm_positions`,
    `masked_lm_ids` (int32) and `masked_lm_weights` (float32), each [batch,
    max_predictions_per_seq], padded with zeros (weight 0).
  """
  word_ids = tf.cast(features[contract.WORD_IDS], tf.int32)
  input_mask = tf.cast(features[contract.INPUT_MASK], tf.int32)
  shape = tf.shape(word_ids)
  num_predictions = spec.max_predictions_per_seq
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)

  never = tf.reduce_any(word_ids[..., None] == tf.constant(spec.never_mask_ids, tf.int32),
                        axis=-1)
  candidate = tf.logical_and(tf.logical_not(never), input_mask > 0)
  num_candidates = tf.reduce_sum(tf.cast(candidate, tf.int32), axis=1)
  num_masked = tf.minimum(
      num_predictions,
      tf.maximum(tf.cast(tf.round(spec.mask_rate * tf.cast(num_candidates, tf.float32)), tf.int32),
                 tf.minimum(num_candidates, 1)))

  # A random score per position; non-candidates sort last. top_k over a fixed
  # k keeps shapes static (TPU); only each row's first num_masked picks are used.
  scores = tf.where(candidate, tf.random.stateless_uniform(shape, seeds[0]), -1.0)
  k = tf.minimum(num_predictions, shape[1])
  picked = tf.math.top_k(scores, k=k, sorted=True).indices  # [batch, k]
  is_real = tf.range(k)[None, :] < num_masked[:, None]
  positions = tf.sort(tf.where(is_real, picked, tf.int32.max), axis=1)
  is_real = positions < tf.int32.max
  positions = tf.where(is_real, positions, 0)

  original = tf.gather(word_ids, positions, batch_dims=1)
  draws = [shape[0], k]
  roll = tf.random.stateless_uniform(draws, seeds[1])
  random_ids = tf.gather(tf.constant(spec.replacement_ids, tf.int32),
                         tf.random.stateless_uniform(draws, seeds[2], minval=0,
                                                     maxval=len(spec.replacement_ids),
                                                     dtype=tf.int32))
  replacement = tf.where(
      roll < spec.mask_token_rate, spec.mask_token_id,
      tf.where(roll < spec.mask_token_rate + spec.random_token_rate, random_ids, original))
  rows = tf.broadcast_to(tf.range(shape[0])[:, None], draws)
  masked_word_ids = tf.tensor_scatter_nd_update(
      word_ids, tf.boolean_mask(tf.stack([rows, positions], axis=-1), is_real),
      tf.boolean_mask(replacement, is_real))

  pad = [[0, 0], [0, num_predictions - k]]
  return dict(
      features,
      input_word_ids=masked_word_ids,
      input_mask=input_mask,
      input_type_ids=tf.cast(features[contract.TYPE_IDS], tf.int32),
      masked_lm_positions=tf.pad(positions, pad),
      masked_lm_ids=tf.pad(tf.where(is_real, original, 0), pad),
      masked_lm_weights=tf.pad(tf.cast(is_real, tf.float32), pad),
  )


def mask_example(features: dict[str, tf.Tensor], index: tf.Tensor, spec: MaskingSpec,
                 seed: int) -> dict[str, tf.Tensor]:
  """`mask_batch` on one example ([seq] features), keyed by (seed, its index in the stream)."""
  batch = {name: features[name][None] for name in contract.ENCODER_INPUTS}
  key = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
  masked = mask_batch(batch, key, spec)
  return dict(features, **{name: masked[name][0]
                           for name in (*contract.ENCODER_INPUTS, *contract.MASKED_LM_FEATURES)})
