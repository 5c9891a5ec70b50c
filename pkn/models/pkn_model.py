"""A Procedural Kernel Network: the tiny parameter network plus its classical filter."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .network import PKNet
from .procedural import KernelSpec, get_spec, upsample_map

__all__ = ["PKNModel", "run_filter"]


def _half(noise_std: torch.Tensor) -> torch.Tensor:
    """Noise std on the maps' half-resolution grid (per-image values stay ``(B,1,1,1)``)."""
    if noise_std.shape[-2:] == (1, 1):
        return noise_std
    H, W = noise_std.shape[-2:]
    if H % 2 or W % 2:
        noise_std = F.pad(noise_std, (0, W % 2, 0, H % 2), mode="replicate")
    return F.avg_pool2d(noise_std, 2)


def run_filter(
    spec: KernelSpec,
    x: torch.Tensor,
    maps: dict[str, torch.Tensor],
    *,
    factor: int = 2,
    strength: float = 1.0,
    blur=None,
    size: tuple[int, int] | None = None,
    options: dict | None = None,
    guide: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run ``spec``'s classical filter on ``x`` with parameter maps on a ``1/factor`` grid.

    Parameters
    ----------
    spec : KernelSpec
    x : torch.Tensor
        ``(B, C, H, W)`` image (the low-resolution input when upsampling).
    maps : dict
        Parameter maps ``(B, 1, ceil(H/factor), ceil(W/factor))``.
    strength : float
        Multiplies the maps named in ``spec.strength`` (0: identity / nearest).
    blur
        The blur for ``polyblur`` (sigma, (sigma_y, sigma_x, rho) or a PSF tensor).
    size : (int, int)
        Output size for ``rbf``.
    options : dict
        Extra keyword options for the kernel (e.g. ``patch_size``, ``joint``).
    guide : torch.Tensor, optional
        NLM/bilateral only: ``(B, K, H, W)`` image the patch distances are computed on
        (with ``joint``: averaged over its ``K`` channels). With ``joint`` and no guide,
        a batch of single-channel images is read as the channels of *one* image, and
        all of them share the distances (the layout of :func:`pkn.restore`).
    """
    from .. import kernels as K

    if not (strength >= 0 and strength == strength):
        raise ValueError(f"strength must be a number >= 0, got {strength!r}.")
    H, W = x.shape[-2:]
    full = {}
    for name, m in maps.items():
        m = upsample_map(m, (H, W), factor)
        full[name] = m * strength if name in spec.strength and strength != 1.0 else m
    opts = dict(options or {})
    k = spec.name
    if k in ("nlm", "nlm-sigma", "bilateral"):
        return _nlm_filter(k, x, full, opts, guide)
    if k == "gaussian":
        return K.gaussian(x, full["sigma1"], **opts)
    if k == "anisotropic":
        return K.gaussian(x, full["sigma1"], full["sigma2"], full["rho"], **opts)
    if k == "polyblur":
        if blur is None:
            raise ValueError("polyblur needs the blur (a Gaussian sigma, a tuple or a PSF).")
        return K.polyblur(x, full["b"], full["c"], full["d"], blur=blur, **opts)
    if k == "rbf":
        if size is None:
            raise ValueError("rbf needs the output size.")
        return K.rbf_resample(x, full["sigma1"], full["sigma2"], full["rho"], size=size, **opts)
    raise ValueError(f"no filter for kernel {k!r}.")


def _nlm_filter(k: str, x: torch.Tensor, full: dict, opts: dict, guide) -> torch.Tensor:
    """NLM / bilateral with the model's maps; see :func:`run_filter` for ``guide``."""
    from .. import kernels as K

    fn = K.bilateral if k == "bilateral" else K.nlm
    maps = {"sigma": full["sigma"]}
    if "spatial_sigma" in full:
        maps["spatial_sigma"] = full["spatial_sigma"]
    if guide is not None:
        return fn(x, **maps, guide=guide, **opts)
    if opts.get("joint") and x.shape[1] == 1 and x.shape[0] > 1:
        # (C, 1, H, W): the channels of one image -> (1, C, H, W), distances shared
        maps = {n: m.transpose(0, 1) for n, m in maps.items()}
        return fn(x.transpose(0, 1), **maps, **opts).transpose(0, 1)
    return fn(x, **maps, **opts)


class PKNModel(nn.Module):
    """Parameter network + classical filter for one kernel.

    Parameters
    ----------
    kernel : str
        A name from :data:`pkn.models.procedural.KERNELS`.
    widths : (int, int, int)
        Network widths (see :class:`~pkn.models.network.PKNet`).
    options : dict, optional
        Fixed keyword options of the filter (e.g. ``{"patch_size": 3, "search_size": 5}``).
    guided : bool
        The network also sees a guide image (colour: the mean of the noisy channels).
    """

    factor = 2  # maps are predicted at half resolution

    def __init__(self, kernel: str, widths=(12, 16, 24), options: dict | None = None, guided=False):
        super().__init__()
        self.spec = get_spec(kernel)
        self.kernel = kernel
        self.options = dict(options or {})
        self.net = PKNet(self.spec.n_out, tuple(widths), guided=guided)
        with torch.no_grad():  # start from sensible constant parameters
            self.net.head.bias.copy_(self.spec.init_raw())

    @property
    def guided(self) -> bool:
        return self.net.guided

    @property
    def joint(self) -> bool:
        """NLM patch distances are averaged over all colour channels (option ``joint``)."""
        return bool(self.options.get("joint", False))

    def predict_maps(
        self, x: torch.Tensor, noise_std: torch.Tensor, guide: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Parameter maps at half resolution for single-channel ``x`` ``(B, 1, H, W)``."""
        raw = self.net(x, noise_std, guide)  # (B, P, ceil(H/2), ceil(W/2))
        return self.spec.to_params(raw, _half(noise_std))

    def filter(self, x: torch.Tensor, maps: dict[str, torch.Tensor], **kw) -> torch.Tensor:
        """Run the classical filter with ``maps`` (see :func:`run_filter`)."""
        return run_filter(self.spec, x, maps, factor=self.factor, options=self.options, **kw)

    def forward(self, x: torch.Tensor, noise_std: torch.Tensor, guide=None, **kw):
        """``(restored, maps)`` for ``x`` ``(B, 1, H, W)``."""
        maps = self.predict_maps(x, noise_std, guide)
        return self.filter(x, maps, **kw), maps
