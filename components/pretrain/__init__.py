"""Pretraining as a TFX component: TFX's own Trainer running trainer.run_fn, whose executors
also record the run's key figures (steps, validation losses) on the Model artifact.

executor.py: `Executor` (in-process training) and `VertexExecutor` (a Vertex CustomJob).
component.py: `Trainer` and `VertexTrainer`, TFX's two Trainer components with those executors.
"""
