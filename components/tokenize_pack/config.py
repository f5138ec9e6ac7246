"""The options of one data-preparation run, checked once, before any Beam work starts."""

import dataclasses
import math

from trainer import contract

FORMATS = ("text", "jsonl", "tfrecord_text")
PACKINGS = ("full_sentences", "document", "sentence_pairs")
MASKINGS = ("static", "dynamic")
SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class PrepareDataConfig:
  """Everything that decides the output bytes; the same config and input give the same files."""
  input_patterns: tuple[str, ...]
  output_dir: str
  seq_length: int = 512
  vocab_file: str | None = None
  learn_vocab_size: int | None = None
  special_tokens: tuple[str, ...] = contract.SPECIAL_TOKENS
  masking: str = "static"
  packing: str = "full_sentences"
  input_format: str = "text"
  text_field: str = "text"
  lower_case: bool = True
  max_predictions_per_seq: int | None = None  # ceil(seq_length * masked_lm_prob): 77 at 512
  masked_lm_prob: float = 0.15
  dupe_factor: int = 1
  whole_word_masking: bool = False
  short_seq_prob: float = 0.1
  validation_fraction: float = 0.01
  seed: int = 12345
  num_shards: int = 4
  max_document_chars: int = 1_000_000
  chunk_chars: int = 1_000_000
  write_transform_fn: bool = True
  # One directory per SPLITS entry, in that order; default OUT/train and OUT/validation.
  split_dirs: tuple[str, ...] | None = None

  def __post_init__(self):
    if self.max_predictions_per_seq is None:
      object.__setattr__(self, "max_predictions_per_seq",
                         max(1, math.ceil(self.seq_length * self.masked_lm_prob)))
    if self.split_dirs is None:
      object.__setattr__(self, "split_dirs",
                         tuple(join(self.output_dir, split) for split in SPLITS))
    problems = []
    if not self.input_patterns:
      problems.append("--input is empty; pass one or more glob patterns, comma-separated")
    if (self.vocab_file is None) == (self.learn_vocab_size is None):
      problems.append("pass exactly one of --vocab FILE or --learn_vocab_size N")
    if self.learn_vocab_size is not None and self.learn_vocab_size <= len(self.special_tokens):
      problems.append(f"--learn_vocab_size {self.learn_vocab_size} leaves no room beside the "
                      f"{len(self.special_tokens)} special tokens")
    missing = [t for t in contract.SPECIAL_TOKENS if t not in self.special_tokens]
    if missing:
      problems.append(f"--special_tokens lacks {missing}; every BERT vocab needs "
                      f"{list(contract.SPECIAL_TOKENS)}")
    if len(set(self.special_tokens)) != len(self.special_tokens):
      problems.append(f"--special_tokens repeats a token: {list(self.special_tokens)}")
    for name, value, allowed in (("--masking", self.masking, MASKINGS),
                                 ("--packing", self.packing, PACKINGS),
                                 ("--format", self.input_format, FORMATS)):
      if value not in allowed:
        problems.append(f"{name} must be one of {list(allowed)}, got {value!r}")
    if self.packing == "sentence_pairs" and self.masking == "dynamic":
      problems.append("--packing sentence_pairs makes next-sentence labels, which the dynamic "
                      "loader does not read; use --masking static")
    if self.seq_length < 8:
      problems.append(f"--seq_length must be at least 8, got {self.seq_length}")
    if not 1 <= self.max_predictions_per_seq <= self.seq_length:
      problems.append(f"--max_predictions_per_seq must be in [1, seq_length], got "
                      f"{self.max_predictions_per_seq}")
    if not 0.0 < self.masked_lm_prob <= 1.0:
      problems.append(f"--masked_lm_prob must be in (0, 1], got {self.masked_lm_prob}")
    if self.dupe_factor < 1:
      problems.append(f"--dupe_factor must be at least 1, got {self.dupe_factor}")
    if not 0.0 <= self.short_seq_prob <= 1.0:
      problems.append(f"--short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
    if not 0.0 <= self.validation_fraction < 1.0:
      problems.append(f"--validation_fraction must be in [0, 1), got {self.validation_fraction}")
    if self.num_shards < 1:
      problems.append(f"--num_shards must be at least 1, got {self.num_shards}")
    if self.max_document_chars < 100:
      problems.append(f"--max_document_chars must be at least 100, got {self.max_document_chars}")
    if self.chunk_chars < 1:
      problems.append(f"--chunk_chars must be at least 1, got {self.chunk_chars}")
    if self.input_format != "text" and not self.text_field:
      problems.append("--text_field is empty; name the JSON field (or tf.train.Example "
                      "feature) that holds the text")
    if len(self.split_dirs) != len(SPLITS) or len(set(self.split_dirs)) != len(SPLITS):
      problems.append(f"split_dirs must be {len(SPLITS)} distinct directories, one for each of "
                      f"{list(SPLITS)}, got {list(self.split_dirs)}")
    if problems:
      raise ValueError("invalid data-preparation config:\n  " + "\n  ".join(problems))

  @property
  def output_vocab_file(self) -> str:
    return join(self.output_dir, "vocab.txt")

  @property
  def staging_dir(self) -> str:
    return join(self.output_dir, ".staging")

  @property
  def split_dir_by_name(self) -> dict[str, str]:
    return dict(zip(SPLITS, self.split_dirs, strict=True))


def join(directory: str, *names: str) -> str:
  """Joins with '/', which every Beam filesystem (local, gs://) accepts."""
  return "/".join([directory.rstrip("/"), *names])


def shard_path(split_dir: str, shard: int, num_shards: int) -> str:
  return join(split_dir, f"examples-{shard:05d}-of-{num_shards:05d}.tfrecord.gz")
