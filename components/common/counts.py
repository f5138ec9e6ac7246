"""Exact counts of what a Beam stage read, dropped or repaired: Beam counters and data at once.

Each DoFn counts into a `Tally` and flushes it once per chunk: the same numbers
go to a Beam counter (live in the runner's UI) and, as a side output tagged
STATS_TAG, to a sum computed as data (`SumCounts`), which is exact on every
runner, retries included.
"""

import collections
from collections.abc import Collection, Iterable, Iterator

import apache_beam as beam

# The data pipeline's namespace; the corpus reader counts into it too, so CorpusGen and
# TokenizePack report bad input under the same names.
NAMESPACE = "tokenize_pack"
STATS_TAG = "stats"


class Tally:
  """One chunk's counts; `flush` moves them to Beam counters and the stats side output."""

  def __init__(self, known: Collection[str]):
    self._known = known
    self._counts = collections.Counter()

  def add(self, name: str, amount: int = 1) -> None:
    if name not in self._known:
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
  """Adds up the flushed tallies into every known counter (0 when never counted)."""

  def __init__(self, known: Collection[str]):
    super().__init__()
    self._known = tuple(known)

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
    return {name: total.get(name, 0) for name in self._known}
