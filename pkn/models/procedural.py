"""Procedural kernels as the network sees them: raw outputs -> named parameter maps -> filter.

A :class:`KernelSpec` says how many maps a kernel needs, how to turn the network's raw
(unconstrained) outputs into valid parameters (the remapping), how ``strength`` rescales
them, and how to run the classical filter at full resolution with those maps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..kernels import remap

__all__ = ["KERNELS", "TASKS", "KernelSpec", "get_spec", "upsample_map"]


def upsample_map(m: torch.Tensor, size: tuple[int, int], factor: int = 2) -> torch.Tensor:
    """Resample a map whose pixel ``(i, j)`` covers ``[f i, f i + f)`` to full resolution.

    Bilinear by exactly ``factor`` (pixel centres aligned), then cropped to ``size``: exact
    also for odd image sizes, where the map covers one row/column more than the image.
    """
    if m.shape[-2:] == (1, 1):
        return m  # one value per image: broadcasts
    if factor == 1:
        return m[..., : size[0], : size[1]]
    up = F.interpolate(m, scale_factor=float(factor), mode="bilinear", align_corners=False)
    return up[..., : size[0], : size[1]]


@dataclass(frozen=True)
class KernelSpec:
    """How one procedural kernel is driven by a parameter network.

    Attributes
    ----------
    name, task : str
        Kernel name (``"nlm"``) and task (``"denoise"``, ``"deblur"``, ``"upsample"``).
    params : tuple of str
        Names of the parameter maps, in the order of the network's outputs.
    to_params : callable
        ``(raw (B, P, h, w), noise_std (B, 1, h, w)) -> dict name -> (B, 1, h, w)``.
    from_params : callable
        Inverse of ``to_params`` (initialises raw maps from known parameters).
    strength : tuple of str
        The maps that ``strength`` multiplies.
    description : str
        One line for model cards and menus.
    init : tuple of float
        Parameter values the untrained network starts from (NLM: multiplier of noise).
    ranges : dict
        Documented range of each parameter.
    """

    name: str
    task: str
    params: tuple[str, ...]
    to_params: Callable
    from_params: Callable
    strength: tuple[str, ...]
    description: str
    init: tuple[float, ...] = ()
    ranges: dict = field(default_factory=dict)

    def init_raw(self) -> torch.Tensor:
        """Raw values ``(P,)`` that :attr:`to_params` maps to :attr:`init` (unit noise)."""
        one = torch.ones(1, 1, 1, 1)
        pairs = zip(self.params, self.init, strict=True)
        p = {n: torch.full((1, 1, 1, 1), float(v)) for n, v in pairs}
        return self.from_params(p, one).flatten()

    @property
    def n_out(self) -> int:
        return len(self.params)


def _sig(lo, hi):
    return (lambda t: remap.sigmoid_range(t, lo, hi)), (
        lambda v: remap.inverse_sigmoid_range(v, lo, hi)
    )


_NLM_MULT = (0.0, 4.0)  # sigma = multiplier * local noise std
_GAUSS = (0.0, 4.0)  # pixels
_POLY = (-8.0, 8.0)  # reaches the cubic Neumann inverse (a, b, c, d) = (4, -6, 4, -1)
_RBF = (0.0, 2.0)  # input pixels
_SPATIAL = (0.0, 4.0)  # NLM spatial sigma, pixels (at 4 px the 5x5 search window is nearly flat)


def _noise_relative(name: str):
    f, finv = _sig(*_NLM_MULT)

    def to_params(raw, noise_std):
        return {name: f(raw[:, 0:1]) * noise_std}

    def from_params(p, noise_std):
        return finv(p[name] / noise_std.clamp_min(1e-8))

    return to_params, from_params


def _independent(names, ranges, rho: bool = False):
    def to_params(raw, noise_std):
        out = {}
        for i, n in enumerate(names):
            if n == "rho":
                out[n] = remap.correlation(raw[:, i : i + 1])
            else:
                out[n] = remap.sigmoid_range(raw[:, i : i + 1], *ranges[n])
        return out

    def from_params(p, noise_std):
        raws = []
        for n in names:
            if n == "rho":
                raws.append(remap.inverse_correlation(p[n]))
            else:
                raws.append(remap.inverse_sigmoid_range(p[n], *ranges[n]))
        return torch.cat(raws, dim=1)

    return to_params, from_params


def _make() -> dict[str, KernelSpec]:
    specs = {}
    for name, desc in (
        ("nlm-sigma", "non-local means (3x3 patches, 5x5 search), per-pixel signal sigma only"),
        ("bilateral", "bilateral filter (5x5 window), per-pixel range sigma"),
    ):
        t, f = _noise_relative("sigma")
        specs[name] = KernelSpec(
            name,
            "denoise",
            ("sigma",),
            t,
            f,
            ("sigma",),
            desc,
            (1.2,),
            {"sigma": "multiplier in [0, 4] times the local noise std"},
        )
    t0, f0 = _noise_relative("sigma")
    ts, fs = _independent(("spatial_sigma",), {"spatial_sigma": _SPATIAL})

    def t_sp(raw, noise_std):
        return {**t0(raw[:, 0:1], noise_std), **ts(raw[:, 1:2], noise_std)}

    def f_sp(p, noise_std):
        return torch.cat([f0(p, noise_std), fs(p, noise_std)], dim=1)

    specs["nlm"] = KernelSpec(
        "nlm",
        "denoise",
        ("sigma", "spatial_sigma"),
        t_sp,
        f_sp,
        ("sigma",),
        "non-local means (3x3 patches, 5x5 search), per-pixel signal sigma and spatial sigma",
        (1.2, 2.0),
        {
            "sigma": "multiplier in [0, 4] times the local noise std",
            "spatial_sigma": "[0, 4] px, Gaussian falloff over the search window",
        },
    )
    r = {"sigma1": _GAUSS, "sigma2": _GAUSS}
    t, f = _independent(("sigma1",), r)
    specs["gaussian"] = KernelSpec(
        "gaussian",
        "denoise",
        ("sigma1",),
        t,
        f,
        ("sigma1",),
        "isotropic Gaussian blur, per-pixel sigma (pixels)",
        (1.0,),
        {"sigma1": "[0, 4] px"},
    )
    t, f = _independent(("sigma1", "sigma2", "rho"), r)
    specs["anisotropic"] = KernelSpec(
        "anisotropic",
        "denoise",
        ("sigma1", "sigma2", "rho"),
        t,
        f,
        ("sigma1", "sigma2"),
        "anisotropic Gaussian blur, per-pixel covariance (sigma1 along x, sigma2 along y, rho)",
        (1.0, 1.0, 0.0),
        {"sigma1": "[0, 4] px", "sigma2": "[0, 4] px", "rho": "(-0.999, 0.999)"},
    )
    r = {"b": _POLY, "c": _POLY, "d": _POLY}
    t, f = _independent(("b", "c", "d"), r)
    specs["polyblur"] = KernelSpec(
        "polyblur",
        "deblur",
        ("b", "c", "d"),
        t,
        f,
        ("b", "c", "d"),
        "polynomial reblurring a I + b B + c B^2 + d B^3, a = 1 - b - c - d",
        (0.0, 0.0, 0.0),
        {"b": "[-8, 8]", "c": "[-8, 8]", "d": "[-8, 8]"},
    )
    r = {"sigma1": _RBF, "sigma2": _RBF}
    t, f = _independent(("sigma1", "sigma2", "rho"), r)
    specs["rbf"] = KernelSpec(
        "rbf",
        "upsample",
        ("sigma1", "sigma2", "rho"),
        t,
        f,
        ("sigma1", "sigma2"),
        "anisotropic Gaussian RBF resampling (sigmas in input pixels)",
        (0.5, 0.5, 0.0),
        {"sigma1": "[0, 2] input px", "sigma2": "[0, 2] input px", "rho": "(-0.999, 0.999)"},
    )
    return specs


KERNELS: dict[str, KernelSpec] = _make()
TASKS = {"denoise": "nlm", "deblur": "polyblur", "upsample": "rbf"}


def get_spec(kernel: str) -> KernelSpec:
    """The :class:`KernelSpec` for ``kernel`` (clear error for unknown names)."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}.")
    return KERNELS[kernel]
