"""Packaging: the wheel's contents, resources/manifest lookups from a wheel install, and
the declared dependencies against what the code imports.

The wheel is built once per module from a copy of the source tree (so the repository
gets no ``build/`` or ``*.egg-info`` and concurrent runs cannot collide), without build
isolation and without downloading anything. A fresh virtual environment gets the wheel
(``--no-deps --no-index``) and reaches torch/numpy/npe2 through a ``.pth`` file that
points at this environment's site-packages. Together these tests take a few seconds.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "napari.yaml"
TOP_LEVEL_IGNORED = {".venv", ".git", "build", "dist", "out", "runs"}
IGNORED = {"__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache"}

# Run inside the environment under test, from a directory outside the repository.
CHECK_SCRIPT = """
import importlib.metadata as md
import importlib.resources as res
import json

import numpy
import torch

import napari_pkn
import pkn
import pkn.kernels
import npe2

discovered = [
    str(r.distribution.locate_file(""))
    for r in npe2.PluginManifest.discover()
    if r.manifest is not None and r.manifest.name == "napari-pkn"
]
pm = npe2.PluginManager()
pm.discover()
manifest = pm.get_manifest("napari-pkn")
print(json.dumps({
    "pkn": pkn.__file__,
    "napari_pkn": napari_pkn.__file__,
    "version": pkn.__version__,
    "resources": sorted(p.name for p in res.files("pkn._resources").iterdir()),
    "readme": res.files("pkn._resources").joinpath("README.md").read_text(),
    "manifest_text": res.files("napari_pkn").joinpath("napari.yaml").read_text(),
    "entry_points": [
        ep.value for ep in md.entry_points(group="napari.manifest") if ep.name == "napari-pkn"
    ],
    "npe2_discovered_in": discovered,
    "npe2_display_name": manifest.display_name,
    "npe2_package_version": manifest.package_version,
}))
"""


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory) == REPO
    return {
        n
        for n in names
        if n in IGNORED or n.endswith((".egg-info", ".pyc")) or (top and n in TOP_LEVEL_IGNORED)
    }


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=300, check=False, **kwargs
    )
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the source tree; return its path."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=_ignore)
    # -x: setuptools >= 70.1 builds wheels itself; the `wheel` package need not be installed
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-x"]
    _run([*cmd, "--outdir", str(tmp / "dist"), str(src)])
    (whl,) = (tmp / "dist").glob("napari_pkn-*.whl")
    return whl


@pytest.fixture(scope="module")
def wheel_names(wheel) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


@pytest.fixture(scope="module")
def wheel_venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv (no system site-packages) with only the wheel installed in it."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    _run([*pip, "--no-deps", "--no-index", "--quiet", str(wheel)])
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    # the dependencies (torch, numpy, npe2, ...) come from this environment, appended to
    # sys.path after the venv's own site-packages; its .pth files (our editable install's
    # finder included) are not executed, so pkn can only come from the wheel
    deps = dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib"))
    Path(purelib.stdout.strip(), "_pkn_test_deps.pth").write_text("\n".join(deps) + "\n")
    return venv


def _check(python: str | Path, tmp_path: Path) -> dict:
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    script = workdir / "check_install.py"
    script.write_text(CHECK_SCRIPT)
    proc = _run([str(python), str(script)], cwd=workdir)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_lookups(info: dict) -> None:
    assert "__init__.py" in info["resources"] and "README.md" in info["resources"]
    assert info["readme"] == (REPO / "resources" / "README.md").read_text()
    assert info["manifest_text"] == MANIFEST.read_text()
    assert info["entry_points"] == ["napari_pkn:napari.yaml"]
    assert info["npe2_discovered_in"], "npe2 did not find napari-pkn via napari.manifest"
    assert f"display_name: {info['npe2_display_name']}" in MANIFEST.read_text()
    assert info["npe2_package_version"] == info["version"]


def test_wheel_contents(wheel, wheel_names):
    with zipfile.ZipFile(wheel) as z:
        info = z.getinfo("napari_pkn/napari.yaml")
        assert not stat.S_ISLNK(info.external_attr >> 16), "napari.yaml stored as a symlink"
        assert z.read(info) == MANIFEST.read_bytes()
        dist_info = next(n.split("/")[0] for n in wheel_names if ".dist-info/" in n)
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    assert "[napari.manifest]" in entry_points
    assert "napari-pkn = napari_pkn:napari.yaml" in entry_points
    assert "pkn = pkn.__main__:main" in entry_points
    assert "pkn/_resources/__init__.py" in wheel_names
    assert "pkn/_resources/README.md" in wheel_names
    assert not [n for n in wheel_names if n.startswith(("tests/", "resources/", "scripts/"))]
    top = {n.split("/")[0] for n in wheel_names}
    assert top == {"pkn", "napari_pkn", dist_info}


def test_wheel_has_no_benchmarks_or_release_tooling(wheel_names):
    """The installed library holds the library only: the benchmarks and the release step
    (scripts/ship.py) stay in the repository."""
    assert not [n for n in wheel_names if "benchmarks" in n.split("/")]
    assert not [n for n in wheel_names if n.endswith(("/ship.py", "/bench.py"))]
    py = [n for n in wheel_names if n.endswith(".py")]
    assert "pkn/training/card.py" in py  # card rendering is the library's (training needs it)


def test_wheel_has_every_package_and_resource(wheel_names):
    """Every package of the source tree and every file of resources/ is in the wheel."""
    missing = []
    for root in ("pkn", "napari_pkn"):
        for init in sorted((REPO / root).rglob("__init__.py")):
            rel = init.relative_to(REPO).as_posix()
            if "__pycache__" not in rel and rel not in wheel_names:
                missing.append(f"package {init.parent.relative_to(REPO).as_posix()}")
    for f in sorted((REPO / "resources").rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
            name = "pkn/_resources/" + f.relative_to(REPO / "resources").as_posix()
            if name not in wheel_names:
                missing.append(f"resource {name}")
    assert not missing, (
        "missing from the wheel (list the packages in [tool.setuptools] packages and the "
        f"file patterns in [tool.setuptools.package-data] of pyproject.toml): {missing}"
    )


def test_wheel_install_finds_resources_and_manifest(wheel_venv, tmp_path):
    python = wheel_venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    info = _check(python, tmp_path)
    for module in ("pkn", "napari_pkn"):
        assert Path(info[module]).is_relative_to(wheel_venv), (module, info[module])
    assert all(Path(p).is_relative_to(wheel_venv) for p in info["npe2_discovered_in"][:1])
    _assert_lookups(info)
    # the console script and python -m pkn work from the installed wheel too
    script = wheel_venv / ("Scripts/pkn.exe" if os.name == "nt" else "bin/pkn")
    assert info["version"] in _run([str(script), "--version"], cwd=tmp_path).stdout
    assert "train" in _run([str(python), "-m", "pkn", "--help"], cwd=tmp_path).stdout


def test_editable_install_finds_resources_and_manifest(tmp_path):
    info = _check(sys.executable, tmp_path)
    assert Path(info["pkn"]).is_relative_to(REPO / "pkn")
    _assert_lookups(info)


# --------------------------------------------------------------------------- dependencies
#: import name -> distribution name, where they differ
DISTRIBUTION = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml", "pywt": "pywavelets"}
FIRST_PARTY = {"pkn", "napari_pkn", "benchmarks"}
#: declared but never imported, and why
RUNTIME_ONLY = {
    "pyqt6": "the Qt binding qtpy loads",
    "pywavelets": "skimage.restoration.estimate_sigma needs it",
    "pytest-qt": "pytest plugin (the qtbot fixture)",
    "ruff": "the linter scripts/test.sh runs",
    "build": "builds the wheel in these tests",
}
#: which code each group of requirements serves
USERS = {
    "dependencies": ("pkn",),
    "cluster": ("pkn",),  # distributed: imported only for python -m pkn restore --scheduler
    "napari": ("napari_pkn",),
    "bench": ("benchmarks",),
    "test": ("tests",),
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _requirements() -> dict[str, set[str]]:
    """Group ("dependencies" or an extra) -> its distributions (normalised names)."""
    project = _project()
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    out = {}
    for group, reqs in groups.items():
        names = {_norm(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in reqs}
        out[group] = names - {_norm(project["name"])}
    return out


def _imports(folder: str) -> dict[str, set[str]]:
    """Third-party distributions imported anywhere under ``folder`` (also inside
    functions) -> the files importing them."""
    found: dict[str, set[str]] = {}
    for f in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top in sys.stdlib_module_names or top in FIRST_PARTY or top == "__future__":
                    continue
                if folder == "tests" and (REPO / "tests" / f"{top}.py").is_file():
                    continue  # a sibling test module (tests/ is on pytest's path)
                dist = _norm(DISTRIBUTION.get(top, top))
                found.setdefault(dist, set()).add(f.relative_to(REPO).as_posix())
    return found


def test_every_import_is_declared():
    """pkn imports only its dependencies (and, inside the function that needs it, the
    cluster extra); napari_pkn also the napari extra; the benchmarks also the bench extra;
    the tests anything declared."""
    req = _requirements()
    core = req["dependencies"]
    allowed = {
        "pkn": core | req["cluster"],
        "napari_pkn": core | req["napari"],
        "benchmarks": core | req["bench"],
        "tests": core | req["napari"] | req["bench"] | req["test"] | req["cluster"],
    }
    missing = {
        folder: {d: sorted(files) for d, files in _imports(folder).items() if d not in ok}
        for folder, ok in allowed.items()
    }
    assert not any(missing.values()), f"imported but not declared in pyproject.toml: {missing}"
    assert "platformdirs" in req["napari"] and "superqt" in req["napari"]
    assert "pillow" in req["bench"]


def test_nothing_declared_is_unused():
    """Each group's requirements are imported by the code it serves (or are a runtime-only
    dependency with a stated reason)."""
    unused = {}
    for group, folders in USERS.items():
        imported = set().union(*(_imports(f) for f in folders))
        extra = _requirements()[group] - imported - set(RUNTIME_ONLY)
        if extra:
            unused[group] = sorted(extra)
    assert not unused, f"declared in pyproject.toml but never imported: {unused}"
    assert set(_requirements()) == {*USERS, "dev"}, "a new extra: say which code it serves"


def test_constraints_pin_every_declared_dependency():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_norm(name)] = version
    declared = set().union(*_requirements().values())
    assert not declared - set(pins), f"not pinned in constraints.txt: {declared - set(pins)}"
    assert pins["torch"], "constraints.txt pins the CPU torch"


def test_cluster_extra_is_imported_only_inside_functions():
    """pkn works without the cluster extra: distributed is imported where --scheduler
    needs it, never at module level."""
    cluster = _requirements()["cluster"]
    at_top = []
    for f in sorted((REPO / "pkn").rglob("*.py")):
        for node in ast.parse(f.read_text(), str(f)).body:
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            at_top += [f"{f.name}: {m}" for m in mods if _norm(m.split(".")[0]) in cluster]
    assert not at_top, f"cluster extra imported at module level: {at_top}"
    assert "distributed" in _imports("pkn")  # and it is used
