"""Weights of :func:`~pkn.kernels.rbf.rbf_resample` for one band of output rows: the
coefficients of the exponent (:func:`_coefficients`, :func:`_quad`) and the weighted sums
over the window (:func:`_band`)."""

from __future__ import annotations

import math

import torch

from ._band import Scratch, broadcast_shape

_SIGMA_FLOOR = 1e-10  # keeps 1 / sigma finite: sigma -> 0 is nearest-neighbour sampling
_RHO_MAX = 1.0 - 1e-6  # keeps 1 / (1 - rho^2) finite: rho -> +-1 never gives NaN/Inf
# Where weights are not products (see rbf._RECUR_LOW), exponents (relative to the largest,
# ~0) are clamped to this.
_EXP_FLOOR = -60.0
_LOG2E = 1.0 / math.log(2.0)


def _coefficients(s1, s2, rho, buf: Scratch) -> tuple[torch.Tensor, ...]:
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


def _quad(ox: torch.Tensor, oy: torch.Tensor, a, g, hh, tmp: Scratch) -> torch.Tensor:
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
    buf: Scratch,
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
    full = broadcast_shape(qn.shape, g.shape, hh.shape, (h, 1, 1, K, wd))
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
