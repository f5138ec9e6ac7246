"""The TFX DAG (create_pipeline) and its thin runners, plus the `tokendrop` CLI."""
