"""The package TFX builds for Beam's workers is removed once a Beam executor has run.

TFX's BaseBeamExecutor builds it (a 52 MB copy of TFX under a fresh mkdtemp) whenever the Beam
arguments name no dependency, as every local config's do; before this, each CorpusGen,
TokenizePack and GlueEvaluator run left one behind in the temp dir.
"""

import pathlib

import pytest
from tfx.components.example_gen import base_example_gen_executor
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import dependency_utils

from components.common.beam_utils import remove_tfx_dependency_package
from components.corpus_gen import component as corpus_gen_component
from components.glue_eval import component as glue_eval_component
from components.tokenize_pack import component as tokenize_pack_component
from components.tokenize_pack import pipeline as tokenize_pack_pipeline
from tests.components.tokenize_pack.conftest import VOCAB

LOCAL_ARGS = ["--direct_running_mode=in_memory"]


def _tfx_package(args: list[str]) -> pathlib.Path:
  packages = [a.split("=", 1)[1] for a in args if a.startswith("--extra_package=")]
  assert len(packages) == 1, args
  return pathlib.Path(packages[0])


def test_tfx_builds_a_package_for_local_arguments_and_it_is_removed_with_its_temp_dir(tmp_path):
  args = dependency_utils.make_beam_dependency_flags(LOCAL_ARGS)
  package = _tfx_package(args)
  assert package.name.startswith("tfx_ephemeral-") and package.is_file()
  own = tmp_path / "own-1.0.tar.gz"  # a package the user names is never touched
  own.write_bytes(b"x")
  remove_tfx_dependency_package([*args, f"--extra_package={own}"])
  assert not package.parents[3].exists()
  assert own.exists()


def test_arguments_that_name_a_dependency_get_no_package():
  image = ["--sdk_container_image=example.com/tokendrop:1"]
  assert dependency_utils.make_beam_dependency_flags(image) == image
  remove_tfx_dependency_package(image)  # nothing to remove, no error


def _outputs(tmp_path, keys):
  outputs = {}
  for key, artifact_class in keys:
    outputs[key] = [artifact_class()]
    outputs[key][0].uri = str(tmp_path / key)
  return outputs


def test_tokenize_pack_removes_the_package_even_when_its_pipeline_fails(monkeypatch, tmp_path):
  def failing_run(config, pipeline_args, overwrite):
    assert _tfx_package(pipeline_args).exists()
    raise RuntimeError("the pipeline failed")

  monkeypatch.setattr(tokenize_pack_pipeline, "run", failing_run)
  executor = tokenize_pack_component.Executor(
      base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=LOCAL_ARGS))
  package = _tfx_package(executor._beam_pipeline_args)
  corpus = standard_artifacts.Examples()
  corpus.uri = str(tmp_path / "corpus")
  corpus.split_names = artifact_utils.encode_split_names(["corpus"])
  outputs = _outputs(tmp_path, (("examples", standard_artifacts.Examples),
                                ("transform_graph", standard_artifacts.TransformGraph),
                                ("statistics", tokenize_pack_component.PretrainDataStatistics)))
  with pytest.raises(RuntimeError, match="the pipeline failed"):
    executor.Do({"corpus": [corpus]}, outputs,
                {"seq_length": 128.0, "vocab_file": VOCAB, "lower_case": 0, "whole_word_masking": 1,
                 "special_tokens": "[PAD],[UNK],[CLS],[SEP],[MASK]"})
  assert not package.parents[3].exists()


def test_corpus_gen_removes_the_package_even_when_its_pipeline_fails(monkeypatch):
  def failing_do(self, input_dict, output_dict, exec_properties):
    assert _tfx_package(self._beam_pipeline_args).exists()
    raise RuntimeError("the pipeline failed")

  monkeypatch.setattr(base_example_gen_executor.BaseExampleGenExecutor, "Do", failing_do)
  executor = corpus_gen_component.Executor(
      base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=LOCAL_ARGS))
  package = _tfx_package(executor._beam_pipeline_args)
  with pytest.raises(RuntimeError, match="the pipeline failed"):
    executor.Do({}, {}, {})
  assert not package.parents[3].exists()


def test_glue_evaluator_which_runs_no_beam_pipeline_removes_the_package_too():
  executor = glue_eval_component.Executor(
      base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=LOCAL_ARGS))
  package = _tfx_package(executor._beam_pipeline_args)
  assert package.exists()
  with pytest.raises(KeyError):
    executor.Do({}, {}, {})  # no model: fails at once
  assert not package.parents[3].exists()
