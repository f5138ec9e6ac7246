"""Typed configs and the registered experiments `token_drop_bert/pretraining` and
`token_drop_bert/baseline`.

The YAML files under configs/ override these defaults, as in Model Garden:
    python -m trainer.train --experiment=token_drop_bert/pretraining \
        --config_file=configs/bert_en_uncased_base_token_drop.yaml ...
"""

import dataclasses

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import optimization
from official.modeling.hyperparams import base_config
from official.nlp.configs import bert, encoders
from official.nlp.tasks import masked_lm

from trainer import data

SELECTION_MODES = ("importance", "random", "none")


@dataclasses.dataclass
class TokenDropBertEncoderConfig(encoders.BertEncoderConfig):
  """BertEncoderConfig plus the token-dropping settings (paper defaults).

  The always-kept and always-dropped ids are the union of the explicit id
  lists (the seed YAML's `token_allow_list`/`token_deny_list`) and the ids of
  the named tokens, looked up in `task.vocab_file`.
  """
  token_loss_init_value: float = 10.0
  token_loss_beta: float = 0.995
  token_keep_k: int = 256
  # When set, overrides token_keep_k as round(ratio * seq_length).
  token_keep_ratio: float | None = None
  # The layer whose queries are the kept tokens; default num_layers // 2 - 1.
  token_drop_layer: int | None = None
  # importance: the paper. random: random-LTD-style ablation. none: plain BERT.
  token_selection: str = "importance"
  token_allow_list: tuple[int, ...] = ()
  token_deny_list: tuple[int, ...] = ()
  token_allow_tokens: tuple[str, ...] = ("[UNK]", "[CLS]", "[SEP]", "[MASK]")
  token_deny_tokens: tuple[str, ...] = ("[PAD]",)

  def validate(self):
    super().validate()
    if self.token_selection not in SELECTION_MODES:
      raise ValueError(f"token_selection must be one of {SELECTION_MODES}, got "
                       f"{self.token_selection!r}")
    if not 0.0 < self.token_loss_beta < 1.0:
      raise ValueError(f"token_loss_beta must be in (0, 1), got {self.token_loss_beta}")


@dataclasses.dataclass
class TokenDropMaskedLMConfig(masked_lm.MaskedLMConfig):
  """MaskedLMConfig plus the vocab that the special ids and dynamic masking derive from."""
  vocab_file: str = ""
  # A token_importance.npy written by `tokendrop export`: warm-started runs continue the table.
  init_token_importance: str = ""
  train_data: data.TokenDropPretrainDataConfig = dataclasses.field(
      default_factory=data.TokenDropPretrainDataConfig)
  validation_data: data.TokenDropPretrainDataConfig = dataclasses.field(
      default_factory=lambda: data.TokenDropPretrainDataConfig(is_training=False))


def _experiment(token_selection: str) -> cfg.ExperimentConfig:
  return cfg.ExperimentConfig(
      runtime=cfg.RuntimeConfig(enable_xla=True),
      task=TokenDropMaskedLMConfig(
          model=bert.PretrainerConfig(
              encoder=encoders.EncoderConfig(
                  type="any",
                  any=TokenDropBertEncoderConfig(vocab_size=30522,
                                                 token_selection=token_selection)),
              cls_heads=[]),
          # No NSP head by default (cls_heads=[]), so no NSP labels: the seed's packed data.
          train_data=data.TokenDropPretrainDataConfig(use_next_sentence_label=False,
                                                      use_v2_feature_names=True),
          validation_data=data.TokenDropPretrainDataConfig(is_training=False,
                                                           use_next_sentence_label=False,
                                                           use_v2_feature_names=True)),
      trainer=cfg.TrainerConfig(
          train_steps=1000000,
          optimizer_config=optimization.OptimizationConfig({
              "optimizer": {
                  "type": "adamw",
                  "adamw": {
                      "weight_decay_rate": 0.01,
                      "exclude_from_weight_decay": ["LayerNorm", "layer_norm", "bias"],
                  },
              },
              "learning_rate": {
                  "type": "polynomial",
                  "polynomial": {"initial_learning_rate": 1e-4, "end_learning_rate": 0.0,
                                 "decay_steps": 1000000},
              },
              "warmup": {"type": "polynomial", "polynomial": {"warmup_steps": 10000}},
          })),
      restrictions=["task.train_data.is_training != None",
                    "task.validation_data.is_training != None"])


@exp_factory.register_config_factory("token_drop_bert/pretraining")
def token_drop_bert_pretraining() -> cfg.ExperimentConfig:
  """BERT MLM pretraining with importance-based token dropping."""
  return _experiment("importance")


@exp_factory.register_config_factory("token_drop_bert/baseline")
def token_drop_bert_baseline() -> cfg.ExperimentConfig:
  """The same experiment with token dropping off: plain BERT, for comparisons."""
  return _experiment("none")


@base_config.bind(TokenDropBertEncoderConfig)
def _build_encoder_from_explicit_ids(encoder_cfg: TokenDropBertEncoderConfig):
  """`encoders.build_encoder` support; the task resolves token names from the vocab too."""
  from trainer import task

  return task.build_token_drop_encoder(encoder_cfg, allow_ids=encoder_cfg.token_allow_list,
                                       deny_ids=encoder_cfg.token_deny_list)
