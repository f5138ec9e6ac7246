"""The pipeline YAML: the shipped configs load, and every mistake names its key."""

import pytest

from pipelines import config as config_lib
from pipelines import pipeline_cli

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


def test_overrides_from_the_command_line():
  overrides = pipeline_cli._overrides(["training.train_steps=7", "glue.tasks=CoLA,RTE",
                                       "training.params_override.runtime.num_gpus=0"])
  config = config_lib.load(LOCAL, overrides)
  assert config.training.train_steps == 7 and config.glue.tasks == "CoLA,RTE"
  assert config.training.params_override == {"runtime": {"distribution_strategy": "one_device",
                                                         "num_gpus": 0}}


@pytest.mark.parametrize("overrides,message", [
    ({"trainig": {}}, "unknown key(s) ['trainig'] in pipeline_local_tiny.yaml"),
    ({"training": {"train_step": 3}}, "unknown key(s) ['train_step'] in "
     "pipeline_local_tiny.yaml.training"),
    ({"data": {"seq_length": "long"}}, "pipeline_local_tiny.yaml.data.seq_length must be int"),
    ({"push": {"destination": ""}}, "push.destination is empty"),
    ({"root": "gs://b/root"}, "root is on gs:// but there is no vertex: section"),
])
def test_mistakes_name_the_key(overrides, message):
  with pytest.raises(config_lib.PipelineConfigError, match=None) as error:
    config_lib.load(LOCAL, overrides)
  assert message in str(error.value)


def test_cli_reports_config_errors_in_one_line(capsys):
  assert pipeline_cli.main(["run", "--config", "configs/nope.yaml"]) == 2
  assert capsys.readouterr().err == ("tokendrop pipeline: pipeline config configs/nope.yaml "
                                     "does not exist\n")
