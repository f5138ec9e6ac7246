"""Analytic training FLOPs of a run, following its layer schedule and kept-count stages.

Counted as in the paper's cost argument: the matmuls of every transformer layer
and of the MLM head's transform and output projection (no embeddings,
LayerNorm or softmax), x2 for multiply-adds, and a training step as 3x the
forward pass (the backward pass costs about twice the forward). Used by
bench/step_cost.py, the study and the model card, so all three agree.
"""

import copy
import dataclasses

from trainer.encoder import TokenDropSchedule


def layer_flops(queries: int, keys: int, hidden: int, intermediate: int) -> int:
  """Multiply-adds x2 of one transformer layer's matmuls for one sequence."""
  projections = 2 * hidden * hidden * (2 * queries + 2 * keys)  # Q and output on queries; K, V
  attention = 2 * 2 * queries * keys * hidden  # scores and the weighted sum of values
  feed_forward = 2 * 2 * queries * hidden * intermediate
  return projections + attention + feed_forward


def encoder_flops(schedule: TokenDropSchedule, seq_length: int, hidden: int,
                  intermediate: int, keep: int | None = None) -> int:
  """Forward FLOPs of the encoder on one sequence; `keep` overrides the kept count."""
  return sum(layer_flops(q, k, hidden, intermediate)
             for q, k in schedule.attention_lengths(seq_length, keep))


def mlm_head_flops(max_predictions: int, hidden: int, vocab_size: int) -> int:
  """Forward FLOPs of the MLM head (transform and vocab projection) on one sequence."""
  return 2 * max_predictions * hidden * (hidden + vocab_size)


@dataclasses.dataclass(frozen=True)
class RunFlops:
  """A run's training FLOPs: per step in each kept-count stage, and how long each stage is."""
  keep_counts: tuple[int, ...]
  step_flops: tuple[float, ...]
  stage_steps: tuple[int, ...]

  @property
  def total(self) -> float:
    return sum(f * n for f, n in zip(self.step_flops, self.stage_steps, strict=True))

  @property
  def mean_step_flops(self) -> float:
    return self.total / max(1, sum(self.stage_steps))

  def as_dict(self) -> dict:
    return {"keep_counts": list(self.keep_counts), "stage_steps": list(self.stage_steps),
            "step_flops": list(self.step_flops), "mean_step_flops": self.mean_step_flops,
            "total_flops": self.total}


def without_dropping(params):
  """A copy of an experiment config with token dropping off (token_selection none, as
  token_drop_bert/baseline): the same run as plain BERT, for comparisons."""
  baseline = copy.deepcopy(params)
  baseline.override({"task": {"model": {"encoder": {"any": {"token_selection": "none"}}}}},
                    is_strict=True)
  return baseline


def run_flops(params, train_steps: int | None = None) -> RunFlops:
  """The training FLOPs of an experiment config (`token_drop_bert/*`), over `train_steps`
  (default trainer.train_steps)."""
  encoder_cfg = params.task.model.encoder.any
  data = params.task.train_data
  train_steps = train_steps or params.trainer.train_steps
  schedule = encoder_cfg.layer_schedule()
  anneal = encoder_cfg.keep_anneal(train_steps)
  if encoder_cfg.keep_stages:
    # A run too short for any anneal step stays in stage 0.
    keep_counts = schedule.stage_keep_counts(
        data.seq_length, encoder_cfg.keep_stages)[:anneal.num_stages]
  else:
    keep_counts = (schedule.keep_count(data.seq_length) if schedule.drops_tokens
                   else data.seq_length,)
  head = mlm_head_flops(data.max_predictions_per_seq, encoder_cfg.hidden_size,
                        encoder_cfg.vocab_size)
  step_flops = tuple(
      3.0 * data.global_batch_size * (
          encoder_flops(schedule, data.seq_length, encoder_cfg.hidden_size,
                        encoder_cfg.intermediate_size, keep) + head)
      for keep in keep_counts)
  return RunFlops(keep_counts=keep_counts, step_flops=step_flops,
                  stage_steps=anneal.steps_per_stage())
