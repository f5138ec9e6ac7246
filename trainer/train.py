"""The training binary, with the Model Garden command line of the seed project:

    python -m trainer.train --experiment=token_drop_bert/pretraining \
      --config_file=configs/wiki_books_pretrain_sequence_pack.yaml \
      --config_file=configs/bert_en_uncased_base_token_drop.yaml \
      --params_override=task.train_data.input_path=...,runtime.distribution_strategy=tpu \
      --tpu=local --model_dir=DIR --mode=train_and_eval

`tokendrop train ...` is the same entry point. Modes: train, eval,
train_and_eval, continuous_eval. Strategies: one_device, mirrored,
multi_worker_mirrored (TF_CONFIG), tpu. A restarted run resumes from the
latest checkpoint in --model_dir (weights, optimizer, step, importance table).
A mistake in the flags or the config prints one line and exits 2; a diverged loss
prints one line and exits 1.
"""

import sys

from absl import app, flags
from absl import logging as absl_logging
from official.common import flags as tfm_flags

from trainer import configs, train_lib
from trainer.errors import UserError, run_main

FLAGS = flags.FLAGS


def _define_flags() -> None:
  if "cpu_devices" in FLAGS:
    return
  tfm_flags.define_flags()
  flags.DEFINE_integer(
      "cpu_devices", 0, "Split the host CPU into this many logical devices (before TF starts), "
      "so runtime.distribution_strategy=mirrored runs one replica on each. 0 leaves TF's "
      "default.")


def _params():
  """The experiment config from the flags, as Model Garden's ExperimentParser builds it."""
  if not FLAGS.experiment:
    raise UserError(f"--experiment is required; choose one of {list(configs.EXPERIMENTS)}")
  overrides = {"runtime": {"tpu": FLAGS.tpu or ""}}
  if FLAGS.tf_data_service:
    service = {"tf_data_service_address": FLAGS.tf_data_service}
    overrides["task"] = {"train_data": service, "validation_data": service}
  return configs.build_experiment(FLAGS.experiment, FLAGS.config_file or (),
                                  FLAGS.params_override or "", overrides)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, from the defaults every time, with a mistake raised as a UserError.

  From the defaults: a second run in one process (tests, in-process callers) must not inherit
  a flag that only the first one set.
  """
  FLAGS.unparse_flags()
  try:
    remaining = FLAGS(argv)
  except flags.Error as e:
    raise UserError(str(e)) from None
  if not FLAGS["verbosity"].present:
    # Model Garden's training log is at INFO, which a new process's absl shows by default;
    # resetting the flags above set absl back to WARNING for a second run in one process.
    absl_logging.set_verbosity(absl_logging.INFO)
  return remaining


def run(argv=None) -> None:
  del argv
  if FLAGS.mode not in train_lib.MODES:
    raise UserError(f"--mode is required: one of {list(train_lib.MODES)}")
  params = _params()
  if FLAGS.cpu_devices > 1:
    train_lib.split_cpu(FLAGS.cpu_devices)
  train_lib.run_experiment(params, FLAGS.model_dir, FLAGS.mode, FLAGS.cpu_devices)


def main(argv: list[str]) -> int:
  """`tokendrop train ARGS`: the same flags as `python -m trainer.train`; the exit status.

  Raises UserError for a mistake in the flags or the config, and RunStopped when the loss
  diverges; the command line prints either as one line.
  """
  _define_flags()
  try:
    app.run(run, argv=["tokendrop train", *argv], flags_parser=_parse_flags)
  except SystemExit as e:
    # app.run always ends in sys.exit (run's None, or 0 after --help); a caller in this
    # process gets the status instead.
    return e.code or 0


if __name__ == "__main__":
  # As `tokendrop train` (pipelines/cli.py) prints a mistake.
  run_main("tokendrop train", main, sys.argv[1:])
