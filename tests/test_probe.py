"""Tests for the kernel probe (pkn.kernels.effective_weights)."""

import numpy as np
import pytest
import torch

from pkn.kernels import (
    affine,
    basis,
    bilateral,
    effective_weights,
    gaussian,
    kpn,
    nlm,
    polyblur,
)

H, W = 20, 23


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


X = _rand(2, 2, H, W)
SIG = 0.05 + 0.3 * _rand(2, 1, H // 2, (W + 1) // 2, seed=1)
PSF = torch.tensor([[0.0, 0.1, 0.0], [0.1, 0.5, 0.2], [0.0, 0.1, 0.0]], dtype=torch.float64)
BASES = torch.stack([torch.eye(3, dtype=torch.float64), torch.full((3, 3), 1 / 9.0).double()])

# name, callable producing the full output, positional params, options, smoothing?
CASES = [
    ("nlm", nlm, (SIG,), {}, True),
    ("nlm", nlm, (SIG,), {"joint": True, "patch_size": 5, "search_size": 3}, True),
    ("bilateral", bilateral, (SIG,), {"spatial_sigma": 1.0}, True),
    ("gaussian", gaussian, (1.0 + _rand(1, 1, 5, 6, seed=2),), {}, True),
    (
        "anisotropic",
        gaussian,
        (1.5 * _rand(2, 2, 7, 8, seed=3), 0.3 + _rand(2, 1, 7, 8, seed=4), 0.8),
        {},
        True,
    ),
    ("polyblur", polyblur, (-1.5, 0.8 * _rand(2, 1, 4, 4, seed=5), 0.1), {"blur": 1.2}, False),
    ("polyblur", polyblur, (0.7, 0.0, 0.0), {"blur": PSF}, True),
    ("kpn", kpn, (3 * _rand(2, 9, 10, 12, seed=6),), {}, True),
    ("basis", basis, (_rand(2, 2, 5, 5, seed=7), BASES), {}, False),
    ("affine", affine, (0.3 * _rand(2, 1, 5, 5, seed=8), 1 + _rand(2, 2, 5, 5, seed=9)), {}, False),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("pixel", [(10, 11), (0, 0), (H - 1, 4), (3, W - 1)])
def test_probe_reconstructs_the_output(case, pixel):
    name, fn, params, opts, smoothing = case
    y = fn(X, *params, **opts)
    for batch, channel in [(0, 0), (1, 1)]:
        p = effective_weights(name, X, *params, pixel=pixel, batch=batch, channel=channel, **opts)
        r0, c0 = p.origin
        h, w = p.weights.shape
        xin = X[batch, channel, r0 : r0 + h, c0 : c0 + w].numpy()
        value = float((p.weights * xin).sum()) + p.bias
        expected = float(y[batch, channel, pixel[0], pixel[1]])
        assert value == pytest.approx(expected, abs=1e-10)
        assert p.value == pytest.approx(expected, abs=1e-10)
        if smoothing:
            assert p.min >= -1e-12
            assert p.sum == pytest.approx(1.0, abs=1e-10)
            assert p.bias == 0.0
            assert 1.0 - 1e-9 <= p.n_eff <= (p.weights > 0).sum() + 1e-9


def test_probe_of_nlm_weights_follow_the_formula_at_an_interior_pixel():
    x = _rand(1, 1, 9, 9, seed=11)
    s = 0.2
    p = effective_weights("nlm", x, s, pixel=(4, 4))
    xp = x[0, 0].numpy()
    raw = np.zeros((5, 5))
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            a = xp[3:6, 3:6]
            b = xp[3 + dy : 6 + dy, 3 + dx : 6 + dx]
            raw[dy + 2, dx + 2] = np.exp(-np.mean((a - b) ** 2) / (2 * s * s))
    r0, c0 = p.origin
    window = p.weights[4 - 2 - r0 : 4 + 3 - r0, 4 - 2 - c0 : 4 + 3 - c0]
    np.testing.assert_allclose(window, raw / raw.sum(), rtol=1e-10)
    assert p.weights.sum() == pytest.approx(window.sum())  # nothing outside the window


@pytest.mark.parametrize("pixel", [(0, 0), (13, 17), (29, 33)])
def test_rbf_probe_reconstructs_the_upsampled_pixel(pixel):
    from pkn.kernels import rbf_resample

    s1, s2 = 0.3 + _rand(1, 1, 6, 7, seed=12), 0.6
    y = rbf_resample(X, s1, s2, -0.4, scale=1.5)
    p = effective_weights("rbf", X, s1, s2, -0.4, pixel=pixel, channel=1, batch=1, scale=1.5)
    r0, c0 = p.origin
    h, w = p.weights.shape
    xin = X[1, 1, r0 : r0 + h, c0 : c0 + w].numpy()
    assert float((p.weights * xin).sum()) == pytest.approx(float(y[1, 1, pixel[0], pixel[1]]))
    assert p.sum == pytest.approx(1.0) and p.min >= 0 and p.bias == 0.0


def test_affine_probe_reports_the_bias():
    p = effective_weights("affine", X, 0.25, 2.0, pixel=(5, 5))
    assert p.bias == pytest.approx(0.25)
    assert p.sum == pytest.approx(2.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"pixel": (H, 0)}, "outside"),
        ({"pixel": (0, -1)}, "outside"),
        ({"pixel": (0, 0), "channel": 2}, "out of range"),
        ({"pixel": (0, 0), "batch": 5}, "out of range"),
    ],
)
def test_probe_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        effective_weights("nlm", X, 0.1, **kwargs)
    with pytest.raises(ValueError, match="unknown kernel"):
        effective_weights("median", X, 0.1, pixel=(0, 0))
