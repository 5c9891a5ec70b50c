"""Image quality metrics on numpy arrays: PSNR and SSIM, plain and after an affine fit.

PSNR and SSIM come from :mod:`skimage.metrics`; :func:`affine_metrics` first fits
``clean ~ alpha * y + beta`` (for data whose input and target were rescaled separately,
e.g. fluorescence microscopy pairs). Used by ``python -m pkn demo`` and the benchmarks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["affine_metrics", "metrics"]


def _ssim(y: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    from skimage.metrics import structural_similarity

    win = min(7, *ref.shape[:2])
    win -= 1 - win % 2  # odd
    return float(
        structural_similarity(
            ref.astype(np.float64),
            y.astype(np.float64),
            data_range=data_range,
            channel_axis=-1 if ref.ndim == 3 else None,
            win_size=win,
        )
    )


def metrics(y: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> dict:
    """PSNR (dB, over all pixels and channels) and SSIM (mean over channels) of ``y``.

    Uses :func:`skimage.metrics.peak_signal_noise_ratio` and
    :func:`skimage.metrics.structural_similarity` (7x7 uniform window, ``data_range``
    given) on the unclipped output, in float64.
    """
    from skimage.metrics import peak_signal_noise_ratio

    y64, r64 = y.astype(np.float64), ref.astype(np.float64)
    return {
        "psnr": float(peak_signal_noise_ratio(r64, y64, data_range=data_range)),
        "ssim": _ssim(y64, r64, data_range),
    }


def affine_metrics(y: np.ndarray, clean: np.ndarray) -> dict:
    """Metrics after the least-squares fit ``clean ~ alpha * y + beta``.

    ``alpha`` and ``beta`` minimise ``sum (alpha * y + beta - clean)^2`` over the image;
    PSNR and SSIM of ``alpha * y + beta`` then use the data range of the clean image
    (``clean.max() - clean.min()``). Returns ``psnr``, ``ssim``, ``alpha`` and ``beta``.
    """
    y64, c64 = y.astype(np.float64).ravel(), clean.astype(np.float64).ravel()
    A = np.stack([y64, np.ones_like(y64)], 1)
    alpha, beta = (float(v) for v in np.linalg.lstsq(A, c64, rcond=None)[0])
    fitted = (alpha * y.astype(np.float64) + beta).reshape(clean.shape)
    rng = float(clean.max() - clean.min()) or 1.0
    out = metrics(fitted, clean.astype(np.float64), data_range=rng)
    out.update(alpha=alpha, beta=beta)
    return out
