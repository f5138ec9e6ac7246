"""Every count the data pipeline keeps, as Beam counters and as exact data for stats.json.

Each DoFn counts into a components.common.counts `Tally(COUNTERS)` and flushes
it once per chunk; stats.json is written from the `SumCounts(COUNTERS)` of the
flushed tallies, so it is exact on every runner, retries included.
"""

import json

import apache_beam as beam

from components.common import corpus
from components.common.counts import NAMESPACE

# Flat counter names, each with what it counts; stats.json nests them.
COUNTERS = {
    **corpus.COUNTERS,
    "documents_dropped_no_tokens": "documents that tokenize to nothing",
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
