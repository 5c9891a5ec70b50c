"""Tests for pkn.kernels.gaussian (per-pixel anisotropic Gaussian blur)."""

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

from pkn.kernels._band import Scratch
from pkn.kernels.gaussian import Gaussian, gaussian

G = importlib.import_module("pkn.kernels.gaussian")  # the module, not the function
GS = importlib.import_module("pkn.kernels._gaussian_separable")  # rho = 0 path, shared helpers
GG = importlib.import_module("pkn.kernels._gaussian_general")  # any-rho path
PL = importlib.import_module("pkn.kernels._gaussian_plan")  # its per-band plans

PROPS = settings(max_examples=25, deadline=None)


def _full(p, x: torch.Tensor) -> np.ndarray:
    """A parameter at full resolution, as in the kernel (bilinear, align_corners=False)."""
    H, W = x.shape[-2:]
    if not isinstance(p, torch.Tensor):
        return np.full((1, 1, H, W), float(p))
    p = p.reshape(1, 1, 1, 1) if p.ndim == 0 else p
    p = p.detach().to(torch.float64)
    if p.shape[-2:] == (1, 1):
        p = p.expand(-1, -1, H, W)
    elif p.shape[-2:] != (H, W):
        p = F.interpolate(p, size=(H, W), mode="bilinear", align_corners=False)
    return p.numpy()


def reference(x, sigma1, sigma2=None, rho=None, size=None) -> np.ndarray:
    """Slow, obviously correct: explicit loops over pixels and window offsets."""
    xn = x.detach().to(torch.float64).numpy()
    B, C, H, W = xn.shape
    s1 = _full(sigma1, x)
    s2 = s1 if sigma2 is None else _full(sigma2, x)
    rh = _full(0.0 if rho is None else rho, x)
    if size is None:
        size = 2 * math.ceil(3 * max(s1.max(), s2.max())) + 1
    r = size // 2
    mirror = min(H, W) > r  # pkn's pad: mirror, or edge replication for tiny images

    def src(i: int, n: int) -> int:
        if not mirror:
            return min(max(i, 0), n - 1)
        return -i if i < 0 else 2 * (n - 1) - i if i >= n else i

    y = np.zeros_like(xn)
    for b in range(B):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    p = (b % s1.shape[0], c % s1.shape[1], i, j)
                    q = (b % s2.shape[0], c % s2.shape[1], i, j)
                    o = (b % rh.shape[0], c % rh.shape[1], i, j)
                    a1, a2 = max(s1[p], 1e-10), max(s2[q], 1e-10)
                    rr = min(max(rh[o], -1 + 1e-6), 1 - 1e-6)
                    num = den = 0.0
                    for dy in range(-r, r + 1):
                        for dx in range(-r, r + 1):
                            u, v = dx / a1, dy / a2
                            w = math.exp(-0.5 * (u * u - 2 * rr * u * v + v * v) / (1 - rr * rr))
                            num += w * xn[b, c, src(i + dy, H), src(j + dx, W)]
                            den += w
                    y[b, c, i, j] = num / den
    return y


def _rand(*shape, lo=0.0, hi=1.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=dtype)


# --------------------------------------------------------------------------- smoke / shapes


def test_smoke():
    x = torch.rand(1, 1, 16, 16)
    y = gaussian(x, 1.0)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert Gaussian()(x, 1.0).equal(y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "params",
    [
        (1.0, None, None),
        (0.7, 1.3, None),
        (0.7, 1.3, 0.4),
        ("map", "map", "map"),
    ],
)
def test_shapes_and_dtypes_kept(dtype, params):
    x = torch.rand(2, 3, 12, 10, dtype=dtype)
    s1, s2, rho = (
        _rand(2, 3, 6, 5, hi=1.5, seed=i, dtype=dtype) if p == "map" else p
        for i, p in enumerate(params)
    )
    if isinstance(rho, torch.Tensor):
        rho = rho * 1.2 - 0.9
    y = gaussian(x, s1, s2, rho)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all()


def test_module_matches_function():
    x, s = torch.rand(1, 2, 9, 9), _rand(1, 1, 4, 4, hi=1.2, dtype=torch.float32)
    m = Gaussian(size=5)
    assert torch.equal(m(x, s, 0.8, 0.3), gaussian(x, s, 0.8, 0.3, size=5))


# --------------------------------------------------------------------------- reference


CASES = {  # name: (sigma1, sigma2, rho, size); "tiny" cases have sigmas near 0
    "iso-number": lambda: (1.1, None, None, None),
    "iso-halfres-map": lambda: (_rand(1, 1, 4, 5, lo=0.2, hi=1.5, seed=1), None, None, None),
    "aniso-numbers": lambda: (0.6, 1.4, None, None),
    "rho-number": lambda: (1.2, 0.7, -0.6, None),
    "rho-maps-halfres": lambda: (
        _rand(2, 1, 4, 5, lo=0.6, hi=1.4, seed=8),
        _rand(1, 2, 4, 5, lo=0.6, hi=1.2, seed=9),
        _rand(2, 2, 4, 5, lo=-0.9, hi=0.9, seed=10),
        None,
    ),
    "mixed-number-and-maps": lambda: (0.9, _rand(1, 2, 4, 5, lo=0.5, hi=1.5, seed=12), 0.4, None),
    "mixed-maps-and-numbers": lambda: (_rand(2, 1, 4, 5, lo=0.5, hi=1.5, seed=13), 1.1, 0.4, None),
    "mixed-rho-map-only": lambda: (0.9, 1.2, _rand(1, 2, 4, 5, lo=-0.9, hi=0.9, seed=14), None),
    "tiny-all-maps-halfres": lambda: (
        _rand(2, 1, 4, 5, lo=0.0, hi=1.4, seed=2),
        _rand(1, 2, 4, 5, lo=0.1, hi=1.2, seed=3),
        _rand(2, 2, 4, 5, lo=-1.0, hi=1.0, seed=4),
        None,
    ),
    "tiny-fullres-maps-size5": lambda: (
        _rand(1, 2, 8, 9, lo=0.0, hi=2.0, seed=5),
        _rand(1, 1, 8, 9, lo=0.0, hi=2.0, seed=6),
        _rand(1, 1, 8, 9, lo=-1.0, hi=1.0, seed=7),
        5,
    ),
    "tiny-image-replicate": lambda: (1.5, 1.0, 0.5, None),
}


def _force(path: str, monkeypatch) -> None:
    """Pick the way the weights are made where rho != 0 ("auto": products where safe)."""
    for mod in (GS, GG, PL):  # the tiles and the plan read _exp_limit (imported by name)
        if path == "exp":  # one exponential per offset
            monkeypatch.setattr(mod, "_exp_limit", lambda dtype: -1.0)
        elif path == "product":  # running products (unsafe for tiny sigmas: not used there)
            monkeypatch.setattr(mod, "_exp_limit", lambda dtype: math.inf)


@pytest.mark.parametrize(
    ("case", "path"),
    [
        (case, path)
        for case in sorted(CASES)
        for path in ("auto", "exp", "product")
        if not (path == "product" and case.startswith("tiny"))  # what "auto" avoids
    ],
)
def test_matches_reference(case, path, monkeypatch):
    _force(path, monkeypatch)
    s1, s2, rho, size = CASES[case]()
    shape = (1, 1, 3, 4) if case == "tiny-image-replicate" else (2, 2, 8, 9)
    x = _rand(*shape, seed=11)
    y = gaussian(x, s1, s2, rho, size=size)
    np.testing.assert_allclose(y.numpy(), reference(x, s1, s2, rho, size), rtol=1e-6, atol=1e-12)


def test_automatic_choice_of_the_weights(monkeypatch):
    calls = []
    powers = GG._powers
    monkeypatch.setattr(GG, "_powers", lambda *a: calls.append(1) or powers(*a))
    x = _rand(1, 1, 8, 9, seed=12)
    gaussian(x, 1.0, 1.5, 0.3)  # moderate: products
    assert len(calls) == 1
    gaussian(x, 1.0, 1e-3, 0.3)  # exp(+-huge) where weights are negligible: clamped products
    assert len(calls) == 2
    gaussian(x, 1.0, 1e-3, 0.95)  # and strongly correlated: one exponential per offset
    assert len(calls) == 2
    gaussian(x, 1.0, 1.5)  # rho = 0: separable, neither
    assert len(calls) == 2


@pytest.mark.parametrize("path", ["auto", "exp"])
def test_float32_matches_reference(path, monkeypatch):
    _force(path, monkeypatch)
    x = _rand(1, 2, 7, 8, seed=3, dtype=torch.float32)
    s1 = _rand(1, 1, 4, 4, lo=0.5, hi=1.5, seed=4, dtype=torch.float32)
    for s2, rho in [(None, None), (0.9, 0.5), (1.3, -0.8)]:
        y = gaussian(x, s1, s2, rho)
        np.testing.assert_allclose(y.numpy(), reference(x, s1, s2, rho), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- gradients


def _grad_inputs(which: str, path: str):
    x = _rand(1, 1, 6, 7, seed=20)
    s1 = _rand(1, 1, 3, 4, lo=0.4, hi=1.3, seed=21)
    s2 = _rand(1, 1, 3, 4, lo=0.4, hi=1.3, seed=22)
    rho = None if path == "separable" else _rand(1, 1, 3, 4, lo=-0.8, hi=0.8, seed=23)
    inputs = {"x": x, "sigma1": s1, "sigma2": s2, "rho": rho}
    return inputs, inputs[which].requires_grad_()


@pytest.mark.parametrize(
    ("which", "path"),
    [
        ("x", "separable"),
        ("sigma1", "separable"),
        ("sigma2", "separable"),
        ("x", "product"),
        ("sigma1", "product"),
        ("sigma2", "product"),
        ("rho", "product"),
        ("x", "exp"),
        ("sigma1", "exp"),
        ("sigma2", "exp"),
        ("rho", "exp"),
    ],
)
def test_gradcheck(which, path, monkeypatch):
    _force(path, monkeypatch)
    inputs, leaf = _grad_inputs(which, path)

    def f(t):
        args = {**inputs, which: t}
        return gaussian(args["x"], args["sigma1"], args["sigma2"], args["rho"], size=5)

    assert torch.autograd.gradcheck(f, (leaf,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", ["product", "exp"])
def test_gradcheck_numbers_mixed_with_maps(path, monkeypatch):
    _force(path, monkeypatch)
    x = _rand(1, 2, 5, 6, seed=32).requires_grad_()
    s2 = _rand(1, 2, 2, 3, lo=0.5, hi=1.0, seed=33).requires_grad_()
    rho = _rand(1, 1, 2, 2, lo=-0.5, hi=0.5, seed=34).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, s2: gaussian(x, 0.8, s2, -0.3, size=3), (x, s2), eps=1e-6, atol=1e-6
    )
    assert torch.autograd.gradcheck(
        lambda x, rho: gaussian(x, 0.8, 0.6, rho, size=3), (x, rho), eps=1e-6, atol=1e-6
    )


def test_gradcheck_isotropic_default_size():
    x = _rand(1, 1, 6, 7, seed=30).requires_grad_()
    s = _rand(1, 1, 3, 4, lo=0.5, hi=0.6, seed=31).requires_grad_()  # radius 2, away from a step
    assert torch.autograd.gradcheck(lambda a, b: gaussian(a, b), (x, s), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path", ["auto", "exp"])
def test_gradients_finite_at_extremes(dtype, path, monkeypatch):
    _force(path, monkeypatch)
    x = _rand(1, 1, 8, 8, seed=40, dtype=dtype).requires_grad_()
    s1 = torch.tensor([[0.0, 1.0], [2.0, 0.0]], dtype=dtype).view(1, 1, 2, 2).requires_grad_()
    s2 = torch.tensor([[0.0, 0.0], [1.5, 1e-8]], dtype=dtype).view(1, 1, 2, 2).requires_grad_()
    rho = torch.tensor([[1.0, -1.0], [1.0, 0.0]], dtype=dtype).view(1, 1, 2, 2).requires_grad_()
    for args in [(s1,), (s1, s2), (s1, s2, rho), (0.0, 0.0, 1.0), (3.0, 0.0, -1.0)]:
        y = gaussian(x, *args)
        assert torch.isfinite(y).all()
        grads = torch.autograd.grad(
            (y * y).sum(), [x, *(a for a in args if isinstance(a, torch.Tensor))]
        )
        assert all(torch.isfinite(g).all() for g in grads)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x: gaussian(x[0], 1.0), ValueError, "4 dimensions"),
        (lambda x: gaussian(x.numpy(), 1.0), TypeError, "torch.Tensor"),
        (lambda x: gaussian(x.long(), 1.0), TypeError, "floating"),
        (lambda x: gaussian(x * float("nan"), 1.0), ValueError, "NaN"),
        (lambda x: gaussian(x, torch.ones(3, 1, 4, 4)), ValueError, "batch size"),
        (lambda x: gaussian(x, 1.0, torch.ones(1, 2, 4, 4)), ValueError, "channels"),
        (lambda x: gaussian(x, torch.ones(4, 4)), ValueError, "shape"),
        (lambda x: gaussian(x, -0.5), ValueError, "sigma1"),
        (lambda x: gaussian(x, 1.0, -torch.ones(1, 1, 2, 2)), ValueError, "sigma2"),
        (lambda x: gaussian(x, float("nan")), ValueError, "finite"),
        (lambda x: gaussian(x, 1.0, 1.0, 1.5), ValueError, "rho"),
        (lambda x: gaussian(x, 1.0, 1.0, -1.01 * torch.ones(1, 1, 3, 3)), ValueError, "rho"),
        (lambda x: gaussian(x, 1.0, rho=0.5), ValueError, "sigma2"),
        (lambda x: gaussian(x, 1.0, size=4), ValueError, "odd"),
        (lambda x: gaussian(x, 1.0, size=0), ValueError, "odd"),
        (lambda x: gaussian(x, 1.0, size=5.0), ValueError, "odd"),
        (lambda x: gaussian(x, "1"), TypeError, "number"),
        (lambda x: Gaussian(size=2), ValueError, "odd"),
    ],
)
def test_errors(call, error, match):
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(error, match=match):
        call(x)


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7])
def test_constant_isotropic_equals_scipy(sigma):
    x = _rand(1, 2, 20, 23, seed=50)
    r = math.ceil(3 * sigma)
    y = gaussian(x, sigma).numpy()
    # scipy's radius is int(truncate * sigma + 0.5): truncate = r / sigma gives r
    ref = ndi.gaussian_filter(x.numpy(), (0, 0, sigma, sigma), truncate=r / sigma)
    np.testing.assert_allclose(y[..., r:-r, r:-r], ref[..., r:-r, r:-r], rtol=1e-10, atol=1e-12)
    mirrored = ndi.gaussian_filter(
        x.numpy(), (0, 0, sigma, sigma), truncate=r / sigma, mode="mirror"
    )
    np.testing.assert_allclose(y, mirrored, rtol=1e-10, atol=1e-12)  # borders too


def test_constant_anisotropic_equals_scipy():
    x = _rand(1, 1, 20, 23, seed=51)
    y = gaussian(x, 0.8, 1.6).numpy()  # sigma1 along x (columns), sigma2 along y (rows)
    ref = ndi.gaussian_filter(x.numpy(), (0, 0, 1.6, 0.8), radius=(0, 0, 5, 5), mode="mirror")
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


def test_rho_sign_orients_the_blur():
    x = torch.zeros(1, 1, 15, 15, dtype=torch.float64)
    x[..., 7, 7] = 1.0
    y = gaussian(x, 1.5, 1.5, 0.9)  # positive correlation: along dx = dy (down-right)
    assert y[0, 0, 9, 9] > 10 * y[0, 0, 5, 9]
    y = gaussian(x, 1.5, 1.5, -0.9)
    assert y[0, 0, 5, 9] > 10 * y[0, 0, 9, 9]


@pytest.mark.parametrize("sigma", [0.0, 1e-12, 1e-3, 0.05])
def test_tiny_sigma_is_identity(sigma):
    x = _rand(2, 2, 9, 8, seed=52)
    torch.testing.assert_close(gaussian(x, sigma, size=7), x, rtol=0, atol=1e-14)
    torch.testing.assert_close(gaussian(x, sigma, sigma, 0.99, size=5), x, rtol=0, atol=1e-14)
    torch.testing.assert_close(gaussian(x, sigma, sigma, -1.0, size=5), x, rtol=0, atol=1e-14)
    torch.testing.assert_close(gaussian(x, sigma), x, rtol=0, atol=1e-14)


def test_zero_sigma_along_one_axis_blurs_the_other():
    x = _rand(1, 1, 10, 11, seed=53)
    y = gaussian(x, 1.0, 0.0).numpy()  # only along x
    ref = ndi.gaussian_filter1d(x.numpy(), 1.0, axis=-1, truncate=3.0, mode="mirror")
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)


def test_default_size_follows_the_largest_sigma():
    x = _rand(1, 1, 30, 30, seed=54)
    s = torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64)
    s[..., 1, 1] = 2.0  # radius 6 everywhere (the window is shared)
    torch.testing.assert_close(gaussian(x, s), gaussian(x, s, size=13))


# --------------------------------------------------------------------------- properties


@st.composite
def _problem(draw):
    h, w = draw(st.integers(2, 9)), draw(st.integers(2, 9))
    seed = draw(st.integers(0, 2**16))
    sig = st.floats(0.0, 3.0)
    s1, s2 = draw(sig), draw(st.none() | sig)
    rho = None if s2 is None else draw(st.none() | st.floats(-1.0, 1.0))
    as_map = draw(st.booleans())
    if as_map:  # per-pixel maps at a lower resolution
        s1 = _rand(1, 1, 2, 3, hi=s1, seed=seed + 1)
        s2 = None if s2 is None else _rand(1, 1, 2, 3, hi=s2, seed=seed + 2)
        if rho is not None:
            rho = _rand(1, 1, 2, 3, lo=-abs(rho), hi=abs(rho), seed=seed + 3)
    size = draw(st.none() | st.sampled_from([1, 3, 5]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    x = _rand(1, draw(st.integers(1, 2)), h, w, seed=seed, dtype=dtype)
    if dtype == torch.float32:
        s1, s2, rho = (p.float() if isinstance(p, torch.Tensor) else p for p in (s1, s2, rho))
    return x, s1, s2, rho, size


def _radius(s1, s2, size):
    if size is not None:
        return size // 2
    m = max(float(torch.as_tensor(s).max()) for s in (s1, s2) if s is not None)
    return math.ceil(3 * m)


@PROPS
@given(_problem())
def test_output_within_local_window(problem):
    x, s1, s2, rho, size = problem
    y = gaussian(x, s1, s2, rho, size=size)
    assert torch.isfinite(y).all()
    k = 2 * _radius(s1, s2, size) + 1
    xn = x.double().numpy()
    lo = ndi.minimum_filter(xn, size=(1, 1, k, k), mode="nearest")  # window clipped to image
    hi = ndi.maximum_filter(xn, size=(1, 1, k, k), mode="nearest")
    tol = 1e-6 if x.dtype == torch.float32 else 1e-12
    assert (y.double().numpy() >= lo - tol).all()
    assert (y.double().numpy() <= hi + tol).all()


@PROPS
@given(_problem(), st.floats(-100.0, 100.0))
def test_constant_stays_constant(problem, value):
    x, s1, s2, rho, size = problem
    x = torch.full_like(x, value)
    y = gaussian(x, s1, s2, rho, size=size)
    tol = 1e-5 * max(1.0, abs(value)) if x.dtype == torch.float32 else 1e-12 * max(1, abs(value))
    assert (y - value).abs().max() <= tol


@PROPS
@given(
    st.sampled_from([0.0, 1e-30, 1e-10, 1e-5, 0.3, 2.5]),
    st.sampled_from([0.0, 1e-10, 1e-3, 1.0, 3.0]),
    st.sampled_from([-1.0, -0.999999, 0.0, 0.9999999, 1.0]),
    st.sampled_from([torch.float32, torch.float64]),
    st.booleans(),
)
def test_no_nan_or_inf_at_extremes(s1, s2, rho, dtype, as_map):
    x = _rand(1, 1, 7, 6, seed=60, dtype=dtype) * 1e3
    if as_map:  # the extreme value in one corner of a map, ordinary values elsewhere
        m = torch.tensor([[s1, 1.0], [0.5, s2]], dtype=dtype).view(1, 1, 2, 2)
        r = torch.tensor([[rho, 0.2], [-rho, rho]], dtype=dtype).view(1, 1, 2, 2)
        y = gaussian(x, m, m.flip(-1), r)
    else:
        y = gaussian(x, s1, s2, rho)
    assert torch.isfinite(y).all()
    assert y.min() >= x.min() - 1e-3 and y.max() <= x.max() + 1e-3


@pytest.mark.parametrize("path", ["auto", "exp", "product"])
@pytest.mark.parametrize("aniso", [False, True])
def test_inference_bands_match_autograd_path(path, aniso, monkeypatch):
    # Without gradients the maps are resampled band by band and the weights are built in
    # base 2 in place; with gradients, from full-resolution maps out of place.
    _force(path, monkeypatch)
    monkeypatch.setattr(G, "_TILE", 40 * 5)  # bands of a few rows
    x = _rand(2, 2, 24, 28, seed=70)
    s1 = _rand(1, 1, 12, 14, lo=0.4, hi=1.2, seed=71)
    s2 = _rand(2, 1, 12, 14, lo=0.4, hi=1.0, seed=72) if aniso else None
    rho = _rand(1, 2, 12, 14, lo=-0.7, hi=0.7, seed=73) if aniso else None
    with torch.no_grad():
        y0 = gaussian(x, s1, s2, rho)
    y1 = gaussian(x.clone().requires_grad_(), s1, s2, rho).detach()
    torch.testing.assert_close(y0, y1, rtol=1e-10, atol=1e-12)
    y32 = gaussian(
        x.float(),
        s1.float(),
        None if s2 is None else s2.float(),
        None if rho is None else rho.float(),
    )
    torch.testing.assert_close(y32, y0.float(), rtol=1e-5, atol=1e-6)


def test_default_size_from_the_resampled_maximum():
    # the window follows the largest value of the *resampled* map: a one-pixel spike of 1.0
    # in a half-resolution map of 0.2 is lowered to 0.65 by the interpolation (radius 2)
    x = _rand(1, 1, 12, 14, seed=74)
    s = torch.full((1, 1, 6, 7), 0.2, dtype=torch.float64)
    s[..., 3, 3] = 1.0
    with torch.no_grad():
        y = gaussian(x, s, 0.4, 0.3)
    np.testing.assert_allclose(y.numpy(), reference(x, s, 0.4, 0.3), rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(y, gaussian(x, s, 0.4, 0.3, size=5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_negligible_offsets_left_out_without_changing_the_result(dtype):
    # Strong correlation: offsets across the ellipse's short axis have weights far below
    # the dtype's resolution in every band, and inference leaves them out.
    x = _rand(1, 1, 30, 32, seed=80, dtype=dtype)
    s = _rand(1, 1, 15, 16, lo=1.8, hi=2.0, seed=81, dtype=dtype)
    rho = _rand(1, 1, 15, 16, lo=0.93, hi=0.97, seed=82, dtype=dtype)
    a, b, c = GG._coefficients(s, s, rho, Scratch(s))  # the no-grad path's scratch buffers
    bounds = tuple(float(v) for t in (a, b, c) for v in torch.aminmax(t))
    kept = PL._kept_offsets(bounds, 6, dtype)
    n_kept = sum(hi - lo + 1 for spans, _ in kept for lo, hi in spans if hi >= lo)
    assert n_kept < 2 * 7 * 6  # some of the 2 x 7 x 6 one-sided offsets are left out
    with torch.no_grad():
        y = gaussian(x, s, s, rho)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-12}
    np.testing.assert_allclose(y.numpy(), reference(x, s, s, rho), **tol)


def _window_mask(kept, r: int) -> np.ndarray:
    """The (2r+1, 2r+1) offsets (rows dy, columns dx) that the spans of `kept` sum."""
    mask = np.zeros((2 * r + 1, 2 * r + 1), dtype=bool)
    mask[r:, r] = True  # the centre and the column dx = 0 are always summed
    for dy, (spans, _) in enumerate(kept):
        for sign, (lo, hi) in zip((1, -1), spans, strict=True):
            for d in range(lo, hi + 1):
                mask[r + dy, r + sign * d] = True
    return mask | mask[::-1, ::-1]  # and the mirror image -o of every offset o


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_left_out_offsets_weigh_less_than_eps_of_the_kept_ones(dtype, seed):
    # A band of pixels whose sigmas and correlations vary: at every pixel, the weights of
    # the offsets left out add up to at most eps times the weights that are summed.
    n = 64
    s1 = _rand(1, 1, 1, n, lo=0.5, hi=0.7, seed=90 + seed, dtype=dtype)
    s2 = _rand(1, 1, 1, n, lo=1.0, hi=1.3, seed=93 + seed, dtype=dtype)
    rho = _rand(1, 1, 1, n, lo=0.3, hi=0.7, seed=96 + seed, dtype=dtype)
    a, b, c = GG._coefficients(s1, s2, rho, Scratch(s1))  # base 2, as inference uses them
    bounds = tuple(float(v) for t in (a, b, c) for v in torch.aminmax(t))
    r = 6
    mask = _window_mask(PL._kept_offsets(bounds, r, dtype), r)
    assert not mask.all()  # something is left out
    d = np.arange(-r, r + 1, dtype=np.float64)
    dy, dx = d[:, None, None], d[None, :, None]  # rows, columns
    q = a.double().numpy().ravel() * dx**2 + b.double().numpy().ravel() * dx * dy
    w = np.exp2(q + c.double().numpy().ravel() * dy**2)  # (2r+1, 2r+1, n)
    left_out, summed = w[~mask].sum(0), w[mask].sum(0)
    assert np.all(left_out <= torch.finfo(dtype).eps * summed)
    # and the rule is not trivially strict: leaving out nothing would not be needed
    assert np.any(left_out > 0.01 * torch.finfo(dtype).eps * summed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_leaving_offsets_out_changes_the_output_by_about_a_rounding_step(dtype, monkeypatch):
    # Seeded images of sparse bright pixels (far offsets that hold one weigh on the output)
    # and maps that vary by 5-10% around random sigmas (0.3-2) and correlations (|rho| <
    # 0.95), so that offsets are left out: the inference path against the same path
    # summing every offset. Measured: 0.96 (float32) and 1.28 (float64) eps x range; a
    # rule 10x looser gives 4.6 and 2.9.
    gen = torch.Generator().manual_seed(7)

    def keep_all(bounds, r, dt):
        span = ((1, r), (1, r))
        return ((span, span),) * (r + 1)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=dtype)

    worst, rule = 0.0, GG._kept_offsets
    for _ in range(40):
        H, W = (int(v) for v in torch.randint(5, 30, (2,), generator=gen))
        x = ((rand(1, 2, H, W) > 0.8) * 100.0).to(dtype)
        base = rand(3)
        s1, s2 = (0.3 + 1.7 * base[i] * (1.0 + 0.1 * rand(1, 1, 4, 5)) for i in (0, 1))
        rho = (1.9 * base[2] - 0.95) * (1.0 + 0.05 * rand(1, 1, 4, 5))
        with torch.no_grad():
            y = gaussian(x, s1, s2, rho)
            monkeypatch.setattr(GG, "_kept_offsets", keep_all)
            y_all = gaussian(x, s1, s2, rho)
            monkeypatch.setattr(GG, "_kept_offsets", rule)
        assert y.dtype == dtype
        worst = max(worst, float((y - y_all).abs().max()) / (100.0 * torch.finfo(dtype).eps))
    assert 0.0 < worst <= 2.0  # something was left out; eps x range plus summation order


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("rho_max", "products"), [(0.4, True), (0.97, False)])
def test_tiny_and_large_sigmas_in_one_band(dtype, rho_max, products, monkeypatch):
    # Maps as the anisotropic model predicts them: tiny sigmas (edges) beside large ones
    # (flat regions), so that factors of the products underflow. With moderate
    # correlations only negligible weights are affected and the products are used; with
    # strong ones one exponential per offset is. Both equal the reference.
    x = _rand(1, 1, 16, 18, seed=100, dtype=dtype)
    s1 = _rand(1, 1, 8, 9, lo=0.05, hi=2.6, seed=101, dtype=dtype)
    s2 = _rand(1, 1, 8, 9, lo=0.05, hi=2.6, seed=102, dtype=dtype)
    s1[..., 0, :3] = 0.05  # tiny sigmas in the first band
    rho = _rand(1, 1, 8, 9, lo=-rho_max, hi=rho_max, seed=103, dtype=dtype)
    calls = []
    powers = GG._powers
    monkeypatch.setattr(GG, "_powers", lambda *a: calls.append(1) or powers(*a))
    with torch.no_grad():
        y = gaussian(x, s1, s2, rho)
    assert bool(calls) == products
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-12}
    np.testing.assert_allclose(y.numpy(), reference(x, s1, s2, rho), **tol)


def test_product_cap_rules():
    f = PL._product_cap
    lim = GS._exp_limit(torch.float32) * GS._LOG2E  # about 113 in base 2
    ok = (-2.0, -0.1, -0.5, 0.5, -2.0, -0.1)  # (min a, max a, min b, max b, min c, max c)
    assert f(ok, 0.5, 6, 2.0, torch.float32) == math.inf  # nothing can overflow
    big_b = (*ok[:3], lim, *ok[4:])  # 2^(b d) overflows: factors clamped ...
    cap = f(big_b, 0.5, 6, 2.0, torch.float32)
    assert 2.0 * cap < lim and cap > 50.0
    assert f(big_b, 0.7, 6, 2.0, torch.float32) is None  # ... unless rho makes them matter
    assert f(ok, 0.5, 6, lim, torch.float32) is None  # the row sums overflow
    tiny = (-40.0, -0.1, -0.5, 0.5, -40.0, -0.1)  # 2^(-40 * 36) underflows
    assert f(tiny, 0.5, 6, 2.0, torch.float32) == math.inf  # where weights are < 2^-56
    assert f(tiny, 0.9, 6, 2.0, torch.float32) is None  # 2^-11 is not negligible
    assert f(tuple(float("nan") for _ in range(6)), 0.5, 6, 2.0, torch.float32) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_products_agree_with_exponentials_on_random_maps(dtype, monkeypatch):
    # Random maps with sigmas from 0 to ~4.5 and |rho| up to 1: whatever the plan picks
    # (products, clamped products, exponentials) is finite and agrees with one
    # exponential per offset to the products' precision (about r ulps).
    gen = torch.Generator().manual_seed(11)
    caps, cap = [], PL._product_cap
    monkeypatch.setattr(GG, "_product_cap", lambda *a: caps.append(cap(*a)) or caps[-1])

    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=dtype)

    worst = 0.0
    for k in range(30):
        x = rand(1, 2, 12, 14) * 100.0
        lo = (0.0, 0.01, 0.1, 0.5)[k % 4]
        s1, s2 = (lo + 4.0 * float(rand(())) * rand(1, 1, 6, 7) for _ in "12")
        rho = (2.0 * rand(1, 1, 6, 7) - 1.0) * (0.3, 0.5, 0.7, 0.9, 1.0)[k % 5]
        with torch.no_grad():
            y = gaussian(x, s1, s2, rho)
            with monkeypatch.context() as m:
                for mod in (GG, PL):
                    m.setattr(mod, "_exp_limit", lambda dt: -1.0)  # exponentials only
                y_exp = gaussian(x, s1, s2, rho)
        assert torch.isfinite(y).all()
        worst = max(worst, float((y - y_exp).abs().max()) / (100.0 * torch.finfo(dtype).eps))
    assert any(c is not None and c < math.inf for c in caps)  # clamped products were used
    assert worst <= 16.0
