"""Compiles the pipeline for Vertex AI Pipelines; also the `--pipeline_path` for the tfx CLI:

    tfx pipeline compile --engine=vertex --pipeline_path=pipelines/vertex_runner.py

TOKENDROP_PIPELINE_CONFIG picks the config (default configs/pipeline_vertex_base_tpu.yaml);
TOKENDROP_PIPELINE_JSON the output file (default <pipeline name>_pipeline.json).
"""

import os

from pipelines import config as config_lib
from pipelines import vertex

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "pipeline_vertex_base_tpu.yaml")

if __name__ == "__main__":
  config = config_lib.load(os.environ.get("TOKENDROP_PIPELINE_CONFIG", DEFAULT_CONFIG))
  vertex.compile_pipeline(config, os.environ.get("TOKENDROP_PIPELINE_JSON",
                                                 f"{config.name}_pipeline.json"))
