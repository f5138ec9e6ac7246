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


def _updated_on_two_replicas(**kwargs) -> TokenImportance:
  """A table created under MirroredStrategy on two CPU devices, after REPLICA_BATCHES."""
  assert len(tf.config.list_logical_devices("CPU")) == 2, (
      "TF initialised its devices before this module could split the CPU in two; a test module "
      "collected earlier runs TF ops at import")
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    importance = TokenImportance(vocab_size=6, beta=0.5, **kwargs)

  @tf.function
  def step(ids, losses, weights):
    strategy.run(importance.update, args=(ids, losses, weights))

  for batches in REPLICA_BATCHES:
    step(*strategy.experimental_distribute_values_from_function(
        lambda context, batches=batches: _batch(*batches[context.replica_id_in_sync_group])))
  return importance


def test_mirrored_replicas_stay_identical_and_match_the_global_batch():
  importance = _updated_on_two_replicas()
  first, second = (v.numpy() for v in importance.table.values)
  np.testing.assert_array_equal(first, second)
  expected = _single_device_table(REPLICA_BATCHES)
  np.testing.assert_array_equal(first, expected)
  # The data tells a global update from a first-replica-only one.
  assert not np.array_equal(expected, _single_device_table([(b[0],) for b in REPLICA_BATCHES]))


def test_bias_corrected_estimates_are_the_weighted_mean_of_the_losses_alone():
  # beta 1/2 and losses in quarters: every value below is exact in float32.
  importance = TokenImportance(vocab_size=6, init_value=10.0, beta=0.5,
                               estimator="bias_corrected")
  # Id 2 twice (losses 2 and 4: one update with their mean, 3); id 3 once; the padding slot
  # names id 5 with a loss that would move it, and must neither move nor count it.
  importance.update(*_batch([[2, 3, 5], [2, 0, 0]], [[2.0, 1.0, 7.0], [4.0, 0.0, 0.0]],
                            [[1, 1, 0], [1, 0, 0]]))
  np.testing.assert_array_equal(importance.counts.numpy(), [0, 0, 1, 1, 0, 0])
  # The raw table is the reference's EMA, bit for bit.
  np.testing.assert_array_equal(importance.table.numpy(), [10.0, 10.0, 6.5, 5.5, 10.0, 10.0])
  # n = 1: (6.5 - 0.5 * 10) / 0.5 = 3, the batch mean; never-predicted ids stay at 10.
  np.testing.assert_array_equal(importance.estimates().numpy(), [10, 10, 3, 1, 10, 10])

  importance.update(*_batch([[3, 3]], [[2.0, 3.0]], [[1, 1]]))
  np.testing.assert_array_equal(importance.counts.numpy(), [0, 0, 1, 2, 0, 0])
  # Id 3: table 0.5 * 5.5 + 0.5 * 2.5 = 4; n = 2: (4 - 0.25 * 10) / 0.75 = 2, which is
  # (0.5 * 1 + 1 * 2.5) / 1.5, the losses' own weighted mean.
  np.testing.assert_array_equal(importance.table.numpy(), [10.0, 10.0, 6.5, 4.0, 10.0, 10.0])
  np.testing.assert_array_equal(importance.estimates().numpy(), [10, 10, 3, 2, 10, 10])
  np.testing.assert_array_equal(importance.lookup(tf.constant([[3, 5, 2]])).numpy(),
                                [[2.0, 10.0, 3.0]])
  assert importance.statistics()["min"].numpy() == 2.0


def test_ema_lookup_is_the_raw_table_whatever_the_counts():
  importance = TokenImportance(vocab_size=4, init_value=10.0, beta=0.5)
  importance.update(*_batch([[1, 2]], [[2.0, 6.0]], [[1, 1]]))
  np.testing.assert_array_equal(importance.counts.numpy(), [0, 1, 1, 0])
  np.testing.assert_array_equal(importance.lookup(tf.constant([[1, 2, 3]])).numpy(),
                                [[6.0, 8.0, 10.0]])


def test_counts_are_checkpointed_exported_and_warm_started(tmp_path):
  saved = TokenImportance(vocab_size=5, beta=0.5, estimator="bias_corrected")
  saved.update(*_batch([[0, 4]], [[3.0, 1.0]], [[1, 1]]))
  saved.update(*_batch([[4]], [[2.0]], [[1]]))
  path = tf.train.Checkpoint(importance=saved).write(str(tmp_path / "ckpt"))
  restored = TokenImportance(vocab_size=5, beta=0.5, estimator="bias_corrected")
  tf.train.Checkpoint(importance=restored).read(path).assert_consumed()
  np.testing.assert_array_equal(restored.counts.numpy(), [1, 0, 0, 0, 2])
  np.testing.assert_array_equal(restored.estimates().numpy(), saved.estimates().numpy())

  table = str(tmp_path / "token_importance.npy")
  saved.write_table(table)
  assert (tmp_path / "token_importance_counts.npy").exists()
  warm = TokenImportance(vocab_size=5, beta=0.5, estimator="bias_corrected")
  warm.assign(TokenImportance.read_table(table), TokenImportance.read_counts(table))
  np.testing.assert_array_equal(warm.counts.numpy(), [1, 0, 0, 0, 2])
  np.testing.assert_array_equal(warm.table.numpy(), saved.table.numpy())
  (tmp_path / "token_importance_counts.npy").unlink()
  assert TokenImportance.read_counts(table) is None


def test_unknown_estimator_is_rejected():
  with pytest.raises(ValueError, match=r"token_loss_estimator must be one of \('ema', "):
    TokenImportance(vocab_size=4, estimator="adam")


def test_mirrored_replicas_count_updates_from_the_global_batch():
  importance = _updated_on_two_replicas(estimator="bias_corrected")
  first, second = (v.numpy() for v in importance.counts.values)
  np.testing.assert_array_equal(first, second)
  # Id 3 is only in the second replica's batches (steps 1 and 3), so the first replica counts
  # it from the all-reduce alone; id 4 is a padding slot in step 1 and real in step 2.
  np.testing.assert_array_equal(first, [0, 2, 2, 2, 1, 1])
