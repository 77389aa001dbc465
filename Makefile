# The two commands of the README: `make run` and `make test`. Both bootstrap .venv first.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run test lint bench bootstrap sandbox

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@$(PY) scripts/run_local.py $(RUN_ARGS)

test: bootstrap
	@scripts/test.sh

lint: bootstrap
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

sandbox: bootstrap
	@$(PY) -m sandbox $(SANDBOX_ARGS)

bench: bootstrap
	@$(PY) -m bench $(BENCH_ARGS)
