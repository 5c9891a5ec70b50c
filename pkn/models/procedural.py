"""Network-driven kernels: which kernels a parameter network can drive, each task's
default, and the upsampling of half-resolution maps.

Everything about a kernel (its parameters, remapping, strength, how to run it) lives in
its descriptor (:class:`pkn.kernels.registry.Kernel`, next to the kernel's function);
this module only selects from the registry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..kernels.registry import Kernel, get, names

__all__ = ["get_spec", "network_kernels", "tasks", "upsample_map"]


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


def network_kernels(task: str | None = None) -> list[str]:
    """Names of the kernels a parameter network can drive (optionally of one task)."""
    return names(task, network=True)


def tasks() -> dict[str, str]:
    """Task -> its default kernel (the first network kernel of the task)."""
    out: dict[str, str] = {}
    for n in network_kernels():
        out.setdefault(get(n).task, n)
    return out


def get_spec(kernel: str) -> Kernel:
    """The descriptor of a network-driven ``kernel`` (a clear error otherwise)."""
    valid = network_kernels()
    if not isinstance(kernel, str) or kernel not in valid:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {valid}.")
    return get(kernel)
