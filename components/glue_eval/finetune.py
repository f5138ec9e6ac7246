"""Fine-tune the exported checkpoint on one task: an lr grid, several seeds, the median.

Every run starts from the TF2 checkpoint restored into a plain BertEncoderV2, every token
through every layer: the point of token dropping is that the pretrained model is an ordinary
BERT. On it sits Model Garden's BertClassifier (pooled [CLS] -> dropout -> logits; one
output for STS-B's regression), trained with Model Garden's BERT optimizer (AdamW, linear
warmup then linear decay, gradients clipped to norm 1) by Keras' fit.

Model Garden's SentencePredictionTask would need its TFRecord format and an Orbit trainer
around these same two pieces; examples that fit in memory do not need either.

As in BERT's dev results, the learning rate is chosen on dev by the task's score (the median
over seeds), and the dev metrics of that learning rate are reported.
"""

import dataclasses
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
import tf_keras
from official.nlp import optimization
from official.nlp.modeling import models

from components.glue_eval import metrics
from components.glue_eval.data import Example, TaskData
from components.glue_eval.tasks import Task
from components.glue_eval.tokenize import PairEncoder
from trainer import contract, export
from trainer.errors import UserError
from trainer.train_lib import format_seconds

_log = logging.getLogger(__name__)
# Seconds between two progress lines of one task's fine-tuning grid.
PROGRESS_INTERVAL = 15.0


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
  """Fine-tuning hyperparameters; the defaults are BERT's recipe for BERT-base."""
  learning_rates: tuple[float, ...] = (5e-5, 3e-5, 2e-5)
  epochs: int = 3
  batch_size: int = 32
  warmup_fraction: float = 0.1
  max_seq_length: int = 128
  seeds: tuple[int, ...] = (1, 2, 3)
  # The classification head's dropout; the encoder keeps bert_config.json's.
  dropout_rate: float = 0.1
  # Use only the first N training examples (None: all), for quick runs.
  max_train_examples: int | None = None

  def __post_init__(self):
    for name, kind, example in (("learning_rates", float, "[3e-4]"), ("seeds", int, "[1, 2]")):
      values = getattr(self, name)
      if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise UserError(f"bad fine-tuning config: {name} must be a list, e.g. {example}; got "
                        f"{values!r}")
      object.__setattr__(self, name, tuple(kind(x) for x in values))
    problems = []
    if not self.learning_rates or min(self.learning_rates) <= 0:
      problems.append(f"learning_rates {list(self.learning_rates)} must be positive, at least one")
    if not self.seeds:
      problems.append("seeds must name at least one seed")
    for name in ("learning_rates", "seeds"):
      if len(set(getattr(self, name))) != len(getattr(self, name)):
        problems.append(f"{name} {list(getattr(self, name))} repeat a value")
    for name in ("epochs", "batch_size", "max_seq_length"):
      if getattr(self, name) < 1:
        problems.append(f"{name} {getattr(self, name)} must be at least 1")
    if not 0 <= self.warmup_fraction < 1:
      problems.append(f"warmup_fraction {self.warmup_fraction} must be in [0, 1)")
    if not 0 <= self.dropout_rate < 1:
      problems.append(f"dropout_rate {self.dropout_rate} must be in [0, 1)")
    if self.max_train_examples is not None and self.max_train_examples < 1:
      problems.append(f"max_train_examples {self.max_train_examples} must be at least 1")
    if problems:
      raise UserError("bad fine-tuning config: " + "; ".join(problems))

  @classmethod
  def from_dict(cls, values: Mapping) -> "FineTuneConfig":
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
      raise UserError(f"unknown fine-tuning setting(s) {unknown}; known: {sorted(fields)}")
    try:
      return cls(**values)
    except TypeError as e:
      raise UserError(f"bad fine-tuning config {dict(values)}: {e}") from e

  @classmethod
  def from_json(cls, text: str) -> "FineTuneConfig":
    """'{"learning_rates": [1e-4], "epochs": 2}' -> a config; missing keys keep defaults."""
    try:
      values = json.loads(text or "{}")
    except json.JSONDecodeError as e:
      raise UserError(f"fine-tuning config is not valid JSON ({e}): {text!r}") from e
    if not isinstance(values, dict):
      raise UserError(f"fine-tuning config must be a JSON object, got {text!r}")
    return cls.from_dict(values)

  def to_dict(self) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True)


@dataclasses.dataclass(frozen=True)
class Run:
  learning_rate: float
  seed: int
  metrics: dict[str, float]
  score: float


@dataclasses.dataclass(frozen=True)
class TaskResult:
  runs: tuple[Run, ...]  # every (learning rate, seed) pair
  best_learning_rate: float
  metrics: dict[str, float]  # each metric's median over the seeds at the best learning rate
  score: float  # metrics.task_score of those medians
  train_size: int
  dev_sizes: dict[str, int]


def find_checkpoint_dir(path: str) -> str:
  """The export's tf2/ directory, given it or the export root that holds it."""
  path = str(path).rstrip("/")
  for candidate in (path, os.path.join(path, contract.TF2_DIR)):
    if tf.io.gfile.exists(os.path.join(candidate, contract.BERT_CONFIG_FILE)):
      missing = [name for name in (contract.VOCAB_FILE, contract.CHECKPOINT_NAME + ".index")
                 if not tf.io.gfile.exists(os.path.join(candidate, name))]
      if missing:
        raise FileNotFoundError(f"checkpoint directory {candidate!r} lacks {missing}; pass the "
                                "tf2/ directory that `tokendrop export` writes")
      return candidate
  raise FileNotFoundError(f"no exported checkpoint in {path!r}: expected "
                          f"{contract.BERT_CONFIG_FILE}, {contract.CHECKPOINT_NAME}.* and "
                          f"{contract.VOCAB_FILE} there or in "
                          f"{os.path.join(path, contract.TF2_DIR)!r} (`tokendrop export` writes "
                          f"OUT/{contract.TF2_DIR})")


def build_classifier(checkpoint_dir: str, num_classes: int,
                     dropout_rate: float) -> models.BertClassifier:
  """BertClassifier over a plain BertEncoderV2 restored from the exported checkpoint."""
  config_path = os.path.join(checkpoint_dir, contract.BERT_CONFIG_FILE)
  encoder = export.build_bert_encoder_from_bert_config(config_path)
  export.restore_encoder(encoder, checkpoint_dir)
  with tf.io.gfile.GFile(config_path) as f:
    initializer_range = json.load(f)["initializer_range"]
  return models.BertClassifier(
      encoder, num_classes=num_classes, dropout_rate=dropout_rate,
      initializer=tf_keras.initializers.TruncatedNormal(stddev=initializer_range))


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
  features: dict[str, np.ndarray]  # input_word_ids, input_mask, input_type_ids
  labels: np.ndarray  # int32 class ids, or float32 for regression


def encode_split(encoder: PairEncoder, examples: list[Example], task: Task) -> EncodedSplit:
  labels = np.array([e.label for e in examples], np.float32 if task.is_regression else np.int32)
  return EncodedSplit(encoder.encode(examples), labels)


def _padded_rows(count: int, multiple: int) -> np.ndarray:
  """Row indices that fill `count` rows up to a multiple of `multiple` with repeats of the
  first rows: static batch shapes for TPUs (and every replica a full share), without a
  zero-token row that an attention mask would leave with nothing to attend to."""
  return np.arange(-count % multiple) % count


def _predict(model: tf_keras.Model, features: dict[str, np.ndarray], regression: bool,
             batch_size: int) -> np.ndarray:
  """Predictions for every row: the last batch is padded to full size (static shapes) and the
  padding's predictions are dropped, so every dev example is scored once."""
  count = len(next(iter(features.values())))
  rows = np.concatenate([np.arange(count), _padded_rows(count, batch_size)])
  dataset = tf.data.Dataset.from_tensor_slices({name: values[rows] for name, values in
                                                features.items()}).batch(batch_size,
                                                                         drop_remainder=True)
  # Mixed precision's logits are bfloat16 or float16; metrics read float32.
  outputs = np.asarray(model.predict(dataset, verbose=0), np.float32)[:count]
  return outputs[:, 0] if regression else np.argmax(outputs, axis=-1)


def train_dataset(train: EncodedSplit, regression: bool, batch_size: int,
                  seed: int) -> tf.data.Dataset:
  """(features, labels, weights) in batches of exactly `batch_size`: each epoch shuffles the
  examples and pads the last batch with zero-weight repeats, which add nothing to the loss or
  the gradients (Keras divides a batch's weighted loss by its full size)."""
  count = len(train.labels)
  # Regression's head outputs [batch, 1]; its labels get the same shape.
  labels = train.labels[:, None] if regression else train.labels
  examples = tf.data.Dataset.from_tensor_slices(
      (train.features, labels, np.ones(count, np.float32))).shuffle(count, seed=seed)
  pad = _padded_rows(count, batch_size)
  padding = tf.data.Dataset.from_tensor_slices(
      ({name: values[pad] for name, values in train.features.items()}, labels[pad],
       np.zeros(len(pad), np.float32)))
  return examples.concatenate(padding).batch(batch_size, drop_remainder=True)


class GridProgress:
  """Logs "progress: ..." with an ETA for a task's whole grid of runs, at most every
  `interval` seconds; after the first run's first step the rate includes building each
  model and scoring dev, so the ETA covers them too."""

  def __init__(self, task: Task, runs: int, steps_per_run: int,
               interval: float = PROGRESS_INTERVAL, clock=time.monotonic):
    self._task = task
    self._runs = runs
    self._total = runs * steps_per_run
    self._interval = interval
    self._clock = clock
    # Set at the first step: building the first model and tracing its step say nothing of
    # the rate.
    self._start = self._last = None
    self._done = 0

  def step(self, run: int) -> None:
    """One training step of run `run` (1-based) is done."""
    self._done += 1
    now = self._clock()
    if self._start is None:
      self._start = self._last = now
      return
    if now - self._last < self._interval:
      return
    self._last = now
    rate = (self._done - 1) / max(now - self._start, 1e-9)
    _log.info(contract.PROGRESS_PREFIX +
              "fine-tuning %s, run %d/%d, step %d/%d, %.2f steps/s, ETA %s",
              self._task.display_name, run, self._runs, self._done, self._total, rate,
              format_seconds((self._total - self._done) / rate))


class _StepCallback(tf_keras.callbacks.Callback):

  def __init__(self, progress: GridProgress, run: int):
    super().__init__()
    self._progress = progress
    self._run = run

  def on_train_batch_end(self, batch, logs=None):
    self._progress.step(self._run)


def steps_per_run(train_size: int, config: FineTuneConfig) -> int:
  return math.ceil(train_size / config.batch_size) * config.epochs


def fine_tune_once(checkpoint_dir: str, task: Task, train: EncodedSplit,
                   dev: Mapping[str, EncodedSplit], learning_rate: float, seed: int,
                   config: FineTuneConfig, tensorboard_dir: str | None = None,
                   callbacks: list[tf_keras.callbacks.Callback] = (),
                   strategy: tf.distribute.Strategy | None = None) -> Run:
  """One fine-tuning run from the checkpoint, scored on every dev split. Under `strategy`
  (default: the current one) each step's batch is split over its replicas; the model computes
  in the global mixed-precision policy (trainer.train_lib.strategy_for and Model Garden's
  performance.set_mixed_precision_policy set both for a job)."""
  start = time.monotonic()
  regression = task.is_regression
  strategy = strategy or tf.distribute.get_strategy()
  tf_keras.backend.clear_session()
  tf_keras.utils.set_random_seed(seed)
  steps = steps_per_run(len(train.labels), config)
  with strategy.scope():
    model = build_classifier(checkpoint_dir, task.num_classes, config.dropout_rate)
    optimizer = optimization.create_optimizer(
        learning_rate, num_train_steps=steps, num_warmup_steps=int(config.warmup_fraction * steps))
    # Model Garden's AdamWeightDecay clips each replica's gradients before they are summed
    # (TF1's math); Keras' global_clipnorm clips their sum, as one device does, so N replicas
    # train what one device trains.
    optimizer.global_clipnorm, optimizer.gradient_clip_norm = optimizer.gradient_clip_norm, 0.0
    model.compile(
        optimizer=optimizer,
        loss=(tf_keras.losses.MeanSquaredError() if regression else
              tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)))
  callbacks = list(callbacks)
  if tensorboard_dir:
    callbacks.append(tf_keras.callbacks.TensorBoard(tensorboard_dir, write_graph=False))
  model.fit(train_dataset(train, regression, config.batch_size, seed), epochs=config.epochs,
            verbose=0, callbacks=callbacks)
  predictions = {split: _predict(model, data.features, regression, config.batch_size * 4)
                 for split, data in dev.items()}
  values = metrics.task_metrics(task, {split: data.labels for split, data in dev.items()},
                                predictions)
  _log.info("%s, lr %g, seed %d: %s (%.0f s)", task.display_name, learning_rate, seed,
            ", ".join(f"{name} {value:.4f}" for name, value in values.items()),
            time.monotonic() - start)
  return Run(learning_rate, seed, values, metrics.task_score(values))


def _median_score(runs: list[Run]) -> float:
  scores = [run.score for run in runs]
  # A diverged run (NaN predictions) ranks below every finite one.
  return statistics.median(-math.inf if math.isnan(s) else s for s in scores)


def check_replicas(config: FineTuneConfig, strategy: tf.distribute.Strategy) -> None:
  """Each replica takes an equal share of every batch."""
  replicas = strategy.num_replicas_in_sync
  if config.batch_size % replicas:
    raise UserError(f"fine-tuning batch_size {config.batch_size} does not split over the "
                    f"{replicas} replicas of {type(strategy).__name__}; use a multiple of "
                    f"{replicas}")


def fine_tune_task(checkpoint_dir: str, task_data: TaskData, encoder: PairEncoder,
                   config: FineTuneConfig, tensorboard_dir: str | None = None,
                   strategy: tf.distribute.Strategy | None = None) -> TaskResult:
  """Every (learning rate, seed) run; the learning rate with the best median dev score wins."""
  task = task_data.task
  strategy = strategy or tf.distribute.get_strategy()
  check_replicas(config, strategy)
  train = encode_split(encoder, task_data.train.examples[:config.max_train_examples], task)
  dev = {split: encode_split(encoder, data.examples, task) for split, data in task_data.dev.items()}
  runs = []
  grid = [(rate, seed) for rate in config.learning_rates for seed in config.seeds]
  progress = GridProgress(task, len(grid), steps_per_run(len(train.labels), config))
  for number, (learning_rate, seed) in enumerate(grid, start=1):
    log_dir = (os.path.join(tensorboard_dir, task.name, f"lr{learning_rate:g}_seed{seed}")
               if tensorboard_dir else None)
    runs.append(fine_tune_once(checkpoint_dir, task, train, dev, learning_rate, seed, config,
                               log_dir, [_StepCallback(progress, number)], strategy))
  by_rate = {rate: [run for run in runs if run.learning_rate == rate]
             for rate in config.learning_rates}
  # max() keeps the first of equal scores: the grid's order breaks ties.
  best = max(config.learning_rates, key=lambda rate: _median_score(by_rate[rate]))
  medians = {name: statistics.median(run.metrics[name] for run in by_rate[best])
             for name in task.metric_names}
  return TaskResult(runs=tuple(runs), best_learning_rate=best, metrics=medians,
                    score=metrics.task_score(medians), train_size=len(train.labels),
                    dev_sizes={split: len(data.labels) for split, data in dev.items()})
