#!/usr/bin/env bash
# The test command: lint, type-check, then every test (unit, integration on real services, e2e).
# pytest's exit code 5 (nothing collected) is a failure like any other.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "test: pytest collected no tests; that is a failure" >&2
fi
exit "$status"
