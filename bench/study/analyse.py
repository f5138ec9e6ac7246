"""Step 2 of the page: paired verdicts, FLOP and time ratios, full-depth gaps."""

import dataclasses
import math
import statistics

from bench.study.load import PHASE, PRETRAINING, UNTRAINED, Study
from trainer import contract

FULL_DEPTH = "validation_loss"
AS_TRAINED = FULL_DEPTH + contract.AS_TRAINED_SUFFIX


@dataclasses.dataclass(frozen=True)
class Comparison:
  """`first` against `second` in `key` of one section of the record, paired by seed."""
  first: str
  second: str
  key: str
  section: str
  # How the verdict table names the measurement; two comparisons of the same values are equal.
  measure: str = dataclasses.field(default="", compare=False)


# The verdict table's rows, in order; a row is left out when either model was not run.
COMPARISONS = (
    Comparison("token_drop", "baseline_equal_compute", AS_TRAINED, PRETRAINING,
               "as trained (the paper's protocol)"),
    Comparison("token_drop", "baseline_equal_compute", FULL_DEPTH, PRETRAINING, "full depth"),
    Comparison("token_drop", "baseline_equal_compute", FULL_DEPTH, PHASE,
               "after the full-depth phase"),
    Comparison("token_drop", "baseline", AS_TRAINED, PRETRAINING, "as trained, equal steps"),
    Comparison("bias_corrected", "token_drop", AS_TRAINED, PRETRAINING, "as trained"),
    Comparison("bias_corrected", "token_drop", FULL_DEPTH, PHASE, "after the phase"),
    Comparison("anneal", "baseline_equal_compute", FULL_DEPTH, PRETRAINING, "full depth"),
    Comparison("anneal", "token_drop", FULL_DEPTH, PRETRAINING, "full depth"),
    Comparison("anneal", "baseline_equal_compute", FULL_DEPTH, PHASE, "after the phase"),
    Comparison("token_drop", "random", AS_TRAINED, PRETRAINING, "as trained"),
    Comparison("token_drop", "random", FULL_DEPTH, PHASE, "after the phase"),
    Comparison("baseline_equal_compute", UNTRAINED, FULL_DEPTH, PHASE,
               "after the phase: did pretraining help at all"),
)


@dataclasses.dataclass(frozen=True)
class Difference:
  """A comparison's paired difference: mean and standard error over `seeds` seeds."""
  comparison: Comparison
  mean: float
  standard_error: float
  seeds: int
  verdict: str


@dataclasses.dataclass(frozen=True)
class Analysis:
  differences: tuple[Difference, ...]
  # model -> its training FLOPs over BERT's; empty without a BERT run.
  flop_ratios: dict[str, float]
  # model -> seed -> full-depth minus as-trained validation loss.
  full_depth_gaps: dict[str, dict[int, float]]
  # model -> seed -> training seconds over BERT's of that seed; empty without a BERT run.
  time_ratios: dict[str, dict[int, float]]

  def verdict(self, comparison: Comparison) -> str | None:
    for difference in self.differences:
      if difference.comparison == comparison:
        return difference.verdict
    return None


def mean_std(values: list[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for one value)."""
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def paired_difference(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
  """Mean and standard error of a - b over the seeds both have (the runs of a seed share
  initial weights, data order and masks)."""
  seeds = sorted(set(a) & set(b))
  differences = [a[s] - b[s] for s in seeds]
  mean, std = mean_std(differences)
  return mean, std / math.sqrt(len(seeds)) if seeds else float("nan"), len(seeds)


def verdict(difference: float, standard_error: float, lower_is_better: bool = True) -> str:
  """'better', 'worse' or 'tied' for a paired difference, at two standard errors."""
  if not math.isfinite(standard_error) or abs(difference) <= 2 * standard_error:
    return "tied (within 2 standard errors)"
  better = difference < 0 if lower_is_better else difference > 0
  return "better" if better else "worse"


def compare(study: Study, comparison: Comparison) -> Difference:
  c = comparison
  mean, error, n = paired_difference(study.values(c.first, c.key, c.section),
                                     study.values(c.second, c.key, c.section))
  word = verdict(mean, error) if n > 1 else "one seed: no error bar, no verdict"
  return Difference(c, mean, error, n, word)


def analyse(study: Study) -> Analysis:
  present = (*study.models, UNTRAINED)
  differences = tuple(compare(study, c) for c in COMPARISONS
                      if c.first in present and c.second in present)
  gaps = {}
  for name in study.models:
    full, trained = study.values(name, FULL_DEPTH), study.values(name, AS_TRAINED)
    gaps[name] = {s: full[s] - trained[s] for s in full if s in trained}
  flop_ratios, time_ratios = {}, {}
  if "baseline" in study.models:
    base_flops = study.total_flops("baseline")
    base_seconds = {s: study.run("baseline", s)["train_seconds"] for s in study.seeds}
    for name in study.models:
      flop_ratios[name] = study.total_flops(name) / base_flops
      time_ratios[name] = {s: study.run(name, s)["train_seconds"] / base_seconds[s]
                           for s in study.seeds}
  return Analysis(differences, flop_ratios, gaps, time_ratios)
