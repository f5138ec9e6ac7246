"""The token-dropping BERT encoder (Hou et al., "Token Dropping for Efficient BERT
Pretraining", ACL 2022).

For L layers and drop layer d (default L // 2 - 1; for BERT-base, L = 12, d = 5):

    layers [0, d)        every token
    layer d              the kept tokens query every token (cross-attention)
    layers (d, L - 1)    the kept tokens only
    merge                dropped tokens rejoin with the states they had before layer d
    layer L - 1          every token

`TokenDropSchedule` is the one description of this, for the encoder, its tests
and FLOP estimates. `KeepAnneal` optionally lets the kept count grow in stages
to the full sequence over the end of training; the encoder then takes the
stage as an input and traces each stage's middle layers once, with static
shapes, inside one `tf.switch_case`. The encoder has BertEncoderV2's variables, layer names and
outputs, so checkpoints move freely between the two, and without importance
scores (evaluation, export) it computes exactly what BertEncoderV2 computes.
"""

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from official.nlp.modeling.networks import bert_encoder

from trainer import contract

PAPER_KEEP_RATIO = 0.5  # 256 of 512 tokens
KEEP_SCHEDULES = ("constant", "anneal")


@dataclasses.dataclass(frozen=True)
class TokenDropSchedule:
  """Which layers see which tokens.

  Exactly one of `keep_k` (a fixed count) and `keep_ratio` (a fraction of the
  sequence length) is set. `keep_ratio=1.0` turns dropping off.
  """
  num_layers: int
  drop_layer: int
  keep_k: int | None = None
  keep_ratio: float | None = None

  @classmethod
  def from_encoder_args(cls, num_layers: int, keep_k: int | None = None,
                        keep_ratio: float | None = None,
                        drop_layer: int | None = None) -> "TokenDropSchedule":
    """Fills in the paper's defaults: keep half of the tokens, drop at layer L // 2 - 1."""
    if keep_k is None and keep_ratio is None:
      keep_ratio = PAPER_KEEP_RATIO
    if drop_layer is None:
      drop_layer = num_layers // 2 - 1
    return cls(num_layers=num_layers, drop_layer=drop_layer, keep_k=keep_k,
               keep_ratio=keep_ratio)

  def __post_init__(self):
    if (self.keep_k is None) == (self.keep_ratio is None):
      raise ValueError("set exactly one of token_keep_k and token_keep_ratio, got "
                       f"token_keep_k={self.keep_k} and token_keep_ratio={self.keep_ratio}")
    if self.keep_k is not None and self.keep_k < 1:
      raise ValueError(f"token_keep_k must be at least 1, got {self.keep_k}")
    if self.keep_ratio is not None and not 0.0 < self.keep_ratio <= 1.0:
      raise ValueError(f"token_keep_ratio must be in (0, 1], got {self.keep_ratio}; "
                       "1.0 turns dropping off")
    if not self.drops_tokens:
      return
    if self.num_layers < 3:
      raise ValueError(f"token dropping needs num_layers >= 3 (full layers, the dropped middle, "
                       f"a full last layer), got {self.num_layers}; add layers or set "
                       "token_keep_ratio=1.0 to turn dropping off")
    if not 0 <= self.drop_layer < self.num_layers - 1:
      raise ValueError(f"token_drop_layer must be in [0, {self.num_layers - 2}] for "
                       f"{self.num_layers} layers (at least one full layer follows the merge), "
                       f"got {self.drop_layer}")

  @property
  def drops_tokens(self) -> bool:
    return self.keep_ratio != 1.0

  @property
  def full_layers(self) -> range:
    """The layers before the drop, which see every token."""
    return range(0, self.drop_layer)

  @property
  def cross_attention_layer(self) -> int:
    return self.drop_layer

  @property
  def kept_layers(self) -> range:
    """The layers after the drop layer that see only the kept tokens."""
    return range(self.drop_layer + 1, self.num_layers - 1)

  @property
  def last_layer(self) -> int:
    return self.num_layers - 1

  def keep_count(self, seq_length: int) -> int:
    """How many tokens the middle layers see; seq_length means nothing is dropped."""
    if self.keep_k is not None:
      keep = self.keep_k
    else:
      keep = max(1, round(self.keep_ratio * seq_length))
    return min(keep, seq_length)

  def stage_keep_counts(self, seq_length: int, stages: int) -> tuple[int, ...]:
    """The kept count of each stage of an anneal in `stages` steps: stage 0 is
    `keep_count`, then equal steps up to `seq_length` (the last stage drops nothing)."""
    start = self.keep_count(seq_length) if self.drops_tokens else seq_length
    return tuple(start + round((seq_length - start) * stage / stages)
                 for stage in range(stages + 1))

  def attention_lengths(self, seq_length: int,
                        keep: int | None = None) -> tuple[tuple[int, int], ...]:
    """(query tokens, key/value tokens) of each layer, e.g. for FLOP estimates; `keep`
    overrides the kept count (an anneal stage's)."""
    keep = self.keep_count(seq_length) if keep is None else keep
    if not self.drops_tokens or keep == seq_length:
      return ((seq_length, seq_length),) * self.num_layers
    return (((seq_length, seq_length),) * len(self.full_layers)
            + ((keep, seq_length),)
            + ((keep, keep),) * len(self.kept_layers)
            + ((seq_length, seq_length),))


@dataclasses.dataclass(frozen=True)
class KeepAnneal:
  """When each stage of a kept-count anneal starts.

  Stage 0 (the schedule's own kept count) runs until the last `fraction` of
  `train_steps`; that span is split into `stages` equal parts, stages 1 to
  `stages`, the last of which keeps every token. `fraction=0` or `stages=0`
  is a constant kept count.
  """
  train_steps: int
  fraction: float
  stages: int

  def __post_init__(self):
    if self.train_steps < 1:
      raise ValueError(f"the keep anneal needs trainer.train_steps >= 1, got {self.train_steps}")
    if not 0.0 <= self.fraction <= 1.0:
      raise ValueError(f"token_keep_anneal_fraction must be in [0, 1], got {self.fraction}")

  @property
  def num_stages(self) -> int:
    """How many kept counts the run uses, 1 for a constant one."""
    return 1 + len(self.boundaries)

  @property
  def boundaries(self) -> tuple[int, ...]:
    """The (0-based) step at which each stage after stage 0 starts."""
    annealed = round(self.fraction * self.train_steps)
    if self.stages < 1 or annealed < 1:
      return ()
    start = self.train_steps - annealed
    return tuple(start + (annealed * i) // self.stages for i in range(self.stages))

  def stage(self, step: tf.Tensor) -> tf.Tensor:
    """int32 stage of a (0-based) step: how many stage boundaries it has reached."""
    if not self.boundaries:
      return tf.constant(0, tf.int32)
    reached = tf.cast(step, tf.int64) >= tf.constant(self.boundaries, tf.int64)
    return tf.reduce_sum(tf.cast(reached, tf.int32))

  def steps_per_stage(self) -> tuple[int, ...]:
    """How many steps each stage trains, e.g. for the run's FLOPs."""
    edges = (0, *self.boundaries, self.train_steps)
    return tuple(end - begin for begin, end in zip(edges, edges[1:], strict=False))


def _contains(word_ids: tf.Tensor, ids: Sequence[int]) -> tf.Tensor:
  """[batch, seq] bool: whether each token is one of `ids`."""
  if not ids:
    return tf.zeros_like(word_ids, tf.bool)
  return tf.reduce_any(word_ids[..., None] == tf.constant(ids, word_ids.dtype), axis=-1)


def select_kept_positions(importance: tf.Tensor, word_ids: tf.Tensor, input_mask: tf.Tensor,
                          keep_k: int, allow_ids: Sequence[int] = (),
                          deny_ids: Sequence[int] = ()) -> tf.Tensor:
  """The positions the middle layers keep: the `keep_k` most important tokens.

  Tokens in `allow_ids` rank above every other token, and tokens in `deny_ids`
  and padding (`input_mask == 0`) below every other token, whatever their
  importance (which must be finite). Ties are broken by position, the earlier
  position winning, so the choice is deterministic: with more allowed tokens
  than `keep_k`, the earliest `keep_k` of them are kept, and with fewer than
  `keep_k` eligible tokens, the earliest denied or padding positions fill the
  rest (padding stays masked out of attention).

  The random-LTD-style ablation is this function with random uniform scores as
  `importance`: allowed and denied tokens are still forced.

  Args:
    importance: [batch, seq] float scores; higher means keep.
    word_ids: [batch, seq] token ids.
    input_mask: [batch, seq], 0 at padding.
    keep_k: how many positions to keep (static, so XLA sees fixed shapes).
    allow_ids: ids always kept.
    deny_ids: ids always dropped.

  Returns:
    [batch, keep_k] int32 positions, ascending (the tokens' original order).
  """
  seq_length = word_ids.shape[-1]
  if keep_k < 1 or (seq_length is not None and keep_k > seq_length):
    raise ValueError(f"keep_k must be in [1, sequence length {seq_length}], got {keep_k}")
  always_drop = tf.logical_or(_contains(word_ids, deny_ids), input_mask == 0)
  always_keep = tf.logical_and(_contains(word_ids, allow_ids), tf.logical_not(always_drop))
  scores = tf.where(always_keep, float("inf"),
                    tf.where(always_drop, float("-inf"), tf.cast(importance, tf.float32)))
  # top_k ranks equal scores by lower index first: the tie-break by position.
  _, positions = tf.math.top_k(scores, k=keep_k)
  return tf.sort(positions, axis=-1)


def _merge_back(sequence: tf.Tensor, positions: tf.Tensor, kept: tf.Tensor) -> tf.Tensor:
  """Writes kept [batch, k, hidden] into sequence [batch, seq, hidden] at positions [batch, k].

  Under mixed precision the pre-drop states can be float32 (the embeddings,
  when d = 0) while the blocks return 16-bit states; the merge uses the latter.
  """
  batch_index = tf.broadcast_to(tf.range(tf.shape(positions)[0])[:, None], tf.shape(positions))
  indices = tf.stack([batch_index, positions], axis=-1)  # [batch, k, 2]
  return tf.tensor_scatter_nd_update(tf.cast(sequence, kept.dtype), indices, kept)


class TokenDropBertEncoder(bert_encoder.BertEncoderV2):
  """BertEncoderV2 whose middle layers process only the most important tokens.

  Inputs are BertEncoderV2's (`input_word_ids`, `input_mask`, `input_type_ids`)
  plus an optional `token_importance` [batch, seq] float tensor. Tokens are
  dropped only when `token_importance` is given (the task gives it in
  training) and the sequence is longer than the kept count; otherwise the
  encoder computes exactly what BertEncoderV2 computes.

  Outputs are BertEncoderV2's. While dropping, the `encoder_outputs` of the
  cross-attention and kept-token layers are [batch, keep_k, hidden], the kept
  tokens in their original order (`select_kept_positions`); the others are
  full length. With stages, every output is full length: a middle layer's
  dropped positions hold their layer d - 1 states, as after the merge.

  Args:
    vocab_size: the size of the token vocabulary.
    num_layers: the number of transformer layers.
    token_keep_k: how many tokens the middle layers keep.
    token_keep_ratio: or, the fraction of the sequence length they keep
      (default 0.5, the paper's 256 of 512); 1.0 turns dropping off.
    token_drop_layer: the cross-attention layer, where dropping starts
      (default num_layers // 2 - 1).
    token_keep_stages: 0 for one kept count; N for an anneal in N stages
      from the kept count to the full sequence (`KeepAnneal`).
    token_allow_ids: ids always kept (e.g. [CLS], [SEP], [MASK]).
    token_deny_ids: ids always dropped (e.g. [PAD]).
    **kwargs: BertEncoderV2's other arguments (hidden_size,
      num_attention_heads, intermediate_size or inner_dim, activation,
      dropout_rate, attention_dropout_rate, max_sequence_length,
      type_vocab_size, initializer, output_range, embedding_width,
      norm_first, ...).
  """

  def __init__(self, vocab_size: int, *, num_layers: int = 12, token_keep_k: int | None = None,
               token_keep_ratio: float | None = None, token_drop_layer: int | None = None,
               token_keep_stages: int = 0, token_allow_ids: Sequence[int] = (),
               token_deny_ids: Sequence[int] = (), **kwargs):
    for unsupported in ("with_dense_inputs", "return_attention_scores"):
      if kwargs.get(unsupported):
        raise ValueError(f"TokenDropBertEncoder does not support {unsupported}=True; use "
                         "official.nlp.modeling.networks.BertEncoderV2 for it")
    schedule = TokenDropSchedule.from_encoder_args(num_layers, keep_k=token_keep_k,
                                                   keep_ratio=token_keep_ratio,
                                                   drop_layer=token_drop_layer)
    allow_ids = tuple(int(i) for i in token_allow_ids)
    deny_ids = tuple(int(i) for i in token_deny_ids)
    both = sorted(set(allow_ids) & set(deny_ids))
    if both:
      raise ValueError(f"ids {both} are in both token_allow_ids and token_deny_ids; remove them "
                       "from one")
    # Importance scores must reach the selection in float32: under a mixed
    # precision policy, autocast would round them to 16 bits and create ties.
    super().__init__(vocab_size=vocab_size, num_layers=num_layers, autocast=False, **kwargs)
    if token_keep_stages < 0:
      raise ValueError(f"token_keep_stages must be >= 0, got {token_keep_stages}")
    self._schedule = schedule
    self._keep_stages = int(token_keep_stages)
    self._token_allow_ids = allow_ids
    self._token_deny_ids = deny_ids

  @property
  def schedule(self) -> TokenDropSchedule:
    return self._schedule

  def get_config(self) -> dict[str, Any]:
    return dict(super().get_config(), token_keep_k=self._schedule.keep_k,
                token_keep_ratio=self._schedule.keep_ratio,
                token_drop_layer=self._schedule.drop_layer,
                token_keep_stages=self._keep_stages,
                token_allow_ids=list(self._token_allow_ids),
                token_deny_ids=list(self._token_deny_ids))

  def call(self, inputs: dict[str, tf.Tensor]) -> dict[str, Any]:
    if not isinstance(inputs, dict):
      raise ValueError("TokenDropBertEncoder takes a dict with input_word_ids, input_mask, "
                       f"input_type_ids and optionally token_importance, got {type(inputs)}")
    word_ids = inputs[contract.WORD_IDS]
    input_mask = inputs[contract.INPUT_MASK]
    importance = inputs.get("token_importance")

    word_embeddings = inputs.get("input_word_embeddings")
    if word_embeddings is None:
      word_embeddings = self._embedding_layer(word_ids)
    embeddings = (word_embeddings + self._position_embedding_layer(word_embeddings)
                  + self._type_embedding_layer(inputs[contract.TYPE_IDS]))
    embeddings = self._embedding_dropout(self._embedding_norm_layer(embeddings))
    if self._embedding_projection is not None:
      embeddings = self._embedding_projection(embeddings)
    attention_mask = self._attention_mask_layer(embeddings, input_mask)  # [batch, seq, seq]

    layers = self._transformer_layers
    schedule = self._schedule
    keep_counts = self._keep_counts(word_ids, importance)
    encoder_outputs = []
    x = embeddings
    if keep_counts is None:  # evaluation, export, or nothing to drop: exactly BertEncoderV2
      for layer in layers[:-1]:
        x = layer([x, attention_mask])
        encoder_outputs.append(x)
    else:
      for i in schedule.full_layers:
        x = layers[i]([x, attention_mask])
        encoder_outputs.append(x)
      if len(keep_counts) == 1:
        middle = self._middle_layers(x, attention_mask, importance, word_ids, input_mask,
                                     keep_counts[0], merge_each=False)
      else:
        stage = inputs.get("token_keep_stage")
        if stage is None:
          raise ValueError("this encoder anneals its kept count (token_keep_stages="
                           f"{self._keep_stages}): pass token_keep_stage with token_importance")
        # One branch per kept count, each traced once with static shapes.
        middle = tf.switch_case(
            tf.cast(stage, tf.int32),
            [functools.partial(self._middle_layers, x, attention_mask, importance, word_ids,
                               input_mask, keep, merge_each=True) for keep in keep_counts])
      *middle_outputs, x = middle
      encoder_outputs.extend(middle_outputs)

    x = layers[schedule.last_layer]([x, attention_mask], output_range=self._output_range)
    encoder_outputs.append(x)

    outputs = dict(sequence_output=x, pooled_output=self._pooler_layer(x[:, 0, :]),
                   encoder_outputs=encoder_outputs)
    if self._config["return_word_embeddings"]:
      outputs["word_embeddings"] = embeddings
    return outputs

  def _middle_layers(self, x: tf.Tensor, attention_mask: tf.Tensor, importance: tf.Tensor,
                     word_ids: tf.Tensor, input_mask: tf.Tensor, keep_k: int,
                     merge_each: bool) -> list[tf.Tensor]:
    """Layers d to L - 2 on the `keep_k` most important tokens of `x` (the layer d - 1
    states): each layer's output, then the merged [batch, seq, hidden] sequence. Kept-length
    outputs unless `merge_each`, which merges each one back to full length."""
    layers = self._transformer_layers
    schedule = self._schedule
    if keep_k == word_ids.shape[1]:  # an anneal's last stage: plain BERT
      outputs = []
      for i in (schedule.cross_attention_layer, *schedule.kept_layers):
        x = layers[i]([x, attention_mask])
        outputs.append(x)
      return [*outputs, x]

    # The cross-attention layer: kept tokens are the queries, all tokens the
    # keys and values. `x` stays the pre-drop states until the merge.
    positions = select_kept_positions(importance, word_ids, input_mask, keep_k,
                                      self._token_allow_ids, self._token_deny_ids)
    kept = tf.gather(x, positions, batch_dims=1)  # [batch, keep_k, hidden]
    kept_to_all_mask = self._attention_mask_layer(kept, input_mask)  # [batch, keep_k, seq]
    kept = layers[schedule.cross_attention_layer]([kept, x, kept_to_all_mask])
    outputs = [kept]

    kept_input_mask = tf.gather(input_mask, positions, batch_dims=1)
    # [batch, keep_k, keep_k]; padding that filled kept slots stays masked out.
    kept_to_kept_mask = self._attention_mask_layer(kept, kept_input_mask)
    for i in schedule.kept_layers:
      kept = layers[i]([kept, kept_to_kept_mask])
      outputs.append(kept)

    # [batch, seq, hidden] again; dropped positions hold their layer d - 1 states.
    if merge_each:
      outputs = [_merge_back(x, positions, output) for output in outputs]
      return [*outputs, outputs[-1]]
    return [*outputs, _merge_back(x, positions, kept)]

  def _keep_counts(self, word_ids: tf.Tensor,
                   importance: tf.Tensor | None) -> tuple[int, ...] | None:
    """How many tokens the middle layers see in each stage, or None to run every layer on
    every token."""
    if importance is None or not self._schedule.drops_tokens:
      return None
    if not importance.shape.is_compatible_with(word_ids.shape):
      raise ValueError(f"token_importance has shape {importance.shape} but input_word_ids has "
                       f"{word_ids.shape}; pass one score per input position")
    seq_length = word_ids.shape[1]
    if seq_length is None:
      raise ValueError(f"token dropping needs a static sequence length, but input_word_ids has "
                       f"shape {word_ids.shape}; batch fixed-length sequences, or leave out "
                       "token_importance to run the full model")
    if self._keep_stages:
      return self._schedule.stage_keep_counts(seq_length, self._keep_stages)
    keep_k = self._schedule.keep_count(seq_length)
    return (keep_k,) if keep_k < seq_length else None
