"""The Vertex custom jobs that the production config's GlueEvaluator would start, one per task.

The GlueEvaluator task of the compiled Vertex JSON runs components.glue_eval.component.Executor
with glue.vertex's job in its parameters. Here that executor runs with the task's parameters
from the compiled spec, down to the aiplatform JobServiceClient that TFX's job client
constructs, which is replaced by a recorder: the test checks every CustomJob request Vertex
would receive (worker pool, accelerator, image, command), and that the report gathers what
each job's worker wrote. Nothing reaches the network.
"""

import json
import pathlib

import pytest
from google.cloud.aiplatform import gapic
from google.cloud.aiplatform_v1.types.custom_job import CustomJob
from google.cloud.aiplatform_v1.types.job_state import JobState
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

from components.glue_eval import component as glue_component
from components.glue_eval import job as glue_job
from components.glue_eval import jobs as glue_jobs
from pipelines import config as config_lib
from pipelines import vertex_runner
from trainer import contract

CONFIG = "configs/pipeline_vertex_base_tpu.yaml"


def _flag(command: list[str], name: str) -> str:
  return command[command.index(name) + 1]


def _entry(task: str) -> dict:
  """What a job's worker writes for `task` (report.task_entry's shape); its score is fixed by
  the task's name, so the report's GLUE score is known."""
  score = 0.5 + len(task) / 100
  return {"display_name": task, "metrics": {"accuracy": score}, "score": score,
          "best_learning_rate": 3e-5, "train_size": 100, "dev_sizes": {"dev": 10},
          "sources": {"train": f"gs://glue/{task}/train.tsv"}, "malformed_rows": {"train": 0},
          "malformed_examples": {}, "seeds": [{"seed": 1, "metrics": {"accuracy": score},
                                               "score": score}],
          "runs": [{"learning_rate": 3e-5, "seed": 1, "metrics": {"accuracy": score},
                    "score": score}]}


class RecordingJobServiceClient:
  """Records what the executor sends. A job's worker writes its task's entry, and the job
  succeeds, unless its task is in `failing`."""

  requests: list = []
  failing: set = set()

  def __init__(self, client_options=None, **kwargs):
    self.requests.append(("client", client_options, kwargs))

  def create_custom_job(self, parent=None, custom_job=None):
    self.requests.append(("create_custom_job", parent, custom_job))
    command = custom_job["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"]
    task = _flag(command, "--task")
    if task not in self.failing:
      path = pathlib.Path(glue_job.entry_path(_flag(command, "--output_dir"), task))
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text(json.dumps(_entry(task)))
    return CustomJob(name=f"{parent}/customJobs/{task}-42")

  def get_custom_job(self, name=None, retry=None):
    failed = any(name.endswith(f"/{task}-42") for task in self.failing)
    return CustomJob(name=name, state=JobState.JOB_STATE_FAILED if failed else
                     JobState.JOB_STATE_SUCCEEDED)


@pytest.fixture(scope="module")
def glue_task(tmp_path_factory):
  """The GlueEvaluator's executor args and parameters in the compiled Vertex JSON."""
  output = tmp_path_factory.mktemp("vertex") / "pipeline.json"
  vertex_runner.compile_pipeline(config_lib.load(CONFIG), str(output))
  spec = json.loads(output.read_text())["pipelineSpec"]
  task = spec["root"]["dag"]["tasks"]["GlueEvaluator"]
  parameters = {name: next(iter(value["runtimeValue"]["constantValue"].values()))
                for name, value in task["inputs"]["parameters"].items()}
  args = spec["deploymentSpec"]["executors"]["GlueEvaluator_executor"]["container"]["args"]
  return args, parameters


def _artifact(cls, uri):
  artifact = cls()
  artifact.uri = uri
  return artifact


def _model(tmp_path: pathlib.Path) -> standard_artifacts.Model:
  """A Model whose export holds what the evaluator checks before starting the jobs."""
  tf2 = tmp_path / "Trainer" / "model" / contract.SERVING_SUBDIR / contract.TF2_DIR
  tf2.mkdir(parents=True)
  (tf2 / contract.BERT_CONFIG_FILE).write_text(json.dumps({"max_position_embeddings": 512}))
  (tf2 / contract.VOCAB_FILE).write_text("[PAD]\n")
  (tf2 / f"{contract.CHECKPOINT_NAME}.index").write_bytes(b"")
  return _artifact(standard_artifacts.Model, str(tf2.parents[1]))


def _evaluate(glue_task, monkeypatch, tmp_path, failing=()):
  args, parameters = glue_task
  assert args[:2] == ["--executor_class_path", "components.glue_eval.component.Executor"]
  RecordingJobServiceClient.requests = []
  RecordingJobServiceClient.failing = set(failing)
  monkeypatch.setattr(gapic, "JobServiceClient", RecordingJobServiceClient)
  model = _model(tmp_path)
  evaluation = _artifact(standard_artifacts.ModelEvaluation, str(tmp_path / "evaluation"))
  blessing = _artifact(standard_artifacts.ModelBlessing, str(tmp_path / "blessing"))
  executor = glue_component.Executor(base_beam_executor.BaseBeamExecutor.Context(
      tmp_dir=str(tmp_path / "tmp"), unique_id="GlueEvaluator"))
  executor.Do({"model": [model]}, {"evaluation": [evaluation], "blessing": [blessing]},
              dict(parameters))
  return RecordingJobServiceClient.requests, model, evaluation, blessing


@pytest.fixture
def sent(glue_task, monkeypatch, tmp_path):
  return _evaluate(glue_task, monkeypatch, tmp_path)


def _created(requests) -> dict[str, tuple[str, dict]]:
  jobs = {}
  for kind, parent, job in requests:
    if kind == "create_custom_job":
      command = job["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"]
      jobs[_flag(command, "--task")] = (parent, job)
  return jobs


def test_one_custom_job_per_task_goes_to_the_configured_project_and_region(sent):
  requests, *_ = sent
  config = config_lib.load(CONFIG)
  created = _created(requests)
  assert list(created) != [] and sorted(created) == sorted(config.glue.tasks.split(","))
  assert {parent for parent, _ in created.values()} == {
      "projects/my-project/locations/us-central1"}
  endpoints = {r[1]["api_endpoint"] for r in requests if r[0] == "client"}
  assert endpoints == {"us-central1-aiplatform.googleapis.com"}
  names = [job["display_name"] for _, job in created.values()]
  assert len(set(names)) == len(names)
  assert all(name.startswith(f"{config.name}-glue-") for name in names)


def test_each_job_is_one_tpu_v3_8_worker_running_the_training_image(sent):
  requests, *_ = sent
  config = config_lib.load(CONFIG)
  for _, job in _created(requests).values():
    (pool,) = job["job_spec"]["worker_pool_specs"]
    assert pool["machine_spec"] == {"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3",
                                    "accelerator_count": 8}
    assert pool["replica_count"] == 1
    assert pool["container_spec"]["image_uri"] == config.glue.vertex.image
    assert config.glue.vertex.image == config.training.vertex.image  # the TPU build of TF
    assert job["job_spec"]["scheduling"] == {"restart_job_on_worker_restart": True,
                                             "timeout": f"{24 * 3600}s"}


def test_each_job_runs_the_glue_job_command_for_its_task_under_the_tpu_runtime(sent):
  requests, model, evaluation, _ = sent
  config = config_lib.load(CONFIG)
  for task, (_, job) in _created(requests).items():
    command = job["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"]
    assert command[:3] == ["python", "-m", "components.glue_eval.job"]
    assert _flag(command, "--checkpoint") == f"{model.uri}/{contract.SERVING_SUBDIR}/tf2"
    assert _flag(command, "--output_dir") == evaluation.uri
    assert _flag(command, "--glue_dir") == config.glue.glue_dir
    assert json.loads(_flag(command, "--runtime")) == {
        "distribution_strategy": "tpu", "tpu": "local", "mixed_precision_dtype": "bfloat16"}
    recipe = json.loads(_flag(command, "--finetune_config"))
    assert {key: recipe[key] for key in config.glue.finetune} == config.glue.finetune
    assert _flag(command, "--lower_case") == "1"
    # The command parses as the job's own command line.
    assert glue_job._parser().parse_args(command[3:]).task == task  # noqa: SLF001


def test_the_report_gathers_every_jobs_entry_and_blesses_as_before(sent):
  _, _, evaluation, blessing = sent
  config = config_lib.load(CONFIG)
  task_names = config.glue.tasks.split(",")
  report = json.loads((pathlib.Path(evaluation.uri) / contract.GLUE_REPORT_JSON).read_text())
  assert list(report["tasks"]) == task_names  # the config's order, whatever order jobs end in
  assert report["tasks"]["MNLI"] == _entry("MNLI")
  expected = sum(_entry(task)["score"] for task in task_names) / len(task_names)
  assert report["glue_score"] == pytest.approx(expected)
  assert sorted(report["runtime"]["jobs"]) == sorted(task_names)
  assert evaluation.get_float_custom_property(contract.GLUE_SCORE) == pytest.approx(expected)
  # 0.5 + 4/100 or so per task: under the 0.78 threshold.
  assert blessing.get_int_custom_property("blessed") == 0
  assert (pathlib.Path(blessing.uri) / "NOT_BLESSED").exists()


def test_a_failed_job_is_an_error_naming_its_task_and_job_after_the_others_end(
    glue_task, monkeypatch, tmp_path):
  with pytest.raises(glue_jobs.JobsFailed) as error:
    _evaluate(glue_task, monkeypatch, tmp_path, failing={"QQP", "RTE"})
  message = str(error.value)
  assert message.startswith("2 of 8 GLUE job(s) failed: task QQP: Vertex job "
                            "'tokendrop-bert-base-glue-qqp-")
  assert "projects/my-project/locations/us-central1/customJobs/QQP-42" in message
  assert "; task RTE: Vertex job 'tokendrop-bert-base-glue-rte-" in message
  # Every job was submitted; none of the others was abandoned.
  assert len(_created(RecordingJobServiceClient.requests)) == 8
  assert not (tmp_path / "blessing").exists()
