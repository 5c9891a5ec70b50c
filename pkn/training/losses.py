"""Training losses and the PSNR metric."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["LOSSES", "get_loss", "ms_ssim", "psnr", "ssim"]


def psnr(y: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image of a batch ``(B, ...)``."""
    mse = (y - target).square().flatten(1).mean(1).clamp_min(1e-20)
    return 10 * torch.log10(data_range**2 / mse)


def _window(sigma: float = 1.5, dtype=torch.float32, device=None) -> torch.Tensor:
    r = int(3 * sigma + 0.5)
    g = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=dtype, device=device) / sigma) ** 2)
    return g / g.sum()


def _ssim_terms(x, y, data_range=1.0):
    g = _window(dtype=x.dtype, device=x.device)
    C = x.shape[1]
    gh, gv = g.view(1, 1, 1, -1).repeat(C, 1, 1, 1), g.view(1, 1, -1, 1).repeat(C, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, gh, groups=C), gv, groups=C)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return lum, cs


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM (Gaussian window, sigma 1.5; Wang et al. 2004), per image."""
    lum, cs = _ssim_terms(x, y, data_range)
    return (lum * cs).flatten(1).mean(1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, levels: int = 3):
    """Multi-scale SSIM (Wang et al. 2003) with equal weights over ``levels`` scales."""
    vals = []
    for i in range(levels):
        lum, cs = _ssim_terms(x, y, data_range)
        last = i == levels - 1 or min(x.shape[-2:]) < 32
        term = lum * cs if last else cs  # luminance only at the coarsest scale used
        vals.append(term.flatten(1).mean(1).clamp_min(1e-6))
        if last:
            break
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return torch.stack(vals).prod(0) ** (1 / len(vals))


LOSSES = {  # per-sample losses (B,)
    "l2": lambda y, t: (y - t).square().flatten(1).mean(1),
    "l1": lambda y, t: (y - t).abs().flatten(1).mean(1),
    "ssim": lambda y, t: 1 - ssim(y, t),
    "msssim": lambda y, t: 1 - ms_ssim(y, t),
}


def get_loss(name: str):
    """Per-sample loss ``(y, target) -> (B,)`` by name: ``l2`` (default), ``l1``, ``ssim``,
    ``msssim``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}.")
    return LOSSES[name]
