#!/usr/bin/env bash
# Create or reuse the virtual environment at .venv/ and install napari-pkn into it
# (editable, with the napari and test extras), pinned by constraints.txt so that the
# local CPU build of torch is used. Idempotent: reinstalls only when pyproject.toml or
# constraints.txt changed. Usage: scripts/bootstrap.sh [--display]
#   --display  also make sure Xvfb + Mesa are present (needed by the napari tests).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "napari-pkn needs Python >= 3.10; '$PY' is $("$PY" --version 2>&1)." >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "[bootstrap] creating .venv"
    "$PY" -m venv .venv
fi

stamp=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.pkn-stamp 2>/dev/null)" != "$stamp" ]; then
    echo "[bootstrap] installing napari-pkn and its dependencies into .venv"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
    echo "$stamp" > .venv/.pkn-stamp
fi

if [ "${1:-}" = "--display" ]; then
    pkgs="xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 \
libxcb-keysyms1 libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 \
libxcb-xinerama0 libdbus-1-3 libfontconfig1"
    missing=""
    for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "[bootstrap] installing display packages:$missing"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq >/dev/null
            apt-get install -y -qq $missing >/dev/null
        else
            echo "The napari tests need a virtual display. Please run:" >&2
            echo "  sudo apt-get install -y$missing" >&2
            exit 1
        fi
    fi
fi
