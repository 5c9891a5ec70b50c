"""Band-at-a-time helpers for the no-grad (inference) paths of kpn, gaussian and rbf.

Parameter maps are resampled one band of rows at a time (never a full-resolution stack),
images padded one band at a time, and window radii found from exact bounds, so the
offset loops stream small, cache-resident buffers, reused from band to band (:class:`Scratch`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._common import Param, all_finite, as_map, max_value

__all__ = [
    "Scratch",
    "as_map_fast",
    "broadcast_shape",
    "pad_band",
    "resample_rows",
    "resampled_radius",
]


def broadcast_shape(*shapes) -> tuple[int, ...]:
    """``torch.broadcast_shapes`` for valid shapes, without its Python overhead."""
    n = max(len(t) for t in shapes)
    shapes = [(1,) * (n - len(t)) + tuple(t) for t in shapes]
    return tuple(0 if 0 in d else max(d) for d in zip(*shapes, strict=True))


class Scratch:
    """Named scratch tensors reused from band to band when no gradient is needed.

    Fresh multi-megabyte tensors cost page faults on every band; reusing a few buffers
    (views of their first elements, the first band being the largest) avoids that. Without
    a gradient the bands of rows are filled one after the other, so the buffers of one band
    are free for the next.

    ``scratch(name, *shapes)`` is a contiguous tensor of the broadcast shape of ``shapes``
    (shapes or tensors), sharing the storage of every earlier request with the same name.
    With autograd every intermediate must be a new tensor: with ``enabled=False`` it hands
    out ``None`` (for ``out=``) and the operations allocate.
    """

    def __init__(self, like: torch.Tensor, enabled: bool = True):
        self.like, self.enabled, self.store, self.cache = like, enabled, {}, {}

    def __call__(self, name: str, *shapes) -> torch.Tensor | None:
        if not self.enabled:
            return None
        shape = shapes[0] if len(shapes) == 1 and isinstance(shapes[0], tuple) else None
        if shape is None:  # tensors, or several shapes to broadcast
            shape = broadcast_shape(*(getattr(s, "shape", s) for s in shapes))
        n = math.prod(shape)
        buf = self.store.get(name)
        if buf is None or buf.numel() < n:
            buf = self.store[name] = torch.empty(n, dtype=self.like.dtype, device=self.like.device)
        return buf[:n].view(shape)

    def views(self, name: str, t: torch.Tensor, make):
        """``make(t)`` (views of ``t``), made once per buffer and shape: the bands reuse the
        same buffers, so their many views need not be made again for every band."""
        key = (name, t.data_ptr(), tuple(t.shape), t.stride())
        if key not in self.cache:
            self.cache[key] = make(t)
        return self.cache[key]


def pad_band(x: torch.Tensor, r: int, r0: int, r1: int, out: torch.Tensor) -> torch.Tensor:
    """Rows ``r0 : r1 + 2r`` of ``pad(x, r)`` (rows ``r0:r1`` of ``x`` with their halo) into
    ``out`` ``(B, C, r1 - r0 + 2r, W + 2r)``, without padding the whole image; returns ``out``.
    """
    H, W = x.shape[-2:]
    if r == 0:
        return out.copy_(x[:, :, r0:r1])
    mirror = min(H, W) > r
    lo, hi = max(r0 - r, 0), min(r1 + r, H)  # rows inside the image
    out[:, :, lo - (r0 - r) : hi - (r0 - r), r : r + W].copy_(x[:, :, lo:hi])
    for i in (*range(r0 - r, lo), *range(hi, r1 + r)):  # rows outside: mirrored or clamped
        j = (-i if i < 0 else 2 * (H - 1) - i) if mirror else min(max(i, 0), H - 1)
        out[:, :, i - (r0 - r), r : r + W].copy_(x[:, :, j])
    if mirror:  # column c < 0 is column -c; column W - 1 + k is column W - 1 - k
        out[..., :r].copy_(out[..., r + 1 : 2 * r + 1].flip(-1))
        out[..., W + r :].copy_(out[..., W - 1 : W + r - 1].flip(-1))
    else:
        out[..., :r].copy_(out[..., r : r + 1].expand(*out.shape[:-1], r))
        out[..., W + r :].copy_(out[..., W + r - 1 : W + r].expand(*out.shape[:-1], r))
    return out


def as_map_fast(
    p: Param,
    x: torch.Tensor,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """:func:`as_map` for the no-grad path: same checks and errors, same map up to rounding.

    Maps are validated with :func:`all_finite` and resampled with :func:`resample_rows`
    instead of ``F.interpolate``; the result is not differentiable. Anything but a
    ``(B or 1, 1 or C, h, w)`` floating map goes to :func:`as_map` itself.
    """
    B, C, H, W = x.shape
    Ho, Wo = (H, W) if size is None else size
    ok = isinstance(p, torch.Tensor) and p.ndim == 4 and p.is_floating_point()
    ok = ok and p.shape[0] in (1, B) and p.shape[1] in (1, C) and min(p.shape) >= 1
    if ok:
        with torch.no_grad():
            ok = all_finite(p)
            if ok and (low is not None or high is not None):
                pmin, pmax = (float(v) for v in torch.aminmax(p))
                ok = (low is None or pmin >= low) and (high is None or pmax <= high)
    if not ok:  # not a map, or an error to raise: as_map does it
        return as_map(p, x, name, low=low, high=high, size=size)
    p = p.detach().to(dtype=x.dtype, device=x.device)
    if p.shape[-2:] == (1, 1):
        return p.expand(B, -1, Ho, Wo)
    return resample_rows(p, (Ho, Wo), 0, Ho).expand(B, -1, Ho, Wo)


def _lerp_axis(p: torch.Tensor, dim: int, n_out: int, start: int, out: torch.Tensor) -> None:
    """Write samples ``start : start + out.shape[dim]`` of the linear resampling of ``p``
    along ``dim`` (``n_in -> n_out``, ``align_corners=False``, as ``F.interpolate``) into
    ``out``.

    Sample ``j`` sits at ``u = (j + 0.5) n_in / n_out - 0.5`` (clamped at 0) and is
    ``lerp(p[i0], p[i1], u - i0)`` with ``i0 = floor(u)`` and ``i1 = min(i0 + 1, n_in - 1)``.
    For an integer factor ``s = n_out / n_in`` the weight only depends on ``j mod s``:
    each of the ``s`` phases is one lerp of two shifted views, written to a strided view.
    """
    n_in, count = p.shape[dim], out.shape[dim]
    stop = start + count
    pre = (slice(None),) * dim
    if n_out % n_in == 0:
        s = n_out // n_in
        for m in range(s):
            j0 = start + (m - start) % s  # first sample of phase m
            if j0 >= stop:
                continue
            k0, k1 = (j0 - m) // s, (stop - 1 - m) // s + 1  # its source pixels k0 : k1
            dst = out[(*pre, slice(j0 - start, None, s))]  # every s-th sample
            f = (m + 0.5) / s - 0.5  # u = k + f
            if f < 0:  # lerp(p[k - 1], p[k], 1 + f); u < 0 at k = 0: p[0]
                if k0 == 0:
                    dst[(*pre, slice(0, 1))].copy_(p[(*pre, slice(0, 1))])
                    dst, k0 = dst[(*pre, slice(1, None))], 1
                if k1 > k0:
                    lo, hi = p[(*pre, slice(k0 - 1, k1 - 1))], p[(*pre, slice(k0, k1))]
                    torch.lerp(lo, hi, 1.0 + f, out=dst)
            else:  # lerp(p[k], p[k + 1], f); p[n_in - 1] at the last pixel
                last = k1 == n_in
                n = k1 - k0 - last
                if n > 0 and f > 0:
                    lo, hi = p[(*pre, slice(k0, k0 + n))], p[(*pre, slice(k0 + 1, k0 + n + 1))]
                    torch.lerp(lo, hi, f, out=dst[(*pre, slice(0, n))])
                elif n > 0:
                    dst[(*pre, slice(0, n))].copy_(p[(*pre, slice(k0, k0 + n))])
                if last:
                    dst[(*pre, slice(n, n + 1))].copy_(p[(*pre, slice(n_in - 1, n_in))])
        return
    src = (torch.arange(start, stop, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
    src = src.clamp_min(0.0)
    i0 = src.floor().long().clamp_max(n_in - 1)
    i1 = (i0 + 1).clamp_max(n_in - 1)
    shape = [1] * p.ndim
    shape[dim] = count
    lam = (src - i0).to(dtype=p.dtype, device=p.device).view(shape)
    lo = p.index_select(dim, i0.to(p.device))
    torch.lerp(lo, p.index_select(dim, i1.to(p.device)), lam, out=out)


def resample_rows(
    p: torch.Tensor,
    size: tuple[int, int],
    r0: int,
    r1: int,
    out: torch.Tensor | None = None,
    tmp: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rows ``r0:r1`` of ``F.interpolate(p, size, mode="bilinear", align_corners=False)``.

    Equal to it up to rounding (a lerp per axis, rows first), without building the other
    rows, and fast for integer upsampling factors (strided views instead of gathers). Not
    differentiable (for the no-grad paths).

    Parameters
    ----------
    p : torch.Tensor
        Maps ``(B, n, h, w)``.
    size : (int, int)
        Resampled size ``(H, W)``.
    r0, r1 : int
        Rows wanted, ``0 <= r0 < r1 <= H``.
    out, tmp : torch.Tensor, optional
        Contiguous buffers ``(B, n, r1 - r0, W)`` for the result and ``(B, n, r1 - r0, w)``
        for the rows resampled along H only (reused buffers save page faults).

    Returns
    -------
    torch.Tensor
        ``(B, n, r1 - r0, W)``: ``out`` (or a new tensor), or a view of ``p`` where no axis
        needs resampling (sizes ``H``/``W`` or 1). Always use the returned tensor.
    """
    H, W = size
    B, n, h, w = p.shape
    rb = r1 - r0
    if h == H:
        t = p[:, :, r0:r1]
    elif h == 1:
        t = p.expand(B, n, rb, w)
    else:
        t = out if w == W and out is not None else tmp
        t = p.new_empty((B, n, rb, w)) if t is None else t
        _lerp_axis(p, 2, H, r0, t)
    if w == W:
        return t
    if w == 1:
        return t.expand(B, n, rb, W)
    out = p.new_empty((B, n, rb, W)) if out is None else out
    _lerp_axis(t, 3, W, 0, out)
    return out


def resampled_radius(
    maps: list[torch.Tensor], size: tuple[int, int], rule: Callable[[float], int]
) -> int:
    """``rule(m)`` for the largest value ``m`` of the maps bilinearly resampled to ``size``
    (as :func:`resample_rows`), for a non-decreasing ``rule`` (e.g. a window radius).

    A map is only resampled whole when its own maximum (which bounds the resampled values)
    and the maximum of the resampled rows around it give different results.
    """
    H, W = size
    whole = [m.shape[-2] in (1, H) and m.shape[-1] in (1, W) for m in maps]
    low = [m.detach() for m, ok in zip(maps, whole, strict=True) if not ok]
    top = max((max_value(m) for m, ok in zip(maps, whole, strict=True) if ok), default=-math.inf)
    hi = rule(max([top, *(max_value(m) for m in low)]))
    if not low:
        return hi
    lo = top
    for m in low:
        h = m.shape[-2]
        i = int(m.argmax()) // m.shape[-1] % h  # source row of the maximum
        j0, j1 = max(0, math.floor((i - 0.5) * H / h)), min(H, math.ceil((i + 1.5) * H / h) + 1)
        lo = max(lo, max_value(resample_rows(m, size, j0, j1)))
    if rule(lo) == hi:
        return hi
    rows = max(1, (1 << 20) // W)
    for m in low:
        for j in range(0, H, rows):
            top = max(top, max_value(resample_rows(m, size, j, min(H, j + rows))))
    return rule(top)
