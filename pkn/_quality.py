"""Choosing the strength without a clean image, and checking what a restoration removed.

* :func:`sure_strength`: the global ``strength`` that minimises Stein's unbiased risk
  estimate (SURE) of the filter's mean squared error against the unknown clean image,

  .. math:: \\mathrm{SURE}(s) = \\tfrac1N \\|f_s(x) - x\\|^2 - \\tfrac1N \\operatorname{tr}\\Sigma
            + \\tfrac2N \\operatorname{tr}(\\Sigma J_{f_s}(x)),

  with the noise covariance :math:`\\Sigma` (diagonal: the noise std map squared; a
  correlated-noise footprint when given) and the divergence term estimated by one Monte
  Carlo probe (Ramani, Blu & Unser, IEEE TIP 2008): :math:`\\operatorname{tr}(\\Sigma J)
  \\approx b^T (f(x + \\epsilon b) - f(x)) / \\epsilon` with :math:`b \\sim N(0, \\Sigma)`.
  For NLM this is the SURE-based tuning of Van De Ville & Kocher (IEEE SPL 2009); the
  probe makes it work for every denoising kernel. It is only as good as the noise model.
* :func:`qc_map` and :func:`whiteness`: the residual ``noisy - restored`` in units of the
  noise std (about N(0, 1) where only noise was removed) and its neighbour correlation.
  For white noise a good restoration leaves a slightly negative score (the residual is
  high-pass: about -0.05 to -0.15 for NLM); structure removed from the image shows up as
  a positive one (over-smoothed edges: +0.1 and more).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["STRENGTHS", "qc_map", "sure_strength", "whiteness"]

#: Candidate strengths of the coarse search (then refined around the best), tried in
#: increasing order until SURE has risen twice in a row past its minimum.
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
_RISES = 2  # consecutive rises of SURE past its minimum that end the coarse search
_MAX_SIDE = 512  # calibrate on a central crop at most this large


def _crop(x: torch.Tensor, maps: dict, factor: int) -> tuple[torch.Tensor, dict]:
    """A central crop of at most ``_MAX_SIDE`` per side, aligned to the map grid."""
    H, W = x.shape[-2:]
    h, w = min(H, _MAX_SIDE), min(W, _MAX_SIDE)
    r0, c0 = (H - h) // 2 // factor * factor, (W - w) // 2 // factor * factor
    if (h, w) == (H, W):
        return x, maps
    xc = x[..., r0 : r0 + h, c0 : c0 + w]
    mh, mw = -(-h // factor), -(-w // factor)
    mc = {
        n: m
        if m.shape[-2:] == (1, 1)
        else m[..., r0 // factor : r0 // factor + mh, c0 // factor : c0 // factor + mw]
        for n, m in maps.items()
    }
    return xc, mc


def sure_strength(
    net,
    x: torch.Tensor,
    maps: dict,
    noise_std: torch.Tensor,
    inputs: dict | None = None,
    candidates=STRENGTHS,
    *,
    noise_kernel: torch.Tensor | None = None,
    seed: int = 0,
) -> tuple[float, dict]:
    """The strength minimising SURE of ``net``'s filter on ``x`` (see the module doc).

    Parameters
    ----------
    net : pkn.models.PKNModel
        The model whose filter runs (``net.filter``) with the cached ``maps``.
    x : torch.Tensor
        ``(C, 1, H, W)`` noisy image in the network's working units.
    maps : dict
        Its predicted maps (half resolution).
    noise_std : torch.Tensor
        Noise std, ``(C, 1, 1, 1)`` or a map ``(C, 1, H, W)``, in the same units.
    candidates : sequence of float
        Coarse grid of strengths, tried in increasing order until SURE has risen twice
        in a row past its smallest value so far (SURE is about unimodal in the strength;
        the large strengths, whose windows are the widest and slowest, are then never
        run); the best is refined by a parabola through its neighbours.
    noise_kernel : torch.Tensor, optional
        ``(k, k)`` footprint of spatially correlated noise (noise = white noise filtered
        by it, normalised to unit energy); default white.
    seed : int
        Seed of the Monte Carlo probe.

    Returns
    -------
    (float, dict)
        The strength and a description (method, candidates, SURE values, crop used).
    """
    inputs = dict(inputs or {})
    std = (
        noise_std.expand(x.shape[0], 1, *x.shape[-2:])
        if noise_std.shape[-2:] == (1, 1)
        else noise_std
    )
    xc, mc = _crop(x, maps, net.factor)
    sc = _crop(std, {}, net.factor)[0]
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(xc.shape, generator=g, dtype=torch.float64).to(xc)
    if noise_kernel is not None:
        k = torch.as_tensor(noise_kernel, dtype=xc.dtype)
        k = (k / k.square().sum().sqrt()).view(1, 1, *k.shape[-2:])
        r = k.shape[-1] // 2
        b = F.conv2d(F.pad(b, (r, r, r, r), mode="reflect"), k)
    b = b * sc  # one draw of the noise: N(0, Sigma)
    eps = 0.01  # probe step, in units of the noise
    var = float(sc.square().mean())

    def sure(s: float) -> float:
        with torch.no_grad():
            y = net.filter(xc, mc, strength=float(s), **inputs)
            y2 = net.filter(xc + eps * b, mc, strength=float(s), **inputs)
        div = float((b * (y2 - y)).double().mean()) / eps
        return float((y - xc).double().square().mean()) - var + 2.0 * div

    cands, values, rises = [], [], 0
    for c in sorted(float(c) for c in candidates):
        cands.append(c)
        values.append(sure(c))
        # consecutive rises: once there are _RISES, the minimum lies before them
        rises = rises + 1 if len(values) > 1 and values[-1] > values[-2] else 0
        if rises >= _RISES:
            break
    i = int(np.argmin(values))
    best = cands[i]
    if 0 < i < len(cands) - 1:  # parabola through the best and its neighbours
        (s0, s1, s2), (l0, l1, l2) = cands[i - 1 : i + 2], values[i - 1 : i + 2]
        den = (s0 - s1) * (s0 - s2) * (s1 - s2)
        a = (s2 * (l1 - l0) + s1 * (l0 - l2) + s0 * (l2 - l1)) / den
        bb = (s2**2 * (l0 - l1) + s1**2 * (l2 - l0) + s0**2 * (l1 - l2)) / den
        if a > 0 and s0 < -bb / (2 * a) < s2:
            v = -bb / (2 * a)
            lv = sure(v)
            cands.append(float(v))
            values.append(lv)
            if lv < values[i]:
                best = float(v)
    info = {
        "method": "SURE with a Monte Carlo divergence probe, for the estimated noise model",
        "strength": round(best, 4),
        "candidates": [round(c, 4) for c in cands],
        "sure": [float(v) for v in values],
        "crop": [int(v) for v in xc.shape[-2:]],
    }
    return best, info


def qc_map(noisy: np.ndarray, restored: np.ndarray, noise_std) -> np.ndarray:
    """``(noisy - restored) / noise_std`` as float32 (N(0, 1)-like where only noise went)."""
    std = np.maximum(np.asarray(noise_std, np.float64), 1e-12)
    return ((np.asarray(noisy, np.float64) - restored) / std).astype(np.float32)


def whiteness(residual: np.ndarray) -> dict:
    """Neighbour correlation of a residual ``(..., H, W)``: lag-1 along y and x.

    About 0 for white noise; image structure left in the residual (removed from the
    image) makes it positive.
    """
    r = np.asarray(residual, np.float64)
    r = r - r.mean(axis=(-2, -1), keepdims=True)
    var = float(np.mean(r * r))
    if var <= 0:
        return {"lag1_y": 0.0, "lag1_x": 0.0, "score": 0.0}
    cy = float(np.mean(r[..., 1:, :] * r[..., :-1, :])) / var
    cx = float(np.mean(r[..., :, 1:] * r[..., :, :-1])) / var
    return {"lag1_y": round(cy, 4), "lag1_x": round(cx, 4), "score": round((cy + cx) / 2, 4)}
