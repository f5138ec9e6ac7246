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
"""

import os

import tensorflow as tf
import tf_keras
from absl import logging
from official.core import task_factory
from official.modeling import tf_utils
from official.nlp.modeling import layers, models
from official.nlp.tasks import masked_lm

from trainer import configs, contract, data, masking, vocab
from trainer.encoder import KeepAnneal, TokenDropBertEncoder
from trainer.token_importance import TokenImportance

AS_TRAINED_SUFFIX = contract.AS_TRAINED_SUFFIX


def build_token_drop_encoder(encoder_cfg: configs.TokenDropBertEncoderConfig,
                             allow_ids: tuple[int, ...],
                             deny_ids: tuple[int, ...]) -> TokenDropBertEncoder:
  schedule = encoder_cfg.layer_schedule()
  return TokenDropBertEncoder(
      vocab_size=encoder_cfg.vocab_size,
      hidden_size=encoder_cfg.hidden_size,
      num_layers=encoder_cfg.num_layers,
      num_attention_heads=encoder_cfg.num_attention_heads,
      intermediate_size=encoder_cfg.intermediate_size,
      activation=tf_utils.get_activation(encoder_cfg.hidden_activation),
      dropout_rate=encoder_cfg.dropout_rate,
      attention_dropout_rate=encoder_cfg.attention_dropout_rate,
      max_sequence_length=encoder_cfg.max_position_embeddings,
      type_vocab_size=encoder_cfg.type_vocab_size,
      initializer=tf_keras.initializers.TruncatedNormal(stddev=encoder_cfg.initializer_range),
      output_range=encoder_cfg.output_range,
      embedding_width=encoder_cfg.embedding_size,
      norm_first=encoder_cfg.norm_first,
      token_drop_layer=schedule.drop_layer,
      token_keep_k=schedule.keep_k,
      token_keep_ratio=schedule.keep_ratio,
      token_keep_stages=encoder_cfg.keep_stages,
      token_allow_ids=tuple(sorted(set(allow_ids))),
      token_deny_ids=tuple(sorted(set(deny_ids))))


class TokenDropBertPretrainer(models.BertPretrainerV2):
  """BertPretrainerV2 that owns the importance table and feeds it to the encoder.

  The table is a model attribute, so training checkpoints carry it (resume,
  warm start); `checkpoint_items` (encoder, masked_lm) stay those of a plain
  BERT pretrainer.

  `call(inputs, training, drop_tokens)`: tokens are dropped when `drop_tokens`
  (default: `training`), selected as in training; an annealing encoder also
  takes the kept-count stage, `inputs["token_keep_stage"]`. Random
  scores are fresh in training and, for evaluation, seeded by the batch's
  content so every evaluation of a checkpoint drops the same tokens.
  """

  def __init__(self, token_importance: TokenImportance, token_selection: str, **kwargs):
    super().__init__(**kwargs)
    self.token_importance = token_importance
    self._token_selection = token_selection

  @property
  def drops_tokens(self) -> bool:
    return self._token_selection != "none"

  def call(self, inputs, training=None, drop_tokens=None):
    if drop_tokens is None:
      drop_tokens = training
    if drop_tokens and self.drops_tokens:
      word_ids = inputs[contract.WORD_IDS]
      if self._token_selection == "importance":
        importance = self.token_importance.lookup(word_ids)
      elif training:
        importance = tf.random.uniform(tf.shape(word_ids))
      else:
        content = tf.reduce_sum(tf.cast(word_ids, tf.int64) *
                                tf.range(1, tf.shape(word_ids)[1] + 1, dtype=tf.int64))
        importance = tf.random.stateless_uniform(tf.shape(word_ids),
                                                 seed=tf.stack([content, 0]))
      inputs = dict(inputs, token_importance=importance)
    return super().call(inputs)


@task_factory.register_task_cls(configs.TokenDropMaskedLMConfig)
class TokenDropMaskedLMTask(masked_lm.MaskedLMTask):
  """MLM pretraining with token dropping; `token_selection: none` is the BERT baseline."""

  def _encoder_config(self) -> configs.TokenDropBertEncoderConfig:
    encoder_cfg = self.task_config.model.encoder
    if encoder_cfg.type != "any" or not isinstance(encoder_cfg.any,
                                                     configs.TokenDropBertEncoderConfig):
      raise ValueError("task.model.encoder must be `type: any` with a TokenDropBertEncoderConfig "
                       "(the token_drop_bert/* experiments set it up)")
    # Model Garden's validate() checks only restrictions; the encoder's own checks run here.
    encoder_cfg.any.validate()
    return encoder_cfg.any

  def _special_ids(self, encoder_cfg) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The always-kept and always-dropped ids: explicit ids plus named tokens from the vocab."""
    allow, deny = set(encoder_cfg.token_allow_list), set(encoder_cfg.token_deny_list)
    named = tuple(encoder_cfg.token_allow_tokens) + tuple(encoder_cfg.token_deny_tokens)
    if self.task_config.vocab_file:
      index = {t: i for i, t in enumerate(vocab.load_vocab(self.task_config.vocab_file))}
      if len(index) != encoder_cfg.vocab_size:
        raise ValueError(f"task.vocab_file has {len(index)} tokens but "
                         f"task.model.encoder.any.vocab_size is {encoder_cfg.vocab_size}; "
                         "make them agree")
      missing = [t for t in named if t not in index]
      if missing:
        raise ValueError(f"task.vocab_file lacks {missing}, named in token_allow_tokens/"
                         "token_deny_tokens; fix the vocab or the lists")
      allow |= {index[t] for t in encoder_cfg.token_allow_tokens}
      deny |= {index[t] for t in encoder_cfg.token_deny_tokens}
    elif named and not (allow or deny):
      raise ValueError(f"task.vocab_file is empty, so {list(named)} cannot be resolved to ids; "
                       "set task.vocab_file, or give token_allow_list/token_deny_list ids")
    elif named:
      logging.info("task.vocab_file is empty: using the explicit token_allow_list %s and "
                   "token_deny_list %s only", sorted(allow), sorted(deny))
    both = allow & deny
    if both:
      raise ValueError(f"ids {sorted(both)} are both always kept and always dropped; remove "
                       "them from one list")
    return tuple(sorted(allow)), tuple(sorted(deny))

  def build_model(self, params=None) -> TokenDropBertPretrainer:
    config = params or self.task_config.model
    encoder_cfg = self._encoder_config()
    allow_ids, deny_ids = self._special_ids(encoder_cfg)
    encoder = build_token_drop_encoder(encoder_cfg, allow_ids, deny_ids)
    cls_heads = [layers.ClassificationHead(**head.as_dict()) for head in config.cls_heads]
    return TokenDropBertPretrainer(
        token_importance=TokenImportance(vocab_size=encoder_cfg.vocab_size,
                                         init_value=encoder_cfg.token_loss_init_value,
                                         beta=encoder_cfg.token_loss_beta,
                                         estimator=encoder_cfg.token_loss_estimator),
        token_selection=encoder_cfg.token_selection,
        mlm_activation=tf_utils.get_activation(config.mlm_activation),
        mlm_initializer=tf_keras.initializers.TruncatedNormal(
            stddev=config.mlm_initializer_range),
        encoder_network=encoder,
        classification_heads=cls_heads)

  def build_inputs(self, params: data.TokenDropPretrainDataConfig, input_context=None):
    spec = None
    if getattr(params, "masking", "static") == "dynamic":
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
  def validation_step(self, inputs, model: TokenDropBertPretrainer, metrics=None):
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

  def train_step(self, inputs, model: TokenDropBertPretrainer, optimizer, metrics):
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

  def initialize(self, model: TokenDropBertPretrainer):
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
      from trainer import export

      export.load_huggingface_weights(model, path)
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

