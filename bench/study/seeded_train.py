"""`trainer.train` with every random seed fixed first, so the study's runs start from the
same weights and draw the same dropout masks:

    python bench/study/seeded_train.py SEED THREADS --experiment=... --model_dir=... --mode=...

Model Garden's runtime config has no seed, and the data order and MLM masks are
already seeded by the config (`masking_seed`), so the weights are what this adds.
THREADS caps TensorFlow's intra-op threads (0: TensorFlow's default), so that
the study can run several trainings side by side on a few cores.
"""

import sys

import tensorflow as tf
import tf_keras

from trainer import train


def main(argv: list[str]) -> int:
  seed, threads, *train_args = argv
  if int(threads):
    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(threads))
  tf_keras.utils.set_random_seed(int(seed))
  return train.main(train_args)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
