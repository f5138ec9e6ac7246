"""Export a pretrained model as standard BERT, and import Hugging Face BERT weights.

Token dropping changes which tokens the middle layers see during pretraining,
not the variables, so the pretrained encoder is an ordinary BERT and every
export below is one:

    OUT/tf2/           bert_model.ckpt (encoder, masked_lm), bert_config.json, vocab.txt
    OUT/hf/            Hugging Face BertForMaskedLM: config.json, model.safetensors, tokenizer files
    OUT/saved_model/   serving_default: input_word_ids, input_mask, input_type_ids ->
                       sequence_output, pooled_output

Modules, in the order the data flows:

    activations   Model Garden <-> Hugging Face activation names (EXACT_GELU)
    variables     BertEncoderV2's variable structure, shared by the two checkpoint formats
    bert_config   bert_config.json <-> BertEncoderConfig, and the plain BertEncoderV2
    tf2           OUT/tf2/: write the checkpoint, restore an encoder from it
    huggingface   OUT/hf/: export BertForMaskedLM, import BertModel / BertForMaskedLM
    saved_model   OUT/saved_model/
    run           all of the above at once, from a pretrainer or a `tokendrop train` run
"""

from trainer.export.activations import EXACT_GELU, exact_gelu
from trainer.export.bert_config import (
    bert_config_from_encoder_config,
    build_bert_encoder,
    build_bert_encoder_from_bert_config,
    encoder_config_from_bert_config,
)
from trainer.export.huggingface import (
    LAYER_NORM_EPSILON,
    encoder_config_from_hf_config,
    export_huggingface,
    huggingface_config,
    huggingface_state_dict,
    load_huggingface_weights,
)
from trainer.export.run import (
    ExportedModel,
    export_all,
    export_run,
    load_params_file,
    load_run_params,
)
from trainer.export.saved_model import export_saved_model
from trainer.export.tf2 import export_tf2_checkpoint, restore_encoder

__all__ = [
    "EXACT_GELU",
    "LAYER_NORM_EPSILON",
    "ExportedModel",
    "bert_config_from_encoder_config",
    "build_bert_encoder",
    "build_bert_encoder_from_bert_config",
    "encoder_config_from_bert_config",
    "encoder_config_from_hf_config",
    "exact_gelu",
    "export_all",
    "export_huggingface",
    "export_run",
    "export_saved_model",
    "export_tf2_checkpoint",
    "huggingface_config",
    "huggingface_state_dict",
    "load_huggingface_weights",
    "load_params_file",
    "load_run_params",
    "restore_encoder",
]
