"""Step 3 of the page: validation loss against cumulative training FLOPs, per model."""

import dataclasses
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.study.analyse import AS_TRAINED, FULL_DEPTH  # noqa: E402
from bench.study.load import LABELS, Study  # noqa: E402
from trainer import flops  # noqa: E402

COLORS = {"baseline": "C1", "baseline_equal_compute": "C3", "token_drop": "C0",
          "bias_corrected": "C4", "anneal": "C5", "random": "C2", "untrained": "C7"}


def flops_until(run: flops.RunFlops, step: int) -> float:
  """The training FLOPs of a run's first `step` steps: its stages cut at `step`."""
  edges = np.cumsum([0, *run.stage_steps])
  done = tuple(max(0, min(step, end) - start)
               for start, end in zip(edges[:-1], edges[1:], strict=True))
  return dataclasses.replace(run, stage_steps=done).total


def plot_curves(study: Study, path: pathlib.Path) -> None:
  """Mean over the seeds; solid: as trained, dashed: full depth."""
  fig, ax = plt.subplots(figsize=(8, 5))
  for name in study.models:
    runs = [study.run(name, s) for s in study.seeds]
    recorded = runs[0]["flops"]
    run_flops = flops.RunFlops(keep_counts=tuple(recorded["keep_counts"]),
                               step_flops=tuple(recorded["step_flops"]),
                               stage_steps=tuple(recorded["stage_steps"]))
    for key, style in ((AS_TRAINED, "-"), (FULL_DEPTH, "--")):
      steps = [step for step, _ in runs[0]["curve"][key]]
      values = np.mean([[v for _, v in run["curve"][key]] for run in runs], axis=0)
      ax.plot([flops_until(run_flops, s) / 1e12 for s in steps], values, style, marker="o",
              ms=3, color=COLORS[name], label=LABELS[name] if style == "-" else None)
  ax.set_xlabel("cumulative analytic training TFLOPs")
  ax.set_ylabel("validation MLM loss")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
