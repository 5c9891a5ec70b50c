"""Tests for pkn.kernels.basis (per-pixel combination of fixed kernels)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pkn.kernels.basis import Basis, basis


def _rand(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype)


def _randn(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def gaussians(sigmas, k, dtype=torch.float64):
    """Normalized isotropic Gaussian kernels ``(N, k, k)``."""
    r = k // 2
    d = torch.arange(-r, r + 1, dtype=dtype)
    d2 = d[:, None] ** 2 + d[None, :] ** 2
    g = torch.stack([torch.exp(-d2 / (2 * s * s)) for s in sigmas])
    return g / g.sum(dim=(1, 2), keepdim=True)


def reference_basis(x: torch.Tensor, coefficients: torch.Tensor, bases: torch.Tensor):
    """Slow, obviously correct: explicit loops over pixels, bases and taps (float64)."""
    B, C, H, W = x.shape
    N, k, _ = bases.shape
    r = k // 2
    a = F.interpolate(coefficients.double(), size=(H, W), mode="bilinear", align_corners=False)
    a = a.numpy()
    per_channel = a.shape[1] == C * N and C > 1
    bn = bases.double().numpy()
    xp = np.pad(x.double().numpy(), ((0, 0), (0, 0), (r, r), (r, r)), mode="reflect")
    y = np.zeros((B, C, H, W))
    for b in range(B):
        ba = b if a.shape[0] == B else 0
        for c in range(C):
            c0 = c * N if per_channel else 0
            for i in range(H):
                for j in range(W):
                    acc = 0.0
                    for n in range(N):
                        s = 0.0
                        for dy in range(-r, r + 1):
                            for dx in range(-r, r + 1):
                                s += bn[n, dy + r, dx + r] * xp[b, c, i + r + dy, j + r + dx]
                        acc += a[ba, c0 + n, i, j] * s
                    y[b, c, i, j] = acc
    return torch.from_numpy(y)


def test_smoke():
    x = _rand(1, 1, 16, 16, dtype=torch.float32)
    y = basis(x, _rand(1, 3, 4, 4, dtype=torch.float32), gaussians([0.5, 1, 2], 5).float())
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    tiny = _rand(1, 1, 2, 3)  # smaller than the pad: edge replication
    y = basis(tiny, torch.ones(1, 1, 1, 1, dtype=torch.float64), gaussians([1.0], 5))
    assert y.shape == tiny.shape and tiny.min() - 1e-12 <= y.min() <= y.max() <= tiny.max() + 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("cbatch", [1, 2])
def test_shape_dtype_and_paths_agree(dtype, per_channel, cbatch):
    x = _rand(2, 3, 9, 10, dtype=dtype)
    a = _randn(cbatch, (3 if per_channel else 1) * 2, 4, 5, dtype=dtype, seed=1)
    b = _randn(2, 3, 3, dtype=dtype, seed=2)
    with torch.no_grad():
        y0 = basis(x, a, b)
    y1 = basis(x.clone().requires_grad_(), a, b)  # autograd (out-of-place) path
    assert y0.shape == x.shape and y0.dtype == dtype and y1.dtype == dtype
    torch.testing.assert_close(y1.detach(), y0)


def test_float32_parameters_with_float64_image():
    x = _rand(1, 2, 6, 6)
    y = basis(x, _rand(1, 2, 3, 3, dtype=torch.float32), gaussians([1, 2], 3).float())
    assert y.dtype == torch.float64


@pytest.mark.parametrize(
    ("k", "N", "per_channel", "ashape", "abatch"),
    [
        (3, 2, False, (3, 4), 1),
        (3, 3, True, (4, 3), 2),
        (5, 4, False, (7, 9), 2),  # same size as the image: no resampling
        (5, 1, True, (1, 1), 1),
        (1, 2, False, (2, 5), 1),
    ],
)
def test_matches_reference_loops(k, N, per_channel, ashape, abatch):
    B, C, H, W = 2, 2, 7, 9
    x = _rand(B, C, H, W, seed=3)
    a = _randn(abatch, (C if per_channel else 1) * N, *ashape, seed=4)
    b = _randn(N, k, k, seed=5)  # arbitrary real kernels, not symmetric
    ref = reference_basis(x, a, b)
    torch.testing.assert_close(basis(x, a, b), ref, rtol=1e-6, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(basis(x, a, b), ref, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("grad", [False, True])
def test_many_row_bands(grad):
    # wide enough that row_tiles splits the image into several bands
    x = _rand(1, 2, 40, 1500, seed=6)
    a = _randn(1, 6, 13, 400, seed=7)
    b = _randn(3, 3, 3, seed=8)
    af = F.interpolate(a, size=(40, 1500), mode="bilinear", align_corners=False)
    xp = F.pad(x, (1, 1, 1, 1), mode="reflect")
    f = F.conv2d(xp.reshape(2, 1, 42, 1502), b[:, None]).reshape(1, 2, 3, 40, 1500)
    ref = (f * af.reshape(1, 2, 3, 40, 1500)).sum(2)
    with torch.set_grad_enabled(grad):
        y = basis(x.requires_grad_(grad), a, b)
    torch.testing.assert_close(y.detach(), ref, rtol=1e-6, atol=1e-12)


def test_delta_kernel_is_identity():
    x = _rand(2, 3, 10, 11, seed=9)
    for k in (1, 3, 5):
        delta = torch.zeros(1, k, k, dtype=torch.float64)
        delta[0, k // 2, k // 2] = 1.0
        y = basis(x, torch.ones(1, 1, 3, 3, dtype=torch.float64), delta)
        torch.testing.assert_close(y, x, rtol=0, atol=1e-12)


def test_correlation_convention():
    # bases[n][dy + r, dx + r] multiplies x(p + (dy, dx)), as kpn's offsets
    x = _rand(1, 1, 8, 8, seed=10)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            b = torch.zeros(1, 3, 3, dtype=torch.float64)
            b[0, dy + 1, dx + 1] = 1.0
            y = basis(x, torch.ones(1, 1, 1, 1, dtype=torch.float64), b)
            torch.testing.assert_close(y[..., 1:7, 1:7], x[..., 1 + dy : 7 + dy, 1 + dx : 7 + dx])


def test_coefficients_select_bases():
    x = _rand(1, 2, 9, 9, seed=11)
    b = gaussians([0.5, 1.0, 2.0], 5)
    for n in range(3):
        a = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
        a[:, n] = 1.0
        xp = F.pad(x, (2, 2, 2, 2), mode="reflect")
        ref = F.conv2d(xp.reshape(2, 1, 13, 13), b[n][None, None]).reshape(1, 2, 9, 9)
        torch.testing.assert_close(basis(x, a, b), ref)


def test_module_buffer():
    b = gaussians([1.0, 2.0], 3, dtype=torch.float32)
    m = Basis(b)
    assert m.num_bases == 2
    assert "bases" in m.state_dict() and not list(m.parameters())
    x, a = _rand(1, 1, 6, 6, dtype=torch.float32), _rand(1, 2, 3, 3, dtype=torch.float32)
    torch.testing.assert_close(m(x, a), basis(x, a, b))
    m64 = m.double()
    assert m64.bases.dtype == torch.float64
    torch.testing.assert_close(m64(x.double(), a.double()), basis(x.double(), a.double(), b))
    with pytest.raises(ValueError, match="3 dimensions"):
        Basis(torch.ones(3, 3))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        Basis([[[1.0]]])


@pytest.mark.parametrize("per_channel", [False, True])
def test_gradcheck(per_channel):
    # all three require grad: gradcheck checks the Jacobian w.r.t. each of them
    x = _rand(1, 2, 4, 4, seed=12).requires_grad_()
    a = _randn(1, (2 if per_channel else 1) * 2, 2, 3, seed=13).requires_grad_()
    b = _randn(2, 3, 3, seed=14).requires_grad_()
    assert torch.autograd.gradcheck(basis, (x, a, b))


_B3 = torch.ones(2, 3, 3)


@pytest.mark.parametrize(
    ("x", "a", "b", "exc", "match"),
    [
        (torch.rand(8, 8), torch.rand(1, 2, 8, 8), _B3, ValueError, "4 dimensions"),
        (torch.rand(1, 1, 8, 8), torch.rand(2, 8, 8), _B3, ValueError, "4 dimensions"),
        (torch.rand(1, 1, 8, 8), torch.rand(1, 2, 8, 8), torch.ones(3, 3), ValueError, "3 dim"),
        (torch.rand(1, 1, 8, 8), torch.rand(1, 2, 8, 8), torch.ones(2, 4, 4), ValueError, "odd"),
        (torch.rand(1, 1, 8, 8), torch.rand(1, 2, 8, 8), torch.ones(2, 3, 5), ValueError, "odd"),
        (torch.rand(1, 1, 8, 8), torch.rand(1, 2, 8, 8), [[[1.0]]], TypeError, "torch.Tensor"),
        (torch.rand(1, 1, 8, 8), 0.5, _B3, TypeError, "torch.Tensor"),
        (torch.rand(2, 1, 8, 8), torch.rand(3, 2, 8, 8), _B3, ValueError, "batch size 3"),
        (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), _B3, ValueError, "C\\*N"),
        (torch.full((1, 1, 8, 8), math.nan), torch.rand(1, 2, 8, 8), _B3, ValueError, "NaN"),
        (torch.rand(1, 1, 8, 8), torch.full((1, 2, 8, 8), math.nan), _B3, ValueError, "NaN"),
        (
            torch.rand(1, 1, 8, 8),
            torch.rand(1, 2, 8, 8),
            torch.full((2, 3, 3), math.inf),
            ValueError,
            "NaN or Inf",
        ),
    ],
)
def test_errors(x, a, b, exc, match):
    with pytest.raises(exc, match=match):
        basis(x, a, b)


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(
    st.integers(3, 9),
    st.integers(3, 9),
    st.sampled_from([1, 3, 5]),
    st.integers(1, 4),
    st.integers(0, 2**31 - 1),
)
def test_convex_combination_stays_in_window(H, W, k, N, seed):
    # normalized non-negative bases + softmax coefficients: a convex combination
    x = _rand(1, 2, H, W, seed=seed)
    a = torch.softmax(3.0 * _randn(1, N, 2, 3, seed=seed + 1), dim=1)
    b = gaussians([0.3 + i for i in range(N)], k)
    y = basis(x, a, b).numpy()
    r = k // 2
    mode = "reflect" if min(H, W) > r else "edge"
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (r, r), (r, r)), mode=mode)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    assert (y >= win.min(axis=(-2, -1)) - 1e-12).all()
    assert (y <= win.max(axis=(-2, -1)) + 1e-12).all()
    const = basis(torch.full_like(x, 0.25), a, b)
    torch.testing.assert_close(const, torch.full_like(x, 0.25))
