"""Gaussian blur with per-pixel (an)isotropic sigmas and correlation.

Each band of rows is summed in :mod:`._gaussian_separable` (``rho = 0``) or
:mod:`._gaussian_general` (any ``rho``).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from ._band import Scratch, as_map_fast, pad_band, resample_rows, resampled_radius
from ._common import Param, as_map, check_image, check_window, odd_int, pad, row_tiles
from ._gaussian_general import _general_tile
from ._gaussian_separable import _no_scratch, _separable_tile
from .registry import Kernel, correlation, half_maps, largest, px_sigma

__all__ = ["Gaussian", "gaussian"]

_TRUNCATE = 3.0  # default window radius in sigmas
_TILE = 1 << 17  # elements per band of rows and per map (see row_tiles)
_SIGMA_CAP = 1e15  # without rho, sigmas above this times max(H, W) are clamped to it


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


def _rows(m: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
    """Rows ``r0:r1`` of a map, or the map itself when it is constant along H."""
    return m if m.shape[-2] == 1 else m[:, :, r0:r1]


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

    Any sigma is accepted, also far beyond the image, in bounded time and memory. Without
    ``rho`` a window wider than the image (radius ``r > max(H, W)``, edge replication) is
    *folded* to radius ``max(H, W)``: every offset ``|d| >= max(H, W)`` reads the same edge
    pixel, so that pixel's weight becomes the sum of theirs (summed in closed form), the
    same result to rounding. As sigma grows the output tends to the (Gaussian-weighted)
    mean of the edge-replicated image; sigmas above ``1e15 max(H, W)`` are clamped there
    (the weights inside the image are then all 1 to float64 rounding, and the result
    changes by less than ``1e-15``). With ``rho`` the window's radius must be at most
    ``max(H, W, 32)``: a larger one raises a ValueError naming the sigma and the limit.

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
    where these factors stay within the floating-point range (without autograd also
    where the factors that leave it only feed negligible weights: tiny sigmas next to
    large ones, as parameter maps have them), and with one exponential per offset
    elsewhere (tiny sigmas with :math:`|r|` near 1). Near
    :math:`|r| = 1` with large sigmas, float32 weights lose precision (the exponent
    is a difference of large terms). With ``rho`` and without autograd, offsets whose
    weights, over a whole band of rows, add up to less than the dtype's ``eps`` times
    the weights that are summed are left out: the output changes by less than ``eps``
    times the range of its window, about one rounding step.

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
    cap = _SIGMA_CAP * max(H, W)  # beyond: the same output to rounding (see the docstring)
    if rh is None or (isinstance(rho, Real) and float(rho) == 0.0):
        same = s2 is s1
        s1 = s1.clamp_max(cap) if float(s1.detach().max()) > cap else s1
        s2 = s1 if same else (s2.clamp_max(cap) if float(s2.detach().max()) > cap else s2)
    if size is None:
        r = resampled_radius([s1, s2], (H, W), lambda m: math.ceil(_TRUNCATE * m))
    else:
        r = odd_int(size, "size") // 2
    if r == 0:  # 1x1 window: the identity
        return x.clone()
    separable = rh is None or (isinstance(rho, Real) and float(rho) == 0.0)
    fold = None  # the true radius when the window is folded to the image
    if separable and r > max(H, W):
        fold, r = r, max(H, W)  # offsets >= max(H, W) all read an edge pixel: exact
    elif not separable:
        top = max(float(s1.detach().max()), float(s2.detach().max()))
        what = f"size={size}" if size is not None else f"sigma1/sigma2 = {top:g} (the largest)"
        hint = "pass rho=None (or 0) for larger windows: the axis-aligned blur folds them exactly"
        check_window(r, x, f"gaussian with rho: {what}", hint)
    xp = pad(x, r) if grad else None  # (B, C, H+2r, W+2r); without grad, band by band
    depth = B * C * (4 if grad else 1)
    y = None if grad else torch.empty_like(x)
    scratch = _no_scratch if grad else Scratch(x)
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
            tiles.append(
                _separable_tile(xt, r, *st[:2], same=s2 is s1, out=out, new=scratch, fold=fold)
            )
        else:
            tiles.append(_general_tile(xt, r, *st, out=out, new=scratch))
    if not grad:
        return y
    return tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=2)


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


# ------------------------------------------------------------------ descriptors
def _radius(maps, options, inputs) -> int:
    """The window radius :func:`gaussian` uses: ``size // 2``, else 3 x the largest sigma."""
    if options.get("size") is not None:
        return int(options["size"]) // 2
    # sigma2 may come as an option of the isotropic descriptor
    return math.ceil(_TRUNCATE * largest({**options, **maps}))


KERNELS = (
    Kernel(
        name="gaussian",
        rank=3,
        task="denoise",
        description="isotropic Gaussian blur, per-pixel sigma (pixels)",
        function=gaussian,
        module=Gaussian,
        params=(px_sigma("sigma1", "sigma"),),
        radius=_radius,
        fixed_window=lambda r: {"size": 2 * r + 1},
        grid=lambda t: {"sigma1": 4.0 * t},
        example=lambda x, gen: (half_maps(x, sigma1=1.0), {}, {}),
        example_doc="gaussian(x, sigma1), sigma1 = half-res map of 1.0",
    ),
    Kernel(
        name="anisotropic",
        rank=4,
        task="denoise",
        description="anisotropic Gaussian blur, per-pixel covariance (sigma1 along x, sigma2 "
        "along y, rho)",
        function=gaussian,
        module=Gaussian,
        params=(
            px_sigma("sigma1", "sigma1 (along x)"),
            px_sigma("sigma2", "sigma2 (along y)"),
            correlation("rho", "rho (correlation of x and y)"),
        ),
        radius=_radius,
        fixed_window=lambda r: {"size": 2 * r + 1},
        glyphs=("sigma1", "sigma2", "rho"),
        grid=lambda t: {"sigma1": 4.0 * t, "sigma2": 4.0 * t, "rho": 0.0},
        example=lambda x, gen: (half_maps(x, sigma1=1.0, sigma2=2.0, rho=0.5), {}, {}),
        example_doc="gaussian(x, sigma1, sigma2, rho), half-res maps of 1.0, 2.0, 0.5",
    ),
)
