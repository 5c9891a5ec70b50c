"""The input of :func:`pkn.restore`: validation, normalisation to the network's working
range (:func:`prepare`) and the noise model (:func:`estimate_noise`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .noise import calibrate, estimate_awgn, noise_std_map

__all__ = ["Prepared", "check_strength", "estimate_noise", "prepare"]

_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


def check_strength(strength) -> float:
    """``strength`` as a float if it is a finite real number >= 0 (numpy scalars included,
    ``bool`` refused), else a ValueError naming the value and what is accepted."""
    ok = isinstance(strength, int | float | np.integer | np.floating) and not isinstance(
        strength, bool | np.bool_
    )
    if not (ok and np.isfinite(strength) and strength >= 0):
        raise ValueError(
            f"strength must be a finite number >= 0 (1 = as trained, 0 = identity), got "
            f"{strength!r}."
        )
    return float(strength)


@dataclass
class Prepared:
    """Validated input: ``x`` ``(C, 1, H, W)`` float normalised to about [0, 1] by
    ``(x - offset) / scale``, plus what is needed to undo it."""

    x: torch.Tensor
    offset: float
    scale: float
    channel_axis: int | None
    ndim: int
    out_dtype: type


def prepare(image, channel_axis: int | None = None, *, device=None) -> Prepared:
    """Validate ``image`` and move it into the network's working range."""
    a = np.asarray(image)
    if a.dtype not in _DTYPES:
        raise TypeError(
            f"image dtype {a.dtype} is not supported; use uint8, uint16, float32 or float64."
        )
    if channel_axis is None and a.ndim != 2:
        raise ValueError(
            f"image has shape {a.shape}; a gray image is 2-D. For colour or multichannel "
            "images pass channel_axis (e.g. channel_axis=-1 for (H, W, 3))."
        )
    if channel_axis is not None:
        if a.ndim != 3:
            raise ValueError(f"with channel_axis the image must be 3-D, got shape {a.shape}.")
        if not -3 <= channel_axis < 3:
            raise ValueError(f"channel_axis {channel_axis} is out of range for a 3-D image.")
        channel_axis %= 3
        a = np.moveaxis(a, channel_axis, 0)
    else:
        a = a[None]
    if min(a.shape[-2:]) < 2:
        raise ValueError(f"image is {a.shape[-2]}x{a.shape[-1]} pixels; need at least 2x2.")
    if not np.isfinite(a).all():
        raise ValueError("image contains NaN or Inf values; replace them first.")
    out_dtype = np.float64 if a.dtype == np.float64 else np.float32
    work = a.astype(np.float64 if out_dtype is np.float64 else np.float32)
    # robust range from a regular subsample (at most ~1 M values): as good, much faster
    step = max(1, int(np.sqrt(work[0].size / 1e6)))
    lo, hi = (float(v) for v in np.percentile(work[:, ::step, ::step], [0.1, 99.9]))
    if not hi > lo:
        lo, hi = float(work.min()), float(work.max())
    scale = hi - lo if hi > lo else 1.0
    x = torch.from_numpy(((work - lo) / scale)[:, None].copy())
    if device is not None:
        x = x.to(device)
    return Prepared(x, lo, scale, channel_axis, np.asarray(image).ndim, out_dtype)


def _noise(p: Prepared, noise):
    """Per-channel noise std maps in normalised units, and a description."""
    x = p.x
    if noise is None or (isinstance(noise, str) and noise == "auto"):
        if min(x.shape[-2:]) < 8:  # too small for calibrate: the finest Haar details
            s = [estimate_awgn(x[c]) for c in range(x.shape[0])]
            desc = {
                "model": "awgn",
                "sigma": [v * p.scale for v in s],
                "estimated": "Haar MAD per channel (image under 8x8 pixels)",
            }
            return torch.tensor(s, dtype=x.dtype).view(-1, 1, 1, 1).clamp_min(1e-6), desc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a noiseless channel: its std is floored below
            models = [calibrate(x[c, 0].cpu().numpy()) for c in range(x.shape[0])]
        if all(m.kind == "awgn" for m in models):
            std = torch.tensor([m.std_at_mean for m in models], dtype=x.dtype, device=x.device)
            std = std.view(-1, 1, 1, 1).clamp_min(1e-6)
        else:
            H, W = x.shape[-2:]
            std = torch.cat(
                [noise_std_map(x[c : c + 1], m).expand(1, 1, H, W) for c, m in enumerate(models)]
            )
        inp = [m.normalised(-p.offset / p.scale, 1.0 / p.scale) for m in models]  # input units
        desc = {
            "model": "awgn" if all(m.kind == "awgn" for m in inp) else "poisson-gaussian",
            "sigma": [m.std_at_mean for m in inp],  # marginal std at each channel's mean
            "estimated": "pkn.noise.calibrate per channel (marginal variance a * x + b)",
            "rho": [list(m.rho) for m in inp],
            "correlation_length": [m.length for m in inp],
        }
        if desc["model"] == "poisson-gaussian":
            desc["a"] = [m.a for m in inp]
            desc["b"] = [m.b for m in inp]
        return std, desc
    if isinstance(noise, tuple | list):
        if len(noise) != 2:
            raise ValueError(f"Poisson-Gaussian noise is a pair (a, b), got {noise!r}.")
        a, b = float(noise[0]) / p.scale, float(noise[1]) / p.scale**2
        off = p.offset / p.scale  # variance a*x + b in input units -> normalised units
        desc = {
            "model": "poisson-gaussian",
            "a": float(noise[0]),
            "b": float(noise[1]),
            "estimated": False,
        }
        return noise_std_map(x, (a, b + a * off)), desc
    if isinstance(noise, str):
        raise ValueError(f"noise {noise!r} not understood; use None/'auto', a sigma or (a, b).")
    s = float(noise)
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"noise sigma must be a finite number >= 0, got {noise!r}.")
    desc = {"model": "awgn", "sigma": s, "estimated": False}
    return noise_std_map(x, s / p.scale), desc


def estimate_noise(image, channel_axis: int | None = None) -> dict:
    """The noise model :func:`restore` would use for ``image`` with ``noise=None``.

    Returns the same description as ``Restoration.info["noise"]``: ``{"model": "awgn",
    "sigma": [per channel], ...}`` or ``{"model": "poisson-gaussian", "a": ..., "b": ...}``,
    in the input's units, with how it was estimated.
    """
    return _noise(prepare(image, channel_axis), None)[1]
