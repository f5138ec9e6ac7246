"""Each GLUE task's official metric (scikit-learn's and SciPy's), and the GLUE score.

Scores are fractions (accuracy 0.85, MCC and correlations in [-1, 1]); reports print them
x100 as papers do. A correlation that is undefined because one side is constant (a model
that predicts one class or one value) counts as no correlation, 0, as scikit-learn's MCC
does, so one degenerate run cannot turn a median or the GLUE score into NaN.
"""

from collections.abc import Iterable, Mapping

import numpy as np
import scipy.stats
import sklearn.metrics

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
  return float(sklearn.metrics.accuracy_score(*_checked(labels, predictions)))


def matthews_corrcoef(labels, predictions) -> float:
  """Matthews correlation (CoLA), in its multiclass form; scikit-learn gives 0 when undefined."""
  return float(sklearn.metrics.matthews_corrcoef(*_checked(labels, predictions)))


def f1(labels, predictions, positive: int = 1) -> float:
  """F1 of the positive class (MRPC: paraphrase, QQP: duplicate); 0 with no true positive."""
  labels, predictions = _checked(labels, predictions)
  return float(sklearn.metrics.f1_score(labels, predictions, pos_label=positive,
                                        zero_division=0.0))


def _correlation(statistic, labels, predictions) -> float:
  labels, predictions = _checked(labels, predictions)
  # SciPy returns NaN (and warns) when a side is constant.
  if np.ptp(labels) == 0 or np.ptp(predictions) == 0:
    return 0.0
  return float(statistic(labels, predictions).statistic)


def pearson(labels, predictions) -> float:
  return _correlation(scipy.stats.pearsonr, labels, predictions)


def spearman(labels, predictions) -> float:
  """Pearson of the ranks, tied values sharing the mean of the ranks they span."""
  return _correlation(scipy.stats.spearmanr, labels, predictions)


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
