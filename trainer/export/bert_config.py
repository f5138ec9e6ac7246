"""Original BERT's bert_config.json <-> Model Garden's BertEncoderConfig, and the plain encoder.

bert_config.json keeps original BERT's field names with Model Garden's activation
name, so a plain BertEncoderV2 built from it restores the TF2 checkpoint.
"""

import json

import tensorflow as tf
import tf_keras
from official.nlp.configs import encoders
from official.nlp.modeling import networks

from trainer import contract, vocab
from trainer.export import activations, variables

# Original BERT's bert_config.json names: (its field, BertEncoderConfig's field).
BERT_CONFIG_FIELDS = (
    ("vocab_size", "vocab_size"),
    ("hidden_size", "hidden_size"),
    ("num_hidden_layers", "num_layers"),
    ("num_attention_heads", "num_attention_heads"),
    ("intermediate_size", "intermediate_size"),
    ("hidden_act", "hidden_activation"),
    ("hidden_dropout_prob", "dropout_rate"),
    ("attention_probs_dropout_prob", "attention_dropout_rate"),
    ("max_position_embeddings", "max_position_embeddings"),
    ("type_vocab_size", "type_vocab_size"),
    ("initializer_range", "initializer_range"),
)

AnyEncoderConfig = encoders.EncoderConfig | encoders.BertEncoderConfig


def bert_encoder_config(encoder_config: AnyEncoderConfig) -> encoders.BertEncoderConfig:
  """The BertEncoderConfig itself, from an EncoderConfig oneof holding one."""
  if isinstance(encoder_config, encoders.EncoderConfig):
    encoder_config = encoder_config.get()
  if not isinstance(encoder_config, encoders.BertEncoderConfig):
    raise TypeError(f"expected a BertEncoderConfig (or an EncoderConfig holding one), got "
                    f"{type(encoder_config).__name__}")
  return encoder_config


def bert_config_from_encoder_config(encoder_config: AnyEncoderConfig) -> dict:
  """bert_config.json's content: original BERT's field names, Model Garden's activation name."""
  cfg = bert_encoder_config(encoder_config)
  config = {bert_name: getattr(cfg, field) for bert_name, field in BERT_CONFIG_FIELDS}
  # Fields original BERT lacks, written only when they differ from its architecture.
  if cfg.embedding_size is not None and cfg.embedding_size != cfg.hidden_size:
    config["embedding_size"] = cfg.embedding_size
  if cfg.norm_first:
    config["norm_first"] = True
  return config


def encoder_config_from_fields(config: dict, source: str, hidden_activation: str
                               ) -> encoders.BertEncoderConfig:
  """A BertEncoderConfig from original BERT's field names, which Hugging Face shares."""
  missing = [name for name, _ in BERT_CONFIG_FIELDS if name not in config]
  if missing:
    raise ValueError(f"{source} lacks {missing}; a BERT config needs all of "
                     f"{[name for name, _ in BERT_CONFIG_FIELDS]}")
  fields = {field: config[bert_name] for bert_name, field in BERT_CONFIG_FIELDS}
  fields["hidden_activation"] = hidden_activation
  return encoders.BertEncoderConfig(embedding_size=config.get("embedding_size"),
                                    norm_first=config.get("norm_first", False), **fields)


def encoder_config_from_bert_config(config: dict, source: str = contract.BERT_CONFIG_FILE
                                    ) -> encoders.BertEncoderConfig:
  """The inverse of bert_config_from_encoder_config."""
  return encoder_config_from_fields(config, source, config.get("hidden_act", ""))


def build_bert_encoder(encoder_config: AnyEncoderConfig) -> networks.BertEncoderV2:
  """A plain BertEncoderV2 (every token through every layer), built so it can be restored."""
  cfg = bert_encoder_config(encoder_config)
  encoder = networks.BertEncoderV2(
      vocab_size=cfg.vocab_size,
      hidden_size=cfg.hidden_size,
      num_layers=cfg.num_layers,
      num_attention_heads=cfg.num_attention_heads,
      inner_dim=cfg.intermediate_size,
      inner_activation=activations.keras_activation(cfg.hidden_activation),
      output_dropout=cfg.dropout_rate,
      attention_dropout=cfg.attention_dropout_rate,
      max_sequence_length=cfg.max_position_embeddings,
      type_vocab_size=cfg.type_vocab_size,
      initializer=tf_keras.initializers.TruncatedNormal(stddev=cfg.initializer_range),
      embedding_width=cfg.embedding_size,
      norm_first=cfg.norm_first)
  variables.build_encoder(encoder)
  return encoder


def build_bert_encoder_from_bert_config(path: str) -> networks.BertEncoderV2:
  """The BertEncoderV2 that a bert_config.json (as export_tf2_checkpoint writes it) describes."""
  config = read_json(str(path), "BERT config")
  return build_bert_encoder(encoder_config_from_bert_config(config, source=f"{str(path)!r}"))


def checked_vocab(vocab_path: str, cfg: encoders.BertEncoderConfig
                  ) -> tuple[list[str], contract.SpecialTokenIds]:
  """The vocab's tokens and special ids, once it is known to fit the encoder's vocab_size."""
  tokens = vocab.load_vocab(vocab_path)
  special = contract.SpecialTokenIds.from_vocab(tokens, source=f"vocab file {str(vocab_path)!r}")
  if len(tokens) > cfg.vocab_size:
    raise ValueError(f"vocab file {str(vocab_path)!r} has {len(tokens)} tokens but the encoder's "
                     f"vocab_size is {cfg.vocab_size}; export with the vocab the model was "
                     "trained on")
  return tokens, special


def read_json(path: str, what: str) -> dict:
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{what} {path!r} does not exist")
  with tf.io.gfile.GFile(path, "r") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{what} {path!r} is not valid JSON: {e}") from e


def write_json(path: str, content: dict) -> None:
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(json.dumps(content, indent=2, sort_keys=True) + "\n")
