"""The training binary, with the Model Garden command line of the seed project:

    python -m trainer.train --experiment=token_drop_bert/pretraining \
      --config_file=configs/wiki_books_pretrain_sequence_pack.yaml \
      --config_file=configs/bert_en_uncased_base_token_drop.yaml \
      --params_override=task.train_data.input_path=...,runtime.distribution_strategy=tpu \
      --tpu=local --model_dir=DIR --mode=train_and_eval

`tokendrop train ...` is the same entry point. Modes: train, eval,
train_and_eval, continuous_eval. Strategies: one_device, mirrored,
multi_worker_mirrored (TF_CONFIG), tpu. A restarted run resumes from the
latest checkpoint in --model_dir (weights, optimizer, step, importance table).
"""

import json
import math
import os
import sys
import time

import tensorflow as tf
from absl import app, flags, logging
from official.common import distribute_utils
from official.common import flags as tfm_flags
from official.core import base_trainer, task_factory, train_lib, train_utils
from official.modeling import performance

from trainer import configs, task  # noqa: F401  (registers experiments and the task)

FLAGS = flags.FLAGS
flags.DEFINE_integer(
    "cpu_devices", 0, "Split the host CPU into this many logical devices (before TF starts), so "
    "runtime.distribution_strategy=mirrored runs one replica on each. 0 leaves TF's default.")


class NonFiniteLossError(RuntimeError):
  pass


class ConfigError(ValueError):
  """A config or flag the user can fix; printed as one line, without a traceback."""


class TokenDropTrainer(base_trainer.Trainer):
  """Model Garden's trainer, plus progress with ETA and a stop on non-finite loss."""

  def __init__(self, config, task, *args, **kwargs):
    super().__init__(config, task, *args, **kwargs)
    # Before any step is traced: an annealed kept count follows the run's length and step.
    task.configure_keep_anneal(config.trainer.train_steps, self.global_step)
    self._last_progress = None
    self.eval_metrics_path = None

  def eval_end(self, *args, **kwargs):
    logs = super().eval_end(*args, **kwargs)
    if self.eval_metrics_path and self.strategy.extended.should_checkpoint:
      record = {"step": int(self.global_step.numpy()),
                **{name: float(value) for name, value in logs.items()
                   if tf.convert_to_tensor(value).shape.rank == 0}}
      staged = self.eval_metrics_path + ".tmp"
      with tf.io.gfile.GFile(staged, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
      tf.io.gfile.rename(staged, self.eval_metrics_path, overwrite=True)
    return logs

  def train_loop_end(self):
    logs = super().train_loop_end()
    step = int(self.global_step.numpy())
    loss = float(logs[self.train_loss.name])
    if not math.isfinite(loss):
      # Raised before orbit's controller saves: the last checkpoint stays the last good one.
      raise NonFiniteLossError(
          f"training loss is {loss} at step {step}; stopped without saving. The last good "
          "checkpoint in --model_dir is kept. Lower trainer.optimizer_config.learning_rate, "
          "check the input data, or use runtime.mixed_precision_dtype=float32.")
    now = time.monotonic()
    if self._last_progress is not None:
      last_step, last_time = self._last_progress
      steps_per_sec = (step - last_step) / max(now - last_time, 1e-9)
      remaining = max(self.config.trainer.train_steps - step, 0)
      eta = remaining / steps_per_sec if steps_per_sec > 0 else float("inf")
      logging.info("progress: step %d/%d, %.2f steps/s, loss %.4f, ETA %s", step,
                   self.config.trainer.train_steps, steps_per_sec, loss, _format_seconds(eta))
    self._last_progress = (step, now)
    return logs


def _format_seconds(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "unknown"
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours:d}:{minutes:02d}:{secs:02d}"


def _strategy(params, cpu_devices: int) -> tf.distribute.Strategy:
  runtime = params.runtime
  if runtime.distribution_strategy == "mirrored" and runtime.num_gpus == 0 and cpu_devices > 1:
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpu_devices)])
  return distribute_utils.get_distribution_strategy(
      distribution_strategy=runtime.distribution_strategy,
      all_reduce_alg=runtime.all_reduce_alg,
      num_gpus=runtime.num_gpus,
      tpu_address=runtime.tpu,
      **runtime.model_parallelism())


def _parse_params():
  try:
    params = train_utils.parse_configuration(FLAGS)
  except (KeyError, ValueError, AttributeError, TypeError) as e:
    raise ConfigError(f"bad experiment config ({type(e).__name__}): {e}. Check --experiment, "
                         "--config_file and --params_override keys against "
                         "trainer/configs.py") from e
  return params


def run(argv=None) -> None:
  del argv
  try:
    if FLAGS.cpu_devices > 1:
      split_cpu(FLAGS.cpu_devices)
    if not FLAGS.model_dir:
      raise ConfigError("--model_dir is required: checkpoints and summaries go there")
    run_experiment(_parse_params(), FLAGS.model_dir, FLAGS.mode, FLAGS.cpu_devices)
  except (ConfigError, NonFiniteLossError) as e:
    sys.exit(f"tokendrop train: {e}")


def split_cpu(devices: int) -> None:
  """Makes the host CPU `devices` logical devices; must run before TF initializes them."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * devices)


def run_experiment(params, model_dir: str, mode: str, cpu_devices: int = 0) -> None:
  """Trains and/or evaluates `params` in model_dir: the command line's work, for callers such
  as the TFX Trainer's run_fn. Raises ConfigError or NonFiniteLossError."""
  if "train" in mode:
    # Eval-only jobs do not write it, so a continuous_eval job never races the trainer.
    train_utils.serialize_config(params, model_dir)
  if params.runtime.enable_xla:
    # As Model Garden's keras_utils.set_session_config: XLA auto-clustering of the step's graph.
    # It applies on GPU; on CPU only with TF_XLA_FLAGS=--tf_xla_cpu_global_jit; TPU steps are
    # always compiled by XLA.
    tf.config.optimizer.set_jit("autoclustering")
  if params.runtime.mixed_precision_dtype:
    performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
  strategy = _strategy(params, cpu_devices)
  logging.info("%s with %d replicas", type(strategy).__name__, strategy.num_replicas_in_sync)
  with strategy.scope():
    experiment_task = task_factory.get_task(params.task, logging_dir=model_dir)
    try:
      trainer = train_utils.create_trainer(
          params, experiment_task, train="train" in mode,
          evaluate=("eval" in mode) or mode == "continuous_eval",
          checkpoint_exporter=train_utils.maybe_create_best_ckpt_exporter(params, model_dir),
          trainer_cls=TokenDropTrainer)
    except (ValueError, FileNotFoundError) as e:
      # Model-building errors a user causes (schedule, vocab, ids) name their config key.
      # gin appends "In call to configurable ..." lines to the message; keep the first.
      reason = str(e).strip().splitlines()[0]
      raise ConfigError(f"invalid experiment config: {reason}") from e
  trainer.eval_metrics_path = os.path.join(model_dir, task.EVAL_METRICS_NAME)
  train_lib.run_experiment(distribution_strategy=strategy, task=experiment_task, mode=mode,
                           params=params, model_dir=model_dir, trainer=trainer)


def main(argv: list[str]) -> int:
  """`tokendrop train ARGS`: the same flags as `python -m trainer.train`."""
  tfm_flags.define_flags()
  app.run(run, argv=["tokendrop train", *argv])
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
