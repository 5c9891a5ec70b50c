"""Baselines that know the clean image: the per-image global optimum and the local oracle.

Both search the same constrained parameter space as the network (they optimise the raw
values that :mod:`pkn.models.procedural` remaps), so they bound what a network of this
kernel can achieve:

* **global optimum**: one parameter set per image (shared by its channels) that
  maximises PSNR against the clean image: a coarse grid along the kernel's main axis,
  then Adam on the raw values;
* **local oracle**: per-pixel maps at the network's resolution (half), optimised by Adam
  on the MSE against the clean image, starting from the global optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .models.pkn_model import _half, run_filter
from .models.procedural import get_spec
from .training.losses import psnr

__all__ = ["OracleResult", "global_optimum", "local_oracle"]


@dataclass
class OracleResult:
    """``output`` (restored), ``maps`` (name -> tensor), ``psnr`` (dB, whole image)."""

    output: torch.Tensor
    maps: dict
    psnr: float


def _grid_raw(spec, n: int, noise_half: torch.Tensor) -> list[torch.Tensor]:
    """Raw parameter candidates ``(1, P, 1, 1)`` along the kernel's main axis
    (:attr:`~pkn.kernels.registry.Kernel.grid`; intensities as multiples of the noise)."""
    noise = noise_half.mean().view(1, 1, 1, 1)
    cands = []
    for t in np.linspace(0.05, 0.95, n):
        p = {}
        for name, v in spec.grid(float(t)).items():
            v = torch.tensor(float(v)).view(1, 1, 1, 1)
            p[name] = v * noise if spec.param(name).unit == "intensity" else v
        cands.append(spec.from_params(p, noise))
    return cands


def _refined(spec, raw: torch.Tensor, noise_half: torch.Tensor, name: str, values) -> list:
    """``raw`` with parameter ``name`` replaced by each of ``values`` (the second stage)."""
    n = noise_half.mean().view(1, 1, 1, 1)
    p = spec.to_params(raw, n)
    scale = n if spec.param(name).unit == "intensity" else 1.0
    return [spec.from_params({**p, name: torch.full_like(p[name], v) * scale}, n) for v in values]


def _mse(y, clean):
    return (y - clean).square().mean()


def _descend(spec, raw0, noisy, clean, noise_half, iters, lr, filter_kw) -> OracleResult:
    """Adam on the raw parameters from ``raw0``; returns the best iterate seen."""
    raw = raw0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([raw], lr=lr)
    best_raw, best_loss = raw.detach().clone(), float("inf")
    for _ in range(iters + 1):
        loss = _mse(run_filter(spec, noisy, spec.to_params(raw, noise_half), **filter_kw), clean)
        lv = float(loss.detach())
        if lv < best_loss:
            best_loss, best_raw = lv, raw.detach().clone()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        maps = spec.to_params(best_raw, noise_half)
        y = run_filter(spec, noisy, maps, **filter_kw)
    return OracleResult(y, maps, float(psnr(y.reshape(1, -1), clean.reshape(1, -1))))


def global_optimum(
    kernel: str,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    noise_std: torch.Tensor,
    *,
    grid: int = 19,
    iters: int = 40,
    lr: float = 0.1,
    **filter_kw,
) -> OracleResult:
    """Best single parameter set for the whole image.

    Parameters
    ----------
    kernel : str
        Kernel name (``"nlm"``, ...).
    noisy, clean : torch.Tensor
        ``(C, 1, H, W)``: the channels of one image as a batch of single-channel images
        (as the network processes them).
    noise_std : torch.Tensor
        Noise std map broadcastable to ``noisy``.
    grid, iters, lr
        Grid size along the main axis (then the kernel's ``refine`` grids), then Adam
        iterations and step on the raw values.
    **filter_kw
        ``blur=`` for polyblur, ``size=`` for rbf, ``options=`` for kernel options.
    """
    spec = get_spec(kernel)
    nh = _half(noise_std)

    def err(raw):
        return float(_mse(run_filter(spec, noisy, spec.to_params(raw, nh), **filter_kw), clean))

    with torch.no_grad():
        best = min(_grid_raw(spec, grid, nh), key=err)
        for name, values in spec.refine.items():  # then along the second axes
            best = min(_refined(spec, best, nh, name, values), key=err)
    return _descend(spec, best, noisy, clean, nh, iters, lr, filter_kw)


def local_oracle(
    kernel: str,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    noise_std: torch.Tensor,
    *,
    iters: int = 150,
    lr: float = 0.05,
    init: OracleResult | None = None,
    **filter_kw,
) -> OracleResult:
    """Per-pixel maps at half resolution optimised against the clean image (upper bound).

    Arguments as for :func:`global_optimum`; ``init`` is a global optimum to start from
    (computed if not given).
    """
    spec = get_spec(kernel)
    nh = _half(noise_std)
    if init is None:
        init = global_optimum(kernel, noisy, clean, noise_std, **filter_kw)
    C, _, H, W = noisy.shape
    h2, w2 = (H + 1) // 2, (W + 1) // 2
    nh_full = nh.expand(C, 1, h2, w2) if nh.shape[-2:] == (1, 1) else nh
    start = {k: v.expand(C, 1, h2, w2) for k, v in init.maps.items()}
    raw0 = spec.from_params(start, nh_full)
    return _descend(spec, raw0, noisy, clean, nh_full, iters, lr, filter_kw)
