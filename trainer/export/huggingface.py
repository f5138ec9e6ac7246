"""Hugging Face BERT: export as BertForMaskedLM (OUT/hf/), import BertModel or BertForMaskedLM.

No torch is needed: weights are read and written with safetensors' numpy API.
Keras kernels are [in..., out...] and torch.nn.Linear weights [out, in]; each
tensor below knows how many leading Keras axes are its input.
"""

import dataclasses
import logging
import math
import os
import re

import numpy as np
import safetensors.numpy
import tensorflow as tf
import tf_keras
from official.nlp.configs import encoders
from official.nlp.modeling import models

from trainer import contract
from trainer.export import activations, bert_config, variables

# Hugging Face's file names (transformers' CONFIG_NAME and SAFE_WEIGHTS_NAME).
HF_CONFIG_NAME = "config.json"
HF_WEIGHTS_NAME = "model.safetensors"
# Model Garden hard-codes this epsilon in BertEncoderV2 and MaskedLM.
LAYER_NORM_EPSILON = 1e-12


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


def huggingface_state_dict(pretrainer: models.BertPretrainerV2) -> dict[str, np.ndarray]:
  """The pretrainer's weights under Hugging Face BertForMaskedLM's names, float32 [out, in].

  The decoder (cls.predictions.decoder.*) is left out: Hugging Face ties it to the word
  embeddings and cls.predictions.bias, as its own save_pretrained does.
  """
  encoder = pretrainer.encoder_network
  variables.build_masked_lm(pretrainer.masked_lm)
  pairs = [(encoder, t, "bert." + t.hf_name)
           for t in (*_encoder_tensors(variables.num_layers(encoder)), *_POOLER_TENSORS)]
  pairs += [(pretrainer.masked_lm, t, t.hf_name) for t in _MASKED_LM_TENSORS]
  return {name: np.ascontiguousarray(_to_hf(variables.variable(root, t.path).numpy(), t),
                                     np.float32)
          for root, t, name in pairs}


def huggingface_config(encoder_config: bert_config.AnyEncoderConfig, pad_token_id: int) -> dict:
  """config.json for transformers.BertForMaskedLM."""
  cfg = bert_config.bert_encoder_config(encoder_config)
  if cfg.embedding_size is not None and cfg.embedding_size != cfg.hidden_size:
    raise ValueError(f"embedding_size {cfg.embedding_size} differs from hidden_size "
                     f"{cfg.hidden_size}; Hugging Face BERT has no embedding projection, so only "
                     "the TF2 checkpoint and the SavedModel can hold this model")
  if cfg.norm_first:
    raise ValueError("norm_first=True (pre-LayerNorm) has no Hugging Face BERT equivalent; only "
                     "the TF2 checkpoint and the SavedModel can hold this model")
  hidden_act = activations.huggingface_activation(cfg.hidden_activation)
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


def _check_mlm_activation(masked_lm: tf_keras.layers.Layer, hidden_activation: str) -> None:
  """Hugging Face BERT applies hidden_act in the MLM head too, so the two must be one function."""
  fix = ("Hugging Face BERT applies hidden_act in both, so build the pretrainer with "
         "mlm_activation equal to the encoder's hidden_activation")
  if masked_lm.activation is None:
    raise ValueError(f"the MLM head's activation is linear but the encoder's hidden_activation "
                     f"is {hidden_activation!r}; {fix}")
  if masked_lm.activation is not activations.keras_activation(hidden_activation):
    name = getattr(masked_lm.activation, "__name__", masked_lm.activation)
    raise ValueError(f"the MLM head's activation {name!r} is not the encoder's hidden_activation "
                     f"{hidden_activation!r}; {fix}")


def export_huggingface(pretrainer: models.BertPretrainerV2,
                       encoder_config: bert_config.AnyEncoderConfig,
                       vocab_path: str, output_dir: str, do_lower_case: bool = True) -> None:
  """Writes a directory that transformers.BertForMaskedLM.from_pretrained loads.

  No torch is needed: the weights are written with safetensors' numpy API.
  """
  cfg = bert_config.bert_encoder_config(encoder_config)
  tokens, special = bert_config.checked_vocab(vocab_path, cfg)
  variables.build_masked_lm(pretrainer.masked_lm)
  variables.check_encoder_matches_config(pretrainer.encoder_network, cfg)
  config = huggingface_config(cfg, pad_token_id=special.pad)
  _check_mlm_activation(pretrainer.masked_lm, cfg.hidden_activation)
  output_dir = str(output_dir)
  tf.io.gfile.makedirs(output_dir)
  bert_config.write_json(os.path.join(output_dir, HF_CONFIG_NAME), config)
  with tf.io.gfile.GFile(os.path.join(output_dir, HF_WEIGHTS_NAME), "wb") as f:
    # save() to bytes rather than save_file() so gs:// output directories work too.
    f.write(safetensors.numpy.save(huggingface_state_dict(pretrainer), metadata={"format": "pt"}))
  tf.io.gfile.copy(str(vocab_path), os.path.join(output_dir, contract.VOCAB_FILE), overwrite=True)
  special_tokens = {"unk_token": tokens[special.unk], "sep_token": tokens[special.sep],
                    "pad_token": tokens[special.pad], "cls_token": tokens[special.cls],
                    "mask_token": tokens[special.mask]}
  bert_config.write_json(os.path.join(output_dir, "special_tokens_map.json"), special_tokens)
  bert_config.write_json(os.path.join(output_dir, "tokenizer_config.json"), {
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
  hidden_activation = activations.model_garden_activation(hf_config.get("hidden_act"),
                                                          "config.json's hidden_act")
  eps = hf_config.get("layer_norm_eps", LAYER_NORM_EPSILON)
  if not math.isclose(eps, LAYER_NORM_EPSILON):
    logging.warning("config.json has layer_norm_eps %g but Model Garden's BERT uses %g; outputs "
                    "will differ slightly", eps, LAYER_NORM_EPSILON)
  return bert_config.encoder_config_from_fields(hf_config, "config.json", hidden_activation)


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
  encoder_config_from_hf_config(bert_config.read_json(os.path.join(hf_dir, HF_CONFIG_NAME),
                                           "Hugging Face config"))
  weights = _read_hf_weights(hf_dir)
  if isinstance(model, models.BertPretrainerV2):
    encoder, masked_lm = model.encoder_network, model.masked_lm
  else:
    encoder, masked_lm = model, None
  variables.build_encoder(encoder)

  hf_layers = {int(match.group(1)) for name in weights
               if (match := re.match(r"encoder\.layer\.(\d+)\.", name))}
  if len(hf_layers) != variables.num_layers(encoder):
    raise ValueError(f"{hf_dir!r} has {len(hf_layers)} transformer layers but the encoder has "
                     f"{variables.num_layers(encoder)}; build the encoder from "
                     "encoder_config_from_hf_config(config.json)")
  pairs = [(encoder, t) for t in _encoder_tensors(variables.num_layers(encoder))]
  if "pooler.dense.weight" in weights:
    pairs += [(encoder, t) for t in _POOLER_TENSORS]
  else:
    logging.info("%s has no pooler; the encoder's pooler keeps its initialization", hf_dir)
  if masked_lm is not None and "cls.predictions.bias" in weights:
    variables.build_masked_lm(masked_lm)
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
    variable = variables.variable(root, tensor.path)
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


