"""Anisotropic Gaussian RBF resampling (upscaling and downscaling) with per-pixel kernels.

Each output pixel is a normalized Gaussian-weighted average of the input pixels around
its centre, with its own covariance (sigma1 along x, sigma2 along y, correlation rho):
the kernel reconstruction of the Procedural Kernel Networks paper (eq. 12), usable as a
learnable upsampler at any, also fractional, factor.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from torch import nn

from ._band import as_map_fast, resample_rows, resampled_radius
from ._common import Param, as_map, check_image, row_tiles

__all__ = ["RBFResample", "rbf_resample"]

_SIGMA_FLOOR = 1e-10  # keeps 1 / sigma finite: sigma -> 0 is nearest-neighbour sampling
_RHO_MAX = 1.0 - 1e-6  # keeps 1 / (1 - rho^2) finite: rho -> +-1 never gives NaN/Inf
# Exponents are taken relative to the nearest pixel's (its weight is then 1) where that one
# is surely >= -30 in a whole band of rows; otherwise relative to the exact per-pixel max.
_FAST_SHIFT = 30.0
# Weights come from products (5 exps per output pixel instead of (2R)^2) where every
# exponent of the window is surely >= -50: relative to the nearest pixel's, weights then
# lie in [e^-50, e^30], and the ratios of neighbouring weights (and the ratios of those
# ratios, checked to be <= e^80) neither overflow nor underflow, in float32 too.
_RECUR_LOW = 50.0
_RECUR_STEP = 80.0
_EXP_FLOOR = -60.0  # otherwise exponents (relative to the largest, ~0) are clamped to this
_LOG2E = 1.0 / math.log(2.0)
_TILE_TARGET = 1 << 22  # elements of the largest intermediates per band of output rows


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


def _broadcast(*shapes) -> tuple[int, ...]:
    """``torch.broadcast_shapes`` for valid shapes, without its Python overhead."""
    n = max(len(t) for t in shapes)
    shapes = [(1,) * (n - len(t)) + tuple(t) for t in shapes]
    return tuple(0 if 0 in d else max(d) for d in zip(*shapes, strict=True))


class _Scratch:
    """Named scratch tensors reused from band to band when no gradient is needed.

    Fresh multi-megabyte tensors cost page faults on every band; reusing a few buffers
    (views of their first elements, the first band being the largest) avoids that. With
    autograd every intermediate must be a new tensor: then it hands out ``None`` (for
    ``out=``) and the operations allocate.
    """

    def __init__(self, like: torch.Tensor, enabled: bool):
        self.like, self.enabled, self.store = like, enabled, {}

    def __call__(self, name: str, *shapes) -> torch.Tensor | None:
        if not self.enabled:
            return None
        shape = _broadcast(*(getattr(s, "shape", s) for s in shapes))
        numel = math.prod(shape)
        buf = self.store.get(name)
        if buf is None or buf.numel() < numel:
            buf = self.store[name] = self.like.new_empty(numel)
        return buf[:numel].view(shape)


def _coefficients(s1, s2, rho, buf: _Scratch) -> tuple[torch.Tensor, ...]:
    """Per-pixel ``a, g, hh`` of the exponent ``-(dx a)^2 - (dy g - dx hh)^2``.

    The exponent -(1/2) d^T Sigma^-1 d = -(X^2 + (Y - rho X)^2 / (1 - rho^2)) / 2, with
    X = dx / s1 and Y = dy / s2, is a sum of squares: it stays <= 0 in rounding, with no
    cancellation at |rho| ~ 1. So a = 1 / (sqrt(2) s1), g = 1 / (sqrt(2 (1 - rho^2)) s2)
    and hh = rho / (sqrt(2 (1 - rho^2)) s1), after clamping sigmas and rho. With scratch
    buffers (no gradient) all three are scaled by sqrt(log2(e)): the exponents are then in
    base 2, for exp2 (faster than exp), and the bounds on them are scaled alike.
    """
    if not buf.enabled:
        rc = rho.clamp(-_RHO_MAX, _RHO_MAX)
        kk = (0.5 / (1.0 - rc * rc)).sqrt()  # 1 / sqrt(2 (1 - rho^2))
        a = s1.clamp_min(_SIGMA_FLOOR).reciprocal() * math.sqrt(0.5)
        return a, kk * s2.clamp_min(_SIGMA_FLOOR).reciprocal(), a * (kk * rc * math.sqrt(2.0))
    rc = torch.clamp(rho, -_RHO_MAX, _RHO_MAX, out=buf("rc", rho))
    # without a gradient, exponents are in base 2 (times log2(e): exp2 is faster than exp)
    kk = torch.mul(rc, rc, out=buf("kk", rc)).neg_().add_(1.0).reciprocal_()
    kk = kk.mul_(0.5 * _LOG2E).sqrt_()
    a = torch.clamp_min(s1, _SIGMA_FLOOR, out=buf("a", s1)).reciprocal_()
    a = a.mul_(math.sqrt(0.5 * _LOG2E))
    g = torch.clamp_min(s2, _SIGMA_FLOOR, out=buf("is2", s2)).reciprocal_()
    g = torch.mul(g, kk, out=buf("g", g, kk))
    hh = torch.mul(rc.mul_(kk).mul_(math.sqrt(2.0 / _LOG2E)), a, out=buf("hh", rc, a))
    return a, g, hh


def _quad(ox: torch.Tensor, oy: torch.Tensor, a, g, hh, tmp: _Scratch) -> torch.Tensor:
    """``(ox a)^2 + (oy g - ox hh)^2`` (minus the exponent) at offset ``(ox, oy)``."""
    xo = torch.mul(ox, a, out=tmp("qx", ox, a))
    do = tmp("qd", xo, oy, g, hh).copy_(oy).mul_(g).addcmul_(ox, hh, value=-1.0)
    return torch.mul(do, do, out=tmp("q", do)).addcmul_(xo, xo)


def _band(
    cols: torch.Tensor,
    liy: torch.Tensor,
    dy: torch.Tensor,
    dx: torch.Tensor,
    a: torch.Tensor,
    g: torch.Tensor,
    hh: torch.Tensor,
    qn: torch.Tensor,
    fast: bool,
    recur: bool,
    bc: tuple[int, int],
    buf: _Scratch,
    dest: torch.Tensor | None,
    phases: tuple | None = None,
) -> torch.Tensor:
    """Resample a band of ``h`` output rows (all ``w`` columns).

    cols: (n, B*C*K*w) values of the window columns for the band's input rows; liy: (K, h)
    rows of ``cols`` of each window row; dy: (K, h, 1, 1, 1, 1) and dx: (K, w) offsets
    q - u; a, g, hh: coefficients of the exponent ``-(dx a)^2 - (dy g - dx hh)^2``, maps
    (h|1, ., ., 1, w|1) or 0-d; qn: (h, ., ., 1, w) minus the exponent of the nearest pixel;
    dest: (h, B, C, w) view of the output to write (None with autograd); phases: ``(P, S,
    [(i0, n, starts)])`` where the rows ``i0::P`` of the band (``n`` of them) read the rows
    ``starts[ky] + S t`` of ``cols``, so that they are a view (no gradient). Works rows-first,
    ``(h, B, C, K, w)`` with K the window columns. Returns (h, B, C, w).
    """
    grad = not buf.enabled
    dx2 = dx * dx  # (K, w)
    K, h = liy.shape
    B, C = bc
    wd = dx.shape[1]
    vshape = (h, B, C, K, wd)  # window values of one window row
    full = _broadcast(qn.shape, g.shape, hh.shape, (h, 1, 1, K, wd))
    fn = (*full[:3], 1, wd)  # a single window column
    num = den = None

    def accumulate(ky: int, w: torch.Tensor) -> None:  # w: (h, ., ., K, w)
        nonlocal num, den
        if phases is not None:  # the window rows are strided views of cols: no gather
            P, S, groups = phases
            first = num is None
            if first:
                num = buf("num", (h, B, C, wd))
                den = torch.sum(w, 3, out=buf("den", (*full[:3], wd)))  # (h, ., ., w)
            else:
                den.add_(torch.sum(w, 3, out=buf("dk", (*full[:3], wd))))
            for i0, n, starts in groups:
                v = cols[starts[ky] : starts[ky] + S * (n - 1) + 1 : S].view(n, B, C, K, wd)
                acc = num[i0::P]  # (n, B, C, w)
                for kx, (wk, vk) in enumerate(zip(w[i0::P].unbind(3), v.unbind(3), strict=True)):
                    if first and kx == 0:
                        torch.mul(wk, vk, out=acc)
                    else:
                        acc.addcmul_(wk, vk)
            return
        v = torch.index_select(cols, 0, liy[ky], out=buf("v", (h, B * C * K * wd)))
        v = v.view(vshape)  # (h, B, C, K, w)
        if grad:
            num = w * v if num is None else torch.addcmul(num, w, v)
            den = w if den is None else den + w
        elif num is None:  # sums over the window row right away: fewer passes over memory
            num = torch.sum(v.mul_(w), 3, out=buf("num", (h, B, C, wd)))  # (h, B, C, w)
            den = torch.sum(w, 3, out=buf("den", (*full[:3], wd)))  # (h, ., ., w)
        else:
            num.add_(torch.sum(v.mul_(w), 3, out=buf("nk", (h, B, C, wd))))
            den.add_(torch.sum(w, 3, out=buf("dk", (*full[:3], wd))))

    a2 = torch.mul(a, a, out=buf("a2", a))  # (h|1, ., ., 1, w|1)
    if recur:
        # All weights lie in [e^-50, e^30] and go by products, with 5 exps per pixel. With
        # X = dx and d = dy g - dx hh, the exponent e = -(X a)^2 - d^2 changes
        #   from window column kx to kx + 1 by -(2 X + 1) a^2 + 2 d hh - hh^2, and that
        #   change by -2 (a^2 + hh^2) per column (window row 0 only);
        #   from window row ky to ky + 1 by -2 g d - g^2, and that change by -2 g^2 per row
        #   and by 2 g hh per column.
        x0 = dx[0]  # (w,) window column 0
        if grad:
            d0 = dy[0] * g - x0 * hh  # (h, ., ., 1, w) d at window row 0, column 0
            hh2 = hh * hh
            step = (-(2.0 * x0 + 1.0) * a2 + 2.0 * d0 * hh - hh2).exp()
            step2 = (-2.0 * (a2 + hh2)).exp()
            wl = [(qn - x0 * x0 * a2 - d0 * d0).exp()]  # weights of window row 0
            for kx in range(1, K):
                wl.append(wl[-1] * step)
                if kx < K - 1:
                    step = step * step2
            rl = [(-2.0 * g * d0 - g * g).exp()]  # ratios of window row 1 to row 0
            step = (2.0 * g * hh).exp()
            for _ in range(1, K):
                rl.append(rl[-1] * step)
            w = torch.cat([t.expand(fn) for t in wl], 3)  # (h, ., ., K, w)
            ratio = torch.cat([t.expand(fn) for t in rl], 3)  # (h, ., ., K, w)
        else:
            d0 = buf("d0", fn).copy_(dy[0]).mul_(g).addcmul_(x0, hh, value=-1.0)
            hh2 = torch.mul(hh, hh, out=buf("hh2", hh))
            w, ratio = buf("w", full), buf("ratio", full)
            e = buf("e0", fn).copy_(qn).addcmul_(x0 * x0, a2, value=-1.0)
            torch.exp2(e.addcmul_(d0, d0, value=-1.0), out=w[:, :, :, :1])
            step = buf("step", fn).copy_(a2).mul_(-(2.0 * x0 + 1.0)).addcmul_(d0, hh, value=2.0)
            step.sub_(hh2).exp2_()
            step2 = torch.add(a2, hh2, out=buf("step2", a2, hh2)).mul_(-2.0).exp2_()
            for kx in range(1, K):
                torch.mul(w[:, :, :, kx - 1 : kx], step, out=w[:, :, :, kx : kx + 1])
                if kx < K - 1:
                    step.mul_(step2)
            gg = torch.mul(g, g, out=buf("gg", g))
            torch.exp2(d0.mul_(g).mul_(-2.0).sub_(gg), out=ratio[:, :, :, :1])
            step = torch.mul(g, hh, out=buf("step2", g, hh)).mul_(2.0).exp2_()
            for kx in range(1, K):
                torch.mul(ratio[:, :, :, kx - 1 : kx], step, out=ratio[:, :, :, kx : kx + 1])
        q = torch.mul(g, g, out=buf("q", g))  # (h|1, ., ., 1, w|1) ratio of successive ratios
        q = (-2.0 * q).exp() if grad else q.mul_(-2.0).exp2_()
        for ky in range(K):
            if ky:
                w = w * ratio if grad else w.mul_(ratio)
                if ky < K - 1:
                    ratio = ratio * q if grad else ratio.mul_(q)
            accumulate(ky, w)
    else:
        if fast:  # exponents relative to the nearest pixel's
            ex = torch.addcmul(qn, dx2, a2, value=-1.0, out=buf("ex", qn, dx2, a2))
        else:  # (h, ., ., K, w) or (h|1, ., ., K, w)
            ex = torch.mul(dx2, a2, out=buf("ex", dx2, a2))
            ex = -ex if grad else ex.neg_()
        rx = torch.mul(dx, hh, out=buf("rx", dx, hh))  # (h|1, ., ., K, w)

        def exponent(ky: int) -> torch.Tensor:  # (h, ., ., K, w) exponents of window row ky
            d = torch.sub(torch.mul(dy[ky], g, out=buf("yg", dy[ky], g)), rx, out=buf("e", full))
            return torch.addcmul(ex, d, d, value=-1.0, out=None if grad else d)

        if not fast:  # exact per-pixel maximum over the window, then exponents relative to it
            with torch.no_grad():
                top = None
                for ky in range(K):
                    e = exponent(ky).amax(3, keepdim=True)  # (h, ., ., 1, w)
                    top = e if top is None else torch.maximum(top, e, out=top)
        for ky in range(K):
            e = exponent(ky)  # (h, ., ., K, w)
            if not fast:
                e = e - top if grad else e.sub_(top)
            # weights below e^-60 (< 1e-26 of the largest, which is ~1) are raised to that
            # floor: it keeps exp out of its slow denormal range, and changes nothing
            e = e.clamp_min(_EXP_FLOOR) if grad else e.clamp_min_(_EXP_FLOOR * _LOG2E)
            accumulate(ky, e.exp() if grad else e.exp2_())  # (h, ., ., K, w) weights
    if grad:
        return num.sum(3) / den.sum(3)  # (h, B, C, w)
    return torch.div(num, den, out=dest)


def rbf_resample(
    x: torch.Tensor,
    sigma1: Param,
    sigma2: Param | None = None,
    rho: Param | None = None,
    *,
    scale: float | tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    r"""Resample with anisotropic Gaussian radial basis function weights.

    Output pixel :math:`i` (row) / :math:`j` (column) sits at the input coordinate

    .. math::
        u = (u_x, u_y), \qquad u_y = (i + \tfrac12)\,\frac{H}{H_{out}} - \tfrac12, \qquad
        u_x = (j + \tfrac12)\,\frac{W}{W_{out}} - \tfrac12

    (input pixel :math:`q` has its centre at coordinate :math:`q`: torch's
    ``align_corners=False`` convention). With :math:`d = q - u = (d_x, d_y)` and

    .. math::
        \Sigma = \begin{pmatrix} \sigma_1^2 & \rho\,\sigma_1\sigma_2 \\
                 \rho\,\sigma_1\sigma_2 & \sigma_2^2 \end{pmatrix}, \qquad
        w(q) = \exp\!\Big(-\tfrac12\, d^\top \Sigma^{-1} d\Big), \qquad
        y(u) = \frac{\sum_q w(q)\, x(q)}{\sum_q w(q)}

    where :math:`d^\top \Sigma^{-1} d = \frac{1}{1-\rho^2}\big(\frac{d_x^2}{\sigma_1^2}
    - \frac{2\rho\, d_x d_y}{\sigma_1\sigma_2} + \frac{d_y^2}{\sigma_2^2}\big)`, and the
    sums run over the window :math:`q_y \in \lfloor u_y\rfloor - R + 1 \ldots \lfloor
    u_y\rfloor + R` (likewise for :math:`q_x`), :math:`R = \max(1, \lceil 3
    \max\sigma\rceil)`, so it always holds the 2 nearest pixels per axis. :math:`\sigma_1,
    \sigma_2, \rho` are taken at the output pixel. Input pixels outside the image are
    mirrored without repeating the edge (clamped along an axis shorter than ``R + 1``).

    The output is a convex combination of the window's pixels, so it stays within their
    min/max. Internally sigmas are clamped to at least 1e-10 and :math:`|\rho|` to at most
    1 - 1e-6, and the exponents are shifted per pixel so that the nearest pixel's (or the
    largest) weight is 1, so the sum of weights is never below ~1: ``sigma -> 0`` gives
    nearest-neighbour sampling (``scale=1`` with tiny sigmas is the identity) and
    ``rho -> +-1`` gives no NaN/Inf, in values or gradients.

    Parameters
    ----------
    x : torch.Tensor
        Image ``(B, C, H, W)``, float32 or float64.
    sigma1 : float or torch.Tensor
        Gaussian standard deviation along x (columns), >= 0, in *input* pixels: a number
        or a map ``(B or 1, 1 or C, h, w)`` on any grid, bilinearly resampled
        (``align_corners=False``) to the output grid.
    sigma2 : float or torch.Tensor, optional
        Standard deviation along y (rows), >= 0, in input pixels; default ``sigma1``.
    rho : float or torch.Tensor, optional
        Correlation of x and y, in [-1, 1]; default 0 (axis-aligned ellipses).
    scale : float or (float, float), keyword-only
        Positive factor, or ``(scale_y, scale_x)``: ``H_out = max(1, round(H * scale_y))``,
        ``W_out = max(1, round(W * scale_x))``. Exactly one of ``scale`` and ``size``.
    size : (int, int), keyword-only
        Output ``(H_out, W_out)``.

    Returns
    -------
    torch.Tensor
        ``(B, C, H_out, W_out)``, same dtype and device as ``x``. Differentiable with
        respect to ``x``, ``sigma1``, ``sigma2`` and ``rho``.

    Raises
    ------
    ValueError
        If both or neither of ``scale`` and ``size`` are given, a scale is not positive
        and finite, ``size`` is not a pair of positive ints, a parameter is out of range,
        not finite or has the wrong batch/channels, or ``x`` is not a finite
        ``(B, C, H, W)`` tensor.
    TypeError
        If ``x`` is not a float32/float64 tensor, or ``scale`` or a parameter is not a
        number (or tensor).

    Notes
    -----
    One window size serves the whole image, so the cost grows with :math:`(2R)^2` and
    thus with the *largest* sigma (upsampling x2 with sigmas <= 1 uses 6 x 6 windows).
    Because :math:`\lfloor u_y\rfloor` depends only on the output row and
    :math:`\lfloor u_x\rfloor` only on the column, the window's pixels are gathered
    separably: columns once per band of output rows, then whole rows per window row (views,
    without copies, where the output rows of each phase of the scale read equally spaced
    input rows, as for integer factors).
    The weights of a window row follow from the previous one by products (the exponent
    is quadratic in the offsets, so its differences are linear and their differences
    constant), with a few exps per pixel; where parameters are too extreme for that to
    stay within floating-point range (sigma -> 0, |rho| -> 1), each weight is an exp of
    its own, relative to the nearest pixel's exponent or, failing that, to the exact
    per-pixel maximum over the window, and weights below :math:`e^{-60}` times the
    largest are raised to that floor (negligible, and it keeps exp fast). The result is
    the formula above up to rounding either way.

    References
    ----------
    .. [1] B. Wronski, "Procedural Kernel Networks", arXiv:2112.09318, 2021 (eq. 12).
    .. [2] B. Wronski et al., "Handheld Multi-Frame Super-Resolution", ACM TOG 38(4), 2019
       (anisotropic Gaussian RBF kernel reconstruction).
    """
    grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (x, sigma1, sigma2, rho)
    )
    check_image(x)
    B, C, H, W = x.shape
    Ho, Wo = _output_size(H, W, scale, size)
    params = ((sigma1, "sigma1", 0.0, None), (sigma2, "sigma2", 0.0, None))
    params += ((0.0 if rho is None else rho, "rho", -1.0, 1.0),)
    maps = [
        None if p is None else _param(p, x, name, lo, hi, (Ho, Wo), grad)
        for p, name, lo, hi in params
    ]
    s1, s2, rr = maps[0], maps[0] if sigma2 is None else maps[1], maps[2]
    maps_, names = (s1, s2, rr), ("m1", "m2", "mr")
    dev, dt = x.device, x.dtype

    R = resampled_radius(
        [m.reshape(1, 1, 1, 1) if m.ndim == 0 else m for m in (s1, s2)],
        (Ho, Wo),
        lambda m: max(1, math.ceil(3.0 * m)),
    )
    K = 2 * R  # window size per axis

    iy, oy, ky = _axis(H, Ho, R)  # (K, Ho) input rows, (K, Ho) offsets, (Ho,) nearest
    ix, ox, kx = _axis(W, Wo, R)
    ny = oy.gather(0, ky[None])[0].to(device=dev, dtype=dt)[:, None, None, None, None]
    nx = ox.gather(0, kx[None])[0].to(device=dev, dtype=dt)  # (Wo,)
    dy = oy.to(device=dev, dtype=dt)[:, :, None, None, None, None]  # (K, Ho, 1, 1, 1, 1)
    dx = ox.to(device=dev, dtype=dt)  # (K, Wo)

    tmp = _Scratch(x, enabled=True)

    iy_min, iy_max = iy.amin(0).tolist(), iy.amax(0).tolist()
    iy_cpu, iy = iy, iy.to(dev)
    lix = ix.reshape(-1).to(dev)  # (K*Wo,)
    depth = K * (2 * B * C + 4) * (3 if grad else 1)
    buf = _Scratch(x, enabled=not grad)
    out = None if grad else x.new_empty(B, C, Ho, Wo)
    bands = []
    for r0, r1 in row_tiles(Ho, Wo, depth, target=_TILE_TARGET):
        bm = [_band_map(m, r0, r1, (Ho, Wo), buf, n) for m, n in zip(maps_, names, strict=True)]
        bm[1] = bm[0] if s2 is s1 else bm[1]
        ab, gb, hb = _coefficients(*bm, buf)
        # Bounds that pick the band's way of computing: offsets are |dx|, |dy| <= 1/2 for
        # the nearest pixel and < R in the window, so the exponent -(dx a)^2 - (dy g - dx hh)^2
        # is >= -(o a)^2 - (o (g + |hh|))^2 for offsets up to o.
        with torch.no_grad():
            am, gm = float(ab.max()), float(gb.max())
            hm = max(float(hb.max()), -float(hb.min()))
        unit = 1.0 if grad else _LOG2E  # exponents in base 2 without a gradient
        fast = (0.5 * am) ** 2 + (0.5 * (gm + hm)) ** 2 <= _FAST_SHIFT * unit
        recur = fast and (R * am) ** 2 + (R * (gm + hm)) ** 2 <= _RECUR_LOW * unit
        recur = recur and 2.0 * max(gm * gm, am * am + hm * hm, gm * hm) <= _RECUR_STEP * unit
        y0, y1 = min(iy_min[r0:r1]), max(iy_max[r0:r1]) + 1
        with torch.no_grad():  # the shift cancels in the ratio: it needs no gradient
            qn = _quad(nx, ny[r0:r1], ab, gb, hb, tmp)  # (h, ., ., 1, Wo) -(nearest exponent)
        xs = x[:, :, y0:y1].permute(2, 0, 1, 3).reshape(-1, W)  # ((y1-y0)*B*C, W)
        cols = torch.index_select(xs, 1, lix, out=buf("cols", (xs.shape[0], K * Wo)))
        t = _band(
            cols.view(y1 - y0, -1),  # (n, B*C*K*Wo)
            iy[:, r0:r1] - y0,
            dy[:, r0:r1],
            dx,
            ab,
            gb,
            hb,
            qn,
            fast,
            recur,
            (B, C),
            buf,
            None if grad else out[:, :, r0:r1].permute(2, 0, 1, 3),
            None if grad else _phases(iy_cpu[:, r0:r1] - y0, H, Ho),
        )
        if grad:
            bands.append(t.permute(1, 2, 0, 3))  # (B, C, h, Wo)
    if grad:
        return bands[0] if len(bands) == 1 else torch.cat(bands, dim=2)
    return out


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


def _band_map(m: torch.Tensor, r0: int, r1: int, size, buf: _Scratch, name: str):
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


class RBFResample(nn.Module):
    """Thin module around :func:`rbf_resample`: ``RBFResample(scale=2)(x, s1, s2, rho)``."""

    def __init__(
        self,
        scale: float | tuple[float, float] | None = None,
        size: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.scale, self.size = scale, size

    def forward(
        self,
        x: torch.Tensor,
        sigma1: Param,
        sigma2: Param | None = None,
        rho: Param | None = None,
    ) -> torch.Tensor:
        return rbf_resample(x, sigma1, sigma2, rho, scale=self.scale, size=self.size)
