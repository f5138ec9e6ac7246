"""Beam options and paths, the same for every component that runs a Beam pipeline."""

import functools
import logging
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Sequence

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions


def pipeline_options(pipeline_args: list[str]) -> PipelineOptions:
  """Beam options; DirectRunner in one process unless the arguments say otherwise."""
  args = list(pipeline_args)
  runners = [a.split("=", 1)[1] for a in args if a.startswith("--runner=")]
  if "--runner" in args:
    runners.append(args[args.index("--runner") + 1])
  if not runners:
    args.append("--runner=DirectRunner")
  # The mode applies to the FnApiRunner that DirectRunner uses. Beam 2.77's DirectRunner first
  # tries Prism whatever the mode (its binary is downloaded on first use; offline, that fails
  # and DirectRunner falls back to the FnApiRunner, as on this project's CI machine).
  direct = not runners or runners[-1] in ("DirectRunner", "direct")
  if direct and not any(a.startswith("--direct_running_mode") for a in args):
    args.append("--direct_running_mode=in_memory")
  return PipelineOptions(args)


def join(directory: str, *names: str) -> str:
  """Joins with '/', which every Beam filesystem (local, gs://) accepts."""
  return "/".join([directory.rstrip("/"), *names])


def check_remote_paths(options: PipelineOptions, paths: list[tuple[str, str]]) -> None:
  """A runner on other machines (anything but DirectRunner) cannot read or write this one's
  disk: refuses each local path in `paths` ((flag, value) pairs), naming the flag."""
  from apache_beam.options.pipeline_options import StandardOptions

  from trainer.errors import UserError

  runner = options.view_as(StandardOptions).runner or "DirectRunner"
  if runner in ("DirectRunner", "direct", "PrismRunner", "prism"):
    return
  local = [f"{flag} {value}" for flag, value in paths if value and "://" not in value]
  if local:
    raise UserError(f"{', '.join(local)}: a local path, which {runner}'s workers cannot reach; "
                    "give gs:// paths")


def remove_tfx_dependency_package(pipeline_args: Sequence[str]) -> None:
  """Removes the package TFX built for Beam's workers, once the pipeline has run.

  When the Beam arguments name no dependency (--extra_packages, --setup_file,
  --requirements_file, --sdk_container_image), TFX's BaseBeamExecutor copies its own install
  (52 MB) into a fresh tempfile.mkdtemp(), packs it as a tfx_ephemeral sdist and adds it as
  --extra_package; nothing removes it. A runner stages the package when the pipeline is
  submitted, and DirectRunner's workers never read it, so after the run it is only a leak.
  """
  for package in PipelineOptions(list(pipeline_args)).view_as(SetupOptions).extra_packages or []:
    path = pathlib.PurePath(package)
    # TFX's layout: <mkdtemp>/build/tfx/dist/tfx_ephemeral-<version>.tar.gz
    if (path.name.startswith("tfx_ephemeral-") and len(path.parents) > 4
        and path.parent.parts[-3:] == ("build", "tfx", "dist")
        and str(path.parents[4]) == tempfile.gettempdir()):
      shutil.rmtree(path.parents[3], ignore_errors=True)
      logging.info("Removed TFX's Beam dependency package %s", path.parents[3])


def removes_tfx_dependency_package(do: Callable) -> Callable:
  """Decorates a BaseBeamExecutor's Do: whatever Do does, TFX's package is removed after it."""

  @functools.wraps(do)
  def wrapped(self, *args, **kwargs):
    try:
      return do(self, *args, **kwargs)
    finally:
      remove_tfx_dependency_package(self._beam_pipeline_args)

  return wrapped
