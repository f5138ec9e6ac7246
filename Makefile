# The two promised commands. Each sets up the environment itself
# (scripts/in-env builds and caches it on first use).
IN_ENV := scripts/in-env
PYTEST_ARGS ?=

.PHONY: test demo lint env

env:
	$(IN_ENV) python -c "import tfx, tensorflow_transform, official.nlp, tensorflow_text, apache_beam"

lint:
	$(IN_ENV) ruff check .

# pytest exits 5 when it collects no test; make treats that as a failure.
test: lint
	$(IN_ENV) python -m pytest $(PYTEST_ARGS)

demo:
	$(IN_ENV) tokendrop demo
