"""Noise estimation and noise std maps (``pkn.noise``): :func:`calibrate` on synthetic
families with a known truth (AWGN, Poisson-Gaussian from a few photons to high counts,
16-bit with a camera offset, 8-bit quantised, spatially correlated noise), pooled and
per-plane stacks, channels, camera terms, input errors; the older estimators and
:func:`noise_std_map`. The real-data check is ``tests/test_noise_real.py``."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
import torch

from pkn.noise import (
    NoiseModel,
    calibrate,
    estimate_awgn,
    estimate_poisson_gaussian,
    noise_std_map,
)


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


# ---------------------------------------------------------------- calibrate: synthetic truth


@pytest.fixture(scope="module")
def content() -> dict[str, np.ndarray]:
    """Natural-looking clean content in [0, 1], 256x256: a microscopy field (skimage's
    ``cell``) and a photo (``astronaut``), smoothed by 1 px (their own noise and 8-bit
    steps would count as noise)."""
    from skimage import data
    from skimage.color import rgb2gray
    from skimage.filters import gaussian

    out = {}
    for name, img in (("cell", data.cell() / 255.0), ("astronaut", rgb2gray(data.astronaut()))):
        v = gaussian(np.asarray(img, float), 1.0)[100:356, 100:356]
        lo, hi = np.percentile(v, [0.5, 99.5])
        out[name] = np.clip((v - lo) / (hi - lo), 0, 1)
    return out


def _correlate(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``n`` correlated with a small kernel (mirrored borders, same size)."""
    kh, kw = k.shape
    p = np.pad(n, ((kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2)), mode="reflect")
    return sum(
        k[i, j] * p[i : i + n.shape[0], j : j + n.shape[1]] for i in range(kh) for j in range(kw)
    )


BOX2 = np.full((2, 2), 0.25)  # 2x2 binning: lag-1 correlation 0.5, none at lag 2
BILIN = np.outer([1, 2, 1], [1, 2, 1]) / 16.0  # demosaicking-like: 2/3 at lag 1, 1/6 at lag 2


def _case(kind: str, c01: np.ndarray, seed: int):
    """``(noisy, true marginal std at the noisy mean, true lag-1 rho)``."""
    rng = np.random.default_rng(seed)
    if kind.startswith("awgn"):
        s = float(kind.split()[1])
        x = 0.1 + 0.8 * c01 + s * rng.standard_normal(c01.shape)
        return x, s, 0.0
    if kind.startswith("pg"):  # photons, 0.5 e read noise
        peak = float(kind.split()[1])
        x = rng.poisson(peak * (0.02 + 0.98 * c01)) + 0.5 * rng.standard_normal(c01.shape)
        return x, math.sqrt(x.mean() + 0.25), 0.0
    if kind == "16bit":  # gain 4, 10,000 counts peak above an offset of 100, read noise 8
        e = 10_000 * (0.02 + 0.98 * c01) / 4
        x = 100 + 4 * rng.poisson(e) + 8 * rng.standard_normal(e.shape)
        x = np.clip(np.round(x), 0, 65535).astype(np.uint16)
        return x, math.sqrt(4 * (x.mean() - 100) + 64 + 1 / 12), 0.0
    if kind == "8bit":  # 20 photons peak, 255/40 counts per e, offset 5, read noise 1 e
        g = 255 / 40
        lam = 20 * (0.02 + 0.98 * c01)
        x = g * (rng.poisson(lam) + rng.standard_normal(lam.shape)) + 5
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
        return x, math.sqrt(g * (x.mean() - 5) + g * g + 1 / 12), 0.0
    k = {"box2": BOX2, "bilin": BILIN}[kind.split()[1]]
    k2 = float((k * k).sum())
    rho = float((k[:, 1:] * k[:, :-1]).sum()) / k2
    if kind.endswith("awgn"):  # marginal std 0.05
        x = 0.1 + 0.8 * c01 + 0.05 / math.sqrt(k2) * _correlate(rng.standard_normal(c01.shape), k)
        return x, 0.05, rho
    lam = 30 * (0.02 + 0.98 * c01)  # Poisson noise of 30 photons peak, then correlated
    x = lam + _correlate(rng.poisson(lam) - lam, k)
    return x, math.sqrt(k2 * x.mean()), rho


FAMILIES = [
    "awgn 0.01",
    "awgn 0.1",
    "pg 3",
    "pg 30",
    "pg 3000",
    "16bit",
    "8bit",
    "corr box2 awgn",
    "corr bilin awgn",
    "corr box2 pg",
    "corr bilin pg",
]


@pytest.mark.parametrize("name", ["cell", "astronaut"])
@pytest.mark.parametrize("family", FAMILIES)
def test_calibrate_marginal_std_and_correlation(content, family, name):
    """The issue's target: the marginal std at the mean intensity within 15% of the truth
    (white noise: 10%; these are 256x256 crops, the benchmark's 512x512 images are all
    within 10%), and the lag-1 correlation within 0.1 of the truth for correlated noise
    (white noise: reported white)."""
    x, true_std, true_rho = _case(family, content[name], seed=len(family) + len(name))
    m = calibrate(x)
    assert isinstance(m, NoiseModel)
    assert m.std_at_mean == pytest.approx(true_std, rel=0.15 if true_rho else 0.10)
    if true_rho:
        assert m.correlated
        assert m.rho[0] == pytest.approx(true_rho, abs=0.1)
        assert m.rho[1] == pytest.approx(true_rho, abs=0.1)
        assert m.length == (2 if "bilin" in family else 1)
    else:
        assert not m.correlated and m.length == 0
        np.testing.assert_array_equal(m.correlation, np.eye(5)[2:3].T @ np.eye(5)[2:3])
    if family.startswith(("pg", "16bit", "8bit")):
        assert m.kind == "poisson-gaussian" and m.a > 0
    if family in ("awgn 0.1", "corr box2 awgn", "corr bilin awgn"):
        assert m.kind == "awgn" and m.a == 0.0 and m.sigma == pytest.approx(true_std, rel=0.1)


def test_calibrate_16bit_recovers_the_camera(content):
    """High counts with an offset (gain 4, peak 10,000 counts, offset 100): the slope is
    the gain, and the variance over the whole range follows the camera's."""
    x, _, _ = _case("16bit", content["cell"], seed=3)
    m = calibrate(x)
    assert m.a == pytest.approx(4.0, rel=0.1)
    for level in (1000.0, 5000.0, 9000.0):
        assert m.std_at(level) == pytest.approx(math.sqrt(4 * (level - 100) + 64), rel=0.1)


def test_calibrate_is_equivariant_to_units(content):
    """Counts * k + o: a scales by k, b accordingly, the std by k; correlation unchanged."""
    x, _, _ = _case("pg 30", content["cell"], seed=4)
    m = calibrate(x)
    k, o = 2.5, 100.0
    m2 = calibrate(k * x + o)
    assert m2.std_at_mean == pytest.approx(k * m.std_at_mean, rel=1e-6)
    assert m2.a == pytest.approx(k * m.a, rel=1e-6)
    assert m2.b == pytest.approx(k * k * m.b - k * m.a * o, rel=1e-6, abs=1e-6 * m2.var_at(m2.mean))
    n = m2.normalised(o, k)  # back to the original units
    assert n.a == pytest.approx(m.a, rel=1e-6) and n.b == pytest.approx(m.b, rel=1e-5)
    assert n.std_at_mean == pytest.approx(m.std_at_mean, rel=1e-6)


def test_calibrate_accepts_tensors_and_integer_dtypes(content):
    x, true_std, _ = _case("pg 30", content["cell"], seed=5)
    counts = np.round(x).clip(0).astype(np.int32)
    a = calibrate(counts).std_at_mean
    b = calibrate(torch.from_numpy(counts.astype(np.float32))).std_at_mean
    assert a == pytest.approx(true_std, rel=0.1)
    assert b == pytest.approx(a, rel=1e-5)


# ---------------------------------------------------------------- stacks and channels


def test_calibrate_pools_planes_by_default_and_fits_each_on_request(content):
    """Leading axes are planes: one model for the stack unless per_plane; per-plane models
    each match their own plane."""
    rng = np.random.default_rng(6)
    c = 0.1 + 0.8 * content["cell"]
    sig = (0.02, 0.05, 0.1)
    stack = np.stack([c + s * rng.standard_normal(c.shape) for s in sig])
    pooled = calibrate(stack)
    assert pooled.per_plane is None
    assert min(sig) < pooled.std_at_mean < max(sig)
    m = calibrate(stack, per_plane=True)
    assert m.a == pooled.a and m.b == pooled.b  # the returned model is still the pooled one
    assert len(m.per_plane) == 3
    for p, s in zip(m.per_plane, sig, strict=True):
        assert p.per_plane is None and p.std_at_mean == pytest.approx(s, rel=0.1)
    # 4-D (t, z, y, x): every leading axis is a plane
    m4 = calibrate(stack.reshape(1, 3, *c.shape), per_plane=True)
    assert len(m4.per_plane) == 3 and m4.std_at_mean == pytest.approx(pooled.std_at_mean)
    d = m.as_dict()
    assert len(d["per_plane"]) == 3
    json.dumps(d)


def test_calibrate_pooled_same_noise_matches_a_single_plane(content):
    rng = np.random.default_rng(7)
    lam = 30 * (0.02 + 0.98 * content["cell"])
    stack = rng.poisson(lam, size=(4, *lam.shape)).astype(float)
    m = calibrate(stack)
    true = math.sqrt(stack.mean())
    assert m.std_at_mean == pytest.approx(true, rel=0.05)
    assert m.a == pytest.approx(1.0, rel=0.1)


def test_calibrate_large_stacks_use_a_subset_of_planes(content, monkeypatch):
    import pkn.noise as nz

    monkeypatch.setattr(nz, "_MAX_POOLED_TILES", 2 * (256 // 8) ** 2)
    rng = np.random.default_rng(8)
    c = 0.1 + 0.8 * content["cell"]
    stack = c + 0.05 * rng.standard_normal((5, *c.shape))
    m = calibrate(stack)
    assert m.details["planes_used"] == [0, 4]
    assert m.std_at_mean == pytest.approx(0.05, rel=0.1)


def test_calibrate_channels_get_one_model_each(content):
    rng = np.random.default_rng(9)
    c = 0.1 + 0.8 * content["astronaut"]
    rgb = np.stack([c + s * rng.standard_normal(c.shape) for s in (0.02, 0.05, 0.1)], -1)
    models = calibrate(rgb, channel_axis=-1)
    assert isinstance(models, tuple) and len(models) == 3
    for m, s in zip(models, (0.02, 0.05, 0.1), strict=True):
        assert m.std_at_mean == pytest.approx(s, rel=0.1)
    first = calibrate(np.moveaxis(rgb, -1, 0), channel_axis=0)
    assert [m.std_at_mean for m in first] == [m.std_at_mean for m in models]
    # channels and planes: (C, Z, H, W)
    czyx = np.stack([np.stack([rgb[..., i]] * 2) for i in range(3)])
    per = calibrate(czyx, channel_axis=0, per_plane=True)
    assert len(per) == 3 and all(len(m.per_plane) == 2 for m in per)


# ---------------------------------------------------------------- camera terms


def test_calibrate_camera_terms_give_a_and_b():
    rng = np.random.default_rng(10)
    e = rng.poisson(200.0, (128, 128))
    x = 100 + 2.0 * e + 3.0 * rng.standard_normal(e.shape)
    m = calibrate(x, camera=dict(gain=2.0, offset=100, read_noise=3.0))
    assert m.source == "camera" and m.kind == "poisson-gaussian"
    assert m.a == 2.0 and m.b == 9.0 - 200.0
    assert m.std_at(100 + 2 * 200) == pytest.approx(math.sqrt(2 * 400 + 9))
    assert m.details["camera"] == {"gain": 2.0, "offset": 100.0, "read_noise": 3.0}
    # the estimate agrees with the camera
    assert calibrate(x).std_at_mean == pytest.approx(m.std_at_mean, rel=0.1)
    # defaults: no offset, no read noise
    assert calibrate(x, camera={"gain": 2}).b == 0.0
    # per channel
    two = np.stack([x, x], -1)
    ms = calibrate(two, channel_axis=-1, camera=[{"gain": 1.0}, {"gain": 3.0}])
    assert [m.a for m in ms] == [1.0, 3.0]
    assert [m.a for m in calibrate(two, channel_axis=-1, camera={"gain": 5.0})] == [5.0, 5.0]


@pytest.mark.parametrize(
    ("camera", "exc", "match"),
    [
        ({"offset": 100}, ValueError, "needs 'gain'"),
        ({"gain": 0}, ValueError, "gain must be > 0"),
        ({"gain": -1.0}, ValueError, "gain must be > 0"),
        ({"gain": float("nan")}, ValueError, "camera gain must be a finite number"),
        ({"gain": True}, ValueError, "camera gain must be a finite number"),
        ({"gain": "2"}, ValueError, "camera gain must be a finite number"),
        ({"gain": 2, "read_noise": -1}, ValueError, "read_noise must be >= 0"),
        ({"gain": 2, "offset": float("inf")}, ValueError, "offset must be a finite"),
        ({"gain": 2, "readnoise": 1}, ValueError, r"unknown key\(s\) \['readnoise'\]"),
        ((2.0, 100, 3), TypeError, "camera must be a dict"),
    ],
)
def test_calibrate_camera_errors(camera, exc, match):
    with pytest.raises(exc, match=match):
        calibrate(np.random.default_rng(0).random((32, 32)), camera=camera)


def test_calibrate_camera_per_channel_count_must_match():
    with pytest.raises(ValueError, match="camera has 1 entries but the image has 2 channels"):
        calibrate(np.zeros((2, 32, 32)), channel_axis=0, camera=[{"gain": 1.0}])


# ---------------------------------------------------------------- errors and edge cases


@pytest.mark.parametrize(
    ("image", "kw", "exc", "match"),
    [
        (np.full((32, 32), np.nan), {}, ValueError, r"image contains 1024 NaN or Inf"),
        (
            np.pad(np.ones((31, 32)), ((0, 1), (0, 0)), constant_values=np.inf),
            {},
            ValueError,
            "NaN or Inf",
        ),
        (np.zeros((32, 32), bool), {}, TypeError, "boolean"),
        (np.zeros((32, 32), complex), {}, TypeError, "dtype complex128"),
        (np.array([["a"] * 9] * 9), {}, TypeError, "dtype <U1"),
        (np.zeros(64), {}, ValueError, "at least 2 dimensions"),
        (np.zeros((7, 64)), {}, ValueError, r"7x64 pixels; calibrate needs at least 8x8"),
        (np.zeros((3, 64, 4)), {}, ValueError, "64x4 pixels"),
        (
            np.zeros((32, 32)),
            {"bins": 0},
            ValueError,
            r"bins must be an integer >= 2 \(intensity bins\), got 0",
        ),
        (np.zeros((32, 32)), {"bins": 1}, ValueError, "bins must be an integer >= 2"),
        (np.zeros((32, 32)), {"bins": 4.5}, ValueError, "bins must be an integer >= 2"),
        (np.zeros((32, 32)), {"bins": True}, ValueError, "bins must be an integer >= 2"),
        (np.zeros((32, 32)), {"per_plane": "yes"}, ValueError, "per_plane must be True or False"),
        (np.zeros((32, 32)), {"channel_axis": 0}, ValueError, ">= 3 dimensions"),
        (np.zeros((3, 32, 32)), {"channel_axis": 3}, ValueError, r"channel_axis .* got 3"),
        (np.zeros((3, 32, 32)), {"channel_axis": True}, ValueError, "channel_axis"),
        (np.zeros((3, 32, 32)), {"channel_axis": 0.0}, ValueError, "channel_axis"),
    ],
)
def test_calibrate_input_errors_name_the_argument(image, kw, exc, match):
    with pytest.raises(exc, match=match):
        calibrate(image, **kw)


def test_calibrate_noiseless_image_warns_and_returns_zero():
    with pytest.warns(UserWarning, match="no measurable noise"):
        m = calibrate(np.full((64, 64), 7.0))
    assert m.a == 0.0 and m.b == 0.0 and m.kind == "awgn" and m.std_at_mean == 0.0
    with pytest.warns(UserWarning, match="no measurable noise"):
        calibrate(np.tile([0.0, 1.0], (64, 32)))  # stripes along an axis are signal


def test_calibrate_never_returns_nan_or_a_silent_zero():
    """Odd but valid inputs: a result that is finite and > 0, without warnings."""
    rng = np.random.default_rng(11)
    cases = [
        rng.poisson(0.05, (256, 256)),  # 0.05 photons per pixel: most pixels 0
        rng.integers(0, 2, (64, 64)),  # binary-valued counts
        np.clip(rng.normal(240, 30, (128, 128)), 0, 255).astype(np.uint8),  # saturated
        1e6 + rng.standard_normal((64, 64)),  # a huge offset
        rng.standard_normal((8, 8)),  # the smallest accepted plane
        rng.standard_normal((8, 300)),
        rng.standard_normal((64, 64)).astype(np.float16),
    ]
    for x in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m = calibrate(x)
        assert math.isfinite(m.a) and math.isfinite(m.b) and m.a >= 0
        assert math.isfinite(m.std_at_mean) and m.std_at_mean > 0
        assert np.isfinite(m.correlation).all()
    assert calibrate(cases[0]).std_at_mean == pytest.approx(math.sqrt(0.05), rel=0.1)
    assert calibrate(cases[3]).std_at_mean == pytest.approx(1.0, rel=0.1)


def test_calibrate_variance_is_positive_over_the_data_range(content):
    """An offset camera (b < 0): the fitted variance is >= 0 at the darkest tiles, and
    var_at is floored (never <= 0) below that."""
    x, _, _ = _case("16bit", content["cell"], seed=12)
    m = calibrate(x)
    assert m.b < 0 and m.a * float(x.min()) + m.b > -0.05 * m.var_at(m.mean)
    assert m.var_at(0.0) > 0 and m.std_at(np.array([0.0, 50.0])).min() > 0


# ---------------------------------------------------------------- the model object


def test_noise_model_is_frozen_and_serialisable(content):
    x, _, _ = _case("corr box2 pg", content["cell"], seed=13)
    m = calibrate(x)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.a = 1.0
    with pytest.raises(ValueError, match="read-only"):
        m.correlation[0, 0] = 2.0
    d = m.as_dict()
    json.dumps(d)
    assert d["model"] == m.kind and d["a"] == m.a and d["correlation_length"] == 1
    assert d["rho_y"] == m.rho[0] and len(d["bins"]) >= 2
    assert m.correlation.shape == (5, 5) and m.correlation[2, 2] == 1.0
    assert m.correlation == pytest.approx(m.correlation[::-1, ::-1])  # symmetric
    assert m.std_at(np.array([10.0, 20.0])).shape == (2,)
    assert isinstance(m.std_at(10.0), float)
    with pytest.raises(ValueError, match="scale > 0"):
        m.normalised(0.0, 0.0)


def test_noise_std_map_takes_a_noise_model():
    x = torch.rand(1, 1, 16, 16)
    pg = NoiseModel(0.02, 1e-3, "poisson-gaussian", 0.5, np.eye(5))
    torch.testing.assert_close(noise_std_map(x, pg), noise_std_map(x, (0.02, 1e-3)))
    awgn = NoiseModel(0.0, 0.01, "awgn", 0.5, np.eye(5))
    torch.testing.assert_close(noise_std_map(x, awgn), noise_std_map(x, 0.1))
