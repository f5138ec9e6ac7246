"""Tokenize, pack and mask a text corpus into pretraining TFRecords, on Apache Beam.

ReadDocuments -> TokenizeDocuments -> SplitTrainEval -> PackSequences ->
MaskTokens (static masking only) -> WriteExamples, built by
`pipeline.build_pipeline` and run by `pipeline.run` or `tokendrop prepare-data`
(cli.py). Every stage works on chunks of documents (about a megabyte of text),
so TF is called once per chunk and a worker's memory does not grow with the
corpus.
"""
