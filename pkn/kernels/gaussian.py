"""Gaussian blur with per-pixel (an)isotropic sigmas and correlation."""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from ._common import Param, as_map, check_image, max_value, odd_int, pad, row_tiles

__all__ = ["Gaussian", "gaussian"]

_SIGMA_FLOOR = 1e-10  # keeps 1 / sigma^2 finite: sigma -> 0 is the identity, never NaN
_RHO_CAP = 1.0 - 1e-6  # keeps 1 / (1 - rho^2) finite: rho -> +-1 never gives NaN
_TRUNCATE = 3.0  # default window radius in sigmas
_TILE = 1 << 17  # elements per band of rows and per map (see row_tiles)


def _exp_limit(dtype: torch.dtype) -> float:
    """Largest |exponent| whose exp and exp(-) stay normal numbers of ``dtype``, with margin."""
    info = torch.finfo(dtype)
    return 0.9 * min(math.log(info.max), -math.log(info.tiny))


def _map(p: Param, x: torch.Tensor, name: str, **limits: float) -> torch.Tensor:
    """``as_map``, keeping axes that are constant (numbers, 1x1 maps) at size 1.

    Constant parameters then cost one value instead of a full map in every operation below.
    """
    m = as_map(p, x, name, **limits)
    index = tuple(
        slice(0, 1) if m.stride(i) == 0 and m.shape[i] > 1 else slice(None) for i in range(4)
    )
    return m[index]


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
        self.like, self.store = like, {}

    def __call__(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        n = math.prod(shape)
        buf = self.store.get(name)
        if buf is None or buf.numel() < n:
            buf = self.store[name] = torch.empty(n, dtype=self.like.dtype, device=self.like.device)
        return buf[:n].view(shape)


def _no_scratch(name: str, shape: tuple[int, ...]) -> None:
    """With a gradient, every operation makes a new tensor (autograd keeps them)."""
    return None


def _acc(acc: torch.Tensor, w: torch.Tensor, v: torch.Tensor, grad: bool) -> torch.Tensor:
    """``acc + w * v`` (in place unless a gradient is needed)."""
    return acc + w * v if grad else acc.addcmul_(w, v)


def _add(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """``a + b``, into ``out`` when one is given."""
    return a + b if out is None else torch.add(a, b, out=out)


def _mul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """``a * b``, into ``out`` when one is given."""
    return a * b if out is None else torch.mul(a, b, out=out)


def _shifts(xt: torch.Tensor, r: int) -> list[tuple[torch.Tensor, ...]]:
    """Views ``v[r + dy][r + dx]`` of a padded band ``(B, C, h+2r, W+2r)``: ``x(p + (dx, dy))``.

    Made in a few calls (unfold + unbind) rather than two slices per offset.
    """
    h, W = xt.shape[-2] - 2 * r, xt.shape[-1] - 2 * r
    grid = xt.unfold(2, h, 1).unfold(3, W, 1).permute(2, 3, 0, 1, 4, 5)  # (2r+1, 2r+1, B, C, h, W)
    return [row.unbind(0) for row in grid.unbind(0)]


def _squares(q: torch.Tensor, r: int, out: torch.Tensor | None) -> torch.Tensor:
    """``exp(q d^2)`` for ``d = 1..r``, stacked: ``(r, *q.shape)``."""
    d2 = torch.arange(1, r + 1, dtype=q.dtype, device=q.device).square()
    e = _mul(q.unsqueeze(0), d2.view(-1, *([1] * q.ndim)), out)
    return e.exp() if out is None else e.exp_()


def _powers(b: torch.Tensor, r: int, out: torch.Tensor | None) -> torch.Tensor:
    """``exp(b d)`` (first row) and ``exp(-b d)`` (second) for ``d = 1..r``: ``(2, r, *b.shape)``.

    Built as running products of ``exp(+-b)`` (relative error below ``r`` ulps).
    """
    if out is None:  # out of place, for autograd
        e1 = torch.stack((b, -b)).exp()  # (2, *shape)
        rows = [e1]
        for _ in range(r - 1):
            rows.append(rows[-1] * e1)
        return torch.stack(rows, 1)
    torch.exp(b, out=out[0, 0])
    torch.neg(b, out=out[1, 0]).exp_()
    for d in range(1, r):
        torch.mul(out[:, d - 1], out[:, 0], out=out[:, d])
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
    check_image(x)
    if sigma2 is None and rho is not None:
        raise ValueError(
            "rho needs sigma2: pass sigma2=sigma1 for a correlated Gaussian with equal "
            "sigmas (sigma2=None means the isotropic blur, rho = 0)."
        )
    s1 = _map(sigma1, x, "sigma1", low=0.0)
    s2 = s1 if sigma2 is None else _map(sigma2, x, "sigma2", low=0.0)
    rh = None if rho is None else _map(rho, x, "rho", low=-1.0, high=1.0)
    if size is None:
        r = math.ceil(_TRUNCATE * max(max_value(s1), max_value(s2)))
    else:
        r = odd_int(size, "size") // 2
    if r == 0:  # 1x1 window: the identity
        return x.clone()
    params = [t for t in (x, s1, s2, rh) if t is not None]
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in params)
    separable = rh is None or (isinstance(rho, Real) and float(rho) == 0.0)
    B, C, H, W = x.shape
    xp = pad(x, r)  # (B, C, H+2r, W+2r)
    depth = B * C * (4 if grad else 1)
    y = None if grad else torch.empty_like(x)
    scratch = _no_scratch if grad else _Scratch(x)
    tiles = []
    for r0, r1 in row_tiles(H, W + 2 * r, depth, target=_TILE):
        xt = xp[:, :, r0 : r1 + 2 * r]  # (B, C, h+2r, W+2r)
        st = [_rows(m, r0, r1) for m in (s1, s2, rh) if m is not None]
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
    """``a = -1/(2 s1^2 (1-r^2))``, ``b = r / (s1 s2 (1-r^2))``, ``c = -1/(2 s2^2 (1-r^2))``.

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
    k = torch.neg(rc, out=new("k", rho.shape)).add_(1.0).mul_(rc + 1.0).reciprocal_()
    abc = []
    for name, p, q in (("a", u1, u1), ("b", u1, u2), ("c", u2, u2)):
        shape = torch.broadcast_shapes(k.shape, p.shape, q.shape)
        m = torch.mul(k.expand(shape), p, out=new(name, shape)).mul_(q)
        abc.append(m.mul_(rc) if name == "b" else m.mul_(-0.5))
    return tuple(abc)


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

    def gauss(s: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``exp(-d^2 / (2 s^2))`` for ``d = 1..r`` and ``1 + 2 sum_d`` of them."""
        if grad:
            g = _squares(s.clamp_min(_SIGMA_FLOOR).square().reciprocal().mul(-0.5), r, None)
            return g, 1.0 + 2.0 * g.sum(0)
        q = torch.clamp(s, min=_SIGMA_FLOOR, out=new("q" + name, s.shape))
        g = _squares(q.square_().reciprocal_().mul_(-0.5), r, new("g" + name, (r, *s.shape)))
        return g, torch.sum(g, 0, out=q).mul_(2.0).add_(1.0)

    gx, nx = gauss(s1, "x")  # g_x(d) = exp(-d^2 / (2 s1^2))
    gy, ny = (gx, nx) if same else gauss(s2, "y")
    den = nx * ny  # sum of all weights
    xs = _shifts(xt, r)
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
    a, b, c = _coefficients(s1, s2, rho, new)  # (B|1, C'|1, h|1, W|1)
    shape = b.shape  # of the weights: b depends on all three parameters
    gx = _squares(a, r, new("gx", (r, *a.shape)))  # g_x(d) = exp(a d^2)
    gy = _squares(c, r, new("gy", (r, *c.shape)))  # g_y(d) = exp(c d^2)
    xs = _shifts(xt, r)
    xc = xs[r][r]  # (B, C, h, W) centre pixels
    pbuf = new("pair", xc.shape)

    def pair(dy: int, dx: int, dst: torch.Tensor | None = pbuf) -> torch.Tensor:
        """``x(p + o) + x(p - o)`` for ``o = (dx, dy)``, (B, C, h, W)."""
        return _add(xs[r + dy][r + dx], xs[r - dy][r - dx], dst)

    num = xc.clone() if grad else out.copy_(xc)  # centre weight 1
    # one-sided sum of the weights, from the row dy = 0
    gxs = gx.expand(r, *shape)
    acc = gxs.sum(0) if grad else torch.sum(gxs, 0, out=new("acc", shape))
    for d in range(1, r + 1):  # the row dy = 0: no cross term
        num = _acc(num, gx[d - 1], pair(0, d), grad)

    with torch.no_grad():
        # Products (below) need every factor to be a normal number of the dtype, and the
        # row sums (up to e^{(|a|+|b|) r^2} (2r+1) max|x|) to stay finite.
        bmin, bmax = torch.aminmax(b)
        xmin, xmax = torch.aminmax(xt)
        big = r * r * (max(float(bmax), -float(bmin)) - float(a.min()))  # (|a| + |b|) r^2
        xbig = math.log1p((2 * r + 1) * max(float(xmax), -float(xmin)))
        limit = _exp_limit(xt.dtype)
        fits = big + xbig <= limit and -r * r * float(c.min()) <= limit
    if fits:
        # w(dx, dy) = g_y(dy) A_dx(dy) with A_dx(dy) = exp(a dx^2 + b dx dy) = g_x(dx) V_dx^dy,
        # V_dx = e^{b dx}: one product per offset updates A, and the row sum over dx is
        # weighted by g_y(dy) once.
        ds = (*range(1, r + 1), *range(-1, -r - 1, -1))  # the order of the stacks below
        vs = _powers(b, r, new("vs", (2, r, *shape)))  # V_d = e^{b d}, V_-d = e^{-b d}
        av = _mul(vs, gx, new("av", (2, r, *shape)))  # A_dx(1) = g_x(|dx|) V_dx
        rbuf, dbuf = new("row", xc.shape), new("rden", shape)
        for dy in range(1, r + 1):
            if dy > 1:
                av = av * vs if grad else av.mul_(vs)  # A_dx(dy)
            row = pair(dy, 0, rbuf)  # dx = 0: A = 1
            for d, ad in zip(ds, av.flatten(0, 1).unbind(0), strict=True):
                row = _acc(row, ad, pair(dy, d), grad)
            rden = av.sum((0, 1)) if grad else torch.sum(av, (0, 1), out=dbuf)
            num = _acc(num, gy[dy - 1], row, grad)
            acc = _acc(_add(acc, gy[dy - 1], None if grad else acc), gy[dy - 1], rden, grad)
    else:
        # One exponential per offset; the exponent is <= 0 up to rounding (clamped).
        wbuf = new("w", shape)
        for dy in range(1, r + 1):
            num = _acc(num, gy[dy - 1], pair(dy, 0), grad)  # dx = 0: no cross term
            acc = _add(acc, gy[dy - 1], None if grad else acc)
            base, lin = c * float(dy * dy), b * float(dy)  # c dy^2, b dy
            for dx in (*range(-r, 0), *range(1, r + 1)):
                if grad:
                    w = (base + a * float(dx * dx) + lin * float(dx)).clamp(max=0.0).exp()
                else:
                    w = torch.add(base, a, alpha=float(dx * dx), out=wbuf)
                    w = w.add_(lin, alpha=float(dx)).clamp_(max=0.0).exp_()
                num = _acc(num, w, pair(dy, dx), grad)
                acc = acc + w if grad else acc.add_(w)
    if grad:
        return num / (1.0 + 2.0 * acc)
    return num.div_(acc.mul_(2.0).add_(1.0))


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
