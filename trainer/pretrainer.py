"""The token-dropping BERT pretrainer: the encoder, the MLM head and the importance table.

Built from the experiment's model config: the task (trainer/task.py) trains it, and the
export (trainer/export/run.py) rebuilds it to restore a training run's checkpoint.
"""

import tensorflow as tf
import tf_keras
from absl import logging
from official.modeling import tf_utils
from official.nlp.configs import bert
from official.nlp.modeling import layers, models

from trainer import configs, contract, vocab
from trainer.encoder import TokenDropBertEncoder
from trainer.token_importance import TokenImportance


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


def encoder_config(model_config: bert.PretrainerConfig) -> configs.TokenDropBertEncoderConfig:
  """The token-dropping encoder's config, validated."""
  encoder_cfg = model_config.encoder
  if encoder_cfg.type != "any" or not isinstance(encoder_cfg.any,
                                                   configs.TokenDropBertEncoderConfig):
    raise ValueError("task.model.encoder must be `type: any` with a TokenDropBertEncoderConfig "
                     "(the token_drop_bert/* experiments set it up)")
  # Model Garden's validate() checks only restrictions; the encoder's own checks run here.
  encoder_cfg.any.validate()
  return encoder_cfg.any


def _special_ids(encoder_cfg: configs.TokenDropBertEncoderConfig,
                 vocab_file: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """The always-kept and always-dropped ids: explicit ids plus named tokens from the vocab."""
  allow, deny = set(encoder_cfg.token_allow_list), set(encoder_cfg.token_deny_list)
  named = tuple(encoder_cfg.token_allow_tokens) + tuple(encoder_cfg.token_deny_tokens)
  if vocab_file:
    index = {t: i for i, t in enumerate(vocab.load_vocab(vocab_file))}
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


def build_pretrainer(model_config: bert.PretrainerConfig,
                     vocab_file: str) -> TokenDropBertPretrainer:
  """The pretrainer of `model_config` (the experiment's task.model); `vocab_file` (its
  task.vocab_file) resolves the named always-kept and always-dropped tokens."""
  encoder_cfg = encoder_config(model_config)
  allow_ids, deny_ids = _special_ids(encoder_cfg, vocab_file)
  encoder = build_token_drop_encoder(encoder_cfg, allow_ids, deny_ids)
  cls_heads = [layers.ClassificationHead(**head.as_dict()) for head in model_config.cls_heads]
  return TokenDropBertPretrainer(
      token_importance=TokenImportance(vocab_size=encoder_cfg.vocab_size,
                                       init_value=encoder_cfg.token_loss_init_value,
                                       beta=encoder_cfg.token_loss_beta,
                                       estimator=encoder_cfg.token_loss_estimator),
      token_selection=encoder_cfg.token_selection,
      mlm_activation=tf_utils.get_activation(model_config.mlm_activation),
      mlm_initializer=tf_keras.initializers.TruncatedNormal(
          stddev=model_config.mlm_initializer_range),
      encoder_network=encoder,
      classification_heads=cls_heads)
