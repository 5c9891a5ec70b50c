"""The npe2 manifest: valid, discovered by napari, and cheap to import."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import npe2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "napari.yaml"


def test_manifest_file_is_shared_by_symlink():
    link = REPO / "napari_pkn" / "napari.yaml"
    assert link.is_symlink() and link.resolve() == MANIFEST.resolve()


def test_npe2_validate_with_imports():
    proc = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-pkn", "--imports"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_contributions_resolve():
    mf = npe2.PluginManifest.from_file(MANIFEST)
    c = mf.contributions
    commands = {cmd.id: cmd for cmd in c.commands}
    assert [w.display_name for w in c.widgets] == ["PKN restoration"]
    assert {s.key for s in c.sample_data} == {"fluorescence", "natural"}
    for cmd in commands.values():
        module, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr))
    from napari._app_model.constants._menus import is_menu_contributable

    for menu_id, items in c.menus.items():
        assert is_menu_contributable(menu_id), menu_id
        assert all(item.command in commands for item in items)
    raw = yaml.safe_load(MANIFEST.read_text())
    assert raw["contributions"]["menus"]["napari/layers/filter"]


def test_napari_discovers_the_plugin():
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
    pm = npe2.PluginManager.instance()
    mf = pm.get_manifest("napari-pkn")
    assert mf.display_name == "PKN restoration"
    ours = [w for w in pm.iter_widgets() if w.plugin_name == "napari-pkn"]
    assert [w.display_name for w in ours] == ["PKN restoration"]
    samples = dict(pm.iter_sample_data()).get("napari-pkn", [])
    assert {s.key for s in samples} == {"fluorescence", "natural"}


def test_importing_the_manifest_modules_does_not_import_torch():
    code = (
        "import sys, json\n"
        "import napari_pkn, napari_pkn._widget, napari_pkn._sample_data, napari_pkn._scripting\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] == 'torch' or m in\n"
        "         ('pkn.restoration', 'pkn.kernels', 'pkn.models')]\n"
        "print(json.dumps(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_every_plugin_subpackage_is_packaged():
    """pyproject lists packages explicitly: a subpackage missing there is not in wheels."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "napari_pkn").rglob("__init__.py")
    }
    missing = sorted(found - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
