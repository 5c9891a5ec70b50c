"""Synthetic fluorescence images: training content that looks like a microscope's.

Photographs (BSDS) teach a denoiser that fine texture is everywhere; a fluorescence
image is mostly dark background, smooth cytoplasm and thin bright structures
(filaments, vesicles, organelles) seen through the microscope's optics, i.e. blurred by
its PSF. A model trained on photographs alone under-smooths such images (on W2S
frame 009_1 the shipped Gaussian model's median sigma was 1.4 px; the best single sigma
per W2S image has a median of 2.2 px). :func:`fluorescence` draws random images of that kind; with
``TrainConfig.synthetic`` a fraction of the training batches comes from it. No real
microscopy image is used for training.

Each image is a sum of

* cells: smooth random masks (thresholded low-pass noise with soft edges) filled with a
  dim, slowly varying cytoplasm;
* filaments: worm-like curves (a random walk of the direction; curvature, length and
  brightness drawn per curve), mostly inside the cells, some in bundles;
* spots: Gaussian puncta of radius 0.5-3 px;

blurred by a Gaussian PSF (sigma drawn from ``psf_sigma``), scaled to a random peak in
[0.25, 1] over a random dark offset. Values stay in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

__all__ = ["fluorescence"]


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter(np.asarray(a, np.float32), sigma, mode="reflect", truncate=3.0)


def _cells(rng: np.random.Generator, n: int) -> np.ndarray:
    """Smooth masks in [0, 1] with soft edges: where the cells are."""
    scale = rng.uniform(n / 8, n / 3)
    field = _blur(rng.standard_normal((n, n)), scale)
    field = (field - field.mean()) / (field.std() + 1e-8)
    level = rng.uniform(-1.0, 0.8)  # from mostly cell to mostly background
    return 1.0 / (1.0 + np.exp(np.clip(-(field - level) * rng.uniform(4.0, 20.0), -50, 50)))


def _splat(img: np.ndarray, y: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """Add weights ``w`` at sub-pixel points (bilinear), ignoring points outside."""
    n = img.shape[0]
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = y - y0, x - x0
    for dy, dx, k in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < n) & (xx >= 0) & (xx < n)
        np.add.at(img, (yy[ok], xx[ok]), (w * k)[ok])


def _filaments(rng: np.random.Generator, n: int, cells: np.ndarray) -> np.ndarray:
    img = np.zeros((n, n), np.float32)
    count = int(rng.integers(0, 1 + int(rng.choice([8, 40, 160]) * (n / 128) ** 2)))
    if count == 0:
        return img
    step = 0.5
    # starting points mostly inside the cells
    inside = np.flatnonzero(cells.ravel() > 0.5)
    pool = inside if inside.size and rng.uniform() < 0.8 else np.arange(n * n)
    start = rng.choice(pool, count)
    sy, sx = start // n + rng.uniform(0, 1, count), start % n + rng.uniform(0, 1, count)
    bundle = rng.uniform() < 0.3  # a preferred direction (stress fibres, bundles)
    theta0 = rng.uniform(0, 2 * math.pi) + (
        rng.normal(0, 0.3, count) if bundle else rng.uniform(0, 2 * math.pi, count)
    )
    length = rng.uniform(4, 1.5 * n, count)
    kappa = np.exp(rng.uniform(np.log(0.005), np.log(0.25), count))  # direction noise per step
    bright = rng.uniform(0.2, 1.0, count)
    steps = int(length.max() / step) + 1
    turn = rng.normal(0, 1, (count, steps)) * kappa[:, None]
    theta = theta0[:, None] + np.cumsum(turn, axis=1)
    y = sy[:, None] + np.cumsum(step * np.sin(theta), axis=1)
    x = sx[:, None] + np.cumsum(step * np.cos(theta), axis=1)
    live = np.arange(steps)[None, :] * step < length[:, None]
    w = np.broadcast_to((bright * step)[:, None], live.shape)
    _splat(img, y[live], x[live], w[live])
    if rng.uniform() < 0.4:  # thick tubes (mitochondria-like)
        img = _blur(img, rng.uniform(0.6, 1.5)) * 2.0
    return img


def _spots(rng: np.random.Generator, n: int) -> np.ndarray:
    img = np.zeros((n, n), np.float32)
    count = int(rng.integers(0, 1 + int(rng.choice([5, 30, 120]) * (n / 128) ** 2)))
    if count == 0:
        return img
    y, x = rng.uniform(0, n, count), rng.uniform(0, n, count)
    _splat(img, y, x, rng.uniform(0.3, 1.0, count))
    return _blur(img, rng.uniform(0.5, 3.0)) * rng.uniform(3.0, 12.0)


def fluorescence(
    rng: np.random.Generator, count: int, size: int, *, psf_sigma=(0.8, 2.5)
) -> torch.Tensor:
    """``count`` random fluorescence-like images ``(count, 1, size, size)`` in [0, 1].

    Parameters
    ----------
    rng : numpy.random.Generator
        All randomness comes from it (equal seeds, equal images).
    count, size : int
        Number of images and their side in pixels.
    psf_sigma : (float, float)
        Range of the Gaussian PSF's sigma (px) the objects are blurred by.

    Examples
    --------
    >>> import numpy as np
    >>> x = fluorescence(np.random.default_rng(0), 2, 64)
    >>> tuple(x.shape), float(x.min()) >= 0, float(x.max()) <= 1
    ((2, 1, 64, 64), True, True)
    """
    if count < 1 or size < 8:
        raise ValueError(f"count must be >= 1 and size >= 8, got count={count!r}, size={size!r}.")
    margin = 12
    n = size + 2 * margin
    out = np.empty((count, 1, size, size), np.float32)
    for k in range(count):
        cells = _cells(rng, n)
        # a dim cytoplasm whose brightness varies slowly across the cell
        cyto = (
            cells * rng.uniform(0.0, 0.35) * (1 + 5.0 * _blur(rng.standard_normal((n, n)), n / 10))
        )
        obj = np.clip(cyto, 0, None) + _filaments(rng, n, cells) + _spots(rng, n)
        img = _blur(obj, float(rng.uniform(*psf_sigma)))[margin:-margin, margin:-margin]
        top = float(np.percentile(img, 99.9)) + 1e-6
        peak, offset = rng.uniform(0.25, 1.0), rng.uniform(0.0, 0.08)
        out[k, 0] = np.clip(offset + img / top * (peak - offset), 0.0, 1.0)
    return torch.from_numpy(out)


def _preview(path: str, n: int = 8, size: int = 128, seed: int = 0) -> None:  # pragma: no cover
    """Write a strip of ``n`` images to ``path`` (a look at what training sees)."""
    from skimage.io import imsave

    x = fluorescence(np.random.default_rng(seed), n, size)[:, 0]
    imsave(path, (np.concatenate(list(x.numpy()), axis=1) * 255).astype(np.uint8))
