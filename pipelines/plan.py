"""`tokendrop pipeline plan --config X`: what a configured run will take, before it runs.

One row per stage: the work (corpus bytes and sequences; training FLOPs from trainer.flops,
which follows the keep schedule; fine-tuning FLOPs per GLUE task from its example count and
the recipe), the machine it runs on, and the estimated hours and cost of the first run (the
full schedule) and of a scheduled run (a new span: training.continue_steps), each beside the
same run without token dropping (the experiment with token_selection none, as
token_drop_bert/baseline). Every number that is not in the config comes from one dated file,
configs/plan_assumptions.yaml, with its source: peak FLOP/s per accelerator, the assumed
utilization (an assumption, stated as one), list prices, and this machine's measured CPU
throughput (bench/data_pipeline.py, bench/finetune_throughput.py).

A stage that cannot finish within the limit of the service it runs on (a custom job's
scheduling.timeout, a pipeline task's run time) makes `plan` exit 2 with one line naming the
stage, its estimate, the limit and the fix; `compile`, `submit` and `schedule` refuse such a
config unless --allow-long is given.
"""

import dataclasses
import os

import yaml

from components.glue_eval import finetune, tasks
from pipelines.config import PipelineConfig
from trainer import flops
from trainer.errors import UserError, first_line

ASSUMPTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "plan_assumptions.yaml")
HOUR = 3600.0


class Assumptions:
  """configs/plan_assumptions.yaml: each leaf a mapping with `value` and `source`."""

  def __init__(self, path: str = ASSUMPTIONS):
    with open(path, encoding="utf-8") as f:
      self.values = yaml.safe_load(f)
    self.path = path
    self.date = str(self.values["date"])

  def get(self, *keys: str):
    node = self.values
    for key in keys:
      if not isinstance(node, dict) or key not in node:
        raise UserError(f"{self.path} has no {'.'.join(keys)}; add it with its source")
      node = node[key]
    value = node["value"] if isinstance(node, dict) and "value" in node else node
    if value is None:
      raise UserError(f"{self.path}: {'.'.join(keys)} has no value yet; add it with its source "
                      f"({node.get('source', 'none given')})")
    return value


@dataclasses.dataclass(frozen=True)
class Machine:
  """What a stage runs on: a name for the table, its throughput and its price."""
  name: str
  flops_per_second: float  # training FLOP/s this stage gets (peak x utilization, or measured)
  dollars_per_hour: float
  limit_hours: float | None  # the service's limit on one run of this stage (None: none)
  limit_what: str = ""


@dataclasses.dataclass(frozen=True)
class Cost:
  hours: float
  dollars: float


@dataclasses.dataclass(frozen=True)
class Row:
  stage: str
  work: str
  machine: str
  first: Cost  # the first run (full schedule), with token dropping
  scheduled: Cost  # a scheduled run on a new span
  first_bert: Cost  # the same without token dropping
  scheduled_bert: Cost
  limit_hours: float | None = None
  limit_what: str = ""
  fix: str = ""


GLUE_STAGE = "GlueEvaluator"


@dataclasses.dataclass(frozen=True)
class Plan:
  config_name: str
  assumptions: Assumptions
  rows: tuple[Row, ...]
  # GLUE's tasks run at once, one custom job each; otherwise one after the other in one task.
  glue_parallel: bool

  def over_limit(self) -> list[Row]:
    """The rows whose longest run exceeds their service's limit; GLUE in one process counts as
    one row, the sum of its tasks."""
    rows = [row for row in self.rows if self.glue_parallel or not row.stage.startswith(GLUE_STAGE)]
    glue = [row for row in self.rows if row.stage.startswith(GLUE_STAGE)]
    if glue and not self.glue_parallel:
      rows.append(dataclasses.replace(
          glue[0], stage=f"{GLUE_STAGE} ({len(glue)} tasks in one process)",
          first=Cost(sum(r.first.hours for r in glue), 0.0),
          scheduled=Cost(sum(r.scheduled.hours for r in glue), 0.0)))
    return [row for row in rows if row.limit_hours is not None and max(
        row.first.hours, row.scheduled.hours) > row.limit_hours]

  def total(self, attribute: str) -> Cost:
    """Hours: the stages one after the other, parallel GLUE jobs as their longest; dollars:
    everything."""
    glue = [getattr(r, attribute) for r in self.rows if r.stage.startswith(GLUE_STAGE)]
    other = [getattr(r, attribute) for r in self.rows if not r.stage.startswith(GLUE_STAGE)]
    glue_hours = (max((c.hours for c in glue), default=0.0) if self.glue_parallel
                  else sum(c.hours for c in glue))
    return Cost(sum(c.hours for c in other) + glue_hours, sum(c.dollars for c in other + glue))


def _hours(flop_count: float, machine: Machine) -> Cost:
  hours = flop_count / machine.flops_per_second / HOUR
  return Cost(hours, hours * machine.dollars_per_hour)


def _cpu_machine(name: str, vcpus: int, dollars_per_hour: float, assumptions: Assumptions,
                 limit_hours: float | None, limit_what: str) -> Machine:
  per_core = assumptions.get("measured", "cpu_training_flops_per_core_second")
  return Machine(f"{name} ({vcpus} vCPUs, no accelerator)", per_core * vcpus, dollars_per_hour,
                 limit_hours, limit_what)


def _accelerator_machine(job, assumptions: Assumptions, utilization: float) -> Machine:
  peak = float(assumptions.get("accelerators", job.accelerator_type, "peak_flops_per_unit")
                ) * job.accelerator_count
  price = float(assumptions.get("accelerators", job.accelerator_type, "dollars_per_unit_hour")
                ) * job.accelerator_count
  limit = job.timeout_hours or assumptions.get("limits", "custom_job_default_hours")
  return Machine(f"{job.machine_type}, {job.accelerator_count} x {job.accelerator_type}",
                 peak * utilization, price, float(limit),
                 "the custom job's scheduling.timeout "
                 f"({'configured' if job.timeout_hours else 'Vertex default'})")


def _local_machine(assumptions: Assumptions) -> Machine:
  cores = os.cpu_count() or 1
  return _cpu_machine("this machine", cores, 0.0, assumptions, None, "")


def _pipeline_task_machine(assumptions: Assumptions) -> Machine:
  machine = assumptions.get("limits", "pipeline_task_machine")
  return _cpu_machine(machine, int(assumptions.get("machines", machine, "vcpus")),
                      float(assumptions.get("machines", machine, "dollars_per_hour")), assumptions,
                      float(assumptions.get("limits", "pipeline_task_hours")),
                      "a Vertex pipeline task's run time")


def corpus_bytes(config: PipelineConfig) -> tuple[int | None, str]:
  """(bytes of one span, where the number comes from): corpus.span_bytes when set, else the
  newest span's files as TFX's ExampleGen finds them (its fingerprint's total_bytes), else
  None for a packaged corpus written at run time."""
  if config.corpus.span_bytes:
    return config.corpus.span_bytes, "corpus.span_bytes"
  if config.corpus.packaged:
    return None, f"corpus.packaged {config.corpus.packaged!r}"
  from tfx.components.example_gen import utils
  from tfx.proto import example_gen_pb2

  try:
    fingerprint, span, _ = utils.calculate_splits_fingerprint_span_and_version(
        config.corpus.input_base,
        [example_gen_pb2.Input.Split(name="corpus", pattern=config.corpus.file_pattern)])
  except Exception as e:  # noqa: BLE001  (gs:// without credentials, no span yet, ...)
    raise UserError(f"corpus.input_base {config.corpus.input_base!r} cannot be listed from "
                    f"here ({first_line(e)}); set corpus.span_bytes to the size of one span "
                    "for the plan") from None
  # TFX's fingerprint: split:NAME,num_files:N,total_bytes:B,xor_checksum:X,sum_checksum:S.
  fields = dict(part.split(":", 1) for part in fingerprint.split(","))
  return int(fields["total_bytes"]), f"span {span}, {fields['num_files']} files"


def _data_row(config: PipelineConfig, assumptions: Assumptions) -> Row:
  size, where = corpus_bytes(config)
  if size is None:  # a packaged corpus: its size is the assumption file's measurement
    size = int(assumptions.get("measured", "packaged_corpus_bytes"))
  megabytes = size / 1e6
  tokens = megabytes * assumptions.get("measured", "tokens_per_mb")
  sequences = tokens / config.data.seq_length
  cpu_seconds = megabytes / assumptions.get("measured", "data_prep_mb_per_cpu_second")
  from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, WorkerOptions

  options = PipelineOptions(config.beam_pipeline_args)
  runner = options.view_as(StandardOptions).runner or "DirectRunner"
  if runner == "DataflowRunner":
    worker = options.view_as(WorkerOptions)
    if not worker.machine_type:
      raise UserError("beam_pipeline_args set no --machine_type for Dataflow; the plan prices "
                      "the workers by it (e.g. --machine_type=n2-standard-8)")
    machine_type = worker.machine_type
    vcpus = int(assumptions.get("machines", machine_type, "vcpus"))
    memory = float(assumptions.get("machines", machine_type, "memory_gb"))
    workers = worker.max_num_workers or worker.num_workers or 1
    startup = assumptions.get("dataflow", "startup_hours")
    hours = cpu_seconds / (vcpus * workers) / HOUR + startup
    per_hour = workers * (vcpus * assumptions.get("dataflow", "dollars_per_vcpu_hour") +
                          memory * assumptions.get("dataflow", "dollars_per_gb_hour"))
    machine = f"Dataflow, up to {workers} x {machine_type}"
    cost = Cost(hours, hours * per_hour)
  else:
    cores = os.cpu_count() or 1
    hours = cpu_seconds / cores / HOUR
    machine = f"this machine, {runner} ({cores} cores)"
    cost = Cost(hours, 0.0)
  work = (f"{_si(size)}B of text ({where}), about {_si(sequences)} sequences of "
          f"{config.data.seq_length} tokens")
  return Row("CorpusGen + TokenizePack", work, machine, cost, cost, cost, cost)


def _training_row(config: PipelineConfig, assumptions: Assumptions, params) -> Row:
  steps = config.training.train_steps or params.trainer.train_steps
  continue_steps = config.training.continue_steps or steps
  dropping = flops.run_flops(params, steps)
  bert = flops.run_flops(flops.without_dropping(params), steps)
  if config.training.vertex is not None:
    machine = _accelerator_machine(config.training.vertex, assumptions,
                                   assumptions.get("utilization", "pretraining"))
    fix = ("fewer training.train_steps, a larger accelerator, or a longer "
           "training.vertex.timeout_hours")
  else:
    machine = _local_machine(assumptions)
    fix = ""
  # A continued run's FLOPs per step are the full run's mean (its schedule is the same, shorter).
  work = (f"{steps:,} steps, {dropping.total:.3g} FLOPs ({dropping.total / bert.total:.2f} of "
          f"BERT's {bert.total:.3g}); scheduled: {continue_steps:,} steps")
  return Row("Trainer", work, machine.name, _hours(dropping.total, machine),
             _hours(dropping.mean_step_flops * continue_steps, machine),
             _hours(bert.total, machine), _hours(bert.mean_step_flops * continue_steps, machine),
             machine.limit_hours, machine.limit_what, fix)


def finetune_flops(task: tasks.Task, recipe: finetune.FineTuneConfig, params) -> float:
  """Fine-tuning FLOPs of one task's grid: every (learning rate, seed) run trains `epochs`
  passes over the train split (3x the forward pass) and predicts the dev splits once (1x),
  through every layer at max_seq_length."""
  encoder = params.task.model.encoder.any
  length = recipe.max_seq_length
  forward = encoder.num_layers * flops.layer_flops(length, length, encoder.hidden_size,
                                                    encoder.intermediate_size)
  train = min(task.train_examples, recipe.max_train_examples or task.train_examples)
  runs = len(recipe.learning_rates) * len(recipe.seeds)
  return runs * forward * (3.0 * train * recipe.epochs + task.dev_examples)


def _glue_rows(config: PipelineConfig, assumptions: Assumptions, params) -> list[Row]:
  recipe = finetune.FineTuneConfig.from_dict(config.glue.finetune)
  task_list = tasks.parse_task_list(config.glue.tasks)
  if config.glue.vertex is not None:
    machine = _accelerator_machine(config.glue.vertex, assumptions,
                                   assumptions.get("utilization", "finetuning"))
    fix = "a larger glue.vertex accelerator, or a longer glue.vertex.timeout_hours"
  elif config.is_cloud:
    machine = _pipeline_task_machine(assumptions)
    fix = ("set glue.vertex (a TPU custom job per task, as configs/pipeline_vertex_base_tpu.yaml "
           "does)")
  else:
    machine = _local_machine(assumptions)
    fix = ""
  rows = []
  for task in task_list:
    count = finetune_flops(task, recipe, params)
    cost = _hours(count, machine)
    train = min(task.train_examples, recipe.max_train_examples or task.train_examples)
    work = (f"{train:,} x {recipe.epochs} epochs x {len(recipe.learning_rates)} lr x "
            f"{len(recipe.seeds)} seeds at {recipe.max_seq_length} tokens: {count:.3g} FLOPs")
    rows.append(Row(f"{GLUE_STAGE}: {task.display_name}", work, machine.name, cost, cost, cost,
                    cost, machine.limit_hours, machine.limit_what, fix))
  return rows


def make_plan(config: PipelineConfig, assumptions: Assumptions | None = None) -> Plan:
  from pipelines.config import check_training

  assumptions = assumptions or Assumptions()
  params = check_training(config.training, config.data)
  rows = [_data_row(config, assumptions), _training_row(config, assumptions, params),
          *_glue_rows(config, assumptions, params)]
  return Plan(config.name, assumptions, tuple(rows), glue_parallel=config.glue.vertex is not None)


def _si(value: float) -> str:
  for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
    if value >= factor:
      return f"{value / factor:.3g} {suffix}"
  return f"{value:.3g} "


def _cell(cost: Cost) -> str:
  if cost.hours < 0.01:
    hours = "<0.01 h"
  elif cost.hours >= 48:
    hours = f"{cost.hours:,.0f} h ({cost.hours / 24:,.1f} d)"
  else:
    hours = f"{cost.hours:.2f} h"
  return f"{hours}, ${cost.dollars:,.0f}"


def table(plan: Plan) -> str:
  """The plan as one Markdown table, its totals, and the assumptions file it used."""
  header = ["Stage", "Work", "Machine", "First run", "Scheduled run", "First run, BERT",
            "Scheduled run, BERT", "Limit"]
  lines = [f"Plan of {plan.config_name} (assumptions: {os.path.relpath(plan.assumptions.path)}, "
           f"dated {plan.assumptions.date}; hours and list-price USD)", "",
           "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  for row in plan.rows:
    limit = "-" if row.limit_hours is None else f"{row.limit_hours:,.0f} h"
    lines.append("| " + " | ".join([row.stage, row.work, row.machine, _cell(row.first),
                                    _cell(row.scheduled), _cell(row.first_bert),
                                    _cell(row.scheduled_bert), limit]) + " |")
  total = "**Total**" + (" (the GLUE jobs run at once)" if plan.glue_parallel else "")
  lines.append(f"| {total} | | | " + " | ".join(_cell(plan.total(a)) for a in (
      "first", "scheduled", "first_bert", "scheduled_bert")) + " | |")
  return "\n".join(lines) + "\n"


def check_limits(plan: Plan) -> None:
  """Raises UserError, one line, for the first stage over its service's limit."""
  for row in plan.over_limit():
    hours = max(row.first.hours, row.scheduled.hours)
    raise UserError(f"{row.stage} would take {hours:,.0f} h on {row.machine}, over the "
                    f"{row.limit_hours:,.0f} h of {row.limit_what}; {row.fix} "
                    "(`tokendrop pipeline plan` shows every stage)")
