""":func:`pkn.noise.calibrate` on real noisy / clean pairs (issue #11's 15% target).

The truth is the residual of the noisy frame against its clean reference mapped into the
noisy frame's units by least squares (``benchmarks.noise.real_truth``; the two were
rescaled separately). A subset that runs in a few seconds: every 8th W2S field of view
in each of the three channels, all of SRDTrans, the 16-bit bacteria pair; the full
validation is ``python -m benchmarks noise``. Skipped when the data is absent
(``$PKN_DATA`` or ``../shared/data`` next to the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.noise import real_pairs, real_truth
from pkn.noise import calibrate

DATA = Path(
    os.environ.get("PKN_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
MICRO = DATA / "microscopy"

pytestmark = pytest.mark.skipif(
    not (MICRO / "w2s" / "noisy").is_dir(),
    reason=f"real microscopy pairs not found under {MICRO} (set PKN_DATA to the data root)",
)


def _read(path: Path) -> np.ndarray:
    from skimage import io

    return np.asarray(io.imread(str(path)))


def _subset() -> list[tuple[str, Path, Path]]:
    sets = real_pairs(MICRO)
    out = []
    for name, pairs in sets.items():
        step = 8 if name.startswith("W2S") else 1
        out += [(f"{name} {n}", fn, fc) for n, fn, fc in pairs[::step]]
    return out


CASES = _subset() if (MICRO / "w2s" / "noisy").is_dir() else []


@pytest.mark.parametrize(("name", "noisy", "clean"), CASES, ids=[c[0] for c in CASES])
def test_marginal_std_within_15_percent_of_the_truth(name, noisy, clean):
    x = _read(noisy)
    true_std, true_rho = real_truth(x, _read(clean))
    m = calibrate(x)
    assert abs(m.std_at_mean / true_std - 1) <= 0.15, (name, m.std_at_mean, true_std)
    # the noise of these cameras is white: it must not be reported as correlated
    assert max(abs(r) for r in true_rho) < 0.1
    assert not m.correlated and m.length == 0
    # signal-dependent (photon) noise, with a slope that is positive
    assert m.kind == "poisson-gaussian" and m.a > 0


def test_the_subset_covers_every_data_set():
    names = {c[0].rsplit(" ", 1)[0] for c in CASES}
    assert {"W2S channel 0", "W2S channel 1", "W2S channel 2", "SRDTrans"} <= names
    assert len(CASES) >= 25


@pytest.mark.skipif(
    not (MICRO / "volume" / "raw_stack_32bit.tif").is_file(),
    reason=f"real z-stack not found at {MICRO / 'volume'} (set PKN_DATA to the data root)",
)
def test_stack_pooled_and_per_plane():
    """The real z-stack (no reference): the pooled model lies within the per-plane ones
    (10% slack: the pooled fit applies one correlation correction to all planes), and
    each per-plane model is what calibrating that plane alone gives."""
    import tifffile

    v = tifffile.imread(str(MICRO / "volume" / "raw_stack_32bit.tif"))
    m = calibrate(v, per_plane=True)
    per = [p.std_at(m.mean) for p in m.per_plane]
    assert 0.9 * min(per) <= m.std_at_mean <= 1.1 * max(per)
    for i, p in enumerate(m.per_plane):
        alone = calibrate(v[i])
        assert (p.a, p.b) == pytest.approx((alone.a, alone.b))
