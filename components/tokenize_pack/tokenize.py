"""TokenizeDocuments: WordPiece ids for whole chunks at once, and the same graph for TFT.

The tokenizer is components.common's `make_tokenizer`. The Beam DoFn calls it
on a chunk's sentences in one batch; `make_preprocessing_fn` calls it inside
the TFT preprocessing_fn exported as the pipeline's transform_fn, so a model
served from that artifact sees exactly the ids the training data holds.
"""

import dataclasses
import hashlib

import apache_beam as beam
import numpy as np
import tensorflow as tf

from components.common.corpus import DocumentChunk
from components.common.counts import STATS_TAG, Tally
from components.common.tokenizer import make_tokenizer
from components.tokenize_pack.stats import COUNTERS
from trainer import contract
from trainer import vocab as vocab_lib
from trainer.contract import TEXT_FEATURE

TOKEN_IDS_FEATURE = "token_ids"


def make_preprocessing_fn(vocab_tokens: list[str], lower_case: bool):
  """A TFT preprocessing_fn: `text` [batch] string -> `token_ids` [batch, (tokens)] int64."""

  def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.RaggedTensor]:
    tokenizer = make_tokenizer(vocab_tokens, lower_case, token_out_type=tf.int64)
    return {TOKEN_IDS_FEATURE: tokenizer.tokenize(tf.reshape(inputs[TEXT_FEATURE], [-1]))}

  return preprocessing_fn


def document_hash(lines: tuple[str, ...]) -> int:
  """A document's identity: splits, order and masks are keyed by it, never by worker order."""
  digest = hashlib.blake2b("\n".join(lines).encode("utf-8"), digest_size=8)
  return int.from_bytes(digest.digest(), "little")


@dataclasses.dataclass
class TokenizedChunk:
  """A chunk's documents as ids: doc d has sentences sentence_splits[doc_splits[d]:...]."""
  key: str
  doc_hashes: np.ndarray  # uint64 [docs]
  doc_splits: np.ndarray  # int64 [docs + 1], over sentences
  sentence_splits: np.ndarray  # int64 [sentences + 1], over token_ids
  token_ids: np.ndarray  # int32 [tokens]

  @property
  def num_documents(self) -> int:
    return len(self.doc_hashes)

  def document_tokens(self, d: int) -> np.ndarray:
    return self.token_ids[self.sentence_splits[self.doc_splits[d]]:
                          self.sentence_splits[self.doc_splits[d + 1]]]

  def document_sentences(self, d: int) -> list[np.ndarray]:
    bounds = self.sentence_splits[self.doc_splits[d]:self.doc_splits[d + 1] + 1]
    return [self.token_ids[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]

  def select(self, documents: np.ndarray) -> "TokenizedChunk":
    """The chunk restricted to the given document indices, in that order."""
    first, last = self.doc_splits[documents], self.doc_splits[documents + 1]
    sentence_lengths = np.diff(self.sentence_splits)
    lengths = np.concatenate([sentence_lengths[a:b] for a, b in zip(first, last, strict=True)]
                             or [np.zeros(0, np.int64)])
    tokens = np.concatenate(
        [self.token_ids[a:b] for a, b in zip(self.sentence_splits[first],
                                             self.sentence_splits[last], strict=True)]
        or [np.zeros(0, np.int32)])
    return TokenizedChunk(
        key=self.key, doc_hashes=self.doc_hashes[documents],
        doc_splits=np.concatenate([[0], np.cumsum(last - first)]).astype(np.int64),
        sentence_splits=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        token_ids=tokens)


class _TokenizeChunks(beam.DoFn):
  """All sentences of a chunk in one FastBertTokenizer call (per-element TF calls are slow)."""

  def __init__(self, vocab_file: str, lower_case: bool):
    self._vocab_file = vocab_file
    self._lower_case = lower_case

  def setup(self):
    tokens = vocab_lib.load_vocab(self._vocab_file)
    self._unk = contract.SpecialTokenIds.from_vocab(tokens).unk
    self._tokenize = tf.function(make_tokenizer(tokens, self._lower_case).tokenize,
                                 input_signature=[tf.TensorSpec([None], tf.string)],
                                 autograph=False)
    self._document_tokens = beam.metrics.Metrics.distribution(
        "tokenize_pack", "tokens_per_document")

  def process(self, chunk: DocumentChunk):
    tally = Tally(COUNTERS)
    sentences = [line for document in chunk.documents for line in document]
    ragged = self._tokenize(tf.constant(sentences, tf.string))
    token_ids = ragged.flat_values.numpy()
    sentence_splits = ragged.row_splits.numpy().astype(np.int64)
    # Sentences that tokenize to nothing (control characters only) are dropped by
    # keeping only non-empty rows: their ids are already absent from token_ids.
    lengths = np.diff(sentence_splits)
    sentence_counts = np.array([len(d) for d in chunk.documents], np.int64)
    sentence_doc = np.repeat(np.arange(len(chunk.documents)), sentence_counts)
    nonempty = lengths > 0
    kept_counts = np.bincount(sentence_doc[nonempty], minlength=len(chunk.documents))
    keep = kept_counts > 0
    tally.add("documents_dropped_no_tokens", int(np.sum(~keep)))
    tally.add("documents_kept", int(np.sum(keep)))
    tally.add("tokens", len(token_ids))
    tally.add("unk_tokens", int(np.sum(token_ids == self._unk)))
    doc_tokens = np.bincount(sentence_doc, weights=lengths, minlength=len(chunk.documents))
    for count in doc_tokens[keep]:
      self._document_tokens.update(int(count))
    if keep.any():
      yield TokenizedChunk(
          key=chunk.key,
          doc_hashes=np.array([document_hash(d) for d, k in zip(chunk.documents, keep,
                                                                 strict=True) if k], np.uint64),
          doc_splits=np.concatenate([[0], np.cumsum(kept_counts[keep])]).astype(np.int64),
          sentence_splits=np.concatenate([[0], np.cumsum(lengths[nonempty])]).astype(np.int64),
          token_ids=token_ids.astype(np.int32))
    yield from tally.flush()


class TokenizeDocuments(beam.PTransform):
  """DocumentChunks -> (TokenizedChunks, stats)."""

  def __init__(self, vocab_file: str, lower_case: bool):
    super().__init__()
    self._tokenize = _TokenizeChunks(vocab_file, lower_case)

  def expand(self, chunks):
    outputs = chunks | "Tokenize" >> beam.ParDo(self._tokenize).with_outputs(
        STATS_TAG, main="tokenized")
    return outputs.tokenized, outputs[STATS_TAG]
