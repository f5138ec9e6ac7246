"""The training job: run_fn with the Trainer's arguments, as the Vertex custom job runs it.

    python -m trainer.job --fn_args '{"train_files": ["gs://.../Split-train/*"], ...}'

The Vertex Trainer (components/pretrain/executor.py, VertexExecutor) starts this command in
the training image (Dockerfile.train: TensorFlow built for TPU VMs, no TFX). The JSON holds
the fields of TFX's FnArgs that run_fn reads (FN_ARGS_FIELDS), which the executor takes from
TFX's own Trainer, so the job trains exactly what an in-process Trainer would. Training
resumes from the latest checkpoint in model_run_dir, so a restarted job (a worker restart, a
retried task) goes on from there.

A mistake in the arguments or the config prints one line and exits 2; a diverged loss prints
one line and exits 1.
"""

import json
import sys
import types

from trainer.errors import ArgumentParser, UserError, first_line, run_main

# What run_fn reads of TFX's FnArgs (trainer/run_fn.py documents each).
FN_ARGS_FIELDS = ("train_files", "eval_files", "transform_output", "base_model",
                  "model_run_dir", "serving_model_dir", "train_steps", "eval_steps",
                  "custom_config")
REQUIRED_FIELDS = ("train_files", "eval_files", "model_run_dir", "serving_model_dir")


def fn_args_from_json(text: str) -> types.SimpleNamespace:
  """The FnArgs stand-in that run_fn reads by attribute; raises UserError naming the field."""
  try:
    values = json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f"--fn_args is not JSON ({first_line(e)}); pass the object the Vertex "
                    "Trainer writes") from None
  if not isinstance(values, dict):
    raise UserError("--fn_args must be a JSON object of FnArgs fields")
  unknown = sorted(set(values) - set(FN_ARGS_FIELDS))
  if unknown:
    raise UserError(f"--fn_args has unknown fields {unknown}; known: {list(FN_ARGS_FIELDS)}")
  missing = [name for name in REQUIRED_FIELDS if not values.get(name)]
  if missing:
    raise UserError(f"--fn_args lacks {missing}")
  return types.SimpleNamespace(**{name: values.get(name) for name in FN_ARGS_FIELDS})


def main(argv: list[str]) -> int:
  parser = ArgumentParser(prog="python -m trainer.job", description=__doc__.split("\n")[0])
  parser.add_argument("--fn_args", required=True,
                      help="the Trainer's FnArgs fields as a JSON object")
  args = parser.parse_args(argv)
  fn_args = fn_args_from_json(args.fn_args)
  from trainer import run_fn  # after the arguments: importing it starts TensorFlow

  run_fn.run_fn(fn_args)
  return 0


if __name__ == "__main__":
  run_main("trainer.job", main, sys.argv[1:])
