"""Noise estimation and noise std maps (``pkn.noise``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pkn.noise import estimate_awgn, estimate_poisson_gaussian, noise_std_map


def _smooth(H=256, W=256) -> np.ndarray:
    """A smooth synthetic image in about [0.15, 0.85] (no edges: Haar details ~ 0)."""
    y, x = np.mgrid[0:H, 0:W] / max(H, W)
    return 0.5 + 0.25 * np.sin(2 * np.pi * 1.5 * x) * np.cos(2 * np.pi * y) + 0.1 * x


def _ramp(H=256, W=256, lo=0.05, hi=0.95) -> np.ndarray:
    return np.broadcast_to(np.linspace(lo, hi, W), (H, W)).copy()


def _poisson_gaussian(clean, a, b, seed):
    rng = np.random.default_rng(seed)
    return a * rng.poisson(clean / a) + math.sqrt(b) * rng.standard_normal(clean.shape)


# ---------------------------------------------------------------- AWGN


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1])
def test_estimate_awgn_recovers_sigma(sigma, seed):
    rng = np.random.default_rng(seed)
    clean = _smooth()
    noisy = clean + sigma * rng.standard_normal(clean.shape)
    est = estimate_awgn(noisy)
    assert isinstance(est, float)
    assert est == pytest.approx(sigma, rel=0.1)


def test_estimate_awgn_accepts_tensors_and_stacks():
    rng = np.random.default_rng(2)
    noisy = _smooth(128, 96)[None] + 0.05 * rng.standard_normal((3, 128, 96))
    a = estimate_awgn(noisy)
    b = estimate_awgn(torch.from_numpy(noisy).float()[None])  # (1, 3, H, W)
    assert a == pytest.approx(0.05, rel=0.1)
    assert b == pytest.approx(a, rel=1e-4)


def test_estimate_awgn_clean_smooth_image_is_near_zero():
    assert estimate_awgn(_smooth()) < 1e-3


def test_estimate_awgn_scales_with_units():
    rng = np.random.default_rng(3)
    noisy = _smooth() + 0.05 * rng.standard_normal((256, 256))
    assert estimate_awgn(255 * noisy) == pytest.approx(255 * estimate_awgn(noisy), rel=1e-9)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((1, 7)), np.zeros((7, 1)), 3.0])
def test_estimate_awgn_too_small(bad):
    with pytest.raises(ValueError, match="at least"):
        estimate_awgn(bad)


# ---------------------------------------------------------------- Poisson-Gaussian


# ``b`` is the intercept of a line fitted to per-bin variances measured at intensities
# >= 0.05, so its error is the fit's error extrapolated to x = 0: we require it within 5%
# of the largest noise variance in the image (a * 0.95 + b), about 3-5x the scatter seen
# over seeds, and ``a`` within 25%.
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("a", "b"), [(0.01, 1e-3), (0.02, 1e-4), (0.005, 5e-4)])
def test_estimate_poisson_gaussian_recovers_a_b(a, b, seed):
    clean = _ramp()
    noisy = _poisson_gaussian(clean, a, b, seed)
    a_est, b_est = estimate_poisson_gaussian(noisy)
    assert isinstance(a_est, float) and isinstance(b_est, float)
    assert a_est == pytest.approx(a, rel=0.25)
    assert abs(b_est - b) <= 0.05 * (a * 0.95 + b)
    # the fitted variance is never negative over the image's range
    assert a_est * clean.min() + b_est >= 0


def test_estimate_poisson_gaussian_on_smooth_image():
    clean = _smooth()
    a, b = 0.01, 5e-4
    a_est, b_est = estimate_poisson_gaussian(_poisson_gaussian(clean, a, b, seed=4))
    assert a_est == pytest.approx(a, rel=0.25)
    assert abs(b_est - b) <= 0.05 * (a * clean.max() + b)


def test_estimate_poisson_gaussian_pure_gaussian():
    """Signal-independent noise: a ~ 0 and b ~ sigma^2."""
    rng = np.random.default_rng(5)
    sigma = 0.05
    a_est, b_est = estimate_poisson_gaussian(_ramp() + sigma * rng.standard_normal((256, 256)))
    assert a_est >= 0
    assert a_est * 0.95 < 0.1 * sigma**2  # the signal-dependent part is negligible
    assert math.sqrt(b_est + a_est * 0.5) == pytest.approx(sigma, rel=0.1)


def test_estimate_poisson_gaussian_constant_image():
    """No intensity spread at all: no line to fit; a noiseless image has no noise."""
    assert estimate_poisson_gaussian(np.full((128, 128), 0.4)) == (0.0, 0.0)


@pytest.mark.parametrize("seed", [3, 6])
def test_estimate_poisson_gaussian_flat_signal_gaussian_noise(seed):
    """A flat (low-contrast) signal with plain Gaussian noise: the per-bin variances are
    all ~sigma^2, so the estimated noise at the signal level must be ~sigma. When the
    fitted slope comes out negative and ``a`` is clipped to 0, ``b`` must be the variance
    level, not the intercept of the unconstrained line extrapolated to x = 0."""
    rng = np.random.default_rng(seed)
    noisy = 0.4 + 0.03 * rng.standard_normal((128, 128))
    a_est, b_est = estimate_poisson_gaussian(noisy)
    assert a_est >= 0
    assert math.sqrt(b_est + a_est * 0.4) == pytest.approx(0.03, rel=0.15)


# ---------------------------------------------------------------- noise_std_map


@pytest.mark.parametrize(("H", "W"), [(1, 1), (2, 3), (3, 5), (16, 16)])
def test_noise_std_map_awgn(H, W):
    x = torch.rand(3, 1, H, W)
    m = noise_std_map(x, 0.07)
    assert m.shape == (3, 1, 1, 1)
    assert m.dtype == x.dtype
    torch.testing.assert_close(m, torch.full((3, 1, 1, 1), 0.07))
    assert noise_std_map(x.double(), 0.07).dtype == torch.float64
    assert float(noise_std_map(x, 0).min()) > 0  # floored, never 0


@pytest.mark.parametrize(("H", "W"), [(1, 1), (2, 3), (3, 5), (16, 16), (7, 40)])
def test_noise_std_map_poisson_gaussian(H, W):
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, 1, H, W, generator=g)
    a, b = 0.02, 1e-3
    m = noise_std_map(x, (a, b))
    assert m.shape == (2, 1, H, W)
    assert torch.isfinite(m).all() and float(m.min()) > 0
    # values between the extremes of sqrt(a x + b)
    lo, hi = math.sqrt(a * float(x.min()) + b), math.sqrt(a * float(x.max()) + b)
    assert float(m.min()) >= lo - 1e-6 and float(m.max()) <= hi + 1e-6
    # a constant image gives exactly sqrt(a c + b)
    c = torch.full((2, 1, H, W), 0.3)
    torch.testing.assert_close(noise_std_map(c, [a, b]), torch.full_like(c, math.sqrt(a * 0.3 + b)))


def test_noise_std_map_poisson_gaussian_is_smoothed():
    """The map comes from a smoothed signal, so it is much less noisy than the image."""
    clean = np.full((64, 64), 0.5)
    noisy = torch.from_numpy(_poisson_gaussian(clean, 0.02, 1e-4, 8)).float()[None, None]
    m = noise_std_map(noisy, (0.02, 1e-4))
    true = math.sqrt(0.02 * 0.5 + 1e-4)
    assert float(m.mean()) == pytest.approx(true, rel=0.05)
    raw = (0.02 * noisy + 1e-4).clamp_min(0).sqrt()
    assert float(m.std()) < 0.5 * float(raw.std())


def test_noise_std_map_negative_variance_is_floored():
    x = torch.zeros(1, 1, 4, 4)
    m = noise_std_map(x, (0.01, -1.0))
    assert torch.isfinite(m).all() and float(m.min()) > 0


def test_noise_std_map_tensor():
    x = torch.rand(2, 1, 5, 6)
    t = torch.full((2, 1, 5, 6), 0.1, dtype=torch.float64)
    m = noise_std_map(x, t)
    assert m.shape == (2, 1, 5, 6) and m.dtype == torch.float32
    torch.testing.assert_close(m, torch.full((2, 1, 5, 6), 0.1))
    per_image = noise_std_map(x, torch.tensor([0.1, 0.0]).view(2, 1, 1, 1))
    assert per_image.shape == (2, 1, 1, 1)
    assert float(per_image.min()) > 0  # floored


@pytest.mark.parametrize(
    ("noise", "match"),
    [
        (-0.1, "sigma"),
        (float("nan"), "sigma"),
        (float("inf"), "sigma"),
        ((0.1, 0.01, 0.2), r"\(a, b\)"),
        ((0.1,), r"\(a, b\)"),
        ((-0.01, 0.001), "a >= 0"),
        ((float("nan"), 0.001), "finite"),
        ((0.01, float("inf")), "finite"),
    ],
)
def test_noise_std_map_bad_values(noise, match):
    with pytest.raises(ValueError, match=match):
        noise_std_map(torch.rand(1, 1, 8, 8), noise)
