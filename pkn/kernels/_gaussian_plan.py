"""Plans for one band of the any-rho Gaussian (:mod:`._gaussian_general`), from the band's
bounds on the exponent's coefficients: whether its weights may be built by products
(:func:`_product_cap`) and which offsets it may leave out (:func:`_kept_offsets`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ._gaussian_separable import _LOG2E, _exp_limit


def _product_cap(
    bounds: tuple[float, ...], rho_max: float, r: int, xbig: float, dtype: torch.dtype
) -> float | None:
    """How the band tile (``_general_tile``, no gradient) may build its weights by products.

    ``bounds`` as for :func:`_kept_offsets` (base 2), ``rho_max`` the band's largest
    ``|rho|``, ``xbig`` a bound on ``log2`` of a row sum over its largest weight.

    Returns ``inf`` where no factor ``2^(b d)``, running product ``A_dx(dy) = 2^(a dx^2 +
    b dx dy)`` or row sum can overflow; a cap ``K`` where they could, so that the factors
    are clamped to ``[2^-K, 2^K]`` and ``A`` to ``2^K``; ``None`` where products are
    unsafe (one exponential per offset instead). Clamping and underflow (sigmas far below
    a pixel with a large window) only touch weights that are negligible, below
    ``eps / (2r+1)^2`` of the centre weight: with :math:`S = |a| d_x^2 + |c| d_y^2`,
    :math:`|b\\,d_x d_y| \\le |r| S` and so :math:`q \\le -(1 - |r|) S`; a product that
    underflows (``-L``, the dtype's range) has :math:`S > L`, one that is clamped
    :math:`S > K / |r|`, and a weight that clamping overestimates stays below ``2^-K``.
    """
    lim = _exp_limit(dtype) * _LOG2E
    floor = -math.log2(torch.finfo(dtype).eps / (2 * r + 1) ** 2)  # negligible: 2^-floor
    amin, amax, bmin, bmax, cmin, _ = bounds
    bab = max(bmax, -bmin)  # largest |b|
    if not all(math.isfinite(v) for v in (*bounds, rho_max, xbig)):
        return None
    if min(amin, cmin) * r * r < -lim and (1.0 - rho_max) * lim < floor:
        return None  # factors underflow where weights are not negligible
    top = max(amax * d * d + bab * d * r for d in range(1, r + 1))  # largest A exponent
    if bab * r <= lim and top + xbig + 1.0 <= lim:
        return math.inf
    cap = 0.5 * lim - 1.0  # a product of two clamped factors stays finite
    if rho_max > 0.0 and cap * (1.0 - rho_max) / rho_max >= floor and cap + xbig + 1.0 <= lim:
        return cap
    return None


@functools.lru_cache(maxsize=16)  # bands of smooth maps often share their bounds
def _kept_offsets(
    bounds: tuple[float, float, float, float, float, float], r: int, dtype: torch.dtype
) -> tuple[tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]], ...]:
    """Which offsets of a band to sum: for each row ``dy = 0..r``, per side (``dx = d > 0``,
    ``dx = -d``), the range ``(lo, hi)`` of ``d`` summed (with the offsets' mirror images
    ``-(dx, dy)``), and the range whose weights the band tile (``_general_tile``) must still
    update.

    ``bounds`` are the band's ``(min a, max a, min b, max b, min c, max c)`` of the base-2
    exponent ``a dx^2 + b dx dy + c dy^2``, which give every offset's weight a lower and an
    upper bound over the band. The offsets with the smallest upper bounds are left out as
    long as, at every pixel of the band, their weights together stay below ``eps`` times
    the sum of the weights that are kept (bounded from below): the output then changes by
    less than ``eps`` times the range of its window, one rounding step of ``dtype``. The
    centre and the column ``dx = 0`` are always summed. Ranges are hulls (they may hold
    offsets that could have been left out); an empty range is ``(1, 0)``.
    """
    eps = torch.finfo(dtype).eps
    amin, amax, bmin, bmax, cmin, cmax = bounds
    d = np.arange(1, r + 1, dtype=np.float64)
    dy = np.arange(r + 1, dtype=np.float64)[:, None, None]  # (r+1, 1, 1)
    dx = np.stack((d, -d))[None]  # (1, 2, r): side 0 dx = d, side 1 dx = -d
    cross = dx * dy
    with np.errstate(over="ignore", invalid="ignore"):
        hi = np.exp2(amax * dx**2 + np.maximum(bmin * cross, bmax * cross) + cmax * dy**2)
        lo = np.exp2(amin * dx**2 + np.minimum(bmin * cross, bmax * cross) + cmin * dy**2)
        hi, lo = np.nan_to_num(hi, nan=np.inf), np.nan_to_num(lo, nan=0.0)
        # one-sided candidates: row 0 once (dx = -d mirrors dx = d), rows dy >= 1 both sides
        cand = np.ones((r + 1, 2, r), dtype=bool)
        cand[0, 1] = False
        column = np.exp2(np.minimum(cmin * dy.ravel()[1:] ** 2, 0.0)).sum()  # dx = 0
        order = np.argsort(hi[cand], kind="stable")
        up, low = hi[cand][order], np.minimum(lo[cand][order], 1.0)
        # leaving out the first k: 2 sum(up[:k]) <= eps (1 + 2 column + 2 sum(low[k:]))
        kept_low = low.sum() - np.cumsum(low)
        ok = 2.0 * np.cumsum(up) <= eps * (1.0 + 2.0 * (column + kept_low))
        k = int(np.argmin(ok)) if not ok.all() else ok.size  # ok is a prefix of True
    dropped = np.zeros(int(cand.sum()), dtype=bool)
    dropped[order[:k]] = True
    keep = np.zeros_like(cand)
    keep[cand] = ~dropped
    keep[0, 1] = keep[0, 0]  # row 0: both sides are the same offsets
    later = np.logical_or.accumulate(keep[::-1], axis=0)[::-1]  # needed in row dy or later
    spans, updates = _spans(keep), _spans(later)
    return tuple(
        (tuple(map(tuple, s)), tuple(map(tuple, u))) for s, u in zip(spans, updates, strict=True)
    )


def _spans(mask: np.ndarray) -> list:
    """``[first, last]`` (1-based) of the True entries along the last axis; ``[1, 0]``
    (empty) where there are none."""
    n = mask.shape[-1]
    first = np.argmax(mask, axis=-1) + 1
    last = n - np.argmax(mask[..., ::-1], axis=-1)
    empty = ~mask.any(axis=-1)
    first[empty], last[empty] = 1, 0
    return np.stack((first, last), axis=-1).tolist()
