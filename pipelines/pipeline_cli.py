"""`tokendrop pipeline run|compile|submit|schedule --config configs/pipeline_*.yaml`.

    run       the whole pipeline on LocalDagRunner (Beam DirectRunner, in-process training)
    compile   the Vertex AI Pipelines JSON (KubeflowV2DagRunner, the project's image)
    submit    compile, then start a Vertex PipelineJob (needs Google Cloud credentials)
    schedule  compile, then create a Vertex pipeline schedule (--cron), for retraining

--set KEY=VALUE overrides one config key (dotted, YAML value), e.g. --set training.train_steps=50.
"""

import argparse
import sys
import tempfile

import yaml

from pipelines import config as config_lib


def _overrides(pairs: list[str]) -> dict:
  result: dict = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep or not key:
      raise config_lib.PipelineConfigError(f"--set {pair!r} must look like key.sub=value")
    node = result
    *parents, leaf = key.split(".")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)
  return result


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="tokendrop pipeline", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("action", choices=("run", "compile", "submit", "schedule"))
  parser.add_argument("--config", required=True, help="a pipeline YAML, e.g. "
                      "configs/pipeline_local_tiny.yaml")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  parser.add_argument("--output", help="compile: where the pipeline JSON goes")
  parser.add_argument("--template", help="submit/schedule: a compiled JSON (default: compile)")
  parser.add_argument("--cron", help='schedule: e.g. "0 3 * * 0" (Sundays 03:00 UTC)')
  args = parser.parse_args(argv)
  try:
    config = config_lib.load(args.config, _overrides(args.set))
    if args.action == "run":
      from pipelines import local

      before = set(local.published_versions(config.push.destination))
      local.run(config)
      print(f"pipeline {config.name} finished; published versions are under "
            f"{config.push.destination}")
      for line in local.summary(config, before):
        print(line)
      return 0
    from pipelines import vertex

    if args.action == "compile":
      if not args.output:
        raise config_lib.PipelineConfigError("compile needs --output FILE.json")
      print(f"compiled {vertex.compile_pipeline(config, args.output)}")
      return 0
    if args.action == "schedule" and not args.cron:
      raise config_lib.PipelineConfigError('schedule needs --cron, e.g. --cron "0 3 * * 0"')
    template = args.template
    if not template:
      template = vertex.compile_pipeline(config, tempfile.mkstemp(suffix=".json")[1])
    if args.action == "submit":
      job = vertex.submit(config, template)
      print(f"submitted {job.resource_name}")
    else:
      job_schedule = vertex.schedule(config, template, args.cron)
      print(f"scheduled {job_schedule.resource_name} ({args.cron})")
    return 0
  except config_lib.PipelineConfigError as e:
    print(f"tokendrop pipeline: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
