"""``pkn.restore``: one call from a numpy image to a restored image and its parameter maps."""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ._input import Stack, check_strength, estimate_noise, prepare, stack_noise
from ._threads import thread_policy
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
        layout, stacks included (upsampling: the last two axes scaled).
    maps : dict of str to numpy.ndarray
        Parameter maps by name (``"sigma"``; ``"sigma1"``, ``"sigma2"``, ``"rho"``;
        ``"b"``, ``"c"``, ``"d"``), each ``(h, w)`` for gray input or with the channel
        axis where the input had it; a stack's maps keep its leading axes
        (``(z, h, w)``, ``(t, c, h, w)``, ...). Sigmas of NLM/bilateral are in the input's units;
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
        per_plane: bool = False,
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
        self.stack = st = Stack(image, channel_axis, per_plane)
        self.device = device
        # plane 0 (the only one for a 2-D image): .p, .maps and .noise_std as before
        self.p = st.plane(0, device)
        self.net = self.net.to(self.p.x.device, self.p.x.dtype)
        self._std_of, self.noise_info = stack_noise(st, noise, [self.p])
        H, W = self.p.x.shape[-2:]
        if "size" in spec.inputs:
            self.inputs["size"] = (max(1, round(H * scale)), max(1, round(W * scale)))
        self._maps = []
        with thread_policy():
            for i in range(st.n):
                p = self.p if i == 0 else st.plane(i, device)
                std = self._std_of(i, p)
                if i == 0:
                    self.noise_std = std
                x = p.x
                guide = (
                    x.mean(0, keepdim=True).expand_as(x) if self.net.guided and len(x) > 1 else None
                )
                with torch.no_grad():
                    self._maps.append(self.net.predict_maps(x, std, guide))  # half resolution
        self.maps = self._maps[0]

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

            i = self.stack.n // 2  # a stack: the middle plane
            p = self.p if i == 0 else self.stack.plane(i, self.device)
            with thread_policy(filter=True, pixels=self._pixels()), _filter_threads():
                self._auto = sure_strength(
                    self.net, p.x, self._maps[i], self._std_of(i, p), self.inputs
                )
            if self.stack.n > 1:
                self._auto[1]["plane"] = list(self.stack.index(i))
        return self._auto

    def _pixels(self) -> int:
        """Pixels one plane's filter works on (all channels)."""
        C, _, H, W = self.p.x.shape
        return int(C * H * W)

    def render(self, strength: float | str = 1.0) -> Restoration:
        """Run the classical filter with the cached maps times ``strength`` (a number
        >= 0, or ``"auto"``: see :meth:`auto_strength`)."""
        auto = None
        if isinstance(strength, str) and strength == "auto":
            strength, auto = self.auto_strength()
        strength = check_strength(strength)
        st, net = self.stack, self.net
        out = mp = qc = None
        wsum = np.zeros(3)
        with thread_policy():
            for i in range(st.n):
                p = self.p if i == 0 else st.plane(i, self.device)
                with (
                    torch.no_grad(),
                    thread_policy(filter=True, pixels=self._pixels()),
                    _filter_threads(),
                ):
                    y = net.filter(p.x, self._maps[i], strength=strength, **self.inputs)
                o = (y[:, 0] * p.scale + p.offset).cpu().numpy().astype(p.out_dtype, copy=False)
                if out is None:
                    out = np.empty(st.lead + o.shape, p.out_dtype)
                out[st.index(i)] = o
                for name, m in self.spec.scaled(self._maps[i], strength).items():
                    unit = p.scale if self.spec.param(name).unit == "intensity" else 1.0
                    m = (m[:, 0] * unit).cpu().numpy().astype(np.float32)
                    if mp is None or name not in mp:
                        mp = mp or {}
                        mp[name] = np.empty(st.lead + m.shape, np.float32)
                    mp[name][st.index(i)] = m
                if self.spec.task == "denoise":
                    q = ((p.x - y) / self._std_of(i, p))[:, 0].cpu().numpy().astype(np.float32)
                    if qc is None:
                        qc = np.empty(st.lead + q.shape, np.float32)
                    qc[st.index(i)] = q
                    if st.n > 1:
                        wsum += _lag1(q)
                del y
        mp = mp or {}
        if st.channel_axis is None:  # drop the channel axis of one
            out, qc = out[..., 0, :, :], None if qc is None else qc[..., 0, :, :]
            mp = {k: v[..., 0, :, :] for k, v in mp.items()}
        else:
            ca = st.channel_axis
            out = np.moveaxis(out, -3, ca)
            mp = {k: np.moveaxis(v, -3, ca) for k, v in mp.items()}
            qc = None if qc is None else np.moveaxis(qc, -3, ca)
        p = self.p
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
        if st.n > 1:
            scope = "per plane" if st.per_plane else "per stack"
            info["planes"] = {"shape": list(st.lead), "noise": scope, "normalisation": scope}
            if st.per_plane:
                info["normalisation"] = {"offset": st.offset, "scale": st.scale}
        adapted = (mi.get("info") or {}).get("adaptation")
        if adapted:
            info["adaptation"] = adapted
        if auto is not None:
            info["strength_auto"] = auto
        if qc is not None:
            from ._quality import whiteness

            if st.n > 1:
                info["whiteness"] = _whiteness_of(wsum)
            else:
                info["whiteness"] = whiteness(
                    np.moveaxis(qc, st.channel_axis, 0) if st.channel_axis is not None else qc
                )
        if "blur" in self.spec.inputs:
            info["blur"] = self.blur if np.ndim(self.blur) < 2 else "psf array"
        if "size" in self.spec.inputs:
            info["scale"] = float(self.scale)
        return Restoration(out, mp, float(net.factor), info, qc)

    def probe(
        self, pixel: tuple[int, int], channel: int = 0, strength: float = 1.0, plane: int = 0
    ):
        """The weights the filter applied at input ``pixel`` (row, col) of ``channel``
        (of flat ``plane`` of a stack, in C order over the leading axes).

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
        n = self.stack.n
        if not (isinstance(plane, int | np.integer) and 0 <= plane < n):
            raise ValueError(f"plane must be an integer in [0, {n - 1}], got {plane!r}.")
        p = self.p if plane == 0 else self.stack.plane(int(plane), self.device)
        if not (isinstance(channel, int | np.integer) and 0 <= channel < len(p.x)):
            raise ValueError(f"channel must be an integer in [0, {len(p.x) - 1}], got {channel!r}.")
        H, W = p.x.shape[-2:]
        maps = {
            n: upsample_map(m, (H, W), self.net.factor)[channel : channel + 1]
            for n, m in self._maps[plane].items()
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


def _lag1(q: np.ndarray) -> np.ndarray:
    """``(var, lag-1 y, lag-1 x)`` products of a residual plane ``(C, H, W)``, means
    over its pixels (as :func:`pkn._quality.whiteness`, summed over planes)."""
    r = q.astype(np.float64) - q.mean(axis=(-2, -1), keepdims=True, dtype=np.float64)
    return np.array(
        [
            np.mean(r * r),
            np.mean(r[..., 1:, :] * r[..., :-1, :]),
            np.mean(r[..., :, 1:] * r[..., :, :-1]),
        ]
    )


def _whiteness_of(s: np.ndarray) -> dict:
    """:func:`pkn._quality.whiteness` of a stack from the sums of :func:`_lag1`."""
    if s[0] <= 0:
        return {"lag1_y": 0.0, "lag1_x": 0.0, "score": 0.0}
    cy, cx = float(s[1] / s[0]), float(s[2] / s[0])
    return {"lag1_y": round(cy, 4), "lag1_x": round(cx, 4), "score": round((cy + cx) / 2, 4)}


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
    per_plane: bool = False,
    model=None,
    device=None,
) -> Restoration:
    """Restore an image with a Procedural Kernel Network.

    Parameters
    ----------
    image : array_like
        ``(..., y, x)``: the last two axes are the plane, ``channel_axis`` (optional)
        the channels, every other leading axis (z, t, ...) a stack of planes; uint8,
        uint16, float32 or float64. Accepted shapes:

        ======================  ================  ======================================
        shape                   channel_axis      processed as
        ======================  ================  ======================================
        ``(y, x)``              None              one gray plane
        ``(y, x, c)``           -1 (or 2)         one colour/multichannel plane
        ``(c, y, x)``           0 (or -3)         one multichannel plane
        ``(z, y, x)``           None              z gray planes, one by one
        ``(t, z, y, x)``        None              t * z gray planes, one by one
        ``(z, y, x, c)``        -1                z multichannel planes
        ``(t, c, y, x)``        1 (or -3)         t multichannel planes
        ``(..., y, x)``         None or an axis   any number of leading plane axes
        ======================  ================  ======================================

        Channels are combined only where the model was trained to combine colour
        channels (e.g. NLM's joint patch distance); planes never are: each plane gets
        its own network pass and filter. Without ``channel_axis`` a last axis of 3 or 4
        entries on a 3-D or larger image is refused as ambiguous (pass
        ``channel_axis=-1`` for colour). (y, x) are the last two axes once the channel
        axis is set aside. Memory: planes are normalised one at a time (no float64
        copy of a stack).
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
    per_plane : bool
        Stacks only: estimate the noise and the normalisation of every plane on its own.
        Default: one noise model (all planes pooled, per channel) and one normalisation
        for the whole stack. ``.info["planes"]`` says which.
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
        per_plane=per_plane,
        model=model,
        device=device,
    )
    return r.render(strength)
