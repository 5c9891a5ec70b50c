"""Tests for pkn.kernels.polyblur (polynomial reblurring with per-pixel coefficients)."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pkn.kernels.polyblur import Polyblur, polyblur

PB = importlib.import_module("pkn.kernels._blur")  # the blur operator's module

PROPS = settings(max_examples=25, deadline=None)


def _rand(*shape, lo=0.0, hi=1.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=dtype)


def _full(p, x: torch.Tensor) -> np.ndarray:
    """A coefficient at full resolution (bilinear, align_corners=False)."""
    H, W = x.shape[-2:]
    if not isinstance(p, torch.Tensor):
        return np.full((1, 1, H, W), float(p))
    p = p.detach().to(torch.float64)
    if p.shape[-2:] == (1, 1):
        p = p.expand(-1, -1, H, W)
    elif p.shape[-2:] != (H, W):
        p = F.interpolate(p, size=(H, W), mode="bilinear", align_corners=False)
    return p.numpy()


def reference_kernel(blur) -> np.ndarray:
    """The normalized 2D kernel, from the formulas (explicit loops)."""
    if isinstance(blur, torch.Tensor):
        k = blur.detach().double().numpy()
        return k / k.sum()
    sy, sx, rho = (blur, blur, 0.0) if not isinstance(blur, tuple) else blur
    rho = min(max(rho, -1 + 1e-6), 1 - 1e-6)
    ry, rx = math.ceil(3 * sy), math.ceil(3 * sx)
    k = np.zeros((2 * ry + 1, 2 * rx + 1))
    for i in range(-ry, ry + 1):
        for j in range(-rx, rx + 1):
            u, v = j / sx, i / sy  # (dx, dy) = (column, row) offsets
            k[i + ry, j + rx] = math.exp(-0.5 * (u * u - 2 * rho * u * v + v * v) / (1 - rho**2))
    return k / k.sum()


def reference_blur(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """True convolution of one (H, W) image, mirrored borders, centre (kh // 2, kw // 2)."""
    H, W = img.shape
    kh, kw = k.shape
    ch, cw = kh // 2, kw // 2
    mirror = H > max(kh - 1 - ch, ch) and W > max(kw - 1 - cw, cw)

    def src(i: int, n: int) -> int:
        if not mirror:
            return min(max(i, 0), n - 1)
        return -i if i < 0 else 2 * (n - 1) - i if i >= n else i

    out = np.zeros_like(img)
    for i in range(H):
        for j in range(W):
            acc = 0.0
            for u in range(kh):
                for v in range(kw):
                    acc += k[u, v] * img[src(i - u + ch, H), src(j - v + cw, W)]
            out[i, j] = acc
    return out


def reference(x, b, c, d, blur) -> np.ndarray:
    """y = x + b (Bx - x) + c (B^2 x - x) + d (B^3 x - x), with explicit loops."""
    xn = x.detach().double().numpy()
    k = reference_kernel(blur)
    coefs = [_full(p, x) for p in (b, c, d)]
    y = np.empty_like(xn)
    for n in range(xn.shape[0]):
        for ch in range(xn.shape[1]):
            z, acc = xn[n, ch], xn[n, ch].copy()
            for m in coefs:
                z = reference_blur(z, k)
                acc += m[n % m.shape[0], ch % m.shape[1]] * (z - xn[n, ch])
            y[n, ch] = acc
    return y


ASYM = torch.tensor([[0.0, 1.0, 2.0], [0.5, 3.0, 0.0], [0.0, 0.2, 4.0], [1.0, 0.0, 0.3]])

BLURS = {
    "sigma": 0.9,
    "sigma-int": 1,
    "tuple-rho": (1.1, 0.6, 0.7),
    "tuple-rho-negative": (0.5, 0.9, -0.95),
    "tuple-rho-0": (0.8, 0.4, 0.0),
    "psf-asymmetric-4x3": ASYM,
    "psf-asymmetric-2x5": _rand(2, 5, seed=9),
}


# --------------------------------------------------------------------------- smoke / shapes


def test_smoke():
    x = torch.rand(1, 1, 16, 16)
    y = polyblur(x, 1.5, -0.8, 0.1, blur=1.0)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.equal(Polyblur(1.0)(x, 1.5, -0.8, 0.1), y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("blur", sorted(BLURS))
def test_shapes_and_dtypes_kept(dtype, blur):
    x = torch.rand(2, 3, 11, 12, dtype=dtype)
    b = _rand(2, 3, 5, 6, lo=-1, hi=2, seed=1, dtype=dtype)
    y = polyblur(x, b, 0.5, _rand(1, 1, 3, 3, seed=2), blur=BLURS[blur])
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all()


def test_module():
    x = _rand(1, 2, 9, 10, seed=3)
    m = Polyblur(ASYM)
    assert "psf" in dict(m.named_buffers())
    torch.testing.assert_close(m(x, 0.3, 0.2, 0.1), polyblur(x, 0.3, 0.2, 0.1, blur=ASYM))
    m = m.to(torch.float64)  # the buffer follows; the result does not depend on its dtype
    torch.testing.assert_close(m(x, 0.3, 0.2, 0.1), polyblur(x, 0.3, 0.2, 0.1, blur=ASYM))
    assert torch.equal(
        Polyblur((1.0, 0.5, 0.2))(x, 1, 0, 0), polyblur(x, 1, 0, 0, blur=(1.0, 0.5, 0.2))
    )


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize("blur", sorted(BLURS))
def test_matches_reference(blur):
    x = _rand(2, 2, 8, 9, seed=4)
    b = _rand(2, 1, 4, 5, lo=-1.0, hi=2.0, seed=5)  # half resolution
    c = _rand(1, 2, 4, 5, lo=-2.0, hi=1.0, seed=6)
    d = 0.4
    y = polyblur(x, b, c, d, blur=BLURS[blur])
    np.testing.assert_allclose(y.numpy(), reference(x, b, c, d, BLURS[blur]), rtol=1e-6, atol=1e-12)


def test_matches_reference_fullres_maps_and_replicate_fallback():
    x = _rand(1, 1, 3, 4, seed=7)  # smaller than the 9x9 kernel: edge replication
    b, c, d = (_rand(1, 1, 3, 4, lo=-1, hi=1, seed=s) for s in (8, 9, 10))
    y = polyblur(x, b, c, d, blur=1.4)
    np.testing.assert_allclose(y.numpy(), reference(x, b, c, d, 1.4), rtol=1e-6, atol=1e-12)


def test_float32_matches_reference():
    x = _rand(1, 2, 8, 7, seed=11, dtype=torch.float32)
    b = _rand(1, 1, 4, 4, lo=-1, hi=2, seed=12, dtype=torch.float32)
    y = polyblur(x, b, -0.5, 0.25, blur=(0.8, 1.2, 0.3))
    ref = reference(x, b, -0.5, 0.25, (0.8, 1.2, 0.3))
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "psf", [ASYM, ASYM.T.contiguous(), _rand(5, 2, seed=13), _rand(1, 6, seed=14)]
)
def test_psf_is_a_true_convolution_like_scipy(psf):
    x = _rand(2, 3, 10, 11, seed=15)
    y = polyblur(x, 1.0, 0.0, 0.0, blur=psf).numpy()
    k = (psf.double() / psf.double().sum()).numpy()
    xn = x.numpy()
    convolved = np.stack([[ndi.convolve(im, k, mode="mirror") for im in ims] for ims in xn])
    np.testing.assert_allclose(y, convolved, rtol=1e-10, atol=1e-12)
    correlated = np.stack([[ndi.correlate(im, k, mode="mirror") for im in ims] for ims in xn])
    assert not np.allclose(y, correlated)  # the PSF is flipped, unlike conv2d


@pytest.mark.parametrize("blur", [*sorted(BLURS), "psf-17x17", "sigma-3"])
def test_fft_and_direct_agree(blur, monkeypatch):
    kernel = {"psf-17x17": _rand(17, 17, seed=16), "sigma-3": 3.0}.get(blur, BLURS.get(blur))
    x = _rand(1, 2, 20, 23, seed=17)
    b, c, d = _rand(1, 1, 5, 5, lo=-1, hi=2, seed=18), -0.7, 0.3
    monkeypatch.setattr(PB, "_FFT_TAPS", 0)
    fft = polyblur(x, b, c, d, blur=kernel)
    monkeypatch.setattr(PB, "_FFT_TAPS", 10**9)
    direct = polyblur(x, b, c, d, blur=kernel)
    torch.testing.assert_close(fft, direct, rtol=1e-10, atol=1e-12)


def test_large_psf_uses_fft_by_default(monkeypatch):
    calls = []
    fft = PB._Blur._fft
    monkeypatch.setattr(PB._Blur, "_fft", lambda self, *a: calls.append(1) or fft(self, *a))
    x = _rand(1, 1, 20, 20, seed=19)
    polyblur(x, 1.0, 0.0, 0.0, blur=_rand(15, 15, seed=20))  # 225 taps: direct
    polyblur(x, 1.0, 0.0, 0.0, blur=1.5)  # separable, 11 + 11 taps: direct
    assert calls == []
    polyblur(x, 1.0, 0.0, 0.0, blur=_rand(16, 15, seed=21))
    assert calls == [1]


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("which", ["x", "b", "c", "d"])
@pytest.mark.parametrize("blur", ["sigma", "tuple-rho", "psf-asymmetric-2x5"])
def test_gradcheck(which, blur):
    inputs = {
        "x": _rand(1, 1, 6, 7, seed=22),
        "b": _rand(1, 1, 3, 4, lo=-1, hi=2, seed=23),
        "c": _rand(1, 1, 3, 4, lo=-1, hi=1, seed=24),
        "d": _rand(1, 1, 3, 4, lo=-1, hi=1, seed=25),
    }
    leaf = inputs[which].requires_grad_()

    def f(t):
        a = {**inputs, which: t}
        return polyblur(a["x"], a["b"], a["c"], a["d"], blur=BLURS[blur])

    assert torch.autograd.gradcheck(f, (leaf,), eps=1e-6, atol=1e-6)


def test_gradcheck_fft_and_psf(monkeypatch):
    monkeypatch.setattr(PB, "_FFT_TAPS", 0)
    x = _rand(1, 1, 6, 7, seed=26).requires_grad_()
    psf = _rand(3, 2, lo=0.1, hi=1.0, seed=27).requires_grad_()
    b = _rand(1, 1, 3, 4, seed=28).requires_grad_()

    def f(x, psf, b):
        return polyblur(x, b, 0.3, -0.2, blur=psf)

    assert torch.autograd.gradcheck(f, (x, psf, b), eps=1e-6, atol=1e-6)
    monkeypatch.setattr(PB, "_FFT_TAPS", 10**9)
    assert torch.autograd.gradcheck(f, (x, psf, b), eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x: polyblur(x[0], 1, 0, 0, blur=1.0), ValueError, "4 dimensions"),
        (lambda x: polyblur(x.numpy(), 1, 0, 0, blur=1.0), TypeError, "torch.Tensor"),
        (lambda x: polyblur(x * float("nan"), 1, 0, 0, blur=1.0), ValueError, "NaN"),
        (lambda x: polyblur(x, torch.ones(3, 1, 4, 4), 0, 0, blur=1.0), ValueError, "batch"),
        (lambda x: polyblur(x, 1, torch.ones(1, 2, 4, 4), 0, blur=1.0), ValueError, "channels"),
        (lambda x: polyblur(x, 1, 0, torch.ones(4, 4), blur=1.0), ValueError, "shape"),
        (lambda x: polyblur(x, float("inf"), 0, 0, blur=1.0), ValueError, "finite"),
        (lambda x: polyblur(x, 1, 0, 0, blur=0.0), ValueError, "sigma > 0"),
        (lambda x: polyblur(x, 1, 0, 0, blur=-1.0), ValueError, "sigma > 0"),
        (lambda x: polyblur(x, 1, 0, 0, blur=float("nan")), ValueError, "sigma > 0"),
        (lambda x: polyblur(x, 1, 0, 0, blur=True), TypeError, "sigma > 0"),
        (lambda x: polyblur(x, 1, 0, 0, blur="gauss"), TypeError, "PSF tensor"),
        (lambda x: polyblur(x, 1, 0, 0, blur=None), TypeError, "PSF tensor"),
        (lambda x: polyblur(x, 1, 0, 0, blur=np.ones((3, 3))), TypeError, "PSF tensor"),
        (lambda x: polyblur(x, 1, 0, 0, blur=(1.0, 1.0)), ValueError, "length 2"),
        (lambda x: polyblur(x, 1, 0, 0, blur=(1.0, 0.0, 0.0)), ValueError, "sigma_x"),
        (lambda x: polyblur(x, 1, 0, 0, blur=(1.0, 1.0, 1.5)), ValueError, "rho"),
        (lambda x: polyblur(x, 1, 0, 0, blur=(1.0, 1.0, "0")), TypeError, "rho"),
        (lambda x: polyblur(x, 1, 0, 0, blur=torch.ones(3)), ValueError, "shape"),
        (lambda x: polyblur(x, 1, 0, 0, blur=torch.ones(1, 3, 3)), ValueError, "shape"),
        (lambda x: polyblur(x, 1, 0, 0, blur=torch.ones(0, 3)), ValueError, "shape"),
        (lambda x: polyblur(x, 1, 0, 0, blur=-torch.ones(3, 3)), ValueError, "negative"),
        (lambda x: polyblur(x, 1, 0, 0, blur=torch.zeros(3, 3)), ValueError, "zero sum"),
        (lambda x: polyblur(x, 1, 0, 0, blur=torch.full((2, 2), math.nan)), ValueError, "NaN"),
        (
            lambda x: polyblur(x, 1, 0, 0, blur=torch.ones(2, 2, dtype=torch.bool)),
            TypeError,
            "dtype",
        ),
        (lambda x: Polyblur(-2.0), ValueError, "sigma > 0"),
    ],
)
def test_errors(call, error, match):
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(error, match=match):
        call(x)


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("blur", sorted(BLURS))
def test_zero_coefficients_are_the_identity(blur):
    x = _rand(2, 2, 9, 8, seed=30)
    assert torch.equal(polyblur(x, 0, 0, 0, blur=BLURS[blur]), x)
    zeros = torch.zeros(1, 1, 4, 4, dtype=x.dtype)
    torch.testing.assert_close(polyblur(x, zeros, zeros, zeros, blur=BLURS[blur]), x)


@pytest.mark.parametrize("blur", sorted(BLURS))
def test_b_one_is_the_blur(blur):
    x = _rand(1, 2, 9, 8, seed=31)
    y = polyblur(x, 1.0, 0.0, 0.0, blur=BLURS[blur]).numpy()
    k = reference_kernel(BLURS[blur])
    ref = np.stack([[reference_blur(x[0, c].numpy(), k) for c in range(2)]])
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
    ones = torch.ones(1, 1, 3, 3, dtype=x.dtype)  # the same with maps
    torch.testing.assert_close(polyblur(x, ones, 0.0, 0.0, blur=BLURS[blur]).numpy(), y)


@pytest.mark.parametrize("sigma", [0.6, 1.0, 2.3])
def test_sigma_blur_equals_scipy_gaussian_filter(sigma):
    x = _rand(1, 1, 30, 31, seed=32)
    r = math.ceil(3 * sigma)
    blurred = ndi.gaussian_filter(
        x.numpy(), (0, 0, sigma, sigma), truncate=r / sigma, mode="mirror"
    )
    torch.testing.assert_close(polyblur(x, 1.0, 0, 0, blur=sigma).numpy(), blurred)
    twice = ndi.gaussian_filter(blurred, (0, 0, sigma, sigma), truncate=r / sigma, mode="mirror")
    torch.testing.assert_close(polyblur(x, 0.0, 1.0, 0.0, blur=sigma).numpy(), twice)  # B^2


def test_coefficients_are_per_channel():
    x = _rand(1, 2, 9, 9, seed=33)
    b = torch.tensor([0.0, 1.0], dtype=x.dtype).view(1, 2, 1, 1)
    y = polyblur(x, b, 0, 0, blur=1.0)
    torch.testing.assert_close(y[:, :1], x[:, :1])
    torch.testing.assert_close(y[:, 1:], polyblur(x[:, 1:], 1.0, 0, 0, blur=1.0))


# --------------------------------------------------------------------------- properties


@st.composite
def _blurs(draw):
    kind = draw(st.sampled_from(["sigma", "tuple", "psf"]))
    sig = st.floats(1e-6, 2.5)
    if kind == "sigma":
        return draw(sig)
    if kind == "tuple":
        return (draw(sig), draw(sig), draw(st.floats(-1.0, 1.0)))
    kh, kw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    k = _rand(kh, kw, seed=draw(st.integers(0, 999)))
    k = k * (k > draw(st.floats(0.0, 0.9)))  # some zero taps
    k[draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))] += 1e-3  # positive sum
    return k


def _half_size(blur) -> tuple[int, int]:
    if isinstance(blur, torch.Tensor):
        return max(blur.shape[0] // 2, blur.shape[0] - 1 - blur.shape[0] // 2), max(
            blur.shape[1] // 2, blur.shape[1] - 1 - blur.shape[1] // 2
        )
    sy, sx = (blur, blur) if not isinstance(blur, tuple) else blur[:2]
    return math.ceil(3 * sy), math.ceil(3 * sx)


@st.composite
def _images(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    shape = (1, draw(st.integers(1, 2)), draw(st.integers(1, 10)), draw(st.integers(1, 10)))
    return _rand(*shape, lo=-1.0, hi=1.0, seed=draw(st.integers(0, 2**16)), dtype=dtype)


@PROPS
@given(_images(), _blurs(), st.floats(0.0, 1.0), st.booleans())
def test_convex_output_within_local_window(x, blur, b, as_map):
    if as_map:
        b = _rand(1, 1, 2, 3, hi=b, seed=1, dtype=x.dtype)
    y = polyblur(x, b, 0.0, 0.0, blur=blur)
    assert torch.isfinite(y).all()
    ry, rx = _half_size(blur)
    xn = x.double().numpy()
    size = (1, 1, 2 * ry + 1, 2 * rx + 1)  # a window that holds the kernel's support
    lo = ndi.minimum_filter(xn, size=size, mode="nearest")  # clipped to the image
    hi = ndi.maximum_filter(xn, size=size, mode="nearest")
    tol = 1e-6 if x.dtype == torch.float32 else 1e-12
    assert (y.double().numpy() >= lo - tol).all() and (y.double().numpy() <= hi + tol).all()


@PROPS
@given(
    _images(), _blurs(), st.floats(-100, 100), st.lists(st.floats(-3, 3), min_size=3, max_size=3)
)
def test_constant_stays_constant(x, blur, value, coefs):
    x = torch.full_like(x, value)
    y = polyblur(x, *coefs, blur=blur)
    tol = (1e-5 if x.dtype == torch.float32 else 1e-12) * max(1.0, abs(value)) * 10
    assert (y - value).abs().max() <= tol


@PROPS
@given(
    _images(),
    st.sampled_from([1e-30, 1e-10, 1e-3, 0.5, 4.0]),
    st.sampled_from([1e-30, 1e-6, 1.0, 2.0]),
    st.sampled_from([-1.0, -0.9999999, 0.0, 0.999999, 1.0]),
    st.sampled_from([-5.0, 0.0, 1.0, 5.0]),
)
def test_no_nan_or_inf_at_extremes(x, sy, sx, rho, coef):
    for blur in [(sy, sx, rho), sy, torch.tensor([[0.0, 1e-30], [0.0, 0.0]])]:
        y = polyblur(x, coef, -coef, coef, blur=blur)
        assert torch.isfinite(y).all()
