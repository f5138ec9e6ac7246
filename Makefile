# The two promised commands. Each sets up the environment itself
# (scripts/in-env builds and caches it on first use).
IN_ENV := scripts/in-env
PYTEST_ARGS ?=
# pytest-xdist workers (one per core by default). Whole files go to one worker (loadfile), so
# a module's expensive fixture (a pipeline run, a rehearsal) is made once, in the order
# tests/conftest.py gives (files with end-to-end runs first).
PYTEST_WORKERS ?= $(shell nproc)
PYTEST := $(IN_ENV) python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: test test-fast demo lint env

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
