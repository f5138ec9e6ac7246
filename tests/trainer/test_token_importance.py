"""The importance table: exact moving-average updates, replicas in sync, checkpoints."""

import numpy as np
import pytest
import tensorflow as tf

from trainer.token_importance import TokenImportance

# MirroredStrategy needs two devices; the CPU can only be split before TF
# initialises its devices, which no test module does at import.
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)


def _batch(ids, losses, weights):
  return (tf.constant(ids, tf.int32), tf.constant(losses, tf.float32),
          tf.constant(weights, tf.float32))


def test_repeated_ids_get_their_mean_loss_and_padding_slots_count_for_nothing():
  importance = TokenImportance(vocab_size=6, init_value=10.0, beta=0.5)
  # Id 2 twice (losses 2 and 4); id 3 once; the padding slot (weight 0) names
  # id 5 with a loss that would move it.
  importance.update(*_batch([[2, 3, 5], [2, 0, 0]], [[2.0, 1.0, 7.0], [4.0, 0.0, 0.0]],
                            [[1, 1, 0], [1, 0, 0]]))
  np.testing.assert_array_equal(importance.table.numpy(), [10.0, 10.0, 6.5, 5.5, 10.0, 10.0])

  importance.update(*_batch([[3]], [[1.5]], [[1]]))
  np.testing.assert_array_equal(importance.table.numpy(), [10.0, 10.0, 6.5, 3.5, 10.0, 10.0])


def test_lookup_and_statistics_read_the_table():
  importance = TokenImportance(vocab_size=4, init_value=10.0, beta=0.5)
  importance.update(*_batch([[1, 2]], [[2.0, 6.0]], [[1, 1]]))  # table: 10, 6, 8, 10
  np.testing.assert_array_equal(importance.lookup(tf.constant([[1, 3], [2, 1]])).numpy(),
                                [[6.0, 10.0], [8.0, 6.0]])
  stats = {name: value.numpy() for name, value in importance.statistics().items()}
  assert stats == pytest.approx({"mean": 8.5, "std": np.sqrt(2.75), "min": 6.0, "max": 10.0})


def test_table_is_not_trainable():
  importance = TokenImportance(vocab_size=4)
  assert importance.table.shape == (4,) and not importance.table.trainable
  assert importance.trainable_variables == ()
  np.testing.assert_array_equal(importance.table.numpy(), [10.0] * 4)


def test_checkpoint_round_trip(tmp_path):
  saved = TokenImportance(vocab_size=5, beta=0.5)
  saved.update(*_batch([[0, 4]], [[3.0, 1.0]], [[1, 1]]))
  path = tf.train.Checkpoint(importance=saved).write(str(tmp_path / "ckpt"))

  restored = TokenImportance(vocab_size=5, beta=0.5)
  tf.train.Checkpoint(importance=restored).read(path).assert_consumed()
  np.testing.assert_array_equal(restored.table.numpy(), [6.5, 10.0, 10.0, 10.0, 5.5])


@pytest.mark.parametrize("kwargs, message", [
    (dict(vocab_size=0), "vocab_size >= 1"),
    (dict(vocab_size=4, beta=1.0), r"beta \(token_loss_beta\) must be in \(0, 1\)"),
    (dict(vocab_size=4, beta=0.0), r"beta \(token_loss_beta\) must be in \(0, 1\)"),
])
def test_invalid_settings_are_rejected(kwargs, message):
  with pytest.raises(ValueError, match=message):
    TokenImportance(**kwargs)


# Per step, one batch for each replica. Ids 1 and 2 appear on both replicas,
# so a replica updating from its own batch alone would get a different mean.
# Losses are multiples of 1/4 and beta is 1/2: the arithmetic is exact.
REPLICA_BATCHES = [
    (([[1, 2, 2, 0]], [[1.0, 2.0, 3.0, 9.0]], [[1, 1, 1, 0]]),
     ([[2, 3, 1, 4]], [[4.0, 0.5, 3.0, 8.0]], [[1, 1, 1, 0]])),
    (([[4, 4, 1, 1]], [[0.25, 0.75, 2.0, 2.0]], [[1, 1, 1, 1]]),
     ([[1, 0, 0, 0]], [[5.0, 1.0, 1.0, 1.0]], [[1, 0, 0, 0]])),
    (([[2, 0, 0, 0]], [[6.0, 0.0, 0.0, 0.0]], [[1, 0, 0, 0]]),
     ([[3, 3, 2, 5]], [[1.0, 2.0, 4.0, 3.0]], [[1, 1, 1, 1]])),
]


def _single_device_table(batches) -> np.ndarray:
  importance = TokenImportance(vocab_size=6, beta=0.5)
  for batch in batches:
    importance.update(*_batch(*(np.concatenate(parts) for parts in zip(*batch, strict=True))))
  return importance.table.numpy()


def test_mirrored_replicas_stay_identical_and_match_the_global_batch():
  assert len(tf.config.list_logical_devices("CPU")) == 2, (
      "TF initialised its devices before this module could split the CPU in two; a test module "
      "collected earlier runs TF ops at import")
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    importance = TokenImportance(vocab_size=6, beta=0.5)

  @tf.function
  def step(ids, losses, weights):
    strategy.run(importance.update, args=(ids, losses, weights))

  for batches in REPLICA_BATCHES:
    step(*strategy.experimental_distribute_values_from_function(
        lambda context, batches=batches: _batch(*batches[context.replica_id_in_sync_group])))

  first, second = (v.numpy() for v in importance.table.values)
  np.testing.assert_array_equal(first, second)
  expected = _single_device_table(REPLICA_BATCHES)
  np.testing.assert_array_equal(first, expected)
  # The data tells a global update from a first-replica-only one.
  assert not np.array_equal(expected, _single_device_table([(b[0],) for b in REPLICA_BATCHES]))
