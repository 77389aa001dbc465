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

BENCHMARKS ?= sandbox_throughput client_push sources_postgres mapping_validation sync_nochange

bench: bootstrap
	@for name in $(BENCHMARKS); do echo "== bench/$$name.py"; $(PY) -m bench.$$name || exit 1; done
