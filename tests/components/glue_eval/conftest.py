"""Shared fixtures: a tiny random BERT exported as the trainer exports it, and GLUE-layout data.

The model uses the real bert-base-uncased vocab, so fixture sentences tokenize as real text
does; it is small enough (2 layers, hidden 16) to fine-tune in seconds.
"""

import pathlib

import numpy as np
import pytest
import tf_keras
from official.modeling import tf_utils
from official.nlp.configs import encoders
from official.nlp.modeling import models, networks

from trainer import export, vocab

VOCAB = str(vocab.bert_base_uncased_vocab_path())
ENCODER_CONFIG = encoders.BertEncoderConfig(
    vocab_size=len(vocab.load_vocab(VOCAB)), hidden_size=16, num_layers=2, num_attention_heads=2,
    intermediate_size=32, max_position_embeddings=64, type_vocab_size=2)

POSITIVE_WORDS = ("good", "great", "wonderful", "fine", "superb", "lovely")
NEGATIVE_WORDS = ("bad", "awful", "terrible", "poor", "dreadful", "boring")
SUBJECTS = ("the movie", "this film", "the plot", "the acting", "the story", "the ending",
            "the cast", "the music")


def export_tiny_model(output_dir: pathlib.Path, seed: int = 0) -> pathlib.Path:
  """A freshly initialized pretrainer exported with trainer.export; returns the export root."""
  tf_keras.utils.set_random_seed(seed)
  encoder = networks.BertEncoderV2(
      vocab_size=ENCODER_CONFIG.vocab_size, hidden_size=ENCODER_CONFIG.hidden_size,
      num_layers=ENCODER_CONFIG.num_layers,
      num_attention_heads=ENCODER_CONFIG.num_attention_heads,
      inner_dim=ENCODER_CONFIG.intermediate_size,
      inner_activation=tf_utils.get_activation(ENCODER_CONFIG.hidden_activation),
      max_sequence_length=ENCODER_CONFIG.max_position_embeddings,
      type_vocab_size=ENCODER_CONFIG.type_vocab_size)
  pretrainer = models.BertPretrainerV2(encoder_network=encoder,
                                       mlm_activation=tf_utils.get_activation("gelu"))
  ids = np.ones([1, 4], np.int32)
  pretrainer(dict(input_word_ids=ids, input_mask=ids, input_type_ids=0 * ids,
                  masked_lm_positions=np.array([[1]], np.int32)))
  export.export_tf2_checkpoint(pretrainer, ENCODER_CONFIG, VOCAB, str(output_dir / "tf2"))
  return output_dir


def sentiment_rows(count: int, offset: int = 0) -> list[tuple[str, int]]:
  """Sentences whose label is whether their adjective is positive: learnable in seconds."""
  rows = []
  for i in range(offset, offset + count):
    label = i % 2
    words = POSITIVE_WORDS if label else NEGATIVE_WORDS
    rows.append((f"{SUBJECTS[i // 2 % len(SUBJECTS)]} was {words[i // 2 % len(words)]}", label))
  return rows


def write_sst2_dir(root: pathlib.Path, train_rows: int, dev_rows: int) -> pathlib.Path:
  """ROOT/SST-2/{train,dev}.tsv in SST-2's layout."""
  task_dir = root / "SST-2"
  task_dir.mkdir(parents=True, exist_ok=True)
  for name, rows in (("train", sentiment_rows(train_rows)),
                     ("dev", sentiment_rows(dev_rows, offset=train_rows))):
    lines = ["sentence\tlabel"] + [f"{text}\t{label}" for text, label in rows]
    (task_dir / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
  return root


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> pathlib.Path:
  return export_tiny_model(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def sst2_dir(tmp_path_factory) -> pathlib.Path:
  return write_sst2_dir(tmp_path_factory.mktemp("glue"), train_rows=48, dev_rows=16)
