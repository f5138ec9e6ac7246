"""The Trainer components: TFX's, with executors that record the key figures on the Model.

    trainer = Trainer(run_fn="trainer.run_fn.run_fn", examples=..., ...)        # in-process
    trainer = VertexTrainer(run_fn="trainer.run_fn.run_fn", examples=..., ...)  # Vertex job

Inputs, outputs and parameters are TFX's Trainer's (tfx.components.Trainer and
tfx.extensions.google_cloud_ai_platform.Trainer); executor.py says what the executors add.
"""

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components.pretrain import executor


class Trainer(tfx.components.Trainer):
  """TFX's Trainer, training in-process; its Model carries the run's key figures."""

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)


class VertexTrainer(tfx.extensions.google_cloud_ai_platform.Trainer):
  """TFX's Vertex Trainer, training in a Vertex CustomJob; its Model carries the run's key
  figures. Its node id is its class name unless the pipeline gives it one."""

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.VertexExecutor)
