"""``pkn.restore``: one call from a numpy image to a restored image and its parameter maps."""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import _tiles
from ._input import (
    Stack,
    _is_real,
    check_strength,
    correlation_of,
    estimate_noise,
    prepare,
    stack_noise,
)
from ._threads import thread_policy
from ._version import __version__
from .models.pkn_model import run_filter
from .models.procedural import get_spec, network_kernels, tasks, upsample_map
from .psf import PSF, check_psf

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
    :func:`restore` (numpy input only), plus ``normalisation=(offset, scale)``: the
    normalisation to use instead of the image's own (a plane of a stack restored on its
    own gives exactly its result in the whole stack with the stack's
    ``info["normalisation"]`` and noise model).

    Memory: the cache holds the parameter maps of every plane at half resolution in
    float32 (float64 for float64 input): per map a quarter of the pixels, so 1 byte per
    input pixel and map (NLM: 2 maps, half a float32 input or twice a uint8 one), nothing
    at full resolution (:attr:`p` and :attr:`noise_std` are built on access). The
    network and the filter run in windows on planes over 512 x 512 pixels.

    The network, :attr:`net`, is the Restorer's own copy (in eval mode, frozen; a model
    object given as ``model=`` is copied, never changed). After construction :meth:`render`
    and :meth:`probe` use only its kernel and options, not its weights, so many Restorers
    of one job may share one network by assigning the same identical model to their
    ``net`` (the napari plugin does this for the planes of a stack).

    Examples
    --------
    >>> import numpy as np, pkn
    >>> noisy = np.random.default_rng(0).normal(0.5, 0.1, (64, 64)).astype(np.float32)
    >>> r = pkn.Restorer(noisy, noise=0.1)
    >>> soft, strong = r.render(0.5), r.render(2.0)  # the filter only
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
        normalisation=None,
    ):
        from .models.io import load_model

        kernel, spec = _task_kernel(task, kernel, model)
        if spec.ndim != 2:
            raise ValueError(
                f"kernel {kernel!r} filters over {spec.spatial_axes}; pkn.restore handles "
                "kernels over (y, x) planes only so far."
            )
        _check_task_inputs(spec, task, blur, scale)
        self.task, self.kernel, self.spec, self.blur, self.scale = task, kernel, spec, blur, scale
        self.inputs: dict = {}
        _lazy_refused(image)
        self.stack = st = Stack(image, channel_axis, per_plane, normalisation)
        H, W = st.a.shape[-2:]
        if "blur" in spec.inputs:
            self.inputs["blur"] = _blur_input(blur, (H, W))
        if "size" in spec.inputs:
            _check_size(st.a.shape, st.out_dtype, scale)
            self.inputs["size"] = (max(1, round(H * scale)), max(1, round(W * scale)))
        self.net, self.model_info = _kernel_model(model, kernel, load_model)
        self.device = device
        p0 = st.calibration_plane(0, device) if st.n == 1 else st.window(0, (0, 2, 0, 2), device)
        self.net = self.net.to(p0.x.device, p0.x.dtype)
        self._std_of, self.noise_info = stack_noise(st, noise, [p0] if st.n == 1 else None)
        del p0
        self._maps = []
        with thread_policy():
            for i in range(st.n):
                self._maps.append(self._predict(i))  # half resolution, float32 (float64)

    # --------------------------------------------------------------- caches
    @property
    def p(self):
        """Plane 0 normalised (a :class:`pkn._input.Prepared`; built on each access, not
        cached)."""
        return self.stack.plane(0, self.device)

    @property
    def maps(self) -> dict:
        """Plane 0's cached maps (half resolution, normalised units)."""
        return self._maps[0]

    @property
    def noise_std(self) -> torch.Tensor:
        """Plane 0's noise std (normalised units): ``(C, 1, 1, 1)`` or a map."""
        return self._std_of(0, self.p)

    def _tiled(self) -> bool:
        """Whether planes are processed in windows (over :data:`pkn._tiles.TILE` squared
        pixels; never for resampling, whose output grid is not the input's)."""
        H, W = self.stack.a.shape[-2:]
        return self.spec.pixel_grid == "input" and H * W > _tiles.TILE**2

    def _predict(self, i: int) -> dict:
        """The maps of plane ``i``: the network once over the plane, or window by window
        with the plane's mean (:mod:`pkn._tiles`); the same maps either way."""
        st, net = self.stack, self.net
        corr = correlation_of(self.noise_info, i)  # (C, 5, 5) or None (noise given: white)
        if not self._tiled():
            p = st.plane(i, self.device)
            with torch.no_grad():
                return _tiles.predict_maps(net, p.x, self._std_of(i, p), correlation=corr)
        H, W = st.a.shape[-2:]
        mean = _tiles.plane_mean(st.raw(i), st.offset[i], st.scale[i])
        margin = _tiles._round8(_tiles.receptive_field(net))
        out: dict = {}
        for (y0, y1, x0, x1), (wy0, wy1, wx0, wx1) in _tiles.windows(H, W, _tiles.TILE, margin):
            pw = st.window(i, (wy0, wy1, wx0, wx1), self.device)
            with torch.no_grad():
                m = _tiles.predict_maps(net, pw.x, self._std_of(i, pw), mean, corr)
            for name, v in m.items():
                if v.shape[-2:] == (1, 1):
                    out.setdefault(name, v)
                    continue
                if name not in out:
                    out[name] = v.new_empty((*v.shape[:2], -(-H // 2), -(-W // 2)))
                r0, c0 = (y0 - wy0) // 2, (x0 - wx0) // 2
                h, w = -(-y1 // 2) - y0 // 2, -(-x1 // 2) - x0 // 2
                out[name][..., y0 // 2 : y0 // 2 + h, x0 // 2 : x0 // 2 + w] = v[
                    ..., r0 : r0 + h, c0 : c0 + w
                ]
            del m, pw
        return out

    def auto_strength(self) -> tuple[float, dict]:
        """The strength ``"auto"`` chooses: the minimum of SURE, Stein's unbiased estimate
        of the error against the unknown clean image, for the noise model in use
        (:func:`pkn._quality.sure_strength`, on a central crop of at most 512 x 512
        pixels); denoising only. Computed once per :class:`Restorer`."""
        if self.spec.task != "denoise":
            raise ValueError(
                f"strength='auto' is available for denoising, not {self.task}; give a number."
            )
        if getattr(self, "_auto", None) is None:
            from ._quality import _MAX_SIDE, sure_strength

            st, f = self.stack, self.net.factor
            i = st.n // 2  # a stack: the middle plane
            H, W = st.a.shape[-2:]
            h, w = min(H, _MAX_SIDE), min(W, _MAX_SIDE)
            r0, c0 = (H - h) // 2 // f * f, (W - w) // 2 // f * f
            # the crop sure_strength takes, with a margin for the noise map's smoothing
            m = _tiles.ALIGN
            win = (max(0, r0 - m), min(H, r0 + h + m), max(0, c0 - m), min(W, c0 + w + m))
            pw = st.window(i, win, self.device)
            sl = (..., slice(r0 - win[0], r0 - win[0] + h), slice(c0 - win[2], c0 - win[2] + w))
            std = self._std_of(i, pw)
            std = std if std.shape[-2:] == (1, 1) else std[sl]
            maps = {
                n: v
                if v.shape[-2:] == (1, 1)
                else v[..., r0 // f : -(-(r0 + h) // f), c0 // f : -(-(c0 + w) // f)]
                for n, v in self._maps[i].items()
            }
            with thread_policy(filter=True, pixels=self._pixels()), _filter_threads():
                self._auto = sure_strength(self.net, pw.x[sl], maps, std, self.inputs)
            if st.n > 1:
                self._auto[1]["plane"] = list(st.index(i))
        return self._auto

    def _pixels(self) -> int:
        """Pixels one plane's filter works on (all channels)."""
        C, H, W = self.stack.a.shape[-3:]
        return int(C * H * W)

    def _filter(self, i: int, strength: float):
        """Run the filter on plane ``i``: yields ``(core, image, qc)``, the core box
        ``(y0, y1, x0, x1)`` of the output plane, its restored values ``(C, h, w)`` in
        input units and (denoising) its residual in noise units, float32."""
        st, net, maps = self.stack, self.net, self._maps[i]
        denoise = self.spec.task == "denoise"
        H, W = st.a.shape[-2:]
        opts = net.options
        if self._tiled():
            scaled = self.spec.scaled(maps, strength)
            margin = _tiles.filter_halo(self.spec, scaled, net.options, self.inputs)
            boxes = _tiles.windows(H, W, _tiles.TILE, margin)
            if self.spec.fixed_window is not None:  # the plane's window, not each window's
                r = self.spec.support(scaled, net.options, **self.inputs)
                opts = {**opts, **self.spec.fixed_window(r)}
        else:
            boxes = [((0, H, 0, W), (0, H, 0, W))]
        for (y0, y1, x0, x1), (wy0, wy1, wx0, wx1) in boxes:
            pw = st.window(i, (wy0, wy1, wx0, wx1), self.device)
            mw = {
                n: v
                if v.shape[-2:] == (1, 1)
                else v[..., wy0 // 2 : -(-wy1 // 2), wx0 // 2 : -(-wx1 // 2)]
                for n, v in maps.items()
            }
            with (
                torch.no_grad(),
                thread_policy(filter=True, pixels=self._pixels()),
                _filter_threads(),
            ):
                y = run_filter(
                    self.spec,
                    pw.x,
                    mw,
                    factor=net.factor,
                    strength=strength,
                    options=opts,
                    **self.inputs,
                )
            if (wy0, wy1, wx0, wx1) == (0, H, 0, W):
                sl = (slice(None), 0)
                core = (0, y.shape[-2], 0, y.shape[-1])  # resampling: the output's grid
            else:
                sl = (slice(None), 0, slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))
                core = (y0, y1, x0, x1)
            o = (y[sl] * pw.scale + pw.offset).cpu().numpy().astype(pw.out_dtype, copy=False)
            q = None
            if denoise:
                q = ((pw.x - y) / self._std_of(i, pw))[sl].cpu().numpy().astype(np.float32)
            del y, pw
            yield core, o, q

    def render(self, strength: float | str = 1.0, *, _release: bool = False) -> Restoration:
        """Run the classical filter with the cached maps times ``strength`` (a number
        >= 0, or ``"auto"``: see :meth:`auto_strength`).

        Memory: besides the input, the result (image, maps, QC) and the cached maps, one
        window of work at a time (planes over 512 x 512 pixels are filtered in windows
        of :data:`pkn._tiles.TILE` squared pixels plus the kernel's support)."""
        auto = None
        if isinstance(strength, str) and strength == "auto":
            strength, auto = self.auto_strength()
        strength = check_strength(strength)
        st, net = self.stack, self.net
        out = qc = None
        mp: dict = {}
        wsum = np.zeros(3)
        with thread_policy():
            for i in range(st.n):
                idx = st.index(i)
                for (y0, y1, x0, x1), o, q in self._filter(i, strength):
                    if out is None:
                        shape = self._out_shape(o)
                        out = np.empty(st.lead + shape, o.dtype)
                        if q is not None:
                            qc = np.empty(st.lead + shape, np.float32)
                    out[(*idx, slice(None), slice(y0, y1), slice(x0, x1))] = o
                    if q is not None:
                        qc[(*idx, slice(None), slice(y0, y1), slice(x0, x1))] = q
                if qc is not None:
                    wsum += _lag1(qc[idx])
                scale = st.scale[i]
                for name, m in self.spec.scaled(self._maps[i], strength).items():
                    unit = scale if self.spec.param(name).unit == "intensity" else 1.0
                    if _release and m is self._maps[i][name]:
                        m = m.mul_(unit) if unit != 1.0 else m  # the cache is not kept
                    else:
                        m = m * unit
                    m = m[:, 0].cpu().numpy().astype(np.float32, copy=False)
                    if st.n == 1:
                        mp[name] = m
                    else:
                        if name not in mp:
                            mp[name] = np.empty(st.lead + m.shape, np.float32)
                        mp[name][idx] = m
                if _release:
                    self._maps[i] = None
        if st.channel_axis is None:  # drop the channel axis of one
            out, qc = out[..., 0, :, :], None if qc is None else qc[..., 0, :, :]
            mp = {k: v[..., 0, :, :] for k, v in mp.items()}
        else:
            ca = st.channel_axis
            out = np.moveaxis(out, -3, ca)
            mp = {k: np.moveaxis(v, -3, ca) for k, v in mp.items()}
            qc = None if qc is None else np.moveaxis(qc, -3, ca)
        info = self._info(strength, auto)
        if qc is not None:
            info["whiteness"] = _whiteness_of(wsum)
        return Restoration(out, mp, float(net.factor), info, qc)

    def _out_shape(self, o: np.ndarray) -> tuple:
        """``(C, H, W)`` of an output plane (the input's, or the resampled size)."""
        C, H, W = self.stack.a.shape[-3:]
        if "size" in self.inputs:
            return (C, *self.inputs["size"])
        return (C, H, W)

    def _info(self, strength: float, auto) -> dict:
        """``Restoration.info`` (without the whiteness)."""
        st, mi = self.stack, self.model_info
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
            "map_scale": float(self.net.factor),
            "normalisation": {"offset": st.offset[0], "scale": st.scale[0]},
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
        if "blur" in self.spec.inputs:
            info.update(_blur_info(self.blur, self.inputs["blur"]))
        if "size" in self.spec.inputs:
            info["scale"] = float(self.scale)
        return info

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


def _lag1(q: np.ndarray, rows: int = 256) -> np.ndarray:
    """``(var, lag-1 y, lag-1 x)`` products of a residual plane ``(C, H, W)``, means
    over its pixels, as :func:`pkn._quality.whiteness` (and summed over planes); in
    float64 bands of ``rows`` rows (no full-size float64 copy)."""
    C, H, W = q.shape
    mean = q.sum(axis=(-2, -1), dtype=np.float64)[:, None, None] / (H * W)
    s = np.zeros(3)
    prev = None
    for y in range(0, H, rows):
        r = q[:, y : y + rows].astype(np.float64) - mean
        s[0] += np.sum(r * r)
        s[1] += np.sum(r[:, 1:] * r[:, :-1])
        if prev is not None:
            s[1] += np.sum(prev * r[:, 0])
        s[2] += np.sum(r[:, :, 1:] * r[:, :, :-1])
        prev = r[:, -1]
    return s / np.array([C * H * W, max(1, C * (H - 1) * W), max(1, C * H * (W - 1))])


def _whiteness_of(s: np.ndarray) -> dict:
    """:func:`pkn._quality.whiteness` of a stack from the sums of :func:`_lag1`."""
    if s[0] <= 0:
        return {"lag1_y": 0.0, "lag1_x": 0.0, "score": 0.0}
    cy, cx = float(s[1] / s[0]), float(s[2] / s[0])
    return {"lag1_y": round(cy, 4), "lag1_x": round(cx, 4), "score": round((cy + cx) / 2, 4)}


#: Largest blur sigma (pixels) and PSF side accepted for deblurring: polyblur's support
#: is three times the blur's radius (3 sigma), so sigma 50 px already needs a 450-pixel halo.
MAX_BLUR_SIGMA = 50.0
MAX_PSF_SIDE = 301
#: Upsampling: the most output pixels per plane and channel (2**28: 16384 x 16384, 1 GiB
#: in float32); above it the call is refused with the memory it would need.
MAX_OUTPUT_PIXELS = 2**28

_BLUR_ACCEPTED = (
    f"a Gaussian sigma in (0, {MAX_BLUR_SIGMA:g}] px, (sigma_y, sigma_x, rho) with sigmas in "
    f"(0, {MAX_BLUR_SIGMA:g}] and rho in (-1, 1), or a 2-D PSF array (at most "
    f"{MAX_PSF_SIDE} x {MAX_PSF_SIDE}, finite, >= 0, positive sum)"
)


def _model_kernel(model) -> str | None:
    """The kernel a model (shipped name, file or object) drives; None for no model."""
    if model is None:
        return None
    from .models.io import model_kernel
    from .models.pkn_model import PKNModel

    if isinstance(model, PKNModel):
        return model.kernel
    return model_kernel(model)  # its metadata, cached by path and hash; bad names: clear errors


def _task_kernel(task, kernel, model=None):
    """``(kernel, descriptor)`` for ``task``: ``kernel``, else the kernel ``model`` drives,
    else the task's default; or an error naming the value and what is accepted."""
    defaults = tasks()
    if task not in defaults:
        raise ValueError(f"task must be one of {sorted(defaults)}, got {task!r}.")
    kernel = kernel or _model_kernel(model) or defaults[task]
    if kernel not in network_kernels():
        raise ValueError(f"kernel must be one of {network_kernels()}, got {kernel!r}.")
    spec = get_spec(kernel)
    if spec.task != task:
        raise ValueError(f"kernel {kernel!r} does {spec.task}, not {task}.")
    return kernel, spec


def _check_task_inputs(spec, task: str, blur, scale) -> None:
    """``blur=`` and ``scale=`` exactly where the kernel takes them, with valid values."""
    if "blur" not in spec.inputs and blur is not None:
        raise ValueError(
            f"blur={_short(blur)} is only used for deblurring; task {task!r} (kernel "
            f"{spec.name!r}) does not take it. Remove blur= (or use task='deblur')."
        )
    if "size" not in spec.inputs and scale is not None:
        raise ValueError(
            f"scale={scale!r} is only used for upsampling; task {task!r} (kernel "
            f"{spec.name!r}) does not take it. Remove scale= (or use task='upsample')."
        )
    if "blur" in spec.inputs:
        if blur is None:
            raise ValueError("deblurring needs blur= (a Gaussian sigma, (sy, sx, rho) or a PSF).")
        _check_blur(blur)
    if "size" in spec.inputs and not (_is_real(scale) and np.isfinite(scale) and scale > 0):
        raise ValueError(f"upsampling needs scale= a positive factor, got {scale!r}.")


def _short(v) -> str:
    """``repr`` of a user's value, arrays shortened to their shape and dtype."""
    if isinstance(v, np.ndarray | torch.Tensor) and np.size(v) > 9:
        return f"<array of shape {tuple(v.shape)}, {v.dtype}>"
    return repr(v)


def _check_blur(blur) -> None:
    """A blur ``pkn.restore`` accepts, or an error naming the value and what is accepted."""

    def bad(why: str, exc=ValueError):
        return exc(f"blur={_short(blur)}: {why}; accepted: {_BLUR_ACCEPTED}.")

    if isinstance(blur, str | bytes):
        raise bad("a string is not a blur", TypeError)
    if _is_real(blur):
        if not (np.isfinite(blur) and 0 < blur <= MAX_BLUR_SIGMA):
            raise bad(f"the sigma must be in (0, {MAX_BLUR_SIGMA:g}] px")
        return
    if isinstance(blur, tuple | list):
        if len(blur) != 3 or not all(_is_real(v) for v in blur):
            raise bad("an anisotropic blur is three numbers (sigma_y, sigma_x, rho)", TypeError)
        sy, sx, rho = (float(v) for v in blur)
        if not all(np.isfinite(v) and 0 < v <= MAX_BLUR_SIGMA for v in (sy, sx)):
            raise bad(f"sigma_y and sigma_x must be in (0, {MAX_BLUR_SIGMA:g}] px")
        if not (np.isfinite(rho) and -1 < rho < 1):
            raise bad("rho must be in (-1, 1)")
        return
    if isinstance(blur, np.ndarray | torch.Tensor | PSF):
        a = _psf_array(blur)
        if a.dtype.kind not in "uif" or a.dtype.kind == "b":
            raise bad(f"a PSF is a numeric array, got dtype {a.dtype}", TypeError)
        if a.ndim == 2 and (max(a.shape) > MAX_PSF_SIDE or min(a.shape) < 1):
            raise bad(f"the PSF is {a.shape[0]} x {a.shape[1]}")
        try:  # 2-D, finite, mass, border, centring: says what to do
            check_psf(a, name="blur")
        except ValueError as e:
            raise bad(str(e).rstrip(".")) from None
        return
    raise bad(f"{type(blur).__name__} is not a blur", TypeError)


def _blur_input(blur, plane_hw: tuple[int, int]):
    """What the kernel gets as ``blur=``: a Gaussian sigma or ``(sigma_y, sigma_x, rho)``
    as given; a PSF (array or :class:`pkn.psf.PSF`) checked against the plane size by
    :func:`pkn.psf.check_psf`, as a float32 tensor summing to 1."""
    if not isinstance(blur, np.ndarray | torch.Tensor | PSF):
        return blur
    try:
        psf = check_psf(_psf_array(blur), image_shape=plane_hw, name="blur")
    except ValueError as e:
        msg = f"blur={_short(blur)}: {str(e).rstrip('.')}; accepted: {_BLUR_ACCEPTED}."
        raise ValueError(msg) from None
    return torch.as_tensor(psf)


def _blur_info(blur, used) -> dict:
    """The blur in ``info``: as given, or the PSF's shape (and an imported PSF's
    provenance)."""
    if not isinstance(used, torch.Tensor):
        return {"blur": blur}
    info = {"blur": f"psf array {tuple(used.shape)}"}
    if isinstance(blur, PSF):
        info["psf"] = blur.info
    return info


def _psf_array(blur) -> np.ndarray:
    """The array of a PSF given as numpy, torch or :class:`pkn.psf.PSF`."""
    if isinstance(blur, PSF):
        return np.asarray(blur.array)
    return np.asarray(blur.detach().cpu() if isinstance(blur, torch.Tensor) else blur)


def _check_size(shape: tuple, out_dtype, scale: float) -> None:
    """Refuse an upsampling of planes ``shape = lead + (C, H, W)`` whose output would pass
    :data:`MAX_OUTPUT_PIXELS` per plane, saying how much memory it would need."""
    C, H, W = shape[-3:]
    n = int(np.prod(shape[:-3], dtype=np.int64))
    h, w = max(1, round(H * scale)), max(1, round(W * scale))
    if h * w > MAX_OUTPUT_PIXELS:
        need = float(h) * w * C * n * np.dtype(out_dtype).itemsize
        raise ValueError(
            f"scale={scale!r} would upsample the {H}x{W} planes to {h}x{w} pixels: "
            f"{need / 2**30:.3g} GiB for the image alone. At most {MAX_OUTPUT_PIXELS} "
            f"output pixels per plane ({int(np.sqrt(MAX_OUTPUT_PIXELS))} squared) are "
            "accepted; choose a smaller scale or upsample a crop."
        )


def _is_lazy(image) -> bool:
    """A dask array or a zarr array (never imports dask or zarr for other inputs)."""
    mod = type(image).__module__ or ""
    if mod.startswith("dask."):
        import dask.array as da

        return isinstance(image, da.Array)
    if mod.startswith("zarr"):
        import zarr

        return isinstance(image, zarr.Array)
    return False


def _lazy_refused(image) -> None:
    if _is_lazy(image):
        raise TypeError(
            f"Restorer needs an in-memory (numpy) image, got a {type(image).__module__}."
            f"{type(image).__name__}; use pkn.restore, which returns dask arrays for dask "
            "and zarr input, or pass np.asarray(image) for one in memory."
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


def _kernel_model(model, kernel: str, load_model):
    """:func:`_model`, refused unless the model drives ``kernel``."""
    net, info = _model(model, kernel, load_model)
    if net.kernel != kernel:
        raise ValueError(f"model {info['name']!r} drives kernel {net.kernel!r}, not {kernel!r}.")
    return net, info


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
        uint16, float32 or float64 (any byte order), a numpy masked array without masked
        pixels, a dask array or a zarr array (lazy: see Returns). Accepted shapes:

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
        ``"anisotropic"``, ``"polyblur"`` (deblur) or ``"rbf"`` (upsample). Default: the
        kernel ``model`` drives when a model is given, else the task's default.
    noise : None, "auto", float, (float, float) or NoiseModel
        ``None``/``"auto"``: estimated from the image (:func:`pkn.calibrate`: marginal
        variance ``a * x + b`` and spatial correlation per channel; see ``.info``).
        A float is the AWGN sigma in the units of the input values; a pair ``(a, b)``
        (tuple, list or numpy array; ``a >= 0``) the Poisson-Gaussian variance
        ``a * x + b`` in input units, positive somewhere in the image's range; both are
        treated as white noise. A :class:`pkn.noise.NoiseModel` from :func:`pkn.calibrate`
        (one for every channel, or a tuple of one per channel, as ``calibrate(...,
        channel_axis=...)`` returns) is used as given, its correlation included: calibrate
        once, on a whole stack or a camera's dark/flat frames, and restore many images.
    blur : float, (float, float, float) or 2-D array
        Deblurring only (refused for the other tasks): Gaussian sigma (px, at most
        :data:`MAX_BLUR_SIGMA`), ``(sigma_y, sigma_x, rho)`` or a PSF (at most
        :data:`MAX_PSF_SIDE` per side).
    scale : float
        Upsampling only (refused for the other tasks): the factor (any positive number,
        e.g. 1.5); at most :data:`MAX_OUTPUT_PIXELS` output pixels per plane.
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
        For a dask array (or a ``zarr.Array``, read through ``dask.array.from_zarr``):
        ``.image``, ``.maps`` (each) and ``.qc`` are dask arrays of the same shapes and
        axes as for the array in memory, built with ``dask.array.map_overlap`` (a halo
        covering the network's receptive field and the kernel's support; y/x chunks
        rechunked to multiples of 8). Nothing is computed but the noise model and the
        normalisation, once for the whole array: from the whole array up to
        :data:`pkn._lazy.SAMPLE_BYTES`, from a bounded sample of chunks above (see
        ``.info["lazy"]``), plus the whiteness from at most two chunks. Compute the image
        and the maps together (``dask.compute(r.image, *r.maps.values())``) to run the
        network once per chunk. See docs/big-data.md.

    Notes
    -----
    Memory (numpy input): planes over 512 x 512 pixels are processed in windows with
    the same result as all at once (to ~1e-6 of the range): the peak is the input, the
    result (image, maps, QC) and about 0.2 GB of work, e.g. 1.1 GB for an 8000 x 8000
    float32 image. Upsampling processes whole planes.

    Examples
    --------
    >>> import numpy as np, pkn
    >>> noisy = np.random.default_rng(0).normal(0.5, 0.1, (64, 64)).astype(np.float32)
    >>> r = pkn.restore(noisy, noise=0.1)
    >>> r.image.shape, r.maps["sigma"].shape
    ((64, 64), (32, 32))

    A dask array gives dask arrays:

    >>> import dask.array as da
    >>> lazy = pkn.restore(da.from_array(noisy, chunks=32), noise=0.1)
    >>> type(lazy.image).__name__, lazy.image.shape
    ('Array', (64, 64))
    """
    if not (isinstance(strength, str) and strength == "auto"):
        check_strength(strength)
    if _is_lazy(image):
        from ._lazy import restore_lazy

        return restore_lazy(
            image,
            task,
            kernel=kernel,
            noise=noise,
            blur=blur,
            scale=scale,
            strength=strength,
            channel_axis=channel_axis,
            per_plane=per_plane,
            model=model,
            device=device,
        )
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
    return r.render(strength, _release=True)
