"""`tokendrop pipeline plan`: each stage's work, machine, hours and cost, with and without token
dropping, from the config and configs/plan_assumptions.yaml; and the refusal of a stage that
cannot finish within its service's limit, by plan, compile, submit and schedule."""

import pytest

from components.glue_eval import data as glue_data
from components.glue_eval import finetune, tasks
from pipelines import cli, plan
from pipelines import config as config_lib
from trainer import flops

PRODUCTION = "configs/pipeline_vertex_base_tpu.yaml"
LOCAL = "configs/pipeline_local_tiny.yaml"


@pytest.fixture(scope="module")
def production():
  config = config_lib.load(PRODUCTION)
  return config, plan.make_plan(config)


def one_line_error(err: str) -> str:
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  return lines[0]


def _row(run_plan, stage):
  (row,) = [row for row in run_plan.rows if row.stage == stage]
  return row


def test_training_hours_follow_the_keep_schedule_the_accelerator_and_the_assumed_utilization(
    production):
  config, run_plan = production
  assumptions = run_plan.assumptions
  params = config_lib.check_training(config.training, config.data)
  dropping = flops.run_flops(params, config.training.train_steps).total
  bert = flops.run_flops(flops.without_dropping(params), config.training.train_steps).total
  # 12 layers, 6 of them on 256 of 512 tokens: dropping saves a fifth or more.
  assert 0.6 < dropping / bert < 0.8
  job = config.training.vertex
  rate = (assumptions.get("accelerators", job.accelerator_type, "peak_flops_per_unit")
          * job.accelerator_count * assumptions.get("utilization", "pretraining"))
  price = (assumptions.get("accelerators", job.accelerator_type, "dollars_per_unit_hour")
           * job.accelerator_count)
  row = _row(run_plan, "Trainer")
  assert row.first.hours == pytest.approx(dropping / rate / 3600)
  assert row.first_bert.hours == pytest.approx(bert / rate / 3600)
  assert row.first.dollars == pytest.approx(row.first.hours * price)
  # A scheduled run continues for continue_steps.
  assert row.scheduled.hours == pytest.approx(
      row.first.hours * config.training.continue_steps / config.training.train_steps)
  assert row.limit_hours == config.training.vertex.timeout_hours
  assert row.first.hours < row.limit_hours < row.first_bert.hours * 1.5


def test_each_glue_task_is_its_examples_times_the_recipe_on_the_glue_accelerator(production):
  config, run_plan = production
  recipe = finetune.FineTuneConfig.from_dict(config.glue.finetune)
  params = config_lib.check_training(config.training, config.data)
  glue_rows = [row for row in run_plan.rows if row.stage.startswith(plan.GLUE_STAGE)]
  assert [row.stage for row in glue_rows] == [
      f"{plan.GLUE_STAGE}: {name}" for name in config.glue.tasks.split(",")]
  mnli = tasks.get_task("MNLI")
  forward = 12 * flops.layer_flops(128, 128, 768, 3072)
  expected = 9 * forward * (3 * 392_702 * 3 + 9_815 + 9_832)
  assert plan.finetune_flops(mnli, recipe, params) == pytest.approx(expected)
  # About 2e18 FLOPs for the 8 tasks' 27 runs of 3 epochs (the issue's arithmetic).
  total = sum(plan.finetune_flops(tasks.get_task(n), recipe, params)
              for n in config.glue.tasks.split(","))
  assert 1.5e18 < total < 2.5e18
  # On the TPU custom jobs, MNLI, the longest, takes hours; the tasks run at once.
  longest = max(glue_rows, key=lambda row: row.first.hours)
  assert longest.stage.endswith("MNLI") and 0.5 < longest.first.hours < 24
  assert run_plan.glue_parallel
  assert run_plan.total("first").hours == pytest.approx(
      sum(r.first.hours for r in run_plan.rows if not r.stage.startswith(plan.GLUE_STAGE))
      + longest.first.hours)
  # Fine-tuning is the same either way: the checkpoint is an ordinary BERT's.
  assert all(row.first == row.first_bert for row in glue_rows)
  assert run_plan.over_limit() == []


def test_the_packaged_tasks_sizes_are_what_the_reader_reads():
  read = glue_data.read_task(tasks.get_task("rt_sst2"), None, None)
  assert (tasks.ROTTEN_TOMATOES.train_examples, tasks.ROTTEN_TOMATOES.dev_examples) == (
      len(read.train.examples), sum(len(d.examples) for d in read.dev.values()))
  assert sum(tasks.get_task(n).train_examples for n in (
      "CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE")) == 949_098


def test_plan_prints_one_table_with_both_columns_for_the_production_config(capfd):
  assert cli.main(["pipeline", "plan", "--config", PRODUCTION]) == 0
  out = capfd.readouterr().out
  assert "| Stage | Work | Machine | First run | Scheduled run | First run, BERT |" in out
  for stage in ("CorpusGen + TokenizePack", "Trainer", "GlueEvaluator: MNLI", "**Total**"):
    assert f"| {stage}" in out
  assert "cloud-tpu, 8 x TPU_V3" in out and "Dataflow, up to 50 x n2-standard-8" in out
  assert "configs/plan_assumptions.yaml, dated 2026-12-02" in out


def test_glue_without_an_accelerator_on_vertex_is_refused_by_plan_and_compile(capsys, tmp_path):
  no_accelerator = ["--config", PRODUCTION, "--set", "glue.vertex=null", "--set",
                    "glue.runtime={}"]
  assert cli.main(["pipeline", "plan", *no_accelerator]) == 2
  error = one_line_error(capsys.readouterr().err)
  assert error.startswith("tokendrop pipeline: GlueEvaluator (8 tasks in one process) would take ")
  assert "(4 vCPUs, no accelerator), over the 168 h of a Vertex pipeline task's run time; " \
         "set glue.vertex" in error
  output = tmp_path / "pipeline.json"
  assert cli.main(["pipeline", "compile", *no_accelerator, "--output", str(output)]) == 2
  assert "--allow-long compiles it anyway" in capsys.readouterr().err
  assert not output.exists()
  assert cli.main(["pipeline", "compile", *no_accelerator, "--output", str(output),
                   "--allow-long"]) == 0
  assert output.exists()


def test_training_longer_than_its_jobs_timeout_is_refused(capsys):
  assert cli.main(["pipeline", "plan", "--config", PRODUCTION, "--set",
                   "training.train_steps=2000000"]) == 2
  error = one_line_error(capsys.readouterr().err)
  assert error.startswith("tokendrop pipeline: Trainer would take ")
  assert "over the 168 h of the custom job's scheduling.timeout (configured)" in error


def test_a_local_config_plans_on_this_machine_without_limits():
  run_plan = plan.make_plan(config_lib.load(LOCAL))
  assert run_plan.over_limit() == []
  assert all(row.limit_hours is None for row in run_plan.rows)
  assert all(row.first.dollars == 0 for row in run_plan.rows)


def _leaves(node, path=()):
  if isinstance(node, dict) and "value" in node:
    yield path, node
  elif isinstance(node, dict):
    for key, child in node.items():
      yield from _leaves(child, (*path, key))


def test_every_assumption_has_a_number_and_a_source_and_says_when_it_is_assumed():
  assumptions = plan.Assumptions()
  assert assumptions.date == "2026-12-02"
  leaves = dict(_leaves(assumptions.values))
  assert len(leaves) > 15
  for path, leaf in leaves.items():
    assert leaf.get("source"), path
    if path[-1] != "pipeline_task_machine":
      # YAML 1.1 reads 1.15e11 as a string: every figure must load as a number.
      assert isinstance(leaf["value"], int | float), (path, leaf["value"])
  assert all("ASSUMED" in leaves["utilization", name]["source"]
             for name in ("pretraining", "finetuning"))
  assert "bench/finetune_throughput.py" in leaves[
      "measured", "cpu_training_flops_per_core_second"]["source"]


def test_a_corpus_that_cannot_be_listed_needs_its_size():
  config = config_lib.load(PRODUCTION, {"corpus": {"span_bytes": 0}})
  with pytest.raises(config_lib.UserError, match=r"set corpus.span_bytes"):
    plan.make_plan(config)


def test_a_local_corpus_is_measured_as_tfx_finds_its_newest_span(tmp_path):
  for span, sizes in ((1, (10, 20)), (2, (300, 4000))):
    directory = tmp_path / f"span-{span}"
    directory.mkdir()
    for i, size in enumerate(sizes):
      (directory / f"part-{i}.txt").write_bytes(b"x" * size)
  config = config_lib.load(LOCAL, {"corpus": {"input_base": str(tmp_path), "packaged": "",
                                              "file_pattern": "span-{SPAN}/*.txt"}})
  assert plan.corpus_bytes(config) == (4300, "span 2, 2 files")
