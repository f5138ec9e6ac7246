"""The miniature GLUE directory: every production task's real files and labels, read back by
the same readers the real GLUE data goes through."""

import collections

from components.glue_eval import data, miniature, tasks

PRODUCTION_TASKS = "CoLA,SST-2,MRPC,STS-B,QQP,MNLI,QNLI,RTE"


def test_each_task_reads_back_with_its_splits_and_every_label(tmp_path):
  written = miniature.write_miniature_glue(f"{PRODUCTION_TASKS},rt_sst2", str(tmp_path))
  assert written == PRODUCTION_TASKS.split(",")  # rt_sst2 reads packaged text, not files
  for task in tasks.parse_task_list(PRODUCTION_TASKS):
    task_data = data.read_glue_dir(task, str(tmp_path))
    assert len(task_data.train.examples) == miniature.TRAIN_ROWS
    assert set(task_data.dev) == set(task.dev_splits)  # MNLI: matched and mismatched
    for split in (task_data.train, *task_data.dev.values()):
      assert split.malformed_rows == 0
      pair = task.layout.has_header and len(task.layout.text_columns) == 2
      assert all((e.text_b is not None) == pair for e in split.examples), task.name
    labels = [e.label for e in task_data.train.examples]
    if task.is_regression:
      assert all(isinstance(v, float) and 0.0 <= v <= 5.0 for v in labels)
      assert len(set(labels)) > 5
    else:
      assert set(labels) == set(range(task.num_classes)), (task.name, collections.Counter(labels))


def test_the_files_have_glues_headers_and_cola_has_none(tmp_path):
  miniature.write_miniature_glue(PRODUCTION_TASKS, str(tmp_path))
  first_lines = {path.relative_to(tmp_path).as_posix(): path.read_text().split("\n", 1)[0]
                 for path in tmp_path.glob("*/*.tsv")}
  assert first_lines["MRPC/train.tsv"] == "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
  assert first_lines["QQP/dev.tsv"] == "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
  assert first_lines["MNLI/dev_mismatched.tsv"].endswith("\tsentence1\tsentence2\tlabel1\t"
                                                         "gold_label")
  assert first_lines["CoLA/train.tsv"].split("\t")[:2] in (["rt", "0"], ["rt", "1"])


def test_an_existing_directory_is_left_alone(tmp_path):
  (tmp_path / "glue").mkdir()
  (tmp_path / "glue" / "mine").write_text("x")
  miniature.prepare_packaged_glue("miniature", PRODUCTION_TASKS, str(tmp_path / "glue"))
  assert [p.name for p in (tmp_path / "glue").iterdir()] == ["mine"]
  miniature.prepare_packaged_glue("", PRODUCTION_TASKS, str(tmp_path / "other"))
  assert not (tmp_path / "other").exists()
