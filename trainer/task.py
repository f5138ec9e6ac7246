"""The token-dropping MLM task, registered with Model Garden's task factory.

Per training step (the paper's section 3):
  1. look up each input token's importance, the moving average of the MLM loss
     its vocabulary id has received (or random scores for the ablation);
  2. run the encoder, which drops the least important tokens from the middle
     layers and merges them back before the last layer;
  3. compute the MLM loss, and feed the per-prediction losses back into the
     importance table (all-reduced across replicas, weight > 0 only).
Evaluation reports two sets of metrics: the full model, without dropping (the
names Model Garden uses, and what fine-tuning sees), and the model as trained,
with the same selection and kept count as the last training step (the same
names with AS_TRAINED_SUFFIX), as the reference's encoder, which has no
training switch, evaluates. For `token_selection: none` the two are the same.
The model it trains is trainer/pretrainer.py's.
"""

import os

import tensorflow as tf
import tf_keras
from absl import logging
from official.core import task_factory
from official.nlp.tasks import masked_lm

from trainer import configs, contract, data, data_spec, masking, pretrainer
from trainer.encoder import KeepAnneal
from trainer.export import huggingface
from trainer.token_importance import TokenImportance

AS_TRAINED_SUFFIX = contract.AS_TRAINED_SUFFIX


@task_factory.register_task_cls(configs.TokenDropMaskedLMConfig)
class TokenDropMaskedLMTask(masked_lm.MaskedLMTask):
  """MLM pretraining with token dropping; `token_selection: none` is the BERT baseline."""

  def _encoder_config(self) -> configs.TokenDropBertEncoderConfig:
    return pretrainer.encoder_config(self.task_config.model)

  def build_model(self, params=None) -> pretrainer.TokenDropBertPretrainer:
    return pretrainer.build_pretrainer(params or self.task_config.model,
                                       self.task_config.vocab_file)

  def build_inputs(self, params: data.TokenDropPretrainDataConfig, input_context=None):
    spec = None
    if params.masking == data_spec.DYNAMIC:
      if not self.task_config.vocab_file:
        raise ValueError("dynamic masking needs task.vocab_file for the [MASK] and ordinary "
                         "token ids")
      spec = masking.MaskingSpec.from_vocab_file(
          self.task_config.vocab_file, params.max_predictions_per_seq, mask_rate=params.mask_rate)
    return data.TokenDropPretrainDataLoader(params, spec).load(input_context)

  def configure_keep_anneal(self, train_steps: int,
                            global_step: tf.Variable | None = None) -> None:
    """Sets the run length that an annealed kept count follows, and the step variable whose
    last training step an as-trained evaluation scores; the trainer calls it."""
    self._keep_anneal = self._encoder_config().keep_anneal(train_steps)
    self._global_step = global_step

  def _evaluated_stage(self) -> tf.Tensor:
    """The kept-count stage of the last training step (0 before any, or without a trainer)."""
    step = getattr(self, "_global_step", None)
    if step is None:
      return tf.constant(0, tf.int32)
    return self.keep_anneal().stage(tf.maximum(tf.convert_to_tensor(step) - 1, 0))

  def keep_anneal(self) -> KeepAnneal:
    anneal = getattr(self, "_keep_anneal", None)
    if anneal is None:
      if self._encoder_config().keep_stages:
        raise ValueError("token_keep_schedule: anneal needs the run's length: train through "
                         "trainer.train (TokenDropTrainer calls configure_keep_anneal)")
      return KeepAnneal(train_steps=1, fraction=0.0, stages=0)
    return anneal

  def build_metrics(self, training=None):
    metrics = super().build_metrics(training)
    if training:
      metrics += [tf_keras.metrics.Mean(name=f"token_importance_{stat}")
                  for stat in ("mean", "std", "min", "max")]
    else:
      metrics += [
          tf_keras.metrics.Mean(name="validation_loss" + AS_TRAINED_SUFFIX),
          tf_keras.metrics.Mean(name="lm_example_loss" + AS_TRAINED_SUFFIX),
          tf_keras.metrics.SparseCategoricalAccuracy(
              name="masked_lm_accuracy" + AS_TRAINED_SUFFIX)]
    return metrics

  # Plain Python over the metric list; nothing for AutoGraph to convert (it cannot parse it).
  @tf.autograph.experimental.do_not_convert
  def validation_step(self, inputs, model: pretrainer.TokenDropBertPretrainer, metrics=None):
    """Scores the batch with the full model and as trained (see the module docstring)."""
    full_depth = [m for m in metrics if not m.name.endswith(AS_TRAINED_SUFFIX)]
    as_trained = {m.name[:-len(AS_TRAINED_SUFFIX)]: m for m in metrics
                  if m.name.endswith(AS_TRAINED_SUFFIX)}
    outputs = model(inputs, training=False)
    loss, _ = self._losses(inputs, outputs, full_depth, model.losses)
    self.process_metrics(full_depth, inputs, outputs)
    if model.drops_tokens:
      if self._encoder_config().keep_stages:
        inputs = dict(inputs, token_keep_stage=self._evaluated_stage())
      dropped_outputs = model(inputs, training=False, drop_tokens=True)
      dropped_loss, prediction_losses = self._losses(inputs, dropped_outputs, [], model.losses)
    else:
      dropped_outputs, dropped_loss = outputs, loss
      prediction_losses = None
    as_trained["validation_loss"].update_state(dropped_loss)
    as_trained["lm_example_loss"].update_state(
        self._mlm_loss(inputs, dropped_outputs, prediction_losses))
    as_trained["masked_lm_accuracy"].update_state(
        inputs[contract.MASKED_IDS], dropped_outputs["mlm_logits"], inputs[contract.MASKED_WEIGHTS])
    return {self.loss: loss}

  def build_losses(self, labels, model_outputs, metrics, aux_losses=None) -> tf.Tensor:
    return self._losses(labels, model_outputs, metrics, aux_losses)[0]

  def _prediction_losses(self, labels, model_outputs) -> tf.Tensor:
    """Each masked prediction's cross-entropy, [batch, max_predictions_per_seq]."""
    return tf_keras.losses.sparse_categorical_crossentropy(
        labels[contract.MASKED_IDS], tf.cast(model_outputs["mlm_logits"], tf.float32),
        from_logits=True)

  def _mlm_loss(self, labels, model_outputs, prediction_losses=None) -> tf.Tensor:
    """The mean loss over the real (weight > 0) predictions."""
    if prediction_losses is None:
      prediction_losses = self._prediction_losses(labels, model_outputs)
    weights = labels[contract.MASKED_WEIGHTS]
    return tf.math.divide_no_nan(tf.reduce_sum(prediction_losses * weights),
                                 tf.reduce_sum(weights))

  def _losses(self, labels, model_outputs, metrics, aux_losses=None):
    """(total loss, per-prediction MLM losses [batch, max_predictions_per_seq]); updates the
    loss metrics among `metrics`."""
    with tf.name_scope("TokenDropMaskedLMTask/losses"):
      metrics = {metric.name: metric for metric in metrics}
      prediction_losses = self._prediction_losses(labels, model_outputs)
      mlm_loss = self._mlm_loss(labels, model_outputs, prediction_losses)
      if "lm_example_loss" in metrics:
        metrics["lm_example_loss"].update_state(mlm_loss)
      total_loss = mlm_loss
      if contract.NEXT_SENTENCE_LABELS in labels:
        sentence_loss = tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(
            labels[contract.NEXT_SENTENCE_LABELS],
            tf.cast(model_outputs["next_sentence"], tf.float32),
            from_logits=True))
        if "next_sentence_loss" in metrics:
          metrics["next_sentence_loss"].update_state(sentence_loss)
        total_loss += sentence_loss
      if aux_losses:
        total_loss += tf.add_n(aux_losses)
      return total_loss, prediction_losses

  def train_step(self, inputs, model: pretrainer.TokenDropBertPretrainer, optimizer, metrics):
    if self._encoder_config().keep_stages:
      # The stage of the step being taken (the trainer's step counts the steps done, and is
      # restored on resume). Not optimizer.iterations: a legacy optimizer creates it lazily,
      # which fails inside MirroredStrategy's replica function.
      step = getattr(self, "_global_step", None)
      step = optimizer.iterations if step is None else step
      inputs = dict(inputs, token_keep_stage=self.keep_anneal().stage(step))
    with tf.GradientTape() as tape:
      outputs = model(inputs, training=True)
      loss, prediction_losses = self._losses(inputs, outputs, metrics, model.losses)
      objective = loss
      if self.task_config.scale_loss:
        objective = loss / tf.distribute.get_strategy().num_replicas_in_sync
      # runtime.mixed_precision_dtype=float16 wraps the optimizer in a loss scaler.
      loss_scaled = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
      if loss_scaled:
        objective = optimizer.get_scaled_loss(objective)
    tvars = model.trainable_variables
    grads = tape.gradient(objective, tvars)
    if loss_scaled:
      grads = optimizer.get_unscaled_gradients(grads)
    optimizer.apply_gradients(list(zip(grads, tvars, strict=True)))

    model.token_importance.update(inputs[contract.MASKED_IDS], prediction_losses,
                                  inputs[contract.MASKED_WEIGHTS])
    self.process_metrics(metrics, inputs, outputs)
    by_name = {m.name: m for m in metrics}
    for stat, value in model.token_importance.statistics().items():
      by_name[f"token_importance_{stat}"].update_state(value)
    return {self.loss: loss}

  def initialize(self, model: pretrainer.TokenDropBertPretrainer):
    """Warm start from task.init_checkpoint (a TF2 BERT checkpoint, a Hugging Face directory,
    or a training checkpoint of this task) and task.init_token_importance (the table of an
    earlier run)."""
    if self.task_config.init_token_importance:
      model.token_importance.assign(
          TokenImportance.read_table(self.task_config.init_token_importance),
          TokenImportance.read_counts(self.task_config.init_token_importance))
      logging.info("Initialized the importance table from %s",
                   self.task_config.init_token_importance)
    path = self.task_config.init_checkpoint
    if not path:
      return
    if tf.io.gfile.isdir(path) and tf.io.gfile.exists(os.path.join(path, "config.json")):
      huggingface.load_huggingface_weights(model, path)
      logging.info("Initialized the encoder and MLM head from the Hugging Face model %s", path)
      return
    if _is_training_checkpoint(path):
      # Another run's ckpt-N: its model (weights, importance table), not its optimizer or step.
      tf.train.Checkpoint(model=model).read(path).expect_partial()
      logging.info("Initialized the model from the training checkpoint %s", path)
      return
    super().initialize(model)


def _is_training_checkpoint(path: str) -> bool:
  """Whether `path` is a checkpoint prefix written by Model Garden's trainer (model/...)."""
  if not tf.io.gfile.exists(path + ".index"):
    return False
  return any(name.startswith("model/")
             for name in tf.train.load_checkpoint(path).get_variable_to_shape_map())

