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

import math
from collections.abc import Callable
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


def _kernels() -> dict[str, tuple[Callable, Callable]]:
    """name -> (function, support radius from (args, kwargs))."""
    from .affine import affine
    from .basis import basis
    from .gaussian import gaussian
    from .kpn import kpn
    from .nlm import bilateral, nlm
    from .polyblur import polyblur

    def sigmas_radius(args, kw):
        if kw.get("size") is not None:
            return int(kw["size"]) // 2
        vals = [a for a in ([*list(args[:2]), kw.get("sigma2")]) if a is not None]
        return math.ceil(3 * max(_max(v) for v in vals))

    def polyblur_radius(args, kw):
        blur = kw["blur"]
        if isinstance(blur, torch.Tensor):
            r = max(blur.shape[-2:]) // 2
        elif isinstance(blur, tuple | list):
            r = math.ceil(3 * max(abs(float(blur[0])), abs(float(blur[1]))))
        else:
            r = math.ceil(3 * float(blur))
        return 3 * r

    def kpn_radius(args, kw):
        n = args[0].shape[1]
        k = round(math.sqrt(n))
        if k * k != n:  # per-channel logits: C * K * K
            k = round(math.sqrt(n / kw["_channels"]))
        return k // 2

    return {
        "nlm": (nlm, lambda a, kw: kw.get("patch_size", 3) // 2 + kw.get("search_size", 5) // 2),
        "bilateral": (bilateral, lambda a, kw: kw.get("search_size", 5) // 2),
        "gaussian": (gaussian, lambda a, kw: sigmas_radius(a[:1] + a[1:2], kw)),
        "anisotropic": (gaussian, lambda a, kw: sigmas_radius(a[:2], kw)),
        "polyblur": (polyblur, polyblur_radius),
        "kpn": (kpn, kpn_radius),
        "basis": (basis, lambda a, kw: a[1].shape[-1] // 2),
        "affine": (affine, lambda a, kw: 0),
    }


def _max(v) -> float:
    return float(v.detach().max()) if isinstance(v, torch.Tensor) else float(v)


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
        One of ``"nlm"``, ``"bilateral"``, ``"gaussian"``, ``"anisotropic"``,
        ``"polyblur"``, ``"kpn"``, ``"basis"``, ``"affine"``, ``"rbf"``.
    x : torch.Tensor
        The image ``(B, C, H, W)`` the kernel was run on.
    *params
        The kernel's positional parameters exactly as passed to it (numbers or maps at
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
    if kernel == "rbf":
        return _rbf_probe(x, params, pixel, batch, channel, options)
    table = _kernels()
    if kernel not in table:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {sorted(table)}.")
    check_image(x)
    B, C, H, W = x.shape
    row, col = (int(v) for v in pixel)
    if not (0 <= row < H and 0 <= col < W):
        raise ValueError(f"pixel {pixel} lies outside the {H}x{W} image.")
    if not (0 <= batch < B and 0 <= channel < C):
        raise ValueError(f"batch {batch} / channel {channel} out of range for shape {(B, C)}.")
    fn, radius = table[kernel]
    if kernel == "anisotropic" and len(params) < 3:
        raise ValueError("the anisotropic kernel takes sigma1, sigma2 and rho.")

    def full(t):  # maps resampled to the image grid, as the kernel does internally
        if isinstance(t, torch.Tensor) and t.ndim == 4 and t.shape[-2:] not in ((H, W), (1, 1)):
            return F.interpolate(t.to(x.dtype), size=(H, W), mode="bilinear", align_corners=False)
        return t

    params = tuple(full(p) for p in params)
    options = {k: full(v) for k, v in options.items()}
    r = radius(params, {**options, "_channels": C})
    if kernel in ("gaussian", "anisotropic") and options.get("size") is None:
        options["size"] = 2 * r + 1  # the window the whole image used, not the crop's
    m = r + 1
    r0, r1, c0, c1 = max(0, row - m), min(H, row + m + 1), max(0, col - m), min(W, col + m + 1)

    def crop(t):
        if isinstance(t, torch.Tensor) and t.ndim == 4:
            bt = t[batch : batch + 1] if t.shape[0] > 1 else t
            return bt if bt.shape[-2:] == (1, 1) else bt[..., r0:r1, c0:c1].double()
        return t

    xc = x[batch : batch + 1, :, r0:r1, c0:c1].detach().to(torch.float64)
    src = xc.clone().requires_grad_(True)
    opts = {k: crop(v) for k, v in options.items()}
    if kernel in ("nlm", "bilateral"):
        # weights are computed from the guide; hold it fixed to read them off
        opts["guide"] = xc if opts.get("guide") is None else opts["guide"].detach()
    args = [crop(p) for p in params]
    with torch.enable_grad():
        y = fn(src, *args, **opts)
        out = y[0, channel, row - r0, col - c0]
        (grad,) = torch.autograd.grad(out, src)
    w = grad[0, channel].numpy()
    value = float(out.detach())
    bias = value - float((w * xc[0, channel].numpy()).sum())
    if grad[0, :channel].abs().sum() + grad[0, channel + 1 :].abs().sum() > 0:
        raise RuntimeError("kernel mixes channels; the probe reads one channel at a time.")
    return Probe(weights=w, origin=(r0, c0), bias=bias if abs(bias) > 1e-12 else 0.0, value=value)


def _rbf_probe(x, params, pixel, batch, channel, options) -> Probe:
    from .rbf import rbf_resample

    check_image(x)
    xb = x[batch : batch + 1].detach().to(torch.float64).clone().requires_grad_(True)
    args = [
        (p[batch : batch + 1] if p.shape[0] > 1 else p).double()
        if isinstance(p, torch.Tensor) and p.ndim == 4
        else p
        for p in params
    ]
    with torch.enable_grad():
        y = rbf_resample(xb, *args, **options)
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
