"""Examples -> BERT inputs: [CLS] a [SEP] (b [SEP]), with the pretraining tokenizer and vocab.

The tokenizer is components.common's make_tokenizer (the one TokenizePack uses) over the
exported vocab.txt, so fine-tuning sees the ids pretraining saw; special ids come from that vocab.
"""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from components.common.tokenizer import make_tokenizer
from components.glue_eval.data import Example
from trainer import contract
from trainer import vocab as vocab_lib

# Texts tokenized per TF call: large enough to amortize the call, small enough for memory.
_TOKENIZE_BATCH = 2048


def truncated_lengths(length_a: int, length_b: int, budget: int) -> tuple[int, int]:
  """BERT's longest-first truncation of a pair, in closed form.

  BERT drops the last token of the longer text (of b on a tie) until the pair fits. That
  leaves a short text whole, and splits the budget evenly between two long ones, a taking
  the odd token.
  """
  if length_a + length_b <= budget:
    return length_a, length_b
  kept_a = min(length_a, max(budget - length_b, (budget + 1) // 2))
  return kept_a, budget - kept_a


class PairEncoder:
  """Turns examples into int32 input_word_ids, input_mask and input_type_ids."""

  def __init__(self, vocab_file: str, max_seq_length: int, lower_case: bool = True):
    if max_seq_length < 4:
      raise ValueError(f"max_seq_length {max_seq_length} is too short; a pair needs [CLS], "
                       "two [SEP] and at least one token")
    tokens = vocab_lib.load_vocab(vocab_file)
    self.special = contract.SpecialTokenIds.from_vocab(tokens, source=f"vocab file "
                                                        f"{str(vocab_file)!r}")
    self.max_seq_length = max_seq_length
    self._tokenize = tf.function(make_tokenizer(tokens, lower_case).tokenize,
                                 input_signature=[tf.TensorSpec([None], tf.string)],
                                 autograph=False)

  def _token_ids(self, texts: list[str]) -> list[np.ndarray]:
    ids = []
    for start in range(0, len(texts), _TOKENIZE_BATCH):
      ragged = self._tokenize(tf.constant(texts[start:start + _TOKENIZE_BATCH], tf.string))
      values, splits = ragged.flat_values.numpy(), ragged.row_splits.numpy()
      ids += [values[a:b] for a, b in zip(splits[:-1], splits[1:], strict=True)]
    return ids

  def encode(self, examples: Sequence[Example]) -> dict[str, np.ndarray]:
    """Arrays [examples, length], length being the longest encoded example up to max_seq_length.

    Padding only to the longest example keeps short-sentence tasks cheap; the encoder takes
    any length up to its max_position_embeddings.
    """
    if not examples:
      raise ValueError("no examples to encode")
    ids_a = self._token_ids([e.text_a for e in examples])
    is_pair = [e.text_b is not None for e in examples]
    ids_b = iter(self._token_ids([e.text_b for e in examples if e.text_b is not None]))
    rows = []
    for a, pair in zip(ids_a, is_pair, strict=True):
      if pair:
        b = next(ids_b)
        kept_a, kept_b = truncated_lengths(len(a), len(b), self.max_seq_length - 3)
        rows.append((a[:kept_a], b[:kept_b]))
      else:
        rows.append((a[:self.max_seq_length - 2], None))
    lengths = [len(a) + 2 + (len(b) + 1 if b is not None else 0) for a, b in rows]
    width = max(lengths)
    word_ids = np.full([len(rows), width], self.special.pad, np.int32)
    type_ids = np.zeros([len(rows), width], np.int32)
    for i, (a, b) in enumerate(rows):
      first = [self.special.cls, *a, self.special.sep]
      second = [*b, self.special.sep] if b is not None else []
      word_ids[i, :len(first) + len(second)] = first + second
      type_ids[i, len(first):len(first) + len(second)] = 1
    mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype(np.int32)
    return {contract.WORD_IDS: word_ids, contract.INPUT_MASK: mask, contract.TYPE_IDS: type_ids}
