"""The TF2 checkpoint: OUT/tf2/bert_model.ckpt (encoder, masked_lm), bert_config.json, vocab.txt.

The checkpoint's root has `encoder` and `masked_lm`, as BertPretrainerV2's
checkpoint_items name them, so Model Garden's BERT tasks warm-start from it.
"""

import os
import re

import tensorflow as tf
from official.nlp.modeling import models

from trainer import contract
from trainer.export import bert_config, variables


def export_tf2_checkpoint(pretrainer: models.BertPretrainerV2,
                          encoder_config: bert_config.AnyEncoderConfig,
                          vocab_path: str, output_dir: str) -> str:
  """Writes bert_model.ckpt (encoder, masked_lm), bert_config.json and vocab.txt.

  Returns:
    The checkpoint prefix, OUTPUT_DIR/bert_model.ckpt.
  """
  cfg = bert_config.bert_encoder_config(encoder_config)
  bert_config.checked_vocab(vocab_path, cfg)
  variables.build_masked_lm(pretrainer.masked_lm)
  variables.check_encoder_matches_config(pretrainer.encoder_network, cfg)
  output_dir = str(output_dir)
  tf.io.gfile.makedirs(output_dir)
  prefix = os.path.join(output_dir, contract.CHECKPOINT_NAME)
  # write() keeps the prefix free of save()'s "-N" counter.
  tf.train.Checkpoint(encoder=pretrainer.encoder_network,
                      masked_lm=pretrainer.masked_lm).write(prefix)
  bert_config.write_json(os.path.join(output_dir, contract.BERT_CONFIG_FILE),
                         bert_config.bert_config_from_encoder_config(cfg))
  tf.io.gfile.copy(str(vocab_path), os.path.join(output_dir, contract.VOCAB_FILE), overwrite=True)
  return prefix


def _checkpoint_prefix(checkpoint_path: str) -> str:
  prefix = str(checkpoint_path)
  if tf.io.gfile.isdir(prefix):
    prefix = os.path.join(prefix, contract.CHECKPOINT_NAME)
  if not tf.io.gfile.exists(prefix + ".index"):
    raise FileNotFoundError(f"no TF2 checkpoint at {prefix!r} ({prefix}.index is missing); pass "
                            f"the prefix that export wrote, e.g. OUT/{contract.TF2_DIR}/"
                            f"{contract.CHECKPOINT_NAME}")
  return prefix


def restore_encoder(encoder: tf.Module, checkpoint_path: str) -> None:
  """Restores an encoder from a checkpoint whose root has `encoder` (as export writes it).

  `checkpoint_path` is the checkpoint prefix or the directory holding bert_model.ckpt. Every
  encoder variable must be restored, from a checkpoint with as many layers as the encoder.
  """
  prefix = _checkpoint_prefix(checkpoint_path)
  variables.build_encoder(encoder)
  saved_layers = {int(match.group(1)) for name, _ in tf.train.list_variables(prefix)
                  if (match := re.match(r"encoder/_transformer_layers/(\d+)/", name))}
  if len(saved_layers) != variables.num_layers(encoder):
    raise ValueError(f"checkpoint {prefix!r} has {len(saved_layers)} transformer layers but the "
                     f"encoder has {variables.num_layers(encoder)}; build the encoder from the "
                     f"{contract.BERT_CONFIG_FILE} saved beside the checkpoint")
  try:
    status = tf.train.Checkpoint(encoder=encoder).read(prefix)
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
    raise ValueError(f"checkpoint {prefix!r} does not fit the encoder ({e}); build the encoder "
                     f"from the {contract.BERT_CONFIG_FILE} saved beside the checkpoint") from e
  # The checkpoint's masked_lm has no place in an encoder.
  status.expect_partial()
