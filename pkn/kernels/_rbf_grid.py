"""Geometry of :func:`~pkn.kernels.rbf.rbf_resample`: output size, window indices and
offsets per axis, and the parameters on the output grid (rows-first, band by band)."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch

from ._band import Scratch, as_map_fast, resample_rows
from ._common import as_map


def _pair(value, name: str) -> tuple[float, float]:
    """``value`` as a pair of positive finite floats (a single number is used twice)."""
    items = value if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{name} must be a number or a pair (scale_y, scale_x), got {value!r}.")
    out = []
    for v in items:
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, Real):
            raise TypeError(
                f"{name} must be a positive number or a pair of them, got {type(v).__name__}."
            )
        v = float(v)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be positive and finite, got {v!r}.")
        out.append(v)
    return out[0], out[1]


def _output_size(h: int, w: int, scale, size) -> tuple[int, int]:
    """Output ``(H_out, W_out)`` from exactly one of ``scale`` and ``size``."""
    if (scale is None) == (size is None):
        which = "both were given" if scale is not None else "neither was given"
        raise ValueError(
            "give exactly one of scale= (a positive number or a pair (scale_y, scale_x)) and "
            f"size= (a pair (H_out, W_out) of positive ints); {which}."
        )
    if scale is not None:
        sy, sx = _pair(scale, "scale")
        return max(1, round(h * sy)), max(1, round(w * sx))
    ok = isinstance(size, (tuple, list, torch.Size)) and len(size) == 2
    ok = ok and all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0 for v in size)
    if not ok:
        raise ValueError(f"size must be a pair (H_out, W_out) of positive ints, got {size!r}.")
    return int(size[0]), int(size[1])


def _axis(n_in: int, n_out: int, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Window indices and offsets along one axis (CPU tensors, float64 offsets).

    Output sample ``i`` sits at ``u = (i + 0.5) n_in / n_out - 0.5`` (computed exactly with
    integers). Its window is ``floor(u) - r + 1 .. floor(u) + r``: returns the input indices
    ``(2r, n_out)`` (mirrored, or clamped when the axis is shorter than ``r + 1``), the
    signed offsets ``q - u`` ``(2r, n_out)`` and the window position ``(n_out,)`` of the
    nearest input pixel.
    """
    num = torch.arange(n_out, dtype=torch.int64) * (2 * n_in) + (n_in - n_out)  # u * 2 n_out
    fl = torch.div(num, 2 * n_out, rounding_mode="floor")  # (n_out,) floor(u)
    t = (num - fl * (2 * n_out)).double() / (2 * n_out)  # (n_out,) u - floor(u) in [0, 1)
    k = torch.arange(2 * r, dtype=torch.int64)[:, None]  # (2r, 1)
    idx = fl[None, :] + k - (r - 1)  # (2r, n_out)
    if n_in > r:  # one reflection reaches: mirror without repeating the edge
        idx = torch.where(idx < 0, -idx, idx)
        idx = torch.where(idx > n_in - 1, 2 * (n_in - 1) - idx, idx)
    else:
        idx = idx.clamp(0, n_in - 1)
    off = (k - (r - 1)).double() - t[None, :]  # (2r, n_out) q - u
    near = (r - 1) + (t >= 0.5).long()  # (n_out,)
    return idx, off, near


def _layout(p: torch.Tensor) -> torch.Tensor:
    """Expanded map ``(B, C, H, W)`` as a rows-first ``(H|1, B|1, C|1, 1, W|1)`` tensor.

    Broadcast (stride-0) axes shrink to size 1, and a constant becomes 0-d (cheap to
    broadcast): numbers cost nothing per pixel.
    """
    for d in range(4):
        if p.shape[d] > 1 and p.stride(d) == 0:
            p = p.narrow(d, 0, 1)
    if p.numel() == 1:
        return p.reshape(())
    return p.permute(2, 0, 1, 3).unsqueeze(3)


def _rows(p: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    """Rows ``r0:r1`` of a rows-first map (0-d and single-row maps broadcast)."""
    return p if p.ndim == 0 or p.shape[0] == 1 else p[r0:r1]


def _param(p, x: torch.Tensor, name: str, lo, hi, size: tuple[int, int], grad: bool):
    """A parameter on the output grid, rows-first (see :func:`_layout`); without a gradient
    a map is validated but kept on its own grid, ``(B|1, C|1, h, w)``, and resampled band by
    band (:func:`_band_map`)."""
    if grad or not isinstance(p, torch.Tensor) or p.ndim != 4 or p.shape[-2:] in (size, (1, 1)):
        return _layout(as_map(p, x, name, low=lo, high=hi, size=size))
    m = as_map_fast(p, x, name, low=lo, high=hi, size=tuple(p.shape[-2:]))
    for d in range(2):  # batch or channel broadcast: one map
        if m.shape[d] > 1 and m.stride(d) == 0:
            m = m.narrow(d, 0, 1)
    return m


def _band_map(m: torch.Tensor, r0: int, r1: int, size, buf: Scratch, name: str):
    """Rows ``r0:r1`` of a parameter, rows-first ``(h|1, B|1, C|1, 1, W|1)`` or 0-d: a view,
    or resampled (a map on its own grid, no gradient)."""
    if m.ndim != 4:
        return _rows(m, r0, r1)
    shape = (*m.shape[:2], r1 - r0, size[1])
    tmp = buf(name + "t", (*shape[:3], m.shape[-1]))
    band = resample_rows(m, size, r0, r1, out=buf(name, shape), tmp=tmp)  # (B|1, C|1, h, W)
    return band.permute(2, 0, 1, 3).unsqueeze(3)


def _phases(liy: torch.Tensor, n_in: int, n_out: int):
    """``(P, S, groups)`` for :func:`_band` when the rows of each phase of the band read
    equally spaced rows of ``cols`` (always, but at mirrored borders, for rational factors
    with a small numerator), else None. ``liy``: (K, h) CPU rows of ``cols``."""
    g = math.gcd(n_in, n_out)
    P, S = n_out // g, n_in // g
    if P > 8:
        return None
    groups = []
    for i0 in range(min(P, liy.shape[1])):
        rows = liy[:, i0::P]  # (K, n)
        if rows.shape[1] > 1 and not bool((rows[:, 1:] - rows[:, :-1] == S).all()):
            return None
        groups.append((i0, rows.shape[1], rows[:, 0].tolist()))
    return P, S, groups
