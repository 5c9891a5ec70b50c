"""Synthetic degradations for training and benchmarks.

Each function takes clean images ``(B, 1, H, W)`` in [0, 1] and a numpy Generator and
returns a :class:`Degraded`: the network input, what the filter needs to know (noise std
map, blur, scale) and the clean target. Noise is never clipped (as in the paper).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..noise import noise_std_map

__all__ = [
    "Degraded",
    "add_awgn",
    "add_poisson_gaussian",
    "band_limit",
    "blur_and_noise",
    "convolve",
    "correlated_noise",
    "downscale",
    "gaussian_psf",
    "levin_kernels",
    "levin_path",
]


@dataclass
class Degraded:
    """A degraded batch: ``x`` (input), ``noise_std`` (map or per-image), ``target``,
    per-sample filter options (``blur``: a PSF tensor; ``size``: output size), an
    optional ``guide`` for guided networks and, for denoising, ``colour``: all noisy
    channels of each sample's image ``(B, K, H, W)`` (joint NLM distances), and
    ``correlation``: the noise's correlation coefficients ``(B, 5, 5)`` at lags -2..2
    (None: white)."""

    x: torch.Tensor
    noise_std: torch.Tensor
    target: torch.Tensor
    options: list[dict] = field(default_factory=list)
    guide: torch.Tensor | None = None
    colour: torch.Tensor | None = None
    correlation: torch.Tensor | None = None


def _white_correlation(B: int) -> torch.Tensor:
    c = torch.zeros(B, 5, 5)
    c[:, 2, 2] = 1.0
    return c


def _random_noise_kernel(rng: np.random.Generator) -> torch.Tensor:
    """A small random kernel of the kind binning, demosaicking and camera processing
    apply to noise: an (anisotropic, tilted) Gaussian, a 2x2 box (binning), or random
    positive 3x3 weights; normalised to unit L2 norm (the marginal variance is kept)."""
    kind = rng.integers(3)
    if kind == 0:
        sy, sx = rng.uniform(0.35, 1.2, 2)
        k = gaussian_psf(float(sy), float(sx), float(rng.uniform(-0.5, 0.5)))
    elif kind == 1:
        k = torch.ones(2, 2)
    else:
        k = torch.from_numpy(rng.uniform(0.0, 1.0, (3, 3)).astype(np.float32))
        k[1, 1] += float(rng.uniform(0.0, 2.0))
    return (k / k.square().sum().sqrt()).float()


def _kernel_correlation(k: torch.Tensor) -> torch.Tensor:
    """Correlation coefficients ``(5, 5)`` at lags -2..2 of white noise filtered by ``k``
    (its normalised autocorrelation)."""
    kh, kw = k.shape
    ac = F.conv2d(
        F.pad(k.double()[None, None], (kw - 1, kw - 1, kh - 1, kh - 1)), k.double()[None, None]
    )[0, 0]  # (2kh-1, 2kw-1), lag 0 at the centre
    ac = ac / ac[kh - 1, kw - 1]
    out = torch.zeros(5, 5, dtype=torch.float64)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            if abs(dy) < kh and abs(dx) < kw:
                out[dy + 2, dx + 2] = ac[kh - 1 + dy, kw - 1 + dx]
    return out.float()


def correlated_noise(
    shape, rng: np.random.Generator, p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-variance Gaussian noise ``shape = (B, C, H, W)``, spatially correlated for a
    fraction ``p`` of the samples (each filtered by :func:`_random_noise_kernel`, the same
    kernel for all of a sample's channels, mirrored borders), white for the others.

    Returns
    -------
    (noise, correlation)
        The noise and each sample's exact correlation coefficients ``(B, 5, 5)``.
    """
    B = shape[0]
    corr = _white_correlation(B)
    corr_on = rng.uniform(size=B) < p
    kernels = [_random_noise_kernel(rng) if on else None for on in corr_on]
    noise = _randn(rng, shape)
    for i, k in enumerate(kernels):
        if k is None:
            continue
        kh, kw = k.shape
        big = (1, shape[1], shape[2] + kh - 1, shape[3] + kw - 1)
        n = _randn(rng, big)  # independent noise, valid convolution: no border bias
        noise[i] = F.conv2d(n.transpose(0, 1), k[None, None])[:, 0]
        corr[i] = _kernel_correlation(k)
    return noise, corr


def _randn(rng: np.random.Generator, shape) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))


def add_awgn(
    clean: torch.Tensor, rng: np.random.Generator, sigma=(0.05, 0.1), p_corr: float = 0.0
) -> Degraded:
    """Additive Gaussian noise, ``sigma`` a number or a ``(low, high)`` uniform range
    drawn per image; white, or spatially correlated for a fraction ``p_corr`` of the
    images (:func:`correlated_noise`; ``sigma`` is then the marginal std)."""
    B = clean.shape[0]
    lo, hi = (sigma, sigma) if np.isscalar(sigma) else sigma
    s = torch.from_numpy(rng.uniform(lo, hi, B).astype(np.float32)).to(clean).view(B, 1, 1, 1)
    if p_corr <= 0:  # the white-noise stream as before (seeded runs reproduce)
        noisy = clean + s * _randn(rng, clean.shape).to(clean)
        return Degraded(noisy, s, clean)
    n, corr = correlated_noise(tuple(clean.shape), rng, p_corr)
    return Degraded(clean + s * n.to(clean), s, clean, correlation=corr)


def add_poisson_gaussian(
    clean: torch.Tensor,
    rng: np.random.Generator,
    a=(0.001, 0.05),
    b=(1e-5, 4e-3),
    p_corr: float = 0.0,
) -> Degraded:
    """Poisson-Gaussian noise: ``y = a * Poisson(x / a) + N(0, b)`` with ``a``, ``b`` drawn
    log-uniformly per image; the noise std map is ``sqrt(a * smooth(y) + b)`` as at
    inference time (where the clean signal is unknown). With ``p_corr > 0`` that fraction
    of the images gets the Gaussian approximation ``x + sqrt(a x + b) n`` with spatially
    correlated unit noise ``n`` (:func:`correlated_noise`) instead."""
    B = clean.shape[0]
    aa = np.exp(rng.uniform(np.log(a[0]), np.log(a[1]), B))
    bb = np.exp(rng.uniform(np.log(b[0]), np.log(b[1]), B))
    lam = clean.clamp_min(0).double().numpy() / aa[:, None, None, None]
    shot = rng.poisson(lam) * aa[:, None, None, None]
    noisy = torch.from_numpy(shot.astype(np.float32)).to(clean)
    noisy = noisy + torch.from_numpy(np.sqrt(bb).astype(np.float32)).view(B, 1, 1, 1) * _randn(
        rng, clean.shape
    )
    corr = None
    if p_corr > 0:
        n, corr = correlated_noise(tuple(clean.shape), rng, p_corr)
        on = (corr[:, 2, 3].abs() + corr[:, 3, 2].abs() + corr[:, 3, 3].abs()) > 0
        std = (
            torch.from_numpy(aa).float().view(B, 1, 1, 1) * clean.clamp_min(0)
            + torch.from_numpy(bb).float().view(B, 1, 1, 1)
        ).sqrt()
        noisy = torch.where(on.view(B, 1, 1, 1), clean + std * n.to(clean), noisy)
    maps = torch.cat([noise_std_map(noisy[i : i + 1], (aa[i], bb[i])) for i in range(B)])
    return Degraded(noisy, maps, clean, correlation=corr)


def gaussian_psf(sigma_y: float, sigma_x: float | None = None, rho: float = 0.0) -> torch.Tensor:
    """Normalised (anisotropic) Gaussian PSF of radius ``ceil(3 max sigma)``: ``(k, k)``."""
    sigma_x = sigma_y if sigma_x is None else sigma_x
    r = max(1, math.ceil(3 * max(sigma_y, sigma_x)))
    d = torch.arange(-r, r + 1, dtype=torch.float64)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    q = (dx / sigma_x) ** 2 - 2 * rho * (dx / sigma_x) * (dy / sigma_y) + (dy / sigma_y) ** 2
    k = torch.exp(-0.5 * q / (1 - rho * rho))
    return (k / k.sum()).float()


LEVIN_FILE = "psf/levin09_blur_kernels.npz"  # under the data root ($PKN_DATA)


def levin_path(path: str | os.PathLike | None = None) -> Path:
    """The Levin kernels' file: ``path``, else ``$PKN_DATA/psf/levin09_blur_kernels.npz``.

    Raises
    ------
    FileNotFoundError
        When neither is given (the message names both) or the file does not exist.
    """
    from .data import DATA_ENV, data_root

    if path:
        path = Path(path).expanduser()
    elif (root := data_root()) is not None:
        path = root / LEVIN_FILE
    else:
        raise FileNotFoundError(
            f"no Levin kernels: pass --levin-file FILE or set {DATA_ENV} to the data root "
            f"(kernels in ${DATA_ENV}/{LEVIN_FILE})."
        )
    if not path.is_file():
        raise FileNotFoundError(f"Levin kernels not found at {path}.")
    return path


def levin_kernels(path: str | os.PathLike | None = None) -> list[torch.Tensor]:
    """The 8 Levin et al. (2009) camera-shake kernels from an ``.npz`` file (see
    :func:`levin_path` for where it is looked for), each normalised to sum 1."""
    z = np.load(levin_path(path))
    return [torch.from_numpy(z[k].astype(np.float32) / z[k].sum()) for k in sorted(z.files)]


def convolve(x: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """True convolution of ``(B, C, H, W)`` with a ``(kh, kw)`` PSF, mirrored borders, same
    size (the PSF's centre is ``(kh // 2, kw // 2)``)."""
    kh, kw = psf.shape
    B, C, H, W = x.shape
    xp = F.pad(
        x.reshape(B * C, 1, H, W), (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2), mode="reflect"
    )
    return F.conv2d(xp, psf.flip(0, 1)[None, None].to(x)).reshape(B, C, H, W)


def band_limit(
    clean: torch.Tensor, rng: np.random.Generator, p: float, sigma=(1.0, 3.0)
) -> torch.Tensor:
    """Blur a fraction ``p`` of the clean images ``(B, C, H, W)`` by a Gaussian of sigma
    drawn uniformly from ``sigma`` (px): band-limited content, as a microscope's optics
    give (a widefield image is the object convolved with the PSF), so that a denoiser
    trained on photographs also sees targets without fine texture. The blurred image is
    the new clean image (the target): this is not a deblurring task."""
    out = clean.clone()
    for i in np.flatnonzero(rng.uniform(size=clean.shape[0]) < p):
        out[i : i + 1] = convolve(clean[i : i + 1], gaussian_psf(float(rng.uniform(*sigma))))
    return out


def blur_and_noise(
    clean: torch.Tensor,
    rng: np.random.Generator,
    sigma_blur=(1.0, 2.5),
    noise=(0.01, 0.05),
    psfs: list[torch.Tensor] | None = None,
    p_psf: float = 0.0,
) -> Degraded:
    """Blur each image with a Gaussian (sigma drawn from ``sigma_blur``) or, with
    probability ``p_psf``, one of ``psfs``; then add AWGN drawn from ``noise``. The PSF
    used is returned in ``options[i]["blur"]`` (the filter is told the true blur)."""
    outs, opts = [], []
    for i in range(clean.shape[0]):
        if psfs and rng.uniform() < p_psf:
            psf = psfs[rng.integers(len(psfs))]
        else:
            psf = gaussian_psf(float(rng.uniform(*sigma_blur)))
        outs.append(convolve(clean[i : i + 1], psf))
        opts.append({"blur": psf})
    d = add_awgn(torch.cat(outs), rng, noise)
    return Degraded(d.x, d.noise_std, clean, opts)


def downscale(clean: torch.Tensor, rng: np.random.Generator, scale: float, noise=0.0) -> Degraded:
    """Area-downscale by ``scale`` (antialiased bilinear) and optionally add AWGN; the
    target is ``clean`` cropped to a size the factor divides well."""
    H, W = clean.shape[-2:]
    h, w = max(1, round(H / scale)), max(1, round(W / scale))
    small = F.interpolate(clean, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    d = (
        add_awgn(small, rng, noise)
        if noise
        else Degraded(small, torch.full((clean.shape[0], 1, 1, 1), 1e-3), small)
    )
    return Degraded(d.x, d.noise_std, clean, [{"size": (H, W)}] * clean.shape[0])
