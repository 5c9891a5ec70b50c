"""Tests for pkn.kernels.affine (per-pixel local affine / guided model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pkn.kernels.affine import Affine, affine


def _rand(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype)


def _randn(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _up(p, size):
    return F.interpolate(p, size=size, mode="bilinear", align_corners=False).numpy()


def reference_affine(x, w0, w1, guide=None):
    """Slow, obviously correct: explicit loops over pixels (float64)."""
    B, C, H, W = x.shape
    g = (x if guide is None else guide).numpy()
    a0 = _up(w0, (H, W)) if isinstance(w0, torch.Tensor) else np.full((1, 1, H, W), w0)
    a1 = _up(w1, (H, W)) if isinstance(w1, torch.Tensor) else np.full((1, 1, H, W), w1)
    y = np.zeros((B, C, H, W))
    for b in range(B):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    s0 = a0[b % a0.shape[0], c % a0.shape[1], i, j]
                    s1 = a1[b % a1.shape[0], c % a1.shape[1], i, j]
                    y[b, c, i, j] = s1 * g[b, c % g.shape[1], i, j] + s0
    return torch.from_numpy(y)


def test_smoke():
    x = _rand(1, 1, 16, 16, dtype=torch.float32)
    y = affine(x, 0.1, _rand(1, 1, 4, 4, dtype=torch.float32))
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("guide_channels", [None, 1, 3])
@pytest.mark.parametrize("map_channels", [1, 3])
def test_shape_dtype_and_paths_agree(dtype, guide_channels, map_channels):
    x = _rand(2, 3, 9, 10, dtype=dtype)
    g = None if guide_channels is None else _rand(2, guide_channels, 9, 10, dtype=dtype, seed=1)
    w0 = _randn(1, map_channels, 3, 4, dtype=dtype, seed=2)
    w1 = _randn(2, 1, 5, 5, dtype=dtype, seed=3)
    with torch.no_grad():
        y0 = affine(x, w0, w1, guide=g)
    y1 = affine(x, w0, w1.clone().requires_grad_(), guide=g)  # autograd path
    assert y0.shape == x.shape and y1.shape == x.shape
    assert y0.dtype == dtype and y1.dtype == dtype
    assert y0.is_contiguous() and y1.is_contiguous()
    torch.testing.assert_close(y1.detach(), y0)


@pytest.mark.parametrize(
    ("w0", "w1", "guide_channels"),
    [
        ("map", "map", None),
        (0.3, "map", None),
        ("map", -2.0, None),
        ("map", "map", 1),
        ("map", "map", 2),
    ],
)
def test_matches_reference_loops(w0, w1, guide_channels):
    x = _rand(2, 2, 7, 9, seed=4)
    g = None if guide_channels is None else _rand(2, guide_channels, 7, 9, seed=5)
    w0 = _randn(1, 2, 3, 4, seed=6) if w0 == "map" else w0
    w1 = _randn(2, 1, 4, 3, seed=7) if w1 == "map" else w1
    ref = reference_affine(x, w0, w1, g)
    torch.testing.assert_close(affine(x, w0, w1, guide=g), ref, rtol=1e-6, atol=1e-12)


def test_identity():
    x = _rand(2, 3, 8, 7)
    torch.testing.assert_close(affine(x, 0.0, 1.0), x, rtol=0, atol=0)
    zeros, ones = torch.zeros(1, 1, 2, 2, dtype=x.dtype), torch.ones(1, 3, 3, 3, dtype=x.dtype)
    torch.testing.assert_close(affine(x, zeros, ones), x, rtol=0, atol=0)
    g = _rand(2, 1, 8, 7, seed=1)
    torch.testing.assert_close(affine(x, 0.0, 1.0, guide=g), g.expand_as(x))


def test_module():
    x, g = _rand(1, 2, 6, 6), _rand(1, 1, 6, 6, seed=1)
    w0, w1 = _randn(1, 1, 3, 3, seed=2), _randn(1, 2, 2, 2, seed=3)
    m = Affine()
    assert isinstance(m, torch.nn.Module)
    torch.testing.assert_close(m(x, w0, w1), affine(x, w0, w1))
    torch.testing.assert_close(m(x, w0, w1, guide=g), affine(x, w0, w1, guide=g))


def test_gradcheck():
    x = _rand(1, 2, 4, 5, seed=8).requires_grad_()
    g = _rand(1, 1, 4, 5, seed=9).requires_grad_()
    w0 = _randn(1, 2, 2, 3, seed=10).requires_grad_()
    w1 = _randn(1, 1, 3, 2, seed=11).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: affine(a, b, c), (x, w0, w1))
    assert torch.autograd.gradcheck(
        lambda b, c, gg: affine(x.detach(), b, c, guide=gg), (w0, w1, g)
    )


@pytest.mark.parametrize(
    ("x", "w0", "w1", "g", "exc", "match"),
    [
        (torch.rand(8, 8), 0.0, 1.0, None, ValueError, "4 dimensions"),
        (torch.rand(1, 2, 8, 8), torch.rand(3, 4), 1.0, None, ValueError, "w0 must be"),
        (torch.rand(1, 2, 8, 8), 0.0, torch.rand(1, 3, 4, 4), None, ValueError, "w1 has 3"),
        (torch.rand(2, 2, 8, 8), torch.rand(3, 1, 4, 4), 1.0, None, ValueError, "batch size 3"),
        (torch.rand(1, 2, 8, 8), 0.0, 1.0, torch.rand(1, 3, 8, 8), ValueError, "guide has 3"),
        (torch.rand(1, 2, 8, 8), 0.0, 1.0, torch.rand(1, 1, 8, 7), ValueError, "guide must"),
        (torch.rand(2, 2, 8, 8), 0.0, 1.0, torch.rand(1, 1, 8, 8), ValueError, "guide must"),
        (torch.rand(1, 2, 8, 8), 0.0, 1.0, torch.rand(8, 8), ValueError, "4 dimensions"),
        (torch.full((1, 1, 8, 8), math.nan), 0.0, 1.0, None, ValueError, "NaN"),
        (torch.rand(1, 1, 8, 8), 0.0, 1.0, torch.full((1, 1, 8, 8), math.inf), ValueError, "NaN"),
        (torch.rand(1, 1, 8, 8), torch.full((1, 1, 2, 2), math.nan), 1.0, None, ValueError, "NaN"),
        (torch.rand(1, 1, 8, 8), 0.0, math.inf, None, ValueError, "finite"),
        (torch.rand(1, 1, 8, 8), "0", 1.0, None, TypeError, "number or a torch.Tensor"),
    ],
)
def test_errors(x, w0, w1, g, exc, match):
    with pytest.raises(exc, match=match):
        affine(x, w0, w1, guide=g)


@settings(max_examples=15, deadline=None)
@given(st.floats(-10, 10), st.floats(-10, 10), st.integers(0, 2**31 - 1))
def test_constant_maps_are_a_global_affine_map(a, b, seed):
    x = _rand(1, 2, 5, 6, seed=seed)
    y = affine(x, torch.full((1, 1, 2, 3), b, dtype=x.dtype), a)
    torch.testing.assert_close(y, a * x + b, rtol=1e-12, atol=1e-12)
