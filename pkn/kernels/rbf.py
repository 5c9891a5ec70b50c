"""Anisotropic Gaussian RBF resampling (upscaling and downscaling) with per-pixel kernels.

Each output pixel is a normalized Gaussian-weighted average of the input pixels around
its centre, with its own covariance (sigma1 along x, sigma2 along y, correlation rho):
the kernel reconstruction of the Procedural Kernel Networks paper (eq. 12), usable as a
learnable upsampler at any, also fractional, factor. The geometry (window indices and
offsets, parameters on the output grid) lives in :mod:`._rbf_grid`, the weights and sums of
a band of output rows in :mod:`._rbf_band`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._band import Scratch, resampled_radius
from ._common import Param, check_image, check_window, max_value, row_tiles
from ._rbf_band import _LOG2E, _band, _coefficients, _quad
from ._rbf_grid import _axis, _band_map, _output_size, _param, _phases
from .registry import Kernel, correlation, half_maps, largest, px_sigma

__all__ = ["RBFResample", "rbf_resample"]

# Exponents are taken relative to the nearest pixel's (its weight is then 1) where that one
# is surely >= -30 in a whole band of rows; otherwise relative to the exact per-pixel max.
_FAST_SHIFT = 30.0
# Weights come from products (5 exps per output pixel instead of (2R)^2) where every
# exponent of the window is surely >= -50: relative to the nearest pixel's, weights then
# lie in [e^-50, e^30], and the ratios of neighbouring weights (and the ratios of those
# ratios, checked to be <= e^80) neither overflow nor underflow, in float32 too.
_RECUR_LOW = 50.0
_RECUR_STEP = 80.0
MAX_OUTPUT = 1 << 31  # values per output (8 GiB in float32): larger scales are refused
_TILE_TARGET = 1 << 22  # elements of the largest intermediates per band of output rows


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
        and finite, ``size`` is not a pair of positive ints, the output would hold more
        than ``2**31`` values, the window (radius ``R`` above) would be larger than
        ``max(H, W, 32)`` input pixels (a window beyond the image only repeats its border
        pixels: the work would grow without bound with sigma), a parameter is out of range,
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
    if B * C * Ho * Wo > MAX_OUTPUT:
        what = f"scale={scale!r}" if size is None else f"size={size!r}"
        raise ValueError(
            f"{what} asks for a {Ho}x{Wo} output ({B * C * Ho * Wo:.3g} values, "
            f"{B * C * Ho * Wo * x.element_size() / 2**30:.3g} GiB as {x.dtype}) from a "
            f"{H}x{W} image; outputs are limited to 2**31 values per call: resample in tiles "
            "or use a smaller factor."
        )
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
    top = max(max_value(m) for m in (s1, s2))
    check_window(R, x, f"rbf_resample: sigma1/sigma2 = {top:g} (the largest)")
    K = 2 * R  # window size per axis

    iy, oy, ky = _axis(H, Ho, R)  # (K, Ho) input rows, (K, Ho) offsets, (Ho,) nearest
    ix, ox, kx = _axis(W, Wo, R)
    ny = oy.gather(0, ky[None])[0].to(device=dev, dtype=dt)[:, None, None, None, None]
    nx = ox.gather(0, kx[None])[0].to(device=dev, dtype=dt)  # (Wo,)
    dy = oy.to(device=dev, dtype=dt)[:, :, None, None, None, None]  # (K, Ho, 1, 1, 1, 1)
    dx = ox.to(device=dev, dtype=dt)  # (K, Wo)

    tmp = Scratch(x, enabled=True)

    iy_min, iy_max = iy.amin(0).tolist(), iy.amax(0).tolist()
    iy_cpu, iy = iy, iy.to(dev)
    lix = ix.reshape(-1).to(dev)  # (K*Wo,)
    depth = K * (2 * B * C + 4) * (3 if grad else 1)
    buf = Scratch(x, enabled=not grad)
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


# ------------------------------------------------------------------ descriptor
def _sig(name: str, label: str):
    return px_sigma(name, label, high=2.0, init=0.5, doc="[0, 2] input px")


def _radius(maps, options, inputs) -> int:
    return math.ceil(3 * largest(maps)) + 1


def _example(x, gen):
    H, W = x.shape[-2:]
    return half_maps(x, sigma1=0.5, sigma2=0.7, rho=0.2), {}, {"size": (2 * H, 2 * W)}


KERNELS = (
    Kernel(
        name="rbf",
        rank=30,
        task="upsample",
        description="anisotropic Gaussian RBF resampling (sigmas in input pixels)",
        function=rbf_resample,
        module=RBFResample,
        params=(
            _sig("sigma1", "sigma1 (along x)"),
            _sig("sigma2", "sigma2 (along y)"),
            correlation("rho", "rho (correlation of x and y)"),
        ),
        inputs=("size",),
        pixel_grid="output",
        radius=_radius,
        glyphs=("sigma1", "sigma2", "rho"),
        grid=lambda t: {"sigma1": 2.0 * t, "sigma2": 2.0 * t, "rho": 0.0},
        example=_example,
        example_doc="rbf_resample(x, sigma1, sigma2, rho) to twice the size of a half-size "
        "input, maps of 0.5, 0.7, 0.2 at half the input's resolution",
    ),
)
