#!/usr/bin/env bash
# The main job: set-up (idempotent), then napari with the PKN restoration widget docked on
# the bundled fluorescence sample. Without a screen ($DISPLAY unset) it runs the sample
# under a virtual display, saves out/napari.png and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
    scripts/bootstrap.sh
    exec .venv/bin/python -m napari_pkn._launch "$@"
fi
scripts/bootstrap.sh --display
mkdir -p out
echo "No screen found: running headless under Xvfb; the window is saved to out/napari.png"
exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m napari_pkn._launch \
    --screenshot out/napari.png "$@"
