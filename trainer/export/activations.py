"""Activation names: Model Garden's (a config's hidden_activation) and Hugging Face's hidden_act.

Model Garden's "gelu" (tf_utils.get_activation) is the tanh approximation, which
Hugging Face calls "gelu_new"; Hugging Face's "gelu" is the exact erf form, which
Model Garden lacks, so it is registered here as EXACT_GELU for Hugging Face models
to import without changing their outputs. Both directions map names, never sampled
function values, so an activation outside the tables is an error that lists them.
"""

from collections.abc import Callable

import tensorflow as tf
import tf_keras
from official.modeling import tf_utils

# tf_utils.get_activation lower-cases names before the registry lookup.
EXACT_GELU = "tokendrop>exact_gelu"

# Model Garden hidden_activation -> the Hugging Face hidden_act computing the same function.
HUGGINGFACE_ACTIVATIONS = {
    "gelu": "gelu_new",
    EXACT_GELU: "gelu",
    "relu": "relu",
}

# Hugging Face hidden_act -> the Model Garden hidden_activation computing the same function.
MODEL_GARDEN_ACTIVATIONS = {
    "gelu": EXACT_GELU,
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "gelu_fast": "gelu",
    "relu": "relu",
}


@tf_keras.utils.register_keras_serializable(package="tokendrop", name="exact_gelu")
def exact_gelu(x: tf.Tensor) -> tf.Tensor:
  """GELU with the exact erf, as Hugging Face's "gelu" computes it."""
  return tf_keras.activations.gelu(x, approximate=False)


def huggingface_activation(hidden_activation: str, field: str = "hidden_activation") -> str:
  """The Hugging Face hidden_act for a Model Garden activation name; `field` names its source."""
  name = str(hidden_activation).lower()
  if name not in HUGGINGFACE_ACTIVATIONS:
    raise ValueError(f"{field} {hidden_activation!r} has no Hugging Face BERT equivalent; "
                     f"supported: {sorted(HUGGINGFACE_ACTIVATIONS)}")
  return HUGGINGFACE_ACTIVATIONS[name]


def model_garden_activation(hidden_act: str, field: str = "hidden_act") -> str:
  """The Model Garden hidden_activation for a Hugging Face hidden_act; `field` names its source."""
  if hidden_act not in MODEL_GARDEN_ACTIVATIONS:
    raise ValueError(f"{field} {hidden_act!r} has no Model Garden equivalent; supported: "
                     f"{sorted(MODEL_GARDEN_ACTIVATIONS)}")
  return MODEL_GARDEN_ACTIVATIONS[hidden_act]


def keras_activation(hidden_activation: str, field: str = "hidden_activation"
                     ) -> Callable[[tf.Tensor], tf.Tensor]:
  """tf_utils.get_activation, with an unknown name reported as one line naming `field`."""
  try:
    return tf_utils.get_activation(hidden_activation)
  except ValueError as e:
    raise ValueError(f"{field} {hidden_activation!r} is not a Model Garden activation "
                     f"(tf_utils.get_activation: {e}); use one of "
                     f"{sorted(HUGGINGFACE_ACTIVATIONS)} or another Keras activation name") from e
