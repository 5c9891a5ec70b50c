"""``pkn.restore``: one call from a numpy image to a restored image and its parameter maps."""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ._input import _noise, check_strength, estimate_noise, prepare
from ._version import __version__
from .models.procedural import get_spec, network_kernels, tasks, upsample_map

__all__ = ["Restoration", "Restorer", "estimate_noise", "prepare", "restore"]


@dataclass
class Restoration:
    """Result of :func:`restore`.

    Attributes
    ----------
    image : numpy.ndarray
        Restored image, float32 (float64 for float64 input), in the input's units and
        layout (upsampling: spatial axes scaled).
    maps : dict of str to numpy.ndarray
        Parameter maps by name (``"sigma"``; ``"sigma1"``, ``"sigma2"``, ``"rho"``;
        ``"b"``, ``"c"``, ``"d"``), each ``(h, w)`` for gray input or with the channel
        axis where the input had it. Sigmas of NLM/bilateral are in the input's units;
        Gaussian sigmas in pixels (RBF: input pixels).
    map_scale : float
        Input pixels per map pixel along each axis: map pixel ``(i, j)`` covers input
        pixels ``[s*i, s*i + s) x [s*j, s*j + s)``.
    info : dict
        Provenance: model name, file and SHA-256, kernel, task, noise used and how it
        was obtained, strength (and how ``"auto"`` chose it), parameter count, package
        version; for denoising also ``whiteness``, the neighbour correlation of
        :attr:`qc` (about 0 where only white noise was removed).
    qc : numpy.ndarray or None
        Denoising only: the residual ``(noisy - image) / noise std``, float32, in the
        input's layout. About N(0, 1) where only noise was removed; structure (edges,
        texture) that the filter took away stands out.
    """

    image: np.ndarray
    maps: dict = field(default_factory=dict)
    map_scale: float = 2.0
    info: dict = field(default_factory=dict)
    qc: np.ndarray | None = None


@contextmanager
def _filter_threads():
    """One torch thread for the classical filter when called off the main thread.

    The filters issue thousands of small operations (one per offset and band of rows).
    From a worker thread (napari's ``thread_worker``), each one wakes torch's OpenMP
    threads afresh, which costs more than the second core gains: measured on 2 cores,
    2048 x 2048 NLM, 0.9-1.1 s with two threads against 0.4 s with one (0.25 s from the
    main thread with two). The thread count is process-wide in torch, so it is restored
    right after.
    """
    n = torch.get_num_threads()
    if threading.current_thread() is threading.main_thread() or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class Restorer:
    """A restoration in two steps: the network once, the classical filter on demand.

    ``Restorer(image, ...)`` validates the input, estimates the noise, loads the model
    and predicts the parameter maps (the only network pass); :meth:`render` then runs
    just the full-resolution filter for any ``strength`` from the cached maps, and
    :meth:`probe` shows the weights the filter applied at one pixel. Arguments as for
    :func:`restore`.
    """

    def __init__(
        self,
        image,
        task: str = "denoise",
        *,
        kernel: str | None = None,
        noise=None,
        blur=None,
        scale: float | None = None,
        channel_axis: int | None = None,
        model=None,
        device=None,
    ):
        from .models.io import load_model

        defaults = tasks()
        if task not in defaults:
            raise ValueError(f"task must be one of {sorted(defaults)}, got {task!r}.")
        kernel = kernel or defaults[task]
        if kernel not in network_kernels():
            raise ValueError(f"kernel must be one of {network_kernels()}, got {kernel!r}.")
        spec = get_spec(kernel)
        if spec.task != task:
            raise ValueError(f"kernel {kernel!r} does {spec.task}, not {task}.")
        if spec.ndim != 2:
            raise ValueError(
                f"kernel {kernel!r} filters over {spec.spatial_axes}; pkn.restore handles "
                "kernels over (y, x) planes only so far."
            )
        self.task, self.kernel, self.spec, self.blur, self.scale = task, kernel, spec, blur, scale
        self.inputs: dict = {}
        if "blur" in spec.inputs:
            if blur is None:
                raise ValueError(
                    "deblurring needs blur= (a Gaussian sigma, (sy, sx, rho) or a PSF)."
                )
            psf = np.ndim(blur) == 2
            self.inputs["blur"] = torch.as_tensor(np.asarray(blur, np.float32)) if psf else blur
        if "size" in spec.inputs and (
            scale is None
            or not (isinstance(scale, int | float) and np.isfinite(scale) and scale > 0)
        ):
            raise ValueError(f"upsampling needs scale= a positive factor, got {scale!r}.")
        self.net, self.model_info = _model(model, kernel, load_model)
        if self.net.kernel != kernel:
            name = self.model_info["name"]
            raise ValueError(f"model {name!r} drives kernel {self.net.kernel!r}, not {kernel!r}.")
        self.p = prepare(image, channel_axis, device=device)
        self.net = self.net.to(self.p.x.device, self.p.x.dtype)
        self.noise_std, self.noise_info = _noise(self.p, noise)
        H, W = self.p.x.shape[-2:]
        if "size" in spec.inputs:
            self.inputs["size"] = (max(1, round(H * scale)), max(1, round(W * scale)))
        x = self.p.x
        guide = x.mean(0, keepdim=True).expand_as(x) if self.net.guided and len(x) > 1 else None
        with torch.no_grad():
            self.maps = self.net.predict_maps(x, self.noise_std, guide)  # half resolution

    def auto_strength(self) -> tuple[float, dict]:
        """The strength ``"auto"`` chooses: the minimum of SURE, Stein's unbiased estimate
        of the error against the unknown clean image, for the noise model in use
        (:func:`pkn._quality.sure_strength`); denoising only. Computed once per
        :class:`Restorer`."""
        if self.spec.task != "denoise":
            raise ValueError(
                f"strength='auto' is available for denoising, not {self.task}; give a number."
            )
        if getattr(self, "_auto", None) is None:
            from ._quality import sure_strength

            with _filter_threads():
                self._auto = sure_strength(
                    self.net, self.p.x, self.maps, self.noise_std, self.inputs
                )
        return self._auto

    def render(self, strength: float | str = 1.0) -> Restoration:
        """Run the classical filter with the cached maps times ``strength`` (a number
        >= 0, or ``"auto"``: see :meth:`auto_strength`)."""
        auto = None
        if isinstance(strength, str) and strength == "auto":
            strength, auto = self.auto_strength()
        strength = check_strength(strength)
        p, net = self.p, self.net
        with torch.no_grad(), _filter_threads():
            y = net.filter(p.x, self.maps, strength=strength, **self.inputs)
        qc = None
        if self.spec.task == "denoise":
            qc = ((p.x - y) / self.noise_std)[:, 0].cpu().numpy().astype(np.float32)
        out = (y[:, 0] * p.scale + p.offset).cpu().numpy().astype(p.out_dtype, copy=False)
        mp = {}
        for name, m in self.spec.scaled(self.maps, strength).items():
            unit = p.scale if self.spec.param(name).unit == "intensity" else 1.0  # input units
            mp[name] = (m[:, 0] * unit).cpu().numpy().astype(np.float32)
        if p.channel_axis is None:
            out, mp = out[0], {k: v[0] for k, v in mp.items()}
            qc = None if qc is None else qc[0]
        else:
            out = np.moveaxis(out, 0, p.channel_axis)
            mp = {k: np.moveaxis(v, 0, p.channel_axis) for k, v in mp.items()}
            qc = None if qc is None else np.moveaxis(qc, 0, p.channel_axis)
        mi = self.model_info
        info = {
            "model": mi["name"],
            "model_sha256": mi["sha256"],
            "model_file": mi["path"],
            "kernel": self.kernel,
            "task": self.task,
            "noise": self.noise_info,
            "strength": strength,
            "n_parameters": mi["n_parameters"],
            "pkn_version": __version__,
            "map_scale": float(net.factor),
            "normalisation": {"offset": p.offset, "scale": p.scale},
        }
        adapted = (mi.get("info") or {}).get("adaptation")
        if adapted:
            info["adaptation"] = adapted
        if auto is not None:
            info["strength_auto"] = auto
        if qc is not None:
            from ._quality import whiteness

            info["whiteness"] = whiteness(
                np.moveaxis(qc, p.channel_axis, 0) if p.channel_axis is not None else qc
            )
        if "blur" in self.spec.inputs:
            info["blur"] = self.blur if np.ndim(self.blur) < 2 else "psf array"
        if "size" in self.spec.inputs:
            info["scale"] = float(self.scale)
        return Restoration(out, mp, float(net.factor), info, qc)

    def probe(self, pixel: tuple[int, int], channel: int = 0, strength: float = 1.0):
        """The weights the filter applied at input ``pixel`` (row, col) of ``channel``.

        Returns a :class:`pkn.kernels.Probe` whose weights multiply the input values
        (``value`` and ``bias`` in the input's units).
        Not available for upsampling (output pixels do not sit on the input grid).
        """
        from .kernels import effective_weights

        spec = self.spec
        if spec.pixel_grid != "input":
            raise ValueError(
                f"the kernel probe is not available for {self.task} (output pixels "
                "do not sit on the input grid)."
            )
        strength = check_strength(strength)
        p = self.p
        if not (isinstance(channel, int | np.integer) and 0 <= channel < len(p.x)):
            raise ValueError(f"channel must be an integer in [0, {len(p.x) - 1}], got {channel!r}.")
        H, W = p.x.shape[-2:]
        maps = {
            n: upsample_map(m, (H, W), self.net.factor)[channel : channel + 1]
            for n, m in self.maps.items()
        }
        opts = dict(self.net.options)
        if spec.probe_options is not None:
            opts = spec.probe_options(opts, p.x.transpose(0, 1))  # all channels (1, C, H, W)
        x = p.x[channel : channel + 1].transpose(0, 1)  # (1, 1, H, W)
        pr = effective_weights(
            spec.name, x, **spec.scaled(maps, strength), pixel=pixel, **opts, **self.inputs
        )
        # back to input units: y = sum(w * x_in) + scale * bias + offset * (1 - sum(w))
        bias = p.scale * pr.bias + p.offset * (1.0 - pr.sum)
        return replace(
            pr,
            bias=bias if abs(bias) > 1e-9 * max(1.0, abs(p.offset)) else 0.0,
            value=pr.value * p.scale + p.offset,
        )


def _model(model, kernel: str, load_model):
    """``(net, info)`` for a shipped name, a file path or a model object."""
    from .models.pkn_model import PKNModel

    if isinstance(model, PKNModel):
        net = copy.deepcopy(model).eval().requires_grad_(False)
        info = dict(getattr(model, "provenance", None) or {})
        info.setdefault("name", f"{model.kernel} (in memory)")
        info.setdefault("sha256", None)
        info.setdefault("path", None)
        info["n_parameters"] = sum(q.numel() for q in net.parameters())
        return net, info
    return load_model(model or kernel)


def restore(
    image,
    task: str = "denoise",
    *,
    kernel: str | None = None,
    noise=None,
    blur=None,
    scale: float | None = None,
    strength: float = 1.0,
    channel_axis: int | None = None,
    model=None,
    device=None,
) -> Restoration:
    """Restore an image with a Procedural Kernel Network.

    Parameters
    ----------
    image : array_like
        2-D gray image, or 3-D with ``channel_axis``; uint8, uint16, float32 or float64.
    task : {"denoise", "deblur", "upsample"}
    kernel : str, optional
        ``"nlm"`` (default for denoise), ``"bilateral"``, ``"gaussian"``,
        ``"anisotropic"``, ``"polyblur"`` (deblur) or ``"rbf"`` (upsample).
    noise : None, "auto", float or (float, float)
        ``None``/``"auto"``: estimated from the image (Poisson-Gaussian fit, falling back
        to per-channel AWGN when the signal-dependent part is negligible; see ``.info``).
        A float is the AWGN sigma in the units of the input values; a pair ``(a, b)``
        the Poisson-Gaussian variance ``a * x + b`` in input units.
    blur : float, (float, float, float) or 2-D array
        Deblurring only: Gaussian sigma (px), ``(sigma_y, sigma_x, rho)`` or a PSF.
    scale : float
        Upsampling only: the factor (any positive number, e.g. 1.5).
    strength : float or "auto"
        Multiplies the predicted maps (the user's knob; 1 = as trained, 0 = identity).
        ``"auto"`` (denoising): the strength that minimises SURE (Stein's unbiased risk
        estimate) for the noise model, chosen without a clean image; see
        ``.info["strength_auto"]``.
    channel_axis : int, optional
        Axis of the channels; each channel is filtered with its own maps.
    model : str, path or PKNModel, optional
        A shipped model name, a ``.safetensors`` file, or a model object (e.g. from
        :func:`pkn.adapt`); default: the kernel's shipped model.
    device : str or torch.device, optional

    Returns
    -------
    Restoration
    """
    r = Restorer(
        image,
        task,
        kernel=kernel,
        noise=noise,
        blur=blur,
        scale=scale,
        channel_axis=channel_axis,
        model=model,
        device=device,
    )
    return r.render(strength)
