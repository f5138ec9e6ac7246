"""The study's own arithmetic (bench/study): paired verdicts, the equal-FLOPs budgets, the
importance-table read-outs, and the command line's guards."""

import math

import numpy as np
import pytest

from bench.study import analyse, load, measure, plot, run_study
from trainer import contract, flops


def test_paired_difference_and_verdict_by_hand():
  a = {1: 5.0, 2: 5.2, 3: 5.1}
  b = {1: 5.1, 2: 5.4, 3: 5.2, 4: 9.9}  # seed 4 has no pair: left out
  mean, error, n = analyse.paired_difference(a, b)
  # Differences -0.1, -0.2, -0.1: mean -0.1333, sample std 0.0577, standard error 0.0333.
  assert n == 3
  assert mean == pytest.approx(-0.4 / 3)
  assert error == pytest.approx(math.sqrt(((0.1 / 3) ** 2 * 2 + (0.2 / 3) ** 2) / 2) / math.sqrt(3))
  assert analyse.verdict(mean, error) == "better"  # 0.133 > 2 x 0.033
  assert analyse.verdict(-mean, error) == "worse"
  assert analyse.verdict(0.05, 0.03).startswith("tied")  # 0.05 <= 2 x 0.03
  assert analyse.verdict(0.05, float("nan")).startswith("tied")


def test_table_informativeness_by_hand():
  beta, init = 0.5, 10.0
  # Id 0 never updated; id 1 once (corrected 3); id 2 five times (settled: 0.5^5 < 5%).
  counts = np.array([0.0, 1.0, 5.0, 2.0])
  table = np.array([10.0, 0.5 * 10 + 0.5 * 3, 0.5 ** 5 * 10 + (1 - 0.5 ** 5) * 2,
                    0.25 * 10 + 0.75 * 4])
  loss_sums = np.array([50.0, 30.0, 20.0, 40.0])
  predictions = np.array([5.0, 10.0, 10.0, 10.0])  # mean losses 10, 3, 2, 4
  got = measure.table_informativeness(table, counts, loss_sums, predictions, init, beta)
  assert (got["updated"], got["settled"], got["ids_in_correlation"]) == (3, 1, 4)
  # The corrected read-out (10, 3, 2, 4) ranks exactly as the mean losses (10, 3, 2, 4). The
  # raw table (10, 6.5, 2.3125, 5.5) still carries the initial value and puts id 1 above id 3:
  # ranks (4, 3, 1, 2) against (4, 2, 1, 3), rho = 1 - 6 * 2 / (4 * 15) = 0.8.
  assert got["spearman_bias_corrected"] == pytest.approx(1.0)
  assert got["spearman_ema"] == pytest.approx(0.8)
  assert got["predictions_on_settled_ids"] == pytest.approx(10 / 35)


def _args(tmp_path, **overrides):
  parser = run_study._parser()
  args = parser.parse_args(["--work_dir", str(tmp_path)])
  for key, value in overrides.items():
    setattr(args, key, value)
  return args


def test_equal_compute_budgets_match_token_drops_flops(tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  (data / contract.VOCAB_FILE).write_text("".join(f"t{i}\n" for i in range(4000)))
  args = _args(tmp_path)
  steps = run_study.budget_steps(args, data, tmp_path)
  # The defaults' split: L6 H64, 128 tokens with 64 kept, 2000 steps of token drop.
  assert steps == {"baseline": 2000, "baseline_equal_compute": 1528, "token_drop": 2000,
                   "bias_corrected": 2000, "anneal": 1928, "random": 2000}

  def run_flops(name, train_steps):
    model = run_study.MODELS[name]
    config = run_study.experiment_config(args, data, model.encoder, train_steps, 1, 1, 10)
    return flops.run_flops(run_study._params(config, model.experiment, tmp_path))

  budget = run_flops("token_drop", 2000).total
  for name in ("baseline_equal_compute", "anneal"):
    # The fewest steps that reach the budget: one step fewer falls short.
    assert run_flops(name, steps[name] - 1).total < budget <= run_flops(name, steps[name]).total
  # BERT has one stage: 2000 token-drop steps over BERT's step cost, rounded up.
  (drop_step,) = run_flops("token_drop", 1).step_flops
  (bert_step,) = run_flops("baseline", 1).step_flops
  assert steps["baseline_equal_compute"] == math.ceil(2000 * drop_step / bert_step)


def test_smoke_flags_never_write_the_committed_page():
  with pytest.raises(SystemExit, match="never writes bench/study"):
    run_study.main(["--smoke", "--output_dir", str(run_study.REPO / "bench/study")])


def test_page_only_without_a_study_names_the_fix(tmp_path):
  with pytest.raises(SystemExit, match="needs a finished study .* run the study first"):
    run_study.main(["--page_only", "--work_dir", str(tmp_path), "--output_dir",
                    str(tmp_path / "page")])


def test_unknown_models_and_budgets_without_token_drop_are_refused(tmp_path):
  with pytest.raises(SystemExit, match="unknown --models"):
    run_study.main(["--models", "bert", "--work_dir", str(tmp_path)])
  with pytest.raises(SystemExit, match="add token_drop to --models"):
    run_study.main(["--models", "baseline,anneal", "--work_dir", str(tmp_path)])


def test_a_finished_run_is_reused_only_with_the_same_config_and_step(tmp_path):
  model_dir, config = tmp_path / "run", tmp_path / "config.yaml"
  model_dir.mkdir()
  config.write_text("trainer: {train_steps: 20}\n")
  assert not run_study._finished(model_dir, config, 20)  # nothing evaluated yet
  (model_dir / "study_config.yaml").write_text(config.read_text())
  (model_dir / contract.EVAL_METRICS_FILE).write_text('{"step": 10, "validation_loss": 6.0}')
  assert not run_study._finished(model_dir, config, 20)  # interrupted at step 10: resume
  (model_dir / contract.EVAL_METRICS_FILE).write_text('{"step": 20, "validation_loss": 5.0}')
  assert run_study._finished(model_dir, config, 20)
  config.write_text("trainer: {train_steps: 30}\n")
  assert not run_study._finished(model_dir, config, 20)  # another config: start over


def test_cumulative_flops_follow_the_stages_of_a_run():
  run = flops.RunFlops(keep_counts=(2, 4), step_flops=(10.0, 30.0), stage_steps=(3, 2))
  # Stage 0 costs 10 a step for 3 steps, stage 1 then 30 a step for 2.
  assert [plot.flops_until(run, step) for step in (0, 1, 3, 4, 5, 9)] == [0, 10, 30, 60, 90, 90]


def _record(finals: dict[str, dict[int, tuple[float, float]]], flops_by_model, seconds) -> dict:
  """A study_run.json with (full depth, as trained) final losses per model and seed."""
  runs = {f"{name}_s{seed}": {
      "final": {"validation_loss": full, "validation_loss_as_trained": trained},
      "flops": {"total_flops": flops_by_model[name]}, "train_seconds": seconds[name][seed]}
      for name, by_seed in finals.items() for seed, (full, trained) in by_seed.items()}
  return {"command": "c", "run_date": "d", "train_steps": {}, "stage_seconds": {},
          "args": {"models": list(finals), "seeds": [1, 2]},
          "analysis": {"runs": runs, "phase": {}, "importance": {}, "unigram_loss": 7.0}}


def test_analysis_pairs_seeds_and_keeps_only_comparisons_of_models_that_ran():
  study = load.Study.from_record(_record(
      {"baseline": {1: (6.0, 6.1), 2: (6.2, 6.4)}, "token_drop": {1: (6.5, 5.9), 2: (6.6, 6.0)}},
      {"baseline": 400.0, "token_drop": 300.0},
      {"baseline": {1: 10.0, 2: 20.0}, "token_drop": {1: 8.0, 2: 13.0}}))
  analysis = analyse.analyse(study)
  # Of the table, only token drop against BERT at equal steps has both models.
  (difference,) = analysis.differences
  assert (difference.comparison.first, difference.comparison.second) == ("token_drop", "baseline")
  # As trained: 5.9 - 6.1 and 6.0 - 6.4, mean -0.3, sample std 0.1 * sqrt(2), so the
  # standard error is 0.1: 0.3 is beyond two of them.
  assert difference.mean == pytest.approx(-0.3)
  assert difference.standard_error == pytest.approx(0.1)
  assert (difference.seeds, difference.verdict) == (2, "better")
  assert analysis.flop_ratios == {"baseline": 1.0, "token_drop": 0.75}
  assert analysis.time_ratios == {"baseline": {1: 1.0, 2: 1.0}, "token_drop": {1: 0.8, 2: 0.65}}
  assert analysis.full_depth_gaps["token_drop"] == {1: pytest.approx(0.6), 2: pytest.approx(0.6)}
  assert study.final_losses() == [6.0, 6.2, 6.5, 6.6]
