#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite: 2 workers (test files kept whole on one
# worker), a 15-minute limit per test. Extra arguments go to pytest (e.g. -k protocol -x;
# -n 0 runs everything in one process).
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
exec .venv/bin/python -m pytest -n 2 --dist loadfile --timeout 900 "$@"
