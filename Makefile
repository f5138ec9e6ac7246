# The two promised commands. Each sets up the environment itself
# (scripts/in-env builds and caches it on first use).
IN_ENV := scripts/in-env
PYTEST_ARGS ?=
# pytest-xdist workers (one per core by default). Whole files go to one worker (loadfile), so
# a module's expensive fixture (a pipeline run, a rehearsal) is made once, in the order
# tests/conftest.py gives (files with end-to-end runs first).
PYTEST_WORKERS ?= $(shell nproc)
# tests/image needs `make image` (root, buildah): `make test-image` runs it.
PYTEST := $(IN_ENV) python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder \
	--ignore=tests/image

.PHONY: test test-fast test-image image demo lint env

env:
	$(IN_ENV) python -c "import tfx, tensorflow_transform, official.nlp, tensorflow_text, apache_beam"

lint:
	$(IN_ENV) ruff check .

# pytest exits 5 when it collects no test; make treats that as a failure.
test: lint
	$(PYTEST) $(PYTEST_ARGS)

# For iterating: everything but the end-to-end runs (tests marked e2e).
test-fast: lint
	$(PYTEST) -m "not e2e" $(PYTEST_ARGS)

demo:
	$(IN_ENV) tokendrop demo

# The project's images, Dockerfile and Dockerfile.train, as OCI archives in out/image/ with
# their digest, size and package lists (scripts/image: buildah, local stand-ins for images no
# registry serves here; needs root).
image:
	scripts/image

# The production config's miniature rehearsal with every task in the worker image, twice: the
# second run skips or warm-starts as a scheduled Vertex run does (tests/image/).
test-image: image
	$(IN_ENV) python -m pytest -p no:cacheprovider tests/image $(PYTEST_ARGS)
