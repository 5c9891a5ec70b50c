"""``pkn.restore``: one call from a numpy image to a restored image and its parameter maps."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ._version import __version__
from .models.procedural import TASKS, get_spec
from .noise import estimate_awgn, estimate_poisson_gaussian, noise_std_map

__all__ = ["Restoration", "Restorer", "estimate_noise", "prepare", "restore"]

_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)
_KERNEL_TASK = {
    k: get_spec(k).task
    for k in ("nlm", "nlm-sigma", "bilateral", "gaussian", "anisotropic", "polyblur", "rbf")
}


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
        was obtained, strength, parameter count, package version.
    """

    image: np.ndarray
    maps: dict = field(default_factory=dict)
    map_scale: float = 2.0
    info: dict = field(default_factory=dict)


@dataclass
class Prepared:
    """Validated input: ``x`` ``(C, 1, H, W)`` float normalised to about [0, 1] by
    ``(x - offset) / scale``, plus what is needed to undo it."""

    x: torch.Tensor
    offset: float
    scale: float
    channel_axis: int | None
    ndim: int
    out_dtype: type


def prepare(image, channel_axis: int | None = None, *, device=None) -> Prepared:
    """Validate ``image`` and move it into the network's working range."""
    a = np.asarray(image)
    if a.dtype not in _DTYPES:
        raise TypeError(
            f"image dtype {a.dtype} is not supported; use uint8, uint16, float32 or float64."
        )
    if channel_axis is None and a.ndim != 2:
        raise ValueError(
            f"image has shape {a.shape}; a gray image is 2-D. For colour or multichannel "
            "images pass channel_axis (e.g. channel_axis=-1 for (H, W, 3))."
        )
    if channel_axis is not None:
        if a.ndim != 3:
            raise ValueError(f"with channel_axis the image must be 3-D, got shape {a.shape}.")
        if not -3 <= channel_axis < 3:
            raise ValueError(f"channel_axis {channel_axis} is out of range for a 3-D image.")
        channel_axis %= 3
        a = np.moveaxis(a, channel_axis, 0)
    else:
        a = a[None]
    if min(a.shape[-2:]) < 2:
        raise ValueError(f"image is {a.shape[-2]}x{a.shape[-1]} pixels; need at least 2x2.")
    if not np.isfinite(a).all():
        raise ValueError("image contains NaN or Inf values; replace them first.")
    out_dtype = np.float64 if a.dtype == np.float64 else np.float32
    work = a.astype(np.float64 if out_dtype is np.float64 else np.float32)
    # robust range from a regular subsample (at most ~1 M values): as good, much faster
    step = max(1, int(np.sqrt(work[0].size / 1e6)))
    lo, hi = (float(v) for v in np.percentile(work[:, ::step, ::step], [0.1, 99.9]))
    if not hi > lo:
        lo, hi = float(work.min()), float(work.max())
    scale = hi - lo if hi > lo else 1.0
    x = torch.from_numpy(((work - lo) / scale)[:, None].copy())
    if device is not None:
        x = x.to(device)
    return Prepared(x, lo, scale, channel_axis, np.asarray(image).ndim, out_dtype)


def _noise(p: Prepared, noise):
    """Per-channel noise std maps in normalised units, and a description."""
    x = p.x
    if noise is None or (isinstance(noise, str) and noise == "auto"):
        a, b = estimate_poisson_gaussian(x)
        mean = float(x.mean())
        if a * max(mean, 1e-3) <= 0.25 * max(b, 0.0):  # signal-dependent part negligible
            s = [estimate_awgn(x[c]) for c in range(x.shape[0])]
            desc = {
                "model": "awgn",
                "sigma": [v * p.scale for v in s],
                "estimated": "Haar MAD per channel (1.4826 * median |HH|)",
            }
            return torch.tensor(s, dtype=x.dtype).view(-1, 1, 1, 1).clamp_min(1e-6), desc
        a_in = a * p.scale  # back to input units: var = a_in * v + b_in
        desc = {
            "model": "poisson-gaussian",
            "a": a_in,
            "b": b * p.scale**2 - a_in * p.offset,
            "estimated": "binned Haar MAD variances, weighted least squares",
        }
        return noise_std_map(x, (a, b)), desc
    if isinstance(noise, tuple | list):
        if len(noise) != 2:
            raise ValueError(f"Poisson-Gaussian noise is a pair (a, b), got {noise!r}.")
        a, b = float(noise[0]) / p.scale, float(noise[1]) / p.scale**2
        off = p.offset / p.scale  # variance a*x + b in input units -> normalised units
        desc = {
            "model": "poisson-gaussian",
            "a": float(noise[0]),
            "b": float(noise[1]),
            "estimated": False,
        }
        return noise_std_map(x, (a, b + a * off)), desc
    if isinstance(noise, str):
        raise ValueError(f"noise {noise!r} not understood; use None/'auto', a sigma or (a, b).")
    s = float(noise)
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"noise sigma must be a finite number >= 0, got {noise!r}.")
    desc = {"model": "awgn", "sigma": s, "estimated": False}
    return noise_std_map(x, s / p.scale), desc


def estimate_noise(image, channel_axis: int | None = None) -> dict:
    """The noise model :func:`restore` would use for ``image`` with ``noise=None``.

    Returns the same description as ``Restoration.info["noise"]``: ``{"model": "awgn",
    "sigma": [per channel], ...}`` or ``{"model": "poisson-gaussian", "a": ..., "b": ...}``,
    in the input's units, with how it was estimated.
    """
    return _noise(prepare(image, channel_axis), None)[1]


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

        if task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}.")
        kernel = kernel or TASKS[task]
        if kernel not in _KERNEL_TASK:
            raise ValueError(f"kernel must be one of {sorted(_KERNEL_TASK)}, got {kernel!r}.")
        if _KERNEL_TASK[kernel] != task:
            raise ValueError(f"kernel {kernel!r} does {_KERNEL_TASK[kernel]}, not {task}.")
        self.task, self.kernel, self.blur, self.scale = task, kernel, blur, scale
        self.filter_kw: dict = {}
        if task == "deblur":
            if blur is None:
                raise ValueError(
                    "deblurring needs blur= (a Gaussian sigma, (sy, sx, rho) or a PSF)."
                )
            psf = np.ndim(blur) == 2
            self.filter_kw["blur"] = torch.as_tensor(np.asarray(blur, np.float32)) if psf else blur
        if task == "upsample" and (
            scale is None
            or not (isinstance(scale, int | float) and np.isfinite(scale) and scale > 0)
        ):
            raise ValueError(f"upsampling needs scale= a positive factor, got {scale!r}.")
        self.net, self.model_info = load_model(model or kernel)
        if self.net.kernel != kernel:
            name = self.model_info["name"]
            raise ValueError(f"model {name!r} drives kernel {self.net.kernel!r}, not {kernel!r}.")
        self.p = prepare(image, channel_axis, device=device)
        self.net = self.net.to(self.p.x.device, self.p.x.dtype)
        self.noise_std, self.noise_info = _noise(self.p, noise)
        H, W = self.p.x.shape[-2:]
        if task == "upsample":
            self.filter_kw["size"] = (max(1, round(H * scale)), max(1, round(W * scale)))
        x = self.p.x
        guide = x.mean(0, keepdim=True).expand_as(x) if self.net.guided and len(x) > 1 else None
        with torch.no_grad():
            self.maps = self.net.predict_maps(x, self.noise_std, guide)  # half resolution

    def _strength(self, strength) -> float:
        if not (isinstance(strength, int | float) and np.isfinite(strength) and strength >= 0):
            raise ValueError(f"strength must be a finite number >= 0, got {strength!r}.")
        return float(strength)

    def render(self, strength: float = 1.0) -> Restoration:
        """Run the classical filter with the cached maps times ``strength``."""
        strength = self._strength(strength)
        p, net = self.p, self.net
        with torch.no_grad(), _filter_threads():
            y = net.filter(p.x, self.maps, strength=strength, **self.filter_kw)
        out = (y[:, 0] * p.scale + p.offset).cpu().numpy().astype(p.out_dtype, copy=False)
        unit = {"sigma": p.scale}  # NLM sigmas are in the input's units
        mp = {}
        for name, m in self.maps.items():
            v = m[:, 0] * (strength if name in net.spec.strength else 1.0)
            mp[name] = (v * unit.get(name, 1.0)).cpu().numpy().astype(np.float32)
        if p.channel_axis is None:
            out, mp = out[0], {k: v[0] for k, v in mp.items()}
        else:
            out = np.moveaxis(out, 0, p.channel_axis)
            mp = {k: np.moveaxis(v, 0, p.channel_axis) for k, v in mp.items()}
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
        if self.task == "deblur":
            info["blur"] = self.blur if np.ndim(self.blur) < 2 else "psf array"
        if self.task == "upsample":
            info["scale"] = float(self.scale)
        return Restoration(out, mp, float(net.factor), info)

    def probe(self, pixel: tuple[int, int], channel: int = 0, strength: float = 1.0):
        """The weights the filter applied at input ``pixel`` (row, col) of ``channel``.

        Returns a :class:`pkn.kernels.Probe` whose weights multiply the input values
        (``value`` and ``bias`` in the input's units).
        Not available for upsampling (output pixels do not sit on the input grid).
        """
        from .kernels import effective_weights
        from .models.procedural import upsample_map

        if self.task == "upsample":
            raise ValueError("the kernel probe is not available for upsampling.")
        strength = self._strength(strength)
        p, spec = self.p, self.net.spec
        H, W = p.x.shape[-2:]
        full = {}
        for name in spec.params:
            m = upsample_map(self.maps[name], (H, W), self.net.factor)[channel : channel + 1]
            full[name] = m * strength if name in spec.strength else m
        opts = dict(self.net.options)
        kernel, args = self.kernel, list(full.values())
        if kernel in ("nlm", "nlm-sigma"):
            kernel, args = "nlm", [full["sigma"]]
            if "spatial_sigma" in full:
                opts["spatial_sigma"] = full["spatial_sigma"]
            if opts.get("joint"):  # distances over all channels of the image
                opts["guide"] = p.x.transpose(0, 1)  # (1, C, H, W)
        if self.kernel == "polyblur":
            opts["blur"] = self.filter_kw["blur"]
        x = p.x[channel : channel + 1].transpose(0, 1)  # (1, 1, H, W)
        pr = effective_weights(kernel, x, *args, pixel=pixel, **opts)
        # back to input units: y = sum(w * x_in) + scale * bias + offset * (1 - sum(w))
        bias = p.scale * pr.bias + p.offset * (1.0 - pr.sum)
        return replace(
            pr,
            bias=bias if abs(bias) > 1e-9 * max(1.0, abs(p.offset)) else 0.0,
            value=pr.value * p.scale + p.offset,
        )


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
    strength : float
        Multiplies the predicted maps (the user's knob; 1 = as trained, 0 = identity).
    channel_axis : int, optional
        Axis of the channels; each channel is filtered with its own maps.
    model : str or path, optional
        A shipped model name or a ``.safetensors`` file (default: the kernel's model).
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
