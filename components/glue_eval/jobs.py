"""GLUE fine-tuning as jobs, one per task, all running at once: on Vertex, or as local processes.

Each job runs `python -m components.glue_eval.job` (job.py) with the same arguments wherever it
runs. VertexJobs submits each as a Vertex custom job (the GLUE config's worker pool:
machine, accelerator, image) through TFX's job client, and waits for all of them; LocalJobs runs
the same commands as processes of a local interpreter (the rehearsal's stand-in for the
image), with each job's output in a log file. Either raises JobsFailed naming every task whose
job failed, and its job, after all of them have ended.
"""

import concurrent.futures
import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from absl import logging

from components.common import vertex_jobs
from components.glue_eval import job as job_lib

JOB_MODULE = job_lib.__name__


class JobsFailed(RuntimeError):
  """One or more GLUE jobs failed; the message names each task and its job."""


@dataclasses.dataclass(frozen=True)
class TaskJob:
  task: str  # the task's name (tasks.py)
  display_name: str  # the job's name: the Vertex job's display name, the local log's stem
  command: tuple[str, ...]


def task_jobs(task_names: Sequence[str], checkpoint: str, output_dir: str, *, glue_dir: str = "",
              tfds_data_dir: str = "", finetune_config: str = "{}", lower_case: bool = True,
              runtime: dict | None = None, name_prefix: str = "glue") -> list[TaskJob]:
  """One job per task, each running job.py's command line."""
  jobs = []
  for name in task_names:
    command = ["python", "-m", JOB_MODULE, "--checkpoint", checkpoint, "--task", name,
               "--output_dir", output_dir, "--finetune_config", finetune_config,
               "--lower_case", str(int(lower_case)),
               "--runtime", json.dumps(runtime or {}, sort_keys=True)]
    if glue_dir:
      command += ["--glue_dir", glue_dir]
    elif tfds_data_dir:
      command += ["--tfds_data_dir", tfds_data_dir]
    safe = "".join(c if c.isalnum() else "-" for c in name.lower())
    jobs.append(TaskJob(name, f"{name_prefix}-{safe}", tuple(command)))
  return jobs


def _raise_failures(failures: dict[str, str], total: int) -> None:
  if failures:
    raise JobsFailed(f"{len(failures)} of {total} GLUE job(s) failed: " +
                     "; ".join(f"task {task}: {why}" for task, why in failures.items()))


def _run_all(run_one, jobs: Sequence[TaskJob], parallel: int) -> None:
  failures = {}
  with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
    futures = {pool.submit(run_one, job): job for job in jobs}
    for future in concurrent.futures.as_completed(futures):
      job = futures[future]
      try:
        future.result()
        logging.info("GLUE job %s (task %s) succeeded", job.display_name, job.task)
      except Exception as e:  # noqa: BLE001  (every failure is reported, after all jobs end)
        failures[job.task] = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
  _raise_failures({job.task: failures[job.task] for job in jobs if job.task in failures},
                  len(jobs))


class VertexJobs:
  """Runs each job as a Vertex custom job with `job_args` (a CustomJob's fields: job_spec with
  worker_pool_specs, scheduling, service_account), every one at once."""

  def __init__(self, project: str, region: str, job_args: dict[str, Any]):
    self._project = project
    self._region = region
    self._job_args = job_args

  def run(self, jobs: Sequence[TaskJob]) -> None:
    _run_all(self._run_one, jobs, parallel=len(jobs))

  def _run_one(self, job: TaskJob) -> None:
    custom_job = vertex_jobs.command_job(self._region, list(job.command), self._job_args,
                                         f"{job.display_name}-{time.strftime('%Y%m%d%H%M%S')}",
                                         executor_class_path=JOB_MODULE)
    try:
      vertex_jobs.run_job(self._project, self._region, custom_job)
    except RuntimeError as e:
      raise RuntimeError(f"Vertex job {custom_job['display_name']!r}: {e}") from e


class LocalJobs:
  """Runs each job's command as a local process, `python` being `python` (the interpreter
  standing in for the job's image), at most `parallel` at once; each job's output goes to
  log_dir/<display name>.log."""

  def __init__(self, python: str, log_dir: str, parallel: int = 2):
    self._python = python
    self._log_dir = log_dir
    self._parallel = parallel

  def run(self, jobs: Sequence[TaskJob]) -> None:
    os.makedirs(self._log_dir, exist_ok=True)
    _run_all(self._run_one, jobs, self._parallel)

  def _run_one(self, job: TaskJob) -> None:
    command = [self._python if job.command[0] == "python" else job.command[0], *job.command[1:]]
    log_path = os.path.join(self._log_dir, f"{job.display_name}.log")
    logging.info("GLUE job %s: %s", job.display_name, " ".join(command))
    with open(log_path, "w", encoding="utf-8") as log:
      status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False,
                              stdin=subprocess.DEVNULL).returncode
    if status:
      with open(log_path, encoding="utf-8") as log:
        last = [line.strip() for line in log if line.strip()][-1:] or ["(no output)"]
      raise RuntimeError(f"local job {job.display_name!r} exited with status {status} "
                         f"({last[0]}); its log: {log_path}")
