"""`rehearse --image`'s pieces that need no image: the container command, the work dir that is
its one mount, and the mistakes it refuses (tests/image/ runs the rehearsal in the image)."""

import dataclasses
import os

import pytest

from pipelines import cli
from pipelines import config as config_lib
from pipelines.rehearsal import container
from trainer.errors import UserError

PRODUCTION = "configs/pipeline_vertex_base_tpu.yaml"


def test_a_task_runs_as_a_container_of_the_image_that_sees_only_the_work_dir(tmp_path,
                                                                             monkeypatch):
  monkeypatch.delenv(container.HOST_ROOT_VARIABLE, raising=False)
  image = container.Image(archive="/x/tokendrop.oci.tar", id="f" * 64)
  command = image.command(["python", "-m", "tfx.entrypoint", "--flag", "{}"], str(tmp_path))
  assert command[:3] == ["podman", "run", "--rm"]
  assert command[command.index("--runtime") + 1] == "runc"
  assert command[command.index("--network") + 1] == "none"
  volumes = [command[i + 1] for i, arg in enumerate(command) if arg == "--volume"]
  assert volumes == [f"{tmp_path}:{tmp_path}"]
  # The spec's command replaces the entrypoint, as Vertex's container command does.
  assert command[command.index("--entrypoint"):] == [
      "--entrypoint", "python", "f" * 64, "-m", "tfx.entrypoint", "--flag", "{}"]
  limits = dict(command[i + 1].split("=") for i, arg in enumerate(command) if arg == "--ulimit")
  soft, hard = limits["nproc"].split(":")
  assert soft == hard and int(hard) <= int(open("/proc/sys/kernel/pid_max").read())


def test_under_in_env_s_root_podman_is_the_host_s(tmp_path, monkeypatch):
  host = tmp_path / "host"
  host.mkdir()
  monkeypatch.setenv(container.HOST_ROOT_VARIABLE, str(host))
  assert container.podman("load")[:2] == ["chroot", str(host)]
  assert container.podman("load")[-2:] == ["podman", "load"]
  # A work dir the host cannot see at the same path is refused, naming where to put it.
  image = container.Image(archive="/x.tar", id="i")
  with pytest.raises(UserError, match="where the host's podman cannot see it: put it in the "
                     "checkout or /tmp"):
    image.command(["python"], str(tmp_path / "work"))


def test_every_path_a_task_touches_moves_into_the_work_dir(tmp_path):
  config, _ = config_lib.load_miniature(PRODUCTION)
  work = tmp_path / "work"
  moved_config, moved = container.in_work_dir(config, str(work))
  assert [line.split(":")[0] for line in moved] == [
      "corpus.input_base", "glue.glue_dir", "push.destination"]
  assert moved_config.corpus.input_base == str(work / "corpus")
  assert moved_config.glue.glue_dir == str(work / "glue_data")
  assert moved_config.push.destination == str(work / "published")
  # Already inside: nothing moves, and the check passes.
  assert container.in_work_dir(moved_config, str(work)) == (moved_config, [])
  container.check_in_work_dir(moved_config, str(work))
  outside = dataclasses.replace(moved_config, push=dataclasses.replace(
      moved_config.push, destination=str(tmp_path / "elsewhere")))
  with pytest.raises(UserError, match="push.destination is outside it"):
    container.check_in_work_dir(outside, str(work))


def test_a_missing_archive_names_make_image(tmp_path):
  with pytest.raises(UserError, match=r"no image archive .*missing.oci.tar: build it with "
                     "`make image`"):
    container.Image.load(str(tmp_path / "missing.oci.tar"))


def test_image_is_a_rehearse_flag_only(capsys):
  status = cli.main(["pipeline", "compile", "--config", PRODUCTION, "--output", os.devnull,
                     "--image", "x.oci.tar"])
  assert status == 2
  assert "--image is for rehearse" in capsys.readouterr().err
