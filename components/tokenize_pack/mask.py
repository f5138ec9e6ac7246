"""MaskTokens: static masking with trainer.masking, deterministic per example.

trainer.masking.mask_example is the single source of truth for which
positions are candidates, how many are masked and the 80/10/10 replacement.
It runs here inside one tf.function per chunk (tf.map_fn over the chunk's
examples). Its `index` argument is the example's content hash plus the dupe
number, so a mask depends on what the example holds, never on which worker
made it or in what order.

Whole-word masking lives here because trainer.masking has none: it picks
whole words (a token and the `##` pieces that follow it) at random up to the
prediction budget, then lets mask_example mask exactly those positions
(mask_rate 1 over them), so the 80/10/10 rule is still trainer.masking's.
"""

import dataclasses
import hashlib

import apache_beam as beam
import numpy as np
import tensorflow as tf

from components.tokenize_pack.pack import INPUT_MASK, TYPE_IDS, WORD_IDS, PackedChunk
from components.tokenize_pack.stats import STATS_TAG, Tally
from trainer import masking
from trainer import vocab as vocab_lib

MASKED_FEATURES = {WORD_IDS: tf.int32, INPUT_MASK: tf.int32, TYPE_IDS: tf.int32,
                   "masked_lm_positions": tf.int32, "masked_lm_ids": tf.int32,
                   "masked_lm_weights": tf.float32}
# Keeps the word-choice random stream apart from mask_example's own.
_WHOLE_WORD_SEED_SALT = 0x77776D


def example_indices(word_ids: np.ndarray, dupe: int) -> np.ndarray:
  """One non-negative int64 per row from its ids and the dupe number: mask_example's `index`."""
  suffix = dupe.to_bytes(4, "little")
  return np.array([int.from_bytes(hashlib.blake2b(row.tobytes() + suffix, digest_size=8).digest(),
                                  "little") >> 1 for row in word_ids.astype(np.int32)], np.int64)


def whole_word_mask_example(features: dict[str, tf.Tensor], index: tf.Tensor,
                            spec: masking.MaskingSpec, seed: int,
                            is_continuation: tf.Tensor) -> dict[str, tf.Tensor]:
  """mask_example over whole words: all pieces of a chosen word are masked together.

  Words are taken in random order while their pieces fit the budget
  (mask_rate of the candidates, at most max_predictions_per_seq); the first
  word that does not fit ends the choice.
  """
  word_ids = tf.cast(features[WORD_IDS], tf.int32)
  input_mask = tf.cast(features[INPUT_MASK], tf.int32)
  length = tf.shape(word_ids)[0]
  never = tf.reduce_any(word_ids[:, None] == tf.constant(spec.never_mask_ids, tf.int32), axis=1)
  candidate = tf.logical_and(tf.logical_not(never), input_mask > 0)
  follows_candidate = tf.concat([[False], candidate[:-1]], axis=0)
  continues = tf.logical_and(tf.gather(is_continuation, word_ids), follows_candidate)
  starts = tf.logical_and(candidate, tf.logical_not(continues))
  word = tf.where(candidate, tf.cumsum(tf.cast(starts, tf.int32)) - 1, length)
  num_words = tf.reduce_sum(tf.cast(starts, tf.int32))
  word_lengths = tf.math.unsorted_segment_sum(tf.ones_like(word), word, length + 1)[:length]

  num_candidates = tf.reduce_sum(tf.cast(candidate, tf.int32))
  budget = tf.minimum(
      spec.max_predictions_per_seq,
      tf.maximum(tf.cast(tf.round(spec.mask_rate * tf.cast(num_candidates, tf.float32)), tf.int32),
                 tf.minimum(num_candidates, 1)))
  scores = tf.random.stateless_uniform(
      [length], tf.stack([tf.constant(seed ^ _WHOLE_WORD_SEED_SALT, tf.int64),
                          tf.cast(index, tf.int64)]))
  is_word = tf.range(length) < num_words
  order = tf.argsort(tf.where(is_word, scores, 2.0), stable=True)
  fits = tf.logical_and(tf.cumsum(tf.gather(word_lengths, order)) <= budget,
                        tf.gather(is_word, order))
  chosen_word = tf.scatter_nd(order[:, None], fits, [length])
  chosen = tf.logical_and(candidate, tf.gather(chosen_word, tf.minimum(word, length - 1)))

  masked = masking.mask_example(dict(features, input_mask=tf.cast(chosen, tf.int32)), index,
                                dataclasses.replace(spec, mask_rate=1.0), seed)
  return dict(masked, input_mask=input_mask)


def make_batch_masker(spec: masking.MaskingSpec, seed: int, seq_length: int,
                      is_continuation: np.ndarray | None = None):
  """A tf.function: (word_ids, input_mask, type_ids [n, seq], index [n]) -> masked features."""
  row = tf.TensorSpec([None, seq_length], tf.int32)
  continuation = None if is_continuation is None else tf.constant(is_continuation, tf.bool)

  def mask_one(args):
    word_ids, input_mask, type_ids, index = args
    features = {WORD_IDS: word_ids, INPUT_MASK: input_mask, TYPE_IDS: type_ids}
    if continuation is None:
      return masking.mask_example(features, index, spec, seed)
    return whole_word_mask_example(features, index, spec, seed, continuation)

  # No autograph: the code has no tensor-dependent Python control flow, and
  # converting it costs seconds per worker.
  @tf.function(input_signature=[row, row, row, tf.TensorSpec([None], tf.int64)], autograph=False)
  def mask_batch(word_ids, input_mask, type_ids, index):
    return tf.map_fn(mask_one, (word_ids, input_mask, type_ids, index),
                     fn_output_signature=MASKED_FEATURES, parallel_iterations=32)

  return mask_batch


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
    self._mask_batch = make_batch_masker(spec, self._seed, self._seq_length, is_continuation)

  def process(self, chunk: PackedChunk):
    tally = Tally()
    copies = []
    for dupe in range(self._dupe_factor):
      masked = self._mask_batch(chunk.features[WORD_IDS], chunk.features[INPUT_MASK],
                                chunk.features[TYPE_IDS],
                                example_indices(chunk.features[WORD_IDS], dupe))
      copy = dict(chunk.features)
      copy.update({name: tensor.numpy() for name, tensor in masked.items()})
      copies.append(copy)
      tally.add("masked_positions", int(copy["masked_lm_weights"].sum()))
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
