"""Classical denoising baselines for real (Poisson-Gaussian) noise, on numpy images.

* :func:`noise_model`: the calibrated Poisson-Gaussian model ``var = a * x + b`` of an
  image (the one place that says which estimator of :mod:`pkn.noise` the benchmarks use);
* :func:`gat_forward` / :func:`gat_inverse`: the generalized Anscombe transform (Starck,
  Murtagh & Bijaoui 1998) and the closed-form approximation of its exact unbiased inverse
  (Makitalo & Foi, IEEE TIP 20(9) 2011, for Poisson; IEEE TIP 22(1) 2013, "Optimal
  inversion of the generalized Anscombe transformation for Poisson-Gaussian noise");
* :func:`gat_bm3d` and :func:`gat_nlm`: GAT -> a Gaussian denoiser with unit noise std
  (``bm3d.bm3d``, or scikit-image's fast non-local means) -> exact unbiased inverse;
* :func:`gaussian_best`: the Gaussian blur whose sigma maximises the affine-fit PSNR
  against the clean image (knows the clean image);
* :func:`affine_psnr`: the PSNR after the least-squares fit ``clean ~ alpha * y + beta``
  in closed form (the same number as :func:`pkn.metrics.affine_metrics`, without SSIM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GAT_MIN",
    "NLM_SETTINGS",
    "NoiseParams",
    "affine_psnr",
    "gat_bm3d",
    "gat_forward",
    "gat_inverse",
    "gat_nlm",
    "gaussian_best",
    "gaussian_blur",
    "noise_model",
]

#: 2 sqrt(3/8): the transform of a zero Poisson count; below it the unbiased inverse is 0.
GAT_MIN = 2.0 * math.sqrt(3.0 / 8.0)
#: scikit-image's recommendation for fast-mode NLM with a known noise std ``sigma`` (its
#: gallery "Non-local means denoising for preserving textures"): h = 0.8 * sigma,
#: 5x5 patches, 13x13 search window (distance 6). In the GAT domain sigma is 1.
NLM_SETTINGS = {"patch_size": 5, "patch_distance": 6, "h": 0.8, "sigma": 1.0, "fast_mode": True}


# --------------------------------------------------------------------------- noise model
@dataclass(frozen=True)
class NoiseParams:
    """``var = a * x + b`` in the image's units and the estimator that gave it."""

    a: float
    b: float
    source: str


def noise_model(noisy: np.ndarray) -> NoiseParams:
    """The calibrated Poisson-Gaussian noise model of ``noisy`` (2-D, its own units).

    :func:`pkn.noise.calibrate` when the library has it, else
    :func:`pkn.noise.estimate_poisson_gaussian`; ``source`` names which, and goes into
    the cache keys of the methods that use the model.
    """
    from pkn import noise

    if hasattr(noise, "calibrate"):
        m = noise.calibrate(noisy)
        return NoiseParams(float(m.a), float(m.b), "calibrate")
    a, b = noise.estimate_poisson_gaussian(noisy)
    return NoiseParams(float(a), float(b), "estimate_poisson_gaussian")


def noise_source() -> str:
    """The ``source`` :func:`noise_model` reports, without estimating anything."""
    from pkn import noise

    return "calibrate" if hasattr(noise, "calibrate") else "estimate_poisson_gaussian"


# --------------------------------------------------------------------------- GAT
def _var_floor(a: float, b: float) -> float:
    """Smallest Gaussian variance used when the model has no signal dependence."""
    return max(b, 1e-12)


def gat_forward(z: np.ndarray, a: float, b: float) -> np.ndarray:
    """Generalized Anscombe transform for ``var(z) = a * E[z] + b``.

    ``f(z) = (2 / a) sqrt(max(a z + 3/8 a^2 + b, 0))``: with ``z = a * Poisson(p) + mu +
    N(0, s^2)`` (so ``b = s^2 - a mu``) this is Starck-Murtagh-Bijaoui's transform of
    ``(z - mu) / a`` with ``sigma = s / a``, and ``f(z)`` has about unit variance. When
    ``a <= 0`` the noise is Gaussian and ``f(z) = z / sqrt(b)``.
    """
    z = np.asarray(z, np.float64)
    if a <= 0:
        return z / math.sqrt(_var_floor(a, b))
    return (2.0 / a) * np.sqrt(np.maximum(a * z + 0.375 * a * a + b, 0.0))


def gat_inverse(d: np.ndarray, a: float, b: float) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse of :func:`gat_forward`.

    Makitalo & Foi (2011) approximate the exact unbiased inverse of the Anscombe
    transform by ``I(D) = D^2/4 + sqrt(3/2)/4 D^-1 - 11/8 D^-2 + 5/8 sqrt(3/2) D^-3 - 1/8``
    (0 below ``D = 2 sqrt(3/8)``, where I is 0 too); for Poisson-Gaussian noise (2013) the
    normalised intensity is ``max(I(D) - sigma^2, 0)``, then scaled by ``a`` and shifted
    by the offset ``mu``. The model ``a x + b`` fixes only ``b = s^2 - a mu``; the split
    taken here is ``s^2 = max(b, 0)``, ``mu = max(-b, 0) / a`` (no offset unless the
    variance needs one), which changes only where the result is clipped:
    ``x = max(a I(D) - b / a, max(-b, 0) / a)``.
    """
    d = np.asarray(d, np.float64)
    if a <= 0:
        return d * math.sqrt(_var_floor(a, b))
    dd = np.maximum(d, GAT_MIN)
    r = math.sqrt(1.5)
    i = dd * dd / 4 + r / 4 / dd - 11 / 8 / dd**2 + 5 / 8 * r / dd**3 - 1 / 8
    i = np.where(d < GAT_MIN, 0.0, i)
    return np.maximum(a * i - b / a, max(-b, 0.0) / a)


def gat_bm3d(noisy: np.ndarray, model: NoiseParams | None = None, threads: int = 0) -> np.ndarray:
    """GAT -> ``bm3d.bm3d(f, sigma_psd=1)`` (both stages, default profile) -> inverse.

    ``threads``: the profile's ``num_threads`` (0: the library's default, every core; the
    benchmarks pass their ``--threads`` so that BM3D and PKN are timed on as many)."""
    import bm3d

    m = model or noise_model(noisy)
    f = gat_forward(noisy, m.a, m.b)
    profile = bm3d.BM3DProfile()
    profile.num_threads = int(threads)
    d = np.asarray(bm3d.bm3d(f, sigma_psd=1.0, profile=profile), np.float64).reshape(f.shape)
    return gat_inverse(d, m.a, m.b).astype(np.float32)


def gat_nlm(noisy: np.ndarray, model: NoiseParams | None = None) -> np.ndarray:
    """GAT -> ``skimage.restoration.denoise_nl_means(f, **NLM_SETTINGS)`` -> inverse."""
    from skimage.restoration import denoise_nl_means

    m = model or noise_model(noisy)
    f = gat_forward(noisy, m.a, m.b)
    d = denoise_nl_means(f, **NLM_SETTINGS)
    return gat_inverse(d, m.a, m.b).astype(np.float32)


# --------------------------------------------------------------------------- Gaussian
def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """``skimage.filters.gaussian`` (mirrored borders, truncated at 4 sigma), float64."""
    from skimage.filters import gaussian

    return gaussian(np.asarray(x, np.float64), sigma=sigma, mode="reflect", truncate=4.0)


def affine_psnr(y: np.ndarray, clean: np.ndarray) -> float:
    """PSNR (dB) of the least-squares fit ``alpha * y + beta`` to ``clean``, with the
    clean image's data range (as :func:`pkn.metrics.affine_metrics`)."""
    y = np.asarray(y, np.float64).ravel()
    c = np.asarray(clean, np.float64).ravel()
    yc, cc = y - y.mean(), c - c.mean()
    vy, cov, vc = float(yc @ yc), float(yc @ cc), float(cc @ cc)
    sse = vc - cov * cov / vy if vy > 0 else vc
    mse = max(sse, 0.0) / c.size
    rng = float(c.max() - c.min()) or 1.0
    return math.inf if mse <= 0 else 10.0 * math.log10(rng * rng / mse)


def gaussian_best(
    noisy: np.ndarray,
    clean: np.ndarray,
    lo: float = 0.3,
    hi: float = 4.0,
    *,
    grid: int = 12,
    tol: float = 0.01,
) -> tuple[np.ndarray, float]:
    """The Gaussian blur of ``noisy`` with the best affine-fit PSNR against ``clean``.

    A grid of ``grid`` sigmas, log-spaced over ``[lo, hi]`` px, brackets the best; a
    golden-section search inside the bracket then narrows it to ``tol`` px. Returns the
    blurred image (float32) and its sigma.
    """
    cache: dict[float, float] = {}

    def score(s: float) -> float:
        if s not in cache:
            cache[s] = affine_psnr(gaussian_blur(noisy, s), clean)
        return cache[s]

    sig = np.geomspace(lo, hi, grid)
    i = int(np.argmax([score(float(s)) for s in sig]))
    left, right = float(sig[max(i - 1, 0)]), float(sig[min(i + 1, grid - 1)])
    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = right - g * (right - left), left + g * (right - left)
    while right - left > tol:
        if score(c) >= score(d):
            right, d = d, c
            c = right - g * (right - left)
        else:
            left, c = c, d
            d = left + g * (right - left)
    best = max(cache, key=cache.get)
    return gaussian_blur(noisy, best).astype(np.float32), float(best)
