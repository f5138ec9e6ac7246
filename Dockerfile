# Worker image for Vertex AI Pipelines components (TokenizePack, Trainer,
# GlueEvaluator, Pusher) and for Dataflow's Beam workers.
#
# Same pins as local runs: requirements/lock.txt, installed with `uv pip sync`
# (exact versions and hashes, no resolution). Debian 13 gives glibc 2.41,
# which ml-metadata and tensorflow-data-validation 1.21 need.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/tokendrop:$(git rev-parse --short HEAD) .
FROM python:3.13-slim-trixie

# Dataflow starts custom containers through the Beam SDK's boot binary; the
# version must match apache-beam in the lock.
COPY --from=apache/beam_python3.13_sdk:2.77.0 /opt/apache/beam /opt/apache/beam

RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

# Installed compiled to bytecode: every worker and task container starts cold,
# and without .pyc files each one compiles TF and TFX again (about 20 s).
# uv (the version requirements/lock-test.txt pins) lives outside the venv,
# because `uv pip sync` removes whatever the runtime lock does not list.
COPY requirements/lock.txt /tmp/lock.txt
RUN pip install --no-cache-dir "uv==0.13.8" \
    && python -m venv /opt/venv \
    && uv pip sync --python /opt/venv/bin/python --no-cache --compile-bytecode --require-hashes /tmp/lock.txt \
    && rm /tmp/lock.txt
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY . /app
RUN uv pip install --python /opt/venv/bin/python --no-cache --no-deps --compile-bytecode /app

ENTRYPOINT ["/opt/apache/beam/boot"]
