"""Polyblur: deblurring by polynomial reblurring, with per-pixel coefficients."""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from ._blur import Blur, _Blur, _kernel, check_blur
from ._common import Param, as_map, check_image
from .registry import Kernel, half_maps
from .registry import Param as P

__all__ = ["Polyblur", "polyblur"]


def polyblur(x: torch.Tensor, b: Param, c: Param, d: Param, *, blur: Blur) -> torch.Tensor:
    r"""Polynomial reblurring with per-pixel coefficients (Polyblur).

    With the blur operator :math:`B` (a convolution with mirrored borders), the output
    applies the polynomial filter :math:`a I + b B + c B^2 + d B^3` with
    :math:`a = 1 - b - c - d` (so that constant images are kept):

    .. math::
        y = a\,x + b\,Bx + c\,B^2 x + d\,B^3 x
          = x + b\,(Bx - x) + c\,(B^2 x - x) + d\,(B^3 x - x),

    where :math:`B^k x` is :math:`k` successive blurs of the whole image (each one
    mirror-pads its input, without repeating the edge pixel, and keeps the valid part
    of the convolution) and :math:`b, c, d` vary per pixel. ``b = c = d = 0`` is the
    identity and ``b = 1, c = d = 0`` the blur itself; for ``b`` in [0, 1] and
    ``c = d = 0`` the output is a convex combination of the input window. Deblurring
    (approximately inverting a mild blur close to :math:`B`) needs coefficients of both
    signs: e.g. the truncated Neumann series :math:`\sum_{k=0}^{3} (I - B)^k = 4I - 6B
    + 4B^2 - B^3` is ``b, c, d = -6, 4, -1``; [1] studies such polynomial filters and
    better-behaved choices of their coefficients.

    Parameters
    ----------
    x : torch.Tensor
        Image ``(B, C, H, W)``, float32 or float64.
    b, c, d : float or torch.Tensor
        Coefficients of :math:`B`, :math:`B^2`, :math:`B^3` (any real values): numbers
        or maps ``(B or 1, 1 or C, h, w)`` at any resolution (bilinearly resampled).
        Powers whose coefficient is the number 0 are not computed.
    blur : float, tuple or torch.Tensor
        The blur :math:`B`, the same for all pixels and channels (channels are blurred
        independently):

        - a number ``sigma > 0``: isotropic Gaussian of that standard deviation (pixels),
          taps :math:`\propto e^{-i^2 / 2\sigma^2}` for :math:`|i| \le \lceil 3\sigma
          \rceil`, applied separably;
        - a tuple ``(sigma_y, sigma_x, rho)`` (note: y first): anisotropic Gaussian
          :math:`\propto \exp(-\frac12 o^\top \Sigma^{-1} o)` over the offset
          :math:`o = (d_x, d_y)`, :math:`\Sigma = [[s_x^2, \rho s_x s_y], [\rho s_x s_y,
          s_y^2]]`, on a ``(2 ceil(3 sigma_y) + 1, 2 ceil(3 sigma_x) + 1)`` grid;
          sigmas > 0, :math:`\rho \in [-1, 1]` (clamped to :math:`\pm(1 - 10^{-6})`);
        - a 2D PSF tensor ``(kh, kw)``: finite, non-negative, positive sum. **It is
          normalized to sum 1**, so only its shape matters, not its scale. It is
          applied as a true convolution (flipped, unlike ``conv2d``'s correlation),
          centred on ``(kh // 2, kw // 2)`` like ``scipy.ndimage.convolve``.

        A Gaussian's radius ``ceil(3 sigma)`` must be at most ``max(H, W, 32)`` pixels
        (a ValueError names the blur and the limit otherwise: a kernel beyond the image
        only repeats its border pixels). Every kernel is normalized to sum 1. Kernels
        with more than 225 taps per pixel (larger than 15x15; separable ones count
        ``kh + kw``) are applied by FFT of the mirror-padded image (same result up to
        rounding), smaller ones directly.

    Returns
    -------
    torch.Tensor
        Filtered image, same shape, dtype and device as ``x``. Differentiable with
        respect to ``x``, ``b``, ``c``, ``d`` (and a PSF tensor that requires grad).

    References
    ----------
    .. [1] M. Delbracio, I. Garcia-Dorado, S. Choi, D. Kelly, P. Milanfar, "Polyblur:
       Removing mild blur by polynomial reblurring", IEEE Transactions on
       Computational Imaging 7, 2021.
    .. [2] B. Wronski, "Procedural Kernel Networks", arXiv:2112.09318, 2021.
    """
    check_image(x)
    check_blur(blur, x)
    ky, kx = _kernel(blur)
    coefs = [as_map(p, x, n) for p, n in ((b, "b"), (c, "c"), (d, "d"))]
    zero = [isinstance(p, Real) and float(p) == 0.0 for p in (b, c, d)]
    order = max((k + 1 for k in range(3) if not zero[k]), default=0)
    if order == 0:
        return x.clone()
    B, C, H, W = x.shape
    op = _Blur(ky, kx, x)
    z = x.reshape(B * C, 1, H, W)  # channels are blurred independently
    powers = []
    for _ in range(order):
        z = op(z)
        powers.append(z.view(B, C, H, W))  # B^k x
    grad = torch.is_grad_enabled() and (
        x.requires_grad or op.kgrad or any(m.requires_grad for m in coefs)
    )
    y = x.clone()
    for k in range(order):
        if zero[k]:
            continue
        if grad:
            y = y + coefs[k] * (powers[k] - x)
        else:
            y.addcmul_(coefs[k], powers[k].sub_(x))
    return y


class Polyblur(nn.Module):
    """Thin module around :func:`polyblur`: ``Polyblur(blur)(x, b, c, d)``.

    A PSF tensor is registered as a buffer (it follows ``.to(device)``).
    """

    def __init__(self, blur: Blur):
        super().__init__()
        check_blur(blur)  # validate now (the kernel is built per call)
        if isinstance(blur, torch.Tensor):
            self.register_buffer("psf", blur)
            self.blur = None
        else:
            self.psf = None
            self.blur = blur

    def forward(self, x: torch.Tensor, b: Param, c: Param, d: Param) -> torch.Tensor:
        return polyblur(x, b, c, d, blur=self.psf if self.blur is None else self.blur)


# ------------------------------------------------------------------ descriptor
def _radius(maps, options, inputs) -> int:
    """Three applications of the blur: three times the blur kernel's radius."""
    blur = inputs.get("blur")
    if blur is None:
        raise ValueError("polyblur needs blur= (a Gaussian sigma, (sy, sx, rho) or a PSF).")
    if isinstance(blur, torch.Tensor):
        r = max(blur.shape[-2:]) // 2
    elif isinstance(blur, tuple | list):
        r = math.ceil(3 * max(abs(float(blur[0])), abs(float(blur[1]))))
    else:
        r = math.ceil(3 * float(blur))
    return 3 * r


def _coef(name: str) -> P:
    # [-8, 8] reaches the cubic Neumann inverse (a, b, c, d) = (4, -6, 4, -1)
    return P(
        name,
        unit="none",
        low=-8.0,
        high=8.0,
        init=0.0,
        strength=True,
        doc="[-8, 8]",
        colormap="PiYG",
        limits="symmetric",
    )


KERNELS = (
    Kernel(
        name="polyblur",
        rank=20,
        task="deblur",
        description="polynomial reblurring a I + b B + c B^2 + d B^3, a = 1 - b - c - d",
        function=polyblur,
        module=Polyblur,
        params=(_coef("b"), _coef("c"), _coef("d")),
        inputs=("blur",),
        radius=_radius,
        convex=False,
        # along the cubic Neumann inverse (b, c, d) = (-6, 4, -1), scaled
        grid=lambda t: {"b": -6 * 1.2 * t, "c": 4 * 1.2 * t, "d": -1 * 1.2 * t},
        example=lambda x, gen: (half_maps(x, b=-2.5, c=1.5, d=-0.3), {}, {"blur": 1.5}),
        example_doc="polyblur(x, b, c, d, blur=1.5), half-res maps of -2.5, 1.5, -0.3",
    ),
)
