"""The pipeline YAML: the shipped configs load, and every mistake names its key."""

import pytest

from pipelines import cli
from pipelines import config as config_lib
from trainer.errors import UserError

LOCAL = "configs/pipeline_local_tiny.yaml"
VERTEX = "configs/pipeline_vertex_base_tpu.yaml"


def test_shipped_configs_load_with_paths_resolved_against_the_checkout():
  local = config_lib.load(LOCAL)
  assert not local.is_cloud and local.root.endswith("/out/pipeline/root")
  assert local.root.startswith("/") and local.corpus.packaged == "imdb"
  assert local.training.config_files[-1] == "tiny_token_drop.yaml"
  vertex = config_lib.load(VERTEX)
  assert vertex.is_cloud and vertex.training.vertex.accelerator_type == "TPU_V3"
  assert "--runner=DataflowRunner" in vertex.beam_pipeline_args


def test_each_image_is_named_once_and_the_others_derive_from_it():
  tag = "europe-west4-docker.pkg.dev/p/r/tokendrop{}:abc1234"
  vertex = config_lib.load(VERTEX, {"vertex": {"image": tag.format(""),
                                               "service_account": "sa@p.iam.gserviceaccount.com"},
                                    "training": {"vertex": {"image": tag.format("-train")}}})
  assert "--service_account_email=sa@p.iam.gserviceaccount.com" in vertex.beam_pipeline_args
  # Dataflow's workers run the pipeline's image; GLUE's custom jobs the training image.
  assert [a for a in vertex.beam_pipeline_args if a.startswith("--sdk_container_image=")] == [
      "--sdk_container_image=" + tag.format("")]
  assert vertex.glue.vertex.image == tag.format("-train")
  # Either can still be named on its own.
  other = config_lib.load(VERTEX, {"glue": {"vertex": {"image": tag.format("-glue")}},
                                   "beam_pipeline_args": ["--runner=DataflowRunner",
                                                          "--sdk_container_image=x/y:z"]})
  assert other.glue.vertex.image == tag.format("-glue")
  assert [a for a in other.beam_pipeline_args if a.startswith("--sdk")] == [
      "--sdk_container_image=x/y:z"]
  # Beam's flag syntax, not one spelling of it: `--runner DataflowRunner` is Dataflow too.
  spaced = config_lib.load(VERTEX, {"beam_pipeline_args": ["--runner", "DataflowRunner"]})
  assert spaced.beam_pipeline_args[2:] == ["--sdk_container_image=" + spaced.vertex.image]


def test_overrides_from_the_command_line():
  overrides = cli.overrides_from_pairs(["training.train_steps=7", "glue.tasks=CoLA,RTE",
                                       "training.params_override.runtime.num_gpus=0"])
  config = config_lib.load(LOCAL, overrides)
  assert config.training.train_steps == 7 and config.glue.tasks == "CoLA,RTE"
  assert config.training.params_override == {"runtime": {"distribution_strategy": "one_device",
                                                         "num_gpus": 0}}


@pytest.mark.parametrize("overrides,message", [
    ({"trainig": {}}, "unknown key(s) ['trainig'] in pipeline_local_tiny"),
    ({"training": {"train_step": 3}}, "unknown key(s) ['train_step'] in "
     "pipeline_local_tiny.training"),
    ({"data": {"seq_length": "long"}}, "pipeline_local_tiny.data.seq_length must be int"),
    ({"push": {"destination": ""}}, "push.destination is empty"),
    ({"root": "gs://b/root"}, "root is on gs:// but there is no vertex: section"),
])
def test_mistakes_name_the_key(overrides, message):
  with pytest.raises(UserError, match=None) as error:
    config_lib.load(LOCAL, overrides)
  assert message in str(error.value)


LOCAL_MISTAKES = [
    (["--set", "data.masking=bogus"], "data: invalid data options: masking must be one of "
     "['static', 'dynamic'], got 'bogus'"),
    (["--set", "glue.tasks=SST2"], "glue.tasks: unknown task 'SST2'"),
    (["--set", "glue.finetune.learning_rate=0.1"],
     "glue.finetune: unknown fine-tuning setting(s) ['learning_rate']"),
    (["--set", "training.experiment=token_drop_bert/nope"],
     "training: unknown experiment 'token_drop_bert/nope'"),
    (["--set", "training.params_override.task.model.encoder.any.token_keep_kk=3"],
     "training: params_override does not fit the experiment config"),
    (["--set", "training.config_files=[nope.yaml]"], "training: config file 'nope.yaml' does "
     "not exist"),
    # Both shipped configs make dynamically masked data.
    (["--set", "training.params_override.task.train_data.masking=static"],
     "training: task.train_data.masking is 'static' but the data has masking 'dynamic' (the "
     "pipeline config's data: section); drop the override"),
]


def test_the_vertex_training_job_is_checked_against_the_vertex_api(capsys):
  assert cli.main(["pipeline", "compile", "--config", VERTEX, "--output", "x.json", "--set",
                   "training.vertex.accelerator_type=TPU_V9"]) == 2
  error = capsys.readouterr().err
  assert "training.vertex.accelerator_type 'TPU_V9' is not a Vertex accelerator" in error
  assert "'TPU_V3'" in error and "NVIDIA" not in error and error.count("\n") == 1


@pytest.mark.parametrize("overrides,message", [
    # A GPU: the training image has no CUDA libraries, so the job would train on the CPU.
    ({"accelerator_type": "NVIDIA_TESLA_V100", "machine_type": "n1-standard-8"},
     "training.vertex.accelerator_type 'NVIDIA_TESLA_V100' is not a TPU type that Vertex "
     "trains TensorFlow on; the training image has TensorFlow for TPU VMs and no CUDA "
     "libraries, so choose from ['TPU_V2', 'TPU_V3', 'TPU_V4_POD', 'TPU_V5_LITEPOD']"),
    ({"image": ""}, "training.vertex.image is empty: the image (Dockerfile.train) that the "
     "custom job runs"),
    ({"timeout_hours": -1}, "training.vertex.timeout_hours must be 0"),
    ({"retries": -1}, "training.vertex.retries must be 0 or more, got -1"),
])
def test_the_training_job_must_be_a_tpu_job_with_its_image(overrides, message):
  with pytest.raises(UserError) as error:
    config_lib.load(VERTEX, {"training": {"vertex": overrides}})
  assert message in str(error.value)


def test_a_tpu_job_whose_strategy_is_not_tpu_is_refused_but_its_miniature_runs_on_cpu():
  with pytest.raises(UserError) as error:
    config_lib.load(VERTEX, {"training": {"params_override": {"runtime": {
        "distribution_strategy": "mirrored"}}}})
  assert str(error.value) == (
      "training: the custom job asks for TPU_V3 but training.params_override "
      "runtime.distribution_strategy is 'mirrored', which would run on the TPU VM's CPU; set "
      "training.params_override runtime.distribution_strategy: tpu (and tpu: local)")
  miniature, _ = config_lib.load_miniature(VERTEX)
  assert miniature.training.params_override["runtime"]["distribution_strategy"] == "one_device"
  assert miniature.training.vertex == config_lib.load(VERTEX).training.vertex


@pytest.mark.parametrize("overrides,message", [
    ({"vertex": {"accelerator_type": "NVIDIA_TESLA_V100", "machine_type": "n1-standard-8"}},
     "glue: the custom job asks for 8 NVIDIA_TESLA_V100 but glue.runtime.distribution_strategy"
     " is 'tpu' with num_gpus 0; set glue.runtime.distribution_strategy: mirrored and "
     "num_gpus: 8"),
    ({"runtime": {"distribution_strategy": "one_device"}},
     "glue: the custom job asks for TPU_V3 but glue.runtime.distribution_strategy is "
     "'one_device', which would run on the TPU VM's CPU; set glue.runtime."
     "distribution_strategy: tpu (and tpu: local)"),
    ({"runtime": {"distribution_stratgy": "tpu"}},
     "glue.runtime: unknown GLUE runtime key(s) ['distribution_stratgy']"),
    ({"vertex": {"accelerator_type": "TPU_V9"}},
     "glue.vertex.accelerator_type 'TPU_V9' is not a Vertex accelerator"),
])
def test_the_glue_jobs_strategy_must_use_the_accelerator_they_ask_for(overrides, message):
  with pytest.raises(UserError) as error:
    config_lib.load(VERTEX, {"glue": overrides})
  assert message in str(error.value)


def test_glue_on_gpus_with_a_mirrored_strategy_loads_and_the_miniature_runs_on_cpu():
  config = config_lib.load(VERTEX, {"glue": {
      "vertex": {"accelerator_type": "NVIDIA_TESLA_V100", "accelerator_count": 4,
                 "machine_type": "n1-standard-16"},
      "runtime": {"distribution_strategy": "mirrored", "num_gpus": 4, "tpu": ""}}})
  assert config.glue.vertex.accelerator_count == 4
  miniature, _ = config_lib.load_miniature(VERTEX)
  assert miniature.glue.runtime["distribution_strategy"] == "one_device"
  assert miniature.glue.vertex == config_lib.load(VERTEX).glue.vertex


def test_a_bad_training_image_reference_stops_compile(capsys):
  assert cli.main(["pipeline", "compile", "--config", VERTEX, "--output", "x.json", "--set",
                   "training.vertex.image=tokendrop-train"]) == 2
  error = capsys.readouterr().err
  assert "training.vertex.image 'tokendrop-train' is not a container image in a registry" in error


@pytest.mark.parametrize("action", ["run", "compile", "submit", "schedule"])
@pytest.mark.parametrize("flags,message", LOCAL_MISTAKES)
def test_config_mistakes_stop_every_action_in_one_line(capsys, action, flags, message):
  config = VERTEX if action != "run" else LOCAL
  extra = {"compile": ["--output", "x.json"], "schedule": ["--cron", "0 3 * * 0"]}.get(action, [])
  assert cli.main(["pipeline", action, "--config", config, *flags, *extra]) == 2
  error = capsys.readouterr().err
  assert error.startswith("tokendrop pipeline: ") and message in error, error
  assert error.count("\n") == 1 and "Traceback" not in error


def test_cli_reports_config_errors_in_one_line(capsys):
  assert cli.main(["pipeline", "run", "--config", "configs/nope.yaml"]) == 2
  assert capsys.readouterr().err == ("tokendrop pipeline: pipeline config configs/nope.yaml "
                                     "does not exist\n")
  assert cli.main(["demo", "--config", "configs/nope.yaml"]) == 2
  assert capsys.readouterr().err == ("tokendrop demo: pipeline config configs/nope.yaml "
                                     "does not exist\n")


@pytest.mark.parametrize("overrides,key", [
    ({"corpus": {"input_base": "out/corpus"}}, "corpus.input_base"),
    ({"push": {"destination": "/srv/published"}}, "push.destination"),
    ({"glue": {"glue_dir": "glue_data"}}, "glue.glue_dir"),
    ({"data": {"vocab_file": "vocab.txt"}}, "data.vocab_file"),
    ({"training": {"config_files": ["wiki_books_pretrain_sequence_pack.yaml",
                                    "/home/me/model.yaml"]}}, "training.config_files[1]"),
])
def test_a_cloud_config_refuses_a_local_path_naming_its_key(overrides, key):
  with pytest.raises(UserError) as error:
    config_lib.load(VERTEX, overrides)
  assert f"{key} '" in str(error.value)
  assert "is a local path, which Vertex and Dataflow workers cannot read; use a gs:// path" in (
      str(error.value))


def test_the_miniature_overlay_makes_the_production_config_local_and_changes_only_its_keys():
  production = config_lib.load(VERTEX)
  miniature, overlay = config_lib.load_miniature(VERTEX)
  assert not miniature.is_cloud and miniature.root.endswith("/out/miniature/root")
  assert miniature.glue.glue_dir.startswith("/") and miniature.glue.packaged == "miniature"
  # What the overlay does not name is the production config's.
  assert (miniature.data, miniature.glue.tasks, miniature.training.config_files,
          miniature.training.vertex, miniature.vertex) == (
      production.data, production.glue.tasks, production.training.config_files,
      production.training.vertex, production.vertex)
  assert miniature.training.params_override["runtime"]["enable_xla"] is True
  lines = config_lib.overlay_lines(overlay)
  assert 'training.params_override.runtime.distribution_strategy: "one_device"' in lines
  assert 'beam_pipeline_args: ["--runner=DirectRunner"]' in lines
  assert len(lines) == len(set(lines)) > 20
  # --set still wins over the overlay.
  assert config_lib.load_miniature(VERTEX, {"training": {"train_steps": 5}})[
      0].training.train_steps == 5


def test_glue_packaged_names_a_known_dataset_and_needs_a_directory():
  with pytest.raises(UserError, match="glue.packaged 'full' is unknown; the one available is "
                                      "'miniature'"):
    config_lib.load(LOCAL, {"glue": {"packaged": "full"}})
  with pytest.raises(UserError, match="glue.packaged needs glue.glue_dir"):
    config_lib.load(LOCAL, {"glue": {"packaged": "miniature"}})
