"""The token-dropping encoder: BertEncoderV2's variables and outputs, the paper's schedule,
and the kept-token selection, checked against exact references."""

from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.nlp.modeling import networks

from trainer import encoder
from trainer.encoder import TokenDropBertEncoder, TokenDropSchedule, select_kept_positions

PAD, CLS, SEP = 0, 1, 2
SEQ_LENGTH = 16
TINY = dict(vocab_size=50, hidden_size=32, num_layers=4, num_attention_heads=2,
            intermediate_size=64, max_sequence_length=SEQ_LENGTH, type_vocab_size=2)


def _inputs(seed: int = 0, batch: int = 2, pad: int = 3) -> dict[str, tf.Tensor]:
  """[CLS] ... [SEP] rows; the last row ends in `pad` padding positions."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, TINY["vocab_size"], (batch, SEQ_LENGTH))
  mask = np.ones_like(ids)
  ids[:, 0] = CLS
  ids[:-1, -1] = SEP
  ids[-1, -pad - 1] = SEP
  ids[-1, SEQ_LENGTH - pad:] = PAD
  mask[-1, SEQ_LENGTH - pad:] = 0
  return dict(input_word_ids=tf.constant(ids, tf.int32), input_mask=tf.constant(mask, tf.int32),
              input_type_ids=tf.constant(rng.integers(0, 2, (batch, SEQ_LENGTH)), tf.int32))


def _importance(seed: int = 1, batch: int = 2) -> tf.Tensor:
  return tf.constant(np.random.default_rng(seed).uniform(size=(batch, SEQ_LENGTH)), tf.float32)


def _copy_weights(source: tf_keras.layers.Layer, target: tf_keras.layers.Layer, path) -> str:
  """Object-based checkpoint round trip; assert_consumed fails on any unmatched object or value."""
  saved = tf.train.Checkpoint(encoder=source).write(str(path))
  tf.train.Checkpoint(encoder=target).read(saved).assert_consumed()
  return saved


@pytest.mark.parametrize("options", [
    dict(),
    dict(norm_first=True, embedding_width=16, output_range=1),
], ids=["post_norm", "pre_norm_factorized_output_range"])
def test_without_dropping_it_is_bert_encoder_v2_both_ways(tmp_path, options):
  inputs = _inputs()
  dropping = TokenDropBertEncoder(token_keep_k=8, token_allow_ids=[CLS, SEP],
                                  token_deny_ids=[PAD], **TINY, **options)
  # Built through the cross-attention path, it must still have BertEncoderV2's variables.
  dropping(dict(inputs, token_importance=_importance()))
  reference = networks.BertEncoderV2(**TINY, **options)
  reference(inputs)
  from_token_drop = _copy_weights(dropping, reference, tmp_path / "from_token_drop")

  keep_all = TokenDropBertEncoder(token_keep_k=SEQ_LENGTH, **TINY, **options)
  keep_all(inputs)
  from_v2 = _copy_weights(reference, keep_all, tmp_path / "from_v2")
  assert tf.train.list_variables(from_token_drop) == tf.train.list_variables(from_v2)

  expected = reference(inputs)
  for outputs in (dropping(inputs), keep_all(dict(inputs, token_importance=_importance()))):
    assert outputs.keys() == expected.keys()
    for key in ("sequence_output", "pooled_output"):
      np.testing.assert_allclose(outputs[key], expected[key], rtol=0, atol=1e-5)
    assert len(outputs["encoder_outputs"]) == len(expected["encoder_outputs"])
    for got, want in zip(outputs["encoder_outputs"], expected["encoder_outputs"], strict=True):
      np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_dropping_follows_the_schedule(tmp_path):
  """Rebuilds the forward pass from the same blocks, with numpy doing the dropping and merging."""
  # The second row has 6 real tokens, so 2 padding positions fill its 8 kept slots.
  inputs, importance = _inputs(pad=10), _importance()
  dropping = TokenDropBertEncoder(token_keep_k=8, token_allow_ids=[CLS, SEP],
                                  token_deny_ids=[PAD], **TINY)
  outputs = dropping(dict(inputs, token_importance=importance))
  full = networks.BertEncoderV2(**TINY)
  full(inputs)
  _copy_weights(dropping, full, tmp_path / "ckpt")
  full_outputs = full(inputs)["encoder_outputs"]
  assert dropping.schedule.drop_layer == 1  # 4 // 2 - 1: layers 0 | 1 | 2 | 3

  mask = inputs["input_mask"].numpy()
  positions = select_kept_positions(importance, inputs["input_word_ids"], inputs["input_mask"],
                                    8, [CLS, SEP], [PAD]).numpy()
  assert positions[0][0] == 0 and positions[1].tolist() == list(range(8))
  rows = np.arange(2)[:, None]
  blocks = dropping.transformer_layers

  before_drop = full_outputs[0].numpy()  # layer 0 saw every token
  cross = blocks[1]([before_drop[rows, positions], before_drop,
                     np.repeat(mask[:, None, :], 8, axis=1).astype(np.float32)])
  kept_mask = mask[rows, positions]
  kept = blocks[2]([cross, np.repeat(kept_mask[:, None, :], 8, axis=1).astype(np.float32)])
  merged = before_drop.copy()
  merged[rows, positions] = kept.numpy()
  last = blocks[3]([merged, np.repeat(mask[:, None, :], SEQ_LENGTH, axis=1).astype(np.float32)])

  got = outputs["encoder_outputs"]
  assert [t.shape[1] for t in got] == [SEQ_LENGTH, 8, 8, SEQ_LENGTH]
  np.testing.assert_allclose(got[0], full_outputs[0], rtol=0, atol=1e-5)
  # A kept query attending to every token is the full layer's row for it.
  np.testing.assert_allclose(got[1], full_outputs[1].numpy()[rows, positions], rtol=0, atol=1e-5)
  np.testing.assert_allclose(got[1], cross, rtol=0, atol=1e-5)
  np.testing.assert_allclose(got[2], kept, rtol=0, atol=1e-5)
  np.testing.assert_allclose(got[3], last, rtol=0, atol=1e-5)
  np.testing.assert_allclose(outputs["sequence_output"], last, rtol=0, atol=1e-5)
  # Dropping changed the result: this is not the full model in disguise.
  assert np.abs(outputs["sequence_output"] - full_outputs[3]).max() > 1e-3


def test_dropping_compiles_with_xla_to_the_same_result():
  dropping = TokenDropBertEncoder(token_keep_k=8, token_allow_ids=[CLS], **TINY)
  inputs = dict(_inputs(), token_importance=_importance())
  eager = dropping(inputs)
  compiled = tf.function(dropping, jit_compile=True)(inputs)
  assert compiled["encoder_outputs"][2].shape == (2, 8, 32)
  np.testing.assert_allclose(compiled["sequence_output"], eager["sequence_output"], atol=1e-5)


def test_importance_reaches_selection_in_float32_under_mixed_precision():
  # 1 + 1e-3 is 1.0 in bfloat16; a cast would turn this order into a tie.
  importance = tf.constant([[1.0 + 1e-3 * i for i in range(SEQ_LENGTH)]] * 2, tf.float32)
  # The blocks build their sublayers on the first call, so the policy stays set through it.
  tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    dropping = TokenDropBertEncoder(token_keep_k=8, **TINY)
    with mock.patch.object(encoder, "select_kept_positions",
                           wraps=encoder.select_kept_positions) as select:
      dropping(dict(_inputs(), token_importance=importance))
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
  np.testing.assert_array_equal(select.call_args.args[0], importance)


def _positions(importance, word_ids, keep_k, allow=(), deny=(), mask=None):
  word_ids = tf.constant(word_ids, tf.int32)
  mask = tf.ones_like(word_ids) if mask is None else tf.constant(mask, tf.int32)
  positions = select_kept_positions(tf.constant(importance, tf.float32), word_ids, mask, keep_k,
                                    allow, deny)
  assert positions.dtype == tf.int32
  return positions.numpy().tolist()


def test_selection_keeps_the_most_important_in_original_order():
  assert _positions([[0.1, 0.9, 0.5, 0.7, 0.2, 0.8]], [[5] * 6], 3) == [[1, 3, 5]]


def test_selection_breaks_ties_by_position():
  assert _positions([[1.0] * 6], [[5] * 6], 3) == [[0, 1, 2]]
  assert _positions([[0.5, 0.9, 0.5, 0.5, 0.9, 0.1]], [[5] * 6], 3) == [[0, 1, 4]]


def test_selection_forces_allowed_denied_and_padding():
  word_ids = [[CLS, 5, 7, 6, SEP, PAD], [CLS, 5, 6, 8, CLS, SEP]]
  mask = [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]]  # an allowed id at padding is padding
  importance = [[-5.0, 1.0, 100.0, 2.0, -10.0, 50.0], [0.0, 3.0, 2.0, 1.0, 9.0, 9.0]]
  assert _positions(importance, word_ids, 3, allow=(CLS, SEP), deny=(7,),
                    mask=mask) == [[0, 3, 4], [0, 1, 2]]


def test_selection_keeps_the_earliest_allowed_when_they_outnumber_k():
  assert _positions([[0.0, 0.0, 0.0, 0.0, 9.0, 9.0, 0.0]], [[CLS, SEP, CLS, 5, 6, 7, SEP]], 3,
                    allow=(CLS, SEP)) == [[0, 1, 2]]


def test_selection_fills_with_the_earliest_ineligible_when_short():
  assert _positions([[0.0, 5.0, 9.0, 9.0]], [[CLS, 5, PAD, PAD]], 3, deny=(PAD,),
                    mask=[[1, 1, 0, 0]]) == [[0, 1, 2]]


@pytest.mark.parametrize("keep_k", [0, 5])
def test_selection_rejects_a_keep_count_outside_the_sequence(keep_k):
  with pytest.raises(ValueError, match=r"keep_k must be in \[1, sequence length 4\]"):
    _positions([[0.0] * 4], [[5] * 4], keep_k)


def test_random_selection_matches_a_stable_sort_reference():
  """Random mode is random scores; rounded to one decimal, so ties are common."""
  rng = np.random.default_rng(7)
  word_ids = rng.integers(0, 12, (8, 32))
  mask = (rng.uniform(size=(8, 32)) > 0.2).astype(np.int32)
  scores = np.round(tf.random.stateless_uniform((8, 32), seed=(3, 4)).numpy(), 1)
  allow, deny = (1, 2), (3,)
  key = np.where(np.isin(word_ids, deny) | (mask == 0), -np.inf,
                 np.where(np.isin(word_ids, allow), np.inf, scores))
  expected = np.sort(np.argsort(-key, axis=1, kind="stable")[:, :10], axis=1)
  assert _positions(scores, word_ids, 10, allow, deny, mask) == expected.tolist()
  compiled = tf.function(select_kept_positions, jit_compile=True)
  np.testing.assert_array_equal(
      compiled(tf.constant(scores, tf.float32), tf.constant(word_ids, tf.int32),
               tf.constant(mask), 10, allow, deny), expected)


def test_the_paper_schedule_for_bert_base():
  schedule = TokenDropSchedule.from_encoder_args(num_layers=12)
  assert (schedule.keep_ratio, schedule.drop_layer) == (0.5, 5)
  assert (list(schedule.full_layers), schedule.cross_attention_layer,
          list(schedule.kept_layers), schedule.last_layer) == ([0, 1, 2, 3, 4], 5,
                                                               [6, 7, 8, 9, 10], 11)
  assert schedule.attention_lengths(512) == (
      ((512, 512),) * 5 + ((256, 512),) + ((256, 256),) * 5 + ((512, 512),))
  assert TokenDropSchedule.from_encoder_args(12, keep_k=600).attention_lengths(512) == (
      ((512, 512),) * 12)


def test_config_round_trip():
  original = TokenDropBertEncoder(token_keep_ratio=0.25, token_drop_layer=2,
                                  token_allow_ids=[CLS], token_deny_ids=[PAD], activation="gelu",
                                  **TINY)
  rebuilt = TokenDropBertEncoder.from_config(original.get_config())
  assert rebuilt.get_config() == original.get_config()
  assert rebuilt.schedule == TokenDropSchedule(num_layers=4, drop_layer=2, keep_ratio=0.25)
  assert rebuilt.schedule.keep_count(SEQ_LENGTH) == 4


@pytest.mark.parametrize("overrides, message", [
    (dict(token_drop_layer=-1), r"token_drop_layer must be in \[0, 2\]"),
    (dict(token_drop_layer=3), r"token_drop_layer must be in \[0, 2\]"),
    (dict(num_layers=2), "token dropping needs num_layers >= 3"),
    (dict(token_keep_k=0), "token_keep_k must be at least 1"),
    (dict(token_keep_ratio=0.0), r"token_keep_ratio must be in \(0, 1\]"),
    (dict(token_keep_ratio=1.5), r"token_keep_ratio must be in \(0, 1\]"),
    (dict(token_keep_k=8, token_keep_ratio=0.5), "set exactly one of token_keep_k"),
    (dict(token_allow_ids=[CLS, PAD], token_deny_ids=[PAD]), r"ids \[0\] are in both"),
    (dict(return_attention_scores=True), "does not support return_attention_scores=True"),
])
def test_invalid_settings_fail_at_construction(overrides, message):
  with pytest.raises(ValueError, match=message):
    TokenDropBertEncoder(**dict(TINY, **overrides))


def test_two_layers_are_fine_with_dropping_off():
  shallow = TokenDropBertEncoder(token_keep_ratio=1.0, **dict(TINY, num_layers=2))
  outputs = shallow(dict(_inputs(), token_importance=_importance()))
  assert [t.shape[1] for t in outputs["encoder_outputs"]] == [SEQ_LENGTH, SEQ_LENGTH]


def test_bad_importance_inputs_fail_with_a_clear_message():
  dropping = TokenDropBertEncoder(token_keep_k=8, **TINY)
  with pytest.raises(ValueError, match="token_importance has shape"):
    dropping(dict(_inputs(), token_importance=tf.zeros([2, SEQ_LENGTH - 1])))

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 3
               + [tf.TensorSpec([None, None], tf.float32)])
  def dynamic_length(word_ids, mask, type_ids, importance):
    return dropping(dict(input_word_ids=word_ids, input_mask=mask, input_type_ids=type_ids,
                         token_importance=importance))

  with pytest.raises(ValueError, match="token dropping needs a static sequence length"):
    dynamic_length(*_inputs().values(), _importance())


def test_keep_anneal_stages_split_the_final_fraction_equally():
  anneal = encoder.KeepAnneal(train_steps=100, fraction=0.2, stages=4)
  assert anneal.boundaries == (80, 85, 90, 95)
  assert anneal.steps_per_stage() == (80, 5, 5, 5, 5)
  assert [int(anneal.stage(tf.constant(step))) for step in (0, 79, 80, 84, 85, 94, 95, 99)] == [
      0, 0, 1, 1, 2, 3, 4, 4]
  constant = encoder.KeepAnneal(train_steps=100, fraction=0.0, stages=4)
  assert (constant.boundaries, constant.num_stages, constant.steps_per_stage()) == ((), 1, (100,))
  assert TokenDropSchedule.from_encoder_args(4, keep_k=8).stage_keep_counts(16, 4) == (
      8, 10, 12, 14, 16)


def _annealing_encoder(**overrides) -> TokenDropBertEncoder:
  return TokenDropBertEncoder(token_keep_k=8, token_keep_stages=2, token_allow_ids=[CLS],
                              token_deny_ids=[PAD], **dict(TINY, **overrides))


def test_each_anneal_stage_runs_its_own_kept_count_and_the_last_is_plain_bert(tmp_path):
  annealing = _annealing_encoder()
  constant = TokenDropBertEncoder(token_keep_k=8, token_allow_ids=[CLS], token_deny_ids=[PAD],
                                  **TINY)
  plain = networks.BertEncoderV2(**TINY)
  inputs, importance = _inputs(), _importance()
  for model in (annealing, constant, plain):
    model(inputs)
  _copy_weights(annealing, constant, tmp_path / "constant")
  _copy_weights(annealing, plain, tmp_path / "plain")

  def stage(index):
    return annealing(dict(inputs, token_importance=importance,
                          token_keep_stage=tf.constant(index)))

  # Stage 0 is the constant schedule's model (keep 8), its middle outputs merged to full length.
  dropped = constant(dict(inputs, token_importance=importance))
  np.testing.assert_array_equal(stage(0)["sequence_output"], dropped["sequence_output"])
  assert [t.shape[1] for t in stage(0)["encoder_outputs"]] == [SEQ_LENGTH] * 4
  # Stage 1 keeps 12 of 16: neither the first stage nor the full model.
  full = plain(inputs)["sequence_output"].numpy()
  middle = stage(1)["sequence_output"].numpy()
  assert np.abs(middle - full).max() > 1e-3
  assert np.abs(middle - dropped["sequence_output"].numpy()).max() > 1e-3
  # The last stage keeps everything: exactly BertEncoderV2, bit for bit.
  last = stage(2)
  np.testing.assert_array_equal(last["sequence_output"], full)
  for got, want in zip(last["encoder_outputs"], plain(inputs)["encoder_outputs"], strict=True):
    np.testing.assert_array_equal(got, want)


def test_anneal_traces_each_stage_once_and_compiles_with_xla():
  annealing = _annealing_encoder()
  inputs, importance = _inputs(), _importance()
  eager = [annealing(dict(inputs, token_importance=importance,
                          token_keep_stage=tf.constant(s)))["sequence_output"] for s in range(3)]
  traced_keep_counts = []
  middle = annealing._middle_layers

  def counting_middle(*args, **kwargs):
    traced_keep_counts.append(args[5])
    return middle(*args, **kwargs)

  with mock.patch.object(annealing, "_middle_layers", side_effect=counting_middle):
    step = tf.function(lambda s: annealing(dict(inputs, token_importance=importance,
                                                token_keep_stage=s))["sequence_output"],
                       jit_compile=True)
    compiled = [step(tf.constant(s)) for s in (0, 1, 2, 1, 0, 2)]
  assert step.experimental_get_tracing_count() == 1
  assert traced_keep_counts == [8, 12, 16]
  for s, result in zip((0, 1, 2, 1, 0, 2), compiled, strict=True):
    np.testing.assert_allclose(result, eager[s], rtol=0, atol=1e-5)


def test_an_annealing_encoder_needs_the_stage_to_drop():
  with pytest.raises(ValueError, match="pass token_keep_stage with token_importance"):
    _annealing_encoder()(dict(_inputs(), token_importance=_importance()))
