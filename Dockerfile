# Worker image for Vertex AI Pipelines components (TokenizePack, Trainer,
# GlueEvaluator, Pusher) and for Dataflow's Beam workers.
#
# Same pins as local runs: requirements/lock.txt, installed with `uv pip sync`
# (exact versions and hashes, no resolution). Debian 13 gives glibc 2.41,
# which ml-metadata and tensorflow-data-validation 1.21 need.
#
# Built and pushed by Cloud Build (cloudbuild.yaml), tagged by commit; `make image`
# (scripts/image) builds it here with buildah into out/image/tokendrop.oci.tar, with local
# stand-ins for the two registry images below when no registry can be reached.
#
# The project is installed from a wheel: the image holds no source tree, so every task imports
# the installed package and its package data (configs/*.yaml), never a checkout.
ARG BASE_IMAGE=python:3.13-slim-trixie
# Dataflow starts custom containers through the Beam SDK's boot binary; the
# version must match apache-beam in the lock.
ARG BEAM_SDK_IMAGE=apache/beam_python3.13_sdk:2.77.0

FROM ${BEAM_SDK_IMAGE} AS beam_sdk

FROM ${BASE_IMAGE} AS wheel
COPY . /src
# SOURCE_DATE_EPOCH: the same sources give the same wheel, so its layers below stay cached.
RUN SOURCE_DATE_EPOCH=315532800 pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src

FROM ${BASE_IMAGE}
COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam

RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

# Installed compiled to bytecode: every worker and task container starts cold,
# and without .pyc files each one compiles TF and TFX again (about 20 s).
# uv (the version requirements/lock-test.txt pins) lives outside the venv,
# because `uv pip sync` removes whatever the runtime lock does not list.
# UV_SYSTEM_CERTS: uv trusts the image's CA store, as pip does.
COPY requirements/lock.txt /tmp/lock.txt
RUN pip install --no-cache-dir "uv==0.13.8" \
    && python -m venv /opt/venv \
    && UV_SYSTEM_CERTS=1 uv pip sync --python /opt/venv/bin/python --no-cache --compile-bytecode \
       --require-hashes /tmp/lock.txt \
    && rm /tmp/lock.txt
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH

COPY --from=wheel /wheels /tmp/wheels
RUN uv pip install --python /opt/venv/bin/python --no-cache --no-deps --compile-bytecode \
       /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
WORKDIR /app

ENTRYPOINT ["/opt/apache/beam/boot"]
