#!/usr/bin/env bash
# The main job, headless: set-up (idempotent), then denoise a bundled sample and write
# the result and its parameter map to out/. Extra arguments go to `python -m pkn demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pkn demo "$@"
