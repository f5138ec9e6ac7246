"""The data contract: prepare-data's data_spec.json decides how the trainer reads the data, so
the seed's two YAMLs train on our data, static or dynamic, with only the paths given."""

import dataclasses
import json
import math
import pathlib

import pytest

from tests.trainer.conftest import SEQ_LENGTH, prepare_imdb
from trainer import configs, contract, data_spec, train_lib, vocab
from trainer.errors import UserError

VOCAB = str(vocab.bert_base_uncased_vocab_path())
SEED_CONFIGS = ("wiki_books_pretrain_sequence_pack.yaml", "bert_en_uncased_base_token_drop.yaml")
# An explicit overlay that makes BERT-base small enough for 2 CPU cores; every data key and
# every other value stay the seed's.
TINY_MODEL = ("task.model.encoder.any.num_layers=4,task.model.encoder.any.hidden_size=64,"
              "task.model.encoder.any.num_attention_heads=2,"
              "task.model.encoder.any.intermediate_size=256,task.model.encoder.any.token_keep_k=32,"
              "task.train_data.global_batch_size=16,task.validation_data.global_batch_size=16,"
              "runtime.distribution_strategy=one_device,runtime.enable_xla=false")


def _paths(data_dir: pathlib.Path) -> str:
  """Only the paths: the examples of each split and the vocab."""
  return (f"task.train_data.input_path={data_dir}/train/*,"
          f"task.validation_data.input_path={data_dir}/validation/*,"
          f"task.vocab_file={data_dir}/{contract.VOCAB_FILE}")


@pytest.fixture(scope="module")
def static_data(tmp_path_factory) -> pathlib.Path:
  """prepare-data's output, statically masked, 64-token examples from 100 IMDB reviews."""
  return prepare_imdb(tmp_path_factory.mktemp("static"), 100, "static")[0]


@pytest.fixture
def dynamic_data(packed_data) -> pathlib.Path:
  return pathlib.Path(packed_data[0]).parent.parent


def test_the_record_round_trips_and_says_what_prepare_data_wrote(static_data, tmp_path):
  spec = data_spec.DataSpec.read(str(static_data / contract.DATA_SPEC_FILE))
  tokens = vocab.load_vocab(VOCAB)
  assert spec == data_spec.DataSpec(
      masking="static", file_type="tfrecord_compressed", seq_length=SEQ_LENGTH,
      max_predictions_per_seq=math.ceil(SEQ_LENGTH * 0.15), mask_rate=0.15,
      next_sentence_labels=False, lower_case=True, vocab_size=len(tokens),
      vocab_sha256=data_spec.vocab_sha256(tokens))
  assert spec.vocab_file == str(static_data / contract.VOCAB_FILE)
  assert spec.source == str(static_data / contract.DATA_SPEC_FILE)
  again = data_spec.DataSpec.read(spec.write(str(tmp_path)))
  assert (again, again.vocab_file) == (spec, spec.vocab_file)
  assert json.loads(spec.to_json()) == json.loads(again.to_json())


@pytest.mark.parametrize("masking", ["static", "dynamic"])
def test_the_seed_yamls_train_on_prepare_data_output_given_only_paths(
    masking, static_data, dynamic_data, tmp_path):
  data_dir = static_data if masking == "static" else dynamic_data
  params = configs.build_experiment(configs.PRETRAINING, SEED_CONFIGS,
                                    f"{_paths(data_dir)},{TINY_MODEL},trainer.train_steps=4")
  spec = data_spec.DataSpec.read(str(data_dir / contract.DATA_SPEC_FILE))
  for data_config in (params.task.train_data, params.task.validation_data):
    # The seed says tfrecord, static, 512 and 76; the data says otherwise, and is right.
    assert (data_config.file_type, data_config.masking, data_config.seq_length,
            data_config.max_predictions_per_seq, data_config.mask_rate) == (
        "tfrecord_compressed", masking, SEQ_LENGTH, spec.max_predictions_per_seq, 0.15)

  model_dir = tmp_path / "model"
  train_lib.run_experiment(params, str(model_dir), "train_and_eval")
  metrics = json.loads((model_dir / contract.EVAL_METRICS_FILE).read_text())
  assert metrics["step"] == 4
  # Masked once: every validation example has predictions, and the loss is the model's.
  assert math.isfinite(metrics["validation_loss"]) and metrics["validation_loss"] > 5.0
  assert 0.0 <= metrics["masked_lm_accuracy"] < 0.5


def test_a_contradicting_override_is_refused_in_one_line(dynamic_data):
  record = dynamic_data / contract.DATA_SPEC_FILE
  with pytest.raises(UserError) as error:
    configs.build_experiment(configs.PRETRAINING, SEED_CONFIGS,
                             f"{_paths(dynamic_data)},task.train_data.seq_length=512")
  assert str(error.value) == (
      f"task.train_data.seq_length is 512 but the data has seq_length {SEQ_LENGTH} ({record}); "
      f"drop the override, or make the data with seq_length 512 (tokendrop prepare-data, or "
      "the pipeline's data: section)")
  with pytest.raises(UserError, match="task.validation_data.masking is 'static' but the data "
                                      "has masking 'dynamic'"):
    configs.build_experiment(configs.PRETRAINING, SEED_CONFIGS,
                             f"{_paths(dynamic_data)},task.validation_data.masking=static")
  # An override that agrees with the data is no contradiction.
  params = configs.build_experiment(configs.PRETRAINING, SEED_CONFIGS,
                                    f"{_paths(dynamic_data)},task.train_data.seq_length=64")
  assert params.task.train_data.seq_length == SEQ_LENGTH


def test_the_vocab_must_be_the_datas_and_is_found_when_not_given(dynamic_data, tmp_path):
  other = tmp_path / "vocab.txt"
  tokens = vocab.load_vocab(VOCAB)
  other.write_text("\n".join([*tokens[:-1], "[unused_last]"]) + "\n", encoding="utf-8")
  with pytest.raises(UserError, match=f"task.vocab_file {other} .30522 tokens. is not the vocab "
                                      "the data was written with"):
    configs.build_experiment(configs.PRETRAINING, SEED_CONFIGS,
                             f"{_paths(dynamic_data)},task.vocab_file={other}")
  paths = _paths(dynamic_data).rsplit(",", 1)[0]  # no task.vocab_file
  params = configs.build_experiment(configs.PRETRAINING, SEED_CONFIGS, paths)
  assert params.task.vocab_file == str(dynamic_data / contract.VOCAB_FILE)


def test_data_written_with_different_options_cannot_be_mixed(dynamic_data, static_data):
  with pytest.raises(UserError, match="task.train_data.input_path mixes data written with "
                                      "different options"):
    configs.build_experiment(configs.PRETRAINING, SEED_CONFIGS, {"task": {"train_data": {
        "input_path": f"{dynamic_data}/train/*,{static_data}/train/*"}}})


def test_a_saved_config_is_not_derived_again(dynamic_data):
  params = configs.build_experiment(configs.PRETRAINING, SEED_CONFIGS, _paths(dynamic_data),
                                    read_data_spec=False)
  assert (params.task.train_data.masking, params.task.train_data.seq_length) == ("static", 512)


def test_a_spec_contradicting_itself_names_its_file(tmp_path):
  spec = dataclasses.asdict(data_spec.DataSpec(
      masking="dynamic", file_type="tfrecord_compressed", seq_length=64,
      max_predictions_per_seq=10, mask_rate=0.15, next_sentence_labels=False, lower_case=True))
  del spec["source"]
  (tmp_path / contract.DATA_SPEC_FILE).write_text(json.dumps({**spec, "seq_length": 4}))
  with pytest.raises(UserError, match=f"{tmp_path}/data_spec.json: invalid data spec: "
                                      "max_predictions_per_seq 10 is not in"):
    data_spec.DataSpec.read(str(tmp_path / contract.DATA_SPEC_FILE))
  (tmp_path / contract.DATA_SPEC_FILE).write_text(json.dumps({"masking": "static"}))
  with pytest.raises(UserError, match="is not a data spec"):
    data_spec.DataSpec.read(str(tmp_path / contract.DATA_SPEC_FILE))
