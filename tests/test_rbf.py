"""Tests for pkn.kernels.rbf: anisotropic Gaussian RBF resampling."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import pkn.kernels.rbf as rbf_mod
from pkn.kernels.rbf import RBFResample, rbf_resample

PROPS = settings(max_examples=25, deadline=None)


# ----------------------------------------------------------------------------- helpers


def _rand(*shape, lo=0.0, hi=1.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=dtype)


def _mirror(q: int, n: int, r: int) -> int:
    """Reflect without repeating the edge; clamp along axes shorter than r + 1."""
    if n > r:
        if q < 0:
            q = -q
        if q > n - 1:
            q = 2 * (n - 1) - q
        return q
    return min(max(q, 0), n - 1)


def _centre(i: int, n_in: int, n_out: int) -> Fraction:
    """Exact input coordinate of output sample i (align_corners=False)."""
    return Fraction(2 * i + 1, 2) * n_in / n_out - Fraction(1, 2)


def _out_grid_maps(params, ho, wo):
    """Parameters resampled to the output grid as (B|1, C|1, ho, wo) float64 maps."""
    out = []
    for p in params:
        if isinstance(p, torch.Tensor):
            out.append(
                F.interpolate(p.double(), size=(ho, wo), mode="bilinear", align_corners=False)
            )
        else:
            out.append(torch.full((1, 1, ho, wo), float(p), dtype=torch.float64))
    return out


def _radius(s1, s2) -> int:
    return max(1, math.ceil(3.0 * max(float(s1.max()), float(s2.max()))))


def _windows(n_in: int, n_out: int, r: int) -> list[list[tuple[int, float]]]:
    """Per output sample: (mirrored input index, offset q - u) over its window."""
    rows = []
    for i in range(n_out):
        u = _centre(i, n_in, n_out)
        f = math.floor(u)
        rows.append([(_mirror(q, n_in, r), float(q - u)) for q in range(f - r + 1, f + r + 1)])
    return rows


def reference(x, sigma1, sigma2, rho, ho, wo):
    """Obviously-correct loops: every output pixel, every input pixel of its window."""
    B, C, H, W = x.shape
    sigma2 = sigma1 if sigma2 is None else sigma2
    rho = 0.0 if rho is None else rho
    S1, S2, RH = _out_grid_maps([sigma1, sigma2, rho], ho, wo)
    r = _radius(S1, S2)
    wy, wx = _windows(H, ho, r), _windows(W, wo, r)
    xd = x.double()
    y = torch.empty(B, C, ho, wo, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            for i in range(ho):
                for j in range(wo):

                    def at(m, b=b, c=c, i=i, j=j):
                        return float(m[min(b, m.shape[0] - 1), min(c, m.shape[1] - 1), i, j])

                    s1, s2, rr = at(S1), at(S2), at(RH)
                    # Sigma over (dx, dy) = [[s1^2, r s1 s2], [r s1 s2, s2^2]], inverted
                    sxx, sxy, syy = s1 * s1, rr * s1 * s2, s2 * s2
                    det = sxx * syy - sxy * sxy
                    ixx, ixy, iyy = syy / det, -sxy / det, sxx / det
                    num = den = 0.0
                    for qy, dy in wy[i]:
                        for qx, dx in wx[j]:
                            quad = dx * (ixx * dx + ixy * dy) + dy * (ixy * dx + iyy * dy)
                            w = math.exp(-0.5 * quad)
                            num += w * float(xd[b, c, qy, qx])
                            den += w
                    y[b, c, i, j] = num / den
    return y


def window_bounds(x, sigma1, sigma2, rho, ho, wo):
    """Per output pixel, the min and max of the input pixels in its window."""
    sigma2 = sigma1 if sigma2 is None else sigma2
    S1, S2 = _out_grid_maps([sigma1, sigma2], ho, wo)
    r = _radius(S1, S2)
    iy = torch.tensor([[q for q, _ in row] for row in _windows(x.shape[2], ho, r)])  # (ho, 2r)
    ix = torch.tensor([[q for q, _ in row] for row in _windows(x.shape[3], wo, r)])  # (wo, 2r)
    v = x[:, :, iy.reshape(-1)][:, :, :, ix.reshape(-1)]  # (B, C, ho*2r, wo*2r)
    v = v.reshape(*x.shape[:2], ho, 2 * r, wo, 2 * r)
    return v.amin(dim=(3, 5)), v.amax(dim=(3, 5))


@pytest.fixture(params=["default", "direct", "exact-max", "one-row-bands"])
def mode(request, monkeypatch):
    """Run a test through each internal path: product recurrence (default), direct exps
    relative to the nearest pixel, direct exps relative to the exact maximum, and bands of
    one output row."""
    if request.param == "direct":
        monkeypatch.setattr(rbf_mod, "_RECUR_LOW", -1.0)
    elif request.param == "exact-max":
        monkeypatch.setattr(rbf_mod, "_FAST_SHIFT", -1.0)
    elif request.param == "one-row-bands":
        monkeypatch.setattr(rbf_mod, "_TILE_TARGET", 1)
    return request.param


# ----------------------------------------------------------------------------- basics


def test_smoke():
    x = _rand(1, 3, 10, 12, dtype=torch.float32)
    y = rbf_resample(x, 0.5, 0.7, 0.2, scale=2)
    assert y.shape == (1, 3, 20, 24)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        (1.3, (13, 20)),
        (1.8, (18, 27)),
        (2, (20, 30)),
        (3, (30, 45)),
        (0.5, (5, 8)),  # round(7.5) = 8
        ((1.5, 2.0), (15, 30)),
        (0.01, (1, 1)),  # never below one pixel
    ],
)
def test_output_shape_from_scale(scale, expected):
    x = _rand(2, 1, 10, 15, dtype=torch.float32)
    y = rbf_resample(x, 0.6, scale=scale)
    assert y.shape == (2, 1, *expected)
    h, w = 10, 15
    sy, sx = scale if isinstance(scale, tuple) else (scale, scale)
    assert y.shape[-2:] == (max(1, round(h * sy)), max(1, round(w * sx)))


def test_output_shape_from_size():
    x = _rand(1, 2, 10, 15)
    assert rbf_resample(x, 0.6, size=(7, 31)).shape == (1, 2, 7, 31)
    assert rbf_resample(x, 0.6, size=[1, 1]).shape == (1, 2, 1, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_kept(dtype):
    x = _rand(1, 2, 5, 6, dtype=dtype)
    s1 = _rand(1, 1, 3, 3, lo=0.3, hi=0.8)  # float64 map for a float32 image is fine
    y = rbf_resample(x, s1, 0.5, -0.3, scale=1.7)
    assert y.dtype == dtype
    assert y.device == x.device
    with torch.no_grad():
        assert rbf_resample(x, s1, 0.5, -0.3, scale=1.7).dtype == dtype


def test_module_matches_function():
    x = _rand(2, 2, 6, 5)
    s1 = _rand(2, 1, 3, 3, lo=0.3, hi=0.9)
    mod = RBFResample(scale=(1.5, 2.5))
    torch.testing.assert_close(
        mod(x, s1, 0.4, 0.3), rbf_resample(x, s1, 0.4, 0.3, scale=(1.5, 2.5))
    )
    mod = RBFResample(size=(4, 9))
    torch.testing.assert_close(mod(x, 0.5), rbf_resample(x, 0.5, size=(4, 9)))


def test_defaults_sigma2_is_sigma1_and_rho_is_zero():
    x = _rand(1, 1, 6, 7)
    s1 = _rand(1, 1, 2, 3, lo=0.3, hi=1.0)
    torch.testing.assert_close(
        rbf_resample(x, s1, scale=1.4), rbf_resample(x, s1, s1, 0.0, scale=1.4), rtol=0, atol=0
    )


# ----------------------------------------------------------------------------- correctness


REFERENCE_CASES = {
    # fractional upscale, maps at other resolutions, per-batch and per-channel maps
    "x1.3": dict(shape=(2, 2, 6, 7), scale=1.3, maps=((1, 2, 3, 4), (2, 1, 5, 3), (1, 1, 4, 4))),
    # upscale rows, downscale columns
    "x(1.8,0.6)": dict(
        shape=(1, 2, 5, 8), scale=(1.8, 0.6), maps=((1, 1, 2, 2), None, (1, 2, 3, 5))
    ),
    # explicit size, downscale rows
    "size": dict(shape=(1, 1, 9, 4), size=(4, 11), maps=((1, 1, 3, 3), (1, 1, 4, 2), (1, 1, 2, 2))),
    # image smaller than the window: clamped borders, large sigma (R = 4)
    "tiny": dict(shape=(1, 1, 2, 3), scale=2.5, maps=((1, 1, 2, 2), (1, 1, 1, 1), None), hi=1.2),
}


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_matches_reference(case, mode):
    cfg = REFERENCE_CASES[case]
    x = _rand(*cfg["shape"], seed=1)
    s1_shape, s2_shape, rho_shape = cfg["maps"]
    hi = cfg.get("hi", 0.9)
    s1 = _rand(*s1_shape, lo=0.05, hi=hi, seed=2)
    s2 = None if s2_shape is None else _rand(*s2_shape, lo=0.05, hi=hi, seed=3)
    rho = None if rho_shape is None else _rand(*rho_shape, lo=-0.85, hi=0.85, seed=4)
    y = rbf_resample(x, s1, s2, rho, scale=cfg.get("scale"), size=cfg.get("size"))
    expected = reference(x, s1, s2, rho, *y.shape[-2:])
    torch.testing.assert_close(y, expected, rtol=1e-6, atol=1e-12)


def test_matches_reference_numbers_and_mixed_bands(monkeypatch):
    # one output row per band: bands with tiny sigmas take other paths than the rest
    monkeypatch.setattr(rbf_mod, "_TILE_TARGET", 1)
    x = _rand(1, 1, 7, 6, seed=5)
    s1 = torch.tensor([[[[0.05], [0.9]]]], dtype=torch.float64).expand(1, 1, 2, 3)
    y = rbf_resample(x, s1, 0.3, -0.5, scale=1.6)
    torch.testing.assert_close(y, reference(x, s1, 0.3, -0.5, *y.shape[-2:]), rtol=1e-6, atol=0)
    y = rbf_resample(x, 0.45, 0.25, 0.7, scale=(0.7, 1.9))
    torch.testing.assert_close(y, reference(x, 0.45, 0.25, 0.7, *y.shape[-2:]), rtol=1e-6, atol=0)


@pytest.mark.parametrize("case", ["x1.3", "tiny"])
def test_autograd_path_matches_reference(case, mode):
    # with gradients the computation takes out-of-place paths: check their values too
    cfg = REFERENCE_CASES[case]
    x = _rand(*cfg["shape"], seed=1).requires_grad_(True)
    s1 = _rand(*cfg["maps"][0], lo=0.05, hi=cfg.get("hi", 0.9), seed=2).requires_grad_(True)
    rho = _rand(2, 1, 3, 2, lo=-0.85, hi=0.85, seed=4)
    rho = rho[: x.shape[0]].requires_grad_(True)
    y = rbf_resample(x, s1, 0.4, rho, scale=cfg["scale"])
    assert y.requires_grad
    expected = reference(x.detach(), s1.detach(), 0.4, rho.detach(), *y.shape[-2:])
    torch.testing.assert_close(y.detach(), expected, rtol=1e-6, atol=1e-12)
    y.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (x, s1, rho))


def test_inputs_not_modified():
    x = _rand(1, 2, 5, 6)
    s1, s2, rho = _rand(1, 1, 10, 12, lo=0.2, hi=0.9), _rand(1, 2, 3, 3), _rand(1, 1, 2, 2)
    copies = [t.clone() for t in (x, s1, s2, rho)]
    with torch.no_grad():
        rbf_resample(x, s1, s2, rho, scale=2)  # s1 is on the output grid: used as is
    for t, c in zip((x, s1, s2, rho), copies, strict=True):
        assert torch.equal(t, c)


@pytest.mark.parametrize("sigma", [0.0, 1e-6, 0.05])
def test_scale_one_tiny_sigma_is_identity(sigma):
    x = _rand(2, 3, 7, 5, dtype=torch.float32)
    y = rbf_resample(x, sigma, sigma, 0.5, scale=1)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, (3, 2)])
def test_zero_sigma_is_nearest_neighbour(scale):
    x = _rand(1, 2, 5, 6)
    y = rbf_resample(x, 0.0, scale=scale)
    torch.testing.assert_close(y, F.interpolate(x, size=y.shape[-2:], mode="nearest-exact"))


def test_constant_image_stays_constant(mode):
    x = torch.full((2, 2, 5, 7), 0.37, dtype=torch.float64)
    s1 = _rand(1, 2, 3, 3, lo=0.0, hi=1.1)
    y = rbf_resample(x, s1, 0.2, _rand(2, 1, 2, 2, lo=-1, hi=1), scale=1.3)
    torch.testing.assert_close(y, torch.full_like(y, 0.37), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- gradients


GRAD_INPUTS = ["x", "sigma1", "sigma2", "rho"]


@pytest.mark.parametrize("which", GRAD_INPUTS)
def test_gradcheck(which, mode):
    args = {
        "x": _rand(1, 2, 3, 4, seed=6),
        "sigma1": _rand(1, 1, 2, 3, lo=0.3, hi=0.8, seed=7),
        "sigma2": _rand(1, 2, 2, 2, lo=0.3, hi=0.8, seed=8),
        "rho": _rand(1, 1, 3, 3, lo=-0.6, hi=0.6, seed=9),
    }
    args[which].requires_grad_(True)

    def f(t):
        a = {**args, which: t}
        return rbf_resample(a["x"], a["sigma1"], a["sigma2"], a["rho"], scale=1.5)

    assert torch.autograd.gradcheck(f, (args[which],))


# ----------------------------------------------------------------------------- errors


def test_errors_image():
    with pytest.raises(ValueError, match="4 dimensions"):
        rbf_resample(torch.rand(3, 4), 0.5, scale=2)
    with pytest.raises(TypeError, match="floating"):
        rbf_resample(torch.ones(1, 1, 3, 3, dtype=torch.int64), 0.5, scale=2)
    x = torch.rand(1, 1, 3, 3)
    x[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        rbf_resample(x, 0.5, scale=2)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({}, ValueError, "neither"),
        ({"scale": 2, "size": (4, 4)}, ValueError, "both"),
        ({"scale": 0}, ValueError, "positive"),
        ({"scale": -1.5}, ValueError, "positive"),
        ({"scale": (2, 0)}, ValueError, "positive"),
        ({"scale": float("nan")}, ValueError, "positive"),
        ({"scale": float("inf")}, ValueError, "positive"),
        ({"scale": (1, 2, 3)}, ValueError, "pair"),
        ({"scale": "2"}, TypeError, "positive number"),
        ({"size": (0, 4)}, ValueError, "positive ints"),
        ({"size": (4,)}, ValueError, "positive ints"),
        ({"size": (4.0, 4)}, ValueError, "positive ints"),
        ({"size": 4}, ValueError, "positive ints"),
    ],
)
def test_errors_scale_and_size(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        rbf_resample(torch.rand(1, 1, 3, 3), 0.5, **kwargs)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ((-0.1, None, None), "sigma1"),
        ((0.5, -1e-3, None), "sigma2"),
        ((torch.full((1, 1, 2, 2), -0.5), None, None), "sigma1"),
        ((0.5, 0.5, 1.5), "rho"),
        ((0.5, 0.5, torch.full((1, 1, 2, 2), -1.01)), "rho"),
        ((torch.full((3, 1, 2, 2), 0.5), None, None), "batch"),
        ((0.5, torch.full((1, 2, 2, 2), 0.5), None), "channels"),
        ((0.5, 0.5, torch.full((1, 1, 2, 2), float("nan"))), "NaN"),
        ((float("inf"), None, None), "finite"),
    ],
)
def test_errors_parameters(params, match):
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match=match):
        rbf_resample(x, *params, scale=1.5)


# ----------------------------------------------------------------------------- properties


@st.composite
def images(draw, dtype=torch.float64):
    b, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    return _rand(b, c, h, w, dtype=dtype, seed=seed)


@st.composite
def params(draw, x, values):
    """A number, or a map (B|1, C|1, h, w) at its own resolution with values drawn."""
    if draw(st.booleans()):
        return draw(values)
    b = draw(st.sampled_from([1, x.shape[0]]))
    c = draw(st.sampled_from([1, x.shape[1]]))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    vals = draw(st.lists(values, min_size=h * w * b * c, max_size=h * w * b * c))
    return torch.tensor(vals, dtype=torch.float64).reshape(b, c, h, w)


scales = st.floats(0.3, 3.2) | st.tuples(st.floats(0.3, 3.2), st.floats(0.3, 3.2))
sigmas = st.floats(0.0, 1.2)
rhos = st.floats(-1.0, 1.0)
extreme_sigmas = st.sampled_from([0.0, 1e-30, 1e-10, 1e-6, 1e-3]) | st.floats(0.0, 1.5)
extreme_rhos = st.sampled_from([-1.0, 1.0, -0.999999, 0.9999999, 0.0]) | st.floats(-1.0, 1.0)


@PROPS
@given(data=st.data())
def test_property_output_within_window(data):
    x = data.draw(images())
    s1, s2, rho = (data.draw(params(x, v)) for v in (sigmas, sigmas, rhos))
    y = rbf_resample(x, s1, s2, rho, scale=data.draw(scales))
    lo, hi = window_bounds(x, s1, s2, rho, *y.shape[-2:])
    assert torch.isfinite(y).all()
    assert (y >= lo - 1e-12).all()
    assert (y <= hi + 1e-12).all()


@PROPS
@given(data=st.data(), value=st.floats(-3.0, 3.0))
def test_property_constant_stays_constant(data, value):
    x = torch.full_like(data.draw(images(dtype=torch.float32)), value)
    s1, s2, rho = (data.draw(params(x, v)) for v in (sigmas, sigmas, rhos))
    y = rbf_resample(x, s1, s2, rho, scale=data.draw(scales))
    torch.testing.assert_close(y, torch.full_like(y, value), rtol=1e-6, atol=1e-6)


@PROPS
@given(data=st.data(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_property_no_nan_or_inf_at_extremes(data, dtype):
    x = data.draw(images(dtype=dtype)).requires_grad_(True)
    s1, s2, rho = (data.draw(params(x, v)) for v in (extreme_sigmas, extreme_sigmas, extreme_rhos))
    maps = [p.requires_grad_(True) for p in (s1, s2, rho) if isinstance(p, torch.Tensor)]
    y = rbf_resample(x, s1, s2, rho, scale=data.draw(scales))
    assert torch.isfinite(y).all()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (y >= x.min() - tol).all() and (y <= x.max() + tol).all()
    y.mul(torch.linspace(-1, 1, y.numel(), dtype=dtype).view_as(y)).sum().backward()
    for t in (x, *maps):
        assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize("scale", [2, 3, 0.5, 1, (2, 3), 4, 1.5])
@pytest.mark.parametrize("tile", [1, 1 << 22])
def test_strided_window_rows_match_autograd_path(scale, tile, monkeypatch):
    # Without gradients, where the output rows of a phase read equally spaced input rows
    # (integer and simple rational factors, away from mirrored borders), the window rows
    # are strided views instead of gathers; the autograd path always gathers.
    monkeypatch.setattr(rbf_mod, "_TILE_TARGET", tile)
    used = []
    phases = rbf_mod._phases
    monkeypatch.setattr(rbf_mod, "_phases", lambda *a: used.append(phases(*a)) or used[-1])
    x = _rand(2, 2, 13, 17, seed=21)
    s1 = _rand(1, 1, 5, 6, lo=0.3, hi=1.3, seed=22)
    s2 = _rand(2, 1, 5, 6, lo=0.3, hi=1.3, seed=23)
    rho = _rand(1, 2, 5, 6, lo=-0.5, hi=0.5, seed=24)
    with torch.no_grad():
        y0 = rbf_resample(x, s1, s2, rho, scale=scale)
    y1 = rbf_resample(x.requires_grad_(), s1, s2, rho, scale=scale).detach()
    torch.testing.assert_close(y0, y1, rtol=1e-12, atol=1e-12)
    if tile == 1 and scale in (2, 3, 0.5, 1, (2, 3), 4):
        assert any(p is not None for p in used)  # the strided path was taken
    if scale == 1.5:  # 13 -> 20 rows: no small period
        assert all(p is None for p in used)


def test_resampled_maps_and_radius_without_gradient():
    # maps on their own grid are resampled band by band; the radius comes from the exact
    # maximum of the resampled maps (a spike is lowered by the interpolation)
    x = _rand(1, 1, 9, 11, seed=25)
    s1 = torch.full((1, 1, 4, 5), 0.2, dtype=torch.float64)
    s1[..., 2, 2] = 1.0  # resampled to 0.5625 + 0.0875 at most: radius 2, not 3
    with torch.no_grad():
        y = rbf_resample(x, s1, scale=2)
    torch.testing.assert_close(y, reference(x, s1, None, None, 18, 22), rtol=1e-6, atol=1e-12)
