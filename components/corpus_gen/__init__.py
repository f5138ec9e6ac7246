"""Corpus ingestion: a text corpus under a glob pattern becomes an Examples artifact with a span.

`component.corpus_gen(...)` builds it; see component.py for why it is an ExampleGen.
"""
