"""Each metric (scikit-learn's and SciPy's) against values worked by hand, and degenerate cases."""

import math

import numpy as np
import pytest

from components.glue_eval import metrics, tasks

# TP 3 (positions 0, 1, 6), FN 1 (2), FP 1 (5), TN 3 (3, 4, 7).
LABELS = [1, 1, 1, 0, 0, 0, 1, 0]
PREDICTIONS = [1, 1, 0, 0, 0, 1, 1, 0]


def test_accuracy():
  assert metrics.accuracy(LABELS, PREDICTIONS) == 6 / 8
  assert metrics.accuracy([2, 0, 1], [2, 1, 1]) == 2 / 3


def test_matthews_corrcoef_by_hand():
  # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (9 - 1) / sqrt(4*4*4*4)
  assert metrics.matthews_corrcoef(LABELS, PREDICTIONS) == pytest.approx(0.5, abs=1e-12)
  assert metrics.matthews_corrcoef([0, 1, 1, 0], [0, 1, 1, 0]) == 1.0
  assert metrics.matthews_corrcoef([0, 1, 1, 0], [1, 0, 0, 1]) == -1.0


def test_matthews_corrcoef_of_a_constant_prediction_is_zero_not_nan():
  assert metrics.matthews_corrcoef([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0
  assert metrics.matthews_corrcoef([0, 1, 1, 0], [0, 0, 0, 0]) == 0.0
  assert metrics.matthews_corrcoef([1, 1, 1], [1, 1, 1]) == 0.0


def test_f1_by_hand():
  assert metrics.f1(LABELS, PREDICTIONS) == pytest.approx(0.75, abs=1e-12)
  # TP 1, precision 1/2, recall 1/3: 2 * (1/6) / (5/6).
  assert metrics.f1([1, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(0.4, abs=1e-12)
  assert metrics.f1([1, 0, 1], [0, 0, 0]) == 0.0


def test_pearson_and_spearman_by_hand():
  # Deviations (-1.5, -.5, .5, 1.5) and (-3, -1, 0, 4): 11 / sqrt(5 * 26).
  assert metrics.pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130))
  assert metrics.spearman([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(1.0)
  # Tied predictions share rank 1.5: ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4) give sqrt(0.9).
  assert metrics.spearman([1, 2, 3, 4], [1, 1, 2, 3]) == pytest.approx(math.sqrt(0.9))
  assert metrics.pearson([0.5, 1.5, 4.0], [4.0, 1.5, 0.5]) < 0


def test_correlation_of_a_constant_prediction_is_zero_not_nan():
  assert metrics.pearson([1.0, 2.0, 3.0], [2.5, 2.5, 2.5]) == 0.0
  assert metrics.spearman([1.0, 2.0, 3.0], [2.5, 2.5, 2.5]) == 0.0


def test_multiclass_mcc_and_negative_class_f1_by_hand():
  # Confusion rows (2, 0, 0), (0, 1, 1), (0, 1, 1): trace 4 of 6, every class count 2, so
  # (4 * 6 - 12) / sqrt((36 - 12) * (36 - 12)).
  assert metrics.matthews_corrcoef([0, 1, 2, 0, 1, 2], [0, 1, 1, 0, 2, 2]) == pytest.approx(0.5)
  # Class 0 as the positive class: TP 1, FP 0, FN 1.
  assert metrics.f1([0, 0, 1, 1], [0, 1, 1, 1], positive=0) == pytest.approx(2 / 3)


def test_bad_inputs_are_errors():
  with pytest.raises(ValueError, match="no examples"):
    metrics.accuracy([], [])
  with pytest.raises(ValueError, match="must be vectors of one length"):
    metrics.accuracy([1, 0], [1])


def test_task_metrics_and_scores():
  mnli = metrics.task_metrics(tasks.get_task("MNLI"),
                              {"matched": np.array([0, 1, 2, 2]), "mismatched": np.array([1, 1])},
                              {"matched": np.array([0, 1, 2, 0]), "mismatched": np.array([1, 0])})
  assert mnli == {"accuracy_matched": 0.75, "accuracy_mismatched": 0.5}
  mrpc = metrics.task_metrics(tasks.get_task("MRPC"), {"dev": np.array([1, 0, 1, 1])},
                              {"dev": np.array([1, 1, 0, 0])})
  assert list(mrpc) == ["f1", "accuracy"]
  assert mrpc == {"f1": pytest.approx(0.4), "accuracy": 0.25}
  cola = metrics.task_metrics(tasks.get_task("CoLA"), {"dev": np.array(LABELS)},
                              {"dev": np.array(PREDICTIONS)})
  assert cola == {"mcc": pytest.approx(0.5)}
  stsb = metrics.task_metrics(tasks.get_task("STS-B"), {"dev": np.array([1.0, 2.0, 3.0, 4.0])},
                              {"dev": np.array([1.0, 1.0, 2.0, 3.0])})
  # Pearson: deviations (-.75, -.75, .25, 1.25) against (-1.5, -.5, .5, 1.5): 3.5 / sqrt(2.75 * 5).
  assert stsb == {"pearson": pytest.approx(3.5 / math.sqrt(13.75)),
                  "spearman": pytest.approx(math.sqrt(0.9))}
  # A task's two metrics are averaged first; then the tasks, unweighted.
  assert metrics.task_score(mnli) == 0.625
  assert metrics.task_score(mrpc) == pytest.approx(0.325)
  assert metrics.glue_score([0.625, 0.325, 0.5]) == pytest.approx(1.45 / 3)
