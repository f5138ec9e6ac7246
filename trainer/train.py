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
A mistake in the flags or the config prints one line and exits 2.
"""

import sys

from absl import app, flags
from official.common import flags as tfm_flags

from trainer import configs, train_lib
from trainer.errors import UserError

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


def run(argv=None) -> None:
  del argv
  try:
    if FLAGS.mode not in train_lib.MODES:
      raise UserError(f"--mode is required: one of {list(train_lib.MODES)}")
    params = _params()
    if FLAGS.cpu_devices > 1:
      train_lib.split_cpu(FLAGS.cpu_devices)
    train_lib.run_experiment(params, FLAGS.model_dir, FLAGS.mode, FLAGS.cpu_devices)
  except (UserError, train_lib.TrainingDivergedError) as e:
    print(f"tokendrop train: {e}", file=sys.stderr)
    sys.exit(2 if isinstance(e, UserError) else 1)


def main(argv: list[str]) -> int:
  """`tokendrop train ARGS`: the same flags as `python -m trainer.train`."""
  _define_flags()
  app.run(run, argv=["tokendrop train", *argv])
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
