"""Running an experiment: the strategy, Model Garden's trainer with our additions, the loop.

`tokendrop train` (trainer/train.py) and the TFX Trainer's run_fn (trainer/run_fn.py) both
call `run_experiment`.
"""

import json
import math
import os
import time

import tensorflow as tf
import tf_keras
from absl import logging
from official.common import distribute_utils
from official.core import base_trainer, task_factory, train_lib, train_utils
from official.modeling import performance

from trainer import configs, contract  # noqa: F401  (configs registers the experiments)
from trainer import task as _task  # noqa: F401  (registers the task)
from trainer.errors import RunStopped, UserError, first_line

MODES = ("train", "eval", "train_and_eval", "continuous_eval")
# Model Garden's RecoveryCondition starts the message it raises with this.
_DIVERGED = "The loss value is"


class TrainingDivergedError(RunStopped):
  """The loss left trainer.loss_upper_bound (or became NaN) more often than recovery allows."""


class TokenDropTrainer(base_trainer.Trainer):
  """Model Garden's trainer, plus the kept-count schedule, eval_metrics.json, an ETA, and
  `runtime.enable_xla` compiling the whole train step under one_device (`compiles_train_step`)."""

  def __init__(self, config, task, *args, **kwargs):
    super().__init__(config, task, *args, **kwargs)
    # Before any step is traced: an annealed kept count follows the run's length and step.
    task.configure_keep_anneal(config.trainer.train_steps, self.global_step)
    if kwargs.get("train", True) and self.checkpoints_input_position:
      # Made now, before the checkpoint is restored, so that it is restored too: a resumed run
      # (a restarted job, a retried task) reads on from where the checkpoint was written and
      # trains on what an uninterrupted run would have. Orbit uses it as its train iterator.
      self._train_iter = iter(self.train_dataset)
      self.checkpoint.train_input = self._train_iter
    self._last_progress = None
    self.eval_metrics_path = None
    self._task_train_step = (tf.function(task.train_step, jit_compile=True)
                             if self.compiles_train_step else task.train_step)
    if (config.runtime.enable_xla and not self.compiles_train_step
        and not isinstance(self.strategy, tf.distribute.TPUStrategy)):
      logging.info("runtime.enable_xla compiles the whole train step under one_device only; "
                   "under %s XLA auto-clustering applies instead", type(self.strategy).__name__)

  @property
  def checkpoints_input_position(self) -> bool:
    """Whether checkpoints hold the training input's position (tf.data's iterator state: the
    file order, the shuffle buffer, the masking stream's index): under one_device, whose
    input is the dataset itself (distribute_dataset), which tf.train.Checkpoint can save.

    tf.train.Checkpoint saves no tf.distribute iterator (measured with TF 2.21: a checkpoint
    holding one has no entry for it), so under mirrored, multi-worker and TPU strategies a
    resumed run starts its input at a new epoch, as Model Garden's trainer does everywhere: no
    weights, optimizer state, step or importance table are lost, but it sees the examples in
    another order than an uninterrupted run.
    """
    return isinstance(self.strategy, tf.distribute.OneDeviceStrategy)

  def distribute_dataset(self, dataset_or_fn, *args, **kwargs):
    """Under one_device, the dataset itself (one device needs no distribution, and its
    iterator can be checkpointed); otherwise Model Garden's distributed dataset."""
    if not isinstance(self.strategy, tf.distribute.OneDeviceStrategy):
      return super().distribute_dataset(dataset_or_fn, *args, **kwargs)
    if isinstance(dataset_or_fn, tf.data.Dataset):
      return dataset_or_fn
    return dataset_or_fn(*args, input_context=None, **kwargs)

  @property
  def compiles_train_step(self) -> bool:
    """Whether the task's train step (forward, loss, gradients, optimizer, importance table,
    metrics) runs as one XLA computation: with runtime.enable_xla, under one_device.

    Under mirrored and multi_worker_mirrored, the optimizer aggregates gradients with a
    merge_call, which cannot run inside a nested tf.function; a TPU strategy compiles every
    step with XLA already. (Model Garden's trainer compiles the step only on GPU.)
    """
    return (self.config.runtime.enable_xla
            and isinstance(self.strategy, tf.distribute.OneDeviceStrategy))

  def train_step(self, iterator):
    """Model Garden's train step, with the task's step compiled as `compiles_train_step` says."""

    def step_fn(inputs):
      logs = self._task_train_step(inputs, model=self.model, optimizer=self.optimizer,
                                   metrics=self.train_metrics)
      self._train_loss.update_state(logs[self.task.loss])
      self.global_step.assign_add(1)

    self.strategy.run(step_fn, args=(self.next_train_inputs(iterator),),
                      options=self._runtime_options)

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
    now = time.monotonic()
    if self._last_progress is not None:
      last_step, last_time = self._last_progress
      steps_per_sec = (step - last_step) / max(now - last_time, 1e-9)
      remaining = max(self.config.trainer.train_steps - step, 0)
      eta = remaining / steps_per_sec if steps_per_sec > 0 else float("inf")
      logging.info(contract.PROGRESS_PREFIX + "step %d/%d, %.2f steps/s, loss %.4f, ETA %s", step,
                   self.config.trainer.train_steps, steps_per_sec,
                   float(logs[self.train_loss.name]), format_seconds(eta))
    self._last_progress = (step, now)
    return logs


def format_seconds(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "unknown"
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours:d}:{minutes:02d}:{secs:02d}"


def split_cpu(devices: int) -> None:
  """Makes the host CPU `devices` logical devices.

  TF fixes its devices when it first uses them, so this must run before that, except when the
  CPU is already split this way: a second run in one process (LocalDagRunner trains in-process,
  once per pipeline run) finds the split it asked for the first time.
  """
  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu) or []
  if len(current) == devices:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
  except RuntimeError as e:
    raise UserError(f"cannot split the CPU into {devices} devices: TensorFlow already uses it "
                    f"as {max(len(current), 1)} in this process; split it before TensorFlow "
                    "starts (a new process)") from e


def strategy_for(runtime, cpu_devices: int = 0) -> tf.distribute.Strategy:
  """The strategy of Model Garden's RuntimeConfig `runtime` (mirrored over `cpu_devices`
  logical CPUs when it names no GPU and cpu_devices > 1; split_cpu makes them); raises
  UserError when the accelerator it asks for is not here (a job that asked for a TPU or GPUs
  must not train on the CPU, or die in a TPU op's traceback). The Trainer and the GLUE
  fine-tuning jobs (components/glue_eval/job.py) both run under it."""
  if runtime.distribution_strategy == "mirrored" and runtime.num_gpus == 0 and cpu_devices > 1:
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpu_devices)])
  gpus = len(tf.config.list_physical_devices("GPU"))
  if runtime.num_gpus > gpus:
    raise UserError(f"runtime.num_gpus is {runtime.num_gpus} but TensorFlow sees {gpus} GPU(s) "
                    "here; train where they are, or set runtime.num_gpus to what is here")
  try:
    return distribute_utils.get_distribution_strategy(
        distribution_strategy=runtime.distribution_strategy,
        all_reduce_alg=runtime.all_reduce_alg,
        num_gpus=runtime.num_gpus,
        tpu_address=runtime.tpu,
        **runtime.model_parallelism())
  except (tf.errors.OpError, ValueError) as e:
    if runtime.distribution_strategy != "tpu":
      raise
    raise UserError(f"runtime.distribution_strategy is tpu but TensorFlow finds no TPU here "
                    f"(runtime.tpu {runtime.tpu!r}: {first_line(e)}); run on a TPU VM with the "
                    "training image (Dockerfile.train), or set runtime.distribution_strategy "
                    "to one_device or mirrored") from None


def run_experiment(params, model_dir: str, mode: str, cpu_devices: int = 0) -> None:
  """Trains and/or evaluates `params` in model_dir.

  Raises UserError for a bad mode or model config, and TrainingDivergedError when Model
  Garden's recovery (trainer.loss_upper_bound, trainer.recovery_max_trials) gives up; it
  raises before the loop's checkpoint is saved, so the last checkpoint is the last good one.
  """
  if mode not in MODES:
    raise UserError(f"--mode {mode!r} is not one of {list(MODES)}")
  if not model_dir:
    raise UserError("--model_dir is required: checkpoints and summaries go there")
  if "train" in mode:
    # Eval-only jobs do not write it, so a continuous_eval job never races the trainer.
    train_utils.serialize_config(params, model_dir)
  # Both settings are process-wide, so each run sets them, off included: a later run in the
  # same process (LocalDagRunner's in-process Trainer) must not inherit an earlier run's.
  # As Model Garden's keras_utils.set_session_config: XLA auto-clustering, for what
  # TokenDropTrainer does not compile whole (evaluation; training under mirrored). It applies
  # on GPU; on CPU only with TF_XLA_FLAGS=--tf_xla_cpu_global_jit.
  tf.config.optimizer.set_jit("autoclustering" if params.runtime.enable_xla else False)
  performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype or tf.float32)
  strategy = strategy_for(params.runtime, cpu_devices)
  # Python's, NumPy's and TensorFlow's seeds: tf_keras draws an unseeded initializer's seed
  # from Python's random module.
  tf_keras.utils.set_random_seed(params.task.init_seed)
  # Printed too, as orbit prints the steps and evaluations: the run's report, which
  # `tokendrop train` shows while the logs go to its log file.
  replicas = f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replicas"
  logging.info(replicas)
  print(replicas)
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
      raise UserError(f"invalid experiment config: {first_line(e)}") from e
  trainer.eval_metrics_path = os.path.join(model_dir, contract.EVAL_METRICS_FILE)
  try:
    train_lib.run_experiment(distribution_strategy=strategy, task=experiment_task, mode=mode,
                             params=params, model_dir=model_dir, trainer=trainer)
  except RuntimeError as e:
    if not str(e).startswith(_DIVERGED):
      raise
    raise TrainingDivergedError(
        f"{first_line(e)}; stopped without saving. The last good checkpoint in {model_dir} is "
        "kept. Lower trainer.optimizer_config.learning_rate, check the input data, use "
        "runtime.mixed_precision_dtype=float32, or set trainer.recovery_max_trials to roll back "
        "to the last checkpoint and retry.") from e
