"""Cost of one pretraining step (forward, backward, optimizer): token dropping against BERT.

    scripts/in-env python bench/step_cost.py [--shapes base,small] [--repeats 5]

Both models are built by the registered experiments (`token_drop_bert/pretraining`
and `token_drop_bert/baseline`, identical except token dropping) and run the
task's real `train_step`, compiled with tf.function, on the same batch. Steps
alternate between the two models (drop, base, drop, base, ...), so drift in a
shared machine's speed hits both; the report is the median of the per-pair
ratios. The analytic ratio counts the matmul FLOPs of every layer from
`TokenDropSchedule.attention_lengths`, so it follows the same schedule the
encoder runs.
"""

import argparse
import dataclasses
import statistics
import time

import numpy as np
import tensorflow as tf
from official.core import exp_factory, task_factory

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


SHAPES = {
    # BERT-base as in the paper: 512 tokens, 256 kept from layer 5 on.
    "base": Shape("BERT-base", 12, 768, 12, 512, 256, 2, 76),
    "small": Shape("small (L4 H256)", 4, 256, 4, 128, 64, 16, 20),
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


def build(experiment: str, shape: Shape, vocab_file: str):
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

  @tf.function
  def step(inputs):
    return task.train_step(inputs, model, optimizer, metrics)

  return step


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


def measure(shape: Shape, repeats: int, vocab_file: str) -> dict:
  inputs = batch(shape, vocab_file)
  drop = build("token_drop_bert/pretraining", shape, vocab_file)
  base = build("token_drop_bert/baseline", shape, vocab_file)
  for step in (drop, base):  # trace, compile and warm up
    timed(step, inputs)
    timed(step, inputs)
  pairs = []
  for _ in range(repeats):
    pairs.append((timed(drop, inputs), timed(base, inputs)))
  encoder_ratio, model_ratio = analytic_ratios(shape, len(vocab.load_vocab(vocab_file)))
  return {
      "shape": shape,
      "drop_s": statistics.median(d for d, _ in pairs),
      "base_s": statistics.median(b for _, b in pairs),
      "ratio": statistics.median(d / b for d, b in pairs),
      "ratio_min": min(d / b for d, b in pairs),
      "ratio_max": max(d / b for d, b in pairs),
      "analytic_encoder": encoder_ratio,
      "analytic_model": model_ratio,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--shapes", default="small,base",
                      help=f"comma-separated, from {sorted(SHAPES)}")
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  vocab_file = str(vocab.bert_base_uncased_vocab_path())
  rows = [measure(SHAPES[name], args.repeats, vocab_file) for name in args.shapes.split(",")]
  print(f"\nOne training step, token drop / baseline, median of {args.repeats} interleaved pairs "
        f"({tf.config.threading.get_intra_op_parallelism_threads() or 'default'} intra-op "
        "threads)\n")
  print("| shape | layers x hidden, seq, kept | batch | drop s/step | base s/step "
        "| measured ratio (min-max) | analytic: encoder | analytic: encoder + MLM head |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    s = r["shape"]
    print(f"| {s.name} | {s.num_layers}x{s.hidden_size}, {s.seq_length}, {s.keep_k} "
          f"| {s.batch_size} | {r['drop_s']:.3f} | {r['base_s']:.3f} "
          f"| {r['ratio']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f}) "
          f"| {r['analytic_encoder']:.3f} | {r['analytic_model']:.3f} |")


if __name__ == "__main__":
  main()
