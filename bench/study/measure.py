"""What the page needs from the runs themselves, measured once and stored in study_run.json.

The runs' eval_metrics.json and TensorBoard summaries, their checkpoints' importance tables,
the prepared data, and the per-id validation losses of each run's final model.
"""

import json
import pathlib

import numpy as np
import tensorflow as tf
from official.core import task_factory
from scipy import stats as scipy_stats

from bench.study.load import UNTRAINED
from trainer import contract, flops, vocab
from trainer.export import load_run_params

TRAIN_SPLIT, VALIDATION_SPLIT = contract.SPLITS
IMPORTANCE_RUNS = ("token_drop", "bias_corrected", "anneal")
# An entry has settled when the initial value's weight beta^n is below 5%: n >= 598 at 0.995.
SETTLED_INIT_WEIGHT = 0.05
MIN_VALIDATION_PREDICTIONS = 5  # ids predicted fewer times are left out of the rank correlation
# Model Garden's summary directories in a model_dir, and the loss both of them log.
TRAIN_SUMMARIES, VALIDATION_SUMMARIES = "train", "validation"
LOSS_TAG = "lm_example_loss"


def events(directory: pathlib.Path) -> dict[str, list[tuple[int, float, float]]]:
  """tag -> [(step, wall_time, value)] from the event files in `directory`."""
  series: dict[str, list[tuple[int, float, float]]] = {}
  for path in sorted(directory.glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        number = (float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                  else value.simple_value)
        series.setdefault(value.tag, []).append((event.step, event.wall_time, number))
  return {tag: sorted(points) for tag, points in series.items()}


def training_seconds(model_dir: pathlib.Path) -> float:
  """Wall time between the first and last training summaries, evaluations left out."""
  train = [(step, wall) for step, wall, _ in events(model_dir / TRAIN_SUMMARIES)[LOSS_TAG]]
  evals = {step: wall for step, wall, _ in events(model_dir / VALIDATION_SUMMARIES)[LOSS_TAG]}
  total = 0.0
  for (_, start), (_, end) in zip(train, train[1:], strict=False):
    total += end - start
  # An evaluation between two training summaries ran inside that interval: take it out.
  for step, wall in evals.items():
    before = [w for s, w in train if s == step]
    if before and wall > before[0] and step != train[-1][0]:
      total -= wall - before[0]
  return total


def unigram_loss(data_dir: pathlib.Path, params) -> float:
  """The validation MLM loss of a model that knows only token frequencies: the cross-entropy
  of the validation targets under the training split's unigram distribution (add-one)."""
  task = task_factory.get_task(params.task)
  vocab_size = params.task.model.encoder.any.vocab_size
  counts = np.ones(vocab_size)
  specials = set(vocab.special_token_ids(str(data_dir / contract.VOCAB_FILE)).all_ids())
  features = {name: tf.io.FixedLenFeature([params.task.train_data.seq_length], tf.int64)
              for name in (contract.WORD_IDS, contract.INPUT_MASK)}
  files = sorted(str(p) for p in (data_dir / TRAIN_SPLIT).glob("*"))
  for record in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
    parsed = tf.io.parse_example(record, features)
    ids = parsed[contract.WORD_IDS].numpy()[parsed[contract.INPUT_MASK].numpy() > 0]
    counts += np.bincount(ids, minlength=vocab_size)
  counts[sorted(specials)] = 0
  log_p = np.log(counts / counts.sum(), where=counts > 0, out=np.full(vocab_size, -np.inf))
  total, weight = 0.0, 0.0
  for batch in _validation_batches(task, params):
    real = batch[contract.MASKED_WEIGHTS].numpy() > 0  # padding slots name [PAD]: log p = -inf
    total += float(-log_p[batch[contract.MASKED_IDS].numpy()[real]].sum())
    weight += float(real.sum())
  return total / weight


def _validation_batches(task, params):
  dataset = task.build_inputs(params.task.validation_data)
  return dataset.take(params.trainer.validation_steps)


def per_id_validation_loss(model_dir: pathlib.Path) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray, np.ndarray]:
  """(summed loss, predictions) per id on the validation batches, with the run's final model
  dropping tokens at its own kept count (an anneal's stage 0, where its table did its work),
  the losses its table tracks; and the table's raw values and update counts."""
  params = load_run_params(str(model_dir))
  task = task_factory.get_task(params.task)
  model = task.build_model()
  batches = list(_validation_batches(task, params))
  model(batches[0], training=False)
  tf.train.Checkpoint(model=model).read(
      tf.train.latest_checkpoint(str(model_dir))).expect_partial()
  vocab_size = params.task.model.encoder.any.vocab_size
  loss_sums, predictions = np.zeros(vocab_size), np.zeros(vocab_size)
  for batch in batches:
    if params.task.model.encoder.any.keep_stages:
      batch = dict(batch, token_keep_stage=tf.constant(0))
    outputs = model(batch, training=False, drop_tokens=True)
    losses = task._prediction_losses(batch, outputs).numpy()
    ids, weights = batch[contract.MASKED_IDS].numpy(), batch[contract.MASKED_WEIGHTS].numpy()
    np.add.at(loss_sums, ids[weights > 0], losses[weights > 0])
    np.add.at(predictions, ids[weights > 0], 1)
  return (loss_sums, predictions, model.token_importance.table.numpy(),
          model.token_importance.counts.numpy())


def table_informativeness(table: np.ndarray, counts: np.ndarray, loss_sums: np.ndarray,
                          predictions: np.ndarray, init: float, beta: float) -> dict:
  """How many ids have settled, and how well the raw (ema) and bias-corrected read-outs of one
  table rank the ids by their mean validation loss (Spearman, over ids predicted at least
  MIN_VALIDATION_PREDICTIONS times)."""
  init_weight = beta ** counts
  with np.errstate(divide="ignore", invalid="ignore"):
    corrected = np.where(counts > 0, (table - init_weight * init) / (1 - init_weight), init)
  seen = predictions >= MIN_VALIDATION_PREDICTIONS
  mean_loss = loss_sums[seen] / predictions[seen]
  return {
      "updated": int((counts > 0).sum()),
      "settled": int((init_weight < SETTLED_INIT_WEIGHT).sum()),
      "ids_in_correlation": int(seen.sum()),
      "spearman_ema": float(scipy_stats.spearmanr(table[seen], mean_loss).statistic),
      "spearman_bias_corrected": float(
          scipy_stats.spearmanr(corrected[seen], mean_loss).statistic),
      # The share of validation predictions whose id has settled.
      "predictions_on_settled_ids": float(
          predictions[init_weight < SETTLED_INIT_WEIGHT].sum() / predictions.sum()),
  }


def _final(model_dir: pathlib.Path) -> dict:
  return json.loads((model_dir / contract.EVAL_METRICS_FILE).read_text())


def _curve(model_dir: pathlib.Path) -> dict:
  validation = events(model_dir / VALIDATION_SUMMARIES)
  return {key: [(step, value) for step, _, value in validation.get(key, [])]
          for key in ("validation_loss", "validation_loss" + contract.AS_TRAINED_SUFFIX)}


def analyze(work: pathlib.Path, args, steps: dict[str, int]) -> dict:
  """The measurements that need the models or the data (stored in study_run.json)."""
  from bench.study.run_study import run_dir  # run_study imports this module

  analysis = {"importance": {}, "runs": {}, "phase": {}}
  first = run_dir(work, "pretrain", args.models[0], args.seeds[0])
  params = load_run_params(str(first))
  analysis["unigram_loss"] = unigram_loss(work / "data", params)
  for name in args.models:
    for seed in args.seeds:
      model_dir = run_dir(work, "pretrain", name, seed)
      run_params = load_run_params(str(model_dir))
      run = flops.run_flops(run_params)
      analysis["runs"][f"{name}_s{seed}"] = {
          "final": _final(model_dir), "train_seconds": training_seconds(model_dir),
          "flops": run.as_dict(),
          "curve": _curve(model_dir),
      }
      if name in IMPORTANCE_RUNS:
        encoder = run_params.task.model.encoder.any
        loss_sums, predictions, table, counts = per_id_validation_loss(model_dir)
        analysis["importance"][f"{name}_s{seed}"] = table_informativeness(
            table, counts, loss_sums, predictions, encoder.token_loss_init_value,
            encoder.token_loss_beta)
  for name in (*args.models, UNTRAINED):
    for seed in args.seeds:
      analysis["phase"][f"{name}_s{seed}"] = _final(run_dir(work, "phase", name, seed))
  return analysis
