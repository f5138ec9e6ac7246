"""Whole-pipeline runs on IMDB reviews: the readers of the output, exact counts, determinism."""

import filecmp
import json
import math

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from official.nlp.data import pretrain_dataloader

from components.common import corpus
from components.common.corpus import DocumentChunk
from components.common.tokenizer import make_tokenizer
from components.tokenize_pack import cli, pack, pipeline, stats, write
from components.tokenize_pack.config import PrepareDataConfig
from components.tokenize_pack.tokenize import TokenizeDocuments, document_hash
from tests.components.tokenize_pack.conftest import (
  IN_MEMORY,
  SEQ_LENGTH,
  VOCAB,
  imdb_reviews,
  prepare,
  write_documents,
)
from trainer import data, masking, vocab

MAX_PREDICTIONS = 20  # ceil(128 * 0.15)
UNK = vocab.special_token_ids(VOCAB).unk


def _tokenize(texts: list[str], vocab_file: str = VOCAB) -> list[list[int]]:
  return make_tokenizer(vocab.load_vocab(vocab_file), lower_case=True).tokenize(texts).to_list()


def _load_static(pattern: str, **options) -> list[dict[str, np.ndarray]]:
  params = pretrain_dataloader.BertPretrainDataConfig(
      input_path=pattern, seq_length=options.pop("seq_length", SEQ_LENGTH),
      max_predictions_per_seq=options.pop("max_predictions_per_seq", MAX_PREDICTIONS),
      use_v2_feature_names=True,
      file_type="tfrecord_compressed", is_training=False, global_batch_size=64,
      drop_remainder=False, **options)
  return [{k: v.numpy() for k, v in batch.items()}
          for batch in pretrain_dataloader.BertPretrainDataLoader(params).load()]


def _concat(batches, name):
  return np.concatenate([b[name] for b in batches])


def test_static_output_is_read_by_tf_models_bert_pretrain_loader(static_run):
  result, out = static_run
  special = vocab.special_token_ids(VOCAB)
  masked_weights = 0
  for split in ("train", "validation"):
    batches = _load_static(str(out / split / "examples-*.tfrecord.gz"),
                           use_next_sentence_label=False)
    word_ids = _concat(batches, "input_word_ids")
    assert len(word_ids) == result.stats["examples"][split] > 0
    assert sorted(batches[0]) == ["input_mask", "input_type_ids", "input_word_ids",
                                  "masked_lm_ids", "masked_lm_positions", "masked_lm_weights"]
    assert _concat(batches, "masked_lm_positions").shape == (len(word_ids), MAX_PREDICTIONS)
    assert (word_ids[:, 0] == special.cls).all()
    weights = _concat(batches, "masked_lm_weights")
    masked_weights += int(weights.sum())
    labels = _concat(batches, "masked_lm_ids")[weights == 1]
    assert not np.isin(labels, special.all_ids()).any()
    rows = np.repeat(np.arange(len(word_ids))[:, None], MAX_PREDICTIONS, axis=1)
    at_positions = word_ids[rows, _concat(batches, "masked_lm_positions")][weights == 1]
    assert 0.75 < np.mean(at_positions == special.mask) < 0.85  # BERT's 80%
  assert masked_weights == result.stats["masked_positions"]


def test_full_sentence_packing_counts_are_exact_and_above_99_percent(static_run, imdb_files):
  result, _ = static_run
  body = SEQ_LENGTH - 2
  examples = {"train": 0, "validation": 0}
  real_positions = 0
  for path in imdb_files:  # each file is one chunk; each split of it packs on its own
    reviews = path.read_text().split("\n\n")
    reviews = [r.strip() for r in reviews]
    lengths = np.array([len(ids) for ids in _tokenize(reviews)])
    draws = pack.validation_draw(np.array([document_hash((r,)) for r in reviews], np.uint64))
    for split, members in (("train", draws >= 0.1), ("validation", draws < 0.1)):
      stream = lengths[members].sum() + members.sum() - 1
      examples[split] += math.ceil(stream / body)
      real_positions += stream + 2 * math.ceil(stream / body)
  assert result.stats["examples"]["train"] == examples["train"]
  assert result.stats["examples"]["validation"] == examples["validation"]
  assert result.stats["packing"]["real_positions"] == real_positions
  assert result.stats["packing"]["positions"] == SEQ_LENGTH * sum(examples.values())
  assert result.stats["packing"]["efficiency"] >= 0.99


def test_stats_json_is_exact_and_matches_beam_metrics(static_run, imdb_files):
  result, out = static_run
  written = json.loads((out / "stats.json").read_text())
  assert written == result.stats
  assert {k: v for k, v in written.items() if k != "config"} == stats.nest(result.metric_counts)
  reviews = [r.strip() for path in imdb_files for r in path.read_text().split("\n\n")]
  tokens = _tokenize(reviews)
  documents = written["documents"]
  assert documents["read"] == documents["kept"] == 300
  assert documents["train"] + documents["validation"] == 300
  assert written["tokens"]["total"] == sum(len(t) for t in tokens)
  assert written["tokens"]["unk"] == sum(t.count(UNK) for t in tokens)
  assert written["bytes_read"] == sum(p.stat().st_size for p in imdb_files)
  assert written["files"] == {"read": 3, "skipped_binary": 0, "empty": 0}
  assert sorted(p.name for p in out.iterdir()) == [
      "data_spec.json", "stats.json", "train", "transform_fn", "transformed_metadata",
      "validation", "vocab.txt"]
  assert sorted(p.name for p in (out / "train").iterdir()) == [
      f"examples-0000{i}-of-00004.tfrecord.gz" for i in range(4)]


def test_transform_fn_gives_the_same_ids_as_the_beam_tokenizer(static_run):
  _, out = static_run
  texts = imdb_reviews(20, start=1000) + ["Café CRÈME, naïve ünïcödé!", "x" * 150 + " ok"]
  ragged = tft.TFTransformOutput(str(out)).transform_raw_features(
      {"text": tf.constant(texts)})["token_ids"]
  tft_ids = ragged.to_list()
  assert tft_ids[-1] == [UNK, vocab.load_vocab(VOCAB).index("ok")]  # an over-long word: [UNK]
  with beam.Pipeline(options=PipelineOptions(IN_MEMORY)) as p:
    chunk = DocumentChunk("000000-000000", [(t,) for t in texts])
    tokenized, _ = p | beam.Create([chunk]) | TokenizeDocuments(str(out / "vocab.txt"), True)
    per_document = tokenized | beam.Map(
        lambda c: [c.document_tokens(d).tolist() for d in range(c.num_documents)])
    assert_that(per_document, equal_to([tft_ids]))


def test_dynamic_output_is_read_by_the_trainer_loader(tmp_path, capsys):
  path = write_documents(tmp_path / "reviews.txt", imdb_reviews(150))
  out = tmp_path / "out"
  code = cli.main(["--input", str(path), "--output_dir", str(out), "--vocab", VOCAB,
                   "--seq_length", "64", "--masking", "dynamic", "--validation_fraction", "0",
                   "--num_shards", "2", "--nowrite_transform_fn", "--direct_num_workers=1"])
  assert code == 0
  printed = capsys.readouterr().out
  written = json.loads((out / "stats.json").read_text())
  assert f"examples: {written['examples']['train']} train, 0 validation" in printed
  records = list(tf.data.TFRecordDataset(sorted(map(str, (out / "train").iterdir())),
                                         compression_type="GZIP"))
  assert len(records) == written["examples"]["train"]
  assert sorted(tf.train.Example.FromString(records[0].numpy()).features.feature) == [
      "input_mask", "input_type_ids", "input_word_ids"]
  assert sorted(p.name for p in (out / "validation").iterdir()) == [
      "examples-00000-of-00002.tfrecord.gz", "examples-00001-of-00002.tfrecord.gz"]

  params = data.TokenDropPretrainDataConfig(
      input_path=str(out / "train" / "*"), seq_length=64, max_predictions_per_seq=10,
      masking="dynamic", use_next_sentence_label=False, is_training=False,
      file_type="tfrecord_compressed", global_batch_size=32, drop_remainder=False)
  spec = masking.MaskingSpec.from_vocab_file(str(out / "vocab.txt"), max_predictions_per_seq=10)
  batches = [{k: v.numpy() for k, v in b.items()}
             for b in data.TokenDropPretrainDataLoader(params, spec).load()]
  weights = _concat(batches, "masked_lm_weights")
  assert len(weights) == written["examples"]["train"]
  assert np.median(weights.sum(axis=1)) == 9  # round(0.15 * 62 maskable tokens)


def test_sentence_pairs_carry_next_sentence_labels(tmp_path):
  documents = [review.replace(". ", ".\n") for review in imdb_reviews(120)]
  path = write_documents(tmp_path / "sentences.txt", documents)
  result = prepare(tmp_path, [path], seq_length=64, packing="sentence_pairs",
                   validation_fraction=0.0, dupe_factor=2)
  batches = _load_static(str(tmp_path / "out" / "train" / "*"), seq_length=64,
                         max_predictions_per_seq=10, use_next_sentence_label=True)
  labels = _concat(batches, "next_sentence_labels")[:, 0]
  counts = result.stats["next_sentence"]
  assert len(labels) == result.stats["examples"]["train"] == 2 * (counts["random"] +
                                                                   counts["actual"])
  assert labels.sum() == 2 * counts["random"] and counts["unpaired"] == 0
  # As in BERT, an A segment that is a whole one-sentence run always gets a random B,
  # so a little more than half of the labels are 1.
  assert 0.5 < labels.mean() < 0.75
  type_ids = _concat(batches, "input_type_ids")
  assert (type_ids.max(axis=1) == 1).all()


# The options of the byte-identity runs below: 300 chunks, two duplicates each, whole words.
IDENTITY_OPTIONS = dict(chunk_chars=30_000, dupe_factor=2, whole_word_masking=True,
                        validation_fraction=0.2, num_shards=3)
EXAMPLE_FILES = [f"{split}/examples-0000{i}-of-00003.tfrecord.gz"
                 for split in ("train", "validation") for i in range(3)]
TWO_WORKERS = ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
               "--direct_num_workers=2"]


@pytest.fixture(scope="module")
def in_memory_run(tmp_path_factory, imdb_files):
  """(result, output dir) of IDENTITY_OPTIONS over the text files, DirectRunner in memory: the
  bytes every other way of running must reproduce."""
  root = tmp_path_factory.mktemp("in_memory")
  return prepare(root, imdb_files, **IDENTITY_OPTIONS), root / "out"


def _assert_same_files(first, second, names):
  assert all((first / name).stat().st_size > 0 for name in names)
  match, mismatch, errors = filecmp.cmpfiles(first, second, names, shallow=False)
  assert (mismatch, errors) == ([], []) and len(match) == len(names)


def test_output_bytes_do_not_depend_on_runner_mode_or_workers(tmp_path, imdb_files,
                                                              in_memory_run):
  prepare(tmp_path / "two_workers", imdb_files, pipeline_args=TWO_WORKERS, **IDENTITY_OPTIONS)
  _assert_same_files(in_memory_run[1], tmp_path / "two_workers" / "out",
                     ["stats.json", "vocab.txt", *EXAMPLE_FILES])


def _corpus_gen_records(tmp_path, files, chunk_chars: int) -> list[bytes]:
  """What CorpusGen writes for these files: corpus.corpus_examples of ReadDocuments' chunks."""
  with beam.Pipeline(options=PipelineOptions(IN_MEMORY)) as p:
    chunks, _ = p | corpus.ReadDocuments([str(f) for f in files], chunk_chars=chunk_chars)
    _ = (chunks
         | beam.FlatMap(corpus.corpus_examples)
         | beam.io.WriteToTFRecord(str(tmp_path / "records"), num_shards=1))
  (path,) = tmp_path.glob("records*")
  return list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())


def _write_gzip_records(directory, parts: list[list[bytes]]) -> None:
  directory.mkdir()
  for index, records in enumerate(parts):
    write.write_tfrecord_gzip(str(directory / f"data_tfrecord-{index:05d}.gz"), records)


def test_corpus_gen_records_in_any_order_give_prepare_datas_bytes(tmp_path, imdb_files,
                                                                  in_memory_run):
  # CorpusGen's writer deals the records to files of its choosing in an order of its own; the
  # examples must not change with that, nor with the runner (two worker processes here, which
  # read the files side by side), and must be prepare-data's from the text.
  records = _corpus_gen_records(tmp_path, imdb_files, IDENTITY_OPTIONS["chunk_chars"])
  assert len(records) == 300
  shuffled = [records[i] for i in np.random.default_rng(0).permutation(len(records))]
  _write_gzip_records(tmp_path / "shuffled", [shuffled[:10], shuffled[10:150], [],
                                              shuffled[150:]])
  run = prepare(tmp_path / "shuffled", [tmp_path / "shuffled" / "*"], pipeline_args=TWO_WORKERS,
                input_format="tfrecord_text", **IDENTITY_OPTIONS)
  assert run.stats["documents"]["read"] == in_memory_run[0].stats["documents"]["read"] == 300
  assert run.stats["files"] == {"read": 4, "skipped_binary": 0, "empty": 1}
  _assert_same_files(in_memory_run[1], tmp_path / "shuffled" / "out", EXAMPLE_FILES)


def test_learned_vocab_puts_special_tokens_first_and_covers_the_corpus(tmp_path, imdb_files):
  result = prepare(tmp_path, imdb_files, learn_vocab_size=2000, masking="dynamic",
                   validation_fraction=0.0)
  tokens = vocab.load_vocab(tmp_path / "out" / "vocab.txt")
  assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  assert 1500 < len(tokens) <= 2000 and len(set(tokens)) == len(tokens)
  assert result.stats["tokens"]["unk_rate"] < 0.001
  assert result.stats["config"]["learn_vocab_size"] == 2000
  ids = _tokenize(["the movie was great"], str(tmp_path / "out" / "vocab.txt"))[0]
  assert UNK not in ids and [tokens[i] for i in ids][:2] == ["the", "movie"]


def test_bad_input_is_counted_and_a_20_mb_document_is_split(tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  word = "x" * 199  # longer than a WordPiece word may be: one [UNK] each
  (inputs / "huge.txt").write_text(" ".join([word] * 100_000) + "\n")
  (inputs / "binary.bin").write_bytes(bytes(range(256)) * 40)
  (inputs / "empty.txt").write_bytes(b"")
  (inputs / "latin1.txt").write_bytes("Caf\u00e9 cr\u00e8me.\n\nGood film.\n".encode("latin-1"))
  result = prepare(tmp_path, [inputs / "*"], masking="dynamic", validation_fraction=0.0)
  s = result.stats
  assert s["files"] == {"read": 4, "skipped_binary": 1, "empty": 1}
  assert s["invalid_utf8_replacements"] == 2
  assert s["documents"]["read"] == 3
  assert s["documents"]["split"] == {"documents": 1, "pieces": 20}
  assert s["documents"]["kept"] == 22
  small = _tokenize(["Caf\ufffd cr\ufffdme.", "Good film."])
  assert s["tokens"]["total"] == 100_000 + sum(len(t) for t in small)
  assert s["tokens"]["unk"] == 100_000 + sum(t.count(UNK) for t in small)
  # Pieces of 5,000 words (999,999 characters) pair up into chunks of 1,000,000+:
  # 10 chunks of 5,000 + [SEP] + 5,000 tokens -> 80 examples each; latin1.txt makes 1.
  assert s["examples"]["train"] == 10 * math.ceil(10_001 / (SEQ_LENGTH - 2)) + 1


def test_a_corpus_without_usable_text_is_a_clear_error(tmp_path):
  (tmp_path / "empty.txt").write_bytes(b"\n\n")
  (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
  out = tmp_path / "out"
  # The command line (pipelines/cli.py) prints the UserError as one line.
  with pytest.raises(pipeline.NoUsableTextError, match="no usable text.*1 file.s. were binary"):
    cli.main(["--input", f"{tmp_path}/*.txt,{tmp_path}/*.png", "--output_dir", str(out),
              "--vocab", VOCAB, "--nowrite_transform_fn"])
  assert not (out / "train").exists() and not (out / ".staging").exists()
  with pytest.raises(pipeline.NoUsableTextError, match="1 empty, 1 binary"):
    prepare(tmp_path / "again", [tmp_path / "*.txt", tmp_path / "*.png"])


def test_bad_options_name_the_flag():
  with pytest.raises(ValueError, match="packing sentence_pairs .* use masking static"):
    PrepareDataConfig(input_patterns=("x",), output_dir="o", vocab_file=VOCAB,
                      packing="sentence_pairs", masking="dynamic")
  with pytest.raises(ValueError, match="set exactly one of vocab_file"):
    PrepareDataConfig(input_patterns=("x",), output_dir="o")
