"""Anisotropic bilateral filter with a full 3x3 spatial-signal covariance (PKN, sec. 4.1)."""

from __future__ import annotations

import torch
from torch import nn

from ._band import Scratch, as_map_fast, pad_band, resample_rows
from ._common import (
    Param,
    as_map,
    check_guide,
    check_image,
    check_window,
    odd_int,
    pad,
    row_tiles,
)
from .registry import Kernel, correlation, half_maps, px_sigma, signal_sigma

__all__ = ["BilateralAniso", "bilateral_aniso", "covariance"]

# ------------------------------------------------------------------ per band
# :func:`_coefficients` turns a band of the six maps into the coefficients of the exponent
# (once per band); :func:`_tile` sums the window's offsets for that band: with autograd
# out of place, without it in place on buffers reused from band to band (Scratch).

SIGMA_FLOOR = 1e-10  # sigma -> 0: the identity (along that axis), never NaN
RHO_CAP = 1.0 - 1e-6  # |rho| inside the kernel: the covariance stays positive definite
EXP_FLOOR = -60.0  # smallest exponent: exp(-60) = 8.8e-27, keeps subnormals out (see nlm)


def _coefficients(s1, s2, r, s, a, b, new, grad):
    """Per-pixel coefficients of the exponent (the Notes of ``bilateral_aniso``) from the
    maps: ``hx, hy, hxy`` (spatial part ``-(dx^2 hx + dy^2 hy) / 2 + dx dy hxy``), ``m = 1 /
    (sqrt(2) s_c)`` and the slopes times ``m``. ``new(name, *shapes)`` gives buffers (None
    with autograd: the operations allocate); without autograd, steps overwrite them."""
    o = (lambda t: None) if grad else (lambda t: t)  # in place: same shape, buffer is ours
    one = torch.ones((), dtype=s1.dtype, device=s1.device)
    i1 = torch.clamp_min(s1, SIGMA_FLOOR, out=new("i1", s1))
    i1 = torch.reciprocal(i1, out=o(i1))  # 1 / s1
    i2 = torch.clamp_min(s2, SIGMA_FLOOR, out=new("i2", s2))
    i2 = torch.reciprocal(i2, out=o(i2))
    rc = torch.clamp(r, -RHO_CAP, RHO_CAP, out=new("rc", r))
    iq = torch.addcmul(one, rc, rc, value=-1.0, out=new("iq", rc))
    iq = torch.rsqrt(iq, out=o(iq))  # 1 / sqrt(1 - r^2)
    h1 = torch.mul(i1, iq, out=new("h1", i1, iq))
    h2 = torch.mul(i2, iq, out=new("h2", i2, iq))
    hxy = torch.mul(h1, h2, out=new("hxy", h1, h2))
    hxy = torch.mul(hxy, rc, out=o(hxy))  # r / ((1 - r^2) s1 s2)
    hx = torch.mul(h1, h1, out=o(h1))  # 1 / ((1 - r^2) s1^2)
    hy = torch.mul(h2, h2, out=o(h2))
    ac = torch.clamp(a, -RHO_CAP, RHO_CAP, out=new("ac", a))
    bc = torch.clamp(b, -RHO_CAP, RHO_CAP, out=new("bc", b))
    ca = torch.addcmul(one, ac, ac, value=-1.0, out=new("ca", ac))  # 1 - a^2
    cb = torch.addcmul(one, bc, bc, value=-1.0, out=new("cb", bc))  # 1 - b^2
    isc = torch.addcmul(0.0 * one, ca, cb, value=2.0, out=new("isc", ca, cb))
    isc = torch.rsqrt(isc, out=o(isc))  # sigma / (sqrt(2) s_c)
    bw = torch.sqrt(ca, out=o(ca))
    bw = torch.mul(bw, iq, out=new("bw", bw, iq))
    bw = torch.mul(bw, bc, out=new("bw2", bw, bc))  # beta_y = b sqrt((1 - a^2) / (1 - r^2))
    bu = torch.addcmul(ac, rc, bw, value=-1.0, out=new("bu", ac, rc, bw))  # a - r beta_y
    m = torch.clamp_min(s, SIGMA_FLOOR, out=new("s", s))
    m = torch.div(isc, m, out=new("m", isc, m))  # 1 / (sqrt(2) s_c)
    gxm = torch.mul(bu, i1, out=new("gxm", bu, i1))
    gxm = torch.mul(gxm, isc, out=o(gxm))  # sigma beta_x / s1 (the slope along x) times m
    gym = torch.mul(bw, i2, out=new("gym", bw, i2))
    gym = torch.mul(gym, isc, out=o(gym))
    return hx, hy, hxy, m, gxm, gym


def _windows(t, sr, h, W):
    """Views of ``t`` (padded by ``sr``) at every offset: ``(dy, dx) -> (B, C, h, W)``."""
    r = range(-sr, sr + 1)
    return {(dy, dx): t[:, :, sr + dy : sr + dy + h, sr + dx : sr + dx + W] for dy in r for dx in r}


def _tile(xt, gt, sr, coef, new, out):
    """One band of rows: ``xt``/``gt`` padded by ``sr``; ``out`` the output rows, or None
    with autograd (out-of-place operations; the band is returned)."""
    grad = out is None
    hx, hy, hxy, m, gxm, gym = coef
    h, W = xt.shape[-2] - 2 * sr, xt.shape[-1] - 2 * sr
    if grad:
        gw, xw = _windows(gt, sr, h, W), _windows(xt, sr, h, W)
    else:
        gw = new.views("g", gt, lambda t: _windows(t, sr, h, W))
        xw = gw if gt is xt else new.views("x", xt, lambda t: _windows(t, sr, h, W))
    num = xw[0, 0].clone() if grad else new("num", xw[0, 0].shape).copy_(xw[0, 0])
    cm = torch.mul(gw[0, 0], m, out=new("cm", gw[0, 0], m))  # (B, 1|C, h, W)
    # the plane through the centre, times m, at offset d: cm + dx gxm + dy gym
    shape = cm.shape
    res, pp, pm, sx, sp, sy = (
        new(n, t)
        for n, t in (
            ("res", shape),
            ("pp", shape),
            ("pm", shape),
            ("sx", hx),
            ("sp", hxy),
            ("sy", hy),
        )
    )
    den = None
    for dx in range(0, sr + 1):
        if dx:
            pls = (torch.add(cm, gxm, alpha=dx, out=pp), torch.sub(cm, gxm, alpha=dx, out=pm))
            sxd = torch.mul(hx, -0.5 * dx * dx, out=sx)
        else:
            pls, sxd = (cm, cm), None
        for dy in range(-sr if dx else 1, sr + 1):
            # spatial exponent, the same for d and -d
            if sxd is None:
                spd = torch.mul(hy, -0.5 * dy * dy, out=sy)
            elif dy == 0:
                spd = sxd
            else:  # the shape of hxy: that of hx and hy together
                spd = torch.add(sxd, hy, alpha=-0.5 * dy * dy, out=sp)
                spd = torch.add(spd, hxy, alpha=float(dx * dy), out=sp)
            for ox, oy, pl in ((dx, dy, pls[0]), (-dx, -dy, pls[1])):
                e = torch.addcmul(pl, gw[oy, ox], m, value=-1.0, out=res)  # (plane - g) m
                if oy:
                    e = torch.add(e, gym, alpha=oy, out=res)
                e = torch.addcmul(spd, e, e, value=-1.0, out=res)  # the exponent
                if grad:
                    w = e.clamp(min=EXP_FLOOR).exp()
                    num = num + w * xw[oy, ox]
                    den = w + 1.0 if den is None else den + w
                else:
                    w = e.clamp_(min=EXP_FLOOR).exp_()
                    num.addcmul_(w, xw[oy, ox])
                    den = torch.add(w, 1.0, out=new("den", shape)) if den is None else den.add_(w)
    if den is None:
        return num if grad else out.copy_(num)
    return num / den if grad else torch.div(num, den, out=out)


_TILE = 1 << 18  # elements per band of rows x depth (see row_tiles): fastest at 2048^2, 1 thread
_NAMES = ("sigma1", "sigma2", "rho", "sigma", "rho_xs", "rho_ys")


def covariance(sigma1, sigma2, rho, sigma, rho_xs, rho_ys) -> torch.Tensor:
    """The covariance ``(..., 3, 3)`` over ``(dx, dy, dI)`` that :func:`bilateral_aniso`
    uses (without its clamps), from numbers or tensors broadcast together (float64 for
    numbers only, else the tensors' dtype)."""
    vals = (sigma1, sigma2, rho, sigma, rho_xs, rho_ys)
    like = next((v for v in vals if isinstance(v, torch.Tensor)), torch.zeros(()).double())
    t = [torch.as_tensor(v, dtype=like.dtype, device=like.device) for v in vals]
    s1, s2, r, s, a, b = torch.broadcast_tensors(*t)
    c = b * torch.sqrt((1 - r * r) * (1 - a * a)) + r * a  # corr(dy, dI)
    one = torch.ones_like(r)
    rows = ((one, r, a), (r, one, c), (a, c, one))
    corr = torch.stack([torch.stack(row, -1) for row in rows], -2)
    std = torch.stack((s1, s2, s), -1)
    return corr * std[..., :, None] * std[..., None, :]


def _none(*args):
    return None


def _rows(m: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    return m if m.shape[-2] == 1 else m[:, :, r0:r1]


def _map(p, x, name, grad, **limits) -> torch.Tensor:
    """A validated map; without ``grad`` kept at its own resolution (resampled per band);
    axes that are constant (numbers) kept at size 1."""
    if grad:
        m = as_map(p, x, name, **limits)
    else:
        own = tuple(p.shape[-2:]) if isinstance(p, torch.Tensor) and p.ndim == 4 else None
        m = as_map_fast(p, x, name, size=own, **limits)
    return m[
        tuple(slice(0, 1) if m.stride(i) == 0 and m.shape[i] > 1 else slice(None) for i in range(4))
    ]


def _band(m, r0, r1, size, new, name):
    (h, w), (H, W) = m.shape[-2:], size
    if h in (1, H) and w in (1, W):
        return _rows(m, r0, r1)
    tmp = new(name + "t", (*m.shape[:2], r1 - r0, w))
    return resample_rows(m, size, r0, r1, out=new(name, (*m.shape[:2], r1 - r0, W)), tmp=tmp)


def bilateral_aniso(
    x: torch.Tensor,
    sigma1: Param,
    sigma2: Param,
    rho: Param,
    sigma: Param,
    rho_xs: Param,
    rho_ys: Param,
    *,
    search_size: int = 5,
    guide: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Anisotropic bilateral filter: one 3-D Gaussian over offset and signal difference.

    For every pixel :math:`p` and offset :math:`d = (d_x, d_y)` of the ``search_size x
    search_size`` window (``d_x`` along columns, ``d_y`` along rows), with the signal
    difference :math:`\Delta = g(p+d) - g(p)` on the guide :math:`g` (default: the image
    itself, each channel its own),

    .. math::
        w_d(p) = \exp\!\big(-\tfrac12\, v^\top \Sigma(p)^{-1} v\big), \quad
        v = (d_x, d_y, \Delta), \qquad
        y(p) = \frac{\sum_d w_d(p)\, x(p+d)}{\sum_d w_d(p)},

    .. math::
        \Sigma = \begin{pmatrix} s_1^2 & r s_1 s_2 & a s_1 \sigma \\
                 r s_1 s_2 & s_2^2 & c\, s_2 \sigma \\ a s_1 \sigma & c\, s_2 \sigma &
                 \sigma^2 \end{pmatrix}, \qquad
        c = b \sqrt{(1 - r^2)(1 - a^2)} + r a,

    with :math:`s_1, s_2, r` = ``sigma1, sigma2, rho`` the spatial covariance of the
    anisotropic Gaussian (:func:`~pkn.kernels.gaussian`: ``sigma1`` along x, ``sigma2``
    along y), :math:`\sigma` = ``sigma`` the signal std (units of ``g``), :math:`a` =
    ``rho_xs`` the correlation of :math:`d_x` and :math:`\Delta`, and :math:`b` =
    ``rho_ys`` the *partial* correlation of :math:`d_y` and :math:`\Delta` given
    :math:`d_x`; :math:`c` is the correlation of :math:`d_y` and :math:`\Delta`. This is
    the C-vine parametrisation of a correlation matrix [3]_: every
    :math:`(r, a, b) \in (-1, 1)^3` gives a positive definite :math:`\Sigma`
    (:math:`\det \Sigma = s_1^2 s_2^2 \sigma^2 (1-r^2)(1-a^2)(1-b^2)`), and each
    :math:`\Sigma` has exactly one such parametrisation. The centre weight is 1, so the
    output is a convex combination of the window (within its min/max). Borders are
    mirrored.

    Parameters
    ----------
    x : torch.Tensor
        Image ``(B, C, H, W)``, float32 or float64.
    sigma1, sigma2 : float or torch.Tensor
        Spatial standard deviations along x (columns) and y (rows), >= 0, in pixels: a
        number or a map ``(B or 1, 1 or C, h, w)`` at any resolution (bilinearly
        resampled), as all parameters.
    rho : float or torch.Tensor
        Correlation of :math:`d_x` and :math:`d_y`, in [-1, 1].
    sigma : float or torch.Tensor
        Signal standard deviation, >= 0, in the units of the guide.
    rho_xs, rho_ys : float or torch.Tensor
        Correlation of :math:`d_x` and :math:`\Delta`, and partial correlation of
        :math:`d_y` and :math:`\Delta` given :math:`d_x`, in [-1, 1].
    search_size : int
        Odd side of the window; its radius at most ``max(H, W, 32)``.
    guide : torch.Tensor, optional
        ``(B, 1 or C, H, W)`` image the differences :math:`\Delta` are taken on.

    Returns
    -------
    torch.Tensor
        Filtered image, same shape, dtype and device as ``x``. Differentiable with
        respect to ``x``, ``guide`` and every map.

    Notes
    -----
    The exponent is computed through the Schur complement of the spatial block
    :math:`S` (:math:`c_v` the spatial-signal covariance column of :math:`\Sigma`):

    .. math::
        v^\top \Sigma^{-1} v = d^\top S^{-1} d + \frac{(\Delta - \gamma \cdot d)^2}
        {s_c^2}, \qquad \gamma = S^{-1} c_v, \quad
        s_c^2 = \sigma^2 - c_v^\top S^{-1} c_v = \sigma^2 (1 - a^2)(1 - b^2),

    an anisotropic spatial Gaussian times a range Gaussian of the residual of
    :math:`\Delta` after the local linear prediction :math:`\gamma \cdot d`: a bilateral
    filter on a tilted plane. The slope is :math:`\gamma = \sigma (\beta_x / s_1,
    \beta_y / s_2)` with :math:`\beta_y = b \sqrt{(1-a^2)/(1-r^2)}` and
    :math:`\beta_x = a - r \beta_y`. With :math:`a = b = 0` this is the bilateral filter
    with an anisotropic spatial Gaussian; with :math:`r = 0` and :math:`s_1 = s_2` too,
    :func:`~pkn.kernels.bilateral` with ``spatial_sigma = s_1``. Inside, sigmas are
    clamped to at least ``1e-10`` and :math:`|r|, |a|, |b|` to at most ``1 - 1e-6``:
    ``sigma -> 0`` gives the identity, never NaN/Inf; exponents below -60 are clamped
    (weights under :math:`10^{-26}`, no effect next to the centre's 1).

    References
    ----------
    .. [1] B. Wronski, "Procedural Kernel Networks", arXiv:2112.09318, 2021 (sec. 4.1).
    .. [2] C. Tomasi, R. Manduchi, "Bilateral filtering for gray and color images",
       ICCV 1998.
    .. [3] D. Lewandowski, D. Kurowicka, H. Joe, "Generating random correlation
       matrices based on vines and extended onion method", J. Multivariate Analysis
       100(9), 2009.
    """
    check_image(x)
    sr = odd_int(search_size, "search_size") // 2
    check_window(sr, x, f"search_size={search_size}")
    B, C, H, W = x.shape
    if guide is not None:
        check_guide(guide, x)
        if guide.shape[1] not in (1, C):
            raise ValueError(
                f"guide has {guide.shape[1]} channels; bilateral_aniso needs 1 or {C} (the "
                "image's)."
            )
    raw = (sigma1, sigma2, rho, sigma, rho_xs, rho_ys)
    grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (x, guide, *raw)
    )
    lim = (
        [{"low": 0.0}] * 2
        + [{"low": -1.0, "high": 1.0}]
        + [{"low": 0.0}]
        + [{"low": -1.0, "high": 1.0}] * 2
    )
    maps = [_map(p, x, n, grad, **k) for p, n, k in zip(raw, _NAMES, lim, strict=True)]
    if sr == 0:
        return x.clone()
    g = None if guide is None else guide.to(x.dtype)
    cg = C if g is None else g.shape[1]
    depth = B * max(C, cg) * (4 if grad else 2)
    if grad:
        xp, gp = pad(x, sr), None if g is None else pad(g, sr)
        tiles = []
    else:
        new, y = Scratch(x), torch.empty_like(x)
    for r0, r1 in row_tiles(H, W + 2 * sr, depth, target=_TILE):
        if grad:
            xt = xp[:, :, r0 : r1 + 2 * sr]  # (B, C, h+2sr, W+2sr)
            gt = xt if gp is None else gp[:, :, r0 : r1 + 2 * sr]
            coef = _coefficients(*(_rows(m, r0, r1) for m in maps), _none, True)
            tiles.append(_tile(xt, gt, sr, coef, _none, None))
            continue
        hb = r1 - r0 + 2 * sr
        xt = pad_band(x, sr, r0, r1, new("xt", (B, C, hb, W + 2 * sr)))
        gt = xt if g is None else pad_band(g, sr, r0, r1, new("gt", (B, cg, hb, W + 2 * sr)))
        bands = [_band(m, r0, r1, (H, W), new, n) for m, n in zip(maps, _NAMES, strict=True)]
        _tile(xt, gt, sr, _coefficients(*bands, new, False), new, y[:, :, r0:r1])
    if not grad:
        return y
    return tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=2)


class BilateralAniso(nn.Module):
    """Thin module around :func:`bilateral_aniso`:
    ``BilateralAniso(search_size)(x, sigma1, sigma2, rho, sigma, rho_xs, rho_ys)``."""

    def __init__(self, search_size: int = 5):
        super().__init__()
        self.search_size = odd_int(search_size, "search_size")

    def forward(self, x, sigma1, sigma2, rho, sigma, rho_xs, rho_ys, guide=None):
        return bilateral_aniso(
            x, sigma1, sigma2, rho, sigma, rho_xs, rho_ys, search_size=self.search_size, guide=guide
        )


# ------------------------------------------------------------------ descriptor
def _apply(x, maps, options, guide=None, **_):
    """Run with a model's maps; the differences come from ``guide`` when one is given."""
    return bilateral_aniso(x, **maps, guide=guide, **options)


KERNELS = (
    Kernel(
        name="bilateral-aniso",
        rank=5,
        task="denoise",
        description="anisotropic bilateral filter (5x5 window), per-pixel 3x3 covariance of "
        "offset and signal difference (a bilateral filter on a tilted plane)",
        function=bilateral_aniso,
        module=BilateralAniso,
        params=(
            px_sigma("sigma1", "sigma1 (along x)"),
            px_sigma("sigma2", "sigma2 (along y)"),
            correlation("rho", "rho (correlation of x and y)"),
            signal_sigma(),
            correlation("rho_xs", "rho_xs (correlation of x and signal)"),
            correlation("rho_ys", "rho_ys (partial correlation of y and signal given x)"),
        ),
        apply=_apply,
        radius=lambda maps, o, i: o.get("search_size", 5) // 2,
        weights_from_guide=True,
        glyphs=("sigma1", "sigma2", "rho"),  # the spatial covariance
        convex=True,
        grid=lambda t: {
            "sigma1": 4.0 * t,
            "sigma2": 4.0 * t,
            "rho": 0.0,
            "sigma": 4.0 * t,
            "rho_xs": 0.0,
            "rho_ys": 0.0,
        },
        example=lambda x, gen: (
            half_maps(x, sigma1=1.0, sigma2=1.5, rho=0.3, sigma=0.1, rho_xs=0.2, rho_ys=-0.1),
            {"search_size": 5},
            {},
        ),
        example_doc="bilateral_aniso(x, ...), half-res maps sigma1 1.0, sigma2 1.5, rho 0.3, "
        "sigma 0.1, rho_xs 0.2, rho_ys -0.1; search 5",
    ),
)
