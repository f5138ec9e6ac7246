"""ReadDocuments on tiny files: formats, gzip, and bad input, each with exact counts."""

import gzip
import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from components.tokenize_pack import read
from tests.components.tokenize_pack.conftest import IN_MEMORY, check_read, counts


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
  assert read.split_document(("aaaa", "bbbb", "cc"), max_chars=9) == [("aaaa", "bbbb"), ("cc",)]
  assert read.split_document(("one two three four",), max_chars=9) == [
      ("one two",), ("three",), ("four",)]
  assert read.split_document(("x" * 25,), max_chars=10) == [("x" * 10,), ("x" * 10,), ("x" * 5,)]


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
    chunks, _ = p | read.ReadDocuments([str(tmp_path / "empty.txt"), str(path)], chunk_chars=20)
    keyed = chunks | beam.Map(lambda c: (c.key, [d[0] for d in c.documents]))
    assert_that(keyed, equal_to([("000001-000000", ["document 0", "document 1"]),
                                 ("000001-000001", ["document 2", "document 3"]),
                                 ("000001-000002", ["document 4"])]))


def test_a_pattern_that_matches_nothing_names_itself(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothing-here"):
    read.list_input_files((str(tmp_path / "nothing-here*.txt"),))


def test_packaged_imdb_is_exported_as_text_files(tmp_path):
  pattern = read.export_packaged_corpus("imdb", str(tmp_path))
  files = read.list_input_files((pattern,))
  assert len(files) == read.PACKAGED_FILES
  documents = [d for f in files for d in open(f, encoding="utf-8").read().split("\n\n")]
  assert len(documents) == 25_000 and all(d.strip() and "\n" not in d.strip() for d in documents)
  with pytest.raises(ValueError, match="packaged:imdb"):
    read.export_packaged_corpus("wikipedia", str(tmp_path))
