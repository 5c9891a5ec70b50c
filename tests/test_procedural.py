"""Network-driven kernel descriptors (remappings, ranges), map upsampling and ``run_filter``."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pkn.models.pkn_model import PKNModel, _half, run_filter
from pkn.models.procedural import get_spec, network_kernels, tasks, upsample_map

KERNELS = network_kernels()
TASKS = tasks()
_RANGE = re.compile(r"([\[(])\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*([\])])")


def _noise_relative(spec):
    """Parameters whose range is a multiplier of the local noise std."""
    return {p.name for p in spec.params if p.remap == "noise"}


def _documented_range(spec, name):
    """``(low, high)`` of a parameter; its documentation text states the same range."""
    p = spec.param(name)
    m = _RANGE.search(p.doc)
    assert m, f"{spec.name}.{name}: no [low, high] in {p.doc!r}"
    lo, hi = float(m.group(2)), float(m.group(3))
    if p.remap == "correlation":
        assert (p.low, p.high) == (-1.0, 1.0) and -1 < lo and hi < 1
    else:
        assert (lo, hi) == (p.low, p.high), (name, p.doc)
    return lo, hi


def _noise(shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (0.01 + 0.2 * torch.rand(shape, generator=g)).to(dtype)


def _valid_params(spec, n=11, margin=1e-3, dtype=torch.float64):
    """Parameter values spread over each documented range, including near both ends."""
    u = torch.linspace(margin, 1 - margin, n, dtype=dtype)
    out = {}
    for k, name in enumerate(spec.param_names):
        lo, hi = _documented_range(spec, name)
        v = lo + (hi - lo) * u.roll(3 * k)  # different order per parameter
        out[name] = v.view(1, 1, 1, n)
    return out


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_spec_is_consistent(kernel):
    spec = get_spec(kernel)
    assert spec.name == kernel
    assert spec.task in TASKS
    assert spec.n_out == len(spec.params) >= 1
    assert spec.network
    assert set(spec.strength_params) <= set(spec.param_names)
    assert spec.description
    for p in spec.params:
        lo, hi = _documented_range(spec, p.name)
        assert lo <= p.init <= hi, (p.name, p.init)


def test_tasks_point_to_kernels_of_that_task():
    for task, kernel in TASKS.items():
        assert get_spec(kernel).task == task


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_round_trip_params(kernel, dtype):
    spec = get_spec(kernel)
    p = _valid_params(spec, margin=1e-4, dtype=dtype)
    noise = _noise((1, 1, 1, 11), dtype=dtype)
    # the documented range of these is a multiplier of the noise std
    p = {k: v * noise if k in _noise_relative(spec) else v for k, v in p.items()}
    raw = spec.from_params(p, noise)
    assert raw.shape == (1, spec.n_out, 1, 11)
    assert torch.isfinite(raw).all()
    back = spec.to_params(raw, noise)
    assert set(back) == set(spec.param_names)
    tol = 1e-9 if dtype == torch.float64 else 2e-5
    for name in spec.param_names:
        lo, hi = _documented_range(spec, name)
        scale = (hi - lo) * (noise if name in _noise_relative(spec) else 1.0)
        err = (back[name] - p[name]).abs() / scale
        assert float(err.max()) < tol, (name, float(err.max()))


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_init_raw_maps_to_init(kernel):
    spec = get_spec(kernel)
    raw = spec.init_raw().view(1, spec.n_out, 1, 1)
    one = torch.ones(1, 1, 1, 1)
    params = spec.to_params(raw, one)
    for p in spec.params:
        assert float(params[p.name]) == pytest.approx(p.init, abs=1e-5)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_remapped_values_stay_in_documented_ranges(kernel):
    spec = get_spec(kernel)
    g = torch.Generator().manual_seed(1)
    ladder = torch.tensor([-1e4, -1e3, -50.0, -1.0, 0.0, 1.0, 50.0, 1e3, 1e4])
    random = 1e4 * (2 * torch.rand(1, spec.n_out, 1, 9, generator=g) - 1)
    raw = torch.cat([ladder.view(1, 1, 1, 9).repeat(1, spec.n_out, 1, 1), random], dim=-1)
    noise = _noise((1, 1, 1, 18), seed=2, dtype=torch.float32)
    params = spec.to_params(raw, noise)
    for name in spec.param_names:
        v = params[name]
        assert v.shape == (1, 1, 1, 18)
        assert torch.isfinite(v).all(), name
        lo, hi = _documented_range(spec, name)
        if name in _noise_relative(spec):
            v = v / noise  # documented as a multiplier of the local noise std
        # float saturation may reach the bounds themselves at |raw| = 1e4
        assert float(v.min()) >= lo - 1e-6 and float(v.max()) <= hi + 1e-6, name
        if name == "rho":
            assert float(v.abs().max()) < 1.0
    # the remapping covers the range (not stuck in a corner)
    for name in spec.param_names:
        v = params[name] / (noise if name in _noise_relative(spec) else 1.0)
        lo, hi = _documented_range(spec, name)
        assert float(v.min()) < lo + 0.01 * (hi - lo) and float(v.max()) > hi - 0.01 * (hi - lo)


def test_nlm_sigma_scales_with_noise():
    spec = get_spec("nlm")
    raw = torch.full((2, 1, 3, 3), 0.7)
    noise = torch.tensor([0.05, 0.1]).view(2, 1, 1, 1)
    s = spec.to_params(raw, noise)["sigma"]
    torch.testing.assert_close(s[1], 2 * s[0])


def test_unknown_kernel_lists_the_names():
    with pytest.raises(ValueError, match="unknown kernel") as info:
        get_spec("median")
    for name in KERNELS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="nlm"):
        PKNModel("median")


# ---------------------------------------------------------------- upsample_map


def _bilinear_x2_reference(m: np.ndarray, size) -> np.ndarray:
    """Slow reference: pixel ``k`` of the fine grid samples the coarse map at
    ``(k + 0.5) / 2 - 0.5`` (pixel centres aligned), clamped at the borders."""

    def weights(n_out, n_in):
        w = np.zeros((n_out, n_in))
        for k in range(n_out):
            s = min(max((k + 0.5) / 2 - 0.5, 0.0), n_in - 1)
            i0 = math.floor(s)
            i1 = min(i0 + 1, n_in - 1)
            w[k, i0] += 1 - (s - i0)
            w[k, i1] += s - i0
        return w

    wy, wx = weights(size[0], m.shape[-2]), weights(size[1], m.shape[-1])
    return np.einsum("yi,bcij,xj->bcyx", wy, m, wx)


@pytest.mark.parametrize(("H", "W"), [(1, 1), (3, 5), (7, 4), (8, 8), (37, 53)])
def test_upsample_map_matches_exact_geometry(H, W):
    h, w = math.ceil(H / 2), math.ceil(W / 2)
    g = torch.Generator().manual_seed(H * 100 + W)
    m = torch.rand(2, 3, h, w, generator=g, dtype=torch.float64)
    up = upsample_map(m, (H, W))
    if (h, w) == (1, 1):
        assert up.shape == (2, 3, 1, 1)  # one value per image: broadcasts
        return
    assert up.shape == (2, 3, H, W)
    np.testing.assert_allclose(up.numpy(), _bilinear_x2_reference(m.numpy(), (H, W)), 1e-12)


@pytest.mark.parametrize(("H", "W"), [(9, 9), (12, 7), (37, 53)])
def test_upsample_map_constant_and_ramp(H, W):
    h, w = math.ceil(H / 2), math.ceil(W / 2)
    const = torch.full((1, 1, h, w), 0.37)
    torch.testing.assert_close(upsample_map(const, (H, W)), torch.full((1, 1, H, W), 0.37))
    # map pixel i covers input rows [2i, 2i + 2): its centre is row 2i + 0.5, so a map
    # holding its own centre coordinate upsamples to each row's index (inside the border)
    rows = (2 * torch.arange(h, dtype=torch.float64) + 0.5).view(1, 1, h, 1).expand(1, 1, h, w)
    up = upsample_map(rows, (H, W))
    expected = torch.arange(H, dtype=torch.float64).view(H, 1).expand(H, W)
    torch.testing.assert_close(up[0, 0, 1 : H - 1], expected[1 : H - 1])
    cols = (2 * torch.arange(w, dtype=torch.float64) + 0.5).view(1, 1, 1, w).expand(1, 1, h, w)
    up = upsample_map(cols, (H, W))
    expected = torch.arange(W, dtype=torch.float64).view(1, W).expand(H, W)
    torch.testing.assert_close(up[0, 0, :, 1 : W - 1], expected[:, 1 : W - 1])


def test_upsample_map_hot_pixel_odd_size():
    H, W = 9, 11
    m = torch.zeros(1, 1, 5, 6)
    m[0, 0, 2, 3] = 1.0
    up = upsample_map(m, (H, W))
    ref = F.interpolate(m, scale_factor=2, mode="bilinear", align_corners=False)[..., :H, :W]
    torch.testing.assert_close(up, ref)
    # the hot map pixel covers input pixels [4, 6) x [6, 8): those get the full value
    torch.testing.assert_close(up[0, 0, 4:6, 6:8], torch.full((2, 2), 0.75**2))
    assert float(up.sum()) == pytest.approx(4.0)  # bilinear x2 preserves the mass


def test_upsample_map_factor_one_crops():
    m = torch.arange(20.0).view(1, 1, 4, 5)
    torch.testing.assert_close(upsample_map(m, (3, 4), factor=1), m[..., :3, :4])


@pytest.mark.parametrize(("H", "W"), [(1, 3), (2, 3), (5, 5), (6, 9)])
def test_half_noise_geometry(H, W):
    """Half-resolution pixel (i, j) is the mean of the real pixels of [2i, 2i+2) x [2j, 2j+2)."""
    g = torch.Generator().manual_seed(3)
    noise = torch.rand(2, 1, H, W, generator=g, dtype=torch.float64)
    h = _half(noise)
    assert h.shape == (2, 1, math.ceil(H / 2), math.ceil(W / 2))
    ref = torch.empty_like(h)
    for i in range(h.shape[-2]):
        for j in range(h.shape[-1]):
            ref[..., i, j] = noise[..., 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(dim=(-2, -1))
    torch.testing.assert_close(h, ref)
    torch.testing.assert_close(_half(torch.full((2, 1, H, W), 0.1)), torch.full(h.shape, 0.1))
    per_image = torch.full((2, 1, 1, 1), 0.2)
    assert _half(per_image) is per_image


# ---------------------------------------------------------------- run_filter


def _noisy(B=1, H=15, W=17, seed=4):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 1, H, W, generator=g)


@pytest.mark.parametrize("kernel", ["nlm", "bilateral"])
def test_strength_zero_is_identity(kernel):
    spec = get_spec(kernel)
    x = _noisy()
    maps = {"sigma": torch.full((1, 1, 8, 9), 0.3)}
    y = run_filter(spec, x, maps, strength=0.0)
    torch.testing.assert_close(y, x)
    assert not torch.allclose(run_filter(spec, x, maps), x, atol=1e-3)


@pytest.mark.parametrize(
    ("kernel", "values", "kw"),
    [
        ("gaussian", {"sigma1": 1.5}, {}),
        ("anisotropic", {"sigma1": 1.5, "sigma2": 0.7, "rho": 0.4}, {}),
        ("polyblur", {"b": -2.0, "c": 1.5, "d": -0.3}, {"blur": 1.2}),
    ],
)
def test_strength_zero_is_identity_other_kernels(kernel, values, kw):
    spec = get_spec(kernel)
    x = _noisy(seed=10)
    maps = {k: torch.full((1, 1, 8, 9), v) for k, v in values.items()}
    torch.testing.assert_close(run_filter(spec, x, maps, strength=0.0, **kw), x)
    assert not torch.allclose(run_filter(spec, x, maps, **kw), x, atol=1e-3)


def test_rbf_strength_zero_is_nearest_neighbour():
    spec = get_spec("rbf")
    x = _noisy(H=7, W=9, seed=11)
    maps = {
        "sigma1": torch.full((1, 1, 4, 5), 0.6),
        "sigma2": torch.full((1, 1, 4, 5), 0.4),
        "rho": torch.full((1, 1, 4, 5), 0.3),
    }
    y = run_filter(spec, x, maps, strength=0.0, size=(14, 18))
    torch.testing.assert_close(y, x.repeat_interleave(2, -2).repeat_interleave(2, -1))
    assert run_filter(spec, x, maps, size=(14, 18)).shape == (1, 1, 14, 18)


def test_filters_that_need_more_say_so():
    x = _noisy()
    with pytest.raises(ValueError, match="blur"):
        run_filter(get_spec("polyblur"), x, {n: torch.zeros(1, 1, 8, 9) for n in "bcd"})
    with pytest.raises(ValueError, match="size"):
        maps = {n: torch.full((1, 1, 8, 9), 0.5) for n in ("sigma1", "sigma2")}
        run_filter(get_spec("rbf"), x, {**maps, "rho": torch.zeros(1, 1, 8, 9)})


@pytest.mark.parametrize("kernel", ["nlm", "bilateral"])
def test_strength_multiplies_sigma(kernel):
    spec = get_spec(kernel)
    x = _noisy(seed=5)
    g = torch.Generator().manual_seed(6)
    maps = {"sigma": 0.05 + 0.1 * torch.rand(1, 1, 8, 9, generator=g)}
    a = run_filter(spec, x, maps, strength=2.5)
    b = run_filter(spec, x, {"sigma": 2.5 * maps["sigma"]})
    torch.testing.assert_close(a, b)


def test_run_filter_uses_upsampled_maps():
    from pkn.kernels import nlm

    spec = get_spec("nlm")
    x = _noisy(H=13, W=10, seed=7)
    g = torch.Generator().manual_seed(8)
    m = 0.05 + 0.2 * torch.rand(1, 1, 7, 5, generator=g)
    y = run_filter(spec, x, {"sigma": m}, options={"patch_size": 1, "search_size": 3})
    ref = nlm(x, upsample_map(m, (13, 10)), patch_size=1, search_size=3)
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("bad", [-0.1, -1e-9, float("nan"), float("-inf")])
def test_bad_strength_raises(bad):
    spec = get_spec("nlm")
    with pytest.raises(ValueError, match="strength"):
        run_filter(spec, _noisy(), {"sigma": torch.full((1, 1, 8, 9), 0.1)}, strength=bad)


def test_model_filter_strength():
    model = PKNModel("nlm")
    x = _noisy(seed=9)
    with torch.no_grad():
        y0, maps = model(x, torch.full((1, 1, 1, 1), 0.1), strength=0.0)
        y1, _ = model(x, torch.full((1, 1, 1, 1), 0.1))
    torch.testing.assert_close(y0, x)
    assert maps["sigma"].shape == (1, 1, 8, 9)
    assert not torch.allclose(y1, x, atol=1e-3)
