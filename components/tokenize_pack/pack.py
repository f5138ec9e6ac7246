"""SplitTrainEval and PackSequences: documents' ids into fixed-length `[CLS] ... [SEP]` rows.

Packing happens within a chunk (about a megabyte of text, a few hundred
512-token examples), so no shuffle of the corpus is needed and the only
padding is the tail of each chunk's last example. Inside a chunk, documents
are ordered by their content hash, which mixes neighbouring documents of a
file and is the same on every runner.

Three layouts:
- full_sentences (RoBERTa FULL-SENTENCES): the documents' ids joined with
  [SEP] between documents, cut every seq_length - 2 tokens;
- document: the same, but an example never crosses a document;
- sentence_pairs: BERT's original `[CLS] A [SEP] B [SEP]` pairs with
  next-sentence labels, built as create_pretraining_data.py builds them, with
  the random B segment drawn from the same chunk.
"""

import dataclasses

import apache_beam as beam
import numpy as np

from components.common.counts import STATS_TAG, Tally
from components.tokenize_pack.stats import COUNTERS
from components.tokenize_pack.tokenize import TokenizedChunk
from trainer import contract
from trainer import vocab as vocab_lib
from trainer.contract import INPUT_MASK, NEXT_SENTENCE_LABELS, TYPE_IDS, WORD_IDS


@dataclasses.dataclass
class PackedChunk:
  key: str
  split: str
  features: dict[str, np.ndarray]  # name -> [examples, ...]

  @property
  def num_examples(self) -> int:
    return len(self.features[WORD_IDS])


def validation_draw(doc_hashes: np.ndarray) -> np.ndarray:
  """A uniform number in [0, 1) per document, from hash bits that nothing else uses."""
  return (doc_hashes >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _rows(stream: np.ndarray, seq_length: int, special: contract.SpecialTokenIds):
  """Cuts one token stream into `[CLS] body [SEP]` rows; only the last row is padded."""
  body = seq_length - 2
  num_rows = -(-len(stream) // body)
  word_ids = np.full((num_rows, seq_length), special.pad, np.int32)
  padded = np.zeros(num_rows * body, np.int32)
  padded[:len(stream)] = stream
  word_ids[:, 1:-1] = padded.reshape(num_rows, body)
  lengths = np.full(num_rows, body, np.int64)
  lengths[-1] = len(stream) - (num_rows - 1) * body
  word_ids[:, 0] = special.cls
  word_ids[np.arange(num_rows), lengths + 1] = special.sep
  input_mask = (np.arange(seq_length) < (lengths + 2)[:, None]).astype(np.int32)
  word_ids[input_mask == 0] = special.pad
  return word_ids, input_mask


def pack_full_sentences(documents: list[np.ndarray], seq_length: int,
                        special: contract.SpecialTokenIds) -> tuple[np.ndarray, np.ndarray]:
  """(input_word_ids, input_mask) [examples, seq_length] of documents joined by [SEP]."""
  pieces = []
  for i, document in enumerate(documents):
    if i:
      pieces.append(np.array([special.sep], np.int32))
    pieces.append(document)
  return _rows(np.concatenate(pieces), seq_length, special)


def pack_documents(documents: list[np.ndarray], seq_length: int,
                   special: contract.SpecialTokenIds) -> tuple[np.ndarray, np.ndarray]:
  """(input_word_ids, input_mask) where each example holds tokens of one document only."""
  rows = [_rows(document, seq_length, special) for document in documents]
  return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])


def _truncate_pair(tokens_a: list[int], tokens_b: list[int], max_tokens: int,
                   rng: np.random.Generator) -> None:
  while len(tokens_a) + len(tokens_b) > max_tokens:
    longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    # As BERT does: from the front or the back, at random, to avoid biasing either end.
    if rng.random() < 0.5:
      del longer[0]
    else:
      longer.pop()


def make_sentence_pairs(documents: list[list[np.ndarray]], doc_hashes: np.ndarray,
                        seq_length: int, seed: int, short_seq_prob: float,
                        special: contract.SpecialTokenIds):
  """BERT's create_instances_from_document over a chunk's documents (lists of sentences).

  Returns (input_word_ids, input_mask, input_type_ids, next_sentence_labels
  [examples, 1], number of single-segment documents that had no other document
  to pair with). Each document's random choices come from a generator seeded by
  (seed, its content hash).
  """
  max_tokens = seq_length - 3
  pairs, unpaired = [], 0
  for d, document in enumerate(documents):
    rng = np.random.default_rng([seed, int(doc_hashes[d])])
    others = [i for i in range(len(documents)) if i != d]
    target = max_tokens
    if rng.random() < short_seq_prob:
      target = int(rng.integers(2, max_tokens + 1))
    current, current_length, i = [], 0, 0
    while i < len(document):
      current.append(document[i])
      current_length += len(document[i])
      if i == len(document) - 1 or current_length >= target:
        a_end = int(rng.integers(1, len(current))) if len(current) >= 2 else 1
        tokens_a = [t for s in current[:a_end] for t in s.tolist()]
        random_next = len(current) == 1 or rng.random() < 0.5
        if random_next and not others and len(current) == 1:
          unpaired += 1
        else:
          if random_next and others:
            other = documents[others[int(rng.integers(len(others)))]]
            tokens_b = []
            for sentence in other[int(rng.integers(len(other))):]:
              tokens_b.extend(sentence.tolist())
              if len(tokens_b) >= target - len(tokens_a):
                break
            # The segments not used as A go back to the document for the next pair.
            i -= len(current) - a_end
          else:
            random_next = False
            tokens_b = [t for s in current[a_end:] for t in s.tolist()]
          _truncate_pair(tokens_a, tokens_b, max_tokens, rng)
          pairs.append((tokens_a, tokens_b, int(random_next)))
        current, current_length = [], 0
      i += 1

  word_ids = np.full((len(pairs), seq_length), special.pad, np.int32)
  input_mask = np.zeros((len(pairs), seq_length), np.int32)
  type_ids = np.zeros((len(pairs), seq_length), np.int32)
  for row, (tokens_a, tokens_b, _) in enumerate(pairs):
    ids = [special.cls, *tokens_a, special.sep, *tokens_b, special.sep]
    word_ids[row, :len(ids)] = ids
    input_mask[row, :len(ids)] = 1
    type_ids[row, len(tokens_a) + 2:len(ids)] = 1
  labels = np.array([[label] for _, _, label in pairs], np.int32).reshape(-1, 1)
  return word_ids, input_mask, type_ids, labels, unpaired


class _SplitChunk(beam.DoFn):
  def __init__(self, validation_fraction: float):
    self._validation_fraction = validation_fraction

  def process(self, chunk: TokenizedChunk):
    tally = Tally(COUNTERS)
    is_validation = validation_draw(chunk.doc_hashes) < self._validation_fraction
    for split, members in zip(contract.SPLITS, (~is_validation, is_validation), strict=True):
      documents = np.flatnonzero(members)
      tally.add(f"documents_{split}", len(documents))
      if len(documents):
        yield split, chunk.select(documents)
    yield from tally.flush()


class SplitTrainEval(beam.PTransform):
  """TokenizedChunks -> ((split, TokenizedChunk) per non-empty split, stats), by document hash."""

  def __init__(self, validation_fraction: float):
    super().__init__()
    self._split = _SplitChunk(validation_fraction)

  def expand(self, chunks):
    outputs = chunks | "SplitByHash" >> beam.ParDo(self._split).with_outputs(
        STATS_TAG, main="split")
    return outputs.split, outputs[STATS_TAG]


class _PackChunk(beam.DoFn):
  def __init__(self, packing: str, seq_length: int, vocab_file: str, seed: int,
               short_seq_prob: float):
    self._packing = packing
    self._seq_length = seq_length
    self._vocab_file = vocab_file
    self._seed = seed
    self._short_seq_prob = short_seq_prob

  def setup(self):
    self._special = vocab_lib.special_token_ids(self._vocab_file)

  def process(self, element: tuple[str, TokenizedChunk]):
    split, chunk = element
    tally = Tally(COUNTERS)
    chunk = chunk.select(np.lexsort([np.arange(chunk.num_documents), chunk.doc_hashes]))
    documents = range(chunk.num_documents)
    if self._packing == "sentence_pairs":
      word_ids, input_mask, type_ids, labels, unpaired = make_sentence_pairs(
          [chunk.document_sentences(d) for d in documents], chunk.doc_hashes, self._seq_length,
          self._seed, self._short_seq_prob, self._special)
      features = {WORD_IDS: word_ids, INPUT_MASK: input_mask, TYPE_IDS: type_ids,
                  NEXT_SENTENCE_LABELS: labels}
      tally.add("next_sentence_unpaired", unpaired)
      tally.add("next_sentence_random", int(labels.sum()))
      tally.add("next_sentence_actual", int(len(labels) - labels.sum()))
    else:
      pack = pack_full_sentences if self._packing == "full_sentences" else pack_documents
      word_ids, input_mask = pack([chunk.document_tokens(d) for d in documents],
                                  self._seq_length, self._special)
      features = {WORD_IDS: word_ids, INPUT_MASK: input_mask,
                  TYPE_IDS: np.zeros_like(word_ids)}
    tally.add("positions_total", word_ids.size)
    tally.add("positions_real", int(input_mask.sum()))
    if len(word_ids):
      yield PackedChunk(chunk.key, split, features)
    yield from tally.flush()


class PackSequences(beam.PTransform):
  """(split, TokenizedChunk) -> (PackedChunks, stats)."""

  def __init__(self, packing: str, seq_length: int, vocab_file: str, seed: int,
               short_seq_prob: float = 0.1):
    super().__init__()
    self._pack = _PackChunk(packing, seq_length, vocab_file, seed, short_seq_prob)

  def expand(self, chunks):
    outputs = chunks | "Pack" >> beam.ParDo(self._pack).with_outputs(STATS_TAG, main="packed")
    return outputs.packed, outputs[STATS_TAG]
