"""Noise models and their estimation from a single image.

Two models: additive white Gaussian noise (AWGN) with standard deviation ``sigma``, and
Poisson-Gaussian noise with variance ``a * x + b`` (photon shot noise plus read noise,
the usual model for fluorescence microscopy and camera raw data).

Estimation uses the finest diagonal Haar detail coefficient of 2x2 blocks,
``HH = (x00 - x01 - x10 + x11) / 2``, which for smooth signal is pure noise with the
noise's standard deviation; natural images' edges make it heavy-tailed, hence robust
statistics (median absolute deviation, Donoho & Johnstone 1994). For Poisson-Gaussian
noise the blocks are binned by local intensity and ``a, b`` fitted to the per-bin robust
variances by weighted least squares (in the spirit of Foi et al. 2008).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["estimate_awgn", "estimate_poisson_gaussian", "noise_std_map"]

_MAD_TO_STD = 1.4826  # 1 / Phi^-1(3/4)
_STD_FLOOR = 1e-6


def _haar_hh(x: torch.Tensor) -> torch.Tensor:
    """Diagonal Haar details of 2x2 blocks: ``(..., H//2, W//2)``."""
    H, W = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :H, :W]
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2


def _as_tensor(image) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    if t.ndim < 2:
        raise ValueError(f"need an image with at least 2 dimensions, got shape {tuple(t.shape)}.")
    if min(t.shape[-2:]) < 2:
        raise ValueError(f"need at least 2x2 pixels to estimate noise, got {tuple(t.shape)}.")
    return t.to(torch.float64)


def estimate_awgn(image) -> float:
    """Robust estimate of the standard deviation of additive white Gaussian noise.

    Parameters
    ----------
    image : array_like or torch.Tensor
        ``(..., H, W)``; all leading planes are pooled.

    Returns
    -------
    float
        ``1.4826 * median(|HH|)`` over all 2x2 blocks, in the units of ``image``.
    """
    hh = _haar_hh(_as_tensor(image))
    return float(_MAD_TO_STD * hh.abs().median())


def estimate_poisson_gaussian(image, *, bins: int = 16) -> tuple[float, float]:
    """Estimate ``(a, b)`` of Poisson-Gaussian noise with variance ``a * x + b``.

    The image is cut into 2x2 blocks; each block's mean (smoothed over 3x3 blocks)
    bins it by intensity, its diagonal Haar detail measures noise. Per bin the robust
    variance ``(1.4826 * MAD)^2`` is computed and ``a, b`` fitted by least squares
    weighted by bin counts. ``a`` is clipped at 0 and ``b`` at ``-a * min(x)`` so the
    variance stays non-negative over the image's range.

    Returns
    -------
    (float, float)
        ``a`` (in image units) and ``b`` (image units squared).
    """
    x = _as_tensor(image)
    x = x.reshape(-1, 1, *x.shape[-2:])
    hh = _haar_hh(x)  # (N, 1, H/2, W/2)
    H, W = hh.shape[-2] * 2, hh.shape[-1] * 2
    mean = F.avg_pool2d(x[..., :H, :W], 2)
    if min(mean.shape[-2:]) >= 3:
        mean = F.avg_pool2d(F.pad(mean, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    m, d = mean.flatten().numpy(), hh.flatten().numpy()
    lo, hi = np.quantile(m, [0.005, 0.995])
    if not hi > lo:
        s = float(_MAD_TO_STD * np.median(np.abs(d)))
        return 0.0, s * s
    edges = np.linspace(lo, hi, bins + 1)
    idx = np.clip(np.digitize(m, edges) - 1, 0, bins - 1)
    xs, vs, ws = [], [], []
    for k in range(bins):
        sel = idx == k
        n = int(sel.sum())
        if n < 50:
            continue
        xs.append(m[sel].mean())
        vs.append((_MAD_TO_STD * np.median(np.abs(d[sel]))) ** 2)
        ws.append(n)
    if len(xs) < 2:
        s = float(_MAD_TO_STD * np.median(np.abs(d)))
        return 0.0, s * s
    xs, vs, ws = map(np.asarray, (xs, vs, ws))
    A = np.stack([xs, np.ones_like(xs)], 1) * np.sqrt(ws)[:, None]
    a, b = (float(v) for v in np.linalg.lstsq(A, vs * np.sqrt(ws), rcond=None)[0])
    if a <= 0:  # no signal dependence: the variance is the (count-weighted) mean level
        return 0.0, float(np.average(vs, weights=ws))
    return a, max(b, -a * float(lo))


def noise_std_map(x: torch.Tensor, noise) -> torch.Tensor:
    """Per-pixel noise standard deviation for ``x`` ``(B, 1, H, W)``.

    Parameters
    ----------
    x : torch.Tensor
        The noisy image.
    noise : float, (float, float) or torch.Tensor
        AWGN sigma, Poisson-Gaussian ``(a, b)`` (the signal is taken as the noisy image
        smoothed by a 5x5 box, so the map itself is not noisy), or a ready map
        broadcastable to ``x``.

    Returns
    -------
    torch.Tensor
        ``(B, 1, 1, 1)`` for AWGN, ``(B, 1, H, W)`` otherwise; at least 1e-6.
    """
    if isinstance(noise, torch.Tensor):
        if not bool(torch.isfinite(noise).all()) or bool((noise < 0).any()):
            raise ValueError("a noise std map must be finite and >= 0.")
        try:
            torch.broadcast_shapes(noise.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"noise std map of shape {tuple(noise.shape)} does not broadcast to the "
                f"image's {tuple(x.shape)}."
            ) from None
        return noise.to(x).clamp_min(_STD_FLOOR)
    if isinstance(noise, tuple | list):
        if len(noise) != 2:
            raise ValueError(f"Poisson-Gaussian noise is a pair (a, b), got {noise!r}.")
        a, b = (float(v) for v in noise)
        if not (np.isfinite(a) and np.isfinite(b)) or a < 0:
            raise ValueError(f"Poisson-Gaussian (a, b) needs finite a >= 0, got {noise!r}.")
        pad = min(2, min(x.shape[-2:]) - 1)
        smooth = x
        if pad > 0:
            mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
            smooth = F.avg_pool2d(F.pad(x, (pad,) * 4, mode=mode), 2 * pad + 1, stride=1)
        return (a * smooth + b).clamp_min(_STD_FLOOR**2).sqrt()
    s = float(noise)
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"the noise sigma must be a finite number >= 0, got {noise!r}.")
    return torch.full((x.shape[0], 1, 1, 1), max(s, _STD_FLOOR), dtype=x.dtype, device=x.device)
