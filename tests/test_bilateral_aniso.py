"""Tests for pkn.kernels.bilateral_aniso (bilateral with a full 3x3 spatial-signal covariance).

The registry's contract test covers smoke, dtypes, the generic errors, gradcheck, Module ==
function, constants and the probe; here: the reference loop and what is specific to this
kernel (the covariance, its limits, the tilted plane).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pkn.kernels import bilateral, gaussian
from pkn.kernels.bilateral_aniso import KERNELS, BilateralAniso, bilateral_aniso, covariance
from pkn.kernels.registry import get
from pkn.kernels.remap import RHO_LIMIT, correlation

PROPS = settings(max_examples=25, deadline=None)


def _full(p, x) -> np.ndarray:
    """A parameter at full resolution, as the kernel resamples it (bilinear)."""
    H, W = x.shape[-2:]
    if not isinstance(p, torch.Tensor):
        return np.full((1, 1, H, W), float(p))
    p = p.detach().to(torch.float64)
    if p.shape[-2:] == (1, 1):
        return p.expand(-1, -1, H, W).numpy()
    return F.interpolate(p, size=(H, W), mode="bilinear", align_corners=False).numpy()


def sigma_matrix(s1, s2, r, s, a, b) -> np.ndarray:
    """The documented covariance over (dx, dy, dI), written out with numpy."""
    c = b * math.sqrt((1 - r * r) * (1 - a * a)) + r * a  # corr(dy, dI) from the vine
    corr = np.array([[1.0, r, a], [r, 1.0, c], [a, c, 1.0]])
    std = np.array([s1, s2, s])
    return corr * np.outer(std, std)


def reference(x, s1, s2, r, s, a, b, search_size=5, guide=None) -> np.ndarray:
    """Slow, obviously correct: Sigma built and inverted per pixel, loops over offsets."""
    xn = x.detach().to(torch.float64).numpy()
    g = xn if guide is None else guide.detach().to(torch.float64).numpy()
    B, C, H, W = xn.shape
    maps = [_full(p, x) for p in (s1, s2, r, s, a, b)]
    R = search_size // 2
    mirror = min(H, W) > R

    def src(i, n):
        if not mirror:
            return min(max(i, 0), n - 1)
        return -i if i < 0 else 2 * (n - 1) - i if i >= n else i

    y = np.zeros_like(xn)
    for bi in range(B):
        for c in range(C):
            cg = c if g.shape[1] == C else 0
            for i in range(H):
                for j in range(W):
                    v = [m[bi % m.shape[0], c % m.shape[1], i, j] for m in maps]
                    for k in (0, 1, 3):  # the kernel's clamps
                        v[k] = max(v[k], 1e-10)
                    for k in (2, 4, 5):
                        v[k] = min(max(v[k], -1 + 1e-6), 1 - 1e-6)
                    inv = np.linalg.inv(sigma_matrix(*v))
                    num = den = 0.0
                    for dy in range(-R, R + 1):
                        for dx in range(-R, R + 1):
                            ii, jj = src(i + dy, H), src(j + dx, W)
                            d = np.array([dx, dy, g[bi, cg, ii, jj] - g[bi, cg, i, j]])
                            w = math.exp(max(-0.5 * d @ inv @ d, -60.0))
                            num += w * xn[bi, c, ii, jj]
                            den += w
                    y[bi, c, i, j] = num / den
    return y


def _rand(*shape, lo=0.0, hi=1.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=dtype)


def _maps(B=1, C=1, h=4, w=5, seed=1):
    """Random valid maps (some per channel, some shared)."""
    return (
        _rand(B, 1, h, w, lo=0.3, hi=2.5, seed=seed),
        _rand(1, C, h, w, lo=0.3, hi=2.5, seed=seed + 1),
        _rand(1, 1, h, w, lo=-0.9, hi=0.9, seed=seed + 2),
        _rand(B, C, h, w, lo=0.05, hi=0.5, seed=seed + 3),
        _rand(B, 1, h, w, lo=-0.9, hi=0.9, seed=seed + 4),
        _rand(1, C, h, w, lo=-0.9, hi=0.9, seed=seed + 5),
    )


def _both_paths(x, *args, **kw):
    """The in-place (no autograd) output and the autograd path's output."""
    with torch.no_grad():
        a = bilateral_aniso(x, *args, **kw)
    b = bilateral_aniso(x.clone().requires_grad_(True), *args, **kw).detach()
    return a, b


# ------------------------------------------------------------------ the reference loop
@pytest.mark.parametrize("search_size", [3, 5, 7])
def test_matches_reference_with_random_half_resolution_maps(search_size):
    x = _rand(2, 2, 9, 8)
    maps = _maps(B=2, C=2, h=5, w=4)
    ref = reference(x, *maps, search_size=search_size)
    for y in _both_paths(x, *maps, search_size=search_size):
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6, atol=1e-12)


def test_matches_reference_with_guide_numbers_and_full_resolution_maps():
    x, g = _rand(1, 3, 7, 6), _rand(1, 1, 7, 6, seed=9)
    maps = (_rand(1, 1, 7, 6, lo=0.5, hi=2, seed=3), 1.3, -0.4, 0.2, 0.6, _rand(1, 3, 2, 2, seed=4))
    ref = reference(x, *maps, guide=g)
    for y in _both_paths(x, *maps, guide=g):
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6, atol=1e-12)
    g3 = _rand(1, 3, 7, 6, seed=10)  # a guide per channel
    ref = reference(x, *maps, guide=g3)
    np.testing.assert_allclose(bilateral_aniso(x, *maps, guide=g3).numpy(), ref, rtol=1e-6)


def test_matches_reference_at_extreme_correlations_and_tiny_images():
    x = _rand(1, 1, 6, 7, seed=2)
    maps = (0.7, 2.0, 0.999, 0.3, -0.999, 0.999)
    np.testing.assert_allclose(
        bilateral_aniso(x, *maps).numpy(), reference(x, *maps), rtol=1e-6, atol=1e-12
    )
    for shape in [(1, 1, 1, 1), (1, 1, 2, 3), (1, 1, 1, 9)]:  # edge replication
        x = _rand(*shape, seed=3)
        ref = reference(x, 1.0, 1.5, 0.3, 0.2, 0.2, -0.1)
        np.testing.assert_allclose(
            bilateral_aniso(x, 1.0, 1.5, 0.3, 0.2, 0.2, -0.1).numpy(), ref, rtol=1e-6, atol=1e-12
        )


def test_float32_stays_float32_and_matches_float64():
    x = _rand(2, 3, 10, 11)
    maps = _maps(B=2, C=3, h=5, w=6)
    y64 = bilateral_aniso(x, *maps)
    y32 = bilateral_aniso(x.float(), *(m.float() for m in maps))
    assert y32.dtype == torch.float32 and y32.shape == x.shape
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-5)


def test_bands_agree_with_the_autograd_path():
    x = _rand(1, 1, 150, 900, dtype=torch.float32)  # several bands of rows
    maps = tuple(m.float() for m in _maps(h=75, w=450))
    tiled, plain = _both_paths(x, *maps)
    torch.testing.assert_close(tiled, plain, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the covariance
def test_covariance_is_the_documented_matrix():
    v = (0.7, 1.9, -0.3, 0.2, 0.5, -0.8)
    np.testing.assert_allclose(covariance(*v).numpy(), sigma_matrix(*v), rtol=1e-12)
    m = _maps(B=2, C=2)
    S = covariance(*m)  # broadcast maps -> (2, 2, 4, 5, 3, 3)
    assert S.shape == (2, 2, 4, 5, 3, 3)
    got = S[1, 0, 2, 3].numpy()
    want = sigma_matrix(*(float(t[min(1, t.shape[0] - 1), 0, 2, 3]) for t in m))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_covariance_is_positive_definite_by_construction():
    g = torch.Generator().manual_seed(0)
    raw = 4 * torch.randn(6, 20000, generator=g, dtype=torch.float64)  # network outputs
    s1, s2, s = (torch.exp(t.clamp(-3, 3)) for t in raw[:3])
    r, a, b = (correlation(t) for t in raw[3:])  # up to |rho| = 0.999
    S = covariance(s1, s2, r, s, a, b)
    eig = torch.linalg.eigvalsh(S)
    assert (eig > 0).all()
    det = (s1 * s2 * s) ** 2 * (1 - r**2) * (1 - a**2) * (1 - b**2)
    torch.testing.assert_close(torch.linalg.det(S), det, rtol=1e-8, atol=0)
    # every correlation in [-RHO_LIMIT, RHO_LIMIT]^3 (the corners included) stays PD
    lim = RHO_LIMIT
    corners = torch.tensor(
        [(i, j, k) for i in (-lim, lim) for j in (-lim, lim) for k in (-lim, lim)],
        dtype=torch.float64,
    )
    S = covariance(1.0, 1.0, corners[:, 0], 1.0, corners[:, 1], corners[:, 2])
    assert (torch.linalg.eigvalsh(S) > 0).all()


def test_rho_ys_is_the_partial_correlation_given_dx():
    s1, s2, r, s, a, b = 1.3, 0.6, 0.5, 0.2, -0.4, 0.7
    S = sigma_matrix(s1, s2, r, s, a, b)
    assert S[0, 2] / (s1 * s) == pytest.approx(a)  # corr(dx, dI)
    cond = S[1:, 1:] - np.outer(S[1:, 0], S[0, 1:]) / S[0, 0]  # (dy, dI) given dx
    assert cond[0, 1] / math.sqrt(cond[0, 0] * cond[1, 1]) == pytest.approx(b)


# ------------------------------------------------------------------ limits and special cases
def _aniso_gaussian(x, cov):
    """gaussian() over the 5x5 window for a constant 2x2 covariance over (dx, dy)."""
    s1, s2 = math.sqrt(cov[0, 0]), math.sqrt(cov[1, 1])
    return gaussian(x, s1, s2, cov[0, 1] / (s1 * s2), size=5)


def test_huge_sigma_without_spatial_signal_correlation_is_the_anisotropic_gaussian():
    x = _rand(1, 2, 12, 13)
    y = bilateral_aniso(x, 1.2, 0.8, 0.4, 1e8, 0.0, 0.0)
    torch.testing.assert_close(y, gaussian(x, 1.2, 0.8, 0.4, size=5), rtol=1e-10, atol=1e-12)


def test_huge_sigma_with_correlations_is_the_conditional_gaussian():
    """sigma -> inf: dI / sigma -> 0, the weight -> the density of d given dI = 0, whose
    covariance S - c c^T / sigma^2 does not depend on sigma."""
    v = (1.2, 0.8, 0.4, 1e8, 0.5, -0.3)
    S = sigma_matrix(*v)
    cond = S[:2, :2] - np.outer(S[:2, 2], S[2, :2]) / S[2, 2]
    x = _rand(1, 1, 12, 13, seed=5)
    torch.testing.assert_close(
        bilateral_aniso(x, *v), _aniso_gaussian(x, cond), rtol=1e-8, atol=1e-10
    )


def test_isotropic_uncorrelated_is_the_bilateral_filter_with_a_spatial_gaussian():
    x, g = _rand(2, 2, 10, 9), _rand(2, 1, 10, 9, seed=7)
    sigma = _rand(2, 2, 5, 5, lo=0.05, hi=0.4, seed=8)
    spatial = _rand(1, 1, 5, 5, lo=0.3, hi=3.0, seed=9)  # sigma1 = sigma2, a map
    for guide in (None, g):
        for search in (3, 5):
            y = bilateral_aniso(
                x, spatial, spatial, 0.0, sigma, 0.0, 0.0, search_size=search, guide=guide
            )
            ref = bilateral(x, sigma, spatial_sigma=spatial, search_size=search, guide=guide)
            torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def _slopes_to_correlations(s1, s2, r, s, gx, gy):
    """rho_xs, rho_ys whose slope S^-1 c is (gx, gy) (needs gamma^T S gamma < sigma^2)."""
    S = np.array([[s1 * s1, r * s1 * s2], [r * s1 * s2, s2 * s2]])
    c = S @ np.array([gx, gy])
    assert c @ np.linalg.solve(S, c) < s * s
    a, b_marg = c[0] / (s1 * s), c[1] / (s2 * s)
    return a, (b_marg - r * a) / math.sqrt((1 - r * r) * (1 - a * a))


def test_a_ramp_is_preserved_by_any_parameters():
    yy, xx = torch.meshgrid(
        *(torch.arange(n, dtype=torch.float64) for n in (12, 14)), indexing="ij"
    )
    ramp = (0.03 * xx - 0.05 * yy + 0.2)[None, None]
    for maps in [(1.0, 1.5, 0.3, 0.01, 0.2, -0.1), _maps(h=6, w=7, seed=3)]:
        y = bilateral_aniso(ramp, *maps)  # symmetric weights: w(d) = w(-d) on a plane
        torch.testing.assert_close(y[..., 2:-2, 2:-2], ramp[..., 2:-2, 2:-2], rtol=0, atol=1e-13)


def test_matched_slopes_make_a_steep_ramp_transparent():
    """On a tilted plane whose slope is the kernel's, the residual is zero at every
    offset: the range term is 1 even for a tiny sigma, so the weights are the spatial
    Gaussian's alone. With zero slopes (the plain bilateral) the same tiny sigma keeps
    only the centre."""
    H, W = 12, 14
    yy, xx = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in (H, W)), indexing="ij")
    gx, gy, s1, s2, r, s = 0.4, -0.25, 1.1, 0.9, 0.3, 0.6
    plane = (gx * xx + gy * yy)[None, None]
    a, b = _slopes_to_correlations(s1, s2, r, s, gx, gy)
    x = _rand(1, 2, H, W, seed=11)
    y = bilateral_aniso(x, s1, s2, r, s, a, b, guide=plane)
    ref = gaussian(x, s1, s2, r, size=5)
    i = (..., slice(2, -2), slice(2, -2))  # the mirrored border is no plane
    torch.testing.assert_close(y[i], ref[i], rtol=1e-12, atol=1e-12)
    # the same slopes scaled to a small sigma: the range Gaussian is still flat on the plane
    k = 1e-3
    a, b = _slopes_to_correlations(s1, s2, r, s * k, gx * k, gy * k)
    small = bilateral_aniso(x, s1, s2, r, s * k, a, b, guide=plane * k)
    torch.testing.assert_close(small[i], ref[i], rtol=1e-9, atol=1e-9)
    plain = bilateral_aniso(x, s1, s2, r, s * k, 0.0, 0.0, guide=plane)
    torch.testing.assert_close(plain, x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigma_zero_is_the_identity_and_gradients_stay_finite(dtype):
    x = _rand(1, 2, 9, 8, dtype=dtype)
    eps = torch.finfo(dtype).eps  # a mirrored copy of the centre (dI = 0) keeps a weight
    for maps in [
        (1.0, 1.5, 0.3, 0.0, 0.9, -0.9),
        (0.0, 0.0, 0.999, 0.0, 0.999, 0.999),
        (4.0, 1e-30, -1.0, 0.0, 1.0, -1.0),
    ]:
        torch.testing.assert_close(bilateral_aniso(x, *maps), x, rtol=0, atol=2 * eps)
    # sigma1 = sigma2 = 0: the identity whatever the signal sigma
    torch.testing.assert_close(bilateral_aniso(x, 0.0, 0.0, 0.0, 1e3, 0.5, 0.5), x)
    xs = x.clone().requires_grad_(True)
    ms = [
        torch.full((1, 1, 3, 3), v, dtype=dtype, requires_grad=True)
        for v in (0.0, 1.0, 1.0, 0.0, 1.0, -1.0)
    ]
    bilateral_aniso(xs, *ms).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (xs, *ms))


def test_module_and_descriptor():
    x = _rand(1, 2, 8, 9)
    maps = _maps(C=2)
    g = _rand(1, 1, 8, 9, seed=4)
    torch.testing.assert_close(
        BilateralAniso(3)(x, *maps, guide=g), bilateral_aniso(x, *maps, search_size=3, guide=g)
    )
    (k,) = KERNELS
    assert get("bilateral-aniso") is k and k.convex and k.task == "denoise"
    assert k.glyphs == ("sigma1", "sigma2", "rho")
    assert k.param_names == ("sigma1", "sigma2", "rho", "sigma", "rho_xs", "rho_ys")
    assert k.strength_params == ("sigma1", "sigma2", "sigma")
    ex, opts, inputs = k.example(x, torch.Generator())
    assert opts == {"search_size": 5} and inputs == {}
    assert {n: float(m.flatten()[0]) for n, m in ex.items()} == pytest.approx(
        {"sigma1": 1.0, "sigma2": 1.5, "rho": 0.3, "sigma": 0.1, "rho_xs": 0.2, "rho_ys": -0.1}
    )
    assert all(m.shape == (1, 1, 4, 5) for m in ex.values())
    assert k.grid(0.5) == {
        "sigma1": 2.0,
        "sigma2": 2.0,
        "rho": 0.0,
        "sigma": 2.0,
        "rho_xs": 0.0,
        "rho_ys": 0.0,
    }
    assert k.support(ex, opts) == 2 and k.support(ex, {"search_size": 7}) == 3
    torch.testing.assert_close(k.run(x, ex, opts, guide=g), bilateral_aniso(x, **ex, guide=g))


# ------------------------------------------------------------------ gradients
def test_gradcheck_image_guide_and_every_map():
    x = _rand(1, 1, 5, 6).requires_grad_(True)
    g = _rand(1, 1, 5, 6, seed=2).requires_grad_(True)
    maps = [m.requires_grad_(True) for m in _maps(h=3, w=3, seed=5)]
    assert torch.autograd.gradcheck(lambda *t: bilateral_aniso(*t, search_size=3), (x, *maps))
    assert torch.autograd.gradcheck(
        lambda xx, gg, *t: bilateral_aniso(xx, *t, guide=gg), (x, g, *maps)
    )
    x2 = _rand(1, 2, 4, 5, seed=6).requires_grad_(True)  # per-channel maps and differences
    maps2 = [m.requires_grad_(True) for m in _maps(C=2, h=2, w=3, seed=7)]
    assert torch.autograd.gradcheck(lambda *t: bilateral_aniso(*t, search_size=3), (x2, *maps2))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"x": torch.rand(3, 8, 8)}, ValueError, "x must have 4 dimensions"),
        ({"search_size": 4}, ValueError, "search_size must be a positive odd integer.*4"),
        ({"search_size": 0}, ValueError, "search_size.*0"),
        ({"rho": 1.5}, ValueError, r"rho must lie in \[-1, 1\], got 1.5"),
        ({"rho_xs": -1.01}, ValueError, r"rho_xs must lie in \[-1, 1\], got -1.01"),
        ({"rho_ys": torch.full((1, 1, 2, 2), 2.0)}, ValueError, r"rho_ys must lie in .*\[2, 2\]"),
        ({"sigma": -0.1}, ValueError, r"sigma must lie in \[0, inf\], got -0.1"),
        ({"sigma1": float("nan")}, ValueError, "sigma1 must be finite, got nan"),
        ({"sigma2": torch.tensor([[[[1.0, float("nan")]]]])}, ValueError, "sigma2.*NaN"),
        ({"sigma2": torch.full((1, 2, 3, 3), 1.0)}, ValueError, "sigma2 has 2 channels"),
        ({"sigma1": torch.full((3, 1, 3, 3), 1.0)}, ValueError, "sigma1.*batch"),
        ({"rho": torch.zeros(3, 3)}, ValueError, r"rho must be a number or a map.*\(3, 3\)"),
        ({"sigma": "0.1"}, TypeError, "sigma must be a number or a torch.Tensor"),
        ({"guide": torch.rand(1, 2, 8, 8)}, ValueError, "guide has 2 channels"),
        ({"guide": torch.rand(1, 1, 8, 7)}, ValueError, "guide must have the image's"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, error, match):
    args = {
        "x": torch.rand(1, 3, 8, 8),
        "sigma1": 1.0,
        "sigma2": 1.0,
        "rho": 0.0,
        "sigma": 0.1,
        "rho_xs": 0.0,
        "rho_ys": 0.0,
        **kwargs,
    }
    with pytest.raises(error, match=match):
        bilateral_aniso(**args)


# ------------------------------------------------------------------ properties
_RHO = st.one_of(st.sampled_from([-1.0, -RHO_LIMIT, 0.0, RHO_LIMIT, 1.0]), st.floats(-1, 1))
_SIG = st.one_of(st.sampled_from([0.0, 1e-30, 4.0]), st.floats(1e-6, 1e3))


@PROPS
@given(
    seed=st.integers(0, 10_000),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    s1=_SIG,
    s2=_SIG,
    r=_RHO,
    s=_SIG,
    a=_RHO,
    b=_RHO,
    f32=st.booleans(),
)
def test_property_output_within_window_range(seed, h, w, s1, s2, r, s, a, b, f32):
    x = _rand(1, 2, h, w, seed=seed, dtype=torch.float32 if f32 else torch.float64)
    y = bilateral_aniso(x, s1, s2, r, s, a, b)
    assert y.shape == x.shape and torch.isfinite(y).all()
    mode = "reflect" if min(h, w) > 2 else "replicate"
    xp = F.pad(x, (2, 2, 2, 2), mode=mode)
    lo, hi = -F.max_pool2d(-xp, 5, stride=1), F.max_pool2d(xp, 5, stride=1)
    tol = 1e-6 if f32 else 1e-12
    assert (y >= lo - tol).all() and (y <= hi + tol).all()


@PROPS
@given(value=st.floats(-100, 100), s1=_SIG, s2=_SIG, r=_RHO, s=_SIG, a=_RHO, b=_RHO)
def test_property_constant_stays_constant(value, s1, s2, r, s, a, b):
    x = torch.full((1, 1, 6, 7), value, dtype=torch.float64)
    torch.testing.assert_close(bilateral_aniso(x, s1, s2, r, s, a, b), x)
