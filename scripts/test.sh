#!/usr/bin/env bash
# The whole test suite: set-up (idempotent), lint, then pytest under a virtual display.
# Extra arguments go to pytest (e.g. scripts/test.sh -m slow, scripts/test.sh -k nlm).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --display
.venv/bin/ruff check .
exec xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python -m pytest "$@"
