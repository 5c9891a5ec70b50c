"""Tests for the no-grad band helpers shared by kpn, gaussian and rbf (pkn.kernels._band)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pkn.kernels._band import as_map_fast, pad_band, resample_rows, resampled_radius
from pkn.kernels._common import all_finite, as_map, check_image, check_stack, pad


def _randn(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


SIZES = [  # (h, w) -> (H, W): integer factors, fractions, downsampling, broadcasts
    ((3, 4), (6, 8)),
    ((3, 4), (12, 16)),
    ((3, 3), (9, 9)),
    ((5, 7), (9, 13)),
    ((5, 7), (5, 14)),
    ((7, 9), (3, 4)),
    ((4, 6), (2, 3)),
    ((1, 4), (5, 8)),
    ((4, 1), (8, 6)),
    ((1, 1), (3, 3)),
    ((6, 5), (6, 5)),
    ((2, 3), (2, 9)),
]


@pytest.mark.parametrize(("src", "dst"), SIZES)
def test_resample_rows_matches_interpolate(src, dst):
    p = _randn(2, 3, *src, seed=sum(src) + sum(dst))
    ref = F.interpolate(p, size=dst, mode="bilinear", align_corners=False)
    H, W = dst
    for r0 in range(H):
        for r1 in range(r0 + 1, H + 1):
            for out in (None, torch.empty(2, 3, r1 - r0, W, dtype=p.dtype)):
                y = resample_rows(p, dst, r0, r1, out=out)
                assert y.shape == (2, 3, r1 - r0, W)
                torch.testing.assert_close(y, ref[:, :, r0:r1], rtol=1e-12, atol=1e-12)


def test_resample_rows_float32_large():
    p = _randn(1, 25, 30, 40, seed=3, dtype=torch.float32)
    ref = F.interpolate(p, size=(60, 80), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resample_rows(p, (60, 80), 7, 37), ref[:, :, 7:37])


def test_all_finite():
    assert all_finite(torch.zeros(0))
    assert all_finite(torch.ones(3, 3))
    big = torch.full((1000,), 3e38, dtype=torch.float32)  # the sum overflows, the values do not
    assert all_finite(big)
    for bad in (math.nan, math.inf, -math.inf):
        t = torch.ones(5, 5)
        t[2, 3] = bad
        assert not all_finite(t)
    t = torch.ones(4)
    t[0], t[1] = math.inf, -math.inf  # inf - inf: the sum is NaN
    assert not all_finite(t)


def _error(call):
    try:
        call()
    except (TypeError, ValueError) as e:
        return type(e), str(e)
    return None


BAD_IMAGES = [
    torch.rand(3, 4),
    torch.rand(1, 1, 3, 4).long(),
    torch.full((1, 1, 3, 4), math.nan),
    torch.full((1, 1, 3, 4), math.inf),
    torch.rand(1, 0, 3, 4),
    torch.rand(1, 1, 2, 4),
    torch.full((1, 1, 3, 4), 3e38),  # finite: passes after the full scan
    torch.rand(1, 1, 3, 4),
    "not a tensor",
]


@pytest.mark.parametrize("x", BAD_IMAGES)
def test_checks_with_the_one_sum_finiteness_test(x):
    """check_image / check_stack use all_finite: NaN and Inf still raise; huge finite values
    (whose sum overflows) pass after the full scan."""
    err = _error(lambda: check_image(x, min_size=3))
    like = torch.rand(2, 1, 3, 4)
    err_stack = _error(lambda: check_stack(x, like, "w", "(B, n, h, w)"))
    if isinstance(x, torch.Tensor) and x.dtype.is_floating_point and x.ndim == 4:
        finite = bool(torch.isfinite(x).all())
        assert (err is not None and "NaN or Inf" in err[1]) == (not finite and min(x.shape) > 0)
        if x.shape[0] in (1, 2) and min(x.shape) > 0:
            assert (err_stack is None) == finite
    else:
        assert err is not None  # not a float (B, C, H, W) image
        assert isinstance(x, torch.Tensor) or err_stack is not None


MAPS = [
    0.5,
    torch.tensor(0.25),
    torch.full((1, 1, 1, 1), 0.7),
    torch.rand(1, 1, 3, 4, dtype=torch.float64),
    torch.rand(2, 2, 3, 4),
    torch.rand(1, 1, 6, 8),  # already at the image size
    torch.full((1, 1, 3, 4), -1.0),  # below the range
    torch.full((1, 1, 3, 4), math.nan),
    torch.rand(3, 1, 3, 4),  # batch 3 for an image of batch 2
    torch.rand(1, 3, 3, 4),  # 3 channels for an image of 2
    torch.rand(3, 4),
]


@pytest.mark.parametrize("p", MAPS)
@pytest.mark.parametrize("size", [None, (12, 16), (3, 4)])
def test_as_map_fast_matches_as_map(p, size):
    x = torch.rand(2, 2, 6, 8)
    expected = _error(lambda: as_map(p, x, "sigma", low=0.0, high=2.0, size=size))
    assert _error(lambda: as_map_fast(p, x, "sigma", low=0.0, high=2.0, size=size)) == expected
    if expected is None:
        ref = as_map(p, x, "sigma", low=0.0, high=2.0, size=size)
        fast = as_map_fast(p, x, "sigma", low=0.0, high=2.0, size=size)
        assert fast.shape == ref.shape and fast.dtype == ref.dtype
        torch.testing.assert_close(fast, ref)


def _exact_radius(maps, size, rule):
    full = [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps]
    return rule(max(float(m.max()) for m in full))


@pytest.mark.parametrize("seed", range(6))
def test_resampled_radius_is_exact(seed):
    rule = lambda m: math.ceil(3.0 * m)  # noqa: E731
    g = torch.Generator().manual_seed(seed)
    smooth = 0.3 + torch.rand(1, 1, 5, 6, generator=g, dtype=torch.float64)
    spike = torch.full((1, 1, 5, 6), 0.2, dtype=torch.float64)
    spike[..., 2, 3] = 1.0 + 0.3 * seed  # the resampled maximum is well below it
    full = torch.rand(1, 1, 10, 12, generator=g, dtype=torch.float64)
    for maps in ([smooth], [spike], [smooth, spike], [full, spike], [spike[..., :1, :1]]):
        for size in [(10, 12), (20, 24), (7, 9)]:
            if any(m.shape[-2:] not in ((1, 1), (5, 6), size) for m in maps):
                continue
            assert resampled_radius(maps, size, rule) == _exact_radius(maps, size, rule)


@pytest.mark.parametrize(("H", "W", "r"), [(8, 9, 2), (3, 7, 3), (5, 5, 1), (10, 12, 4), (2, 3, 2)])
def test_pad_band_matches_pad(H, W, r):
    x = _randn(2, 3, H, W, seed=H * W + r)
    ref = pad(x, r)  # mirrored, or replicated where the image is smaller than the pad
    for r0 in range(H):
        for r1 in range(r0 + 1, H + 1):
            out = torch.empty(2, 3, r1 - r0 + 2 * r, W + 2 * r, dtype=x.dtype)
            assert torch.equal(pad_band(x, r, r0, r1, out), ref[:, :, r0 : r1 + 2 * r])
