"""The SavedModel: OUT/saved_model/, whose serving_default maps the encoder inputs to its outputs.

Not official.nlp.tools.export_tfhub_lib.export_model: its Keras save names serving_default's
outputs bert_encoder, bert_encoder_1, ... (not sequence_output, pooled_output), and its restore()
asserts a save_counter that the bert_model.ckpt written by tf2.py does not hold.
"""

import tensorflow as tf

from trainer import contract

SERVING_OUTPUTS = ("sequence_output", "pooled_output")


def export_saved_model(encoder: tf.Module, vocab_path: str, output_dir: str,
                       do_lower_case: bool = True) -> None:
  """A SavedModel whose serving_default maps int32 [batch, seq] ids to the encoder's outputs.

  Like TF Hub's BERT models (and export_tfhub_lib's), it carries vocab_file (an asset) and
  do_lower_case for tokenizing.
  """
  module = tf.Module()
  module.encoder = encoder
  module.vocab_file = tf.saved_model.Asset(str(vocab_path))
  module.do_lower_case = tf.Variable(do_lower_case, trainable=False)
  ids = tf.TensorSpec([None, None], tf.int32)

  @tf.function(input_signature=[tf.TensorSpec.from_spec(ids, name=name)
                                for name in contract.ENCODER_INPUTS])
  def serve(*inputs: tf.Tensor) -> dict[str, tf.Tensor]:
    outputs = encoder(dict(zip(contract.ENCODER_INPUTS, inputs, strict=True)), training=False)
    return {name: outputs[name] for name in SERVING_OUTPUTS}

  module.serve = serve
  tf.saved_model.save(module, str(output_dir), signatures={"serving_default": serve})
