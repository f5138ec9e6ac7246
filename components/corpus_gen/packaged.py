"""A packaged corpus (`corpus.packaged` in a pipeline config) as the first span CorpusGen reads,
for local runs and rehearsals that need no corpus of their own."""

import glob
import os

from components.common import corpus


def prepare_packaged_corpus(packaged: str, input_base: str, file_pattern: str,
                            documents: int = 0) -> None:
  """Writes the packaged corpus `packaged` (e.g. "imdb"), or its first `documents` documents,
  under input_base/span-1/, unless `file_pattern` already matches a span there; nothing when
  `packaged` is empty."""
  if not packaged:
    return
  any_span = file_pattern.replace("{SPAN}", "*").replace("{VERSION}", "*")
  if glob.glob(os.path.join(input_base, any_span)):
    return
  span_dir = os.path.join(input_base, "span-1")
  os.makedirs(span_dir, exist_ok=True)
  corpus.export_packaged_corpus(packaged, span_dir, documents)
