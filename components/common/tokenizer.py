"""make_tokenizer: the one place the WordPiece tokenizer is built, for data and evaluation alike."""

import tensorflow as tf
import tensorflow_text as tf_text

from trainer import contract


def make_tokenizer(vocab_tokens: list[str], lower_case: bool,
                   token_out_type: tf.DType = tf.int32) -> tf_text.FastBertTokenizer:
  """BERT's end-to-end tokenizer (split on whitespace and punctuation, then WordPiece)."""
  special = contract.SpecialTokenIds.from_vocab(vocab_tokens)
  return tf_text.FastBertTokenizer(vocab=vocab_tokens, token_out_type=token_out_type,
                                   unknown_token=vocab_tokens[special.unk],
                                   lower_case_nfd_strip_accents=lower_case)
