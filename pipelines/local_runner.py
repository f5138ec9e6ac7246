"""Runs the pipeline on LocalDagRunner; also the `--pipeline_path` for the standard tfx CLI:

    tfx pipeline create --engine=local --pipeline_path=pipelines/local_runner.py
    tfx run create --engine=local --pipeline_name=tokendrop-local-tiny

TOKENDROP_PIPELINE_CONFIG picks the config (default configs/pipeline_local_tiny.yaml).
"""

import os

from pipelines import config as config_lib
from pipelines import local

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "pipeline_local_tiny.yaml")

if __name__ == "__main__":
  config = config_lib.load(os.environ.get("TOKENDROP_PIPELINE_CONFIG", DEFAULT_CONFIG))
  local.run(config)
