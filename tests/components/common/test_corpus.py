"""ReadDocuments on tiny files: formats, gzip, and bad input, each with exact counts."""

import gzip
import json
import pathlib

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from components.common import corpus
from components.common.counts import SumCounts

IN_MEMORY = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]


def counts(**nonzero: int) -> dict[str, int]:
  """Every reader counter, 0 unless given: tests compare whole dicts, so nothing moves unnoticed."""
  unknown = set(nonzero) - set(corpus.COUNTERS)
  assert not unknown, unknown
  return {name: nonzero.get(name, 0) for name in corpus.COUNTERS}


def check_read(files: list[pathlib.Path], expected_documents: list[tuple[str, ...]],
               expected_counts: dict[str, int], **read_options) -> None:
  """Runs ReadDocuments alone and asserts its documents (any order) and its exact counts."""
  with beam.Pipeline(options=PipelineOptions(IN_MEMORY)) as p:
    chunks, read_stats = p | corpus.ReadDocuments([str(f) for f in files], **read_options)
    documents = chunks | beam.FlatMap(lambda chunk: chunk.documents)
    summed = read_stats | beam.CombineGlobally(SumCounts(corpus.COUNTERS))
    assert_that(documents, equal_to(expected_documents), label="CheckDocuments")
    assert_that(summed, equal_to([expected_counts]), label="CheckCounts")


def test_text_blank_line_documents_one_sentence_per_line(tmp_path):
  # BERT's format: a sentence per line, blank (or whitespace-only) lines between
  # documents, CRLF line ends and runs of blank lines tolerated.
  raw = b"First doc, sentence one.\r\nSentence two.\r\n\r\n \t\n\nSecond doc.\n\n\nThird  doc\n"
  path = tmp_path / "bert.txt"
  path.write_bytes(raw)
  check_read([path],
             [("First doc, sentence one.", "Sentence two."), ("Second doc.",), ("Third  doc",)],
             counts(files_read=1, bytes_read=len(raw), documents_read=3))


def test_jsonl_with_a_configurable_field_and_every_drop_reason(tmp_path):
  lines = [
      json.dumps({"body": "A review.\nSecond paragraph.", "id": 1}),
      json.dumps({"body": "Another."}),
      json.dumps({"text": "wrong field"}),
      "{not json",
      json.dumps(["a", "list"]),
      json.dumps({"body": 42}),
      json.dumps({"body": "  \n "}),
      "",
      '{"body": "lone surrogate \\ud800 here"}',
  ]
  raw = ("\n".join(lines) + "\n").encode()
  path = tmp_path / "records.jsonl"
  path.write_bytes(raw)
  check_read([path],
             [("A review.", "Second paragraph."), ("Another.",), ("lone surrogate \ufffd here",)],
             counts(files_read=1, bytes_read=len(raw), documents_read=8,
                    documents_dropped_missing_text_field=1, documents_dropped_invalid_json=2,
                    documents_dropped_non_string_text=1, documents_dropped_empty_text=1,
                    invalid_utf8_replacements=1),
             input_format="jsonl", text_field="body")


def test_gzip_text_and_jsonl_are_decompressed(tmp_path):
  text = b"one\ntwo\n\nthree\n"
  jsonl = b'{"text": "four"}\n{"text": "five"}\n'
  with gzip.open(tmp_path / "docs.txt.gz", "wb") as f:
    f.write(text)
  with gzip.open(tmp_path / "docs.jsonl.gz", "wb") as f:
    f.write(jsonl)
  check_read([tmp_path / "docs.txt.gz"], [("one", "two"), ("three",)],
             counts(files_read=1, bytes_read=len(text), documents_read=2))
  check_read([tmp_path / "docs.jsonl.gz"], [("four",), ("five",)],
             counts(files_read=1, bytes_read=len(jsonl), documents_read=2), input_format="jsonl")


def _text_example(**features: list[bytes] | list[int]) -> bytes:
  feature = {}
  for name, values in features.items():
    if values and isinstance(values[0], int):
      feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    else:
      feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_tfrecords(path, records: list[bytes], gzip: bool) -> int:
  """Writes with TF's own writer; returns the framed size (what bytes_read counts)."""
  options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
  with tf.io.TFRecordWriter(str(path), options) as writer:
    for record in records:
      writer.write(record)
  return sum(len(record) + 16 for record in records)


def test_tfrecord_text_reads_example_text_features_and_counts_every_drop(tmp_path):
  records = [
      _text_example(text=[b"First sentence.\nSecond one.\n\n"], id=[7]),
      _text_example(text=[b"one value", b" another value "]),
      _text_example(body=[b"wrong feature"]),
      _text_example(text=[3]),
      _text_example(text=[b" \n "]),
      _text_example(text=[]),
      b"\x0a\xff not a protobuf",
      _text_example(text=[b"caf\xe9"]),
  ]
  size = _write_tfrecords(tmp_path / "corpus.gz", records, gzip=True)
  check_read([tmp_path / "corpus.gz"],
             [("First sentence.", "Second one."), ("one value", "another value"),
              ("caf\ufffd",)],
             counts(files_read=1, bytes_read=size, documents_read=8,
                    documents_dropped_missing_text_field=1, documents_dropped_non_string_text=1,
                    documents_dropped_empty_text=2, documents_dropped_invalid_example=1,
                    invalid_utf8_replacements=1),
             input_format="tfrecord_text")


def test_tfrecord_text_uncompressed_empty_and_custom_feature(tmp_path):
  size = _write_tfrecords(tmp_path / "plain.tfrecord", [_text_example(body=[b"kept"])],
                          gzip=False)
  _write_tfrecords(tmp_path / "empty.gz", [], gzip=True)
  check_read([tmp_path / "plain.tfrecord", tmp_path / "empty.gz"], [("kept",)],
             counts(files_read=2, files_empty=1, bytes_read=size, documents_read=1),
             input_format="tfrecord_text", text_field="body")


def test_a_text_file_read_as_tfrecords_is_a_clear_error(tmp_path):
  (tmp_path / "notes.txt").write_bytes(b"plain text, not TFRecords\n")
  with pytest.raises(ValueError, match="notes.txt is not a TFRecord file, or is corrupt"):
    check_read([tmp_path / "notes.txt"], [], counts(), input_format="tfrecord_text")
  size = _write_tfrecords(tmp_path / "cut.tfrecord", [_text_example(text=[b"x" * 100])], False)
  (tmp_path / "cut.tfrecord").write_bytes((tmp_path / "cut.tfrecord").read_bytes()[:size - 10])
  with pytest.raises(ValueError, match="truncated record"):
    check_read([tmp_path / "cut.tfrecord"], [], counts(), input_format="tfrecord_text")


def test_corpus_gen_records_come_back_as_their_chunks_and_cannot_be_mixed(tmp_path):
  chunks = [corpus.DocumentChunk("000000-000000", [("One.", "Two."), ("Three.",)]),
            corpus.DocumentChunk("000001-000000", [("Four.",)])]
  records = [record for chunk in chunks for record in corpus.corpus_examples(chunk)]
  _write_tfrecords(tmp_path / "b.gz", records[:1], gzip=True)
  _write_tfrecords(tmp_path / "a.gz", records[:0:-1], gzip=True)  # the other two, reversed
  with beam.Pipeline(options=PipelineOptions(IN_MEMORY)) as p:
    read, _ = p | corpus.ReadDocuments([str(tmp_path / "a.gz"), str(tmp_path / "b.gz")],
                                       input_format="tfrecord_text")
    assert_that(read | beam.Map(lambda chunk: (chunk.key, chunk.documents)),
                equal_to([(chunk.key, chunk.documents) for chunk in chunks]))
  _write_tfrecords(tmp_path / "c.gz", [_text_example(text=[b"no key"])], gzip=True)
  with pytest.raises(ValueError, match="c.gz holds a record without CorpusGen's chunk_key"):
    check_read([tmp_path / "a.gz", tmp_path / "c.gz"], [], counts(),
               input_format="tfrecord_text")


def test_binary_file_is_skipped_and_counted(tmp_path):
  (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 64)
  (tmp_path / "good.txt").write_bytes(b"kept text\n")
  check_read([tmp_path / "model.bin", tmp_path / "good.txt"], [("kept text",)],
             counts(files_read=2, files_skipped_binary=1, bytes_read=10, documents_read=1))


def test_invalid_utf8_is_replaced_and_each_replacement_counted(tmp_path):
  # \xe9 (Latin-1 e-acute), \xff and \xfe are invalid; the genuine U+FFFD (EF BF BD) is not.
  raw = b"caf\xe9 ok \xff\xfe end \xef\xbf\xbd real\n\nclean\n"
  path = tmp_path / "mixed.txt"
  path.write_bytes(raw)
  check_read([path], [("caf\ufffd ok \ufffd\ufffd end \ufffd real",), ("clean",)],
             counts(files_read=1, bytes_read=len(raw), documents_read=2,
                    invalid_utf8_replacements=3))


def test_a_gz_file_that_is_not_gzip_is_a_clear_error(tmp_path):
  (tmp_path / "plain.txt.gz").write_bytes(b"not compressed at all\n")
  with pytest.raises(ValueError, match="cannot read input file .*plain.txt.gz.* must be gzip"):
    check_read([tmp_path / "plain.txt.gz"], [], counts())


def test_empty_and_blank_files_are_counted(tmp_path):
  (tmp_path / "empty.txt").write_bytes(b"")
  (tmp_path / "blank.txt").write_bytes(b"\n \n\t\n")
  check_read([tmp_path / "empty.txt", tmp_path / "blank.txt"], [],
             counts(files_read=2, files_empty=2, bytes_read=5))


def test_split_document_cuts_at_lines_then_spaces_then_hard():
  assert corpus.split_document(("aaaa", "bbbb", "cc"), max_chars=9) == [("aaaa", "bbbb"), ("cc",)]
  assert corpus.split_document(("one two three four",), max_chars=9) == [
      ("one two",), ("three",), ("four",)]
  assert corpus.split_document(("x" * 25,), max_chars=10) == [("x" * 10,), ("x" * 10,), ("x" * 5,)]


def test_documents_longer_than_the_limit_are_split_not_dropped(tmp_path):
  path = tmp_path / "long.txt"
  path.write_bytes(b"short doc\n\n" + b"word " * 50 + b"\n")
  words = lambda n: " ".join(["word"] * n)  # noqa: E731
  check_read([path], [("short doc",), (words(20),), (words(20),), (words(10),)],
             counts(files_read=1, bytes_read=11 + 251, documents_read=2, documents_split=1,
                    documents_split_pieces=3),
             max_document_chars=100)


def test_chunks_follow_file_order_with_stable_keys(tmp_path):
  (tmp_path / "empty.txt").write_text("")
  path = tmp_path / "docs.txt"
  path.write_text("\n\n".join(f"document {i}" for i in range(5)) + "\n")
  with beam.Pipeline(options=PipelineOptions(IN_MEMORY)) as p:
    chunks, _ = p | corpus.ReadDocuments([str(tmp_path / "empty.txt"), str(path)], chunk_chars=20)
    keyed = chunks | beam.Map(lambda c: (c.key, [d[0] for d in c.documents]))
    assert_that(keyed, equal_to([("000001-000000", ["document 0", "document 1"]),
                                 ("000001-000001", ["document 2", "document 3"]),
                                 ("000001-000002", ["document 4"])]))


def test_a_pattern_that_matches_nothing_names_itself(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothing-here"):
    corpus.list_input_files((str(tmp_path / "nothing-here*.txt"),))


def test_packaged_imdb_is_exported_as_text_files(tmp_path):
  pattern = corpus.export_packaged_corpus("imdb", str(tmp_path))
  files = corpus.list_input_files((pattern,))
  assert len(files) == corpus.PACKAGED_FILES
  documents = [d for f in files for d in open(f, encoding="utf-8").read().split("\n\n")]
  assert len(documents) == 25_000 and all(d.strip() and "\n" not in d.strip() for d in documents)
  with pytest.raises(ValueError, match="packaged:imdb"):
    corpus.export_packaged_corpus("wikipedia", str(tmp_path))
