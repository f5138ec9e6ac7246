"""The record a data stage writes next to its examples; the trainer's data config derives from it.

`tokendrop prepare-data` and the TokenizePack component (both through
components/tokenize_pack/pipeline.py) write DataSpec as contract.DATA_SPEC_FILE in the
directory above their split directories:

    OUT/data_spec.json, OUT/train/examples-*.tfrecord.gz, OUT/validation/...
    <Examples uri>/data_spec.json, <Examples uri>/Split-train/..., .../Split-validation/...

The trainer finds it from `task.train_data.input_path` (and validation_data's): in the
matched files' directory or its parent. What the data decides, the data's record says:
`build_experiment` (trainer/configs.py) fills each split's loader keys from it, so the
seed's YAMLs read our data with only paths given, and refuses an explicit override that
contradicts it (`check`).
"""

import dataclasses
import hashlib
import json
import math
import os

import tensorflow as tf
from absl import logging

from trainer import contract, vocab
from trainer.errors import UserError

STATIC, DYNAMIC = "static", "dynamic"
# static: tf-models' masked-LM features, masked once by the data stage; dynamic: packed,
# unmasked sequences that the trainer masks on the fly (trainer/data.py).
MASKINGS = (STATIC, DYNAMIC)
# Model Garden's file_type names (official.common.dataset_fn.pick_dataset_fn); the data stage
# writes gzip TFRecords (contract.SHARD_SUFFIX).
GZIP_FILE_TYPE = "tfrecord_compressed"
FILE_TYPES = ("tfrecord", GZIP_FILE_TYPE)
# The task.train_data / task.validation_data configs the data decides.
DATA_CONFIGS = ("train_data", "validation_data")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSpec:
  """What the examples are: the loader options that read them, and the text side that made them.

  The vocab fields are None in a spec made from data options before the data exists (the
  pipeline's compile-time check); a data stage's record always has them.
  """
  masking: str
  file_type: str
  seq_length: int
  max_predictions_per_seq: int
  mask_rate: float
  # Whether the examples carry next_sentence_labels (packing sentence_pairs).
  next_sentence_labels: bool
  lower_case: bool
  vocab_size: int | None = None
  vocab_sha256: str | None = None
  # Where the data stage wrote its vocab: where the trainer looks when task.vocab_file is
  # empty. Two copies of the same data may name two places.
  vocab_file: str | None = dataclasses.field(default=None, compare=False)
  # Where this spec came from, for messages; not part of the record.
  source: str = dataclasses.field(default="", compare=False)

  def __post_init__(self):
    problems = []
    if self.masking not in MASKINGS:
      problems.append(f"masking must be one of {list(MASKINGS)}, got {self.masking!r}")
    if self.file_type not in FILE_TYPES:
      problems.append(f"file_type must be one of {list(FILE_TYPES)}, got {self.file_type!r}")
    if not 1 <= self.max_predictions_per_seq <= self.seq_length:
      problems.append(f"max_predictions_per_seq {self.max_predictions_per_seq} is not in "
                      f"[1, seq_length {self.seq_length}]")
    if self.next_sentence_labels and self.masking == DYNAMIC:
      problems.append("dynamic masking reads packed sequences, which carry no next-sentence "
                      "labels")
    if problems:
      where = f"{self.source}: " if self.source else ""
      raise UserError(f"{where}invalid data spec: " + "; ".join(problems))

  def loader_values(self) -> dict:
    """The keys of task.train_data / task.validation_data that this data decides."""
    values = {
        "masking": self.masking,
        "file_type": self.file_type,
        "seq_length": self.seq_length,
        "max_predictions_per_seq": self.max_predictions_per_seq,
        "mask_rate": self.mask_rate,
        # The writer names features as contract.py does: Model Garden's v2 names.
        "use_v2_feature_names": True,
    }
    # Labels that are there may be read or not (that is the model's choice: an NSP head);
    # labels that are not there cannot be read.
    if not self.next_sentence_labels:
      values["use_next_sentence_label"] = False
    return values

  def to_json(self) -> str:
    record = dataclasses.asdict(self)
    del record["source"]
    return json.dumps(record, indent=1, sort_keys=True) + "\n"

  @classmethod
  def from_json(cls, text: str, source: str) -> "DataSpec":
    try:
      record = json.loads(text)
    except ValueError as e:
      raise UserError(f"{source} is not JSON ({e}); re-run prepare-data") from None
    names = {f.name for f in dataclasses.fields(cls)} - {"source"}
    if not isinstance(record, dict) or set(record) != names:
      got = sorted(record) if isinstance(record, dict) else type(record).__name__
      raise UserError(f"{source} is not a data spec: it has {got}, a data spec has "
                      f"{sorted(names)}; re-run prepare-data")
    return cls(**record, source=source)

  def write(self, directory: str) -> str:
    """Writes contract.DATA_SPEC_FILE in `directory` (local or gs://); returns its path."""
    path = os.path.join(directory, contract.DATA_SPEC_FILE)
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(path, "w") as f:
      f.write(self.to_json())
    return path

  @classmethod
  def read(cls, path: str) -> "DataSpec":
    with tf.io.gfile.GFile(path, "r") as f:
      return cls.from_json(f.read(), source=path)


def vocab_sha256(tokens: list[str]) -> str:
  """The vocab's identity: its tokens in id order, whatever the file's line endings."""
  return hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def find(patterns: list[str], what: str) -> DataSpec | None:
  """The spec of the data that the glob `patterns` match, or None.

  Each matched file's directory and its parent are looked in. Data from several places must
  have equal specs; files with a spec and files without cannot be mixed (one loader config
  reads them all). Raises UserError naming `what` (e.g. task.train_data.input_path).
  """
  files = []
  for pattern in patterns:
    try:
      matched = tf.io.gfile.glob(pattern)
    except tf.errors.OpError as e:
      raise UserError(f"{what}: cannot list {pattern!r}: {e.message}") from None
    if not matched:
      # Said here, before a loader would: which loader reads the files depends on the spec.
      raise UserError(f"{what} pattern {pattern!r} matches no files; set it to the data's "
                      f"TFRecords, e.g. --params_override={what}=/data/train/*.tfrecord.gz")
    files += matched
  directories = sorted({os.path.dirname(file) for file in files})
  found, without = {}, []
  for directory in directories:
    for candidate in (directory, os.path.dirname(directory)):
      path = os.path.join(candidate, contract.DATA_SPEC_FILE)
      if tf.io.gfile.exists(path):
        found.setdefault(path, DataSpec.read(path))
        break
    else:
      without.append(directory)
  if not found:
    return None
  if without:
    raise UserError(f"{what} mixes data with a {contract.DATA_SPEC_FILE} ({sorted(found)[0]}) "
                    f"and files without one (in {without[0]}); one loader config reads them "
                    "all, so make each part with prepare-data or pass them separately")
  specs = list(found.values())
  for spec in specs[1:]:
    if spec != specs[0]:
      raise UserError(f"{what} mixes data written with different options: {specs[0].source} "
                      f"and {spec.source} differ; pass data made with the same options")
  return specs[0]


def fill(params, specs: dict[str, DataSpec]) -> None:
  """Sets each data config's loader keys (task.<name> for name in `specs`) from its spec.

  `params` is an ExperimentConfig; values the config files set otherwise are logged as they
  yield.
  """
  for name, spec in specs.items():
    data_config = getattr(params.task, name)
    for key, value in spec.loader_values().items():
      if getattr(data_config, key) != value:
        logging.info("task.%s.%s: %r -> %r, as the data's record says (%s)", name, key,
                     getattr(data_config, key), value, spec.source)
    data_config.override(spec.loader_values(), is_strict=True)


def check(params, specs: dict[str, DataSpec]) -> None:
  """Refuses a config that contradicts the data; fills task.vocab_file when it is empty.

  Raises UserError naming the key, both values and the spec's source.
  """
  for name, spec in specs.items():
    data_config = getattr(params.task, name)
    for key, expected in spec.loader_values().items():
      actual = getattr(data_config, key)
      same = (math.isclose(actual, expected) if isinstance(expected, float)
              else actual == expected)
      if not same:
        raise UserError(
            f"task.{name}.{key} is {actual!r} but the data has {key} {expected!r} "
            f"({spec.source}); drop the override, or make the data with "
            f"{key} {actual!r} (tokendrop prepare-data, or the pipeline's data: section)")
  for spec in specs.values():
    _check_vocab(params.task, spec)


def _check_vocab(task, spec: DataSpec) -> None:
  if not task.vocab_file and spec.vocab_file and tf.io.gfile.exists(spec.vocab_file):
    task.vocab_file = spec.vocab_file
    logging.info("task.vocab_file: %s, as the data's record says (%s)", spec.vocab_file,
                 spec.source)
  if not task.vocab_file or spec.vocab_sha256 is None:
    return
  try:
    tokens = vocab.load_vocab(task.vocab_file)
  except (FileNotFoundError, ValueError) as e:
    raise UserError(f"task.vocab_file: {e}") from None
  if vocab_sha256(tokens) != spec.vocab_sha256:
    raise UserError(
        f"task.vocab_file {task.vocab_file} ({len(tokens)} tokens) is not the vocab the data "
        f"was written with ({spec.vocab_size} tokens, {spec.vocab_file}; {spec.source}); set "
        f"task.vocab_file to that vocab, or re-make the data with this one")
