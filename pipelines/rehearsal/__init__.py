"""Rehearse a Vertex AI Pipelines run on this machine: the compiled PipelineJob JSON, executed
task by task through the container entrypoints Vertex starts.

    result = rehearse(config_lib.load("configs/pipeline_local_tiny.yaml"), observer=console)
    with Rehearsal(config) as rehearsal:  # one compile and one task process, several runs
      first, second = rehearsal.run(), rehearsal.run()
    tokendrop pipeline rehearse --config configs/pipeline_local_tiny.yaml
    tokendrop pipeline rehearse --config configs/pipeline_vertex_base_tpu.yaml

A cloud (gs://) config is rehearsed in miniature: the CLI sets configs/miniature.yaml over it
(pipelines/config.py, load_miniature) and prints every key that file sets. Every task runs on
the interpreter of the image's pins, requirements/lock.txt alone (launcher.task_python()).

In order:
1. Compile, as `tokendrop pipeline compile` does, with a local root and Beam in
   multi_processing mode; two patches make the spec runnable here, one of them swapping a
   Vertex CustomJob trainer for the in-process executor (spec.py).
2. Run the root DAG in dependency order, as many times as the caller asks (run.py): each
   container task starts as its own command from the spec (launcher.py), forked from a task
   process that imported TFX's entrypoint once (task_process.py); CorpusGen's preCacheCheck
   hook runs first. Each task's executor_output.json is read back, and its artifacts go
   downstream and to the observer (pipelines/observer.py).
3. Resolver tasks answer Vertex's artifact filters from the record of every artifact the
   rehearsals of the work dir produced (artifacts.py): the second run resolves the first
   one's blessed model and warm-starts from it, as a scheduled Vertex run does.

With an image (`tokendrop pipeline rehearse --image out/image/tokendrop.oci.tar`, the archive
`make image` builds), each container task runs in its own podman container of it instead,
seeing only the work dir (container.py).

Not rehearsed: the Vertex and Dataflow services themselves (scheduling, Vertex's cache: every
task runs), the CustomJob on TPU, and the registry images (`make image` builds with local
stand-ins for them; Cloud Build uses the real ones).
"""

import importlib

# The module each public name is defined in. They are imported on first use: `python -m
# pipelines.rehearsal.task_process` imports this package first, and that process must import
# nothing beyond the standard library (see task_process.py).
_PUBLIC = {"Rehearsal": "run", "rehearse": "run", "RehearsalResult": "run", "TaskRun": "run",
           "default_work_dir": "run", "rehearsal_config": "spec", "REHEARSAL_BEAM_ARGS": "spec",
           "VERTEX_TRAINER_EXECUTOR": "spec", "LOCAL_TRAINER_EXECUTOR": "spec",
           "GLUE_LOCAL_JOBS_EXECUTOR": "spec"}


def __getattr__(name: str):
  if name not in _PUBLIC:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
