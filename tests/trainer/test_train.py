"""The seed-compatible command line, end to end on real packed IMDB data.

Most tests run `tokendrop train` in this process (`trainer.train.main`, the entry point of
`python -m trainer.train`), with its output captured at the file descriptors, and check what
it leaves in --model_dir: checkpoints, summaries, the importance table, and the logs. The tests
that need a process boundary start real processes: a kill -9 in the middle of training, and
two workers of multi_worker_mirrored (tests marked e2e), and the mirrored-strategy runs (a
CPU split into two devices must precede TF's start).
"""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf

from pipelines import cli
from tests import process_output
from trainer import export, vocab

REPO = pathlib.Path(__file__).resolve().parents[2]
VOCAB = vocab.bert_base_uncased_vocab_path()
INIT = 10.0


def _command(model_dir, packed_data, *overrides, mode="train_and_eval", extra_flags=()):
  """`python -m trainer.train` with the seed's flags, as argv."""
  train, evaluation = packed_data
  override = ",".join([
      f"task.train_data.input_path={train}",
      f"task.validation_data.input_path={evaluation}",
      f"task.vocab_file={VOCAB}",
      "runtime.distribution_strategy=one_device",
      *overrides,
  ])
  return [sys.executable, "-m", "trainer.train",
          "--experiment=token_drop_bert/pretraining",
          "--config_file=configs/wiki_books_pretrain_sequence_pack.yaml",
          "--config_file=configs/bert_en_uncased_base_token_drop.yaml",
          "--config_file=configs/tiny_token_drop.yaml",
          f"--params_override={override}",
          f"--model_dir={model_dir}", f"--mode={mode}", *extra_flags]


class _Run:
  """A finished command: its exit status and everything it wrote to fds 1 and 2."""

  def __init__(self, returncode: int, output: str):
    self.returncode = returncode
    self.stderr = output


def _run(command) -> _Run:
  """Runs `python -m trainer.train ...` or `python -m pipelines.cli ...` (as built above) in
  this process: the same main() the module runs, its exit status from SystemExit."""
  module, argv = command[2], command[3:]
  # Each run's log file where the test's files are, not in the checkout's out/logs.
  argv = [*argv, f"--log_file={tempfile.mkdtemp(prefix='tokendrop-test-')}/run.log"]
  with process_output.captured(merge=True, log_records=False) as output:
    try:
      if module == "trainer.train":
        status = cli.main(["train", *argv])
      else:
        assert module == "pipelines.cli", command
        status = cli.main(argv)
    except SystemExit as e:
      status = e.code
  return _Run(status or 0, output.stderr)


def _run_process(command, timeout=600) -> subprocess.CompletedProcess:
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _checkpoint_steps(model_dir):
  return sorted(int(p.name.split("-")[1].split(".")[0])
                for p in pathlib.Path(model_dir).glob("ckpt-*.index"))


def _importance_table(checkpoint_prefix):
  reader = tf.train.load_checkpoint(str(checkpoint_prefix))
  keys = [k for k in reader.get_variable_to_shape_map()
          if "token_importance/table" in k and k.endswith("VARIABLE_VALUE")]
  assert len(keys) == 1, keys
  return reader.get_tensor(keys[0])


def _summary_tags(directory):
  tags = set()
  for events in pathlib.Path(directory).glob("events.out.tfevents.*"):
    for event in tf.compat.v1.train.summary_iterator(str(events)):
      tags.update(value.tag for value in event.summary.value)
  return tags


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, packed_data):
  """(model_dir, completed process) of the seed command line, 20 steps, train_and_eval."""
  model_dir = tmp_path_factory.mktemp("seed_run") / "model"
  return model_dir, _run(_command(model_dir, packed_data, "trainer.train_steps=20"))


def test_seed_command_line_trains_evaluates_and_writes_everything(trained_run):
  model_dir, result = trained_run
  assert result.returncode == 0, result.stderr[-3000:]

  # tf.train.CheckpointManager saves at the first loop (step 10), then every checkpoint_interval.
  assert _checkpoint_steps(model_dir) == [10, 20]
  # Model Garden writes tuples as !!python/tuple, so read params.yaml with its reader.
  encoder = export.load_run_params(str(model_dir)).task.model.encoder.any
  assert (encoder.num_layers, encoder.hidden_size, encoder.token_keep_k) == (4, 64, 32)
  assert encoder.token_loss_beta == 0.995

  assert {"training_loss", "masked_lm_accuracy", "learning_rate", "token_importance_mean",
          "token_importance_std", "steps_per_second"} <= _summary_tags(model_dir / "train")
  assert {"masked_lm_accuracy", "lm_example_loss"} <= _summary_tags(model_dir / "validation")
  assert "masked_lm_accuracy" in result.stderr  # the eval report
  assert "ETA" in result.stderr

  table = _importance_table(model_dir / "ckpt-20")
  special = vocab.special_token_ids(VOCAB)
  assert table.shape == (30522,)
  # [CLS]/[SEP]/[PAD] are never MLM targets: untouched. Frequent words were predicted (their
  # losses start near ln(30522) = 10.3, so the average may move either way from 10).
  assert table[[special.cls, special.sep, special.pad]].tolist() == [INIT] * 3
  the = vocab.load_vocab(VOCAB).index("the")
  assert table[the] != INIT
  assert 0 < np.sum(table != INIT) < 30522


KILL_RUN_STEPS = 80


@pytest.mark.e2e
def test_kill_9_then_same_command_resumes_from_latest_checkpoint(tmp_path, packed_data):
  model_dir = tmp_path / "model"
  # Long enough that the kill lands mid-run; the resumed run trains the rest.
  command = _command(model_dir, packed_data, f"trainer.train_steps={KILL_RUN_STEPS}",
                     "trainer.checkpoint_interval=10", "trainer.max_to_keep=100",
                     "trainer.validation_interval=1000",
                     mode="train")
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
  try:
    deadline = time.monotonic() + 300
    while not [s for s in _checkpoint_steps(model_dir) if s >= 30]:
      assert process.poll() is None, "training ended before it could be killed"
      assert time.monotonic() < deadline
      time.sleep(0.1)
  finally:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
  latest = _checkpoint_steps(model_dir)[-1]
  assert latest < KILL_RUN_STEPS
  before = _importance_table(model_dir / f"ckpt-{latest}")
  # Under one_device the checkpoint holds the input's position too (the resumed run reads on
  # from it: tests/pipelines/test_rehearsal_retry.py compares with an uninterrupted run).
  assert "train_input/.ATTRIBUTES/ITERATOR_STATE" in dict(
      tf.train.list_variables(str(model_dir / f"ckpt-{latest}")))

  result = _run(command)  # the same command, in this process
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"ckpt-{latest}" in result.stderr  # orbit reports the checkpoint it restored
  steps = _checkpoint_steps(model_dir)
  assert steps[-1] == KILL_RUN_STEPS and latest + 10 in steps
  after = _importance_table(model_dir / f"ckpt-{latest + 10}")
  # Ten more steps touch a few hundred ids; a table that restarted from its
  # init would hold 10.0 wherever the restored one had learned something.
  learned = before != INIT
  assert learned.sum() > 100
  # An entry near 10 can round back to exactly 10.0 after an update; a restarted table
  # would hold 10.0 in nearly every learned entry.
  assert np.mean(after[learned] != INIT) > 0.95
  untouched = np.isclose(after, before)
  assert untouched.sum() > 0.9 * len(before)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(trained_run, tmp_path,
                                                                  packed_data):
  # A copy of the seed run (checkpoints at steps 10 and 20) resumes and diverges.
  model_dir = tmp_path / "model"
  shutil.copytree(trained_run[0], model_dir)
  good_table = _importance_table(model_dir / "ckpt-20")

  diverging = _run(_command(
      model_dir, packed_data, "trainer.train_steps=60", "trainer.checkpoint_interval=10",
      "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=1e30",
      "trainer.optimizer_config.warmup.polynomial.warmup_steps=0", mode="train"))
  assert diverging.returncode == 1
  # Model Garden's recovery (trainer.recovery_max_trials: 0) stops the run.
  assert "tokendrop train: The loss value is" in diverging.stderr
  assert f"The last good checkpoint in {model_dir} is kept" in diverging.stderr
  assert "Traceback" not in diverging.stderr
  assert _checkpoint_steps(model_dir) == [10, 20]
  np.testing.assert_array_equal(_importance_table(model_dir / "ckpt-20"), good_table)


ANNEAL_OVERRIDES = ("task.model.encoder.any.token_keep_schedule=anneal",
                    "task.model.encoder.any.token_keep_anneal_fraction=0.5",
                    "task.model.encoder.any.token_keep_anneal_stages=2")


@pytest.mark.e2e
@pytest.mark.parametrize("overrides", [(), ANNEAL_OVERRIDES], ids=["constant", "anneal"])
def test_mirrored_on_two_cpu_devices_trains(tmp_path, packed_data, overrides):
  model_dir = tmp_path / "model"
  # A process of its own: the CPU split must come before TF starts, and collective ops keep
  # per-process state that a second MirroredStrategy run in one process trips over.
  result = _run_process(_command(model_dir, packed_data, "trainer.train_steps=10",
                                 "runtime.distribution_strategy=mirrored", *overrides,
                                 mode="train", extra_flags=["--cpu_devices=2"]))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "MirroredStrategy with 2 replicas" in result.stderr
  assert _checkpoint_steps(model_dir) == [10]


REPLICA_CHECK = """
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from official.core import task_factory, train_utils
from trainer import configs, task
# As `tokendrop train` builds it: the data's record decides how the files are read.
params = configs.build_experiment(configs.PRETRAINING, sys.argv[1].split(","), sys.argv[2])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
  t = task_factory.get_task(params.task)
  model = t.build_model()
  optimizer = train_utils.create_optimizer(t, params)
  metrics = t.build_metrics(training=True)
dataset = strategy.distribute_datasets_from_function(
    lambda context: t.build_inputs(params.task.train_data, context))
iterator = iter(dataset)

@tf.function
def step(inputs):
  strategy.run(t.train_step, args=(inputs, model, optimizer, metrics))

for _ in range(6):
  step(next(iterator))
replicas = [v.numpy() for v in model.token_importance.table.values]
print("REPLICAS", len(replicas), int(np.sum(replicas[0] != 10.0)),
      bool(np.array_equal(replicas[0], replicas[1])))
"""


@pytest.mark.e2e
def test_mirrored_replicas_hold_identical_importance_tables(packed_data):
  command = _command("unused", packed_data)
  config_files = ",".join(f.split("=", 1)[1] for f in command if f.startswith("--config_file"))
  override = next(f.split("=", 1)[1] for f in command if f.startswith("--params_override"))
  result = _run_process([sys.executable, "-c", REPLICA_CHECK, config_files, override])
  assert result.returncode == 0, result.stderr[-3000:]
  replicas, learned, identical = result.stdout.split("REPLICAS")[1].split()
  assert replicas == "2" and int(learned) > 50 and identical == "True"


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.e2e
def test_multi_worker_mirrored_with_two_local_workers(tmp_path, packed_data):
  model_dir = tmp_path / "model"
  workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
  command = _command(model_dir, packed_data, "trainer.train_steps=10",
                     "runtime.distribution_strategy=multi_worker_mirrored",
                     "task.train_data.sharding=false", mode="train")
  processes = []
  for index in range(2):
    tf_config = json.dumps({"cluster": {"worker": workers},
                            "task": {"type": "worker", "index": index}})
    processes.append(subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "TF_CONFIG": tf_config}))
  outputs = [p.communicate(timeout=600) for p in processes]
  for process, (_, stderr) in zip(processes, outputs, strict=True):
    assert process.returncode == 0, stderr[-3000:]
  assert _checkpoint_steps(model_dir) == [10]  # the chief writes; the other worker's copy is temp


def _replace_flag(command, flag, value=None):
  """The command with --flag=... replaced by --flag=value (or removed when value is None)."""
  kept = [arg for arg in command if not arg.startswith(f"--{flag}=")]
  return kept if value is None else [*kept, f"--{flag}={value}"]


@pytest.mark.parametrize("overrides,flags,message", [
    (("task.model.encoder.any.token_keep_kk=3",), {}, "params_override does not fit"),
    (("task.model.encoder.any.token_drop_layer=3",), {},
     "invalid experiment config: token_drop_layer"),
    (("task.train_data.input_path=/nonexistent/*.gz",), {}, "matches no files"),
    ((), {"config_file": "configs/missing.yaml"},
     "config file 'configs/missing.yaml' does not exist"),
    ((), {"experiment": "nope"}, "unknown experiment 'nope'"),
    ((), {"mode": None}, "--mode is required"),
    # The accelerator the config asks for is not here: one line, not a TPU op's traceback.
    (("runtime.distribution_strategy=tpu",), {"tpu": "local"},
     "runtime.distribution_strategy is tpu but TensorFlow finds no TPU here"),
    (("runtime.distribution_strategy=mirrored", "runtime.num_gpus=2"), {},
     "runtime.num_gpus is 2 but TensorFlow sees 0 GPU(s) here"),
])
def test_config_mistakes_are_one_clear_line(tmp_path, packed_data, overrides, flags, message):
  command = _command(tmp_path / "model", packed_data, *overrides, mode="train")
  for flag, value in flags.items():
    command = [arg for arg in command if flag == "config_file" or
               not arg.startswith(f"--{flag}=")]
    command += [] if value is None else [f"--{flag}={value}"]
  result = _run(command)
  assert result.returncode == 2, result.stderr[-3000:]
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith("tokendrop train: ") and message in last_line, last_line
  assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory, trained_run):
  """(model_dir, export dir, completed `tokendrop export` process) of the seed run."""
  model_dir, result = trained_run
  assert result.returncode == 0, result.stderr[-3000:]
  out = tmp_path_factory.mktemp("export") / "export"
  exported = _run([sys.executable, "-m", "pipelines.cli", "export", f"--model_dir={model_dir}",
                   f"--output_dir={out}"])
  return model_dir, out, exported


def _random_inputs(batch=2, length=64):
  rng = np.random.default_rng(0)
  return {"input_word_ids": tf.constant(rng.integers(0, 30522, (batch, length)), tf.int32),
          "input_mask": tf.ones((batch, length), tf.int32),
          "input_type_ids": tf.zeros((batch, length), tf.int32)}


def _trained_model(model_dir, **task_overrides):
  """The run's model restored from its last checkpoint (built like `tokendrop export` does)."""
  from official.core import task_factory

  params = export.load_run_params(str(model_dir))
  params.task.override(task_overrides)
  model = task_factory.get_task(params.task).build_model()
  model(export.run.pretraining_inputs(params))
  return params, model


def test_export_cli_writes_a_standard_bert_that_matches_the_trained_encoder(exported_run):
  from trainer import contract, export

  model_dir, out, exported = exported_run
  assert exported.returncode == 0, exported.stderr[-3000:]
  tf2, hf = out / contract.TF2_DIR, out / contract.HF_DIR
  assert {p.name for p in tf2.iterdir()} >= {contract.BERT_CONFIG_FILE, contract.VOCAB_FILE,
                                             contract.CHECKPOINT_NAME + ".index"}
  assert {"config.json", "model.safetensors", contract.VOCAB_FILE} <= {p.name
                                                                     for p in hf.iterdir()}
  assert (out / contract.SAVED_MODEL_DIR / "saved_model.pb").exists()
  # The trained model, restored from the run's checkpoint and run without dropping ...
  params, trained = _trained_model(model_dir)
  tf.train.Checkpoint(model=trained).read(str(model_dir / "ckpt-20")).expect_partial()
  # ... against a plain BertEncoderV2 built from the exported config, which describes the
  # trained encoder, and restored from the export, every variable matched.
  encoder = params.task.model.encoder.any
  bert_config = json.loads((tf2 / contract.BERT_CONFIG_FILE).read_text())
  assert ({key: bert_config[key] for key in ("num_hidden_layers", "hidden_size",
                                              "num_attention_heads", "intermediate_size",
                                              "vocab_size", "max_position_embeddings")}
          == {"num_hidden_layers": encoder.num_layers, "hidden_size": encoder.hidden_size,
              "num_attention_heads": encoder.num_attention_heads,
              "intermediate_size": encoder.intermediate_size, "vocab_size": encoder.vocab_size,
              "max_position_embeddings": encoder.max_position_embeddings})
  plain = export.build_bert_encoder_from_bert_config(str(tf2 / contract.BERT_CONFIG_FILE))
  assert len(plain.transformer_layers) == encoder.num_layers
  export.restore_encoder(plain, str(tf2 / contract.CHECKPOINT_NAME))
  inputs = _random_inputs()
  np.testing.assert_allclose(plain(inputs)["sequence_output"].numpy(),
                             trained.encoder_network(inputs)["sequence_output"].numpy(),
                             atol=1e-5)


def test_hugging_face_export_warm_starts_the_task_with_the_same_outputs(exported_run):
  model_dir, out, exported = exported_run
  assert exported.returncode == 0, exported.stderr[-3000:]
  from official.core import task_factory

  params, trained = _trained_model(model_dir)
  tf.train.Checkpoint(model=trained).read(str(model_dir / "ckpt-20")).expect_partial()
  params.task.init_checkpoint = str(out / "hf")
  task = task_factory.get_task(params.task)
  warm = task.build_model()
  warm(export.run.pretraining_inputs(params))
  task.initialize(warm)
  inputs = dict(_random_inputs(), masked_lm_positions=tf.constant([[1, 5, 9]] * 2))
  for key in ("sequence_output", "mlm_logits"):
    np.testing.assert_allclose(warm(inputs)[key].numpy(), trained(inputs)[key].numpy(),
                               atol=1e-4)


def test_eval_and_continuous_eval_modes_score_the_last_checkpoint(trained_run, packed_data):
  model_dir, result = trained_run
  assert result.returncode == 0, result.stderr[-3000:]
  for mode in ("eval", "continuous_eval"):
    evaluated = _run(_command(model_dir, packed_data, "trainer.train_steps=20", mode=mode))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "masked_lm_accuracy" in evaluated.stderr
  assert _checkpoint_steps(model_dir) == [10, 20]  # evaluation never writes checkpoints


def test_float16_mixed_precision_trains_with_loss_scaling(tmp_path, packed_data):
  model_dir = tmp_path / "model"
  result = _run(_command(model_dir, packed_data, "trainer.train_steps=10",
                         "runtime.mixed_precision_dtype=float16", mode="train"))
  assert result.returncode == 0, result.stderr[-3000:]
  assert _checkpoint_steps(model_dir) == [10]
  reader = tf.train.load_checkpoint(str(model_dir / "ckpt-10"))
  # The LossScaleOptimizer's dynamic scale is in the checkpoint; variables stay float32.
  assert any("loss_scale" in k for k in reader.get_variable_to_shape_map())
  weights = {k: d for k, d in reader.get_variable_to_dtype_map().items()
             if k.startswith("encoder/") and k.endswith("embeddings/.ATTRIBUTES/VARIABLE_VALUE")}
  assert weights and set(weights.values()) == {tf.float32}, weights


def test_export_cli_without_a_run_is_one_clear_line(tmp_path):
  result = _run([sys.executable, "-m", "pipelines.cli", "export", f"--model_dir={tmp_path}",
                 f"--output_dir={tmp_path / 'out'}"])
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      f"tokendrop export: {tmp_path}/params.yaml does not exist; --model_dir must be the "
      "--model_dir of a `tokendrop train` run (it writes params.yaml there)")


def test_evaluation_reports_full_depth_and_as_trained_everywhere(trained_run):
  model_dir, result = trained_run
  assert result.returncode == 0, result.stderr[-3000:]
  both = {"validation_loss", "lm_example_loss", "masked_lm_accuracy"}
  both |= {f"{name}_as_trained" for name in both}
  assert both <= _summary_tags(model_dir / "validation")
  # The eval log line: its output dict follows, one metric a line, up to the closing brace.
  report = result.stderr.rsplit("eval time:", 1)[-1].split("}", 1)[0]
  assert "'validation_loss':" in report and "'validation_loss_as_trained':" in report, report
  metrics = json.loads((model_dir / "eval_metrics.json").read_text())
  assert metrics["step"] == 20 and both <= set(metrics)
  # Dropping tokens at evaluation changes the loss: the two sets are measured, not copied.
  assert metrics["validation_loss_as_trained"] != metrics["validation_loss"]


def test_the_baseline_scores_the_same_both_ways(trained_run, packed_data, tmp_path):
  trained_dir, result = trained_run
  assert result.returncode == 0, result.stderr[-3000:]
  model_dir = tmp_path / "model"
  shutil.copytree(trained_dir, model_dir)
  command = [part.replace("token_drop_bert/pretraining", "token_drop_bert/baseline")
             for part in _command(model_dir, packed_data, "trainer.train_steps=20", mode="eval")]
  evaluated = _run(command)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  metrics = json.loads((model_dir / "eval_metrics.json").read_text())
  for name in ("validation_loss", "lm_example_loss", "masked_lm_accuracy"):
    assert metrics[f"{name}_as_trained"] == metrics[name], name


def test_estimator_and_keep_schedule_are_reachable_from_params_override(tmp_path, packed_data):
  model_dir = tmp_path / "model"
  result = _run(_command(model_dir, packed_data, "trainer.train_steps=20",
                         "task.model.encoder.any.token_loss_estimator=bias_corrected",
                         *ANNEAL_OVERRIDES))
  assert result.returncode == 0, result.stderr[-3000:]
  encoder = export.load_run_params(str(model_dir)).task.model.encoder.any
  assert (encoder.token_loss_estimator, encoder.token_keep_schedule) == ("bias_corrected",
                                                                         "anneal")
  reader = tf.train.load_checkpoint(str(model_dir / "ckpt-20"))
  counts = reader.get_tensor("model/token_importance/counts/.ATTRIBUTES/VARIABLE_VALUE")
  assert counts.max() <= 20 and counts.sum() > 0
  # The run ended at full length (stages from steps 10 and 15), so as trained is full depth.
  metrics = json.loads((model_dir / "eval_metrics.json").read_text())
  assert metrics["validation_loss_as_trained"] == metrics["validation_loss"]
