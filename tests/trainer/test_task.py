"""The task in process: the kept-count anneal through the real train step, its resume, and
the run's FLOPs that follow it."""

from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from official.core import exp_factory, task_factory

from trainer import configs, flops, vocab  # noqa: F401  (configs registers the experiments)
from trainer import task as _task  # noqa: F401  (registers the task)

SEQ, PREDICTIONS, BATCH = 16, 3, 2
# The predicted tokens. ANNEAL always keeps them, so their outputs come from the middle layers,
# whose attention spans 8, 12 or 16 tokens by stage: each stage's loss is distinct.
PREDICTED = [1500, 1501, 1502]


def _params(**encoder):
  params = exp_factory.get_exp_config("token_drop_bert/pretraining")
  params.override({
      "task": {"vocab_file": str(vocab.bert_base_uncased_vocab_path()),
               "model": {"encoder": {"any": {
                   "num_layers": 4, "hidden_size": 32, "num_attention_heads": 2,
                   "intermediate_size": 64, "max_position_embeddings": SEQ,
                   "token_keep_k": 8, "dropout_rate": 0.0, "attention_dropout_rate": 0.0,
                   **encoder}}},
               "train_data": {"seq_length": SEQ, "max_predictions_per_seq": PREDICTIONS,
                              "global_batch_size": BATCH}},
      "trainer": {"train_steps": 20,
                  "optimizer_config": {"warmup": {"polynomial": {"warmup_steps": 1}}}},
  }, is_strict=True)
  return params


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1000, 2000, (BATCH, SEQ))
  ids[:, 0], ids[:, -1] = 101, 102  # [CLS], [SEP]
  ids[:, [5, 10, 14]] = PREDICTED
  return {"input_word_ids": tf.constant(ids, tf.int32),
          "input_mask": tf.ones([BATCH, SEQ], tf.int32),
          "input_type_ids": tf.zeros([BATCH, SEQ], tf.int32),
          "masked_lm_positions": tf.constant([[5, 10, 14]] * BATCH, tf.int32),
          "masked_lm_ids": tf.constant(ids[:, [5, 10, 14]], tf.int32),
          "masked_lm_weights": tf.constant([[1.0, 1.0, 0.0]] * BATCH)}


def _built(params):
  task = task_factory.get_task(params.task)
  task.configure_keep_anneal(params.trainer.train_steps)
  model = task.build_model()
  optimizer = task.create_optimizer(params.trainer.optimizer_config, params.runtime)
  return task, model, optimizer


ANNEAL = dict(token_keep_schedule="anneal", token_keep_anneal_fraction=0.5,
              token_keep_anneal_stages=2, token_allow_list=tuple(PREDICTED))
# Large initial weights: logits far from uniform, so the stages' losses differ by nats, not
# by float32 rounding.
DISTINCT = dict(ANNEAL, initializer_range=1.0)


def _stage_loss(task, model, inputs, stage):
  """The training loss of `model` on `inputs` in kept-count stage `stage` (no update)."""
  outputs = model(dict(inputs, token_keep_stage=tf.constant(stage)), training=True)
  return float(task._mlm_loss(inputs, outputs))


def _stage_losses(task, model):
  """A graph function of a batch: {stage: the training loss of `model` in that kept-count
  stage} (no update). One trace serves every step, where eager calls cost a second each."""

  @tf.function
  def loss(inputs, stage):
    return task._mlm_loss(inputs, model(dict(inputs, token_keep_stage=stage), training=True))

  return lambda inputs: {stage: float(loss(inputs, tf.constant(stage))) for stage in range(3)}


def test_the_train_step_is_traced_once_and_each_stage_runs_at_its_step():
  task, model, optimizer = _built(_params(**DISTINCT))  # stages start at steps 10 and 15
  metrics = task.build_metrics(training=True)
  encoder = model.encoder_network
  traced_keep_counts = []
  middle = encoder._middle_layers
  stage_losses = _stage_losses(task, model)
  stage_losses(_batch())  # traced before the count below starts

  def counting_middle(*args, **kwargs):
    traced_keep_counts.append(args[5])
    return middle(*args, **kwargs)

  with mock.patch.object(encoder, "_middle_layers", side_effect=counting_middle):
    step = tf.function(lambda inputs: task.train_step(inputs, model, optimizer, metrics))
    stages = []
    for i in range(20):
      inputs = _batch(i)
      # The loss the step reports is computed before its update: it tells the stage it ran.
      before = stage_losses(inputs)
      loss = float(step(inputs)["loss"])
      # The stage whose loss the step reproduces, by a wide margin over the others (two
      # programs round differently).
      errors = sorted((abs(value - loss), stage) for stage, value in before.items())
      assert errors[1][0] > 10 * errors[0][0], (i, before, loss)
      stages.append(errors[0][1])
      if i == 0:
        # tf.function traces a step that creates variables (the optimizer's slots) twice.
        first_traces = step.experimental_get_tracing_count()
  assert stages == [0] * 10 + [1] * 5 + [2] * 5
  # No stage retraces the step: every kept count is in the one graph from the start.
  assert step.experimental_get_tracing_count() == first_traces
  assert traced_keep_counts[-3 * first_traces:] == [8, 12, 16] * first_traces


def test_a_resumed_run_continues_mid_schedule(tmp_path):
  params = _params(**DISTINCT)
  task, model, optimizer = _built(params)
  metrics = task.build_metrics(training=True)
  for i in range(12):
    task.train_step(_batch(i), model, optimizer, metrics)
  path = tf.train.Checkpoint(model=model, optimizer=optimizer).write(str(tmp_path / "ckpt"))

  task, resumed, resumed_optimizer = _built(params)
  resumed(_batch())
  tf.train.Checkpoint(model=resumed, optimizer=resumed_optimizer).read(path).expect_partial()
  assert int(resumed_optimizer.iterations.numpy()) == 12
  inputs = _batch(12)
  expected = _stage_loss(task, resumed, inputs, 1)  # step 12 of [10, 15)
  assert expected != pytest.approx(_stage_loss(task, resumed, inputs, 0), rel=1e-5)
  loss = task.train_step(inputs, resumed, resumed_optimizer, task.build_metrics(training=True))
  assert float(loss["loss"]) == pytest.approx(expected, rel=1e-4)


def test_the_last_stage_trains_exactly_the_baseline_model(tmp_path):
  _, annealed, _ = _built(_params(**ANNEAL))
  baseline_params = _params()
  baseline_params.task.model.encoder.any.token_selection = "none"
  _, baseline, _ = _built(baseline_params)
  inputs = _batch()
  annealed(inputs), baseline(inputs)
  path = tf.train.Checkpoint(model=annealed).write(str(tmp_path / "ckpt"))
  tf.train.Checkpoint(model=baseline).read(path).assert_existing_objects_matched()
  last = dict(inputs, token_keep_stage=tf.constant(2))
  got = annealed(last, training=True)["mlm_logits"].numpy()
  np.testing.assert_array_equal(got, baseline(inputs, training=True)["mlm_logits"].numpy())
  middle = dict(inputs, token_keep_stage=tf.constant(1))
  assert np.abs(annealed(middle, training=True)["mlm_logits"].numpy() - got).max() > 1e-4


def test_as_trained_evaluation_scores_the_last_training_steps_stage():
  task, model, _ = _built(_params(**ANNEAL))
  inputs = _batch()
  model(inputs)
  for global_step, stage in ((12, 1), (15, 1), (16, 2)):  # step 15 ran iteration 14
    task.configure_keep_anneal(20, tf.Variable(global_step, dtype=tf.int64))
    metrics = task.build_metrics(training=False)
    task.validation_step(inputs, model, metrics)
    by_name = {m.name: float(m.result()) for m in metrics}
    outputs = model(dict(inputs, token_keep_stage=tf.constant(stage)), training=False,
                    drop_tokens=True)
    assert by_name["lm_example_loss_as_trained"] == pytest.approx(
        float(task._mlm_loss(inputs, outputs)), rel=1e-6)
  # In the last stage the model as trained is the full model.
  assert by_name["lm_example_loss_as_trained"] == pytest.approx(by_name["lm_example_loss"],
                                                                rel=1e-6)


def test_as_trained_evaluation_follows_the_selection_and_is_seeded():
  for selection in ("importance", "random"):
    task, model, _ = _built(_params(token_selection=selection))
    metrics = task.build_metrics(training=False)
    inputs = _batch()
    task.validation_step(inputs, model, metrics)
    by_name = {m.name: float(m.result()) for m in metrics}
    assert by_name["validation_loss_as_trained"] != by_name["lm_example_loss"]
    # The model's own dropping path gives the as-trained numbers, and repeats exactly.
    dropped = model(inputs, training=False, drop_tokens=True)
    again = model(inputs, training=False, drop_tokens=True)
    np.testing.assert_array_equal(dropped["mlm_logits"], again["mlm_logits"])
    expected = task._mlm_loss(inputs, dropped).numpy()
    assert by_name["lm_example_loss_as_trained"] == pytest.approx(expected, rel=1e-6)


def _layer(q, k, h=32, inner=64):
  return 2 * h * h * (2 * q + 2 * k) + 4 * q * k * h + 4 * q * h * inner


def test_run_flops_follow_the_keep_schedule():
  head = 2 * PREDICTIONS * 32 * (32 + 30522)
  # Drop layer 1 of 4: layer 0 full, layer 1 kept x all, layer 2 kept only, layer 3 full.
  def step(keep):
    encoder = 2 * _layer(SEQ, SEQ) + _layer(keep, SEQ) + _layer(keep, keep)
    return 3.0 * BATCH * (encoder + head)

  constant = flops.run_flops(_params())
  assert constant.keep_counts == (8,) and constant.stage_steps == (20,)
  assert constant.total == 20 * step(8)
  annealed = flops.run_flops(_params(**ANNEAL))
  assert annealed.keep_counts == (8, 12, 16) and annealed.stage_steps == (10, 5, 5)
  assert annealed.step_flops == (step(8), step(12), step(16))
  assert annealed.total == 10 * step(8) + 5 * step(12) + 5 * step(16)
  assert annealed.mean_step_flops == annealed.total / 20
  baseline = _params()
  baseline.task.model.encoder.any.token_selection = "none"
  assert flops.run_flops(baseline).step_flops == (step(16),)


@pytest.mark.parametrize("override, message", [
    ({"token_loss_estimator": "adam"}, "token_loss_estimator must be one of"),
    ({"token_keep_schedule": "linear"}, "token_keep_schedule must be one of"),
    ({"token_keep_anneal_fraction": 0.0}, r"token_keep_anneal_fraction must be in \(0, 1\]"),
    ({"token_keep_anneal_stages": 0}, "token_keep_anneal_stages must be at least 1"),
])
def test_bad_estimator_and_schedule_settings_fail_when_the_task_builds(override, message):
  task = task_factory.get_task(_params(**override).task)
  with pytest.raises(ValueError, match=message):
    task.build_model()
