"""A GLUE fine-tuning job: one task's whole grid under a distribution strategy.

    python -m components.glue_eval.job --checkpoint gs://.../Format-Serving --task MNLI \\
        --glue_dir gs://.../glue_data --output_dir gs://.../evaluation \\
        --finetune_config '{"learning_rates": [5e-5, 3e-5, 2e-5]}' \\
        --runtime '{"distribution_strategy": "tpu", "tpu": "local",
                    "mixed_precision_dtype": "bfloat16"}'

GlueEvaluator starts one per task, in parallel, as Vertex custom jobs in the training image
(Dockerfile.train: TensorFlow for TPU VMs; nothing here imports TFX), and the rehearsal runs
the same commands as local processes (components/glue_eval/jobs.py). --runtime is Model
Garden's RuntimeConfig, as the Trainer's runtime: the strategy (one_device, mirrored, tpu),
the TPU address, the GPU count and the mixed-precision dtype. The job writes the task's
report entry to OUTPUT_DIR/tasks/TASK.json (report.task_entry) and its TensorBoard logs to
OUTPUT_DIR/tensorboard/TASK/; GlueEvaluator builds the one report from the entries.

A mistake (a bad flag, a missing file, an accelerator that is not here) prints one line and
exits 2.
"""

import json
import logging
import os
import sys

from trainer.errors import ArgumentParser, UserError, first_line, run_main

TASKS_DIR = "tasks"


def entry_path(output_dir: str, task_name: str) -> str:
  """Where the job for `task_name` writes its report entry."""
  return os.path.join(output_dir, TASKS_DIR, f"{task_name}.json")


def runtime_config(values: dict):
  """Model Garden's RuntimeConfig from a mapping; raises UserError naming an unknown key."""
  from official.core import config_definitions

  runtime = config_definitions.RuntimeConfig()
  unknown = sorted(set(values) - set(runtime.as_dict()))
  if unknown:
    raise UserError(f"unknown GLUE runtime key(s) {unknown}; the keys are Model Garden's "
                    "RuntimeConfig's: distribution_strategy, tpu, num_gpus, "
                    "mixed_precision_dtype, ...")
  try:
    runtime.override(values, is_strict=True)
  except (KeyError, ValueError, TypeError) as e:
    raise UserError(f"bad GLUE runtime {values}: {first_line(e)}") from None
  return runtime


def _json_object(text: str, flag: str) -> dict:
  try:
    values = json.loads(text or "{}")
  except json.JSONDecodeError as e:
    raise UserError(f"{flag} is not JSON ({first_line(e)}): {text!r}") from None
  if not isinstance(values, dict):
    raise UserError(f"{flag} must be a JSON object, got {text!r}")
  return values


def _parser() -> ArgumentParser:
  parser = ArgumentParser(prog="python -m components.glue_eval.job", allow_abbrev=False,
                          description=__doc__.split("\n")[0])
  add = parser.add_argument
  add("--checkpoint", required=True, help="the export's tf2/ directory, or the root that holds it")
  add("--task", required=True, help="one task name (components/glue_eval/tasks.py)")
  source = parser.add_mutually_exclusive_group()
  source.add_argument("--glue_dir", default="")
  source.add_argument("--tfds_data_dir", default="")
  add("--output_dir", required=True,
      help="the evaluation's directory: tasks/TASK.json and tensorboard/TASK/ go there")
  add("--finetune_config", default="{}", help="FineTuneConfig as JSON")
  add("--lower_case", type=int, choices=(0, 1), default=1)
  add("--runtime", default="{}", help="Model Garden's RuntimeConfig as JSON")
  add("--cpu_devices", type=int, default=0,
      help="split the host CPU into this many logical devices, for a mirrored strategy without "
      "GPUs (tests and local runs)")
  return parser


def main(argv: list[str]) -> int:
  args = _parser().parse_args(argv)
  runtime_values = _json_object(args.runtime, "--runtime")
  # After the arguments: these import TensorFlow.
  import tensorflow as tf
  from official.modeling import performance

  from components.glue_eval import data as data_lib
  from components.glue_eval import evaluate, finetune, tasks
  from trainer.train_lib import split_cpu, strategy_for

  logging.basicConfig(format="%(message)s")
  logging.getLogger("components.glue_eval").setLevel(logging.INFO)
  try:
    task = tasks.get_task(args.task)
  except ValueError as e:
    raise UserError(str(e)) from None
  config = finetune.FineTuneConfig.from_json(args.finetune_config)
  runtime = runtime_config(runtime_values)
  try:
    checkpoint_dir = evaluate.check_checkpoint(args.checkpoint, config)
    data = data_lib.read_task(task, args.glue_dir or None, args.tfds_data_dir or None)
  except (ValueError, FileNotFoundError) as e:
    raise UserError(first_line(e)) from None
  if args.cpu_devices > 1:
    split_cpu(args.cpu_devices)
  performance.set_mixed_precision_policy(runtime.mixed_precision_dtype or tf.float32)
  strategy = strategy_for(runtime, args.cpu_devices)
  # What ran where, first in the job's log.
  print(f"{task.display_name}: TensorFlow {tf.__version__} ({sys.executable}), "
        f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s), "
        f"{runtime.mixed_precision_dtype or 'float32'}", flush=True)
  entry = evaluate.evaluate_task(checkpoint_dir, data, config, bool(args.lower_case),
                                 args.output_dir, strategy)
  path = entry_path(args.output_dir, task.name)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(json.dumps(entry, indent=2))
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  run_main("components.glue_eval.job", main, sys.argv[1:])
