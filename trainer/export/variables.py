"""BertEncoderV2's variable structure: find a variable by its checkpoint path, check its shapes.

Paths follow the TF2 checkpoint's object graph (layer attributes, list indices,
then the variable), so every encoder whose checkpoints BertEncoderV2 can restore
(the token-dropping encoder included) has them.
"""

import tensorflow as tf
import tf_keras
from official.nlp.configs import encoders

from trainer import contract

_STRUCTURE_HINT = "trainer.export needs an encoder with BertEncoderV2's variable structure"


def variable(root: tf.Module, path: str) -> tf.Variable:
  """The variable at `path` ("_transformer_layers/0/_output_dense/kernel") under `root`."""
  *layer_path, leaf = path.split("/")
  layer = root
  try:
    for part in layer_path:
      layer = layer[int(part)] if part.isdigit() else getattr(layer, part)
  except (AttributeError, IndexError) as e:
    raise ValueError(f"{type(root).__name__} has no {path!r}: {_STRUCTURE_HINT}") from e
  direct = getattr(layer, leaf, None)
  if isinstance(direct, tf.Variable):
    return direct
  # PositionEmbedding keeps its table in a private attribute; its variable is named "embeddings".
  named = [v for v in layer.weights if v.name.split("/")[-1].split(":")[0] == leaf]
  if len(named) != 1:
    raise ValueError(f"{type(root).__name__} has no variable {path!r}: {_STRUCTURE_HINT}")
  return named[0]


def num_layers(encoder: tf.Module) -> int:
  layers = getattr(encoder, "_transformer_layers", None)
  if layers is None:
    raise ValueError(f"{type(encoder).__name__} has no _transformer_layers: {_STRUCTURE_HINT}")
  return len(layers)


def build_encoder(encoder: tf.Module) -> None:
  """Creates the encoder's variables (one call on a [1, 1] batch) if it has none yet."""
  if not encoder.built:
    ids = tf.zeros([1, 1], tf.int32)
    inputs = dict.fromkeys(contract.ENCODER_INPUTS, ids)
    inputs[contract.INPUT_MASK] = tf.ones_like(ids)
    encoder(inputs)


def build_masked_lm(masked_lm: tf_keras.layers.Layer) -> None:
  """MaskedLM creates its variables on its first call, which warm starts may precede."""
  if not masked_lm.built:
    width = masked_lm.embedding_table.shape[1]
    masked_lm(tf.zeros([1, 1, width]), masked_positions=tf.zeros([1, 1], tf.int32))


def check_encoder_matches_config(encoder: tf.Module, cfg: encoders.BertEncoderConfig) -> None:
  """Checks every config field that fixes a variable's shape against the encoder."""
  if num_layers(encoder) != cfg.num_layers:
    raise ValueError(f"the encoder has {num_layers(encoder)} transformer layers but the encoder "
                     f"config says num_layers={cfg.num_layers}; pass the config the model was "
                     "built from")
  width = cfg.embedding_size or cfg.hidden_size
  head_size = cfg.hidden_size // cfg.num_attention_heads
  expected = (
      ("_embedding_layer/embeddings", (cfg.vocab_size, width), "vocab_size, embedding_size"),
      ("_position_embedding_layer/embeddings", (cfg.max_position_embeddings, width),
       "max_position_embeddings"),
      ("_type_embedding_layer/embeddings", (cfg.type_vocab_size, width), "type_vocab_size"),
      ("_transformer_layers/0/_attention_layer/_query_dense/kernel",
       (cfg.hidden_size, cfg.num_attention_heads, head_size), "hidden_size, num_attention_heads"),
      ("_transformer_layers/0/_intermediate_dense/kernel", (cfg.hidden_size, cfg.intermediate_size),
       "intermediate_size"),
  )
  for path, shape, fields in expected:
    actual = tuple(variable(encoder, path).shape)
    if actual != shape:
      raise ValueError(f"the encoder's {path} has shape {actual} but the encoder config "
                       f"({fields}) implies {shape}; pass the config the model was built from")
