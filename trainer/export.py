"""Export a pretrained model as standard BERT, and import Hugging Face BERT weights.

Token dropping changes which tokens the middle layers see during pretraining,
not the variables, so the pretrained encoder is an ordinary BERT and every
export below is one:

    OUT/tf2/           bert_model.ckpt (encoder, masked_lm), bert_config.json, vocab.txt
    OUT/hf/            Hugging Face BertForMaskedLM: config.json, model.safetensors, tokenizer files
    OUT/saved_model/   serving_default: input_word_ids, input_mask, input_type_ids ->
                       sequence_output, pooled_output

Activations: Model Garden's "gelu" (tf_utils.get_activation) is the tanh
approximation, which Hugging Face calls "gelu_new"; Hugging Face's "gelu" is the
exact erf form, which Model Garden lacks, so it is registered here as EXACT_GELU
for Hugging Face models to import without changing their outputs.
"""

import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Callable

import numpy as np
import safetensors.numpy
import tensorflow as tf
import tf_keras
from official.modeling import tf_utils
from official.nlp.configs import encoders
from official.nlp.modeling import models, networks

from trainer import contract, vocab

CHECKPOINT_NAME = "bert_model.ckpt"
BERT_CONFIG_NAME = "bert_config.json"
VOCAB_NAME = "vocab.txt"
HF_CONFIG_NAME = "config.json"
HF_WEIGHTS_NAME = "model.safetensors"
# tf_utils.get_activation lower-cases names before the registry lookup.
EXACT_GELU = "tokendrop>exact_gelu"
# Model Garden hard-codes this epsilon in BertEncoderV2 and MaskedLM.
LAYER_NORM_EPSILON = 1e-12

# Original BERT's bert_config.json names: (its field, BertEncoderConfig's field).
_BERT_CONFIG_FIELDS = (
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

# Hugging Face hidden_act -> the Model Garden activation that computes the same function.
_MODEL_GARDEN_ACTIVATIONS = {
    "gelu": EXACT_GELU,
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "gelu_fast": "gelu",
    "relu": "relu",
}


def _erf_gelu(x: np.ndarray) -> np.ndarray:
  return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _tanh_gelu(x: np.ndarray) -> np.ndarray:
  return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


# Hugging Face hidden_act -> its formula, to recognise a Keras activation by its values.
_HF_ACTIVATION_FORMULAS = {
    "gelu": _erf_gelu,
    "gelu_new": _tanh_gelu,
    "relu": lambda x: np.maximum(x, 0.0),
}


@tf_keras.utils.register_keras_serializable(package="tokendrop", name="exact_gelu")
def exact_gelu(x: tf.Tensor) -> tf.Tensor:
  """GELU with the exact erf, as Hugging Face's "gelu" computes it."""
  return tf_keras.activations.gelu(x, approximate=False)


@dataclasses.dataclass(frozen=True)
class _Tensor:
  """One weight: its Hugging Face name and its attribute path in the Keras model.

  The path follows the TF2 checkpoint's object graph (layer attributes, list
  indices, then the variable), so any encoder whose checkpoints BertEncoderV2
  can restore has these paths.
  """
  hf_name: str
  path: str
  # Kernels: how many leading Keras axes are the input (q/k/v: [in, heads, head_dim] has 1;
  # the attention output [heads, head_dim, out] has 2). None: not a kernel.
  input_axes: int | None = None
  # Embedding tables keep their [rows, width] layout; other non-kernels are flattened.
  embedding: bool = False


def _dense(hf_name: str, path: str, input_axes: int = 1) -> list[_Tensor]:
  return [_Tensor(f"{hf_name}.weight", f"{path}/kernel", input_axes=input_axes),
          _Tensor(f"{hf_name}.bias", f"{path}/bias")]


def _layer_norm(hf_name: str, path: str) -> list[_Tensor]:
  return [_Tensor(f"{hf_name}.weight", f"{path}/gamma"), _Tensor(f"{hf_name}.bias", f"{path}/beta")]


def _encoder_tensors(num_layers: int) -> list[_Tensor]:
  """The encoder's weights; Hugging Face names lack BertForMaskedLM's "bert." prefix."""
  tensors = [
      _Tensor("embeddings.word_embeddings.weight", "_embedding_layer/embeddings", embedding=True),
      _Tensor("embeddings.position_embeddings.weight", "_position_embedding_layer/embeddings",
              embedding=True),
      _Tensor("embeddings.token_type_embeddings.weight", "_type_embedding_layer/embeddings",
              embedding=True),
      *_layer_norm("embeddings.LayerNorm", "_embedding_norm_layer"),
  ]
  for i in range(num_layers):
    hf, keras = f"encoder.layer.{i}", f"_transformer_layers/{i}"
    for projection in ("query", "key", "value"):
      tensors += _dense(f"{hf}.attention.self.{projection}",
                        f"{keras}/_attention_layer/_{projection}_dense")
    tensors += _dense(f"{hf}.attention.output.dense", f"{keras}/_attention_layer/_output_dense",
                      input_axes=2)
    tensors += _layer_norm(f"{hf}.attention.output.LayerNorm", f"{keras}/_attention_layer_norm")
    tensors += _dense(f"{hf}.intermediate.dense", f"{keras}/_intermediate_dense")
    tensors += _dense(f"{hf}.output.dense", f"{keras}/_output_dense")
    tensors += _layer_norm(f"{hf}.output.LayerNorm", f"{keras}/_output_layer_norm")
  return tensors


# BertForMaskedLM has no pooler, so Hugging Face directories may lack it.
_POOLER_TENSORS = tuple(_dense("pooler.dense", "_pooler_layer"))


# MaskedLM's weights; its decoder is the word embedding table, which the encoder owns.
_MASKED_LM_TENSORS = (
    *_dense("cls.predictions.transform.dense", "dense"),
    *_layer_norm("cls.predictions.transform.LayerNorm", "layer_norm"),
    _Tensor("cls.predictions.bias", "bias"),
)


def _to_hf(value: np.ndarray, tensor: _Tensor) -> np.ndarray:
  if tensor.embedding:
    return value
  if tensor.input_axes is None:
    return value.reshape(-1)
  # torch.nn.Linear stores [out, in]; Keras kernels are [in..., out...].
  return value.reshape(math.prod(value.shape[:tensor.input_axes]), -1).T


def _hf_shape(keras_shape: tuple[int, ...], tensor: _Tensor) -> tuple[int, ...]:
  if tensor.embedding:
    return tuple(keras_shape)
  if tensor.input_axes is None:
    return (math.prod(keras_shape),)
  return (math.prod(keras_shape[tensor.input_axes:]), math.prod(keras_shape[:tensor.input_axes]))


def _from_hf(value: np.ndarray, keras_shape: tuple[int, ...], tensor: _Tensor) -> np.ndarray:
  if tensor.input_axes is not None:
    value = value.T
  return value.reshape(keras_shape)


def _variable(root: tf.Module, path: str) -> tf.Variable:
  *layer_path, leaf = path.split("/")
  layer = root
  try:
    for part in layer_path:
      layer = layer[int(part)] if part.isdigit() else getattr(layer, part)
  except (AttributeError, IndexError) as e:
    raise ValueError(f"{type(root).__name__} has no {path!r}: trainer.export needs an encoder "
                     "with BertEncoderV2's variable structure") from e
  direct = getattr(layer, leaf, None)
  if isinstance(direct, tf.Variable):
    return direct
  # PositionEmbedding keeps its table in a private attribute; its variable is named "embeddings".
  named = [v for v in layer.weights if v.name.split("/")[-1].split(":")[0] == leaf]
  if len(named) != 1:
    raise ValueError(f"{type(root).__name__} has no variable {path!r}: trainer.export needs an "
                     "encoder with BertEncoderV2's variable structure")
  return named[0]


def _num_layers(encoder: tf.Module) -> int:
  layers = getattr(encoder, "_transformer_layers", None)
  if layers is None:
    raise ValueError(f"{type(encoder).__name__} has no _transformer_layers: trainer.export needs "
                     "an encoder with BertEncoderV2's variable structure")
  return len(layers)


def _build_encoder(encoder: tf.Module) -> None:
  if not encoder.built:
    ids = tf.zeros([1, 1], tf.int32)
    encoder(dict(input_word_ids=ids, input_mask=tf.ones_like(ids), input_type_ids=ids))


def _build_masked_lm(masked_lm: tf_keras.layers.Layer) -> None:
  """MaskedLM creates its variables on its first call, which warm starts may precede."""
  if not masked_lm.built:
    width = masked_lm.embedding_table.shape[1]
    masked_lm(tf.zeros([1, 1, width]), masked_positions=tf.zeros([1, 1], tf.int32))


def _bert_encoder_config(encoder_config: encoders.EncoderConfig | encoders.BertEncoderConfig
                         ) -> encoders.BertEncoderConfig:
  if isinstance(encoder_config, encoders.EncoderConfig):
    encoder_config = encoder_config.get()
  if not isinstance(encoder_config, encoders.BertEncoderConfig):
    raise TypeError(f"expected a BertEncoderConfig (or an EncoderConfig holding one), got "
                    f"{type(encoder_config).__name__}")
  return encoder_config


def _check_encoder_matches_config(encoder: tf.Module, cfg: encoders.BertEncoderConfig) -> None:
  """Checks every config field that fixes a variable's shape against the encoder."""
  if _num_layers(encoder) != cfg.num_layers:
    raise ValueError(f"the encoder has {_num_layers(encoder)} transformer layers but the encoder "
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
    actual = tuple(_variable(encoder, path).shape)
    if actual != shape:
      raise ValueError(f"the encoder's {path} has shape {actual} but the encoder config "
                       f"({fields}) implies {shape}; pass the config the model was built from")


def _huggingface_activation(activation: Callable[[tf.Tensor], tf.Tensor] | None,
                            what: str) -> str:
  """The Hugging Face hidden_act computing the same function, recognised by its values."""
  if activation is None:
    raise ValueError(f"{what} is linear, but Hugging Face BERT applies hidden_act there; use "
                     f"one of {sorted(set(_MODEL_GARDEN_ACTIVATIONS.values()))}")
  x = np.linspace(-6.0, 6.0, 241)
  y = np.asarray(activation(tf.constant(x, tf.float32)), np.float64)
  for name, formula in _HF_ACTIVATION_FORMULAS.items():
    if np.max(np.abs(y - formula(x))) < 1e-5:
      return name
  raise ValueError(f"{what} is none of Hugging Face's {sorted(_HF_ACTIVATION_FORMULAS)}; use "
                   f"one of {sorted(set(_MODEL_GARDEN_ACTIVATIONS.values()))}")


def _read_json(path: str, what: str) -> dict:
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{what} {path!r} does not exist")
  with tf.io.gfile.GFile(path, "r") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{what} {path!r} is not valid JSON: {e}") from e


def _write_json(path: str, content: dict) -> None:
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(json.dumps(content, indent=2, sort_keys=True) + "\n")


def _checked_vocab(vocab_path: str, cfg: encoders.BertEncoderConfig
                   ) -> tuple[list[str], contract.SpecialTokenIds]:
  tokens = vocab.load_vocab(vocab_path)
  special = contract.SpecialTokenIds.from_vocab(tokens, source=f"vocab file {str(vocab_path)!r}")
  if len(tokens) > cfg.vocab_size:
    raise ValueError(f"vocab file {str(vocab_path)!r} has {len(tokens)} tokens but the encoder's "
                     f"vocab_size is {cfg.vocab_size}; export with the vocab the model was "
                     "trained on")
  return tokens, special


# --- TF2 checkpoint and bert_config.json -------------------------------------------------------


def bert_config_from_encoder_config(
    encoder_config: encoders.EncoderConfig | encoders.BertEncoderConfig) -> dict:
  """bert_config.json's content: original BERT's field names, Model Garden's activation name."""
  cfg = _bert_encoder_config(encoder_config)
  config = {bert_name: getattr(cfg, field) for bert_name, field in _BERT_CONFIG_FIELDS}
  # Fields original BERT lacks, written only when they differ from its architecture.
  if cfg.embedding_size is not None and cfg.embedding_size != cfg.hidden_size:
    config["embedding_size"] = cfg.embedding_size
  if cfg.norm_first:
    config["norm_first"] = True
  return config


def _encoder_config_from_fields(config: dict, source: str, hidden_activation: str
                                ) -> encoders.BertEncoderConfig:
  missing = [name for name, _ in _BERT_CONFIG_FIELDS if name not in config]
  if missing:
    raise ValueError(f"{source} lacks {missing}; a BERT config needs all of "
                     f"{[name for name, _ in _BERT_CONFIG_FIELDS]}")
  fields = {field: config[bert_name] for bert_name, field in _BERT_CONFIG_FIELDS}
  fields["hidden_activation"] = hidden_activation
  return encoders.BertEncoderConfig(embedding_size=config.get("embedding_size"),
                                    norm_first=config.get("norm_first", False), **fields)


def encoder_config_from_bert_config(config: dict, source: str = "bert_config.json"
                                    ) -> encoders.BertEncoderConfig:
  """The inverse of bert_config_from_encoder_config."""
  return _encoder_config_from_fields(config, source, config.get("hidden_act", ""))


def build_bert_encoder(encoder_config: encoders.EncoderConfig | encoders.BertEncoderConfig
                       ) -> networks.BertEncoderV2:
  """A plain BertEncoderV2 (every token through every layer), built so it can be restored."""
  cfg = _bert_encoder_config(encoder_config)
  encoder = networks.BertEncoderV2(
      vocab_size=cfg.vocab_size,
      hidden_size=cfg.hidden_size,
      num_layers=cfg.num_layers,
      num_attention_heads=cfg.num_attention_heads,
      inner_dim=cfg.intermediate_size,
      inner_activation=tf_utils.get_activation(cfg.hidden_activation),
      output_dropout=cfg.dropout_rate,
      attention_dropout=cfg.attention_dropout_rate,
      max_sequence_length=cfg.max_position_embeddings,
      type_vocab_size=cfg.type_vocab_size,
      initializer=tf_keras.initializers.TruncatedNormal(stddev=cfg.initializer_range),
      embedding_width=cfg.embedding_size,
      norm_first=cfg.norm_first)
  _build_encoder(encoder)
  return encoder


def build_bert_encoder_from_bert_config(path: str) -> networks.BertEncoderV2:
  """The BertEncoderV2 that a bert_config.json (as export_tf2_checkpoint writes it) describes."""
  config = _read_json(str(path), "BERT config")
  return build_bert_encoder(encoder_config_from_bert_config(config, source=f"{str(path)!r}"))


def export_tf2_checkpoint(pretrainer: models.BertPretrainerV2,
                          encoder_config: encoders.EncoderConfig | encoders.BertEncoderConfig,
                          vocab_path: str, output_dir: str) -> str:
  """Writes bert_model.ckpt (encoder, masked_lm), bert_config.json and vocab.txt.

  Returns:
    The checkpoint prefix, OUTPUT_DIR/bert_model.ckpt.
  """
  cfg = _bert_encoder_config(encoder_config)
  _checked_vocab(vocab_path, cfg)
  _build_masked_lm(pretrainer.masked_lm)
  _check_encoder_matches_config(pretrainer.encoder_network, cfg)
  output_dir = str(output_dir)
  tf.io.gfile.makedirs(output_dir)
  prefix = os.path.join(output_dir, CHECKPOINT_NAME)
  # write() keeps the prefix free of save()'s "-N" counter.
  tf.train.Checkpoint(encoder=pretrainer.encoder_network,
                      masked_lm=pretrainer.masked_lm).write(prefix)
  _write_json(os.path.join(output_dir, BERT_CONFIG_NAME), bert_config_from_encoder_config(cfg))
  tf.io.gfile.copy(str(vocab_path), os.path.join(output_dir, VOCAB_NAME), overwrite=True)
  return prefix


def _checkpoint_prefix(checkpoint_path: str) -> str:
  prefix = str(checkpoint_path)
  if tf.io.gfile.isdir(prefix):
    prefix = os.path.join(prefix, CHECKPOINT_NAME)
  if not tf.io.gfile.exists(prefix + ".index"):
    raise FileNotFoundError(f"no TF2 checkpoint at {prefix!r} ({prefix}.index is missing); pass "
                            f"the prefix that export wrote, e.g. OUT/tf2/{CHECKPOINT_NAME}")
  return prefix


def restore_encoder(encoder: tf.Module, checkpoint_path: str) -> None:
  """Restores an encoder from a checkpoint whose root has `encoder` (as export writes it).

  `checkpoint_path` is the checkpoint prefix or the directory holding bert_model.ckpt. Every
  encoder variable must be restored, from a checkpoint with as many layers as the encoder.
  """
  prefix = _checkpoint_prefix(checkpoint_path)
  _build_encoder(encoder)
  saved_layers = {int(match.group(1)) for name, _ in tf.train.list_variables(prefix)
                  if (match := re.match(r"encoder/_transformer_layers/(\d+)/", name))}
  if len(saved_layers) != _num_layers(encoder):
    raise ValueError(f"checkpoint {prefix!r} has {len(saved_layers)} transformer layers but the "
                     f"encoder has {_num_layers(encoder)}; build the encoder from the "
                     f"{BERT_CONFIG_NAME} saved beside the checkpoint")
  try:
    status = tf.train.Checkpoint(encoder=encoder).read(prefix)
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
    raise ValueError(f"checkpoint {prefix!r} does not fit the encoder ({e}); build the encoder "
                     f"from the {BERT_CONFIG_NAME} saved beside the checkpoint") from e
  # The checkpoint's masked_lm has no place in an encoder.
  status.expect_partial()


# --- Hugging Face --------------------------------------------------------------------------------


def huggingface_state_dict(pretrainer: models.BertPretrainerV2) -> dict[str, np.ndarray]:
  """The pretrainer's weights under Hugging Face BertForMaskedLM's names, float32 [out, in].

  The decoder (cls.predictions.decoder.*) is left out: Hugging Face ties it to the word
  embeddings and cls.predictions.bias, as its own save_pretrained does.
  """
  encoder = pretrainer.encoder_network
  _build_masked_lm(pretrainer.masked_lm)
  pairs = [(encoder, t, "bert." + t.hf_name)
           for t in (*_encoder_tensors(_num_layers(encoder)), *_POOLER_TENSORS)]
  pairs += [(pretrainer.masked_lm, t, t.hf_name) for t in _MASKED_LM_TENSORS]
  return {name: np.ascontiguousarray(_to_hf(_variable(root, t.path).numpy(), t), np.float32)
          for root, t, name in pairs}


def huggingface_config(encoder_config: encoders.EncoderConfig | encoders.BertEncoderConfig,
                       pad_token_id: int) -> dict:
  """config.json for transformers.BertForMaskedLM."""
  cfg = _bert_encoder_config(encoder_config)
  if cfg.embedding_size is not None and cfg.embedding_size != cfg.hidden_size:
    raise ValueError(f"embedding_size {cfg.embedding_size} differs from hidden_size "
                     f"{cfg.hidden_size}; Hugging Face BERT has no embedding projection, so only "
                     "the TF2 checkpoint and the SavedModel can hold this model")
  if cfg.norm_first:
    raise ValueError("norm_first=True (pre-LayerNorm) has no Hugging Face BERT equivalent; only "
                     "the TF2 checkpoint and the SavedModel can hold this model")
  hidden_act = _huggingface_activation(tf_utils.get_activation(cfg.hidden_activation),
                                       f"the encoder's hidden_activation {cfg.hidden_activation!r}")
  return {
      "architectures": ["BertForMaskedLM"],
      "model_type": "bert",
      "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.hidden_size,
      "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_attention_heads,
      "intermediate_size": cfg.intermediate_size,
      "hidden_act": hidden_act,
      "hidden_dropout_prob": cfg.dropout_rate,
      "attention_probs_dropout_prob": cfg.attention_dropout_rate,
      "max_position_embeddings": cfg.max_position_embeddings,
      "type_vocab_size": cfg.type_vocab_size,
      "initializer_range": cfg.initializer_range,
      "layer_norm_eps": LAYER_NORM_EPSILON,
      "pad_token_id": pad_token_id,
      "position_embedding_type": "absolute",
      "tie_word_embeddings": True,
  }


def export_huggingface(pretrainer: models.BertPretrainerV2,
                       encoder_config: encoders.EncoderConfig | encoders.BertEncoderConfig,
                       vocab_path: str, output_dir: str, do_lower_case: bool = True) -> None:
  """Writes a directory that transformers.BertForMaskedLM.from_pretrained loads.

  No torch is needed: the weights are written with safetensors' numpy API.
  """
  cfg = _bert_encoder_config(encoder_config)
  tokens, special = _checked_vocab(vocab_path, cfg)
  _build_masked_lm(pretrainer.masked_lm)
  _check_encoder_matches_config(pretrainer.encoder_network, cfg)
  config = huggingface_config(cfg, pad_token_id=special.pad)
  mlm_act = _huggingface_activation(pretrainer.masked_lm.activation, "the MLM head's activation")
  if mlm_act != config["hidden_act"]:
    raise ValueError(f"the MLM head's activation is Hugging Face's {mlm_act!r} but the encoder's "
                     f"is {config['hidden_act']!r}; Hugging Face BERT applies hidden_act in both, "
                     "so build the pretrainer with mlm_activation equal to the encoder's "
                     "hidden_activation")
  output_dir = str(output_dir)
  tf.io.gfile.makedirs(output_dir)
  _write_json(os.path.join(output_dir, HF_CONFIG_NAME), config)
  with tf.io.gfile.GFile(os.path.join(output_dir, HF_WEIGHTS_NAME), "wb") as f:
    # save() to bytes rather than save_file() so gs:// output directories work too.
    f.write(safetensors.numpy.save(huggingface_state_dict(pretrainer), metadata={"format": "pt"}))
  tf.io.gfile.copy(str(vocab_path), os.path.join(output_dir, VOCAB_NAME), overwrite=True)
  special_tokens = {"unk_token": tokens[special.unk], "sep_token": tokens[special.sep],
                    "pad_token": tokens[special.pad], "cls_token": tokens[special.cls],
                    "mask_token": tokens[special.mask]}
  _write_json(os.path.join(output_dir, "special_tokens_map.json"), special_tokens)
  _write_json(os.path.join(output_dir, "tokenizer_config.json"), {
      "tokenizer_class": "BertTokenizer",
      "do_lower_case": do_lower_case,
      "model_max_length": cfg.max_position_embeddings,
      **special_tokens,
  })


def encoder_config_from_hf_config(hf_config: dict) -> encoders.BertEncoderConfig:
  """The BertEncoderConfig of a Hugging Face BERT config.json, activation included.

  Hugging Face's "gelu" maps to EXACT_GELU, which `import trainer.export` registers; import it
  before building an encoder from the returned config.
  """
  model_type = hf_config.get("model_type", "bert")
  if model_type != "bert":
    raise ValueError(f"config.json has model_type {model_type!r}; only BERT models ('bert') "
                     "can be loaded")
  position_type = hf_config.get("position_embedding_type", "absolute")
  if position_type != "absolute":
    raise ValueError(f"config.json has position_embedding_type {position_type!r}; BertEncoderV2 "
                     "only has absolute position embeddings")
  hidden_act = hf_config.get("hidden_act")
  if hidden_act not in _MODEL_GARDEN_ACTIVATIONS:
    raise ValueError(f"config.json has hidden_act {hidden_act!r}; supported: "
                     f"{sorted(_MODEL_GARDEN_ACTIVATIONS)}")
  eps = hf_config.get("layer_norm_eps", LAYER_NORM_EPSILON)
  if not math.isclose(eps, LAYER_NORM_EPSILON):
    logging.warning("config.json has layer_norm_eps %g but Model Garden's BERT uses %g; outputs "
                    "will differ slightly", eps, LAYER_NORM_EPSILON)
  return _encoder_config_from_fields(hf_config, "config.json",
                                     _MODEL_GARDEN_ACTIVATIONS[hidden_act])


def _read_hf_weights(hf_dir: str) -> dict[str, np.ndarray]:
  path = os.path.join(hf_dir, HF_WEIGHTS_NAME)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"Hugging Face weights {path!r} do not exist; save the model with "
                            "save_pretrained(dir, safe_serialization=True) to get one file "
                            f"{HF_WEIGHTS_NAME}")
  with tf.io.gfile.GFile(path, "rb") as f:
    weights = safetensors.numpy.load(f.read())
  names = {}
  for name, value in weights.items():
    # Checkpoints converted from original BERT still call LayerNorm's weights gamma and beta.
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    names[name.removeprefix("bert.")] = value
  return names


def load_huggingface_weights(model: models.BertPretrainerV2 | tf.Module, hf_dir: str) -> None:
  """Loads a Hugging Face BERT directory into a BertEncoderV2-structured encoder or pretrainer.

  `hf_dir` holds config.json and model.safetensors, with or without the "bert." prefix
  (BertModel saves none). The pooler and a pretrainer's MLM head are loaded when the directory
  has them (BertModel has no MLM head, BertForMaskedLM no pooler) and keep their initialization
  otherwise. The model must be built from
  encoder_config_from_hf_config(config.json); nothing is assigned unless every weight fits.
  """
  hf_dir = str(hf_dir)
  # Rejects configs whose architecture BertEncoderV2 cannot compute, whatever the weights.
  encoder_config_from_hf_config(_read_json(os.path.join(hf_dir, HF_CONFIG_NAME),
                                           "Hugging Face config"))
  weights = _read_hf_weights(hf_dir)
  if isinstance(model, models.BertPretrainerV2):
    encoder, masked_lm = model.encoder_network, model.masked_lm
  else:
    encoder, masked_lm = model, None
  _build_encoder(encoder)

  hf_layers = {int(match.group(1)) for name in weights
               if (match := re.match(r"encoder\.layer\.(\d+)\.", name))}
  if len(hf_layers) != _num_layers(encoder):
    raise ValueError(f"{hf_dir!r} has {len(hf_layers)} transformer layers but the encoder has "
                     f"{_num_layers(encoder)}; build the encoder from "
                     "encoder_config_from_hf_config(config.json)")
  pairs = [(encoder, t) for t in _encoder_tensors(_num_layers(encoder))]
  if "pooler.dense.weight" in weights:
    pairs += [(encoder, t) for t in _POOLER_TENSORS]
  else:
    logging.info("%s has no pooler; the encoder's pooler keeps its initialization", hf_dir)
  if masked_lm is not None and "cls.predictions.bias" in weights:
    _build_masked_lm(masked_lm)
    pairs += [(masked_lm, t) for t in _MASKED_LM_TENSORS]
  elif masked_lm is not None:
    logging.info("%s has no MLM head; the pretrainer's MLM head keeps its initialization", hf_dir)

  word_embeddings = weights.get("embeddings.word_embeddings.weight")
  assignments = []
  for root, tensor in pairs:
    if tensor.hf_name not in weights:
      raise ValueError(f"{hf_dir!r}/{HF_WEIGHTS_NAME} lacks {tensor.hf_name!r}; it must be a "
                       "BERT model (BertModel or BertForMaskedLM)")
    value = weights.pop(tensor.hf_name)
    variable = _variable(root, tensor.path)
    expected = _hf_shape(tuple(variable.shape), tensor)
    if value.shape != expected:
      raise ValueError(f"{tensor.hf_name!r} in {hf_dir!r} has shape {value.shape} but the "
                       f"model's {tensor.path} needs {expected}; build the model from "
                       "encoder_config_from_hf_config(config.json)")
    assignments.append((variable, _from_hf(value, tuple(variable.shape), tensor)))

  decoder = weights.pop("cls.predictions.decoder.weight", None)
  if decoder is not None and not np.array_equal(decoder, word_embeddings):
    raise ValueError(f"{hf_dir!r} has a decoder (cls.predictions.decoder.weight) that differs from "
                     "the word embeddings; MaskedLM ties the two, so it cannot hold this model")
  for ignored in ("embeddings.position_ids", "cls.predictions.decoder.bias"):
    weights.pop(ignored, None)
  if weights:
    logging.warning("ignoring %d tensors of %s that BERT's encoder and MLM head lack: %s",
                    len(weights), hf_dir, sorted(weights)[:8])
  for variable, value in assignments:
    variable.assign(value.astype(variable.dtype.as_numpy_dtype))


# --- SavedModel and everything at once -----------------------------------------------------------


def export_saved_model(encoder: tf.Module, vocab_path: str, output_dir: str,
                       do_lower_case: bool = True) -> None:
  """A SavedModel whose serving_default maps int32 [batch, seq] ids to the encoder's outputs.

  Like TF Hub's BERT models, it carries vocab_file (an asset) and do_lower_case for tokenizing.
  """
  module = tf.Module()
  module.encoder = encoder
  module.vocab_file = tf.saved_model.Asset(str(vocab_path))
  module.do_lower_case = tf.Variable(do_lower_case, trainable=False)
  ids = tf.TensorSpec([None, None], tf.int32)

  @tf.function(input_signature=[tf.TensorSpec.from_spec(ids, name=name) for name in
                                ("input_word_ids", "input_mask", "input_type_ids")])
  def serve(input_word_ids, input_mask, input_type_ids):
    outputs = encoder(dict(input_word_ids=input_word_ids, input_mask=input_mask,
                           input_type_ids=input_type_ids), training=False)
    return {"sequence_output": outputs["sequence_output"],
            "pooled_output": outputs["pooled_output"]}

  module.serve = serve
  tf.saved_model.save(module, str(output_dir), signatures={"serving_default": serve})


@dataclasses.dataclass(frozen=True)
class ExportedModel:
  tf2_checkpoint: str
  huggingface_dir: str
  saved_model_dir: str


def export_all(pretrainer: models.BertPretrainerV2,
               encoder_config: encoders.EncoderConfig | encoders.BertEncoderConfig,
               vocab_path: str, output_dir: str, do_lower_case: bool = True) -> ExportedModel:
  """Writes OUTPUT_DIR/tf2, OUTPUT_DIR/hf and OUTPUT_DIR/saved_model."""
  output_dir = str(output_dir)
  exported = ExportedModel(
      tf2_checkpoint=export_tf2_checkpoint(pretrainer, encoder_config, vocab_path,
                                           os.path.join(output_dir, "tf2")),
      huggingface_dir=os.path.join(output_dir, "hf"),
      saved_model_dir=os.path.join(output_dir, "saved_model"))
  export_huggingface(pretrainer, encoder_config, vocab_path, exported.huggingface_dir,
                     do_lower_case)
  # The SavedModel serves a plain BertEncoderV2 restored from the checkpoint just written: that
  # proves the checkpoint and bert_config.json agree, and serving sends every token through every
  # layer whatever the pretraining encoder dropped.
  encoder = build_bert_encoder_from_bert_config(
      os.path.join(output_dir, "tf2", BERT_CONFIG_NAME))
  restore_encoder(encoder, exported.tf2_checkpoint)
  export_saved_model(encoder, vocab_path, exported.saved_model_dir, do_lower_case)
  return exported
