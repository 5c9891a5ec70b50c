"""Gaussian blur with ``rho = 0``: one band of rows summed separably (:func:`_separable_tile`).

Also the building blocks it shares with the any-rho path (:mod:`._gaussian_general`): the
exponent range of a dtype, the no-scratch sentinel of the autograd path, in-place sums,
shifted views of a padded band and the Gaussian factors ``exp(q d^2)``.
"""

from __future__ import annotations

import math

import torch

_SIGMA_FLOOR = 1e-10  # keeps 1 / sigma^2 finite: sigma -> 0 is the identity, never NaN
# Without a gradient, exponents are kept in base 2 (times log2(e)): exp2 is faster than exp.
_LOG2E = 1.0 / math.log(2.0)


def _exp_limit(dtype: torch.dtype) -> float:
    """Largest |exponent| whose exp and exp(-) stay normal numbers of ``dtype``, with margin."""
    info = torch.finfo(dtype)
    return 0.9 * min(math.log(info.max), -math.log(info.tiny))


_EM_SIGMA = 64.0  # tails of sigmas >= this are summed in closed form (Euler-Maclaurin)
_DIRECT_SPAN = 40  # below it, terms beyond 40 sigma (< e^-800) are left out of the sums
_CHUNK = 32  # terms summed at a time (bounds the memory of the direct sums)


def _tail(s: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    r"""``sum_{d=lo}^{hi} exp(-d^2 / (2 s^2))`` per element of ``s`` (float64, differentiable).

    Used to *fold* a window beyond the image (:func:`~pkn.kernels.gaussian.gaussian`): every
    offset ``d >= lo`` reads the same (edge-replicated) pixel, so their weights add up.
    Sigmas below ``_EM_SIGMA`` are summed term by term (up to ``40 s`` past ``lo``: later
    terms are below ``e^-800``), larger ones by the Euler-Maclaurin formula with the
    first, third and fifth derivative corrections, whose remainder is below
    ``1e-3 s^-5``, about ``1e-12`` of a weight sum (which is at least ``s``): both agree
    with the plain sum to float64 rounding. The cost is bounded by ``_EM_SIGMA`` whatever
    ``hi``.
    """
    s64 = s.double().clamp_min(_SIGMA_FLOOR)
    big = s64 >= _EM_SIGMA
    # direct sums, the large sigmas replaced by a harmless value (no NaN in gradients)
    sd = torch.where(big, torch.ones_like(s64), s64)
    inv = sd.square().reciprocal().mul(-0.5)  # -1 / (2 s^2)
    stop = min(hi, lo + math.ceil(_DIRECT_SPAN * _EM_SIGMA))
    direct = torch.zeros_like(s64)
    for d0 in range(lo, stop + 1 if not bool(big.all()) else lo, _CHUNK):
        d = torch.arange(d0, min(stop, d0 + _CHUNK - 1) + 1, dtype=torch.float64, device=s.device)
        d2 = d.square().view(-1, *([1] * s64.ndim))
        direct = direct + (inv.unsqueeze(0) * d2).exp().sum(0)
    if not bool(big.any()):
        return direct
    se = torch.where(big, s64, torch.full_like(s64, _EM_SIGMA))

    def derivatives(t: float) -> tuple[torch.Tensor, ...]:
        """f and its first, third and fifth derivatives at t (Hermite polynomials)."""
        u = t / se
        e = (-0.5 * u * u).exp()
        f1 = -u / se * e
        f3 = -(u**3 - 3 * u) / se**3 * e
        f5 = -(u**5 - 10 * u**3 + 15 * u) / se**5 * e
        return e, f1, f3, f5

    c = se * math.sqrt(2.0)
    integral = (
        se
        * math.sqrt(0.5 * math.pi)
        * (torch.special.erfc(lo / c) - torch.special.erfc(float(hi) / c))
    )
    ea, a1, a3, a5 = derivatives(float(lo))
    eb, b1, b3, b5 = derivatives(float(hi))
    em = integral + 0.5 * (ea + eb) + (b1 - a1) / 12.0 - (b3 - a3) / 720.0 + (b5 - a5) / 30240.0
    return torch.where(big, em, direct)


def _no_scratch(name: str, shape: tuple[int, ...]) -> None:
    """With a gradient, every operation makes a new tensor (autograd keeps them)."""
    return None


def _acc(acc: torch.Tensor, w: torch.Tensor, v: torch.Tensor, grad: bool) -> torch.Tensor:
    """``acc + w * v`` (in place unless a gradient is needed)."""
    return acc + w * v if grad else acc.addcmul_(w, v)


def _add(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """``a + b``, into ``out`` when one is given."""
    return a + b if out is None else torch.add(a, b, out=out)


def _shifts(xt: torch.Tensor, r: int) -> list[tuple[torch.Tensor, ...]]:
    """Views ``v[r + dy][r + dx]`` of a padded band ``(B, C, h+2r, W+2r)``: ``x(p + (dx, dy))``.

    Made in a few calls (unfold + unbind) rather than two slices per offset.
    """
    h, W = xt.shape[-2] - 2 * r, xt.shape[-1] - 2 * r
    grid = xt.unfold(2, h, 1).unfold(3, W, 1).permute(2, 3, 0, 1, 4, 5)  # (2r+1, 2r+1, B, C, h, W)
    return [row.unbind(0) for row in grid.unbind(0)]


def _squares(
    q: torch.Tensor, r: int, out: torch.Tensor | None, tmp: torch.Tensor | None = None
) -> torch.Tensor:
    """``exp(q d^2)`` for ``d = 1..r``, stacked: ``(r, *q.shape)``; ``2^(q d^2)`` into ``out``.

    Given ``tmp`` (scratch ``(2, *q.shape)``; only where factors that underflow feed
    negligible weights alone, see ``_gaussian_general._product_cap``): running products of
    ``E = 2^q``, ``E^((d+1)^2) = E^(d^2) E^(2d+1)``, with a relative error of a few ulps
    per factor, as for one power.
    """
    if out is None:  # out of place, for autograd
        d2 = torch.arange(1, r + 1, dtype=q.dtype, device=q.device).square()
        return (q.unsqueeze(0) * d2.view(-1, *([1] * q.ndim))).exp()
    if tmp is None:
        d2 = torch.arange(1, r + 1, dtype=q.dtype, device=q.device).square()
        return torch.mul(q.unsqueeze(0), d2.view(-1, *([1] * q.ndim)), out=out).exp2_()
    e = torch.exp2(q, out=out[0])  # E
    if r > 1:
        e2 = torch.mul(e, e, out=tmp[0])  # E^2
        step = torch.mul(e2, e, out=tmp[1])  # E^(2d+1)
        for d in range(1, r):
            if d > 1:
                step.mul_(e2)
            torch.mul(out[d - 1], step, out=out[d])  # E^((d+1)^2)
    return out


def _separable_tile(
    xt: torch.Tensor,
    r: int,
    s1: torch.Tensor,
    s2: torch.Tensor,
    *,
    same: bool,
    out: torch.Tensor | None,
    new,
    fold: int | None = None,
) -> torch.Tensor:
    """One band of rows with ``rho = 0``: :math:`w_o = g_x(d_x) g_y(d_y)`, summed separably.

    ``out`` receives the result (None: out-of-place ops for autograd); ``new(name,
    shape)`` gives scratch buffers (None with autograd). ``fold``: the window's true radius
    when ``r`` is the folded one (offsets ``|d| >= r`` all read the edge-replicated pixel
    at ``r``, whose weight is then the sum of theirs, :func:`_tail`).
    """
    grad = out is None
    limit = _exp_limit(xt.dtype) * _LOG2E

    def gauss(s: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``exp(-d^2 / (2 s^2))`` for ``d = 1..r`` and ``1 + 2 sum_d`` of them."""
        if grad:
            g = _squares(s.clamp_min(_SIGMA_FLOOR).square().reciprocal().mul(-0.5), r, None)
            if fold is not None:
                g = torch.cat((g[:-1], _tail(s, r, fold).to(g.dtype)[None]))
            return g, 1.0 + 2.0 * g.sum(0)
        tail = None if fold is None else _tail(s, r, fold).to(s.dtype)
        q = torch.clamp(s, min=_SIGMA_FLOOR, out=new("q" + name, s.shape))
        q = q.square_().reciprocal_().mul_(-0.5 * _LOG2E)  # base-2 exponent of d = 1
        with torch.no_grad():  # products where 2^(q r^2) stays normal
            tmp = new("t", (2, *s.shape)) if -r * r * float(q.min()) <= limit else None
        g = _squares(q, r, new("g" + name, (r, *s.shape)), tmp)
        if tail is not None:
            g[r - 1].copy_(tail)
        return g, torch.sum(g, 0, out=q).mul_(2.0).add_(1.0)

    gx, nx = gauss(s1, "x")  # g_x(d) = exp(-d^2 / (2 s1^2))
    gy, ny = (gx, nx) if same else gauss(s2, "y")
    den = nx * ny  # sum of all weights
    xs = _shifts(xt, r) if grad else new.views("xs", xt, lambda t: _shifts(t, r))
    shape = xs[r][r].shape  # (B, C, h, W)
    buf = new("pair", shape)

    def row(dy: int, dst: torch.Tensor | None) -> torch.Tensor:
        """``sum_dx g_x(dx) x(p + (dx, dy))`` for the band, (B, C, h, W)."""
        xr = xs[r + dy]  # (2r+1) x (B, C, h, W)
        t = xr[r].clone() if dst is None else dst.copy_(xr[r])
        for d in range(1, r + 1):
            t = _acc(t, gx[d - 1], _add(xr[r + d], xr[r - d], buf), grad)
        return t

    num = row(0, out)  # (B, C, h, W)
    for dy in range(1, r + 1):
        up = row(-dy, new("up", shape))
        t = _add(row(dy, new("down", shape)), up, None if grad else up)
        num = _acc(num, gy[dy - 1], t, grad)
    return num / den if grad else num.div_(den)
