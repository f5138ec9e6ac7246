"""Every count the pipeline keeps, as Beam counters and as exact data for stats.json.

Each DoFn counts into a `Tally` and flushes it once per chunk: the same numbers
go to a Beam counter (live in the runner's UI) and, as a side output, to a sum
computed as data. stats.json is written from that sum, so it is exact on every
runner, retries included.
"""

import collections
import json
from collections.abc import Iterable, Iterator

import apache_beam as beam

NAMESPACE = "tokenize_pack"
STATS_TAG = "stats"

# Flat counter names, each with what it counts; stats.json nests them.
COUNTERS = {
    "files_read": "input files opened",
    "files_skipped_binary": "files skipped because they hold NUL bytes (binary, or UTF-16)",
    "files_empty": "files with no text at all",
    "bytes_read": "bytes of (decompressed) input",
    "invalid_utf8_replacements": "invalid UTF-8 sequences (or JSON lone surrogates) -> U+FFFD",
    "documents_read": "documents (or JSONL records, or TFRecord records) found in the input",
    "documents_dropped_empty_text": "JSONL records or Examples whose text is blank",
    "documents_dropped_invalid_json": "JSONL lines that are not a JSON object",
    "documents_dropped_missing_text_field": "JSONL records or Examples without the --text_field",
    "documents_dropped_non_string_text": "JSONL records or Examples whose --text_field is not "
                                         "text (a string; an Example's bytes_list)",
    "documents_dropped_invalid_example": "TFRecord records that are not a tf.train.Example",
    "documents_dropped_no_tokens": "documents that tokenize to nothing",
    "documents_split": "documents longer than --max_document_chars",
    "documents_split_pieces": "pieces those documents were split into",
    "documents_kept": "documents (and pieces) that were tokenized and packed",
    "documents_train": "kept documents assigned to train",
    "documents_validation": "kept documents assigned to validation",
    "tokens": "WordPiece tokens of the kept documents",
    "unk_tokens": "[UNK] tokens among them",
    "examples_train": "train examples written (dupe_factor copies included)",
    "examples_validation": "validation examples written (dupe_factor copies included)",
    "positions_total": "positions of the packed examples (examples x seq_length, before dupes)",
    "positions_real": "of those, positions holding a token ([CLS] and [SEP] included)",
    "masked_positions": "masked_lm_weights that are 1 (static masking)",
    "next_sentence_random": "sentence pairs whose B segment is a random one (label 1)",
    "next_sentence_actual": "sentence pairs whose B segment is the actual next one (label 0)",
    "next_sentence_unpaired": "one-segment documents alone in their chunk: no pair, no example",
}


class Tally:
  """One chunk's counts; `flush` moves them to Beam counters and the stats side output."""

  def __init__(self):
    self._counts = collections.Counter()

  def add(self, name: str, amount: int = 1) -> None:
    if name not in COUNTERS:
      raise KeyError(f"unknown counter {name!r}")
    self._counts[name] += int(amount)

  def flush(self) -> Iterator[beam.pvalue.TaggedOutput]:
    counts = {name: value for name, value in self._counts.items() if value}
    self._counts.clear()
    for name, value in counts.items():
      beam.metrics.Metrics.counter(NAMESPACE, name).inc(value)
    if counts:
      yield beam.pvalue.TaggedOutput(STATS_TAG, counts)


class SumCounts(beam.CombineFn):
  """Adds up the flushed tallies; exact, since it is data, not metrics."""

  def create_accumulator(self) -> dict[str, int]:
    return {}

  def add_input(self, total: dict[str, int], counts: dict[str, int]) -> dict[str, int]:
    for name, value in counts.items():
      total[name] = total.get(name, 0) + value
    return total

  def merge_accumulators(self, totals: Iterable[dict[str, int]]) -> dict[str, int]:
    merged = {}
    for total in totals:
      self.add_input(merged, total)
    return merged

  def extract_output(self, total: dict[str, int]) -> dict[str, int]:
    return {name: total.get(name, 0) for name in COUNTERS}


def counts_from_metrics(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
  """The committed value of every counter, 0 for those never incremented."""
  query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
  counts = dict.fromkeys(COUNTERS, 0)
  for counter in query["counters"]:
    if counter.key.metric.name in counts:
      counts[counter.key.metric.name] += counter.committed
  return counts


def _ratio(numerator: int, denominator: int) -> float:
  return round(numerator / denominator, 6) if denominator else 0.0


def nest(counts: dict[str, int]) -> dict:
  """The stats.json layout: counts grouped by what they describe, with derived rates."""
  c = counts
  return {
      "files": {"read": c["files_read"], "skipped_binary": c["files_skipped_binary"],
                "empty": c["files_empty"]},
      "bytes_read": c["bytes_read"],
      "invalid_utf8_replacements": c["invalid_utf8_replacements"],
      "documents": {
          "read": c["documents_read"],
          "dropped": {
              "empty_text": c["documents_dropped_empty_text"],
              "invalid_json": c["documents_dropped_invalid_json"],
              "missing_text_field": c["documents_dropped_missing_text_field"],
              "non_string_text": c["documents_dropped_non_string_text"],
              "invalid_example": c["documents_dropped_invalid_example"],
              "no_tokens": c["documents_dropped_no_tokens"],
          },
          "split": {"documents": c["documents_split"], "pieces": c["documents_split_pieces"]},
          "kept": c["documents_kept"],
          "train": c["documents_train"],
          "validation": c["documents_validation"],
      },
      "tokens": {"total": c["tokens"], "unk": c["unk_tokens"],
                 "unk_rate": _ratio(c["unk_tokens"], c["tokens"])},
      "examples": {"train": c["examples_train"], "validation": c["examples_validation"],
                   "total": c["examples_train"] + c["examples_validation"]},
      "packing": {"positions": c["positions_total"], "real_positions": c["positions_real"],
                  "padding_positions": c["positions_total"] - c["positions_real"],
                  "efficiency": _ratio(c["positions_real"], c["positions_total"])},
      "masked_positions": c["masked_positions"],
      "next_sentence": {"random": c["next_sentence_random"], "actual": c["next_sentence_actual"],
                        "unpaired": c["next_sentence_unpaired"]},
  }


def stats_json(counts: dict[str, int], config: dict) -> str:
  return json.dumps({"config": config, **nest(counts)}, indent=2, sort_keys=True) + "\n"
