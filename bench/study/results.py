"""Reads what run_study.py produced and writes the results page: tables, plots, text.

Every number on the page comes from the run that wrote it: TensorBoard summaries of
the pretraining runs, glue_report.json of the fine-tuning, the checkpoints'
importance tables, and the prepared data itself.
"""

import dataclasses
import json
import pathlib
import platform
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy import stats as scipy_stats  # noqa: E402

from trainer import configs, vocab  # noqa: E402
from trainer.encoder import TokenDropSchedule, select_kept_positions  # noqa: E402

LABELS = {
    "token_drop": "token drop (importance)",
    "baseline": "baseline BERT",
    "baseline_equal_compute": "baseline at equal FLOPs",
    "random": "random selection",
    "baseline_early": "reference: baseline's first checkpoint",
}
COLORS = {"token_drop": "C0", "baseline": "C1", "baseline_equal_compute": "C3", "random": "C2",
          "baseline_early": "C7"}
MIN_COUNT = 20  # tokens rarer than this in the training data are left out of the rankings
MIN_UPDATES_FOR_MEAN = 20  # fewer estimated updates: no bias-corrected mean loss shown
MIN_UPDATES = 200  # estimated importance updates for the "hardest settled tokens" table


@dataclasses.dataclass
class StudyInputs:
  output_dir: pathlib.Path
  work_dir: pathlib.Path
  data_dir: pathlib.Path
  scale: object
  args: dict
  command: str
  runs: dict
  flops_per_step: dict
  analytic_ratios: tuple[float, float]
  base_analytic_ratio: float  # BERT-base's, encoder + MLM head
  matched_step: int
  exact_matched_step: float
  finetune_reports: dict
  stage_seconds: dict  # stage -> wall seconds of the run that made the work dir
  run_date: str  # when that run was made (ISO date)


def _events(directory: pathlib.Path) -> dict[str, list[tuple[int, float, float]]]:
  """tag -> [(step, wall_time, value)] from the event files in `directory`."""
  series: dict[str, list[tuple[int, float, float]]] = {}
  for path in sorted(directory.glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        number = (float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                  else value.simple_value)
        series.setdefault(value.tag, []).append((event.step, event.wall_time, number))
  return {tag: sorted(points) for tag, points in series.items()}


@dataclasses.dataclass
class Curves:
  steps: np.ndarray  # validation steps
  loss: np.ndarray
  accuracy: np.ndarray
  # Training wall time from the first training summary to each validation step, evals left out.
  train_seconds: np.ndarray


def read_curves(model_dir: pathlib.Path) -> Curves:
  train = _events(model_dir / "train")
  validation = _events(model_dir / "validation")
  train_times = {step: wall for step, wall, _ in train["lm_example_loss"]}
  eval_end = {step: wall for step, wall, _ in validation["lm_example_loss"]}
  # Each stretch of training starts when the previous summary (or evaluation) ended.
  steps = sorted(train_times)
  elapsed, total, previous = {}, 0.0, None
  for step in steps:
    if previous is not None:
      total += train_times[step] - max(train_times[previous], eval_end.get(previous, 0.0))
    elapsed[step] = total
    previous = step
  loss = dict((s, v) for s, _, v in validation["lm_example_loss"])
  accuracy = dict((s, v) for s, _, v in validation["masked_lm_accuracy"])
  eval_steps = sorted(loss)
  return Curves(np.array(eval_steps), np.array([loss[s] for s in eval_steps]),
                np.array([accuracy[s] for s in eval_steps]),
                np.array([elapsed.get(s, np.nan) for s in eval_steps]))


def first_interval_seconds(model_dir: pathlib.Path) -> float:
  """Process start (params.yaml written) to the first training summary: tracing, compiling."""
  train = _events(model_dir / "train")["lm_example_loss"]
  return train[0][1] - (model_dir / "params.yaml").stat().st_mtime


def read_finetune(report_path: pathlib.Path, class_shares: tuple[float, ...]) -> dict:
  """One model's rt_sst2 report; `collapsed` lists the seeds whose dev accuracy equals a
  class's share of the dev set, the signature of a classifier that predicts one class."""
  report = json.loads(report_path.read_text())
  task = report["tasks"]["rt_sst2"]
  scores = [seed["score"] for seed in task["seeds"]]
  seeds = [seed["seed"] for seed in task["seeds"]]
  dev_size = sum(task["dev_sizes"].values())
  collapsed = [seed for seed, score in zip(seeds, scores, strict=True)
               if any(abs(score - share) < 0.5 / dev_size for share in class_shares)]
  learned = [score for seed, score in zip(seeds, scores, strict=True) if seed not in collapsed]
  return {"median": statistics.median(scores), "min": min(scores), "max": max(scores),
          "scores": scores, "seeds": seeds, "collapsed": collapsed,
          "learned_median": statistics.median(learned) if learned else float("nan"),
          "learned": len(learned),
          "lr": task["best_learning_rate"], "train_size": task["train_size"],
          "dev_size": dev_size, "batch_size": report["finetune_config"]["batch_size"]}


def rt_dev_class_shares() -> tuple[float, ...]:
  """Each label's share of the rt_sst2 dev split: the accuracy of always predicting it."""
  from components.glue_eval import data as glue_data

  labels = [example.label for example in glue_data.read_rotten_tomatoes().dev["dev"].examples]
  return tuple(labels.count(label) / len(labels) for label in sorted(set(labels)))


def estimated_updates(counts: np.ndarray, scale, train_sequences: int,
                      masked_lm_prob: float) -> np.ndarray:
  """About how many training steps updated each id's importance.

  The table moves an id once per step in which it is predicted at least once. A step
  reads batch_size of the train_sequences sequences and predicts each position with
  probability about min(masked_lm_prob, max_predictions / seq_length), so an id is
  predicted Poisson(rate) times per step; the estimate is steps * P(at least once).
  """
  p = min(masked_lm_prob, scale.max_predictions / scale.seq_length)
  rate = counts * (scale.batch_size / train_sequences) * p
  return scale.train_steps * -np.expm1(-rate)


def token_counts(data_dir: pathlib.Path, vocab_size: int, seq_length: int) -> np.ndarray:
  """How often each id occurs in the training split (real positions only)."""
  counts = np.zeros(vocab_size, np.int64)
  for ids, mask in _sequences(data_dir / "train", seq_length).batch(4096):
    counts += np.bincount(ids.numpy()[mask.numpy() > 0], minlength=vocab_size)
  return counts


def _sequences(split_dir: pathlib.Path, seq_length: int) -> tf.data.Dataset:
  features = {name: tf.io.FixedLenFeature([seq_length], tf.int64)
              for name in ("input_word_ids", "input_mask")}
  files = sorted(str(p) for p in split_dir.glob("*.tfrecord.gz"))
  return tf.data.TFRecordDataset(files, compression_type="GZIP").map(
      lambda r: (lambda e: (e["input_word_ids"], e["input_mask"]))(
          tf.io.parse_single_example(r, features)))


def keep_rates(table: np.ndarray, data_dir: pathlib.Path, scale) -> tuple[np.ndarray, np.ndarray]:
  """(times kept, times seen) per id on the validation split, with the encoder's own selection
  and the task's default always-kept/always-dropped tokens."""
  defaults = configs.TokenDropBertEncoderConfig()
  index = {t: i for i, t in enumerate(vocab.load_vocab(data_dir / "vocab.txt"))}
  allow = tuple(index[t] for t in defaults.token_allow_tokens)
  deny = tuple(index[t] for t in defaults.token_deny_tokens)
  keep_k = TokenDropSchedule.from_encoder_args(
      scale.num_layers, keep_ratio=scale.keep_ratio).keep_count(scale.seq_length)
  kept = np.zeros(len(table), np.int64)
  seen = np.zeros(len(table), np.int64)
  for ids, mask in _sequences(data_dir / "validation", scale.seq_length).batch(256):
    ids32 = tf.cast(ids, tf.int32)
    positions = select_kept_positions(tf.gather(table, ids32), ids32, mask, keep_k, allow, deny)
    kept_ids = tf.gather(ids32, positions, batch_dims=1).numpy()
    kept_real = tf.gather(mask, positions, batch_dims=1).numpy() > 0
    kept += np.bincount(kept_ids[kept_real], minlength=len(table))
    seen += np.bincount(ids.numpy()[mask.numpy() > 0], minlength=len(table))
  return kept, seen


def _fmt_flops(value: float) -> str:
  return f"{value / 1e12:.2f} TFLOP"


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
  return float(scipy_stats.spearmanr(x, y).statistic)


def write_page(inputs: StudyInputs) -> None:
  out = inputs.output_dir
  plots = out / "plots"
  plots.mkdir(parents=True, exist_ok=True)
  scale = inputs.scale
  tokens = vocab.load_vocab(inputs.data_dir / "vocab.txt")
  curves = {name: read_curves(inputs.runs[name]) for name in ("token_drop", "baseline", "random")}
  matched = _events(inputs.runs["baseline_equal_compute"] / "validation")
  matched_loss = matched["lm_example_loss"][-1][2]
  matched_accuracy = matched["masked_lm_accuracy"][-1][2]
  class_shares = rt_dev_class_shares()
  finetune = {name: read_finetune(path, class_shares)
              for name, path in inputs.finetune_reports.items()}
  saved = np.load(inputs.work_dir / "importance_tables.npz")
  table_steps, tables = saved["steps"], saved["tables"]
  table = tables[-1]
  counts = token_counts(inputs.data_dir, len(tokens), scale.seq_length)
  kept, seen = keep_rates(table, inputs.data_dir, scale)
  init = configs.TokenDropBertEncoderConfig().token_loss_init_value
  beta = configs.TokenDropBertEncoderConfig().token_loss_beta
  data_stats = json.loads((inputs.data_dir / "stats.json").read_text())
  updates = estimated_updates(counts, scale, data_stats["examples"]["train"],
                              data_stats["config"]["masked_lm_prob"])
  special = set(vocab.SpecialTokenIds.from_vocab_file(inputs.data_dir / "vocab.txt").all_ids())

  # --- equal steps / equal compute ---
  drop_total = inputs.flops_per_step["token_drop"] * scale.train_steps
  base_total = inputs.flops_per_step["baseline"] * scale.train_steps
  matched_flops = inputs.flops_per_step["baseline"] * inputs.matched_step
  fig, axes = plt.subplots(2, 3, figsize=(15, 8))
  for row, metric in enumerate(("loss", "accuracy")):
    for name, c in curves.items():
      y = getattr(c, metric)
      axes[row, 0].plot(c.steps, y, "o-", color=COLORS[name], label=LABELS[name])
      axes[row, 1].plot(c.steps * inputs.flops_per_step[name] / 1e12, y, "o-",
                        color=COLORS[name], label=LABELS[name])
      axes[row, 2].plot(c.train_seconds, y, "o-", color=COLORS[name], label=LABELS[name])
    point = matched_loss if metric == "loss" else matched_accuracy
    star = {"marker": "*", "ms": 14, "color": COLORS["baseline_equal_compute"],
            "label": LABELS["baseline_equal_compute"], "linestyle": "none"}
    axes[row, 0].plot([inputs.matched_step], [point], **star)
    axes[row, 1].plot([matched_flops / 1e12], [point], **star)
    name = "validation MLM loss" if metric == "loss" else "validation MLM accuracy"
    for col, xlabel in enumerate(("training step", "analytic training TFLOPs",
                                  "training wall time (s, validation excluded)")):
      axes[row, col].set_xlabel(xlabel)
      axes[row, col].set_ylabel(name)
      axes[row, col].grid(alpha=0.3)
  axes[0, 0].legend(fontsize=8)
  fig.suptitle("Full-model validation MLM metrics (no dropping at evaluation)")
  fig.tight_layout()
  fig.savefig(plots / "mlm_curves.png", dpi=90)
  plt.close(fig)

  # --- downstream ---
  fig, ax = plt.subplots(figsize=(7, 4))
  for i, (name, r) in enumerate(finetune.items()):
    ax.bar(i, r["median"] * 100, color=COLORS[name], alpha=0.5)
    ax.plot([i] * len(r["scores"]), [s * 100 for s in r["scores"]], "ko")
  ax.set_xticks(range(len(finetune)), [LABELS[n] for n in finetune], rotation=15, fontsize=8)
  ax.axhline(max(class_shares) * 100, color="k", linestyle="--", linewidth=0.8,
             label="always one class")
  ax.legend(fontsize=8, loc="lower right")
  ax.set_ylabel("rt_sst2 dev accuracy (%)")
  low = min(min(r["scores"]) for r in finetune.values()) * 100
  ax.set_ylim(max(0, low - 5), None)
  ax.set_title("Fine-tuning: median (bar) and each seed (dots)")
  fig.tight_layout()
  fig.savefig(plots / "finetune.png", dpi=90)
  plt.close(fig)

  # --- importance ---
  ranked = np.array([i for i in range(len(tokens))
                     if counts[i] >= MIN_COUNT and i not in special])
  updated = ranked[table[ranked] != init]
  rho_final = _spearman(np.log(counts[updated]), table[updated]) if len(updated) > 2 else np.nan
  rate = np.divide(kept, seen, out=np.full(len(tokens), np.nan), where=seen > 0)
  with_rate = updated[seen[updated] >= 5]
  rho_keep = (_spearman(np.log(counts[with_rate]), rate[with_rate])
              if len(with_rate) > 2 else np.nan)
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  axes[0].scatter(counts[updated], table[updated], s=4, alpha=0.4)
  axes[0].set_xscale("log")
  axes[0].set_xlabel("count in the training split")
  axes[0].set_ylabel("final importance (moving-average MLM loss)")
  axes[0].set_title(f"Spearman rho = {rho_final:.2f} (n = {len(updated)})")
  axes[1].scatter(counts[with_rate], rate[with_rate], s=4, alpha=0.4, color="C2")
  axes[1].set_xscale("log")
  axes[1].set_xlabel("count in the training split")
  axes[1].set_ylabel("share of occurrences kept (validation split)")
  axes[1].set_title(f"Spearman rho = {rho_keep:.2f} (n = {len(with_rate)})")
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(plots / "importance_frequency.png", dpi=90)
  plt.close(fig)

  # Frequency quartiles of the final ranked set; their mean importance at each checkpoint.
  quartiles = np.array_split(ranked[np.argsort(-counts[ranked])], 4)
  rhos = []
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for q, ids in enumerate(quartiles):
    axes[0].plot(table_steps, tables[:, ids].mean(axis=1), "o-",
                 label=f"frequency quartile {q + 1} ({'most' if q == 0 else 'least'} frequent)"
                 if q in (0, 3) else f"frequency quartile {q + 1}")
  for t in tables:
    changed = ranked[t[ranked] != init]
    rhos.append(_spearman(np.log(counts[changed]), t[changed]) if len(changed) > 2 else np.nan)
  axes[0].set_xlabel("training step")
  axes[0].set_ylabel(f"mean importance (init {init:g})")
  axes[0].ticklabel_format(axis="y", useOffset=False)
  axes[0].legend(fontsize=8)
  axes[1].plot(table_steps, rhos, "o-")
  axes[1].axhline(0, color="k", lw=0.5)
  axes[1].set_xlabel("training step")
  axes[1].set_ylabel("Spearman rho(log count, importance)")
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(plots / "importance_evolution.png", dpi=90)
  plt.close(fig)

  # --- the page ---
  total_seconds = sum(inputs.stage_seconds.values())
  drop, base = curves["token_drop"], curves["baseline"]
  finetune_seeds = len(next(iter(finetune.values()))["scores"])
  schedule = TokenDropSchedule.from_encoder_args(scale.num_layers, keep_ratio=scale.keep_ratio)
  lines = [
      "# Token dropping against BERT, in miniature (issue 7)",
      "",
      "**A small-scale replication, not the paper's setting.** The paper (Hou et al., ACL "
      "2022) pretrains BERT-base on 512-token sequences for a million steps; this is a "
      f"{scale.num_layers}-layer, hidden-{scale.hidden_size} BERT trained for "
      f"{scale.train_steps} steps on the IMDB reviews, on a 2-core CPU. It tests whether our "
      "implementation shows the paper's direction, not its numbers.",
      "",
      f"- Command: `{inputs.command}`",
      f"- Wall time of this run: **{total_seconds / 60:.1f} min** in all ("
      + ", ".join(f"{k} {v / 60:.1f} min" for k, v in inputs.stage_seconds.items())
      + f"), measured {inputs.run_date} on {platform.machine()}, "
      f"Python {platform.python_version()}, TF {tf.__version__}; the machine may have been "
      "shared with other jobs.",
      f"- Seeds: **one pretraining seed** ({inputs.args['seed']}) shared by all runs (same "
      f"initial weights, data order and MLM masks); **{finetune_seeds} fine-tuning "
      f"seeds** ({inputs.args['finetune_seeds']}) per model.",
      "",
      "## Setup",
      "",
      "| setting | value |",
      "|---|---|",
      f"| data | IMDB reviews (`packaged:imdb`), `tokendrop prepare-data`, seq "
      f"{scale.seq_length}, dynamic masking, {inputs.args['validation_fraction']:.0%} of "
      "documents held out by content hash |",
      f"| model | L{scale.num_layers} H{scale.hidden_size} A{scale.num_heads}, FFN "
      f"{4 * scale.hidden_size}, bert-base-uncased vocab ({len(tokens)}) |",
      f"| token dropping | keep ratio {scale.keep_ratio} ({scale.shape().keep_k} of "
      f"{scale.seq_length}), layers (queries, keys): "
      f"{schedule.attention_lengths(scale.seq_length)} |",
      f"| pretraining | {scale.train_steps} steps, batch {scale.batch_size}, AdamW, lr "
      f"{scale.learning_rate:g} (10% warmup, linear decay), {scale.max_predictions} "
      "predictions per sequence |",
      f"| validation | every {scale.eval_interval} steps, the full model (no dropping), at most "
      f"{scale.validation_batches} batches, the same masks each time |",
      f"| fine-tuning | rt_sst2 (SST-2 format, Rotten Tomatoes sentences), lr "
      f"{inputs.args['finetune_learning_rates']}, epochs {inputs.args['finetune_epochs']}, seq "
      f"{inputs.args['finetune_seq_length']}, batch "
      f"{next(iter(finetune.values()))['batch_size']}, "
      f"{next(iter(finetune.values()))['train_size']:,} training examples, "
      f"{next(iter(finetune.values()))['dev_size']} dev examples |",
      "",
      "## 1. Equal steps",
      "",
      "![MLM curves](plots/mlm_curves.png)",
      "",
      "| model | val MLM loss | val MLM accuracy | analytic training FLOPs | training wall time "
      "(s) | first stretch (s, includes tracing) |",
      "|---|---|---|---|---|---|",
  ]
  for name, c in curves.items():
    lines.append(f"| {LABELS[name]} (step {c.steps[-1]}) | {c.loss[-1]:.3f} | "
                 f"{c.accuracy[-1]:.3f} | {_fmt_flops(inputs.flops_per_step[name] * c.steps[-1])}"
                 f" | {c.train_seconds[-1]:.0f} | "
                 f"{first_interval_seconds(inputs.runs[name]):.0f} |")
  wall_ratio = drop.train_seconds[-1] / base.train_seconds[-1]
  lines += [
      "",
      f"Analytic FLOP ratio per step, token drop / baseline: "
      f"{inputs.analytic_ratios[1]:.3f} (encoder alone {inputs.analytic_ratios[0]:.3f}); "
      f"measured training wall-time ratio in this run: {wall_ratio:.3f}. Training FLOPs are "
      "3x the forward matmul FLOPs of `bench/step_cost.py` (embeddings, LayerNorm, softmax "
      "left out). Training wall time sums the stretches between training summaries from the "
      "first summary on, leaving out the validation passes and the first loop (start-up and "
      "tf.function tracing, shown in its own column); it includes checkpoint writes.",
      "",
      "## 2. Equal compute",
      "",
      f"The token-drop run spent {_fmt_flops(drop_total)}; the baseline reaches that at step "
      f"{inputs.exact_matched_step:.1f}. The baseline kept a checkpoint at step "
      f"**{inputs.matched_step}** (the nearest training-loop boundary; "
      f"{matched_flops / drop_total:.3f}x the token-drop FLOPs), evaluated on its own. It is "
      "the same run as the full baseline, stopped early: its learning rate had not decayed to "
      "zero yet.",
      "",
      "| model | step | analytic FLOPs | val MLM loss | val MLM accuracy |",
      "|---|---|---|---|---|",
      f"| {LABELS['token_drop']} | {scale.train_steps} | {_fmt_flops(drop_total)} | "
      f"{drop.loss[-1]:.3f} | {drop.accuracy[-1]:.3f} |",
      f"| {LABELS['baseline_equal_compute']} | {inputs.matched_step} | "
      f"{_fmt_flops(matched_flops)} | {matched_loss:.3f} | {matched_accuracy:.3f} |",
      f"| {LABELS['baseline']} (for reference) | {scale.train_steps} | "
      f"{_fmt_flops(base_total)} | {base.loss[-1]:.3f} | {base.accuracy[-1]:.3f} |",
      "",
      "## 3. Downstream: rt_sst2 fine-tuning",
      "",
      "![fine-tuning](plots/finetune.png)",
      "",
      "| model | median dev accuracy | min-max over seeds | per seed | lr | seeds that "
      "predict one class | median of the other seeds |",
      "|---|---|---|---|---|---|---|",
  ]
  for name, r in finetune.items():
    per_seed = ", ".join(f"{s}: {v:.3f}" for s, v in zip(r["seeds"], r["scores"], strict=True))
    lines.append(f"| {LABELS[name]} | {r['median']:.3f} | {r['min']:.3f}-{r['max']:.3f} | "
                 f"{per_seed} | {r['lr']:g} | "
                 f"{', '.join(map(str, r['collapsed'])) or 'none'} | "
                 f"{r['learned_median']:.3f} ({r['learned']} of {len(r['scores'])}) |")
  collapsed_runs = sum(len(r["collapsed"]) for r in finetune.values())
  all_runs = sum(len(r["scores"]) for r in finetune.values())
  lines += [
      "",
      f"Always predicting one class scores {' or '.join(f'{x:.3f}' for x in class_shares)} "
      f"on this dev set; a seed whose accuracy equals one of those is flagged as predicting "
      f"one class. **{collapsed_runs} of {all_runs} fine-tuning runs did.**"
      + (" A collapsed run says nothing about its checkpoint." if collapsed_runs else ""),
  ]
  if "baseline_early" in finetune:
    lines += [
        "",
        f"The reference row fine-tunes the baseline's first checkpoint (step "
        f"{scale.steps_per_loop}, learning rate still warming up): what fine-tuning reaches "
        "with almost no pretraining. A pretrained model that does not beat it gained nothing "
        "downstream from its pretraining at this scale.",
    ]
  lines += [
      "",
      "## 4. Ablation: importance against random selection",
      "",
      "Same keep ratio, same FLOPs per step; `token_selection: random` scores every token with "
      "a uniform random number each step (the always-kept and always-dropped tokens are still "
      "forced).",
      "",
      "| model | val MLM loss | val MLM accuracy | rt_sst2 median (min-max) |",
      "|---|---|---|---|",
  ]
  for name in ("token_drop", "random"):
    c, r = curves[name], finetune[name]
    lines.append(f"| {LABELS[name]} | {c.loss[-1]:.3f} | {c.accuracy[-1]:.3f} | "
                 f"{r['median']:.3f} ({r['min']:.3f}-{r['max']:.3f}) |")
  order = updated[np.argsort(-table[updated])]
  top = inputs.args["top_tokens"]
  # The moving average starts at `init`; after n updates that start still weighs beta**n.
  # Removing it (as Adam's bias correction does) estimates the token's mean MLM loss.
  init_weight = beta ** updates
  corrected = (table - init * init_weight) / np.maximum(1 - init_weight, 1e-12)
  settled = updated[updates[updated] >= MIN_UPDATES]
  hard_order = settled[np.argsort(-corrected[settled])]

  def token_rows(ids):
    return [f"| `{tokens[i]}` | {counts[i]:,} | {updates[i]:.0f} | {table[i]:.3f} | "
            + (f"{corrected[i]:.2f} | " if updates[i] >= MIN_UPDATES_FOR_MEAN else "- | ")
            + (f"{rate[i]:.2f} |" if seen[i] else "- |")
            for i in ids]

  token_header = ["| token | training count | est. updates | importance | est. mean loss | "
                  "kept |", "|---|---|---|---|---|---|"]

  lines += [
      "",
      "## 5. The importance table",
      "",
      f"The final table of the token-drop run (step {table_steps[-1]}). Importance is the "
      "moving average of a token's MLM loss (high: kept). Rankings cover the "
      f"{len(updated):,} ordinary tokens seen at least {MIN_COUNT} times in the training split "
      f"and predicted at least once (entries still at the initial {init:g} are left out). "
      "'kept' is the share of the token's occurrences in the validation split that the "
      "encoder's own `select_kept_positions` keeps with this table. Every entry starts at "
      f"{init:g} and moves by (1 - beta) of the gap per prediction, so an entry far from "
      f"{init:g} belongs to a token predicted often: the top of the 'kept most' table is "
      "mostly tokens that were rarely predicted, not tokens shown to be hard.",
      "",
      "'est. updates' estimates how many training steps moved the entry (steps x P(the id is "
      "predicted at least once in a step), from its training count, the batch size and the "
      f"masking rate). 'est. mean loss' removes the initial value's remaining weight beta^n "
      f"(beta {beta}) from the entry, as Adam's bias correction does: an estimate of the "
      "token's mean MLM loss over training. The third table ranks by it, among the "
      f"{len(settled):,} tokens with at least {MIN_UPDATES} estimated updates (the initial "
      f"value weighs at most {beta ** MIN_UPDATES:.2f}). It is left blank below "
      f"{MIN_UPDATES_FOR_MEAN} estimated updates, where dividing by 1 - beta^n amplifies "
      "noise.",
      "",
      f"Spearman correlation of log frequency with importance: **{rho_final:.2f}**; with the "
      f"share kept: **{rho_keep:.2f}**. The paper's argument (frequent, easy tokens are "
      "dropped) predicts both are negative.",
      "",
      "![importance and frequency](plots/importance_frequency.png)",
      "",
      f"Kept most (highest importance, top {top}):",
      "",
      *token_header,
      *token_rows(order[:top]),
      "",
      f"Dropped most (lowest importance, bottom {top}):",
      "",
      *token_header,
      *token_rows(order[::-1][:top]),
      "",
      f"Hardest tokens with a settled entry (highest est. mean loss among the {len(settled):,} "
      f"with at least {MIN_UPDATES} estimated updates, top {top}):",
      "",
      *token_header,
      *token_rows(hard_order[:top]),
      "",
      "How the table evolves: the mean importance of each frequency quartile (of the ranked "
      "tokens), and the rank correlation at each kept checkpoint.",
      "",
      "![importance evolution](plots/importance_evolution.png)",
      "",
      "| step | Spearman rho(log count, importance) | entries updated |",
      "|---|---|---|",
      *[f"| {s} | {r:.2f} | {int(np.sum(t != init)):,} |"
        for s, r, t in zip(table_steps, rhos, tables, strict=True)],
      "",
      "## What this shows, and what it does not",
      "",
      *_findings(curves, matched_loss, matched_accuracy, finetune, rho_final, wall_ratio,
                 inputs.analytic_ratios[1]),
      "",
      "Limits, plainly:",
      "",
      "- One pretraining seed per model: the gaps between pretraining runs have no error bar. "
      "The fine-tuning spread covers fine-tuning seeds only.",
      f"- {scale.train_steps} steps of a {scale.num_layers}-layer model on one 33 MB corpus is "
      "far from the paper's regime; the paper's claim concerns converged BERT-base models.",
      "- At this size the MLM head and per-step overheads weigh more than in BERT-base, so "
      f"the per-step saving is smaller: analytic {inputs.analytic_ratios[1]:.3f} of a BERT "
      f"step here against {inputs.base_analytic_ratio:.3f} for BERT-base (seq 512, 256 kept), "
      "whose measured step cost is in `bench/README.md`, beside the paper's ~25%.",
      "- Wall times come from a shared 2-core machine; the analytic FLOPs are the stable "
      "measure of compute.",
      "- The equal-compute baseline is the full baseline run stopped early, not a run with a "
      "learning-rate schedule sized to the smaller budget.",
      *_fine_tuning_limit(finetune),
      "",
  ]
  (out / "README.md").write_text("\n".join(lines))


def _fine_tuning_limit(finetune: dict) -> list[str]:
  collapsed = sum(len(r["collapsed"]) for r in finetune.values())
  if not collapsed:
    return []
  runs = sum(len(r["scores"]) for r in finetune.values())
  rates = sorted({r["lr"] for r in finetune.values()})
  return [f"- Fine-tuning at lr {', '.join(f'{x:g}' for x in rates)} made {collapsed} of {runs} "
          "runs predict one class. Choosing the learning rate from a grid "
          "(`--finetune_learning_rates 1e-4,1e-3`) multiplies the fine-tuning time by the grid's "
          "size, which the 90-minute budget of this study does not leave room for."]


def _against_reference(finetune: dict) -> str:
  """What the nearly untrained reference says about the pretrained models downstream."""
  if "baseline_early" not in finetune or not finetune["baseline_early"]["learned"]:
    return ""
  reference = finetune["baseline_early"]["learned_median"]
  ahead = {n: r["learned_median"] - reference for n, r in finetune.items()
           if n != "baseline_early" and r["learned"] and r["learned_median"] > reference + 0.01}
  if not ahead:
    return (f" No pretrained model beat the nearly untrained reference ({reference:.3f}) by "
            "more than 0.01 on the seeds that learned: at this scale the downstream task does "
            "not tell these checkpoints apart, and pretraining itself added nothing measurable "
            "to it.")
  return (" Ahead of the nearly untrained reference (" + f"{reference:.3f}) by more than "
          "0.01: " + ", ".join(f"{LABELS[n]} (+{d:.3f})" for n, d in ahead.items()) + ".")


def _findings(curves, matched_loss, matched_accuracy, finetune, rho, wall_ratio,
              flop_ratio) -> list[str]:
  drop, base, rand = curves["token_drop"], curves["baseline"], curves["random"]

  def compare(a: float, b: float, lower_is_better: bool) -> str:
    if abs(a - b) < 1e-3:
      return "the same as"
    better = a < b if lower_is_better else a > b
    return f"{'better' if better else 'worse'} by {abs(a - b):.3f} than"

  collapsed = sum(len(r["collapsed"]) for r in finetune.values())
  runs = sum(len(r["scores"]) for r in finetune.values())
  return [
      f"- Equal steps: token dropping's final validation MLM loss is {drop.loss[-1]:.3f}, "
      f"{compare(drop.loss[-1], base.loss[-1], True)} the baseline's {base.loss[-1]:.3f} "
      f"(accuracy {drop.accuracy[-1]:.3f} against {base.accuracy[-1]:.3f}), for "
      f"{flop_ratio:.3f} of the FLOPs and {wall_ratio:.3f} of the measured training time.",
      f"- Equal compute: against the baseline stopped at the same FLOPs, the token-drop loss "
      f"is {compare(drop.loss[-1], matched_loss, True)} it ({drop.loss[-1]:.3f} against "
      f"{matched_loss:.3f}; accuracy {drop.accuracy[-1]:.3f} against {matched_accuracy:.3f}).",
      "- Downstream, median of all seeds: "
      + ", ".join(f"{LABELS[n]} {r['median']:.3f}" for n, r in finetune.items())
      + ". Median of the seeds that did not predict one class: "
      + ", ".join(f"{LABELS[n]} {r['learned_median']:.3f} ({r['learned']} of "
                  f"{len(r['scores'])})" for n, r in finetune.items())
      + f". {collapsed} of {runs} fine-tuning runs predicted one class; those say nothing "
      "about their checkpoint. Differences smaller than the seed spread are not evidence "
      "either way." + _against_reference(finetune),
      f"- Ablation: importance-based selection is "
      f"{compare(drop.loss[-1], rand.loss[-1], True)} random selection on validation MLM loss "
      f"({drop.loss[-1]:.3f} against {rand.loss[-1]:.3f}).",
      f"- Importance and frequency: Spearman rho = {rho:.2f}. "
      + ("Negative, as the paper argues: frequent tokens end with lower MLM loss and are "
         "dropped more." if rho < -0.1 else
         "Not the clear negative correlation the paper's argument predicts." if rho < 0.1 else
         "Positive: in this run frequent tokens keep a higher loss, against the paper's "
         "argument."),
  ]
