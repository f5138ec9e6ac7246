"""Fine-tuning a tiny exported model: the restore, the lr grid and seeds, every head type."""

import os
import statistics

import numpy as np
import pytest
import tensorflow as tf
from official.nlp.modeling import networks

from components.glue_eval import data, finetune, tasks
from components.glue_eval.data import Example, Split, TaskData
from components.glue_eval.tokenize import PairEncoder
from tests.components.glue_eval.conftest import VOCAB, sentiment_rows
from trainer import contract, export


@pytest.fixture(scope="module")
def encoder():
  return PairEncoder(VOCAB, max_seq_length=32)


def test_the_classifier_is_a_plain_bert_encoder_restored_from_the_checkpoint(tiny_export):
  checkpoint_dir = finetune.find_checkpoint_dir(str(tiny_export))
  model = finetune.build_classifier(checkpoint_dir, num_classes=2, dropout_rate=0.1)
  encoder = model.checkpoint_items["encoder"]
  assert type(encoder) is networks.BertEncoderV2
  prefix = os.path.join(checkpoint_dir, contract.CHECKPOINT_NAME)
  saved = [tf.train.load_variable(prefix, name) for name, _ in tf.train.list_variables(prefix)
           if name != "_CHECKPOINTABLE_OBJECT_GRAPH"]

  def in_checkpoint(weight):
    return any(s.shape == weight.shape and np.array_equal(s, weight.numpy()) for s in saved)

  assert len(encoder.weights) == 39
  assert [w.name for w in encoder.weights if not in_checkpoint(w)] == []
  # A fresh encoder of the same config does not pass: the comparison can fail.
  fresh = export.build_bert_encoder_from_bert_config(
      os.path.join(checkpoint_dir, contract.BERT_CONFIG_FILE))
  assert not in_checkpoint(fresh.get_embedding_table())


def test_the_checkpoint_is_found_from_the_export_root_or_tf2(tiny_export, tmp_path):
  tf2 = str(tiny_export / "tf2")
  assert finetune.find_checkpoint_dir(str(tiny_export)) == tf2
  assert finetune.find_checkpoint_dir(tf2 + "/") == tf2
  with pytest.raises(FileNotFoundError, match=r"no exported checkpoint in .*: expected "
                     r"bert_config\.json"):
    finetune.find_checkpoint_dir(str(tmp_path))
  (tmp_path / "bert_config.json").write_text("{}")
  with pytest.raises(FileNotFoundError, match=r"lacks \['vocab.txt', 'bert_model.ckpt.index'\]"):
    finetune.find_checkpoint_dir(str(tmp_path))


def test_fine_tuning_learns_and_the_grid_picks_the_learning_rate_that_did(tiny_export, sst2_dir,
                                                                          encoder):
  task_data = data.read_glue_dir(tasks.get_task("SST-2"), str(sst2_dir))
  # 1e-6 cannot move a random model in 180 steps; 1e-2 learns which adjective is positive.
  config = finetune.FineTuneConfig(learning_rates=(1e-6, 1e-2), seeds=(1,), epochs=30,
                                   batch_size=8, max_seq_length=32)
  result = finetune.fine_tune_task(str(tiny_export / "tf2"), task_data, encoder, config)
  assert [(run.learning_rate, run.seed, run.score) for run in result.runs] == [
      (1e-6, 1, 0.5), (1e-2, 1, 1.0)]
  assert result.best_learning_rate == 1e-2
  assert result.metrics == {"accuracy": 1.0} and result.score == 1.0
  assert (result.train_size, result.dev_sizes) == (48, {"dev": 16})


def _task_data(task_name, train_rows, dev_rows_by_split):
  def split(rows):
    return Split("memory", [Example(a, b, label) for a, b, label in rows])
  return TaskData(tasks.get_task(task_name), split(train_rows),
                  {name: split(rows) for name, rows in dev_rows_by_split.items()})


def test_mnli_scores_both_dev_sets_and_takes_medians_over_seeds(tiny_export, encoder):
  pairs = [(text, "a plot", i % 3) for i, (text, _) in enumerate(sentiment_rows(12))]
  task_data = _task_data("MNLI", pairs, {"matched": pairs[:6], "mismatched": pairs[6:9]})
  config = finetune.FineTuneConfig(learning_rates=(1e-3,), seeds=(1, 2, 3), epochs=1,
                                   batch_size=4, max_seq_length=16, max_train_examples=9)
  result = finetune.fine_tune_task(str(tiny_export / "tf2"), task_data, encoder, config)
  assert (result.train_size, result.dev_sizes) == (9, {"matched": 6, "mismatched": 3})
  assert [set(run.metrics) for run in result.runs] == [
      {"accuracy_matched", "accuracy_mismatched"}] * 3
  for name in ("accuracy_matched", "accuracy_mismatched"):
    assert result.metrics[name] == statistics.median(run.metrics[name] for run in result.runs)
  assert result.score == (result.metrics["accuracy_matched"] +
                          result.metrics["accuracy_mismatched"]) / 2


def test_stsb_trains_a_regression_head(tiny_export, encoder):
  pairs = [(text, "the movie", float(i % 6)) for i, (text, _) in enumerate(sentiment_rows(12))]
  task_data = _task_data("STS-B", pairs, {"dev": pairs})
  config = finetune.FineTuneConfig(learning_rates=(1e-3,), seeds=(1,), epochs=1, batch_size=4,
                                   max_seq_length=16)
  result = finetune.fine_tune_task(str(tiny_export / "tf2"), task_data, encoder, config)
  [run] = result.runs
  assert set(run.metrics) == {"pearson", "spearman"}
  assert all(np.isfinite(value) and -1 <= value <= 1 for value in run.metrics.values())
  assert run.score == (run.metrics["pearson"] + run.metrics["spearman"]) / 2


def test_config_from_json():
  config = finetune.FineTuneConfig.from_json('{"learning_rates": [1e-4, 2e-4], "epochs": 2}')
  assert (config.learning_rates, config.epochs, config.seeds) == ((1e-4, 2e-4), 2, (1, 2, 3))
  assert finetune.FineTuneConfig.from_dict(config.to_dict()) == config
  assert finetune.FineTuneConfig.from_json("") == finetune.FineTuneConfig()


@pytest.mark.parametrize("text, message", [
    ('{"learning_rate": 1e-4}', r"unknown fine-tuning setting\(s\) \['learning_rate'\]"),
    ("{epochs: 2}", "not valid JSON"),
    ("[1]", "must be a JSON object"),
    ('{"epochs": 0, "warmup_fraction": 1.5}',
     "epochs 0 must be at least 1; warmup_fraction 1.5 must be in"),
    ('{"learning_rates": []}', "learning_rates .* must be positive"),
    ('{"seeds": [1, 1]}', r"seeds \[1, 1\] repeat a value"),
    ('{"learning_rates": -1}', r"learning_rates must be a list, e.g. \[3e-4\]; got -1"),
])
def test_bad_configs_are_one_clear_error(text, message):
  with pytest.raises(ValueError, match=message):
    finetune.FineTuneConfig.from_json(text)
