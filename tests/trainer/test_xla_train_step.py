"""The whole train step under XLA (`jit_compile=True`), as a TPU compiles it, against the same
step as a plain TF graph: token dropping and the baseline, in float32 and mixed_bfloat16.

Each comparison builds the task from the config files a pipeline uses (ending with the tiny
one), takes one batch from the task's own input pipeline over packed IMDB data written by
`tokendrop prepare-data` (`drop_remainder`: the static shapes XLA and a TPU need), gives two
copies of the model the same weights and the same importance table, and takes one step with
each: forward, loss, gradients, AdamW, the importance-table update and the metrics. It then
checks the loss, each variable's gradient norm as the optimizer received it, the table after
the update and the metrics. jit_compile=True fails the step if any op cannot be compiled.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.common import distribute_utils
from official.core import task_factory, train_utils
from official.modeling import performance
from tensorflow.python.ops import control_flow_util

from trainer import configs, contract, train_lib, vocab

CONFIG_FILES = ("wiki_books_pretrain_sequence_pack.yaml", "bert_en_uncased_base_token_drop.yaml",
                "tiny_token_drop.yaml")
# The two programs differ only in float32 rounding: XLA fuses ops and orders sums (matmul
# blocking, reductions) its own way. Measured: at most 1e-6 relative on any gradient norm,
# 3e-7 on the loss; 1e-5 keeps a 10x margin, while a real divergence (another selection, a
# skipped update) moves these numbers by more than 1e-2.
FLOAT32_RTOL = 1e-5
# Both programs compute in bfloat16 (8-bit significand: neighbours are 2^-8 apart relative), but
# round different intermediates: the graph rounds every op's output, XLA only each fusion's.
# Measured: at most 3.5e-3 relative on a gradient norm (about one bfloat16 step); 2^-6 allows
# four steps.
BFLOAT16_RTOL = 2.0**-6
# Softmax ignores a constant added to a query's every logit, which is all the key bias adds:
# its gradient is zero in exact arithmetic, and both programs return rounding noise (measured:
# 1e-12 in float32, 5e-8 in bfloat16, of the largest norm). Checked against this bound instead,
# relative to the largest gradient norm.
ZERO_GRADIENT = "self_attention/key/bias"
ZERO_GRADIENT_BOUND = 1e-6


def _params(experiment, packed_data, **runtime):
  train, validation = packed_data
  return configs.build_experiment(experiment, CONFIG_FILES, {
      "runtime": runtime,
      "task": {
          "vocab_file": str(vocab.bert_base_uncased_vocab_path()),
          "train_data": {"input_path": train},
          "validation_data": {"input_path": validation},
      },
  })


@pytest.fixture
def float32_afterwards():
  """Restores the global Keras policy that set_mixed_precision_policy changes."""
  yield
  tf_keras.mixed_precision.set_global_policy("float32")


def _one_step(task, params, model, batch, jit_compile):
  """(loss, {variable's index in model.trainable_variables: norm of the gradient the
  optimizer received}, {metric: result}) of one train step of `model`, compiled with XLA or
  not."""
  optimizer = task.create_optimizer(params.trainer.optimizer_config, params.runtime)
  # The slots exist before the step, as they do after a trainer's first step, so the step is
  # traced (and compiled) once instead of once more to create them.
  optimizer._create_all_weights(model.trainable_variables)
  metrics = task.build_metrics(training=True)
  received = []
  apply_gradients = optimizer.apply_gradients

  def recording_apply_gradients(grads_and_vars, *args, **kwargs):
    received[:] = grads_and_vars
    return apply_gradients(grads_and_vars, *args, **kwargs)

  optimizer.apply_gradients = recording_apply_gradients

  @tf.function(jit_compile=jit_compile)
  def step(inputs):
    logs = task.train_step(inputs, model, optimizer, metrics)
    # The norms are computed in the same (compiled) program as the step.
    return logs[task.loss], {i: tf.norm(g) for i, (g, _) in enumerate(received) if g is not None}

  loss, norms = step(batch)
  return (float(loss), {i: float(norm) for i, norm in norms.items()},
          {m.name: float(m.result()) for m in metrics})


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("experiment", [configs.PRETRAINING, configs.BASELINE])
def test_the_xla_train_step_matches_the_graph_step(packed_data, experiment, precision,
                                                   float32_afterwards):
  params = _params(experiment, packed_data, mixed_precision_dtype=precision)
  # Dropout draws its masks from each program's own random stream: off, so both see one model.
  params.override({"task": {"model": {"encoder": {"any": {
      "dropout_rate": 0.0, "attention_dropout_rate": 0.0}}}}})
  performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
  rtol = FLOAT32_RTOL if precision == "float32" else BFLOAT16_RTOL
  task = task_factory.get_task(params.task)
  batch = next(iter(task.build_inputs(params.task.train_data)))
  batch_size = params.task.train_data.global_batch_size
  assert batch[contract.WORD_IDS].shape == (batch_size, params.task.train_data.seq_length)
  assert batch[contract.MASKED_IDS].shape == (
      batch_size, params.task.train_data.max_predictions_per_seq)

  # Distinct importances 0.001 apart, so the selection ranks every token strictly.
  vocab_size = params.task.model.encoder.any.vocab_size
  table = np.random.default_rng(0).permutation(vocab_size).astype(np.float32) / 1000.0
  compiled, graph = task.build_model(), task.build_model()
  for model in (compiled, graph):
    logits = model(batch, training=False)["mlm_logits"]  # also creates the variables
    assert logits.dtype == precision  # the policy applies: mixed_bfloat16 computes in bfloat16
    model.token_importance.assign(table)
  graph.set_weights(compiled.get_weights())
  assert compiled.drops_tokens == (experiment == configs.PRETRAINING)

  xla_loss, xla_norms, xla_metrics = _one_step(task, params, compiled, batch, jit_compile=True)
  graph_loss, graph_norms, graph_metrics = _one_step(task, params, graph, batch,
                                                     jit_compile=False)

  np.testing.assert_allclose(xla_loss, graph_loss, rtol=rtol)
  assert xla_loss == xla_metrics["lm_example_loss"]
  assert xla_norms.keys() == graph_norms.keys()
  # The pooler is unused without classification heads; every other variable has a gradient.
  assert len(xla_norms) == len(compiled.trainable_variables) - 2
  largest = max(graph_norms.values())
  for i, norm in graph_norms.items():
    name = compiled.trainable_variables[i].name
    if ZERO_GRADIENT in name:
      assert max(norm, xla_norms[i]) <= ZERO_GRADIENT_BOUND * largest, name
    else:
      np.testing.assert_allclose(xla_norms[i], norm, rtol=rtol, err_msg=name)
  assert xla_metrics.keys() == graph_metrics.keys()
  for name, value in graph_metrics.items():
    np.testing.assert_allclose(xla_metrics[name], value, rtol=rtol, err_msg=name)

  # The same entries moved, exactly the ids predicted (weight > 0), to the same values.
  predicted = np.unique(batch[contract.MASKED_IDS].numpy()[
      batch[contract.MASKED_WEIGHTS].numpy() > 0])
  for model in (compiled, graph):
    np.testing.assert_array_equal(np.flatnonzero(model.token_importance.table.numpy() != table),
                                  predicted)
    np.testing.assert_array_equal(np.flatnonzero(model.token_importance.counts.numpy()),
                                  predicted)
  np.testing.assert_allclose(compiled.token_importance.table.numpy(),
                             graph.token_importance.table.numpy(), rtol=rtol)


@pytest.mark.parametrize("strategy, enable_xla, compiled", [
    ("one_device", True, True),
    # The optimizer's gradient all-reduce (a merge_call) cannot run in a nested XLA function.
    ("mirrored", True, False),
])
def test_runtime_enable_xla_compiles_the_trainers_step_under_one_device(
    packed_data, monkeypatch, strategy, enable_xla, compiled):
  params = _params(configs.PRETRAINING, packed_data, distribution_strategy=strategy,
                   enable_xla=enable_xla)
  distribution = distribute_utils.get_distribution_strategy(strategy, num_gpus=0)
  with distribution.scope():
    task = task_factory.get_task(params.task)
    in_xla = []
    train_step = task.train_step

    def recording_train_step(*args, **kwargs):
      in_xla.append(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
      return train_step(*args, **kwargs)

    monkeypatch.setattr(task, "train_step", recording_train_step)
    trainer = train_utils.create_trainer(params, task, train=True, evaluate=False,
                                         trainer_cls=train_lib.TokenDropTrainer)
  assert trainer.compiles_train_step == compiled
  trainer.train(tf.constant(2))
  assert set(in_xla) == {compiled}  # every trace, in an XLA context or not
  assert int(trainer.global_step.numpy()) == 2
  assert np.isfinite(float(trainer.train_loss.result()))
