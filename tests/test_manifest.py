"""The npe2 manifest: valid, discovered by napari, and cheap to import."""

from __future__ import annotations

import ast
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
SAMPLES = {"fluorescence", "natural", "bacteria16", "volume", "bead_psf"}


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
    assert {s.key for s in c.sample_data} == SAMPLES
    assert [w.command for w in c.writers] == ["napari-pkn.write_layers"]
    assert c.writers[0].layer_types == ["image+"]
    assert [r.command for r in c.readers] == ["napari-pkn.get_reader"]
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
    assert {s.key for s in samples} == SAMPLES
    writers = [w.command for w in pm.iter_compatible_writers(["image", "image", "image"])]
    assert "napari-pkn.write_layers" in writers


def test_importing_the_manifest_modules_does_not_import_torch():
    code = (
        "import sys, json\n"
        "import napari_pkn, napari_pkn._qt._widget, napari_pkn._sample_data\n"
        "import napari_pkn._writer\n"
        "import napari_pkn._scripting, napari_pkn._launch\n"
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


def _plugin_sources():
    for path in sorted((REPO / "napari_pkn").rglob("*.py")):
        yield path.relative_to(REPO / "napari_pkn").as_posix(), ast.parse(path.read_text())


def test_qt_lives_under_qt():
    """Qt widgets under napari_pkn/_qt/, Qt-free logic outside it (and no Qt on import)."""
    qt = ("qtpy", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari.qt", "napari._qt")
    for rel, tree in _plugin_sources():
        if rel.startswith("_qt/"):
            continue
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module or ""]
            bad = [m for m in mods if any(m == q or m.startswith(q + ".") for q in qt)]
            assert not bad, f"napari_pkn/{rel} imports {bad}: move that code to napari_pkn/_qt/"
    code = (
        "import sys, json\n"
        "import napari_pkn._scripting, napari_pkn._layers, napari_pkn._launch\n"
        "import napari_pkn._sample_data, napari_pkn._writer\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "    ('qtpy', 'superqt', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


# String literals that are not kernel or parameter names although they spell one: the
# noise model and blur mode keys of the form (saved in the user's settings) and the noise
# description's keys; napari's ``affine`` layer keyword; the covariance maps of kernels
# with ``glyphs`` (the registry's convention for that flag).
NOT_DISPATCH = {
    "_qt/_form.py": {"gaussian", "sigma", "a", "b"},
    "_qt/_run.py": {"sigma", "a", "b"},
    "_layers.py": {"affine", "sigma1", "sigma2", "rho"},
    "_qt/_probe.py": {"affine"},  # napari's layer keyword (geometry copied to the probe)
    "_stacks.py": {"sigma", "a", "b", "c"},  # noise-description keys; "c" the channel axis
    "_writer.py": {"affine", "d"},  # napari's layer keyword; a format spec
}


def test_no_kernel_or_parameter_name_dispatch():
    """The plugin reads the registry: no kernel or parameter name appears in its code."""
    from pkn.kernels.registry import registry

    kernels = set(registry())
    params = {p.name for k in registry().values() for p in k.params}
    for rel, tree in _plugin_sources():
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)
            and n.body
            and isinstance(n.body[0], ast.Expr)
        }
        found = {
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
        }
        bad = (found & (kernels | params)) - NOT_DISPATCH.get(rel, set())
        assert not bad, f"napari_pkn/{rel} names {sorted(bad)}: read the kernel's descriptor"
