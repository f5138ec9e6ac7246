"""Typed configs and the registered experiments `token_drop_bert/pretraining` and
`token_drop_bert/baseline`.

The YAML files under configs/ override these defaults, as in Model Garden:
    python -m trainer.train --experiment=token_drop_bert/pretraining \
        --config_file=configs/bert_en_uncased_base_token_drop.yaml ...
"""

import dataclasses
import os

import tensorflow as tf
import yaml
from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams, optimization
from official.nlp.configs import bert, encoders
from official.nlp.tasks import masked_lm

from trainer import contract, data, data_spec
from trainer.encoder import KEEP_SCHEDULES, KeepAnneal, TokenDropSchedule
from trainer.errors import UserError, first_line
from trainer.token_importance import ESTIMATORS

SELECTION_MODES = ("importance", "random", "none")
PRETRAINING = "token_drop_bert/pretraining"
BASELINE = "token_drop_bert/baseline"
EXPERIMENTS = (PRETRAINING, BASELINE)


@dataclasses.dataclass
class TokenDropBertEncoderConfig(encoders.BertEncoderConfig):
  """BertEncoderConfig plus the token-dropping settings (paper defaults).

  The always-kept and always-dropped ids are the union of the explicit id
  lists (the seed YAML's `token_allow_list`/`token_deny_list`) and the ids of
  the named tokens, looked up in `task.vocab_file`.
  """
  token_loss_init_value: float = 10.0
  token_loss_beta: float = 0.995
  # ema: the paper's moving average. bias_corrected: the same table with the initial value's
  # remaining weight divided out (trainer/token_importance.py), informative from the first updates.
  token_loss_estimator: str = "ema"
  token_keep_k: int = 256
  # When set, overrides token_keep_k as round(ratio * seq_length).
  token_keep_ratio: float | None = None
  # The layer whose queries are the kept tokens; default num_layers // 2 - 1.
  token_drop_layer: int | None = None
  # importance: the paper. random: random-LTD-style ablation. none: plain BERT.
  token_selection: str = "importance"
  # constant: the paper. anneal: over the last token_keep_anneal_fraction of
  # trainer.train_steps the kept count rises in token_keep_anneal_stages equal steps
  # to the full sequence (the last stage is plain BERT), as random-LTD grows its length.
  token_keep_schedule: str = "constant"
  token_keep_anneal_fraction: float = 0.2
  token_keep_anneal_stages: int = 4
  token_allow_list: tuple[int, ...] = ()
  token_deny_list: tuple[int, ...] = ()
  token_allow_tokens: tuple[str, ...] = contract.ALWAYS_KEPT_TOKENS
  token_deny_tokens: tuple[str, ...] = contract.ALWAYS_DROPPED_TOKENS

  def validate(self):
    super().validate()
    if self.token_selection not in SELECTION_MODES:
      raise ValueError(f"token_selection must be one of {SELECTION_MODES}, got "
                       f"{self.token_selection!r}")
    if not 0.0 < self.token_loss_beta < 1.0:
      raise ValueError(f"token_loss_beta must be in (0, 1), got {self.token_loss_beta}")
    if self.token_loss_estimator not in ESTIMATORS:
      raise ValueError(f"token_loss_estimator must be one of {ESTIMATORS}, got "
                       f"{self.token_loss_estimator!r}")
    if self.token_keep_schedule not in KEEP_SCHEDULES:
      raise ValueError(f"token_keep_schedule must be one of {KEEP_SCHEDULES}, got "
                       f"{self.token_keep_schedule!r}")
    if not 0.0 < self.token_keep_anneal_fraction <= 1.0:
      raise ValueError("token_keep_anneal_fraction must be in (0, 1], got "
                       f"{self.token_keep_anneal_fraction}")
    if self.token_keep_anneal_stages < 1:
      raise ValueError("token_keep_anneal_stages must be at least 1, got "
                       f"{self.token_keep_anneal_stages}")

  def layer_schedule(self) -> TokenDropSchedule:
    """Which layers see which tokens (`token_selection: none` drops nothing)."""
    if self.token_selection == "none":
      return TokenDropSchedule.from_encoder_args(self.num_layers, keep_ratio=1.0,
                                                 drop_layer=self.token_drop_layer)
    if self.token_keep_ratio is not None:
      return TokenDropSchedule.from_encoder_args(self.num_layers, keep_ratio=self.token_keep_ratio,
                                                 drop_layer=self.token_drop_layer)
    return TokenDropSchedule.from_encoder_args(self.num_layers, keep_k=self.token_keep_k,
                                               drop_layer=self.token_drop_layer)

  @property
  def keep_stages(self) -> int:
    """The encoder's `token_keep_stages`: 0 unless a dropping run anneals its kept count."""
    if self.token_keep_schedule == "anneal" and self.layer_schedule().drops_tokens:
      return self.token_keep_anneal_stages
    return 0

  def keep_anneal(self, train_steps: int) -> KeepAnneal:
    """When each kept-count stage starts in a run of `train_steps`."""
    fraction = self.token_keep_anneal_fraction if self.keep_stages else 0.0
    return KeepAnneal(train_steps=train_steps, fraction=fraction, stages=self.keep_stages)


@dataclasses.dataclass
class TokenDropMaskedLMConfig(masked_lm.MaskedLMConfig):
  """MaskedLMConfig plus the vocab that the special ids and dynamic masking derive from."""
  vocab_file: str = ""
  # A token_importance.npy written by `tokendrop export`: warm-started runs continue the table.
  init_token_importance: str = ""
  # TensorFlow's global seed, set before the model is built: the same config starts from the
  # same weights (and draws the same dropout masks in the same order).
  init_seed: int = 0
  train_data: data.TokenDropPretrainDataConfig = dataclasses.field(
      default_factory=data.TokenDropPretrainDataConfig)
  validation_data: data.TokenDropPretrainDataConfig = dataclasses.field(
      default_factory=lambda: data.TokenDropPretrainDataConfig(is_training=False))


def _experiment(token_selection: str) -> cfg.ExperimentConfig:
  return cfg.ExperimentConfig(
      # enable_xla: under one_device the whole train step is one XLA computation
      # (TokenDropTrainer in trainer/train_lib.py); a TPU compiles every step anyway.
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


@exp_factory.register_config_factory(PRETRAINING)
def token_drop_bert_pretraining() -> cfg.ExperimentConfig:
  """BERT MLM pretraining with importance-based token dropping."""
  return _experiment("importance")


@exp_factory.register_config_factory(BASELINE)
def token_drop_bert_baseline() -> cfg.ExperimentConfig:
  """The same experiment with token dropping off: plain BERT, for comparisons."""
  return _experiment("none")


CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def config_path(name: str) -> str:
  """A config file: a path as given, or a bare name from the project's configs/ folder."""
  if os.path.dirname(name) or "://" in name or os.path.exists(name):
    return name
  return os.path.join(CONFIG_DIR, name)


def build_experiment(experiment: str, config_files=(), params_override: dict | str = "",
                     overrides=None, data: data_spec.DataSpec | None = None,
                     read_data_spec: bool = True) -> cfg.ExperimentConfig:
  """The experiment config that `tokendrop train` and the Trainer's run_fn run, validated.

  Applied in order: the registered experiment, each YAML file, `overrides` (what the caller
  fills in: paths, steps; a dict, or a function of the config so far that returns one), the
  data's spec, then `params_override` (a nested dict or a Model Garden string).

  The data's spec (trainer/data_spec.py) is `data` when given (the same for both splits), else
  the record found next to each split's input_path unless `read_data_spec` is False (a saved
  config, already derived). It sets the loader keys the data decides, over what the YAML files
  say; a params_override value that contradicts it is refused.
  Raises UserError naming the experiment, file or key at fault.
  """
  if experiment not in EXPERIMENTS:
    raise UserError(f"unknown experiment {experiment!r}; choose one of {list(EXPERIMENTS)}")
  params = exp_factory.get_exp_config(experiment)
  for name in config_files:
    path = config_path(name)
    if not tf.io.gfile.exists(path):
      raise UserError(f"config file {name!r} does not exist (looked for {path!r}); pass a YAML "
                      f"path, or the bare name of a file in {CONFIG_DIR}")
    params = _override(params, path, f"config file {path!r}")
  if callable(overrides):
    overrides = overrides(params)
  if overrides:
    params = _override(params, overrides, "the run's settings")
  if data is not None:
    specs = dict.fromkeys(data_spec.DATA_CONFIGS, data)
  elif read_data_spec:
    specs = _recorded_specs(params, params_override)
  else:
    specs = {}
  data_spec.fill(params, specs)
  if params_override:
    params = _override(params, params_override, "params_override")
  data_spec.check(params, specs)
  try:
    params.validate()
    encoder = params.task.model.encoder
    if encoder.type != "any" or not isinstance(encoder.any, TokenDropBertEncoderConfig):
      raise ValueError("task.model.encoder must be `type: any` with the token_drop_bert "
                       "encoder; keep the experiment's encoder section")
    encoder.any.validate()
  except (KeyError, ValueError, AttributeError, TypeError) as e:
    raise UserError(f"invalid experiment config: {first_line(e)}") from e
  return params


def _recorded_specs(params: cfg.ExperimentConfig,
                    params_override: dict | str) -> dict[str, data_spec.DataSpec]:
  """The spec of each data config's data, found from its input_path as params_override sets
  it (the CLI's paths come in there)."""
  final = params
  if params_override:
    final = _override(params.replace(), params_override, "params_override")
  specs = {}
  for name in data_spec.DATA_CONFIGS:
    patterns = data.input_patterns(getattr(final.task, name).input_path)
    spec = data_spec.find(patterns, f"task.{name}.input_path")
    if spec is not None:
      specs[name] = spec
  return specs


def _override(params: cfg.ExperimentConfig, override, source: str) -> cfg.ExperimentConfig:
  try:
    return hyperparams.override_params_dict(params, override, is_strict=True)
  except (KeyError, ValueError, AttributeError, TypeError, yaml.YAMLError) as e:
    raise UserError(f"{source} does not fit the experiment config: {first_line(e)}; check its "
                    "keys against trainer/configs.py and the YAML files under configs/") from e
