"""Every shipped model's ``pkn.restore`` output (and its kernel probe) is pinned.

``tests/data/golden_restore.npz`` is written by ``scripts/make_golden.py`` (see its
docstring for the history): the ``-given`` cases (noise given) come from the code before
the kernel registry refactor, the others pin the automatic noise estimate too. A change
of results must be intended, documented, and the file regenerated on purpose.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import pkn

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = np.load(ROOT / "tests" / "data" / "golden_restore.npz")

_spec = importlib.util.spec_from_file_location("make_golden", ROOT / "scripts" / "make_golden.py")
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)
INPUTS = make_golden.inputs()
PINNED = {k.split("/")[0] for k in GOLDEN.files if not k.startswith("input/")}
# models shipped after the golden file was written have tests of their own
CASES = [c for c in make_golden.cases() if f"{c[0]}/image" in GOLDEN.files]


def close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    span = max(float(np.ptp(want)), float(np.abs(want).max()), 1e-12)
    err = float(np.abs(got.astype(np.float64) - want).max()) / span
    assert err <= 1e-6, f"{what}: max relative difference {err:.2e} > 1e-6"


def test_golden_file_covers_every_shipped_model_and_task():
    from pkn.models.io import list_models

    assert PINNED <= set(list_models())  # no pinned model was dropped or renamed
    assert len(PINNED) >= 7
    assert {k.split("/")[1] for k in GOLDEN.files if not k.startswith("input/")} >= {
        "gray",
        "rgb",
        "even",
        "gray-psf",
        "gray-given",
    }
    given = {k.split("/")[0] for k in GOLDEN.files if "/gray-given/" in k}
    # the models shipped before the refactor (nlm's from the correlation-aware retrain)
    # plus those shipped since: every model has its noise-given case
    assert given >= {"nlm", "nlm-sigma", "bilateral", "gaussian", "anisotropic"} and len(given) >= 8
    tasks = {kw["task"] for _, _, kw in CASES}
    assert tasks == {"denoise", "deblur", "upsample"}


@pytest.mark.parametrize(("key", "kind", "kw"), CASES, ids=[c[0] for c in CASES])
def test_restore_output_unchanged(key, kind, kw):
    np.testing.assert_array_equal(INPUTS[kind], GOLDEN[f"input/{kind}"])
    r = pkn.restore(INPUTS[kind], strength=0.9, **kw)
    close(r.image, GOLDEN[f"{key}/image"], f"{key} image")
    want_maps = {k.split("/map/")[1] for k in GOLDEN.files if k.startswith(f"{key}/map/")}
    assert set(r.maps) == want_maps
    for m, v in r.maps.items():
        close(v, GOLDEN[f"{key}/map/{m}"], f"{key} map {m}")
    if kw["task"] != "upsample":
        c = 2 if kind == "rgb" else 0
        pr = pkn.Restorer(INPUTS[kind], **kw).probe((20, 25), channel=c, strength=0.8)
        assert tuple(pr.origin) == tuple(GOLDEN[f"{key}/probe/origin"])
        close(pr.weights, GOLDEN[f"{key}/probe/weights"], f"{key} probe weights")
        close(np.asarray(pr.value), GOLDEN[f"{key}/probe/value"], f"{key} probe value")
