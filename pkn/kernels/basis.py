"""Per-pixel linear combination of fixed basis kernels (PKN eq. 8)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_image, check_ndim, check_stack, pad, row_tiles
from .kpn import _BandResampler
from .registry import Kernel
from .registry import Param as P

__all__ = ["Basis", "basis"]


def _bases_tensor(bases: object) -> torch.Tensor:
    """A clear exception unless ``bases`` is a 3-D tensor ``(N, k, k)``."""
    check_ndim(
        bases, "bases", 3, "(N, k, k)", ndim_hint="stack 2-D kernels with torch.stack([...])."
    )
    return bases


def _check_bases(bases: object, x: torch.Tensor) -> torch.Tensor:
    """Validate an ``(N, k, k)`` stack of odd square kernels; return it in ``x``'s dtype."""
    N, kh, kw = _bases_tensor(bases).shape
    if N < 1:
        raise ValueError("bases is empty: it needs at least one kernel (N >= 1).")
    if kh != kw or kh % 2 == 0:
        raise ValueError(
            f"bases must hold square kernels of odd size k (1, 3, 5, ...), got {kh}x{kw}."
        )
    if not bases.is_floating_point():
        bases = bases.to(x.dtype)
    with torch.no_grad():
        if not bool(torch.isfinite(bases).all()):
            raise ValueError("bases contains NaN or Inf values.")
    return bases.to(dtype=x.dtype, device=x.device)


def basis(x: torch.Tensor, coefficients: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    r"""Per-pixel linear combination of ``N`` fixed kernels.

    With :math:`r = k // 2`, the output is

    .. math::
        y_c(p) = \sum_{n=0}^{N-1} a_{c,n}(p) \sum_{dy=-r}^{r} \sum_{dx=-r}^{r}
                 b_n[dy + r,\, dx + r]\; x_c(p + (dy, dx))

    where :math:`b_n` = ``bases[n]`` and :math:`a` are the ``coefficients`` after
    bilinear resampling (``align_corners=False``) to the image size. Kernels are
    applied as a correlation (``bases[n][dy + r, dx + r]`` multiplies the pixel at
    offset ``(dy, dx)``, the same convention as :func:`pkn.kernels.kpn.kpn`), i.e. the
    per-pixel kernel is :math:`\sum_n a_n(p)\, b_n`. Coefficients and bases are used
    as given, with no normalization: with non-negative bases that each sum to 1 and
    non-negative coefficients summing to 1 at every pixel (e.g. a softmax), the output
    is a convex combination of the input pixels of the ``k x k`` window. Bases may be
    any real kernels (Gaussians of several sigmas, derivative filters, ...). Borders
    are mirrored.

    The image is filtered with all ``N`` bases at once (one grouped ``conv2d`` per band
    of rows), and the ``N`` responses are then combined with the per-pixel
    coefficients: about ``N (k^2 + 1)`` multiply-adds per pixel and channel.

    Parameters
    ----------
    x : torch.Tensor
        Image ``(B, C, H, W)``, float32 or float64.
    coefficients : torch.Tensor
        ``(B or 1, N, h, w)``, shared by all channels, or ``(B or 1, C*N, h, w)``, one
        set per channel in channel-major order (channel ``c`` uses
        ``c*N : (c+1)*N``). Any resolution ``h, w``; bilinearly resampled to ``(H, W)``.
    bases : torch.Tensor
        ``(N, k, k)`` kernels, ``k`` odd, any finite real values.

    Returns
    -------
    torch.Tensor
        Filtered image, same shape, dtype and device as ``x``. Differentiable with
        respect to ``x``, ``coefficients`` and ``bases``.

    References
    ----------
    .. [1] B. Wronski, "Procedural Kernel Networks", arXiv:2112.09318, 2021 (eq. 8).
    """
    check_image(x)
    b = _check_bases(bases, x)
    a = check_stack(coefficients, x, "coefficients", "(B or 1, N or C*N, h, w)")
    B, C, H, W = x.shape
    N, k = b.shape[0], b.shape[-1]
    n = a.shape[1]
    if n == N:
        G = 1
    elif n == C * N:
        G = C
    else:
        raise ValueError(
            f"coefficients has {n} channels; with {N} bases and a {C}-channel image it must "
            f"have {N} (shared by all channels) or {C * N} (C*N, one set per channel)."
        )
    r = k // 2
    Ba = a.shape[0]
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, a, b))
    xp = pad(x, r).reshape(B * C, 1, H + 2 * r, W + 2 * r)  # one image per (b, c)
    wt = b.unsqueeze(1)  # (N, 1, k, k) conv weights: correlation, as documented
    res = _BandResampler(a, (H, W))
    depth = (2 * B * C * (N + 1) + Ba * G * N) * (3 if grad else 1)
    out = None if grad else torch.empty_like(x)
    tiles = []
    for r0, r1 in row_tiles(H, W + 2 * r, depth):
        h = r1 - r0
        f = F.conv2d(xp[:, :, r0 : r1 + 2 * r], wt)  # (B*C, N, h, W)
        f = f.view(B, C, N, h, W)
        ab = res.band(r0, r1)[0].reshape(Ba, G, N, h, W)  # (Ba, G, N, h, W)
        if grad:
            tiles.append((f * ab).sum(dim=2))  # (B, C, h, W)
        else:
            ob = out[:, :, r0:r1]  # (B, C, h, W) view
            torch.mul(f[:, :, 0], ab[:, :, 0], out=ob)
            for i in range(1, N):
                ob.addcmul_(f[:, :, i], ab[:, :, i])
    if not grad:
        return out
    return tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=2)


class Basis(nn.Module):
    """Thin module around :func:`basis` holding the ``(N, k, k)`` kernels as a buffer.

    ``Basis(bases)(x, coefficients)``; the buffer moves with ``.to(device/dtype)`` and is
    saved in the ``state_dict``.
    """

    bases: torch.Tensor

    def __init__(self, bases: torch.Tensor):
        super().__init__()
        self.register_buffer("bases", _bases_tensor(bases).detach().clone())

    @property
    def num_bases(self) -> int:
        return self.bases.shape[0]

    def forward(self, x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        return basis(x, coefficients, self.bases)


# ------------------------------------------------------------------ descriptor
def _example(x, gen):
    H, W = x.shape[-2:]
    half = ((H + 1) // 2, (W + 1) // 2)
    r = torch.arange(-2, 3, dtype=x.dtype)
    d2 = r[:, None] ** 2 + r[None, :] ** 2  # (5, 5)
    s = torch.tensor([0.5, 1.0, 1.5, 2.5], dtype=x.dtype)[:, None, None]
    bases = torch.exp(-d2 / (2 * s**2))  # (4, 5, 5)
    bases = bases / bases.sum(dim=(1, 2), keepdim=True)
    coefficients = torch.softmax(torch.randn((1, 4, *half), generator=gen, dtype=x.dtype), dim=1)
    return {"coefficients": coefficients}, {"bases": bases}, {}


KERNELS = (
    Kernel(
        name="basis",
        rank=41,
        task="",
        description="per-pixel linear combination of N fixed kernels",
        function=basis,
        module=Basis,
        params=(P("coefficients", remap="none", channels=0, limits="percentile", colormap="gray"),),
        radius=lambda maps, options, inputs: options["bases"].shape[-1] // 2,
        convex=False,
        example=_example,
        example_doc="basis(x, coefficients, bases), 4 fixed 5x5 Gaussian bases, "
        "random half-res coefficients",
    ),
)
