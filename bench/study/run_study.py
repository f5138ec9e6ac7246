"""Issue 7: token dropping against BERT in miniature, at equal steps and equal compute.

    scripts/in-env python bench/study/run_study.py            # the study: bench/study/README.md
    scripts/in-env python bench/study/run_study.py --smoke    # minutes; page under out/study_smoke
    scripts/in-env python bench/study/run_study.py --page_only  # the page again, from out/study

Stages, each a subprocess of the project's own command lines:
  1. `tokendrop prepare-data` on the IMDB reviews (dynamic masking, held-out validation split);
  2. three pretraining runs with the same seed, data order and masks, differing only in
     `token_selection`: importance (the paper), none (BERT), random (random-LTD-style);
     validation with the full model every --eval_interval steps;
  3. the baseline also keeps the checkpoint at the step where its analytic FLOPs match the
     token-drop run's total (rounded to --steps_per_loop), which is evaluated on its own;
  4. export and fine-tune every model on rt_sst2 with --finetune_seeds, and the baseline's
     first checkpoint (step --steps_per_loop, nearly untrained) as the no-pretraining
     reference;
  5. the importance analysis and the page (results.py).
"""

import argparse
import dataclasses
import datetime
import json
import math
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import step_cost  # noqa: E402
from bench.study import results  # noqa: E402
from trainer import vocab  # noqa: E402
from trainer.encoder import TokenDropSchedule  # noqa: E402

# name -> (registered experiment, token_selection)
RUNS = {
    "token_drop": ("token_drop_bert/pretraining", "importance"),
    "baseline": ("token_drop_bert/baseline", "none"),
    "random": ("token_drop_bert/pretraining", "random"),
}
# The checkpoints fine-tuned downstream, in page order.
FINETUNED = ("token_drop", "baseline", "baseline_equal_compute", "random", "baseline_early")


@dataclasses.dataclass(frozen=True)
class Scale:
  num_layers: int
  hidden_size: int
  seq_length: int
  keep_ratio: float
  batch_size: int
  train_steps: int
  eval_interval: int
  steps_per_loop: int
  validation_batches: int
  learning_rate: float
  max_predictions: int

  @property
  def num_heads(self) -> int:
    return max(1, self.hidden_size // 64)

  def shape(self) -> step_cost.Shape:
    keep_k = TokenDropSchedule.from_encoder_args(
        self.num_layers, keep_ratio=self.keep_ratio).keep_count(self.seq_length)
    return step_cost.Shape("study", self.num_layers, self.hidden_size, self.num_heads,
                           self.seq_length, keep_k, self.batch_size, self.max_predictions)


def training_flops_per_step(scale: Scale, token_drop: bool, vocab_size: int) -> float:
  """Analytic matmul FLOPs of one training step: 3x the forward pass (the backward pass
  costs about twice the forward), as bench/step_cost.py counts them (no embeddings,
  LayerNorm, softmax)."""
  shape = scale.shape()
  schedule = TokenDropSchedule.from_encoder_args(
      shape.num_layers, keep_k=shape.keep_k if token_drop else None,
      keep_ratio=None if token_drop else 1.0)
  encoder = sum(step_cost.layer_flops(q, k, shape.hidden_size, 4 * shape.hidden_size)
                for q, k in schedule.attention_lengths(shape.seq_length))
  head = 2 * shape.max_predictions * shape.hidden_size * (shape.hidden_size + vocab_size)
  return 3.0 * shape.batch_size * (encoder + head)


def _run(command: list[str], log: pathlib.Path) -> float:
  """Runs a command with its output in `log`; returns its wall time. Fails with the log's tail."""
  print(f"$ {' '.join(command)}", flush=True)
  start = time.monotonic()
  with open(log, "w") as out:
    result = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
  seconds = time.monotonic() - start
  if result.returncode != 0:
    tail = log.read_text().splitlines()[-30:]
    sys.exit(f"run_study: command failed ({result.returncode}) after {seconds:.0f} s, log "
             f"{log}:\n" + "\n".join(tail))
  print(f"  done in {seconds:.0f} s", flush=True)
  return seconds


def prepare_data(args, work: pathlib.Path) -> pathlib.Path:
  data = work / "data"
  wanted = {"seq_length": args.seq_length, "max_predictions_per_seq": args.max_predictions,
            "validation_fraction": args.validation_fraction, "masking": "dynamic"}
  if (data / "stats.json").exists() and not args.overwrite:
    made_with = json.loads((data / "stats.json").read_text())["config"]
    if all(made_with.get(key) == value for key, value in wanted.items()):
      print(f"reusing {data} (same settings; --overwrite prepares it again)", flush=True)
      return data
  _run([sys.executable, "-m", "pipelines.cli", "prepare-data", "--input", "packaged:imdb",
        "--output_dir", str(data), "--vocab", str(vocab.bert_base_uncased_vocab_path()),
        "--seq_length", str(args.seq_length), "--masking", "dynamic",
        "--max_predictions_per_seq", str(args.max_predictions),
        "--validation_fraction", str(args.validation_fraction), "--no-write_transform_fn",
        "--overwrite"], work / "prepare_data.log")
  return data


def experiment_config(scale: Scale, data: pathlib.Path, selection: str, validation_steps: int,
                      checkpoint_interval: int, max_to_keep: int) -> dict:
  data_config = {
      "global_batch_size": scale.batch_size, "seq_length": scale.seq_length,
      "max_predictions_per_seq": scale.max_predictions, "use_next_sentence_label": False,
      "use_v2_feature_names": True, "file_type": "tfrecord_compressed", "masking": "dynamic",
  }
  warmup = max(1, scale.train_steps // 10)
  return {
      "runtime": {"distribution_strategy": "one_device", "enable_xla": False},
      "task": {
          "vocab_file": str(data / "vocab.txt"),
          "model": {"cls_heads": [], "encoder": {"type": "any", "any": {
              "num_layers": scale.num_layers, "hidden_size": scale.hidden_size,
              "num_attention_heads": scale.num_heads,
              "intermediate_size": 4 * scale.hidden_size,
              "max_position_embeddings": max(128, scale.seq_length),
              "token_keep_ratio": scale.keep_ratio, "token_selection": selection}}},
          "train_data": {**data_config, "input_path": str(data / "train" / "*")},
          "validation_data": {**data_config, "input_path": str(data / "validation" / "*"),
                              "is_training": False, "drop_remainder": False},
      },
      "trainer": {
          "train_steps": scale.train_steps, "steps_per_loop": scale.steps_per_loop,
          "summary_interval": scale.steps_per_loop, "validation_interval": scale.eval_interval,
          "validation_steps": validation_steps, "checkpoint_interval": checkpoint_interval,
          "max_to_keep": max_to_keep,
          "optimizer_config": {
              "learning_rate": {"polynomial": {"initial_learning_rate": scale.learning_rate,
                                               "decay_steps": scale.train_steps}},
              "warmup": {"polynomial": {"warmup_steps": warmup}}},
      },
  }


def _train(name: str, config: dict, model_dir: pathlib.Path, seed: int, mode: str,
           work: pathlib.Path) -> float:
  experiment, _ = RUNS[name]
  config_file = work / f"{name}.yaml"
  config_file.write_text(yaml.safe_dump(config, sort_keys=False))
  return _run([sys.executable, str(REPO / "bench/study/seeded_train.py"), str(seed),
               f"--experiment={experiment}", f"--config_file={config_file}",
               f"--model_dir={model_dir}", f"--mode={mode}"],
              work / f"{name}_{mode}.log")


def _checkpoint_steps(model_dir: pathlib.Path) -> list[int]:
  return sorted(int(p.name[len("ckpt-"):-len(".index")]) for p in model_dir.glob("ckpt-*.index"))


def _importance_table(prefix: pathlib.Path) -> np.ndarray:
  reader = tf.train.load_checkpoint(str(prefix))
  keys = [k for k in reader.get_variable_to_shape_map()
          if "token_importance" in k and k.endswith("VARIABLE_VALUE")]
  if len(keys) != 1:
    raise ValueError(f"{prefix}: expected one token_importance variable, found {keys}")
  return reader.get_tensor(keys[0])


def _keep_only(model_dir: pathlib.Path, steps: set[int]) -> None:
  """Deletes the other checkpoints (each is ~100 MB with the optimizer's slots)."""
  for step in _checkpoint_steps(model_dir):
    if step not in steps:
      for path in model_dir.glob(f"ckpt-{step}.*"):
        path.unlink()


def equal_compute_step(scale: Scale, vocab_size: int) -> tuple[int, float]:
  """(baseline step whose cumulative FLOPs match the token-drop run's total, rounded to a
  training-loop boundary so a checkpoint can be written there; the exact fractional step)."""
  exact = scale.train_steps * (training_flops_per_step(scale, True, vocab_size)
                               / training_flops_per_step(scale, False, vocab_size))
  rounded = max(scale.steps_per_loop,
                round(exact / scale.steps_per_loop) * scale.steps_per_loop)
  return rounded, exact


def pretrain(args, scale: Scale, data: pathlib.Path, work: pathlib.Path,
             vocab_size: int) -> dict:
  stats = json.loads((data / "stats.json").read_text())
  validation_steps = min(args.validation_batches,
                         math.ceil(stats["examples"]["validation"] / scale.batch_size))
  matched_step, _ = equal_compute_step(scale, vocab_size)
  # Orbit saves after the first training loop (step steps_per_loop), then at the first loop
  # boundary at least checkpoint_interval steps after the last save, and at the end.
  first_save = scale.steps_per_loop
  most = scale.train_steps // scale.steps_per_loop + 1
  checkpointing = {
      # About every eval interval, for the importance table's evolution.
      "token_drop": (scale.eval_interval, most),
      # Steps first_save and matched_step, then the last step.
      "baseline": (matched_step - first_save if matched_step > first_save
                   else scale.train_steps, most),
      "random": (scale.train_steps, most),
  }
  runs = {}
  for name, (_, selection) in RUNS.items():
    model_dir = _model_dir(work, name)
    if model_dir.exists():
      shutil.rmtree(model_dir)
    interval, keep = checkpointing[name]
    config = experiment_config(scale, data, selection, validation_steps, interval, keep)
    seconds = _train(name, config, model_dir, args.seed, "train_and_eval", work)
    runs[name] = {"model_dir": model_dir, "process_seconds": seconds, "config": config}

  drop_dir = runs["token_drop"]["model_dir"]
  tables = {step: _importance_table(drop_dir / f"ckpt-{step}")
            for step in _checkpoint_steps(drop_dir)}
  np.savez_compressed(work / "importance_tables.npz",
                      steps=np.array(sorted(tables)),
                      tables=np.stack([tables[s] for s in sorted(tables)]))
  _keep_only(drop_dir, {scale.train_steps})
  base_dir = runs["baseline"]["model_dir"]
  if matched_step not in _checkpoint_steps(base_dir):
    sys.exit(f"run_study: the baseline has no checkpoint at step {matched_step} "
             f"(has {_checkpoint_steps(base_dir)})")
  # The first save stays too: fine-tuning it measures what pretraining added downstream.
  _keep_only(base_dir, {first_save, matched_step, scale.train_steps})
  runs["baseline_early"] = {"model_dir": base_dir, "step": first_save}

  # The equal-compute baseline, evaluated alone: a model_dir whose latest checkpoint is it.
  matched_dir = _model_dir(work, "baseline_equal_compute")
  if matched_dir.exists():
    shutil.rmtree(matched_dir)
  matched_dir.mkdir(parents=True)
  for path in base_dir.glob(f"ckpt-{matched_step}.*"):
    (matched_dir / path.name).hardlink_to(path)
  (matched_dir / "checkpoint").write_text(
      f'model_checkpoint_path: "ckpt-{matched_step}"\n'
      f'all_model_checkpoint_paths: "ckpt-{matched_step}"\n')
  _train("baseline", runs["baseline"]["config"], matched_dir, args.seed, "eval", work)
  runs["baseline_equal_compute"] = {"model_dir": matched_dir, "step": matched_step}
  return runs


def _model_dir(work: pathlib.Path, name: str) -> pathlib.Path:
  return work / "models" / name


def _report_path(work: pathlib.Path, name: str) -> pathlib.Path:
  return work / "finetune" / name / "glue_report.json"


def finetune(args, runs: dict, scale: Scale, work: pathlib.Path) -> None:
  """Exports each model in FINETUNED and fine-tunes it on rt_sst2 (see _report_path)."""
  models = {
      "token_drop": (runs["token_drop"]["model_dir"], scale.train_steps),
      "baseline": (runs["baseline"]["model_dir"], scale.train_steps),
      "baseline_equal_compute": (runs["baseline"]["model_dir"],
                                 runs["baseline_equal_compute"]["step"]),
      "random": (runs["random"]["model_dir"], scale.train_steps),
      "baseline_early": (runs["baseline"]["model_dir"], runs["baseline_early"]["step"]),
  }
  assert tuple(models) == FINETUNED
  for name, (model_dir, step) in models.items():
    export = work / "exports" / name
    if export.exists():
      shutil.rmtree(export)
    _run([sys.executable, "-m", "pipelines.cli", "export", f"--model_dir={model_dir}",
          f"--output_dir={export}", f"--checkpoint={model_dir / f'ckpt-{step}'}"],
         work / f"export_{name}.log")
    output = _report_path(work, name).parent
    command = [sys.executable, "-m", "pipelines.cli", "evaluate-glue",
               "--checkpoint", str(export), "--tasks", "rt_sst2", "--output_dir", str(output),
               "--learning_rates", args.finetune_learning_rates,
               "--seeds", args.finetune_seeds, "--epochs", str(args.finetune_epochs),
               "--max_seq_length", str(args.finetune_seq_length)]
    if args.finetune_max_train_examples:
      command += ["--max_train_examples", str(args.finetune_max_train_examples)]
    _run(command, work / f"finetune_{name}.log")


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  add = parser.add_argument
  add("--smoke", action="store_true",
      help="tiny scale end to end (a few minutes); the page goes to out/study_smoke unless "
      "--output_dir is given, never to bench/study")
  add("--output_dir", help="where README.md and plots/ go (default: bench/study, or "
      "out/study_smoke with --smoke)")
  add("--work_dir", help="data, models, logs (default: out/study, or out/study_smoke/work)")
  add("--overwrite", action="store_true", help="prepare the data again even if it exists")
  add("--page_only", action="store_true",
      help="only write the page again, from the run already in --work_dir (its settings, "
      "times and date come from that run's study_run.json; other flags are ignored)")
  add("--seed", type=int, default=1, help="pretraining seed, shared by every run")
  add("--num_layers", type=int, default=4)
  add("--hidden_size", type=int, default=256)
  add("--seq_length", type=int, default=128)
  add("--keep_ratio", type=float, default=0.5)
  add("--batch_size", type=int, default=16)
  add("--train_steps", type=int, default=1000)
  add("--eval_interval", type=int, default=100)
  add("--steps_per_loop", type=int, default=10)
  add("--validation_batches", type=int, default=25,
      help="at most this many validation batches per evaluation (the same ones each time)")
  add("--learning_rate", type=float, default=5e-4)
  add("--max_predictions", type=int, default=20)
  add("--validation_fraction", type=float, default=0.02)
  # lr 3e-4 on the first 4000 examples made every model predict one class; 1e-3 on all
  # 7,665 reached 0.76 with the token-drop checkpoint (1e-4: 0.72, 3e-5: 0.64; seed 1).
  add("--finetune_learning_rates", default="1e-3")
  add("--finetune_seeds", default="1,2,3")
  add("--finetune_epochs", type=int, default=2)
  add("--finetune_seq_length", type=int, default=64,
      help="64 tokens truncate 0.08%% of the rt_sst2 training sentences")
  add("--finetune_max_train_examples", type=int, default=0, help="0 for all")
  add("--top_tokens", type=int, default=20, help="rows in the kept/dropped token tables")
  return parser


SMOKE = {"num_layers": 4, "hidden_size": 64, "seq_length": 64, "batch_size": 8,
         "train_steps": 60, "eval_interval": 20, "validation_batches": 4,
         "max_predictions": 10, "finetune_epochs": 1, "finetune_max_train_examples": 300,
         "finetune_seq_length": 32, "finetune_learning_rates": "1e-3",
         "finetune_seeds": "1,2,3"}


def main(argv: list[str] | None = None) -> int:
  parser = _parser()
  if parser.parse_args(argv).smoke:
    parser.set_defaults(**SMOKE)  # flags given explicitly still win
  args = parser.parse_args(argv)
  default_out = REPO / ("out/study_smoke" if args.smoke else "bench/study")
  output = pathlib.Path(args.output_dir) if args.output_dir else default_out
  if args.smoke and output.resolve() == (REPO / "bench/study").resolve():
    sys.exit("run_study: --smoke never writes bench/study; give another --output_dir")
  work = pathlib.Path(args.work_dir) if args.work_dir else (
      output / "work" if args.smoke else REPO / "out/study")
  if args.train_steps % args.eval_interval or args.eval_interval % args.steps_per_loop:
    sys.exit("run_study: --train_steps must be a multiple of --eval_interval, and "
             "--eval_interval of --steps_per_loop")
  work.mkdir(parents=True, exist_ok=True)
  if args.page_only:
    if not _record_path(work).exists():
      sys.exit(f"run_study: --page_only needs a finished run in {work} (no "
               f"{_record_path(work).name}): run the study first, or give its --work_dir")
    record = json.loads(_record_path(work).read_text())
    print(f"writing the page from {work} (the run of {record['run_date']})", flush=True)
    write_page(record, work, output)
    return 0
  start = time.monotonic()
  scale = _scale(args)
  stage_seconds = {}
  t = time.monotonic()
  data = prepare_data(args, work)
  stage_seconds["data"] = time.monotonic() - t
  t = time.monotonic()
  runs = pretrain(args, scale, data, work, _vocab_size())
  stage_seconds["pretraining"] = time.monotonic() - t
  t = time.monotonic()
  finetune(args, runs, scale, work)
  stage_seconds["fine-tuning"] = time.monotonic() - t
  command = "scripts/in-env python bench/study/run_study.py " + " ".join(
      sys.argv[1:] if argv is None else argv)
  record = {"command": command.strip(), "args": vars(args), "stage_seconds": stage_seconds,
            "run_date": datetime.date.today().isoformat()}
  _record_path(work).write_text(json.dumps(record, indent=1))
  write_page(record, work, output)
  print(f"wrote {output / 'README.md'} ({time.monotonic() - start:.0f} s in all)")
  return 0


def _record_path(work: pathlib.Path) -> pathlib.Path:
  """What a run saves for --page_only: its command, settings, stage times and date."""
  return work / "study_run.json"


def _scale(args) -> Scale:
  return Scale(args.num_layers, args.hidden_size, args.seq_length, args.keep_ratio,
               args.batch_size, args.train_steps, args.eval_interval, args.steps_per_loop,
               args.validation_batches, args.learning_rate, args.max_predictions)


def _vocab_size() -> int:
  return len(vocab.load_vocab(vocab.bert_base_uncased_vocab_path()))


def write_page(record: dict, work: pathlib.Path, output: pathlib.Path) -> None:
  """The results page from a run's work dir and its record (see _record_path)."""
  args = argparse.Namespace(**record["args"])
  scale, vocab_size = _scale(args), _vocab_size()
  flops = {"token_drop": training_flops_per_step(scale, True, vocab_size),
           "baseline": training_flops_per_step(scale, False, vocab_size)}
  flops["random"] = flops["token_drop"]
  ratios = step_cost.analytic_ratios(scale.shape(), vocab_size)
  if not math.isclose(flops["token_drop"] / flops["baseline"], ratios[1], rel_tol=1e-9):
    raise AssertionError("the study's FLOP count disagrees with bench/step_cost.py")
  matched_step, exact_step = equal_compute_step(scale, vocab_size)
  models = {name: _model_dir(work, name) for name in (*RUNS, "baseline_equal_compute")}
  results.write_page(results.StudyInputs(
      output_dir=output, work_dir=work, data_dir=work / "data", scale=scale,
      args=record["args"], command=record["command"], runs=models,
      flops_per_step=flops, analytic_ratios=ratios,
      base_analytic_ratio=step_cost.analytic_ratios(step_cost.SHAPES["base"], vocab_size)[1],
      matched_step=matched_step, exact_matched_step=exact_step,
      finetune_reports={name: _report_path(work, name) for name in FINETUNED},
      stage_seconds=record["stage_seconds"], run_date=record["run_date"]))


if __name__ == "__main__":
  sys.exit(main())
