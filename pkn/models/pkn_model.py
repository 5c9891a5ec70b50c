"""A Procedural Kernel Network: the tiny parameter network plus its classical filter."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._input import check_strength
from ..kernels.registry import Kernel
from .network import PKNet, correlation_features
from .procedural import get_spec, upsample_map

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
    spec: Kernel,
    x: torch.Tensor,
    maps: dict[str, torch.Tensor],
    *,
    factor: int = 2,
    strength: float = 1.0,
    options: dict | None = None,
    **inputs,
) -> torch.Tensor:
    """Run ``spec``'s classical filter on ``x`` with parameter maps on a ``1/factor`` grid.

    Parameters
    ----------
    spec : pkn.kernels.registry.Kernel
    x : torch.Tensor
        ``(B, C, H, W)`` image (the low-resolution input when upsampling).
    maps : dict
        Parameter maps ``(B, 1, ceil(H/factor), ceil(W/factor))``, upsampled once here.
    strength : float
        Multiplies the maps that ``spec`` marks as scaled by strength (0: identity).
    options : dict
        Fixed keyword options of the kernel (e.g. ``patch_size``, ``joint``).
    **inputs
        Per-call inputs the kernel needs (``spec.inputs``): ``blur=`` (a Gaussian sigma,
        ``(sigma_y, sigma_x, rho)`` or a PSF tensor) for deblurring, ``size=`` for
        resampling; ``guide=`` for kernels whose weights come from a guide image.
    """
    strength = check_strength(strength)
    H, W = x.shape[-2:]
    maps = spec.scaled(maps, strength)
    if any(m.shape[-2:] not in ((1, 1), (-(-H // factor), -(-W // factor))) for m in maps.values()):
        raise ValueError(
            f"maps must be (B, 1, ceil(H/{factor}), ceil(W/{factor})) for a {H}x{W} image, got "
            f"{ {n: tuple(m.shape) for n, m in maps.items()} }."
        )
    if H % factor or W % factor or spec.pixel_grid != "input":
        # odd sizes: the map covers one row/column more than the image; resample by
        # exactly the factor and crop (a kernel would stretch the map to the image).
        # Resampling kernels define their maps on the input grid.
        maps = {n: upsample_map(m, (H, W), factor) for n, m in maps.items()}
    # otherwise the kernel resamples the maps itself, once (banded where it can)
    return spec.run(x, maps, options, **inputs)


class PKNModel(nn.Module):
    """Parameter network + classical filter for one kernel.

    Parameters
    ----------
    kernel : str
        A network-driven kernel of the registry (:func:`pkn.kernels.registry.names`).
    widths : (int, int, int)
        Network widths (see :class:`~pkn.models.network.PKNet`).
    options : dict, optional
        Fixed keyword options of the filter (e.g. ``{"patch_size": 3, "search_size": 5}``).
    guided : bool
        The network also sees a guide image (colour: the mean of the noisy channels).
    correlated : bool
        The network also sees the noise's spatial correlation
        (:func:`~pkn.models.network.correlation_features`; white when not given).
    """

    factor = 2  # maps are predicted at half resolution

    def __init__(
        self,
        kernel: str,
        widths=(12, 16, 24),
        options: dict | None = None,
        guided=False,
        correlated=False,
    ):
        super().__init__()
        self.spec = get_spec(kernel)
        self.kernel = kernel
        self.options = dict(options or {})
        self.net = PKNet(self.spec.n_out, tuple(widths), guided=guided, correlated=correlated)
        with torch.no_grad():  # start from sensible constant parameters
            self.net.head.bias.copy_(self.spec.init_raw())

    @property
    def guided(self) -> bool:
        return self.net.guided

    @property
    def correlated(self) -> bool:
        """The network takes the noise correlation as input."""
        return self.net.correlated

    def with_correlation(self) -> PKNModel:
        """A copy whose network also takes the noise correlation, computing exactly what
        this model computes until trained (the new input weights are zero)."""
        if self.correlated:
            raise ValueError(f"this {self.kernel!r} model already takes the noise correlation.")
        new = PKNModel(
            self.kernel, self.net.widths, self.options, guided=self.guided, correlated=True
        )
        state = {k: v.clone() for k, v in self.state_dict().items()}
        w = state["net.enc1.weight"]  # (w1, 4 * n_in, 3, 3)
        extra = new.net.enc1.weight.shape[1] - w.shape[1]
        state["net.enc1.weight"] = torch.cat([w, w.new_zeros(w.shape[0], extra, *w.shape[2:])], 1)
        new.load_state_dict(state, strict=True)
        new.train(self.training)
        return new

    @property
    def joint(self) -> bool:
        """NLM patch distances are averaged over all colour channels (option ``joint``)."""
        return bool(self.options.get("joint", False))

    def predict_maps(
        self,
        x: torch.Tensor,
        noise_std: torch.Tensor,
        guide: torch.Tensor | None = None,
        correlation=None,
        *,
        mean: torch.Tensor | None = None,
        guide_mean: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Parameter maps at half resolution for single-channel ``x`` ``(B, 1, H, W)``.

        ``correlation``: the noise's correlation coefficients, ``(5, 5)`` or ``(B, 5, 5)``
        (:attr:`pkn.noise.NoiseModel.correlation`), or features ``(B, 2)``; ``None`` is
        white noise. Models that do not take the correlation ignore it. ``mean`` /
        ``guide_mean`` (``(B, 1, 1, 1)``): the means to subtract instead of ``x``'s and the
        guide's own (a window of a larger plane is given the plane's).
        """
        c = None
        if self.correlated:
            c = correlation
            if not (isinstance(c, torch.Tensor) and c.ndim == 2 and c.shape[1] != 5):
                c = correlation_features(c, batch=x.shape[0])  # (B, 2)
        raw = self.net(x, noise_std, guide, c, mean, guide_mean)  # (B, P, ceil(H/2), ceil(W/2))
        return self.spec.to_params(raw, _half(noise_std))

    def filter(self, x: torch.Tensor, maps: dict[str, torch.Tensor], **kw) -> torch.Tensor:
        """Run the classical filter with ``maps`` (see :func:`run_filter`)."""
        return run_filter(self.spec, x, maps, factor=self.factor, options=self.options, **kw)

    def forward(self, x: torch.Tensor, noise_std: torch.Tensor, guide=None, correlation=None, **kw):
        """``(restored, maps)`` for ``x`` ``(B, 1, H, W)``."""
        maps = self.predict_maps(x, noise_std, guide, correlation)
        return self.filter(x, maps, **kw), maps
