"""Rehearsal tasks inside the project's image: `tokendrop pipeline rehearse --image ARCHIVE`.

    image = Image.load("out/image/tokendrop.oci.tar")   # an archive `make image` wrote
    image.command(["python", "-m", "tfx...kubeflow_v2_run_executor", ...], work_dir)
    # -> ["podman", "run", "--rm", ..., "--volume", "WORK:WORK", "--entrypoint", "python", ID,
    #     "-m", "tfx...kubeflow_v2_run_executor", ...]

Each container task of the compiled spec runs as its own container of the image, as Vertex
starts one per task: the spec's command replaces the image's entrypoint (Kubernetes' `command`),
the image's environment, PATH and working directory apply, and the code is the image's own
install. The one mount is the rehearsal's work directory, at the same path, so the artifact
URIs in each executor input hold inside the container as outside; every path a task reads or
writes must be in it (in_work_dir). No network: a task that fetches anything fails here.

podman runs the containers with runc and the host's own hard limits for open files and
processes: this sandbox cannot raise a limit (no CAP_SYS_RESOURCE) and crun refuses its
hybrid cgroups (../shared/ENVIRONMENT.md, "Containers").

Under scripts/in-env's Debian 13 root (rootfs mode), podman is the host's: in-env mounts the
host's root at HOST_ROOT_VARIABLE's path, and each podman command runs chrooted there, with
the host's PATH. The archive and the work dir must then be where the root and the host see
the same files (the checkout, /tmp), which Image.load and Image.command check.
"""

import dataclasses
import os
import resource
import shutil
import subprocess
import typing

from trainer.errors import UserError

if typing.TYPE_CHECKING:  # the launcher imports this module, and it stays light
  from pipelines.config import PipelineConfig

PODMAN = "podman"
# Set by scripts/in-env in rootfs mode: where the host's root is mounted in the root.
HOST_ROOT_VARIABLE = "TOKENDROP_HOST_ROOT"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def host_command(*argv: str) -> list[str]:
  """A command line that runs the host's program: through the host's root where
  scripts/in-env mounted it, else as is."""
  host_root = os.environ.get(HOST_ROOT_VARIABLE)
  if host_root:
    return ["chroot", host_root, "/usr/bin/env", "-i", f"PATH={HOST_PATH}", *argv]
  return list(argv)


def podman(*args: str) -> list[str]:
  return host_command(PODMAN, *args)


def _check_shared(path: str, what: str) -> None:
  """Under scripts/in-env's root, `path` must be the same file for the host's podman."""
  host_root = os.environ.get(HOST_ROOT_VARIABLE)
  if not host_root:
    return
  on_host = host_root + os.path.abspath(path)
  if not (os.path.exists(on_host) and os.path.samefile(path, on_host)):
    raise UserError(f"{what} {path} is inside scripts/in-env's root, where the host's podman "
                    "cannot see it: put it in the checkout or /tmp")


@dataclasses.dataclass(frozen=True)
class Image:
  archive: str  # the OCI archive it was loaded from
  id: str  # the image id in containers-storage, which every task's container runs

  @classmethod
  def load(cls, archive: str) -> "Image":
    """Loads an OCI archive into containers-storage (layers it already holds are reused)."""
    archive = os.path.abspath(archive)
    if not os.path.isfile(archive):
      raise UserError(f"no image archive {archive}: build it with `make image` "
                      "(out/image/tokendrop.oci.tar)")
    installed = (os.path.exists(os.environ[HOST_ROOT_VARIABLE] + "/usr/bin/" + PODMAN)
                 if os.environ.get(HOST_ROOT_VARIABLE) else shutil.which(PODMAN) is not None)
    if not installed:
      raise UserError("podman is not installed, and --image runs each task in a podman "
                      "container: `make image` installs it (apt-get install podman runc)")
    _check_shared(archive, "the image archive")
    loaded = subprocess.run(podman("load", "--quiet", "--input", archive),
                            capture_output=True, text=True)
    if loaded.returncode != 0:
      raise UserError(f"podman cannot load {archive} ({_last_line(loaded.stderr)}): rebuild "
                      "it with `make image`")
    reference = loaded.stdout.strip().splitlines()[-1].split(": ", 1)[-1]
    inspected = subprocess.run(podman("image", "inspect", "--format", "{{.Id}}", reference),
                               capture_output=True, text=True, check=True)
    return cls(archive, inspected.stdout.strip())

  def command(self, command: list[str], work_dir: str) -> list[str]:
    """`command` (the spec's command and args) as a container of this image that sees only
    work_dir."""
    work_dir = os.path.abspath(work_dir)
    _check_shared(work_dir, "the work dir")
    return podman(*RUN, *limits(), "--volume", f"{work_dir}:{work_dir}",
                  "--entrypoint", command[0], self.id, *command[1:])


def in_work_dir(config: "PipelineConfig", work_dir: str) -> tuple["PipelineConfig", list[str]]:
  """`config` with every local path a task reads or writes moved into work_dir, the one
  directory a task's container sees; and a line for each path moved."""
  work_dir = os.path.abspath(work_dir)
  moved = []

  def inside(key: str, path: str | None, name: str) -> str | None:
    if not path or _within(os.path.abspath(path), work_dir):
      return path
    target = os.path.join(work_dir, name)
    moved.append(f"{key}: {path} -> {target}")
    return target

  corpus = dataclasses.replace(config.corpus, input_base=inside(
      "corpus.input_base", config.corpus.input_base, "corpus"))
  glue = dataclasses.replace(config.glue, glue_dir=inside(
      "glue.glue_dir", config.glue.glue_dir, "glue_data"))
  push = dataclasses.replace(config.push, destination=inside(
      "push.destination", config.push.destination, "published"))
  return dataclasses.replace(config, corpus=corpus, glue=glue, push=push), moved


def check_in_work_dir(config: "PipelineConfig", work_dir: str) -> None:
  """Every path a task's container reads or writes is in work_dir (see in_work_dir)."""
  _, moved = in_work_dir(config, work_dir)
  if moved:
    raise UserError(f"a task in the image sees only the work dir {work_dir}, and "
                    f"{moved[0].split(':')[0]} is outside it: set it inside, or let "
                    "`tokendrop pipeline rehearse --image` move it (container.in_work_dir)")


# How every container starts: removed after, from the loaded image only, runc, no network.
RUN = ("run", "--rm", "--pull", "never", "--runtime", "runc", "--network", "none")


def limits() -> list[str]:
  """--ulimit flags at this process's own hard limits, which a container cannot exceed here."""
  flags = []
  for name, limit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
    hard = resource.getrlimit(limit)[1]
    if name == "nproc":
      # No more processes than there can be pids: this sandbox refuses an nproc limit above
      # kernel.pid_max (measured: 32768 starts, 32769 fails with "error setting rlimit").
      hard = min(hard if hard != resource.RLIM_INFINITY else _pid_max(), _pid_max())
    if hard != resource.RLIM_INFINITY:
      flags += ["--ulimit", f"{name}={hard}:{hard}"]
  return flags


def _pid_max() -> int:
  with open("/proc/sys/kernel/pid_max", encoding="ascii") as f:
    return int(f.read())


def _within(path: str, directory: str) -> bool:
  return os.path.commonpath([path, directory]) == directory


def _last_line(text: str) -> str:
  lines = text.strip().splitlines()
  return lines[-1] if lines else "no output"
