"""The kernel probe: the weights a procedural kernel applied to the input at one pixel.

Every kernel here computes, at each output pixel, ``y(p) = sum_q w_q(p) x(q) + bias(p)``
where the weights may depend on the image (non-local means compares patches) but the
output is linear in the pixels being averaged. The probe recovers ``w_q(p)`` exactly by
automatic differentiation of ``y(p)`` with respect to those pixels, with the
weight-computing path (the NLM guide) held fixed, on a crop just large enough for the
kernel's support. It is the visible proof that an output pixel is a weighted average of
real input pixels: for the smoothing kernels the weights are non-negative and sum to 1.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ._common import check_image

__all__ = ["Probe", "effective_weights"]


@dataclass(frozen=True)
class Probe:
    """Weights one output pixel applied to the input.

    Attributes
    ----------
    weights : numpy.ndarray
        ``(h, w)`` float64 weights over input pixels ``[row0:row0+h, col0:col0+w]`` of
        the probed channel (zeros where the kernel did not reach).
    origin : tuple of int
        ``(row0, col0)``: input coordinates of ``weights[0, 0]``.
    bias : float
        Constant term of the output (non-zero only for the affine model).
    value : float
        The output value at the pixel, ``sum(weights * input) + bias``.
    """

    weights: np.ndarray
    origin: tuple[int, int]
    bias: float
    value: float

    @property
    def sum(self) -> float:
        """Sum of the weights (1 for every normalized kernel)."""
        return float(self.weights.sum())

    @property
    def min(self) -> float:
        """Smallest weight inside the support (>= 0 for the smoothing kernels)."""
        return float(self.weights.min())

    @property
    def max(self) -> float:
        return float(self.weights.max())

    @property
    def n_eff(self) -> float:
        """Effective number of pixels averaged, ``sum(w)^2 / sum(w^2)`` (``1/sum(w^2)`` when
        the weights sum to 1)."""
        sq = float(np.square(self.weights).sum())
        return self.sum**2 / sq if sq > 0 else 0.0


def effective_weights(
    kernel: str,
    x: torch.Tensor,
    *params,
    pixel: tuple[int, int],
    batch: int = 0,
    channel: int = 0,
    **options,
) -> Probe:
    """Weights that ``kernel`` applied to the input pixels to make output ``pixel``.

    Parameters
    ----------
    kernel : str
        A kernel of the registry (:func:`pkn.kernels.registry.names`): ``"nlm"``,
        ``"bilateral"``, ``"gaussian"``, ``"anisotropic"``, ``"polyblur"``, ``"rbf"``, ...
    x : torch.Tensor
        The image ``(B, C, H, W)`` the kernel was run on.
    *params
        The kernel's parameter maps in its order (or by keyword, by name), exactly as
        passed to it (numbers or maps at
        any resolution).
    pixel : (int, int)
        ``(row, col)`` of the output pixel (for ``"rbf"``: on the output grid; its
        ``scale``/``size`` option is required, and the probe differentiates the whole
        resampling, since its window size depends on the whole map).
    batch, channel : int
        Which image of the batch and which channel to probe.
    **options
        The kernel's keyword options (``patch_size``, ``blur``, ``guide``, ...).

    Returns
    -------
    Probe
        The weights over an input window around ``pixel`` with their sum, minimum and
        effective number of pixels.
    """
    from .registry import get

    k = get(kernel)
    maps, opts, inputs = _split(k, params, options)
    if k.pixel_grid != "input":
        return _resampling_probe(k, x, maps, opts, inputs, pixel, batch, channel)
    check_image(x)
    B, C, H, W = x.shape
    row, col = (int(v) for v in pixel)
    if not (0 <= row < H and 0 <= col < W):
        raise ValueError(f"pixel {pixel} lies outside the {H}x{W} image.")
    if not (0 <= batch < B and 0 <= channel < C):
        raise ValueError(f"batch {batch} / channel {channel} out of range for shape {(B, C)}.")

    def full(t):  # maps resampled to the image grid, as the kernel does internally
        if isinstance(t, torch.Tensor) and t.ndim == 4 and t.shape[-2:] not in ((H, W), (1, 1)):
            return F.interpolate(t.to(x.dtype), size=(H, W), mode="bilinear", align_corners=False)
        return t

    maps = {n: full(v) for n, v in maps.items()}
    opts = {n: full(v) for n, v in opts.items()}
    r = k.support(maps, opts, **inputs, x=x)
    if k.fixed_window is not None:
        opts = {**k.fixed_window(r), **opts}  # the window the whole image used, not the crop's
    m = r + 1
    r0, r1, c0, c1 = max(0, row - m), min(H, row + m + 1), max(0, col - m), min(W, col + m + 1)

    def crop(t):
        if isinstance(t, torch.Tensor) and t.ndim == 4:
            bt = t[batch : batch + 1] if t.shape[0] > 1 else t
            return bt if bt.shape[-2:] == (1, 1) else bt[..., r0:r1, c0:c1].double()
        return t

    xc = x[batch : batch + 1, :, r0:r1, c0:c1].detach().to(torch.float64)
    src = xc.clone().requires_grad_(True)
    opts = {n: crop(v) for n, v in opts.items()}
    if k.weights_from_guide:  # weights are computed from the guide; hold it fixed
        opts["guide"] = xc if opts.get("guide") is None else opts["guide"].detach()
    args = {n: crop(v) for n, v in maps.items()}
    with torch.enable_grad():
        y = k.function(src, **args, **opts, **inputs)
        out = y[0, channel, row - r0, col - c0]
        (grad,) = torch.autograd.grad(out, src)
    w = grad[0, channel].numpy()
    value = float(out.detach())
    bias = value - float((w * xc[0, channel].numpy()).sum())
    if grad[0, :channel].abs().sum() + grad[0, channel + 1 :].abs().sum() > 0:
        raise RuntimeError("kernel mixes channels; the probe reads one channel at a time.")
    return Probe(weights=w, origin=(r0, c0), bias=bias if abs(bias) > 1e-12 else 0.0, value=value)


def _split(k, params: tuple, options: dict) -> tuple[dict, dict, dict]:
    """The caller's arguments, bound to the kernel function's signature, as
    (maps by name, fixed options, per-call inputs)."""
    try:
        bound = inspect.signature(k.function).bind(None, *params, **options)
    except TypeError as e:
        raise TypeError(f"arguments do not fit kernel {k.name!r}: {e}") from None
    args = dict(list(bound.arguments.items())[1:])  # without the image
    args.update(args.pop("kwargs", None) or {})
    maps = {n: args.pop(n) for n in k.param_names if args.get(n) is not None}
    inputs = {n: args.pop(n) for n in k.inputs if args.get(n) is not None}
    return maps, args, inputs


def _resampling_probe(k, x, maps, options, inputs, pixel, batch, channel) -> Probe:
    """Probe of a kernel whose output grid differs from the input's (resampling): the
    whole resampling is differentiated, since its window depends on the whole map."""
    check_image(x)
    xb = x[batch : batch + 1].detach().to(torch.float64).clone().requires_grad_(True)
    args = {
        n: (p[batch : batch + 1] if p.shape[0] > 1 else p).double()
        if isinstance(p, torch.Tensor) and p.ndim == 4
        else p
        for n, p in maps.items()
    }
    with torch.enable_grad():
        y = k.function(xb, **args, **options, **inputs)
        Ho, Wo = y.shape[-2:]
        row, col = (int(v) for v in pixel)
        if not (0 <= row < Ho and 0 <= col < Wo):
            raise ValueError(f"pixel {pixel} lies outside the {Ho}x{Wo} output.")
        if not 0 <= channel < x.shape[1]:
            raise ValueError(f"channel {channel} out of range for {x.shape[1]} channels.")
        out = y[0, channel, row, col]
        (grad,) = torch.autograd.grad(out, xb)
    g = grad[0, channel]
    nz = torch.nonzero(g)
    r0, c0 = (int(v) for v in nz.min(0).values) if len(nz) else (0, 0)
    r1, c1 = (int(v) + 1 for v in nz.max(0).values) if len(nz) else (1, 1)
    w = g[r0:r1, c0:c1].numpy()
    value = float(out.detach())
    xin = xb[0, channel, r0:r1, c0:c1].detach().numpy()
    bias = value - float((w * xin).sum())
    return Probe(weights=w, origin=(r0, c0), bias=bias if abs(bias) > 1e-12 else 0.0, value=value)
