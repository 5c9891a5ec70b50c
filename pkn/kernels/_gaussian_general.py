"""Gaussian blur with any ``rho``: one band of rows (:func:`_general_tile`).

With the coefficients of its exponent (:func:`_coefficients`) and the running powers of
the cross term (:func:`_powers`); the band's plan is made in :mod:`._gaussian_plan`.
"""

from __future__ import annotations

import math

import torch

from ._gaussian_plan import _kept_offsets, _product_cap
from ._gaussian_separable import (
    _LOG2E,
    _SIGMA_FLOOR,
    _acc,
    _add,
    _exp_limit,
    _no_scratch,
    _shifts,
    _squares,
)

_RHO_CAP = 1.0 - 1e-6  # keeps 1 / (1 - rho^2) finite: rho -> +-1 never gives NaN


def _powers(
    b: torch.Tensor, r: int, out: torch.Tensor | None, cap: float = math.inf
) -> torch.Tensor:
    """``exp(b d)`` (first row) and ``exp(-b d)`` (second) for ``d = 1..r``: ``(2, r, *b.shape)``;
    into ``out`` only ``2^(b d)``, ``(r, *b.shape)`` (divisions give the negative powers),
    each clamped to ``[2^-cap, 2^cap]``.

    Built as running products of ``exp(+-b)`` (relative error below ``r`` ulps).
    """
    if out is None:  # out of place, for autograd
        e1 = torch.stack((b, -b)).exp()  # (2, *shape)
        rows = [e1]
        for _ in range(r - 1):
            rows.append(rows[-1] * e1)
        return torch.stack(rows, 1)
    lo, hi = 2.0**-cap, 2.0**cap
    torch.exp2(b, out=out[0])
    if cap < math.inf:
        out[0].clamp_(lo, hi)
    for d in range(1, r):
        torch.mul(out[d - 1], out[0], out=out[d])
        if cap < math.inf:
            out[d].clamp_(lo, hi)
    return out


def _coefficients(
    s1: torch.Tensor, s2: torch.Tensor, rho: torch.Tensor, new
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``a = -1/(2 s1^2 (1-r^2))``, ``b = r / (s1 s2 (1-r^2))``, ``c = -1/(2 s2^2 (1-r^2))``,
    times ``log2(e)`` with scratch buffers (no gradient: base-2 exponents).

    Sigmas are clamped to at least ``1e-10`` and ``|r|`` to at most ``1 - 1e-6``; ``1 - r^2``
    is taken as ``(1 - r)(1 + r)`` (accurate near ``|r| = 1``).
    """
    if new is _no_scratch:  # autograd: out of place
        u1 = s1.clamp_min(_SIGMA_FLOOR).reciprocal()  # 1 / s1
        u2 = s2.clamp_min(_SIGMA_FLOOR).reciprocal()  # 1 / s2
        rc = rho.clamp(-_RHO_CAP, _RHO_CAP)
        k = ((1.0 - rc) * (1.0 + rc)).reciprocal()  # 1 / (1 - r^2)
        return -0.5 * k * u1.square(), rc * k * u1 * u2, -0.5 * k * u2.square()
    u1 = torch.clamp(s1, min=_SIGMA_FLOOR, out=new("u1", s1.shape)).reciprocal_()
    u2 = torch.clamp(s2, min=_SIGMA_FLOOR, out=new("u2", s2.shape)).reciprocal_()
    rc = torch.clamp(rho, -_RHO_CAP, _RHO_CAP, out=new("rc", rho.shape))
    k = torch.add(rc, 1.0, out=new("k", rho.shape))  # 1 + r
    k.mul_(torch.sub(rc.new_ones(()), rc, out=new("k1", rho.shape)))  # (1 + r)(1 - r)
    k = torch.div(rc.new_full((), -0.5 * _LOG2E), k, out=k)  # -log2(e) / (2 (1 - r^2))
    # scratch buffers of the broadcast shape of their operands
    ku1 = torch.mul(k, u1, out=new("a", k, u1))
    t = torch.mul(u2, rc, out=new("t", u2, rc)).mul_(-2.0)
    b = torch.mul(ku1, t, out=new("b", k, u1, u2))  # (addcmul with a 0-d zero is ~10x slower)
    c = torch.mul(k, u2, out=new("c", k, u2)).mul_(u2)
    return ku1.mul_(u1), b, c


def _general_tile(
    xt: torch.Tensor,
    r: int,
    s1: torch.Tensor,
    s2: torch.Tensor,
    rho: torch.Tensor,
    *,
    out: torch.Tensor | None,
    new,
) -> torch.Tensor:
    r"""One band of rows, any ``rho``: offsets ``o`` and ``-o`` share a weight.

    With :math:`a = -1/(2 s_1^2 (1-r^2))`, :math:`c = -1/(2 s_2^2 (1-r^2))` and
    :math:`b = r / (s_1 s_2 (1 - r^2))`, the exponent is :math:`a d_x^2 + b d_x d_y + c
    d_y^2`. ``out`` and ``new`` as for :func:`_separable_tile`.
    """
    grad = out is None
    a, b, c = _coefficients(s1, s2, rho, new)  # (B|1, C'|1, h|1, W|1), no grad: base 2
    shape = b.shape  # of the weights: b depends on all three parameters
    xs = _shifts(xt, r) if grad else new.views("xs", xt, lambda t: _shifts(t, r))
    xc = xs[r][r]  # (B, C, h, W) centre pixels
    pbuf = new("pair", xc.shape)

    def pair(dy: int, dx: int, dst: torch.Tensor | None = pbuf) -> torch.Tensor:
        """``x(p + o) + x(p - o)`` for ``o = (dx, dy)``, (B, C, h, W)."""
        return _add(xs[r + dy][r + dx], xs[r - dy][r - dx], dst)

    with torch.no_grad():
        (amin, amax), (bmin, bmax), (cmin, cmax), (xmin, xmax) = (
            (float(v) for v in torch.aminmax(t)) for t in (a, b, c, xt)
        )
        xbig = math.log1p((2 * r + 1) * max(xmax, -xmin))  # bound on log(row sum / weight)
        bounds = (amin, amax, bmin, bmax, cmin, cmax)
        if grad:
            # Products (below) with every factor a normal number of the dtype, and the row
            # sums (up to e^{(|a|+|b|) r^2} (2r+1) max|x|) finite.
            big = r * r * (max(bmax, -bmin) - amin)  # (|a|+|b|) r^2
            limit = _exp_limit(xt.dtype)
            fits = big + xbig <= limit and -r * r * cmin <= limit
        else:  # base 2; factors may underflow where the weights are negligible
            rmin, rmax = (float(v) for v in torch.aminmax(rho))
            cap = _product_cap(bounds, max(-rmin, rmax), r, xbig * _LOG2E, xt.dtype)
            fits = cap is not None
    ta, tc = (new("ta", (2, *a.shape)), new("tc", (2, *c.shape))) if fits else (None, None)
    gx = _squares(a, r, new("gx", (r, *a.shape)), ta)  # g_x(d) = exp(a d^2), by products
    gy = _squares(c, r, new("gy", (r, *c.shape)), tc)  # g_y(d) = exp(c d^2)
    # one map per d (without grad the views are made once per buffer, not per band)
    gxd, gyd = (
        t.unbind(0) if grad else new.views(n, t, torch.unbind) for t, n in ((gx, "gx"), (gy, "gy"))
    )
    # offsets whose weights are negligible in the whole band are left out (no gradient)
    kept = None if grad else _kept_offsets(bounds, r, xt.dtype)
    k0 = r if grad else max(1, kept[0][0][0][1])  # row dy = 0: d = 1..k0 (d = 1 always)
    # the centre (weight 1) and the row dy = 0 (no cross term)
    num = xc.clone() if grad else torch.addcmul(xc, gxd[0], pair(0, 1), out=out)
    for d in range(1 if grad else 2, k0 + 1):
        num = _acc(num, gxd[d - 1], pair(0, d), grad)
    # one-sided sum of the weights, row dy = 0 (the rows dy > 0 are added row by row)
    gxs = gx[:k0].expand(k0, *shape)
    acc = gxs.sum(0) if grad else torch.sum(gxs, 0, out=new("acc", shape))
    if fits:
        # w(dx, dy) = g_y(dy) A_dx(dy) with A_dx(dy) = exp(a dx^2 + b dx dy) = g_x(dx) V_dx^dy,
        # V_dx = e^{b dx}: one product per offset updates A, and the row sum over dx is
        # weighted by g_y(dy) once.
        ds = (*range(1, r + 1), *range(-1, -r - 1, -1))  # the order of the stacks below
        if grad:
            vs = _powers(b, r, None)  # V_d = e^{b d}, V_-d = e^{-b d}: (2, r, ...)
            av = vs * gx  # A_dx(1) = g_x(|dx|) V_dx
        else:  # V_d and 1 / V_d, (r, ...) each: A_-d is multiplied by 1 / V_d
            vs = _powers(b, r, new("vs", (r, *shape)), cap)  # clamped where cap < inf
            top = 2.0**cap if cap < math.inf else None  # A's clamp after every update
            av = new("av", (2, r, *shape))  # filled offset by offset in the loop below
        rbuf, dbuf = new("row", xc.shape), new("rden", shape)
        if not grad:
            adf = new.views("av", av, lambda t: t.flatten(0, 1).unbind(0))  # A_d, then A_-d
            vsf = new.views("vs", vs, lambda t: t.unbind(0))  # V_d
            # 1 / V_d, once per band: the r^2 updates of A_-d multiply (faster than dividing)
            ws = torch.reciprocal(vs, out=new("ws", (r, *shape)))
            wsf = new.views("ws", ws, lambda t: t.unbind(0))
        for dy in range(1, r + 1):
            if grad:
                av = av * vs if dy > 1 else av  # A_dx(dy)
                row = pair(dy, 0, None)  # dx = 0: A = 1
                for d, ad in zip(ds, av.flatten(0, 1).unbind(0), strict=True):
                    row = row + ad * pair(dy, d, None)
                num = num + gyd[dy - 1] * row
                acc = acc + gyd[dy - 1] * (1.0 + av.sum((0, 1)))
                continue
            # Offset by offset: A_dx(dy) = A_dx(dy - 1) V_dx is updated right before it is
            # used and summed, while it is still in cache (A is the largest stack here).
            spans, updates = kept[dy]  # per side (dx > 0, dx < 0): d = lo..hi
            up, down = xs[r + dy], xs[r - dy]  # rows p + dy and p - dy, by column offset
            row = torch.add(up[r], down[r], out=rbuf)  # dx = 0: A = 1
            den = None  # 1 + the sum of the kept A_dx(dy)
            for side, ((lo, hi), (ulo, uhi)) in enumerate(zip(spans, updates, strict=True)):
                for d in range(ulo, uhi + 1):
                    ad = adf[side * r + d - 1]
                    if dy == 1:  # A_dx(1) = g_x(|dx|) V_dx
                        torch.mul(gxd[d - 1], (vsf if side == 0 else wsf)[d - 1], out=ad)
                    else:
                        ad.mul_((vsf if side == 0 else wsf)[d - 1])
                        if top is not None:  # see _product_cap
                            ad.clamp_(max=top)
                    if lo <= d <= hi:
                        e = d if side == 0 else -d  # dx
                        row.addcmul_(ad, torch.add(up[r + e], down[r - e], out=pbuf))
                        # 1 + the kept A_dx(dy) (dx = 0: A = 1)
                        den = torch.add(ad, 1.0, out=dbuf) if den is None else den.add_(ad)
            num.addcmul_(gyd[dy - 1], row)
            if den is None:
                acc.add_(gyd[dy - 1])
            else:
                acc.addcmul_(gyd[dy - 1], den)
    else:
        # One exponential per offset; the exponent is <= 0 up to rounding (clamped).
        wbuf = new("w", shape)
        for dy in range(1, r + 1):
            num = _acc(num, gyd[dy - 1], pair(dy, 0), grad)  # dx = 0: no cross term
            acc = acc + gyd[dy - 1] if grad else acc.add_(gyd[dy - 1])
            base, lin = c * float(dy * dy), b * float(dy)  # c dy^2, b dy
            dxs = (*range(-r, 0), *range(1, r + 1))
            if not grad:  # the kept offsets only
                (lo0, hi0), (lo1, hi1) = kept[dy][0]
                dxs = (*range(-hi1, -lo1 + 1), *range(lo0, hi0 + 1))
            for dx in dxs:
                if grad:
                    w = (base + a * float(dx * dx) + lin * float(dx)).clamp(max=0.0).exp()
                else:
                    w = torch.add(base, a, alpha=float(dx * dx), out=wbuf)
                    w = w.add_(lin, alpha=float(dx)).clamp_(max=0.0).exp2_()
                num = _acc(num, w, pair(dy, dx), grad)
                acc = acc + w if grad else acc.add_(w)
    if grad:
        return num / (1.0 + 2.0 * acc)
    return num.div_(acc.mul_(2.0).add_(1.0))
