"""Every export at once: from a pretrainer (export_all), or from a training run (export_run).

    OUT/tf2/                  bert_model.ckpt, bert_config.json, vocab.txt
    OUT/hf/                   Hugging Face BertForMaskedLM
    OUT/saved_model/          serving_default
    OUT/token_importance.npy  the importance table, for warm starts
    OUT/training_params.yaml  the run's experiment config, for the model card
    OUT/eval_metrics.json     the run's latest evaluation, if it evaluated
"""

import dataclasses
import os

import tensorflow as tf
from official.core import config_definitions
from official.nlp.modeling import models

from trainer import configs, contract
from trainer.errors import UserError
from trainer.export import bert_config, huggingface, saved_model, tf2
from trainer.pretrainer import build_pretrainer

# Model Garden's train_utils.serialize_config writes it into every run's model_dir.
RUN_PARAMS_FILE = "params.yaml"


@dataclasses.dataclass(frozen=True)
class ExportedModel:
  tf2_checkpoint: str
  huggingface_dir: str
  saved_model_dir: str


def export_all(pretrainer: models.BertPretrainerV2,
               encoder_config: bert_config.AnyEncoderConfig,
               vocab_path: str, output_dir: str, do_lower_case: bool = True) -> ExportedModel:
  """Writes OUTPUT_DIR/tf2, OUTPUT_DIR/hf and OUTPUT_DIR/saved_model."""
  output_dir = str(output_dir)
  tf2_dir = os.path.join(output_dir, contract.TF2_DIR)
  exported = ExportedModel(
      tf2_checkpoint=tf2.export_tf2_checkpoint(pretrainer, encoder_config, vocab_path, tf2_dir),
      huggingface_dir=os.path.join(output_dir, contract.HF_DIR),
      saved_model_dir=os.path.join(output_dir, contract.SAVED_MODEL_DIR))
  huggingface.export_huggingface(pretrainer, encoder_config, vocab_path, exported.huggingface_dir,
                                 do_lower_case)
  # The SavedModel serves a plain BertEncoderV2 restored from the checkpoint just written: that
  # proves the checkpoint and bert_config.json agree, and serving sends every token through every
  # layer whatever the pretraining encoder dropped.
  encoder = bert_config.build_bert_encoder_from_bert_config(
      os.path.join(tf2_dir, contract.BERT_CONFIG_FILE))
  tf2.restore_encoder(encoder, exported.tf2_checkpoint)
  saved_model.export_saved_model(encoder, vocab_path, exported.saved_model_dir, do_lower_case)
  return exported


def load_params_file(path: str) -> config_definitions.ExperimentConfig:
  """An experiment config saved as YAML (a run's params.yaml, an export's training_params.yaml).

  Raises UserError if the file is missing or does not fit the experiment config.
  """
  # Its data keys were derived from the data's record when the run started; the data may be
  # elsewhere by now.
  return configs.build_experiment(configs.PRETRAINING, [path], read_data_spec=False)


def load_run_params(model_dir: str) -> config_definitions.ExperimentConfig:
  """The experiment config a `tokendrop train` run saved in its model_dir."""
  path = os.path.join(model_dir, RUN_PARAMS_FILE)
  if not tf.io.gfile.exists(path):
    raise UserError(f"{path} does not exist; --model_dir must be the --model_dir of a "
                      f"`tokendrop train` run (it writes {RUN_PARAMS_FILE} there)")
  return load_params_file(path)


def checkpoint_path(model_dir: str, checkpoint: str | None) -> str:
  """`checkpoint`, checked to exist, or else the latest training checkpoint in model_dir."""
  path = checkpoint or tf.train.latest_checkpoint(model_dir)
  if not path:
    raise UserError(f"no training checkpoint in {model_dir}; train first, or pass "
                      "--checkpoint=PATH/ckpt-N")
  if not tf.io.gfile.exists(path + ".index"):
    raise UserError(f"checkpoint {path} does not exist (no {path}.index)")
  return path


def pretraining_inputs(params: config_definitions.ExperimentConfig) -> dict[str, tf.Tensor]:
  """One batch of the pretraining input shape, to create every variable before restoring."""
  seq_length = params.task.train_data.seq_length
  predictions = params.task.train_data.max_predictions_per_seq
  inputs = {name: tf.zeros([1, seq_length], tf.int32) for name in contract.ENCODER_INPUTS}
  inputs[contract.INPUT_MASK] = tf.ones([1, seq_length], tf.int32)
  inputs[contract.MASKED_POSITIONS] = tf.zeros([1, predictions], tf.int32)
  return inputs


def export_run(model_dir: str, output_dir: str, checkpoint: str | None = None,
               vocab_file: str | None = None, do_lower_case: bool = True) -> ExportedModel:
  """Restores a training run's model and writes the standard exports; returns their paths.

  The vocab is the one the run trained with (`task.vocab_file`) unless `vocab_file` is given.
  """
  params = load_run_params(model_dir)
  vocab_file = vocab_file or params.task.vocab_file
  if not vocab_file:
    raise UserError(f"the run has no task.vocab_file; pass --vocab_file=PATH/"
                      f"{contract.VOCAB_FILE}")
  path = checkpoint_path(model_dir, checkpoint)
  model = build_pretrainer(params.task.model, params.task.vocab_file)
  model(pretraining_inputs(params))
  # Model Garden's trainer saves the model under `model`; the optimizer and step are not needed.
  tf.train.Checkpoint(model=model).read(path).assert_existing_objects_matched().expect_partial()
  tf.get_logger().info("restored %s", path)
  exported = export_all(model, params.task.model.encoder, vocab_file, output_dir,
                        do_lower_case=do_lower_case)
  # Not part of BERT: the importance table, so a warm-started run continues it
  # (task.init_token_importance).
  model.token_importance.write_table(os.path.join(output_dir, contract.TOKEN_IMPORTANCE_FILE))
  tf.io.gfile.copy(os.path.join(model_dir, RUN_PARAMS_FILE),
                   os.path.join(output_dir, contract.TRAINING_PARAMS_FILE), overwrite=True)
  metrics = os.path.join(model_dir, contract.EVAL_METRICS_FILE)
  if tf.io.gfile.exists(metrics):
    tf.io.gfile.copy(metrics, os.path.join(output_dir, contract.EVAL_METRICS_FILE),
                     overwrite=True)
  return exported
