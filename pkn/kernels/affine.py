"""Per-pixel local affine (guided) model (PKN eq. 10)."""

from __future__ import annotations

import torch
from torch import nn

from ._common import Param, as_map, check_guide, check_image
from .registry import Kernel
from .registry import Param as P

__all__ = ["Affine", "affine"]


def affine(
    x: torch.Tensor,
    w0: Param,
    w1: Param,
    *,
    guide: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Per-pixel affine function of a guide image (local linear model).

    .. math:: y_c(p) = w_{1,c}(p)\, g_c(p) + w_{0,c}(p)

    where :math:`g` is ``guide`` (default: ``x`` itself) and :math:`w_0, w_1` are
    numbers or maps bilinearly resampled (``align_corners=False``) to the image size.
    This is the local linear model :math:`q = a I + b` of the guided filter [1]_, with
    the offset ``w0`` (:math:`b`) and slope ``w1`` (:math:`a`) given per pixel (e.g.
    predicted by a network at low resolution) instead of fitted by box-filtered
    regression. ``w0 = 0, w1 = 1`` is the identity (on the guide). Maps of one
    channel are shared by all channels; the output always has ``x``'s shape.

    Parameters
    ----------
    x : torch.Tensor
        Image ``(B, C, H, W)``, float32 or float64. With a ``guide`` it only sets the
        output's shape, dtype and device (its values are not used).
    w0, w1 : float or torch.Tensor
        Offset and slope: a number or a map ``(B or 1, 1 or C, h, w)`` at any
        resolution, any finite real values.
    guide : torch.Tensor, optional
        ``(B, 1 or C, H, W)`` image the affine model is applied to (a 1-channel guide
        is shared by all channels); default ``x``.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``, same dtype and device as ``x``. Differentiable with respect
        to ``x`` (when no guide is given), ``w0``, ``w1`` and ``guide``.

    References
    ----------
    .. [1] K. He, J. Sun, X. Tang, "Guided image filtering", ECCV 2010.
    .. [2] B. Wronski, "Procedural Kernel Networks", arXiv:2112.09318, 2021 (eq. 10).
    """
    check_image(x)
    B, C, H, W = x.shape
    g = x
    if guide is not None:
        check_guide(guide, x)
        if guide.shape[1] not in (1, C):
            raise ValueError(
                f"guide has {guide.shape[1]} channels, but the image has {C} (or use 1)."
            )
        g = guide.to(dtype=x.dtype, device=x.device)
    a0 = as_map(w0, x, "w0")  # (B, 1|C, H, W)
    a1 = as_map(w1, x, "w1")  # (B, 1|C, H, W)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (g, a0, a1))
    if grad:
        y = torch.addcmul(a0, a1, g)  # (B, 1|C, H, W)
        return y if y.shape == x.shape else y.expand(B, C, H, W).clone()
    out = torch.empty_like(x)  # (B, C, H, W)
    out.copy_(a0)
    return out.addcmul_(a1, g)


class Affine(nn.Module):
    """Thin module around :func:`affine`: ``Affine()(x, w0, w1, guide=None)``."""

    def forward(
        self,
        x: torch.Tensor,
        w0: Param,
        w1: Param,
        guide: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return affine(x, w0, w1, guide=guide)


# ------------------------------------------------------------------ descriptor
def _example(x, gen):
    H, W = x.shape[-2:]
    half = ((H + 1) // 2, (W + 1) // 2)
    w0 = -0.05 + 0.1 * torch.rand((1, 1, *half), generator=gen).to(x.dtype)
    w1 = 0.8 + 0.4 * torch.rand((1, 1, *half), generator=gen).to(x.dtype)
    return {"w0": w0, "w1": w1}, {}, {}


KERNELS = (
    Kernel(
        name="affine",
        rank=42,
        task="",
        description="per-pixel affine function of a guide image (local linear model)",
        function=affine,
        module=Affine,
        params=(
            P(
                "w0",
                unit="intensity",
                remap="none",
                label="offset",
                colormap="PiYG",
                limits="symmetric",
            ),
            P(
                "w1",
                unit="none",
                remap="none",
                label="gain",
                colormap="viridis",
                limits="percentile",
            ),
        ),
        radius=lambda maps, options, inputs: 0,
        convex=False,
        keeps_constants=False,
        example=_example,
        example_doc="affine(x, w0, w1), random half-res maps w0 in [-0.05, 0.05], w1 in [0.8, 1.2]",
    ),
)
