"""MaskTokens: static masking with trainer.masking, a whole chunk in one call.

trainer.masking.mask_batch is the single source of truth for which positions
are candidates, how many are masked and the 80/10/10 replacement, for static
and dynamic masking alike. It runs here on all of a chunk's examples at once,
in batched ops (one tf.function call per chunk and dupe copy), keyed by
`chunk_seed`: the run's seed and a hash of (split, chunk key, dupe number). A
chunk's examples depend only on the input, so its masks are the same whichever
worker made it and in whatever order.

Whole-word masking lives here because trainer.masking has none: it picks
whole words (a token and the `##` pieces that follow it) at random up to the
prediction budget, then lets mask_batch mask exactly those positions
(mask_rate 1 over them), so the 80/10/10 rule is still trainer.masking's.
"""

import dataclasses
import hashlib

import apache_beam as beam
import numpy as np
import tensorflow as tf

from components.common.counts import STATS_TAG, Tally
from components.tokenize_pack.pack import PackedChunk
from components.tokenize_pack.stats import COUNTERS
from trainer import contract, masking
from trainer import vocab as vocab_lib
from trainer.contract import INPUT_MASK, MASKED_WEIGHTS, TYPE_IDS, WORD_IDS

MASKED_FEATURES = (*contract.ENCODER_INPUTS, *contract.MASKED_LM_FEATURES)
# Keeps the word-choice random stream apart from mask_batch's own.
_WHOLE_WORD_SEED_SALT = 0x77776D


def chunk_seed(seed: int, split: str, chunk_key: str, dupe: int) -> np.ndarray:
  """mask_batch's key for one dupe copy of a chunk: int64 [2], from the chunk's identity only."""
  digest = hashlib.blake2b(f"{split}/{chunk_key}/{dupe}".encode(), digest_size=8).digest()
  return np.array([seed, int.from_bytes(digest, "little") >> 1], np.int64)


def whole_word_mask_batch(features: dict[str, tf.Tensor], seed: tf.Tensor,
                          spec: masking.MaskingSpec,
                          is_continuation: tf.Tensor) -> dict[str, tf.Tensor]:
  """mask_batch over whole words: all pieces of a chosen word are masked together.

  In each row, words are taken in random order while their pieces fit the
  budget (mask_rate of the candidates, at most max_predictions_per_seq); the
  first word that does not fit ends the choice.
  """
  word_ids = tf.cast(features[WORD_IDS], tf.int32)
  input_mask = tf.cast(features[INPUT_MASK], tf.int32)
  num_rows, length = tf.shape(word_ids)[0], tf.shape(word_ids)[1]
  never = tf.reduce_any(word_ids[..., None] == tf.constant(spec.never_mask_ids, tf.int32),
                        axis=-1)
  candidate = tf.logical_and(tf.logical_not(never), input_mask > 0)
  follows_candidate = tf.concat([tf.zeros([num_rows, 1], tf.bool), candidate[:, :-1]], axis=1)
  continues = tf.logical_and(tf.gather(is_continuation, word_ids), follows_candidate)
  starts = tf.logical_and(candidate, tf.logical_not(continues))
  # Each position's word number in its row; `length` (no word) for non-candidates.
  word = tf.where(candidate, tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1, length)
  num_words = tf.reduce_sum(tf.cast(starts, tf.int32), axis=1)
  row_offsets = tf.range(num_rows)[:, None] * (length + 1)
  word_lengths = tf.reshape(
      tf.math.unsorted_segment_sum(tf.ones_like(word), word + row_offsets,
                                   num_rows * (length + 1)),
      [num_rows, length + 1])[:, :length]

  num_candidates = tf.reduce_sum(tf.cast(candidate, tf.int32), axis=1)
  budget = tf.minimum(
      spec.max_predictions_per_seq,
      tf.maximum(tf.cast(tf.round(spec.mask_rate * tf.cast(num_candidates, tf.float32)), tf.int32),
                 tf.minimum(num_candidates, 1)))
  word_seed = tf.stack([tf.bitwise.bitwise_xor(seed[0], _WHOLE_WORD_SEED_SALT), seed[1]])
  scores = tf.random.stateless_uniform([num_rows, length], word_seed)
  is_word = tf.range(length)[None, :] < num_words[:, None]
  order = tf.argsort(tf.where(is_word, scores, 2.0), axis=1, stable=True)
  fits = tf.logical_and(
      tf.cumsum(tf.gather(word_lengths, order, batch_dims=1), axis=1) <= budget[:, None],
      tf.gather(is_word, order, batch_dims=1))
  # `order` is a permutation of each row: its inverse puts each word's verdict back in place.
  chosen_word = tf.gather(fits, tf.argsort(order, axis=1), batch_dims=1)
  chosen = tf.logical_and(
      candidate, tf.gather(chosen_word, tf.minimum(word, length - 1), batch_dims=1))

  masked = masking.mask_batch(dict(features, input_mask=tf.cast(chosen, tf.int32)), seed,
                              dataclasses.replace(spec, mask_rate=1.0))
  return dict(masked, input_mask=input_mask)


def make_chunk_masker(spec: masking.MaskingSpec, seq_length: int,
                      is_continuation: np.ndarray | None = None):
  """A tf.function: (word_ids, input_mask, type_ids [n, seq], seed [2]) -> masked features."""
  row = tf.TensorSpec([None, seq_length], tf.int32)
  continuation = None if is_continuation is None else tf.constant(is_continuation, tf.bool)

  # No autograph: the code has no tensor-dependent Python control flow, and
  # converting it costs seconds per worker.
  @tf.function(input_signature=[row, row, row, tf.TensorSpec([2], tf.int64)], autograph=False)
  def mask_chunk(word_ids, input_mask, type_ids, seed):
    features = {WORD_IDS: word_ids, INPUT_MASK: input_mask, TYPE_IDS: type_ids}
    if continuation is None:
      return masking.mask_batch(features, seed, spec)
    return whole_word_mask_batch(features, seed, spec, continuation)

  return mask_chunk


class _MaskChunk(beam.DoFn):
  def __init__(self, vocab_file: str, seq_length: int, max_predictions_per_seq: int,
               masked_lm_prob: float, dupe_factor: int, whole_word_masking: bool, seed: int):
    self._vocab_file = vocab_file
    self._seq_length = seq_length
    self._max_predictions_per_seq = max_predictions_per_seq
    self._masked_lm_prob = masked_lm_prob
    self._dupe_factor = dupe_factor
    self._whole_word_masking = whole_word_masking
    self._seed = seed

  def setup(self):
    spec = masking.MaskingSpec.from_vocab_file(
        self._vocab_file, self._max_predictions_per_seq, mask_rate=self._masked_lm_prob)
    is_continuation = None
    if self._whole_word_masking:
      is_continuation = np.array([t.startswith("##") for t in vocab_lib.load_vocab(
          self._vocab_file)])
    self._mask_chunk = make_chunk_masker(spec, self._seq_length, is_continuation)

  def process(self, chunk: PackedChunk):
    tally = Tally(COUNTERS)
    copies = []
    for dupe in range(self._dupe_factor):
      masked = self._mask_chunk(chunk.features[WORD_IDS], chunk.features[INPUT_MASK],
                                chunk.features[TYPE_IDS],
                                chunk_seed(self._seed, chunk.split, chunk.key, dupe))
      copy = dict(chunk.features)
      copy.update({name: masked[name].numpy() for name in MASKED_FEATURES})
      copies.append(copy)
      tally.add("masked_positions", int(copy[MASKED_WEIGHTS].sum()))
    yield PackedChunk(chunk.key, chunk.split,
                      {name: np.concatenate([c[name] for c in copies]) for name in copies[0]})
    yield from tally.flush()


class MaskTokens(beam.PTransform):
  """PackedChunks -> (PackedChunks with the masked-LM features, dupe_factor copies; stats)."""

  def __init__(self, vocab_file: str, seq_length: int, max_predictions_per_seq: int,
               masked_lm_prob: float = 0.15, dupe_factor: int = 1,
               whole_word_masking: bool = False, seed: int = 0):
    super().__init__()
    self._mask = _MaskChunk(vocab_file, seq_length, max_predictions_per_seq, masked_lm_prob,
                            dupe_factor, whole_word_masking, seed)

  def expand(self, chunks):
    outputs = chunks | "Mask" >> beam.ParDo(self._mask).with_outputs(STATS_TAG, main="masked")
    return outputs.masked, outputs[STATS_TAG]
