"""`tokendrop`: one command line for every stage.

Subcommands import their stage lazily, so `tokendrop --help` is fast and a
stage's heavy dependencies load only when it runs.
"""

import argparse
import importlib
import sys

# name -> (module with a `main(argv) -> int`, one-line help)
SUBCOMMANDS = {
    "demo": ("pipelines.demo", "run the local demo on the packaged IMDB corpus"),
    "prepare-data": ("components.tokenize_pack.cli",
                     "tokenize, pack and mask a text corpus into pretraining TFRecords (Beam)"),
    "train": ("trainer.train", "pretrain (Model Garden flags: --experiment, --config_file, ...)"),
    "pipeline": ("pipelines.pipeline_cli",
                 "the TFX pipeline: run locally, or compile/submit/schedule on Vertex AI"),
    "evaluate-glue": ("components.glue_eval.cli",
                      "fine-tune a checkpoint on GLUE tasks and write the report"),
    "export": ("trainer.export_cli",
               "export a training run as a standard BERT checkpoint (TF2, Hugging Face, "
               "SavedModel)"),
}


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  parser = argparse.ArgumentParser(
      prog="tokendrop", description="Token-dropping BERT pretraining: data, training, "
      "evaluation and the TFX pipeline.")
  parser.add_argument("command", choices=sorted(SUBCOMMANDS),
                      help="; ".join(f"{name}: {doc}" for name, (_, doc) in SUBCOMMANDS.items()))
  args, rest = parser.parse_known_args(argv[:1])
  module = importlib.import_module(SUBCOMMANDS[args.command][0])
  return module.main(argv[1:] + rest)


if __name__ == "__main__":
  sys.exit(main())
