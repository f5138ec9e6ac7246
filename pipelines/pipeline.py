"""The TFX pipeline, in one function: corpus -> tokenize and pack -> train -> GLUE -> push.

    CorpusGen ──> TokenizePack ──> Trainer ──> GlueEvaluator ──> BertPusher
                                     ^              ^
           latest blessed model ─────┴──────────────┘   (warm start; baseline for blessing)

The same DAG runs on LocalDagRunner (Beam DirectRunner, training in-process)
and on Vertex AI Pipelines (Beam on Dataflow, training as a Vertex custom job on
TPU); only the config differs.
"""

import json
import os

from tfx import v1 as tfx

from components.corpus_gen.component import corpus_gen
from components.glue_eval.component import GlueEvaluator
from components.pretrain.component import Trainer, VertexTrainer
from components.publish.component import BertPusher
from components.tokenize_pack.component import TokenizePack
from pipelines.config import PipelineConfig, VertexJobConfig
from trainer import contract

RUN_FN = "trainer.run_fn.run_fn"
# The Trainer's node id, whichever trainer runs: each run's stages, tasks and executions are
# named by it.
TRAINER_ID = "Trainer"


def vertex_job_args(job: VertexJobConfig, config: PipelineConfig) -> dict:
  """A custom job's project and CustomJob fields (job_spec) for `job`'s worker pool, as TFX's
  Vertex job client reads them. The job restarts when a worker restarts (a TPU VM's
  maintenance event): the Trainer resumes from its latest checkpoint, a GLUE job starts its
  task again."""
  machine_spec = {"machine_type": job.machine_type,
                  "accelerator_type": job.accelerator_type,
                  "accelerator_count": job.accelerator_count}
  if job.tpu_topology:
    machine_spec["tpu_topology"] = job.tpu_topology
  scheduling = {"restart_job_on_worker_restart": True}
  if job.timeout_hours:
    scheduling["timeout"] = f"{round(job.timeout_hours * 3600)}s"
  args = {"project": config.vertex.project,
          "job_spec": {
              "worker_pool_specs": [{"machine_spec": machine_spec, "replica_count": 1,
                                     "container_spec": {"image_uri": job.image}}],
              "scheduling": scheduling}}
  if config.vertex.service_account:
    args["job_spec"]["service_account"] = config.vertex.service_account
  return args


def glue_vertex_job(config: PipelineConfig) -> dict | None:
  """What GlueEvaluator needs to run each task as a Vertex custom job (glue.vertex), or None
  (fine-tuning in its own process)."""
  if config.glue.vertex is None:
    return None
  args = vertex_job_args(config.glue.vertex, config)
  return {"project": args.pop("project"), "region": config.vertex.region, "job_args": args}


def trainer_custom_config(config: PipelineConfig) -> dict:
  """What run_fn reads (see trainer/run_fn.py), plus the Vertex job spec on Vertex."""
  training = config.training
  custom = {
      "experiment": training.experiment,
      "config_files": list(training.config_files),
      "params_override": training.params_override,
      "cpu_devices": training.cpu_devices,
      contract.PIPELINE_NAME: config.name,
  }
  if training.continue_steps:
    custom[contract.CONTINUE_STEPS_KEY] = training.continue_steps
  if training.retrain_same_span:
    custom[contract.RETRAIN_SAME_SPAN_KEY] = True
  if training.vertex is not None:
    job = vertex_job_args(training.vertex, config)
    ai_platform = tfx.extensions.google_cloud_ai_platform
    # Checkpoints outside the task's outputs, named by what the run trains: a retried task
    # (training.vertex.retries) and a new run of the same inputs resume where it stopped.
    custom[contract.CHECKPOINT_ROOT_KEY] = os.path.join(config.root, "checkpoints")
    custom.update({ai_platform.ENABLE_VERTEX_KEY: True,
                   ai_platform.VERTEX_REGION_KEY: config.vertex.region,
                   ai_platform.TRAINING_ARGS_KEY: job})
  return custom


def create_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
  corpus = corpus_gen(config.corpus.input_base, config.corpus.file_pattern,
                      input_format=config.corpus.input_format,
                      text_field=config.corpus.text_field,
                      max_document_chars=config.data.max_document_chars,
                      chunk_chars=config.data.chunk_chars)

  tokenize_pack = TokenizePack(corpus=corpus.outputs["examples"], options=config.data)

  latest_blessed = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id("latest_blessed_model")

  trainer_cls = VertexTrainer if config.training.vertex is not None else Trainer
  trainer = trainer_cls(
      run_fn=RUN_FN,
      examples=tokenize_pack.outputs["examples"],
      transform_graph=tokenize_pack.outputs["transform_graph"],
      base_model=latest_blessed.outputs["model"] if config.training.warm_start else None,
      train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=config.training.train_steps),
      eval_args=tfx.proto.EvalArgs(splits=["validation"], num_steps=config.training.eval_steps),
      custom_config=trainer_custom_config(config)).with_id(TRAINER_ID)

  evaluator = GlueEvaluator(
      model=trainer.outputs["model"],
      baseline_model=latest_blessed.outputs["model"],
      baseline_blessing=latest_blessed.outputs["model_blessing"],
      tasks=config.glue.tasks,
      glue_dir=config.glue.glue_dir,
      threshold=config.glue.threshold,
      tolerance=config.glue.tolerance,
      finetune_config=json.dumps(config.glue.finetune),
      lower_case=config.data.lower_case,
      pipeline_name=config.name,
      runtime=config.glue.runtime,
      vertex_job=glue_vertex_job(config))

  pusher = BertPusher(
      model=trainer.outputs["model"],
      blessing=evaluator.outputs["blessing"],
      evaluation=evaluator.outputs["evaluation"],
      statistics=tokenize_pack.outputs["statistics"],
      push_destination=config.push.destination,
      hub_datasets=",".join(config.push.datasets_for(config.corpus)),
      hub_model_id=config.push.hub_model_id)

  metadata = None
  if config.metadata_path:
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.metadata_path)
  return tfx.dsl.Pipeline(
      pipeline_name=config.name,
      pipeline_root=config.root,
      components=[corpus, tokenize_pack, latest_blessed, trainer, evaluator, pusher],
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata,
      beam_pipeline_args=list(config.beam_pipeline_args))
