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
    "blur_and_noise",
    "convolve",
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
    channels of each sample's image ``(B, K, H, W)`` (joint NLM distances)."""

    x: torch.Tensor
    noise_std: torch.Tensor
    target: torch.Tensor
    options: list[dict] = field(default_factory=list)
    guide: torch.Tensor | None = None
    colour: torch.Tensor | None = None


def _randn(rng: np.random.Generator, shape) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))


def add_awgn(clean: torch.Tensor, rng: np.random.Generator, sigma=(0.05, 0.1)) -> Degraded:
    """Additive white Gaussian noise, ``sigma`` a number or a ``(low, high)`` uniform range
    drawn per image."""
    B = clean.shape[0]
    lo, hi = (sigma, sigma) if np.isscalar(sigma) else sigma
    s = torch.from_numpy(rng.uniform(lo, hi, B).astype(np.float32)).to(clean).view(B, 1, 1, 1)
    noisy = clean + s * _randn(rng, clean.shape).to(clean)
    return Degraded(noisy, s, clean)


def add_poisson_gaussian(
    clean: torch.Tensor,
    rng: np.random.Generator,
    a=(0.001, 0.05),
    b=(1e-5, 4e-3),
) -> Degraded:
    """Poisson-Gaussian noise: ``y = a * Poisson(x / a) + N(0, b)`` with ``a``, ``b`` drawn
    log-uniformly per image; the noise std map is ``sqrt(a * smooth(y) + b)`` as at
    inference time (where the clean signal is unknown)."""
    B = clean.shape[0]
    aa = np.exp(rng.uniform(np.log(a[0]), np.log(a[1]), B))
    bb = np.exp(rng.uniform(np.log(b[0]), np.log(b[1]), B))
    lam = clean.clamp_min(0).double().numpy() / aa[:, None, None, None]
    shot = rng.poisson(lam) * aa[:, None, None, None]
    noisy = torch.from_numpy(shot.astype(np.float32)).to(clean)
    noisy = noisy + torch.from_numpy(np.sqrt(bb).astype(np.float32)).view(B, 1, 1, 1) * _randn(
        rng, clean.shape
    )
    maps = torch.cat([noise_std_map(noisy[i : i + 1], (aa[i], bb[i])) for i in range(B)])
    return Degraded(noisy, maps, clean)


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
    xp = F.pad(x, (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2), mode="reflect")
    return F.conv2d(xp, psf.flip(0, 1)[None, None].to(x))


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
