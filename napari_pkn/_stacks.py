"""Stacks and big layers in the plugin: one noise model per stack, lazy (dask) layers,
a memory budget and chunked "all planes" results.

* A stack ``(t, z, y, x)`` gets one noise model, pooled over its planes by
  :func:`pkn.estimate_noise` (``pkn.noise.calibrate`` per channel on all planes, on crops
  spread over them above :data:`pkn._input.CAL_PIXELS` pixels), computed once and given
  to every plane's :class:`pkn.Restorer`; per plane only on request.
* A dask-backed layer is never read whole: its noise model comes from at most
  :data:`pkn._lazy.SAMPLE_BYTES` of planes spread over the stack (:func:`sample_planes`),
  the preview restores the plane shown, and "all planes" (:class:`AllPlanes`) computes
  ``pkn.restore`` on the dask array chunk by chunk, into memory when the result fits
  :func:`memory_budget`, else into OME-Zarr files it then opens lazily.

Only numpy is imported here; pkn, dask and zarr inside functions.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "BUDGET_ENV",
    "AllPlanes",
    "StackNoise",
    "is_lazy",
    "memory_budget",
    "noise_argument",
    "result_bytes",
    "sample_planes",
    "stack_noise",
]

#: Environment variable: the memory budget (bytes) of an "all planes" result kept in memory.
BUDGET_ENV = "PKN_NAPARI_MEMORY_BUDGET"
#: The QC map (residual / noise std, shown in [-4, 4]) and the parameter map layers are
#: kept in float16: 3 significant digits (relative error <= 4.9e-4) for what is displayed
#: and read off the status bar, half the bytes. The restorers' cached maps (what a new
#: strength and the probe use) stay float32 (float64 for float64 input).
QC_DTYPE = np.float16
MAP_DTYPE = np.float16


def is_lazy(data) -> bool:
    """Whether ``data`` is a dask array (the layer is lazy: never read whole)."""
    mod = type(data).__module__ or ""
    if not mod.startswith("dask"):
        return False
    import dask.array as da

    return isinstance(data, da.Array)


def memory_budget() -> int:
    """Bytes an "all planes" result may take in memory: the ``PKN_NAPARI_MEMORY_BUDGET``
    environment variable (bytes) when set, else a quarter of the available memory.

    Examples
    --------
    >>> memory_budget() > 0
    True
    """
    text = os.environ.get(BUDGET_ENV, "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(
                f"{BUDGET_ENV}={text!r}: give the memory budget in bytes, a number >= 0."
            )
        return int(value)
    import psutil

    return int(psutil.virtual_memory().available // 4)


def sample_planes(n: int, plane_bytes: int, budget: int) -> list[int]:
    """Flat indices of at most ``budget // plane_bytes`` planes (at least one) spread
    evenly over ``n`` planes: the sample a lazy stack's noise model is estimated on.

    Examples
    --------
    >>> sample_planes(10, 100, 350)
    [0, 4, 9]
    """
    k = max(1, min(n, int(budget // max(1, plane_bytes))))
    return [int(i) for i in np.unique(np.linspace(0, n - 1, k).round().astype(int))]


@dataclass
class StackNoise:
    """The noise model a stack is restored with.

    ``argument`` is what each plane's :class:`pkn.Restorer` gets as ``noise=`` (the
    user's sigma or ``(a, b)``, the stack's :class:`pkn.noise.NoiseModel` per channel, or
    None: each plane estimated on its own), ``desc`` the model's
    description (as ``Restoration.info["noise"]``; None per plane), ``n_planes`` the
    planes it is for and ``sampled`` the planes it was estimated on (all of them for an
    in-memory stack).
    """

    argument: object
    desc: dict | None
    n_planes: int
    sampled: list = field(default_factory=list)
    normalisation: tuple | None = None  # the stack's (offset, scale), with its one model

    @property
    def per_plane(self) -> bool:
        return self.desc is None

    def text(self) -> str:
        """What the noise line adds: ``"one model for 20 planes"`` (and the sample of a
        lazy stack), or ``"one model per plane"``."""
        if self.n_planes <= 1:
            return ""
        if self.per_plane:
            return "one model per plane"
        out = f"one model for {self.n_planes} planes"
        if 0 < len(self.sampled) < self.n_planes:
            out += f" (estimated on {len(self.sampled)} planes spread over the stack)"
        return out


def noise_argument(desc: dict):
    """The ``noise=`` of :class:`pkn.Restorer` that gives the model ``desc`` (one channel):
    ``(a, b)`` for Poisson-Gaussian, the sigma for Gaussian.

    Examples
    --------
    >>> noise_argument({"model": "awgn", "sigma": [0.1]})
    0.1
    >>> noise_argument({"model": "poisson-gaussian", "a": [2.0], "b": [-1.0], "sigma": [3]})
    (2.0, -1.0)
    """

    def one(v):
        if isinstance(v, list | tuple):
            if len(v) != 1:
                raise ValueError(
                    f"noise model with {len(v)} channels; a plane's Restorer takes one "
                    "noise for all channels."
                )
            v = v[0]
        return float(v)

    if desc.get("model") == "poisson-gaussian":
        return (one(desc["a"]), one(desc["b"]))
    return one(desc["sigma"])


def stack_noise(source, noise, per_plane: bool = False) -> StackNoise:
    """The noise a stack ``source`` (:class:`napari_pkn._scripting.Source`) is restored
    with, given the user's ``noise`` (None: estimated).

    One plane, a noise given by the user or ``per_plane``: ``noise`` as it is
    (``per_plane``: each plane estimated on its own). Otherwise one model per channel
    pooled over the planes by :func:`pkn.calibrate` (marginal variance and correlation):
    of the whole stack in memory, of at most :data:`pkn._lazy.SAMPLE_BYTES` of planes
    spread over a lazy one (or one of a dtype pkn converts, e.g. int16); every plane's
    Restorer is given these models (an RGB stack: one per channel).
    """
    from pkn import _lazy
    from pkn._input import POOLED, Stack, describe_models, pooled_models

    n = source.n_planes
    if n <= 1 or noise is not None:  # one plane, or the user's noise: as given
        return StackNoise(noise, {}, n)
    if per_plane or (not source.rgb and source.spatial[1] in (3, 4)):  # x of 3 or 4: pkn
        return StackNoise(None, None, n)  # would take it for colour; planes one by one
    data = source.data
    native = np.dtype(data.dtype) in (np.uint8, np.uint16, np.float32, np.float64)
    if is_lazy(data) or not native:  # a sample of planes, read (and converted) one by one
        itemsize = max(4, np.dtype(data.dtype).itemsize)
        plane = math.prod(source.spatial) * itemsize
        picks = sample_planes(n, plane, _lazy.SAMPLE_BYTES)
        planes = np.stack([source.plane(tuple(np.unravel_index(i, source.lead))) for i in picks])
    else:
        picks = list(range(n))
        planes = source.data
    st = Stack(planes, -1 if source.rgb else None)  # as pkn.restore(stack) sees it
    models = tuple(pooled_models(st))  # its noise models and normalisation, as restore's
    desc = {**describe_models(models, POOLED), "scope": "stack"}
    return StackNoise(models, desc, n, picks, (st.offset[0], st.scale[0]))


def result_bytes(source, n_maps: int, out_shape: tuple, qc: bool) -> int:
    """Bytes of a whole-stack result: the image (float32, or float64 for float64 input;
    ``out_shape`` its ``(H, W)``), ``n_maps`` half-resolution maps (float32, as
    ``pkn.restore`` gives them) and (``qc``) the QC map (float16 in memory)."""
    c = 3 if source.rgb else 1
    n = source.n_planes * c
    out = 8 if np.dtype(source.data.dtype) == np.float64 else 4
    h, w = source.spatial
    ho, wo = out_shape
    total = n * ho * wo * out + n_maps * n * (-(-h // 2)) * (-(-w // 2)) * 4
    if qc:
        total += n * h * w * np.dtype(QC_DTYPE).itemsize
    return int(total)


class Cancelled(Exception):
    """Raised inside dask's scheduler to stop an "all planes" computation."""


class AllPlanes:
    """``pkn.restore`` of a whole lazy layer, computed chunk by chunk.

    Parameters
    ----------
    source : napari_pkn._scripting.Source
        Its data is a dask array; never read whole.
    options : napari_pkn._scripting.Options
        ``strength`` a number; the noise is ``noise`` (below).
    entry : pkn._catalogue.ModelInfo
    noise : float, (float, float) or None
        The stack's noise model (:func:`stack_noise`), so the preview and the whole
        stack use the same one.
    path : str or Path, optional
        Where the OME-Zarr result goes when it does not fit :func:`memory_budget`:
        ``<path>`` (the image), ``<stem>_<map>.ome.zarr`` and ``<stem>_qc.ome.zarr``
        beside it. Needed only then (:attr:`needs_path`). The result's size
        (:attr:`bytes`) is known from the layer's shape before anything is read.
    budget : int, optional
        Bytes the result may take in memory (default :func:`memory_budget`).

    Attributes
    ----------
    image, maps, qc : numpy or dask arrays
        After :meth:`run`: in memory (numpy; QC float16), or read lazily from the
        OME-Zarr files.
    info : dict
        ``pkn.restore``'s provenance plus where the result is (``result``).
    """

    def __init__(self, source, options, entry, noise, kernel, path=None, budget=None):
        self.source, self.options, self.entry, self.kernel = source, options, entry, kernel
        self.noise = noise
        h, w = source.spatial
        if "size" in kernel.inputs:
            f = float(options.factor)
            out_hw = (max(1, round(h * f)), max(1, round(w * f)))
        else:
            out_hw = (h, w)
        denoise = kernel.task == "denoise"
        self.bytes = result_bytes(source, len(kernel.params), out_hw, denoise)
        self.budget = memory_budget() if budget is None else int(budget)
        self.path = None if path is None else Path(path)
        self.lazy = None
        self.info: dict = {}
        self.image = self.qc = None
        self.maps: dict = {}
        self._stop = threading.Event()
        self.done, self._tasks = 0, 1

    def _restore(self):
        """``pkn.restore`` on the dask array: lazy outputs (reads only its calibration
        sample and the whiteness's chunks)."""
        import pkn

        src, o = self.source, self.options
        data = src.data[..., :3] if src.rgb else src.data
        self.lazy = pkn.restore(
            data,
            o.task,
            kernel=self.entry.kernel,
            model=self.entry.ref,
            noise=self.noise,
            blur=o.blur,
            scale=o.factor if "size" in self.kernel.inputs else None,
            strength=float(o.strength),
            channel_axis=-1 if src.rgb else None,
        )
        self.info = dict(self.lazy.info)

    @property
    def in_memory(self) -> bool:
        """Whether the result is kept in memory (it fits the budget)."""
        return self.bytes <= self.budget

    @property
    def needs_path(self) -> bool:
        return not self.in_memory and self.path is None

    def paths(self) -> dict:
        """``{"image": path, "<map>": path, "qc": path}`` of the OME-Zarr files."""
        p = self.path
        name = p.name
        stem = name[: -len(".ome.zarr")] if name.endswith(".ome.zarr") else p.stem
        out = {"image": p if name.endswith(".zarr") else p.with_name(stem + ".ome.zarr")}
        for k in self.kernel.param_names:
            out[k] = p.with_name(f"{stem}_{k}.ome.zarr")
        if self.kernel.task == "denoise":
            out["qc"] = p.with_name(f"{stem}_qc.ome.zarr")
        return out

    @property
    def total(self) -> int:
        return max(1, self._tasks)

    def cancel(self) -> None:
        self._stop.set()

    def _arrays(self) -> dict:
        lz = self.lazy
        out = {"image": lz.image, **lz.maps}
        if lz.qc is not None:
            out["qc"] = lz.qc.astype(QC_DTYPE) if self.in_memory else lz.qc
        return out

    def run(self):
        """Build ``pkn.restore``'s lazy result, then compute every chunk (in a thread;
        this generator yields ``(done, total, message)`` twice a second); :meth:`cancel`
        (or closing the generator) stops the computation at its next task."""
        import dask
        from dask.callbacks import Callback

        yield 0, 1, "all planes: calibrating (a sample of the stack) ..."
        self._restore()
        if self._stop.is_set():
            return None
        arrays = self._arrays()
        if self.in_memory:
            targets = {k: np.empty(v.shape, v.dtype) for k, v in arrays.items()}
        else:
            if self.path is None:
                raise ValueError(
                    "the result does not fit in memory: choose where to write it (OME-Zarr)."
                )
            targets = None
        owner = self
        errors: list = []

        class Progress(Callback):
            def _start_state(self, dsk, state):
                owner._tasks = max(1, len(state["ready"]) + len(state["waiting"]))

            def _pretask(self, key, dsk, state):
                if owner._stop.is_set():
                    raise Cancelled()

            def _posttask(self, key, result, dsk, state, worker_id):
                owner.done += 1

        def work():
            try:
                with Progress(), dask.config.set(scheduler="threads"):
                    if targets is not None:
                        import dask.array as da

                        keys = list(arrays)
                        da.store([arrays[k] for k in keys], [targets[k] for k in keys], lock=False)
                    else:
                        self._write(arrays)
            except BaseException as e:  # handed to the generator, raised there
                errors.append(e)

        thread = threading.Thread(target=work, name="pkn-all-planes", daemon=True)
        where = "in memory" if self.in_memory else f"to {self.path}"
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.5)
                yield min(self.done, self.total), self.total, f"all planes: {where} ..."
        finally:
            if thread.is_alive():  # closed early (Cancel): stop at the next task
                self._stop.set()
            thread.join()
        if errors:
            if isinstance(errors[0], Cancelled):
                return None
            raise errors[0]
        if targets is not None:
            self.image, self.qc = targets["image"], targets.get("qc")
            self.maps = {k: targets[k] for k in self.lazy.maps}
            self.info["result"] = "in memory"
        else:
            self._open()
        return self

    def _write(self, arrays: dict) -> None:
        from pkn._io import Geometry, Output, write_images

        outs = []
        for k, v in arrays.items():
            g = Geometry.default(_axes(v.ndim, self.source.rgb))
            outs.append(Output(self.paths()[k], v, g, self.info, rgb=self.source.rgb))
        write_images(outs, overwrite=True)

    def _open(self) -> None:
        """Read the written files back lazily, in the layer's axis order."""
        from pkn._io import read_image

        got = {}
        for k, p in self.paths().items():
            im = read_image(p, lazy=True)
            axes = _axes(im.data.ndim, self.source.rgb)
            order = [im.geometry.axes.index(a) for a in axes]
            got[k] = im.data.transpose(order)
        self.image, self.qc = got.pop("image"), got.pop("qc", None)
        self.maps = got
        self.info["result"] = {k: str(p) for k, p in self.paths().items()}


def _axes(ndim: int, rgb: bool) -> tuple[str, ...]:
    """Axis names for a written result: ``(..., "y", "x")`` with the leading axes named
    from ``"t", "z"`` (then ``"a0"...``) and RGB's last axis ``"c"``."""
    n_lead = ndim - 2 - int(rgb)
    names = ["t", "z"][-n_lead:] if n_lead <= 2 else [f"a{i}" for i in range(n_lead)]
    names = names if n_lead else []
    return (*names, "y", "x", *(("c",) if rgb else ()))
