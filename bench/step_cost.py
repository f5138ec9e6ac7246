"""Cost of one pretraining step (forward, backward, optimizer): token dropping against BERT,
as a TF graph and compiled whole with XLA.

    scripts/in-env python bench/step_cost.py [--repeats 7] [--note "..."]  # rewrites README part
    scripts/in-env python bench/step_cost.py --shapes small                # prints only

Both models are built by the registered experiments (`token_drop_bert/pretraining`
and `token_drop_bert/baseline`, identical except token dropping) and run the
task's real `train_step` on the same batch, twice over: under `tf.function`,
and under `tf.function(jit_compile=True)`, the XLA step that runtime.enable_xla
gives under one_device and that a TPU compiles. Each round times drop, base,
drop XLA, base XLA, so drift in a shared machine's speed hits all four; a
mode's ratio is the median of its per-round ratios. The analytic ratio counts
the matmul FLOPs of every layer from `TokenDropSchedule.attention_lengths`, so
it follows the same schedule the encoder runs. With every shape measured, the
script rewrites its own section of bench/README.md.
"""

import argparse
import dataclasses
import datetime
import os
import pathlib
import platform
import statistics
import textwrap
import time

import numpy as np
import tensorflow as tf
from official.core import exp_factory, task_factory
from readme_section import replace_section  # bench/ is the script's directory on sys.path

from trainer import configs, contract, flops, vocab  # noqa: F401  (configs registers experiments)
from trainer import task as _task  # noqa: F401  (registers the task)
from trainer.encoder import TokenDropSchedule


@dataclasses.dataclass(frozen=True)
class Shape:
  name: str
  num_layers: int
  hidden_size: int
  num_heads: int
  seq_length: int
  keep_k: int
  batch_size: int
  max_predictions: int


# The train step as a graph (tf.function), and compiled whole by XLA.
MODES = {"graph": False, "XLA": True}
SHAPES = {
    "small": Shape("small (L4 H256)", 4, 256, 4, 128, 64, 16, 20),
    # BERT-base as in the paper: 512 tokens, 256 kept from layer 5 on.
    "base": Shape("BERT-base", 12, 768, 12, 512, 256, 2, 76),
}


def analytic_ratios(shape: Shape, vocab_size: int) -> tuple[float, float]:
  """(encoder FLOP ratio, encoder + MLM head FLOP ratio), token drop over baseline."""
  intermediate = 4 * shape.hidden_size
  drop = TokenDropSchedule.from_encoder_args(shape.num_layers, keep_k=shape.keep_k)
  full = TokenDropSchedule.from_encoder_args(shape.num_layers, keep_ratio=1.0)

  def encoder(schedule):
    return flops.encoder_flops(schedule, shape.seq_length, shape.hidden_size, intermediate)

  head = flops.mlm_head_flops(shape.max_predictions, shape.hidden_size, vocab_size)
  return (encoder(drop) / encoder(full),
          (encoder(drop) + head) / (encoder(full) + head))


def build(experiment: str, shape: Shape, vocab_file: str) -> dict:
  """{mode: the experiment's train step compiled that way} over one model and optimizer."""
  params = exp_factory.get_exp_config(experiment)
  params.override({
      "task": {
          "vocab_file": vocab_file,
          "model": {"encoder": {"any": {
              "num_layers": shape.num_layers, "hidden_size": shape.hidden_size,
              "num_attention_heads": shape.num_heads,
              "intermediate_size": 4 * shape.hidden_size,
              "max_position_embeddings": max(512, shape.seq_length),
              "token_keep_k": shape.keep_k}}},
          "train_data": {"seq_length": shape.seq_length,
                         "max_predictions_per_seq": shape.max_predictions},
      },
      "trainer": {"optimizer_config": {"warmup": {"polynomial": {"warmup_steps": 1}}}},
  }, is_strict=True)
  task = task_factory.get_task(params.task)
  model = task.build_model()
  optimizer = task.create_optimizer(params.trainer.optimizer_config, params.runtime)
  metrics = task.build_metrics(training=True)

  def step(inputs):
    return task.train_step(inputs, model, optimizer, metrics)

  # One model for both modes: the same weights, and half the memory of BERT-base.
  return {mode: tf.function(step, jit_compile=jit_compile) for mode, jit_compile in MODES.items()}


def batch(shape: Shape, vocab_file: str, seed: int = 0) -> dict[str, tf.Tensor]:
  rng = np.random.default_rng(seed)
  special = vocab.special_token_ids(vocab_file)
  ordinary = np.array(vocab.ordinary_token_ids(vocab.load_vocab(vocab_file)))
  ids = rng.choice(ordinary, (shape.batch_size, shape.seq_length))
  ids[:, 0], ids[:, -1] = special.cls, special.sep
  positions = np.sort(np.stack([rng.choice(np.arange(1, shape.seq_length - 1),
                                           shape.max_predictions, replace=False)
                                for _ in range(shape.batch_size)]), axis=1)
  labels = np.take_along_axis(ids, positions, axis=1)
  ids[np.arange(shape.batch_size)[:, None], positions] = special.mask
  ones = np.ones((shape.batch_size, shape.seq_length), np.int32)
  return {
      contract.WORD_IDS: tf.constant(ids, tf.int32),
      contract.INPUT_MASK: tf.constant(ones),
      contract.TYPE_IDS: tf.zeros_like(ones),
      contract.MASKED_POSITIONS: tf.constant(positions, tf.int32),
      contract.MASKED_IDS: tf.constant(labels, tf.int32),
      contract.MASKED_WEIGHTS: tf.ones((shape.batch_size, shape.max_predictions), tf.float32),
  }


def timed(step, inputs) -> float:
  start = time.perf_counter()
  logs = step(inputs)
  float(next(iter(logs.values())))  # wait for the step to finish
  return time.perf_counter() - start


def measure(shape: Shape, repeats: int, vocab_file: str) -> list[dict]:
  """One row per mode: token drop and baseline seconds per step and their ratio."""
  inputs = batch(shape, vocab_file)
  drop = build("token_drop_bert/pretraining", shape, vocab_file)
  base = build("token_drop_bert/baseline", shape, vocab_file)
  for steps in (drop, base):  # trace, compile and warm up
    for step in steps.values():
      timed(step, inputs)
      timed(step, inputs)
  pairs = {mode: [] for mode in MODES}
  for _ in range(repeats):
    for mode in MODES:
      pairs[mode].append((timed(drop[mode], inputs), timed(base[mode], inputs)))
  encoder_ratio, model_ratio = analytic_ratios(shape, len(vocab.load_vocab(vocab_file)))
  return [{
      "shape": shape,
      "mode": mode,
      "drop_s": statistics.median(d for d, _ in timings),
      "base_s": statistics.median(b for _, b in timings),
      "ratio": statistics.median(d / b for d, b in timings),
      "ratio_min": min(d / b for d, b in timings),
      "ratio_max": max(d / b for d, b in timings),
      "analytic_encoder": encoder_ratio,
      "analytic_model": model_ratio,
  } for mode, timings in pairs.items()]


def report(rows: list[dict], repeats: int, note: str, command: str) -> str:
  threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
  lines = [
      textwrap.fill(
          f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({platform.machine()}, "
          f"CPU only, Python {platform.python_version()}, TF {tf.__version__}, {threads} "
          f"intra-op threads), {repeats} rounds. {note + ' ' if note else ''}Command: "
          f"`{command}`.", width=80, break_on_hyphens=False),
      "",
      "| shape | layers x hidden, seq, kept | batch | step | drop s/step | base s/step "
      "| measured ratio (min-max) | analytic: encoder | analytic: encoder + MLM head |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    s = r["shape"]
    lines.append(
        f"| {s.name} | {s.num_layers}x{s.hidden_size}, {s.seq_length}, {s.keep_k} "
        f"| {s.batch_size} | {r['mode']} | {r['drop_s']:.3f} | {r['base_s']:.3f} "
        f"| {r['ratio']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f}) "
        f"| {r['analytic_encoder']:.3f} | {r['analytic_model']:.3f} |")
  lines.append("")
  for name in dict.fromkeys(r["shape"].name for r in rows):
    by_mode = {r["mode"]: r for r in rows if r["shape"].name == name}
    graph, xla = by_mode["graph"], by_mode["XLA"]
    lines.append(textwrap.fill(
        f"{name}: a token-dropping step costs {graph['ratio']:.3f} of a BERT step as a graph "
        f"and {xla['ratio']:.3f} compiled with XLA (analytic {graph['analytic_model']:.3f} with "
        f"the MLM head, {graph['analytic_encoder']:.3f} the encoder alone); XLA takes "
        f"{xla['drop_s'] / graph['drop_s']:.2f} of the graph's time for token dropping and "
        f"{xla['base_s'] / graph['base_s']:.2f} for the baseline.", width=80))
    lines.append("")
  return "\n".join(lines)


README = pathlib.Path(__file__).resolve().parent / "README.md"
README_SECTION = "## bench/step_cost.py: the cost of one training step"
README_INTRO = README_SECTION + """

One full training step (forward, backward, AdamW update, importance-table
update, metrics) of `token_drop_bert/pretraining` against
`token_drop_bert/baseline` (the same experiment with dropping off), both built
by the registered task and run through its real `train_step` on the same batch,
as a TF graph (`tf.function`) and compiled whole with XLA
(`tf.function(jit_compile=True)`: what runtime.enable_xla runs under one_device,
and what a TPU compiles). Each round times drop, base, drop XLA, base XLA after
two warm-up steps each, and a ratio is the median of the per-round ratios, so a
shared machine's drift hits both sides. The analytic ratio counts every layer's
matmul FLOPs from `TokenDropSchedule.attention_lengths` (projections,
attention, feed-forward), alone and with the MLM head (76 or 20 predictions per
sequence, 30,522-word vocab); embeddings, LayerNorm and softmax are left out.

"""


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--shapes", default=",".join(SHAPES),
                      help=f"comma-separated, from {sorted(SHAPES)}; a subset prints only")
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--note", default="",
                      help="a sentence on the conditions (e.g. a shared machine) for README.md")
  args = parser.parse_args()
  vocab_file = str(vocab.bert_base_uncased_vocab_path())
  names = args.shapes.split(",")
  rows = [row for name in names for row in measure(SHAPES[name], args.repeats, vocab_file)]
  command = f"scripts/in-env python bench/step_cost.py --repeats {args.repeats}"
  text = report(rows, args.repeats, args.note, command)
  print(text)
  if sorted(names) == sorted(SHAPES):
    README.write_text(replace_section(README.read_text(), README_SECTION, README_INTRO + text))
    print(f"rewrote the {README_SECTION!r} section of bench/README.md")


if __name__ == "__main__":
  main()
