"""The widget's last-used settings, as a small JSON file in the user's config directory.

The directory is ``$NAPARI_PKN_CONFIG_DIR`` when set (tests point it at a temporary
directory), else ``platformdirs.user_config_dir("napari-pkn")``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["ENV", "load", "save", "settings_file"]

ENV = "NAPARI_PKN_CONFIG_DIR"


def settings_file() -> Path:
    """Where the settings live."""
    root = os.environ.get(ENV)
    if not root:
        from platformdirs import user_config_dir

        root = user_config_dir("napari-pkn", appauthor=False)
    return Path(root) / "widget.json"


def load() -> dict:
    """The saved settings, or ``{}`` when there are none or the file is unreadable."""
    try:
        data = json.loads(settings_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(state: dict) -> None:
    """Save ``state`` (JSON-serialisable); failing to write is not an error for the user."""
    path = settings_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(state, indent=1, sort_keys=True))
    except OSError:
        pass
