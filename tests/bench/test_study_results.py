"""The study's own arithmetic: the importance-update estimate, the one-class flag, and the
equal-compute step (bench/study)."""

import json
import math

import numpy as np
import pytest

from bench.study import results, run_study


def _scale(**overrides):
  values = dict(num_layers=4, hidden_size=256, seq_length=128, keep_ratio=0.5, batch_size=16,
                train_steps=1000, eval_interval=100, steps_per_loop=10, validation_batches=25,
                learning_rate=5e-4, max_predictions=20)
  values.update(overrides)
  return run_study.Scale(**values)


def test_estimated_updates_by_hand():
  # 1000 occurrences in 60,903 sequences, 16 per step, each predicted with p = 0.15:
  # Poisson rate 1000 * 16 / 60903 * 0.15 = 0.039405 per step; 1000 * (1 - e^-rate) = 38.64.
  got = results.estimated_updates(np.array([0, 1000, 10**7]), _scale(), 60903, 0.15)
  assert got[0] == 0
  assert got[1] == pytest.approx(1000 * (1 - math.exp(-1000 * 16 / 60903 * 0.15)), rel=1e-9)
  assert got[1] == pytest.approx(38.64, abs=0.01)
  assert got[2] == pytest.approx(1000)  # predicted in every step: one update per step


def test_estimated_updates_caps_the_rate_at_max_predictions():
  # 10 predictions in 128 positions (0.078) is below masked_lm_prob 0.15: the cap sets p.
  capped = results.estimated_updates(np.array([5000]), _scale(max_predictions=10), 60903, 0.15)
  assert capped[0] == pytest.approx(1000 * -math.expm1(-5000 * 16 / 60903 * 10 / 128))


def _report(tmp_path, scores):
  seeds = [{"seed": i + 1, "score": s, "metrics": {"accuracy": s}} for i, s in enumerate(scores)]
  path = tmp_path / "glue_report.json"
  path.write_text(json.dumps({"finetune_config": {"batch_size": 32}, "tasks": {"rt_sst2": {
      "seeds": seeds, "best_learning_rate": 1e-3, "train_size": 7665,
      "dev_sizes": {"dev": 865}}}}))
  return path


def test_read_finetune_flags_seeds_that_predict_one_class(tmp_path):
  shares = (431 / 865, 434 / 865)
  report = results.read_finetune(_report(tmp_path, [434 / 865, 0.7607, 431 / 865]), shares)
  assert report["collapsed"] == [1, 3]
  assert report["median"] == pytest.approx(434 / 865)
  # One example away from a class share is a real (if poor) classifier, not a collapse.
  close = results.read_finetune(_report(tmp_path, [435 / 865, 433 / 865, 0.7]), shares)
  assert close["collapsed"] == []


def test_rt_dev_class_shares_are_the_dev_label_shares():
  shares = results.rt_dev_class_shares()
  assert len(shares) == 2 and sum(shares) == pytest.approx(1.0)
  # 865 dev sentences (the fixed hash split): every share is a whole number of them.
  assert all(abs(s * 865 - round(s * 865)) < 1e-9 for s in shares)


def test_equal_compute_step_matches_the_flop_ratio():
  scale = _scale()
  step, exact = run_study.equal_compute_step(scale, 30522)
  ratio = (run_study.training_flops_per_step(scale, True, 30522)
           / run_study.training_flops_per_step(scale, False, 30522))
  assert exact == pytest.approx(1000 * ratio)
  assert step % scale.steps_per_loop == 0 and abs(step - exact) <= scale.steps_per_loop / 2
  assert step == 830  # the committed results page's equal-FLOPs checkpoint


def test_smoke_flags_never_write_the_committed_page():
  with pytest.raises(SystemExit, match="never writes bench/study"):
    run_study.main(["--smoke", "--output_dir", str(run_study.REPO / "bench/study")])




def test_page_only_without_a_run_names_the_fix(tmp_path):
  with pytest.raises(SystemExit, match="needs a finished run .* run the study first"):
    run_study.main(["--page_only", "--work_dir", str(tmp_path), "--output_dir",
                    str(tmp_path / "page")])
