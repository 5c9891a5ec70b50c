"""Tests for pkn.kernels.kpn (per-pixel softmax kernels)."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pkn.kernels.kpn import KPN, kpn


def _rand(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype)


def _randn(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def reference_kpn(x: torch.Tensor, weights: torch.Tensor, K: int, per_channel: bool):
    """Slow, obviously correct: explicit loops over pixels and taps (float64 numpy)."""
    B, C, H, W = x.shape
    r, KK = K // 2, K * K
    wf = F.interpolate(weights.double(), size=(H, W), mode="bilinear", align_corners=False)
    wf = wf.numpy()
    xp = np.pad(x.double().numpy(), ((0, 0), (0, 0), (r, r), (r, r)), mode="reflect")
    y = np.zeros((B, C, H, W))
    for b in range(B):
        bw = b if wf.shape[0] == B else 0
        for c in range(C):
            c0 = c * KK if per_channel else 0
            for i in range(H):
                for j in range(W):
                    logits = [wf[bw, c0 + k, i, j] for k in range(KK)]
                    m = max(logits)
                    ex = [math.exp(v - m) for v in logits]
                    s = sum(ex)
                    acc = 0.0
                    for k in range(KK):
                        dy, dx = k // K - r, k % K - r
                        acc += ex[k] / s * xp[b, c, i + r + dy, j + r + dx]
                    y[b, c, i, j] = acc
    return torch.from_numpy(y)


def unfold_kpn(x: torch.Tensor, weights: torch.Tensor, K: int, per_channel: bool):
    """Vectorized reference (full-resolution softmax + unfold), for larger images."""
    B, C, H, W = x.shape
    r, KK = K // 2, K * K
    wf = F.interpolate(weights, size=(H, W), mode="bilinear", align_corners=False)
    G = C if per_channel else 1
    s = torch.softmax(wf.reshape(wf.shape[0], G, KK, H, W), dim=2)
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    patches = F.unfold(xp, K).reshape(B, C, KK, H, W)  # row-major taps
    return (s * patches).sum(2)


def test_smoke():
    x = _rand(1, 1, 16, 16, dtype=torch.float32)
    w = _randn(1, 9, 8, 8, dtype=torch.float32)
    y = kpn(x, w)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("wbatch", [1, 2])
def test_shape_dtype_and_paths_agree(dtype, per_channel, wbatch):
    x = _rand(2, 3, 9, 10, dtype=dtype)
    w = _randn(wbatch, (3 if per_channel else 1) * 9, 5, 4, dtype=dtype, seed=1)
    with torch.no_grad():
        y0 = kpn(x, w)
    y1 = kpn(x.clone().requires_grad_(), w)  # autograd (out-of-place) path
    assert y0.shape == x.shape and y0.dtype == dtype and y1.dtype == dtype
    torch.testing.assert_close(y1.detach(), y0)
    # the caller's tensors are not modified by the in-place path
    torch.testing.assert_close(x, _rand(2, 3, 9, 10, dtype=dtype))


def test_float32_weights_with_float64_image():
    x = _rand(1, 2, 6, 6)
    w = _randn(1, 9, 3, 3, dtype=torch.float32)
    assert kpn(x, w).dtype == torch.float64


@pytest.mark.parametrize(
    ("K", "per_channel", "wshape", "wbatch"),
    [
        (3, False, (3, 4), 1),
        (3, True, (4, 3), 2),
        (5, False, (7, 9), 2),  # same size as the image: no resampling
        (5, True, (1, 1), 1),
        (1, False, (2, 2), 1),
    ],
)
def test_matches_reference_loops(K, per_channel, wshape, wbatch):
    B, C, H, W = 2, 2, 7, 9
    x = _rand(B, C, H, W, seed=3)
    w = 2.0 * _randn(wbatch, (C if per_channel else 1) * K * K, *wshape, seed=4)
    ref = reference_kpn(x, w, K, per_channel)
    torch.testing.assert_close(kpn(x, w), ref, rtol=1e-6, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(kpn(x, w), ref, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("grad", [False, True])
def test_many_row_bands_match_unfold_reference(grad):
    # wide enough that row_tiles splits the image into several bands
    x = _rand(1, 2, 40, 1500, seed=5)
    w = _randn(1, 18, 17, 300, seed=6)
    ref = unfold_kpn(x, w, 3, True)
    with torch.set_grad_enabled(grad):
        y = kpn(x.requires_grad_(grad), w)
    torch.testing.assert_close(y.detach(), ref, rtol=1e-6, atol=1e-12)


def test_offsets_are_row_major_correlation():
    x = _rand(1, 1, 8, 8, seed=7)
    K, r = 3, 1
    for k in range(K * K):
        dy, dx = k // K - r, k % K - r
        w = torch.full((1, 9, 1, 1), -1e4, dtype=torch.float64)
        w[:, k] = 0.0
        y = kpn(x, w)
        expected = x[..., 1 + dy : 7 + dy, 1 + dx : 7 + dx]  # x(p + (dy, dx))
        torch.testing.assert_close(y[..., 1:7, 1:7], expected)


def test_huge_centre_logit_is_identity():
    x = _rand(2, 3, 11, 12, seed=8)
    for K in (3, 5, 7):
        w = torch.zeros(1, K * K, 4, 4, dtype=torch.float64)
        w[:, (K // 2) * K + K // 2] = 1e3
        torch.testing.assert_close(kpn(x, w), x, rtol=0, atol=1e-12)


def test_equal_logits_give_box_mean():
    x = _rand(1, 2, 12, 13, seed=9)
    for K in (3, 5):
        r = K // 2
        w = torch.full((1, 2 * K * K, 3, 3), 0.7, dtype=torch.float64)
        box = F.avg_pool2d(x, K, stride=1)  # valid: the interior pixels
        torch.testing.assert_close(kpn(x, w)[..., r:-r, r:-r], box)


def test_tiny_image_smaller_than_pad():
    x = _rand(1, 1, 2, 3)
    y = kpn(x, _randn(1, 25, 2, 2))
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert x.min() - 1e-12 <= y.min() and y.max() <= x.max() + 1e-12


def test_kernel_size_disambiguates():
    # 81 logits with 9 channels: K=9 shared (default) or K=3 per channel
    x = _rand(1, 9, 10, 10)
    w = _randn(1, 81, 3, 3, seed=2)
    torch.testing.assert_close(kpn(x, w), reference_kpn(x, w, 9, False), rtol=1e-6, atol=0)
    y3 = kpn(x, w, kernel_size=3)
    torch.testing.assert_close(y3, reference_kpn(x, w, 3, True), rtol=1e-6, atol=0)
    torch.testing.assert_close(KPN(kernel_size=3)(x, w), y3)


def test_module():
    x = _rand(1, 3, 8, 8)
    w = _randn(1, 27, 4, 4)
    m = KPN()
    assert isinstance(m, torch.nn.Module)
    torch.testing.assert_close(m(x, w), kpn(x, w))


@pytest.mark.parametrize("per_channel", [False, True])
def test_gradcheck(per_channel):
    # both inputs require grad: gradcheck checks the Jacobian w.r.t. each of them
    x = _rand(1, 2, 4, 4, seed=10).requires_grad_()
    w = _randn(1, (2 if per_channel else 1) * 9, 2, 3, seed=11).requires_grad_()
    assert torch.autograd.gradcheck(kpn, (x, w))


def test_gradient_finite_for_huge_logits():
    x = _rand(1, 1, 6, 6).requires_grad_()
    w = (1e4 * torch.sign(_randn(1, 9, 3, 3))).requires_grad_()
    kpn(x, w).square().sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(w.grad).all()


@pytest.mark.parametrize(
    ("x", "w", "exc", "match"),
    [
        (torch.rand(8, 8), torch.rand(1, 9, 8, 8), ValueError, "4 dimensions"),
        (torch.rand(1, 1, 8, 8), torch.rand(9, 8, 8), ValueError, "4 dimensions"),
        (torch.rand(1, 1, 8, 8), np.zeros((1, 9, 8, 8)), TypeError, "torch.Tensor"),
        (torch.rand(2, 1, 8, 8), torch.rand(3, 9, 8, 8), ValueError, "batch size 3"),
        (torch.rand(1, 3, 8, 8), torch.rand(1, 8, 8, 8), ValueError, "K odd"),
        (torch.rand(1, 1, 8, 8), torch.rand(1, 4, 8, 8), ValueError, "K odd"),  # K = 2
        (torch.rand(1, 2, 8, 8), torch.rand(1, 27, 8, 8), ValueError, "K odd"),  # 3 != 2
        (torch.full((1, 1, 8, 8), math.nan), torch.rand(1, 9, 8, 8), ValueError, "NaN"),
        (torch.rand(1, 1, 8, 8), torch.full((1, 9, 2, 2), math.nan), ValueError, "NaN"),
        (torch.rand(1, 1, 8, 8), torch.full((1, 9, 2, 2), math.inf), ValueError, "Inf"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.int64), torch.rand(1, 9, 8, 8), TypeError, "float"),
    ],
)
def test_errors(x, w, exc, match):
    with pytest.raises(exc, match=match):
        kpn(x, w)


def test_bad_kernel_size():
    x, w = torch.rand(1, 1, 8, 8), torch.rand(1, 9, 8, 8)
    with pytest.raises(ValueError, match="odd"):
        kpn(x, w, kernel_size=4)
    with pytest.raises(ValueError, match="kernel_size=5"):
        kpn(x, w, kernel_size=5)


# --- properties ----------------------------------------------------------------------------

_sizes = st.integers(min_value=3, max_value=9)


@st.composite
def _case(draw, scale=3.0):
    K = draw(st.sampled_from([1, 3, 5]))
    H, W = draw(_sizes), draw(_sizes)
    C = draw(st.integers(1, 2))
    per = draw(st.booleans())
    h, w = draw(st.integers(1, H)), draw(st.integers(1, W))
    seed = draw(st.integers(0, 2**31 - 1))
    x = _rand(1, C, H, W, seed=seed)
    logits = scale * _randn(1, (C if per else 1) * K * K, h, w, seed=seed + 1)
    return K, x, logits


def _window_min_max(x: torch.Tensor, K: int):
    r = K // 2
    xn = x.numpy()
    mode = "reflect" if min(xn.shape[-2:]) > r else "edge"
    xp = np.pad(xn, ((0, 0), (0, 0), (r, r), (r, r)), mode=mode)
    win = np.lib.stride_tricks.sliding_window_view(xp, (K, K), axis=(2, 3))
    return win.min(axis=(-2, -1)), win.max(axis=(-2, -1))


@settings(max_examples=25, deadline=None)
@given(_case())
def test_output_within_window_min_max(case):
    K, x, w = case
    y = kpn(x, w).numpy()
    lo, hi = _window_min_max(x, K)
    assert (y >= lo - 1e-12).all() and (y <= hi + 1e-12).all()


@settings(max_examples=25, deadline=None)
@given(_case(), st.floats(-5.0, 5.0))
def test_constant_stays_constant(case, value):
    _, x, w = case
    y = kpn(torch.full_like(x, value), w)
    torch.testing.assert_close(y, torch.full_like(x, value), rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(_case(scale=1.0), st.sampled_from([torch.float32, torch.float64]), st.booleans())
def test_huge_logits_stay_finite(case, dtype, signs):
    K, x, w = case
    w = 1e4 * (torch.sign(w) if signs else w)  # +-1e4 and random large magnitudes
    x, w = x.to(dtype), w.to(dtype)
    y = kpn(x, w)
    assert torch.isfinite(y).all()
    lo, hi = _window_min_max(x.double(), K)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (y.double().numpy() >= lo - tol).all() and (y.double().numpy() <= hi + tol).all()


@pytest.mark.parametrize("wshape", [(16, 75), (32, 150), (11, 50), (1, 150)])
def test_inference_bands_match_unfold_reference(wshape, monkeypatch):
    # the no-grad path resamples the logits band by band (integer factors by strided lerps)
    kpn_module = importlib.import_module("pkn.kernels.kpn")
    monkeypatch.setattr(kpn_module, "_TILE", 9 * 150 * 5)  # bands of a few rows
    x = _rand(2, 2, 32, 150, seed=12)
    w = 3.0 * _randn(1, 9, *wshape, seed=13)
    with torch.no_grad():
        y = kpn(x, w)
    torch.testing.assert_close(y, unfold_kpn(x, w, 3, False), rtol=1e-6, atol=1e-12)
    y32 = kpn(x.float(), w.float()).detach()
    torch.testing.assert_close(y32, y.float(), rtol=2e-5, atol=2e-6)


def test_inference_does_not_modify_inputs():
    x = _rand(1, 1, 10, 12, seed=14)
    for w in (_randn(1, 9, 10, 12, seed=15), _randn(1, 9, 5, 6, seed=15)):  # view / resampled
        w0, x0 = w.clone(), x.clone()
        with torch.no_grad():
            kpn(x, w)
        assert torch.equal(w, w0) and torch.equal(x, x0)
