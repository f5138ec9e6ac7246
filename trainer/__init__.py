"""The token-dropping BERT: encoder, MLM task, input pipeline, export. Knows nothing of TFX."""
