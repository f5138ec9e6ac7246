"""`run_fn` for the standard TFX Trainer: the same experiment as `tokendrop train`.

    Trainer(run_fn="trainer.run_fn.run_fn", examples=..., transform_graph=...,
            base_model=..., custom_config={...}, train_args=..., eval_args=...)

`fn_args` is read by attribute only, so this module does not import TFX. It maps:

    fn_args.train_files / eval_files    task.train_data / validation_data.input_path; the loader
                                        keys come from the data's record beside them
                                        (TokenizePack's data_spec.json, trainer/data_spec.py)
    fn_args.transform_output            task.vocab_file = <transform_output>/vocab.txt
    fn_args.train_steps / eval_steps    trainer.train_steps (and a polynomial decay's
                                        decay_steps) / validation_steps, when set; a
                                        warm start with continue_steps trains those instead
    fn_args.base_model                  warm start: task.init_checkpoint and
                                        task.init_token_importance from its export
    fn_args.model_run_dir               the Model Garden model_dir (checkpoints, summaries),
                                        unless custom_config has checkpoint_root
    fn_args.serving_model_dir           `tokendrop export` output: tf2/, hf/, saved_model/

custom_config (a JSON-able dict):
    experiment        default token_drop_bert/pretraining
    config_files      YAML files applied in order; a bare name is looked up in configs/
    params_override   a nested dict (or a Model Garden override string), applied last
    mode              default train_and_eval
    cpu_devices       split the CPU into N replicas for runtime.distribution_strategy=mirrored
    lower_case        for data without a record only (default true): whether the exported
                      tokenizer lower-cases; a record's lower_case decides otherwise
    continue_steps    with a base_model: train this many steps instead, the decay over them and
                      the warm-up scaled to them (a continuation on a new span, not the
                      from-scratch schedule again)
    checkpoint_root   the model_dir is a directory under it named by what the run trains
                      (run_key), not model_run_dir: a retried task, or a new run with the same
                      inputs after a failed one, resumes from the checkpoints the stopped one
                      wrote. model_run_dir then holds MODEL_DIR_FILE, naming that directory.
"""

import hashlib
import json
import os

import tensorflow as tf
from absl import logging

from trainer import configs, contract, data_spec, export, train_lib
from trainer.errors import UserError


def experiment_params(fn_args, custom_config: dict):
  """The experiment config that `tokendrop train` would build, filled in from fn_args.

  Raises UserError naming the custom_config entry at fault.
  """

  def run_settings(params) -> dict:
    task = {
        "train_data": {"input_path": ",".join(fn_args.train_files)},
        "validation_data": {"input_path": ",".join(fn_args.eval_files)},
    }
    if fn_args.transform_output:
      task["vocab_file"] = os.path.join(fn_args.transform_output, contract.VOCAB_FILE)
    if fn_args.base_model:
      task["init_checkpoint"] = os.path.join(fn_args.base_model, contract.TF2_DIR,
                                             contract.CHECKPOINT_NAME)
      table = os.path.join(fn_args.base_model, contract.TOKEN_IMPORTANCE_FILE)
      if tf.io.gfile.exists(table):
        task["init_token_importance"] = table
    trainer = {}
    steps = run_steps(fn_args, custom_config)
    if steps:
      trainer["train_steps"] = steps
      # The run length decides the schedule: a decay that ended early would train the last
      # steps at learning rate 0.
      optimizer = {}
      if params.trainer.optimizer_config.learning_rate.type == "polynomial":
        optimizer["learning_rate"] = {"polynomial": {"decay_steps": steps}}
      warmup = params.trainer.optimizer_config.warmup
      full = fn_args.train_steps or params.trainer.train_steps
      if steps != full and warmup.type == "polynomial":
        # A continuation warms up for the same fraction of its length as the full schedule.
        optimizer["warmup"] = {"polynomial": {"warmup_steps": max(
            1, round(warmup.polynomial.warmup_steps * steps / full))}}
      if optimizer:
        trainer["optimizer_config"] = optimizer
    if fn_args.eval_steps:
      trainer["validation_steps"] = int(fn_args.eval_steps)
    return {"task": task, "trainer": trainer}

  params = configs.build_experiment(custom_config.get("experiment", configs.PRETRAINING),
                                    custom_config.get("config_files", ()),
                                    custom_config.get("params_override", ""), run_settings)
  params.lock()
  return params


def run_fn(fn_args) -> None:
  """Trains (resuming from model_run_dir if it holds a checkpoint) and exports standard BERT."""
  custom_config = dict(fn_args.custom_config or {})
  params = experiment_params(fn_args, custom_config)
  do_lower_case = lower_case(fn_args, custom_config)  # before training: it may be a mistake
  if custom_config.get("cpu_devices", 0) > 1:
    train_lib.split_cpu(custom_config["cpu_devices"])
  if fn_args.base_model:
    logging.info("warm start from %s", fn_args.base_model)
  directory = model_dir(fn_args, custom_config)
  train_lib.run_experiment(params, directory, custom_config.get("mode", "train_and_eval"),
                           custom_config.get("cpu_devices", 0))
  export.export_run(directory, fn_args.serving_model_dir, do_lower_case=do_lower_case)


def run_steps(fn_args, custom_config: dict) -> int:
  """The run's length: continue_steps for a warm start that asks for a continuation, else
  fn_args.train_steps (0: the experiment config's)."""
  if fn_args.base_model and custom_config.get(contract.CONTINUE_STEPS_KEY):
    return int(custom_config[contract.CONTINUE_STEPS_KEY])
  return int(fn_args.train_steps or 0)


def run_key(fn_args, custom_config: dict) -> str:
  """A name for what a run trains: its data, base model, lengths and config (16 hex digits)."""
  what = {"train_files": list(fn_args.train_files), "eval_files": list(fn_args.eval_files),
          "transform_output": fn_args.transform_output, "base_model": fn_args.base_model,
          "train_steps": fn_args.train_steps, "eval_steps": fn_args.eval_steps,
          "custom_config": {key: value for key, value in custom_config.items()
                            if key != contract.CHECKPOINT_ROOT_KEY}}
  return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_dir(fn_args, custom_config: dict) -> str:
  """The run's Model Garden model_dir: model_run_dir, or checkpoint_root/run_key, recorded in
  model_run_dir/MODEL_DIR_FILE."""
  root = custom_config.get(contract.CHECKPOINT_ROOT_KEY)
  if not root:
    return fn_args.model_run_dir
  directory = os.path.join(root, run_key(fn_args, custom_config))
  if tf.io.gfile.exists(directory):
    logging.info("model_dir %s exists: resuming from its latest checkpoint", directory)
  tf.io.gfile.makedirs(fn_args.model_run_dir)
  pointer = os.path.join(fn_args.model_run_dir, contract.MODEL_DIR_FILE)
  with tf.io.gfile.GFile(pointer, "w") as f:
    f.write(directory + "\n")
  return directory


def lower_case(fn_args, custom_config: dict) -> bool:
  """Whether the exported tokenizer lower-cases: as the data's text was (its record)."""
  spec = data_spec.find(list(fn_args.train_files), "the Trainer's train_files")
  if spec is None:
    return custom_config.get("lower_case", True)
  if custom_config.get("lower_case", spec.lower_case) != spec.lower_case:
    raise UserError(f"custom_config lower_case is {custom_config['lower_case']} but the data has "
                    f"lower_case {spec.lower_case} ({spec.source}); drop it from custom_config")
  return spec.lower_case
