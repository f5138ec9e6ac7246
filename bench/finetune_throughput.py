"""The CPU throughput of BERT-base GLUE fine-tuning on this machine, as GlueEvaluator fine-tunes.

    scripts/in-env python bench/finetune_throughput.py [--steps 6] \\
        [--output out/bench/finetune_throughput.json]

The model and step are components/glue_eval/finetune.py's: Model Garden's BertClassifier
(2 classes) on a BertEncoderV2 at BERT-base's size (12 layers, hidden 768, 12 heads,
intermediate 3072, the bert-base-uncased vocab), randomly initialised, Model Garden's
AdamW with its warm-up and decay, Keras fit over tf.data batches of 32 examples of 128
tokens (finetune.train_dataset), float32, under the default strategy on all cores. The first
step (tracing) is not timed. Prediction is Keras predict over batches of 128.

FLOPs per example are trainer.flops' count for the encoder's 12 layers at 128 tokens
(the matmuls; embeddings, softmax and the classifier head left out): x3 for a training step,
x1 for a prediction. configs/plan_assumptions.yaml takes "training FLOP/s per core" from the
JSON this writes.
"""

import argparse
import datetime
import json
import os
import platform
import time

import numpy as np
import tensorflow as tf
import tf_keras
from official.nlp import optimization
from official.nlp.modeling import models, networks

from components.glue_eval import finetune
from trainer import flops, vocab

LAYERS, HIDDEN, HEADS, INTERMEDIATE = 12, 768, 12, 3072
BATCH, SEQ, PREDICT_BATCH = 32, 128, 128


class _StepTimes(tf_keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.ends = []

  def on_train_batch_end(self, batch, logs=None):
    self.ends.append(time.perf_counter())


def _cpu_model() -> str:
  with open("/proc/cpuinfo", encoding="utf-8") as f:
    for line in f:
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  return platform.processor()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=6, help="timed training steps")
  parser.add_argument("--output", default="out/bench/finetune_throughput.json")
  args = parser.parse_args()
  load_before = os.getloadavg()
  tf_keras.utils.set_random_seed(1)
  vocab_size = len(vocab.load_vocab(str(vocab.bert_base_uncased_vocab_path())))
  encoder = networks.BertEncoderV2(vocab_size=vocab_size, hidden_size=HIDDEN,
                                   num_layers=LAYERS, num_attention_heads=HEADS,
                                   inner_dim=INTERMEDIATE, max_sequence_length=512)
  model = models.BertClassifier(encoder, num_classes=2, dropout_rate=0.1)
  steps = args.steps + 1
  optimizer = optimization.create_optimizer(3e-5, num_train_steps=steps,
                                            num_warmup_steps=1)
  model.compile(optimizer=optimizer,
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  rng = np.random.default_rng(0)
  count = BATCH * steps
  ids = rng.integers(1000, vocab_size, size=(count, SEQ), dtype=np.int32)
  split = finetune.EncodedSplit({"input_word_ids": ids, "input_mask": np.ones_like(ids),
                                 "input_type_ids": np.zeros_like(ids)},
                                rng.integers(0, 2, size=count, dtype=np.int32))
  times = _StepTimes()
  model.fit(finetune.train_dataset(split, False, BATCH, seed=1), epochs=1, verbose=0,
            callbacks=[times])
  step_seconds = float(np.mean(np.diff(times.ends)))  # every step after the first
  start = time.perf_counter()
  model.predict({k: v[:PREDICT_BATCH * 2] for k, v in split.features.items()},
                batch_size=PREDICT_BATCH, verbose=0)
  predict_seconds = time.perf_counter() - start  # includes tracing: a lower bound on the rate
  forward = LAYERS * flops.layer_flops(SEQ, SEQ, HIDDEN, INTERMEDIATE)
  cores = os.cpu_count()
  train_rate = BATCH / step_seconds
  result = {
      "date": datetime.date.today().isoformat(),
      "machine": {"cores": cores, "cpu": _cpu_model(), "python": platform.python_version(),
                  "tensorflow": tf.__version__, "load_before": load_before,
                  "load_after": os.getloadavg()},
      "timed_steps": args.steps,
      "seconds_per_step": step_seconds,
      "train_examples_per_second": train_rate,
      "predict_examples_per_second": PREDICT_BATCH * 2 / predict_seconds,
      "flops_per_train_example": 3 * forward,
      "train_flops_per_second": 3 * forward * train_rate,
      "train_flops_per_core_second": 3 * forward * train_rate / cores,
      "command": "scripts/in-env python bench/finetune_throughput.py",
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with open(args.output, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  print("| what | value |\n|---|---|")
  print(f"| seconds per training step (batch {BATCH}, {SEQ} tokens) | {step_seconds:.2f} |")
  print(f"| training examples/s | {train_rate:.2f} |")
  print(f"| prediction examples/s (first batches, tracing included) | "
        f"{result['predict_examples_per_second']:.1f} |")
  print(f"| FLOPs per training example | {3 * forward:.3g} |")
  print(f"| training FLOP/s, all {cores} cores | {result['train_flops_per_second']:.3g} |")
  print(f"| training FLOP/s per core | {result['train_flops_per_core_second']:.3g} |")
  print(f"load average before {load_before}, after {result['machine']['load_after']}; "
        f"wrote {args.output}")


if __name__ == "__main__":
  main()
