"""`tokendrop export --model_dir=DIR --output_dir=OUT`: a training run as standard BERT.

Reads DIR/params.yaml (written by `tokendrop train`), rebuilds the task's model,
restores the latest training checkpoint in DIR (or --checkpoint) and writes
OUT/tf2, OUT/hf and OUT/saved_model (see trainer/export.py), plus
OUT/token_importance.npy (the importance table, for warm starts) and
OUT/training_params.yaml (the run's experiment config) and OUT/eval_metrics.json
(the run's latest evaluation, full depth and as trained, if it evaluated). The vocab is the
one the run trained with (`task.vocab_file`) unless --vocab_file is given.
"""

import argparse
import os
import sys

import tensorflow as tf
from official.core import exp_factory, task_factory
from official.modeling import hyperparams

from trainer import configs, export  # noqa: F401  (configs registers the experiments)
from trainer import task as _task  # noqa: F401  (registers the task)
from trainer.task import EVAL_METRICS_NAME

IMPORTANCE_NAME = "token_importance.npy"
TRAINING_PARAMS_NAME = "training_params.yaml"  # the run's params.yaml, for the model card


class ExportError(ValueError):
  """A problem the user can fix; printed as one line."""


def load_run_params(model_dir: str):
  """The experiment config a `tokendrop train` run saved in its model_dir."""
  path = os.path.join(model_dir, "params.yaml")
  if not tf.io.gfile.exists(path):
    raise ExportError(f"{path} does not exist; --model_dir must be the --model_dir of a "
                      "`tokendrop train` run (it writes params.yaml there)")
  return load_params_file(path)


def load_params_file(path: str):
  """An experiment config saved as YAML (a run's params.yaml, an export's training_params.yaml)."""
  params = exp_factory.get_exp_config("token_drop_bert/pretraining")
  return hyperparams.override_params_dict(params, path, is_strict=True)


def checkpoint_path(model_dir: str, checkpoint: str | None) -> str:
  path = checkpoint or tf.train.latest_checkpoint(model_dir)
  if not path:
    raise ExportError(f"no training checkpoint in {model_dir}; train first, or pass "
                      "--checkpoint=PATH/ckpt-N")
  if not tf.io.gfile.exists(path + ".index"):
    raise ExportError(f"checkpoint {path} does not exist (no {path}.index)")
  return path


def export_run(model_dir: str, output_dir: str, checkpoint: str | None = None,
               vocab_file: str | None = None, do_lower_case: bool = True) -> export.ExportedModel:
  """Restores a training run's model and writes the standard exports; returns their paths."""
  params = load_run_params(model_dir)
  vocab_file = vocab_file or params.task.vocab_file
  if not vocab_file:
    raise ExportError("the run has no task.vocab_file; pass --vocab_file=PATH/vocab.txt")
  path = checkpoint_path(model_dir, checkpoint)
  task = task_factory.get_task(params.task)
  model = task.build_model()
  model(_dummy_inputs(params))
  # Model Garden's trainer saves the model under `model`; the optimizer and step are not needed.
  tf.train.Checkpoint(model=model).read(path).assert_existing_objects_matched().expect_partial()
  tf.get_logger().info("restored %s", path)
  exported = export.export_all(model, params.task.model.encoder, vocab_file, output_dir,
                               do_lower_case=do_lower_case)
  # Not part of BERT: the importance table, so a warm-started run continues it
  # (task.init_token_importance).
  model.token_importance.write_table(os.path.join(output_dir, IMPORTANCE_NAME))
  tf.io.gfile.copy(os.path.join(model_dir, "params.yaml"),
                   os.path.join(output_dir, TRAINING_PARAMS_NAME), overwrite=True)
  metrics = os.path.join(model_dir, EVAL_METRICS_NAME)
  if tf.io.gfile.exists(metrics):
    tf.io.gfile.copy(metrics, os.path.join(output_dir, EVAL_METRICS_NAME), overwrite=True)
  return exported


def _dummy_inputs(params) -> dict[str, tf.Tensor]:
  """One batch of the pretraining input shape, to create every variable before restoring."""
  seq_length = params.task.train_data.seq_length
  predictions = params.task.train_data.max_predictions_per_seq
  return {
      "input_word_ids": tf.zeros([1, seq_length], tf.int32),
      "input_mask": tf.ones([1, seq_length], tf.int32),
      "input_type_ids": tf.zeros([1, seq_length], tf.int32),
      "masked_lm_positions": tf.zeros([1, predictions], tf.int32),
  }


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="tokendrop export", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_dir", required=True, help="the --model_dir of a training run")
  parser.add_argument("--output_dir", required=True, help="where tf2/, hf/, saved_model/ go")
  parser.add_argument("--checkpoint", help="a checkpoint prefix (default: the latest in "
                      "--model_dir)")
  parser.add_argument("--vocab_file", help="default: the run's task.vocab_file")
  parser.add_argument("--cased", action="store_true",
                      help="the vocab is cased (default: uncased, lower-casing tokenizer)")
  args = parser.parse_args(argv)
  try:
    exported = export_run(args.model_dir, args.output_dir, args.checkpoint, args.vocab_file,
                          do_lower_case=not args.cased)
  except (ExportError, FileNotFoundError, tf.errors.NotFoundError) as e:
    print(f"tokendrop export: {e}", file=sys.stderr)
    return 2
  print(f"TF2 checkpoint: {exported.tf2_checkpoint}")
  print(f"Hugging Face:   {exported.huggingface_dir}")
  print(f"SavedModel:     {exported.saved_model_dir}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
