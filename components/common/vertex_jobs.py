"""Vertex custom jobs that run one of this project's commands, through TFX's job client.

TFX's VertexJobClient builds a CustomJob whose container runs TFX's run_executor; the jobs
here run a command of the training image instead (`python -m trainer.job ...`,
`python -m components.glue_eval.job ...`). TFX's `runner._launch_cloud_training` submits
the job and polls it until it ends, retrying the polling on connection errors.
"""

import copy
from typing import Any

from tfx.extensions.google_cloud_ai_platform import runner as vertex_runner
from tfx.extensions.google_cloud_ai_platform import training_clients


class CommandJobClient(training_clients.VertexJobClient):
  """TFX's Vertex job client, whose job runs `command` in its image instead of TFX's
  run_executor."""

  def __init__(self, vertex_region: str, command: list[str]):
    super().__init__(vertex_region)
    self._command = list(command)

  def generate_container_command(self, input_dict, output_dict, exec_properties,
                                 executor_class_path) -> list[str]:
    del input_dict, output_dict, exec_properties, executor_class_path
    return list(self._command)


def command_job(region: str, command: list[str], job_args: dict[str, Any],
                display_name: str | None = None, executor_class_path: str = "") -> dict[str, Any]:
  """The CustomJob (as TFX's client builds it) that runs `command` with job_args' job_spec:
  every worker pool gets the command; the display name is display_name, or TFX's default."""
  job_args = copy.deepcopy(job_args)
  if display_name:
    job_args["display_name"] = display_name
  return CommandJobClient(region, command).create_training_job(
      {}, {}, {}, executor_class_path=executor_class_path, job_args=job_args, job_id=None,
      job_labels=None)


def run_job(project: str, region: str, custom_job: dict[str, Any]) -> None:
  """Submits the CustomJob and waits for it; raises RuntimeError (TFX's, naming the job's
  resource name and its final state) when it fails or is cancelled."""
  vertex_runner._launch_cloud_training(  # noqa: SLF001
      project=project, training_job=custom_job, enable_vertex=True, vertex_region=region)
