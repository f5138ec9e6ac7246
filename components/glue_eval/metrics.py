"""Each GLUE task's official metric, and the GLUE score.

Scores are fractions (accuracy 0.85, MCC and correlations in [-1, 1]); reports print them
x100 as papers do. A correlation that is undefined because one side is constant (a model
that predicts one class or one value) counts as no correlation, 0, as scikit-learn's MCC
does, so one degenerate run cannot turn a median or the GLUE score into NaN.
"""

from collections.abc import Iterable, Mapping

import numpy as np

from components.glue_eval.tasks import Task


def _checked(labels, predictions) -> tuple[np.ndarray, np.ndarray]:
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  if labels.shape != predictions.shape or labels.ndim != 1:
    raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must be "
                     "vectors of one length")
  if labels.size == 0:
    raise ValueError("no examples to score")
  return labels, predictions


def accuracy(labels, predictions) -> float:
  labels, predictions = _checked(labels, predictions)
  return float(np.mean(labels == predictions))


def matthews_corrcoef(labels, predictions) -> float:
  """Matthews correlation (CoLA), in its multiclass form; 0 when undefined."""
  labels, predictions = _checked(labels, predictions)
  classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
  true, predicted = encoded[:len(labels)], encoded[len(labels):]
  confusion = np.zeros([len(classes)] * 2, np.float64)
  np.add.at(confusion, (true, predicted), 1)
  n, correct = confusion.sum(), np.trace(confusion)
  true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
  denominator = np.sqrt((n**2 - predicted_counts @ predicted_counts) *
                        (n**2 - true_counts @ true_counts))
  if denominator == 0:
    return 0.0
  return float((correct * n - true_counts @ predicted_counts) / denominator)


def f1(labels, predictions, positive: int = 1) -> float:
  """F1 of the positive class (MRPC: paraphrase, QQP: duplicate); 0 with no true positive."""
  labels, predictions = _checked(labels, predictions)
  true_positives = np.sum((labels == positive) & (predictions == positive))
  if true_positives == 0:
    return 0.0
  precision = true_positives / np.sum(predictions == positive)
  recall = true_positives / np.sum(labels == positive)
  return float(2 * precision * recall / (precision + recall))


def pearson(labels, predictions) -> float:
  labels, predictions = _checked(labels, predictions)
  labels, predictions = labels - labels.mean(), predictions - predictions.mean()
  denominator = np.sqrt(np.sum(labels**2) * np.sum(predictions**2))
  if denominator == 0:
    return 0.0
  return float(np.sum(labels * predictions) / denominator)


def _ranks(values: np.ndarray) -> np.ndarray:
  """1-based ranks, tied values sharing the mean of the ranks they span."""
  _, value_index, counts = np.unique(values, return_inverse=True, return_counts=True)
  last = np.cumsum(counts)
  return ((last - counts + 1 + last) / 2)[value_index]


def spearman(labels, predictions) -> float:
  """Pearson of the ranks."""
  labels, predictions = _checked(labels, predictions)
  return pearson(_ranks(labels), _ranks(predictions))


METRICS = {"accuracy": accuracy, "mcc": matthews_corrcoef, "f1": f1, "pearson": pearson,
           "spearman": spearman}


def task_metrics(task: Task, labels: Mapping[str, np.ndarray],
                 predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
  """The task's metrics on each dev split, keyed as task.metric_names."""
  values = {}
  for split in task.dev_splits:
    for metric in task.metrics:
      key = metric if len(task.dev_splits) == 1 else f"{metric}_{split}"
      values[key] = METRICS[metric](labels[split], predictions[split])
  return values


def task_score(metrics: Mapping[str, float]) -> float:
  """A task's score: its metrics averaged (MRPC's F1 and accuracy, MNLI's m and mm)."""
  if not metrics:
    raise ValueError("a task score needs at least one metric")
  return float(np.mean(list(metrics.values())))


def glue_score(task_scores: Iterable[float]) -> float:
  """The unweighted mean of the task scores, as the GLUE leaderboard computes it."""
  scores = list(task_scores)
  if not scores:
    raise ValueError("a GLUE score needs at least one task score")
  return float(np.mean(scores))
