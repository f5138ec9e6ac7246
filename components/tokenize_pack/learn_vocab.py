"""LearnVocab: a WordPiece vocabulary learned from the corpus, as tensorflow_text's tool does.

Words are split the way BERT's tokenizer splits them (tensorflow_text's
BasicTokenizer) and counted on Beam; the counts are then handed, in a fixed
order, to tensorflow_text's wordpiece learner, which puts the reserved
(special) tokens first.
"""

import apache_beam as beam
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from tensorflow_text.python.ops import bert_tokenizer
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

from components.common.corpus import DocumentChunk

# The learner's own default: only the most frequent words enter the search.
MAX_INPUT_WORDS = 5_000_000


class _CountChunkWords(beam.DoFn):
  def __init__(self, lower_case: bool):
    self._lower_case = lower_case

  def setup(self):
    self._split = tf.function(bert_tokenizer.BasicTokenizer(lower_case=self._lower_case).tokenize,
                              input_signature=[tf.TensorSpec([None], tf.string)],
                              autograph=False)

  def process(self, chunk: DocumentChunk):
    sentences = [line for document in chunk.documents for line in document]
    words, counts = tf.unique_with_counts(self._split(tf.constant(sentences)).flat_values)[::2]
    for word, count in zip(words.numpy(), counts.numpy(), strict=True):
      yield word.decode("utf-8", errors="replace"), int(count)


def learn_from_counts(word_counts: list[tuple[str, int]], vocab_size: int,
                      special_tokens: tuple[str, ...]) -> list[str]:
  # Most frequent first, ties by word: the learner's result then depends only on the counts.
  ordered = sorted(word_counts, key=lambda item: (-item[1], item[0]))
  if not ordered:
    raise ValueError("the corpus has no words to learn a vocabulary from; check --input and "
                     "--format, or pass --vocab")
  return learner.learn(ordered, vocab_size=vocab_size, reserved_tokens=list(special_tokens),
                       max_input_tokens=MAX_INPUT_WORDS)


class _WriteVocab(beam.DoFn):
  def __init__(self, path: str, vocab_size: int, special_tokens: tuple[str, ...]):
    self._path = path
    self._vocab_size = vocab_size
    self._special_tokens = special_tokens

  def process(self, word_counts: list[tuple[str, int]]):
    tokens = learn_from_counts(word_counts, self._vocab_size, self._special_tokens)
    with FileSystems.create(self._path) as f:
      f.write("".join(f"{token}\n" for token in tokens).encode("utf-8"))
    yield len(tokens)


class LearnVocab(beam.PTransform):
  """DocumentChunks -> vocab.txt at `path` (special tokens first); outputs its size."""

  def __init__(self, path: str, vocab_size: int, special_tokens: tuple[str, ...],
               lower_case: bool):
    super().__init__()
    self._count = _CountChunkWords(lower_case)
    self._write = _WriteVocab(path, vocab_size, special_tokens)

  def expand(self, chunks):
    return (chunks
            | "CountWords" >> beam.ParDo(self._count)
            | "SumCounts" >> beam.CombinePerKey(sum)
            | "MostFrequent" >> beam.combiners.Top.Of(MAX_INPUT_WORDS,
                                                     key=lambda wc: (wc[1], wc[0]))
            | "LearnAndWrite" >> beam.ParDo(self._write))
