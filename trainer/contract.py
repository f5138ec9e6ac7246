"""The contract between the stages: feature names, the special-token policy, artifact names.

Every module that reads or writes a feature, decides what happens to a special
token, or names a file another stage reads takes the name from here (the TFX
penguin template's `features.py` plays this part there). It imports nothing
heavy, so the data pipeline, the trainer, the components and the tests can all
use it.
"""

import dataclasses

# --- Features of a pretraining example (Model Garden's v2 names) ----------------------------
WORD_IDS = "input_word_ids"
INPUT_MASK = "input_mask"
TYPE_IDS = "input_type_ids"
MASKED_POSITIONS = "masked_lm_positions"
MASKED_IDS = "masked_lm_ids"
MASKED_WEIGHTS = "masked_lm_weights"
NEXT_SENTENCE_LABELS = "next_sentence_labels"
# What the encoder reads; what masking adds.
ENCODER_INPUTS = (WORD_IDS, INPUT_MASK, TYPE_IDS)
MASKED_LM_FEATURES = (MASKED_POSITIONS, MASKED_IDS, MASKED_WEIGHTS)
# The raw corpus' text feature (tfrecord_text input, the CorpusGen component's output).
TEXT_FEATURE = "text"
# Where CorpusGen found each document: the reader's chunk key (input file index, chunk index)
# and the document's position in that chunk. The data stage orders documents by them, so the
# examples do not depend on the order in which ExampleGen's writer shuffled the records.
CHUNK_KEY_FEATURE = "chunk_key"
CHUNK_POSITION_FEATURE = "chunk_position"

# --- The special-token policy --------------------------------------------------------------
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
# The paper: markers and unknowns are always kept, padding is always dropped.
ALWAYS_KEPT_TOKENS = (UNK, CLS, SEP, MASK)
ALWAYS_DROPPED_TOKENS = (PAD,)
# [UNK] is a real input position and may be masked; the markers may not.
NEVER_MASKED_TOKENS = (PAD, CLS, SEP, MASK)


@dataclasses.dataclass(frozen=True)
class SpecialTokenIds:
  """The ids of the special tokens in one vocab, and what the policy does with each."""
  pad: int
  unk: int
  cls: int
  sep: int
  mask: int

  @classmethod
  def from_vocab(cls, tokens: list[str], source: str = "vocab") -> "SpecialTokenIds":
    """The one place a vocab's special ids are looked up."""
    index = {token: i for i, token in enumerate(tokens)}
    missing = [t for t in SPECIAL_TOKENS if t not in index]
    if missing:
      raise ValueError(f"{source} lacks the special tokens {missing}; a BERT vocab needs all of "
                       f"{list(SPECIAL_TOKENS)}")
    return cls(pad=index[PAD], unk=index[UNK], cls=index[CLS], sep=index[SEP], mask=index[MASK])

  def id_of(self, token: str) -> int:
    return {PAD: self.pad, UNK: self.unk, CLS: self.cls, SEP: self.sep, MASK: self.mask}[token]

  def all_ids(self) -> tuple[int, ...]:
    return tuple(self.id_of(t) for t in SPECIAL_TOKENS)

  @property
  def always_kept(self) -> tuple[int, ...]:
    return tuple(self.id_of(t) for t in ALWAYS_KEPT_TOKENS)

  @property
  def always_dropped(self) -> tuple[int, ...]:
    return tuple(self.id_of(t) for t in ALWAYS_DROPPED_TOKENS)

  @property
  def never_masked(self) -> tuple[int, ...]:
    return tuple(self.id_of(t) for t in NEVER_MASKED_TOKENS)


# --- Artifact layout -----------------------------------------------------------------------
VOCAB_FILE = "vocab.txt"
# Prepared data (components/tokenize_pack): OUT/{train,validation}/examples-*.tfrecord.gz.
SPLITS = ("train", "validation")
DATA_STATS_FILE = "stats.json"
# What the examples are (trainer/data_spec.py), in the directory above the split directories.
DATA_SPEC_FILE = "data_spec.json"
SHARD_PREFIX = "examples"
SHARD_SUFFIX = ".tfrecord.gz"


def shard_name(shard: int, num_shards: int) -> str:
  """tf-models' pretrain dataloader globs these: examples-00003-of-00016.tfrecord.gz."""
  return f"{SHARD_PREFIX}-{shard:05d}-of-{num_shards:05d}{SHARD_SUFFIX}"


# A training run's model_dir.
EVAL_METRICS_FILE = "eval_metrics.json"
AS_TRAINED_SUFFIX = "_as_trained"  # metrics scored with the run's own token dropping
# run_fn's custom_config key for a model_dir outside the task's outputs (trainer/run_fn.py),
# and the file in the ModelRun that then names the model_dir.
CHECKPOINT_ROOT_KEY = "checkpoint_root"
MODEL_DIR_FILE = "model_dir.txt"
# An export (`tokendrop export`, the Trainer's serving_model_dir).
SERVING_SUBDIR = "Format-Serving"  # where the TFX Trainer puts serving_model_dir
TF2_DIR = "tf2"
HF_DIR = "hf"
SAVED_MODEL_DIR = "saved_model"
CHECKPOINT_NAME = "bert_model.ckpt"
BERT_CONFIG_FILE = "bert_config.json"
TOKEN_IMPORTANCE_FILE = "token_importance.npy"
TRAINING_PARAMS_FILE = "training_params.yaml"  # the run's params.yaml, for the model card
# The GLUE evaluation and the published version.
GLUE_REPORT_JSON = "glue_report.json"
GLUE_REPORT_MD = "glue_report.md"
GLUE_REPORT_PNG = "glue_report.png"
MODEL_CARD_MD = "model_card.md"
MODEL_CARD_JSON = "model_card.json"

# --- What each stage records on its output artifacts ---------------------------------------
# Custom properties (in ML Metadata; on Vertex, the artifact's metadata), set by the component
# that writes the artifact and read by name by whoever shows a run (the operator console's key
# figures). Counts are ints, ratios and losses floats. Where TFX has a name, it is TFX's:
# ExampleGen's span, the Evaluator's blessed (which latest-blessed-model resolvers match) and
# blessing_message, the Pusher's pushed, pushed_destination and pushed_version.
# CorpusGen's Examples.
SPAN = "span"
DOCUMENTS_WRITTEN = "documents_written"  # one Example a document (or a piece of a long one)
# TokenizePack's statistics; its stats.json holds every count.
DOCUMENTS_READ = "documents_read"
DOCUMENTS_KEPT = "documents_kept"
DOCUMENTS_DROPPED = "documents_dropped"
EXAMPLES_TRAIN = "examples_train"
EXAMPLES_VALIDATION = "examples_validation"
TOKENS = "tokens"
PACKING_EFFICIENCY = "packing_efficiency"  # real positions / all positions of the examples
# The Trainer's Model: the run's length and its last validation (the losses are named as in
# EVAL_METRICS_FILE).
TRAIN_STEPS = "train_steps"
# The pipeline (config name) whose run made a Model or a ModelBlessing: warm starts and
# baselines come only from the same pipeline (pipelines/vertex_runner.py scopes Vertex's
# latest-blessed-model query by it; the Trainer and GlueEvaluator refuse a foreign one).
PIPELINE_NAME = "pipeline_name"
# The span of the examples a Model was trained on (CorpusGen's span, which TokenizePack
# copies), and, for a run that did not train because the latest blessed model was trained on
# that span already, why (a Model with TRAINING_SKIPPED has no export; GlueEvaluator does not
# evaluate it and the Pusher does not publish it).
TRAINED_SPAN = "trained_span"
TRAINING_SKIPPED = "training_skipped"
# run_fn's custom_config keys for a warm-started run (trainer/run_fn.py), and the Trainer
# executors' (components/pretrain/executor.py).
CONTINUE_STEPS_KEY = "continue_steps"
RETRAIN_SAME_SPAN_KEY = "retrain_same_span"
VALIDATION_STEP = "validation_step"
VALIDATION_LOSS = "validation_loss"  # at full depth, as fine-tuning uses the encoder
VALIDATION_LOSS_AS_TRAINED = VALIDATION_LOSS + AS_TRAINED_SUFFIX
# GlueEvaluator's evaluation (GLUE_SCORE) and blessing (all three).
GLUE_SCORE = "glue_score"
BLESSED = "blessed"  # 1 or 0
BLESSING_MESSAGE = "blessing_message"  # why the model was blessed or not
# BertPusher's pushed_model.
PUSHED = "pushed"  # 1 or 0
PUSHED_DESTINATION = "pushed_destination"
PUSHED_VERSION = "pushed_version"
NOT_PUSHED_REASON = "not_pushed_reason"

# Log records that report progress with an ETA (training, GLUE fine-tuning) start with this;
# the operator console (pipelines/console.py) shows them, throttled.
PROGRESS_PREFIX = "progress: "
