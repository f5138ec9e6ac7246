"""`tokendrop export --model_dir=DIR --output_dir=OUT`: a training run as standard BERT.

Reads DIR/params.yaml (written by `tokendrop train`), rebuilds the task's model,
restores the latest training checkpoint in DIR (or --checkpoint) and writes
OUT/tf2, OUT/hf and OUT/saved_model, plus OUT/token_importance.npy (the
importance table, for warm starts), OUT/training_params.yaml (the run's
experiment config) and OUT/eval_metrics.json (the run's latest evaluation, full
depth and as trained, if it evaluated); see trainer/export/run.py. The vocab is
the one the run trained with (`task.vocab_file`) unless --vocab_file is given.
It prints the three exports' paths; a mistake raises UserError (`tokendrop` prints it
as one line).
"""

import argparse

import tensorflow as tf

from trainer import contract, export
from trainer.errors import ArgumentParser, UserError, first_line


def main(argv: list[str]) -> int:
  parser = ArgumentParser(prog="tokendrop export", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_dir", required=True, help="the --model_dir of a training run")
  parser.add_argument("--output_dir", required=True,
                      help=f"where {contract.TF2_DIR}/, {contract.HF_DIR}/, "
                      f"{contract.SAVED_MODEL_DIR}/ go")
  parser.add_argument("--checkpoint", help="a checkpoint prefix (default: the latest in "
                      "--model_dir)")
  parser.add_argument("--vocab_file", help="default: the run's task.vocab_file")
  parser.add_argument("--cased", action="store_true",
                      help="the vocab is cased (default: uncased, lower-casing tokenizer)")
  args = parser.parse_args(argv)
  try:
    exported = export.export_run(args.model_dir, args.output_dir, args.checkpoint,
                                 args.vocab_file, do_lower_case=not args.cased)
  except (FileNotFoundError, tf.errors.NotFoundError) as e:
    raise UserError(first_line(e)) from e
  print(f"TF2 checkpoint: {exported.tf2_checkpoint}")
  print(f"Hugging Face:   {exported.huggingface_dir}")
  print(f"SavedModel:     {exported.saved_model_dir}")
  return 0
