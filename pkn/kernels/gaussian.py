"""Gaussian blur with per-pixel (an)isotropic sigmas and correlation."""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from ._band import as_map_fast, pad_band, resample_rows, resampled_radius
from ._common import Param, as_map, check_image, odd_int, pad, row_tiles

__all__ = ["Gaussian", "gaussian"]

_SIGMA_FLOOR = 1e-10  # keeps 1 / sigma^2 finite: sigma -> 0 is the identity, never NaN
_RHO_CAP = 1.0 - 1e-6  # keeps 1 / (1 - rho^2) finite: rho -> +-1 never gives NaN
_TRUNCATE = 3.0  # default window radius in sigmas
_TILE = 1 << 17  # elements per band of rows and per map (see row_tiles)
# Without a gradient, exponents are kept in base 2 (times log2(e)): exp2 is faster than exp.
_LOG2E = 1.0 / math.log(2.0)


def _exp_limit(dtype: torch.dtype) -> float:
    """Largest |exponent| whose exp and exp(-) stay normal numbers of ``dtype``, with margin."""
    info = torch.finfo(dtype)
    return 0.9 * min(math.log(info.max), -math.log(info.tiny))


def _map(p: Param, x: torch.Tensor, name: str, grad: bool, **limits: float) -> torch.Tensor:
    """``as_map``, keeping axes that are constant (numbers, 1x1 maps) at size 1.

    Constant parameters then cost one value instead of a full map in every operation below.
    Without ``grad``, maps are validated (``as_map_fast``) but kept at their own resolution:
    :func:`_band` resamples them band by band.
    """
    if grad:
        m = as_map(p, x, name, **limits)
    else:
        own = tuple(p.shape[-2:]) if isinstance(p, torch.Tensor) and p.ndim == 4 else None
        m = as_map_fast(p, x, name, size=own, **limits)
    index = tuple(
        slice(0, 1) if m.stride(i) == 0 and m.shape[i] > 1 else slice(None) for i in range(4)
    )
    return m[index]


def _band(m: torch.Tensor, r0: int, r1: int, size: tuple[int, int], new, name: str):
    """Rows ``r0:r1`` of a map bilinearly resampled to ``size`` (scratch ``name``), or a view
    when no axis needs resampling (full size, or size 1: broadcast)."""
    (h, w), (H, W) = m.shape[-2:], size
    if h in (1, H) and w in (1, W):
        return _rows(m, r0, r1)
    tmp = new(name + "t", (*m.shape[:2], r1 - r0, w))
    return resample_rows(m, size, r0, r1, out=new(name, (*m.shape[:2], r1 - r0, W)), tmp=tmp)


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """``torch.broadcast_shapes`` of 4-d shapes, without its Python overhead."""
    return tuple(0 if 0 in d else max(d) for d in zip(*shapes, strict=True))


def _rows(m: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    """Rows ``r0:r1`` of a map, or the map itself when it is constant along H."""
    return m if m.shape[-2] == 1 else m[:, :, r0:r1]


class _Scratch:
    """Reusable buffers for the no-grad path (fresh large allocations cost page faults).

    ``scratch(name, shape)`` is a contiguous tensor of that shape, sharing the storage
    of every earlier request with the same name. Without a gradient the bands of rows
    are filled one after the other, so the buffers of one band are free for the next.
    """

    def __init__(self, like: torch.Tensor):
        self.like, self.store, self.cache = like, {}, {}

    def __call__(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
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

    Given ``tmp`` (scratch ``(2, *q.shape)``; only where ``2^(q r^2)`` is a normal number, so
    that no factor underflows): running products of ``E = 2^q``, ``E^((d+1)^2) = E^(d^2)
    E^(2d+1)``, with a relative error of a few ulps per factor, as for one power.
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


def _powers(b: torch.Tensor, r: int, out: torch.Tensor | None) -> torch.Tensor:
    """``exp(b d)`` (first row) and ``exp(-b d)`` (second) for ``d = 1..r``: ``(2, r, *b.shape)``;
    into ``out`` only ``2^(b d)``, ``(r, *b.shape)`` (divisions give the negative powers).

    Built as running products of ``exp(+-b)`` (relative error below ``r`` ulps).
    """
    if out is None:  # out of place, for autograd
        e1 = torch.stack((b, -b)).exp()  # (2, *shape)
        rows = [e1]
        for _ in range(r - 1):
            rows.append(rows[-1] * e1)
        return torch.stack(rows, 1)
    torch.exp2(b, out=out[0])
    for d in range(1, r):
        torch.mul(out[d - 1], out[0], out=out[d])
    return out


def gaussian(
    x: torch.Tensor,
    sigma1: Param,
    sigma2: Param | None = None,
    rho: Param | None = None,
    *,
    size: int | None = None,
) -> torch.Tensor:
    r"""Gaussian blur whose sigmas and correlation vary from pixel to pixel.

    Every output pixel :math:`p` is a normalized weighted mean of the ``size x size``
    window around it, with the weights of a Gaussian of covariance

    .. math:: \Sigma(p) = \begin{pmatrix} s_1^2 & r s_1 s_2 \\ r s_1 s_2 & s_2^2
              \end{pmatrix}

    over the offset :math:`o = (d_x, d_y)` (:math:`s_1 = \sigma_1(p)` along x, i.e.
    columns; :math:`s_2 = \sigma_2(p)` along y, i.e. rows; :math:`r = \rho(p)` their
    correlation):

    .. math::
        w_o(p) = \exp\!\Big(-\tfrac12\, o^\top \Sigma(p)^{-1} o\Big)
               = \exp\!\Big(-\frac{(d_x/s_1)^2 - 2 r (d_x/s_1)(d_y/s_2) + (d_y/s_2)^2}
                                  {2\,(1 - r^2)}\Big), \qquad
        y(p) = \frac{\sum_o w_o(p)\, x(p+o)}{\sum_o w_o(p)}.

    The centre weight is 1, so the sum of weights is at least 1 and the output is a
    convex combination of the window: it lies within the window's min/max. Inside,
    sigmas are clamped to at least ``1e-10`` and :math:`|r|` to at most ``1 - 1e-6``:
    ``sigma -> 0`` gives the identity (along that axis) and :math:`r \to \pm 1` a
    blur along a diagonal line, never NaN/Inf. Borders are mirrored (without repeating
    the edge pixel; edge replication for images smaller than the window radius).
    Because the weights are normalized over the truncated window, a constant
    parameter gives exactly a (truncated, renormalized) Gaussian convolution.

    Parameters
    ----------
    x : torch.Tensor
        Image ``(B, C, H, W)``, float32 or float64.
    sigma1 : float or torch.Tensor
        Standard deviation along x (columns), >= 0, in pixels: a number or a map
        ``(B or 1, 1 or C, h, w)`` at any resolution (bilinearly resampled).
    sigma2 : float or torch.Tensor, optional
        Standard deviation along y (rows), >= 0, in pixels, same forms. Default: the
        isotropic blur, ``sigma2 = sigma1`` and ``rho = 0``.
    rho : float or torch.Tensor, optional
        Correlation of the x and y offsets, in [-1, 1], same forms; default 0. Needs
        ``sigma2`` (pass ``sigma2=sigma1`` for equal sigmas).
    size : int, optional
        Odd side of the window. Default ``2 * ceil(3 * max sigma) + 1`` with the
        largest value of both sigma maps (at least 1).

    Returns
    -------
    torch.Tensor
        Blurred image, same shape, dtype and device as ``x``. Differentiable with
        respect to ``x``, ``sigma1``, ``sigma2`` and ``rho``.

    Notes
    -----
    With ``rho`` left at 0 the weights factor as :math:`w_o = g_x(d_x)\,g_y(d_y)` and
    the sums are taken separably. Otherwise :math:`w_o = g_x(d_x)\, g_y(d_y)\,
    e^{b\, d_x d_y}` (:math:`b = r / (s_1 s_2 (1 - r^2))`) is built with products
    where these factors stay within the floating-point range, and with one
    exponential per offset elsewhere (tiny sigmas or :math:`|r|` near 1). Near
    :math:`|r| = 1` with large sigmas, float32 weights lose precision (the exponent
    is a difference of large terms).

    References
    ----------
    .. [1] B. Wronski, "Procedural Kernel Networks", arXiv:2112.09318, 2021 (eq. 12).
    """
    grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (x, sigma1, sigma2, rho)
    )
    check_image(x)
    if sigma2 is None and rho is not None:
        raise ValueError(
            "rho needs sigma2: pass sigma2=sigma1 for a correlated Gaussian with equal "
            "sigmas (sigma2=None means the isotropic blur, rho = 0)."
        )
    B, C, H, W = x.shape
    s1 = _map(sigma1, x, "sigma1", grad, low=0.0)
    s2 = s1 if sigma2 is None else _map(sigma2, x, "sigma2", grad, low=0.0)
    rh = None if rho is None else _map(rho, x, "rho", grad, low=-1.0, high=1.0)
    if size is None:
        r = resampled_radius([s1, s2], (H, W), lambda m: math.ceil(_TRUNCATE * m))
    else:
        r = odd_int(size, "size") // 2
    if r == 0:  # 1x1 window: the identity
        return x.clone()
    separable = rh is None or (isinstance(rho, Real) and float(rho) == 0.0)
    xp = pad(x, r) if grad else None  # (B, C, H+2r, W+2r); without grad, band by band
    depth = B * C * (4 if grad else 1)
    y = None if grad else torch.empty_like(x)
    scratch = _no_scratch if grad else _Scratch(x)
    tiles = []
    for r0, r1 in row_tiles(H, W + 2 * r, depth, target=_TILE):
        if grad:
            xt = xp[:, :, r0 : r1 + 2 * r]  # (B, C, h+2r, W+2r)
        else:
            xt = pad_band(x, r, r0, r1, scratch("xt", (B, C, r1 - r0 + 2 * r, W + 2 * r)))
        st = [
            _band(m, r0, r1, (H, W), scratch, n)
            for m, n in ((s1, "s1"), (s2, "s2"), (rh, "rh"))
            if m is not None
        ]
        if s2 is s1:
            st[1] = st[0]
        out = None if grad else y[:, :, r0:r1]
        if separable:
            tiles.append(_separable_tile(xt, r, *st[:2], same=s2 is s1, out=out, new=scratch))
        else:
            tiles.append(_general_tile(xt, r, *st, out=out, new=scratch))
    if not grad:
        return y
    return tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=2)


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
    shape = _broadcast(k.shape, u1.shape, u2.shape)
    ku1 = torch.mul(k, u1, out=new("a", _broadcast(k.shape, u1.shape)))
    t = torch.mul(u2, rc, out=new("t", _broadcast(u2.shape, rc.shape)))
    b = torch.addcmul(rc.new_zeros(()), ku1, t, value=-2.0, out=new("b", shape))
    c = torch.mul(k, u2, out=new("c", _broadcast(k.shape, u2.shape))).mul_(u2)
    return ku1.mul_(u1), b, c


def _separable_tile(
    xt: torch.Tensor,
    r: int,
    s1: torch.Tensor,
    s2: torch.Tensor,
    *,
    same: bool,
    out: torch.Tensor | None,
    new,
) -> torch.Tensor:
    """One band of rows with ``rho = 0``: :math:`w_o = g_x(d_x) g_y(d_y)`, summed separably.

    ``out`` receives the result (None: out-of-place ops for autograd); ``new(name,
    shape)`` gives scratch buffers (None with autograd).
    """
    grad = out is None
    limit = _exp_limit(xt.dtype) * _LOG2E

    def gauss(s: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``exp(-d^2 / (2 s^2))`` for ``d = 1..r`` and ``1 + 2 sum_d`` of them."""
        if grad:
            g = _squares(s.clamp_min(_SIGMA_FLOOR).square().reciprocal().mul(-0.5), r, None)
            return g, 1.0 + 2.0 * g.sum(0)
        q = torch.clamp(s, min=_SIGMA_FLOOR, out=new("q" + name, s.shape))
        q = q.square_().reciprocal_().mul_(-0.5 * _LOG2E)  # base-2 exponent of d = 1
        with torch.no_grad():  # products where 2^(q r^2) stays normal
            tmp = new("t", (2, *s.shape)) if -r * r * float(q.min()) <= limit else None
        g = _squares(q, r, new("g" + name, (r, *s.shape)), tmp)
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
        # Products (below) need every factor to be a normal number of the dtype, and the
        # row sums (up to e^{(|a|+|b|) r^2} (2r+1) max|x|) to stay finite.
        unit = 1.0 if grad else _LOG2E  # a, b, c are in base 2 without grad
        (amin, amax), (bmin, bmax), (cmin, cmax), (xmin, xmax) = (
            (float(v) for v in torch.aminmax(t)) for t in (a, b, c, xt)
        )
        big = r * r * (max(bmax, -bmin) - amin) / unit  # (|a|+|b|) r^2
        xbig = math.log1p((2 * r + 1) * max(xmax, -xmin))
        limit = _exp_limit(xt.dtype)
        fits = big + xbig <= limit and -r * r * cmin / unit <= limit
    ta, tc = (new("ta", (2, *a.shape)), new("tc", (2, *c.shape))) if fits else (None, None)
    gx = _squares(a, r, new("gx", (r, *a.shape)), ta)  # g_x(d) = exp(a d^2), by products
    gy = _squares(c, r, new("gy", (r, *c.shape)), tc)  # g_y(d) = exp(c d^2)
    # offsets whose weights are negligible in the whole band are left out (no gradient)
    kept = None if grad else _kept_offsets((amax, bmin, bmax, cmax), r, xt.dtype)
    k0 = r if grad else max(1, kept[0][0][0][1])  # row dy = 0: d = 1..k0 (d = 1 always)
    # the centre (weight 1) and the row dy = 0 (no cross term)
    num = xc.clone() if grad else torch.addcmul(xc, gx[0], pair(0, 1), out=out)
    for d in range(1 if grad else 2, k0 + 1):
        num = _acc(num, gx[d - 1], pair(0, d), grad)
    # one-sided sum of the weights: the row dy = 0 and the column dx = 0
    gxs, gys = gx[:k0].expand(k0, *shape), gy.expand(r, *shape)
    if grad:
        acc = gxs.sum(0)
    else:
        acc = torch.sum(gxs, 0, out=new("acc", shape))
        acc.add_(torch.sum(gys, 0, out=new("rden", shape)))
    if fits:
        # w(dx, dy) = g_y(dy) A_dx(dy) with A_dx(dy) = exp(a dx^2 + b dx dy) = g_x(dx) V_dx^dy,
        # V_dx = e^{b dx}: one product per offset updates A, and the row sum over dx is
        # weighted by g_y(dy) once.
        ds = (*range(1, r + 1), *range(-1, -r - 1, -1))  # the order of the stacks below
        if grad:
            vs = _powers(b, r, None)  # V_d = e^{b d}, V_-d = e^{-b d}: (2, r, ...)
            av = vs * gx  # A_dx(1) = g_x(|dx|) V_dx
        else:  # V_d only, (r, ...): A_-d is divided by V_d (fewer maps to stream)
            vs = _powers(b, r, new("vs", (r, *shape)))
            av = new("av", (2, r, *shape))
            torch.mul(gx, vs, out=av[0])
            torch.div(gx, vs, out=av[1])
        rbuf, dbuf = new("row", xc.shape), new("rden", shape)
        if not grad:
            adf = new.views("av", av, lambda t: t.flatten(0, 1).unbind(0))  # A_d, then A_-d
        for dy in range(1, r + 1):
            if grad:
                av = av * vs if dy > 1 else av  # A_dx(dy)
                row = pair(dy, 0, None)  # dx = 0: A = 1
                for d, ad in zip(ds, av.flatten(0, 1).unbind(0), strict=True):
                    row = row + ad * pair(dy, d, None)
                num = num + gy[dy - 1] * row
                acc = acc + gy[dy - 1] * (1.0 + av.sum((0, 1)))
                continue
            spans, updates = kept[dy]  # per side (dx > 0, dx < 0): d = lo..hi
            for side, (lo, hi) in enumerate(updates if dy > 1 else ()):
                if lo <= hi:  # A_dx(dy) = A_dx(dy - 1) V_dx for the d still kept later
                    op = torch.Tensor.mul_ if side == 0 else torch.Tensor.div_
                    op(av[side, lo - 1 : hi], vs[lo - 1 : hi])
            up, down = xs[r + dy], xs[r - dy]  # rows p + dy and p - dy, by column offset
            row = torch.add(up[r], down[r], out=rbuf)  # dx = 0: A = 1
            for side, (lo, hi) in enumerate(spans):
                for d in range(lo, hi + 1):
                    e = d if side == 0 else -d  # dx
                    row.addcmul_(adf[side * r + d - 1], torch.add(up[r + e], down[r - e], out=pbuf))
            num.addcmul_(gy[dy - 1], row)
            if spans == ((1, r), (1, r)):  # all kept: one sum (slices over both axes are slow)
                acc.addcmul_(gy[dy - 1], torch.sum(av, (0, 1), out=dbuf))
                continue
            for side, (lo, hi) in enumerate(spans):
                if lo <= hi:
                    acc.addcmul_(gy[dy - 1], torch.sum(av[side, lo - 1 : hi], 0, out=dbuf))
    else:
        # One exponential per offset; the exponent is <= 0 up to rounding (clamped).
        wbuf = new("w", shape)
        for dy in range(1, r + 1):
            num = _acc(num, gy[dy - 1], pair(dy, 0), grad)  # dx = 0: no cross term
            if grad:
                acc = acc + gy[dy - 1]
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


def _kept_offsets(
    bounds: tuple[float, float, float, float], r: int, dtype: torch.dtype
) -> list[tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]]:
    """Which offsets of a band to sum: for each row ``dy = 0..r``, per side (``dx = d > 0``,
    ``dx = -d``), the range ``(lo, hi)`` of ``d`` summed (with the offsets' mirror images
    ``-(dx, dy)``), and the range whose weights :func:`_general_tile` must still update.

    ``bounds`` are the band's ``(max a, min b, max b, max c)`` of the base-2 exponent
    ``a dx^2 + b dx dy + c dy^2``. An offset is left out where its weight stays below
    ``eps / (2r+1)^2`` of the centre weight 1 at every pixel of the band: all left-out
    weights together change the output by less than one rounding step of ``dtype``.
    Ranges are hulls (they may hold offsets that could have been left out); an empty
    range is ``(1, 0)``.
    """
    floor = math.log2(torch.finfo(dtype).eps / (2 * r + 1) ** 2)
    amax, bmin, bmax, cmax = bounds

    def q(dx: int, dy: int) -> float:  # bound on the exponent over the band
        return amax * dx * dx + max(bmin * dx * dy, bmax * dx * dy) + cmax * dy * dy

    keep = [  # per row dy, per side (dx = d, dx = -d): the kept d
        [[d for d in range(1, r + 1) if q(sign * d, dy) > floor] for sign in (1, -1)]
        for dy in range(r + 1)
    ]
    out, later = [], [[], []]
    for dy in range(r, -1, -1):  # from the last row back: what this and later rows need
        later = [sorted(set(lt) | set(k)) for lt, k in zip(later, keep[dy], strict=True)]
        out.append((tuple(map(_span, keep[dy])), tuple(map(_span, later))))
    return out[::-1]


def _span(ds: list[int]) -> tuple[int, int]:
    """``(first, last)`` of a sorted list; ``(1, 0)`` (empty) for an empty one."""
    return (ds[0], ds[-1]) if ds else (1, 0)


class Gaussian(nn.Module):
    """Thin module around :func:`gaussian`: ``Gaussian(size)(x, sigma1, sigma2, rho)``."""

    def __init__(self, size: int | None = None):
        super().__init__()
        if size is not None:
            odd_int(size, "size")
        self.size = size

    def forward(
        self,
        x: torch.Tensor,
        sigma1: Param,
        sigma2: Param | None = None,
        rho: Param | None = None,
    ) -> torch.Tensor:
        return gaussian(x, sigma1, sigma2, rho, size=self.size)
