"""Step 1 of the page: a study's record (run_study's study_run.json) as values per seed."""

import dataclasses
import json
import pathlib

UNTRAINED = "untrained"  # the reference of the full-depth phase
# What the page and the plot call each model.
LABELS = {
    "baseline": "BERT",
    "baseline_equal_compute": "BERT at token drop's FLOPs",
    "token_drop": "token drop (ema, the paper)",
    "bias_corrected": "token drop (bias_corrected)",
    "anneal": "token drop (ema, annealed keep)",
    "random": "random selection",
    "untrained": "untrained reference",
}
# The record's two sections of final validations: each pretraining run ("runs", under
# "final"), and the full-depth phase that follows it ("phase").
PRETRAINING, PHASE = "runs", "phase"


@dataclasses.dataclass(frozen=True)
class Study:
  """A finished study: its command, settings, stage times and measurements (measure.py's)."""
  command: str
  run_date: str
  args: dict
  train_steps: dict[str, int]
  stage_seconds: dict[str, float]
  measurements: dict

  @classmethod
  def from_record(cls, record: dict) -> "Study":
    return cls(command=record["command"], run_date=record["run_date"], args=record["args"],
               train_steps=record["train_steps"], stage_seconds=record["stage_seconds"],
               measurements=record["analysis"])

  @classmethod
  def read(cls, path: pathlib.Path) -> "Study":
    return cls.from_record(json.loads(path.read_text()))

  @property
  def seeds(self) -> list[int]:
    return self.args["seeds"]

  @property
  def models(self) -> list[str]:
    return self.args["models"]

  @property
  def unigram_loss(self) -> float:
    return self.measurements["unigram_loss"]

  def run(self, name: str, seed: int) -> dict:
    """One pretraining run's measurements: final metrics, seconds, FLOPs, curve."""
    return self.measurements["runs"][f"{name}_s{seed}"]

  def total_flops(self, name: str) -> float:
    """A model's training FLOPs (the same for every seed)."""
    return self.run(name, self.seeds[0])["flops"]["total_flops"]

  def values(self, name: str, key: str, section: str = PRETRAINING) -> dict[int, float]:
    """seed -> `key` of a model's final validation (PRETRAINING) or its full-depth phase
    (PHASE), for the seeds that have it."""
    values = {}
    for seed in self.seeds:
      entry = self.measurements[section].get(f"{name}_s{seed}")
      if entry is not None:
        values[seed] = (entry["final"] if section == PRETRAINING else entry)[key]
    return values

  def importance(self, name: str) -> dict[int, dict]:
    """seed -> the importance-table read-outs of a run (measure.table_informativeness)."""
    return {seed: self.measurements["importance"][f"{name}_s{seed}"] for seed in self.seeds}

  def final_losses(self) -> list[float]:
    """Every pretraining run's final full-depth validation loss."""
    return [run["final"]["validation_loss"] for run in self.measurements[PRETRAINING].values()]
