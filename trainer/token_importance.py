"""The importance of each vocabulary id: a moving average of the MLM loss it receives.

The paper (section 3.2) scores a token by how hard it is to predict: ids whose
masked predictions keep a high loss are important and stay in the middle
layers. The table starts high (10.0, above the ~ln(vocab_size) loss of an
untrained model), so ids not yet seen are kept rather than dropped.

With beta 0.995 an id needs hundreds of updates before the initial value has
faded from its entry, so early in training the table mostly says how often an
id was predicted, not how hard it is. `bias_corrected` divides that weight out,
as Adam corrects its moment estimates: after n updates the table holds
`beta^n * init + (1 - beta) * sum_i beta^(n-i) * loss_i`, so
`(table - beta^n * init) / (1 - beta^n)` is the weighted mean of the losses
alone. Ids never predicted (n = 0) keep the initial value, where `ema` ranks
them too.
"""

import numpy as np
import tensorflow as tf

ESTIMATORS = ("ema", "bias_corrected")


class TokenImportance(tf.Module):
  """A non-trainable [vocab_size] table, identical on every replica.

  Create it under the distribution strategy's scope. `update` must run in
  replica context (inside `strategy.run`, or with no strategy at all): it
  all-reduces the batch statistics, so every replica applies the same update
  computed from the global batch.
  """

  def __init__(self, vocab_size: int, init_value: float = 10.0, beta: float = 0.995,
               estimator: str = "ema", name: str = "token_importance"):
    if estimator not in ESTIMATORS:
      raise ValueError(f"token_loss_estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if vocab_size < 1:
      raise ValueError(f"TokenImportance needs vocab_size >= 1, got {vocab_size}")
    if not 0.0 < beta < 1.0:
      raise ValueError(f"TokenImportance beta (token_loss_beta) must be in (0, 1), got {beta}")
    super().__init__(name=name)
    self.vocab_size = vocab_size
    self.beta = beta
    self.init_value = float(init_value)
    self.estimator = estimator
    with self.name_scope:
      # Every replica computes the same new value from all-reduced statistics,
      # so taking the first replica's write keeps the mirrors identical.
      self.table = tf.Variable(
          tf.fill([vocab_size], float(init_value)), trainable=False, name="table",
          synchronization=tf.VariableSynchronization.ON_WRITE,
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      # How many updates moved each entry (steps in which the id was predicted), for
      # `bias_corrected` and for judging which entries have settled. float32 counts are exact
      # up to 2^24 updates.
      self.counts = tf.Variable(
          tf.zeros([vocab_size]), trainable=False, name="counts",
          synchronization=tf.VariableSynchronization.ON_WRITE,
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

  def estimates(self) -> tf.Tensor:
    """[vocab_size] float32: each id's importance under the configured estimator."""
    if self.estimator == "ema":
      return tf.convert_to_tensor(self.table)
    init_weight = tf.pow(self.beta, self.counts)
    corrected = tf.math.divide_no_nan(self.table - init_weight * self.init_value,
                                      1.0 - init_weight)
    return tf.where(self.counts > 0, corrected, self.init_value)

  def lookup(self, word_ids: tf.Tensor) -> tf.Tensor:
    """The importance of each input token: float32, the shape of `word_ids`."""
    return tf.gather(self.estimates(), word_ids)

  def update(self, masked_lm_ids: tf.Tensor, per_token_losses: tf.Tensor,
             masked_lm_weights: tf.Tensor) -> None:
    """Moves each predicted id's importance towards its mean loss in the global batch.

    For ids predicted at least once (weight > 0) across all replicas:
    `table[id] = beta * table[id] + (1 - beta) * mean loss of id`; other ids
    keep their value.

    Args:
      masked_lm_ids: [batch, max_predictions_per_seq] the predicted ids.
      per_token_losses: [batch, max_predictions_per_seq] each prediction's loss.
      masked_lm_weights: [batch, max_predictions_per_seq]; 0 marks a padding slot.
    """
    counted = tf.reshape(masked_lm_weights, [-1]) > 0
    ids = tf.reshape(tf.cast(masked_lm_ids, tf.int32), [-1])
    losses = tf.reshape(tf.cast(tf.stop_gradient(per_token_losses), tf.float32), [-1])
    # Padding slots carry arbitrary ids and losses: zero them out before summing.
    loss_sums = tf.math.unsorted_segment_sum(tf.where(counted, losses, 0.0), ids,
                                             self.vocab_size)
    counts = tf.math.unsorted_segment_sum(tf.cast(counted, tf.float32), ids, self.vocab_size)

    replica_context = tf.distribute.get_replica_context()
    if replica_context is not None:
      loss_sums, counts = replica_context.all_reduce(tf.distribute.ReduceOp.SUM,
                                                     [loss_sums, counts])
    mean_losses = tf.math.divide_no_nan(loss_sums, counts)
    moved = self.beta * self.table + (1.0 - self.beta) * mean_losses
    self.table.assign(tf.where(counts > 0, moved, self.table))
    self.counts.assign(self.counts + tf.cast(counts > 0, tf.float32))

  def statistics(self) -> dict[str, tf.Tensor]:
    """Mean, std, min and max of the estimates, for TensorBoard.

    Taken over the whole vocabulary, as the selection sees it: ids never
    predicted count with their initial value.
    """
    estimates = self.estimates()
    mean, variance = tf.nn.moments(estimates, axes=[0])
    return {"mean": mean, "std": tf.sqrt(variance), "min": tf.reduce_min(estimates),
            "max": tf.reduce_max(estimates)}

  def assign(self, table, counts=None) -> None:
    """Replaces the table (and the update counts, if given), e.g. with an earlier run's
    (`read_table`, `read_counts`)."""
    for name, values, variable in (("importance table", table, self.table),
                                   ("update-count table", counts, self.counts)):
      if values is None:
        continue
      values = tf.convert_to_tensor(values, tf.float32)
      if values.shape != (self.vocab_size,):
        raise ValueError(f"an {name} of shape {values.shape.as_list()} does not fit a "
                         f"vocabulary of {self.vocab_size}; warm-start only from a run with "
                         "the same vocab")
      variable.assign(values)

  def write_table(self, path: str) -> None:
    """Saves the table as .npy, and the update counts beside it (`counts_path`); any
    tf.io.gfile path."""
    for target, variable in ((path, self.table), (counts_path(path), self.counts)):
      with tf.io.gfile.GFile(target, "wb") as f:
        np.save(f, variable.numpy())

  @staticmethod
  def read_table(path: str) -> np.ndarray:
    with tf.io.gfile.GFile(path, "rb") as f:
      return np.load(f)

  @staticmethod
  def read_counts(path: str) -> np.ndarray | None:
    """The update counts saved beside the table at `path`, or None for a table exported
    before counts were kept (its ids then count as never updated)."""
    if not tf.io.gfile.exists(counts_path(path)):
      return None
    with tf.io.gfile.GFile(counts_path(path), "rb") as f:
      return np.load(f)


def counts_path(table_path: str) -> str:
  """Where the update counts of the table at `table_path` live: `X.npy` -> `X_counts.npy`."""
  stem = table_path[:-len(".npy")] if table_path.endswith(".npy") else table_path
  return stem + "_counts.npy"
