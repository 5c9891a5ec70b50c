"""Scripting API (:func:`restore_layer`) and the engine it shares with the widget.

A :class:`Job` restores an Image layer's data plane by plane (leading axes such as t and
z one plane at a time) with :class:`pkn.Restorer`: one network pass per plane, then the
full-resolution filter; a stack gets one noise model pooled over its planes
(:mod:`napari_pkn._stacks`), and a dask-backed layer is previewed one plane at a time.
It keeps the restorers, so a new ``strength`` re-runs only the filter
(:meth:`Job.render`) and the kernel probe reads the weights that were used. For
denoising it also keeps the QC map (the residual in units of the noise std) and its
whiteness, and ``strength="auto"`` chooses one strength for the stack by SURE on one
plane. torch and pkn's submodules are imported inside functions only.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._layers import put_layers, readable, require_image, result_specs

__all__ = ["Job", "Options", "Source", "catalogue", "restore_layer", "tasks"]

_NATIVE = (np.uint8, np.uint16, np.float32, np.float64)
MAX_FACTOR = 16.0
MAX_OUTPUT_PIXELS = 1 << 27  # per plane, after upsampling (128 megapixels)
AUTO_TASK = "denoise"  # the task Restorer.auto_strength (SURE) works for


@dataclass
class Source:
    """An Image layer's pixels as 2-D planes, never modified: ``data`` is level 0 (numpy
    or dask), ``rgb`` puts channels last (RGBA loses its alpha), ``lead`` is the shape of
    the leading (stack) axes such as ``(t, z)``, ``()`` for one plane."""

    name: str
    data: Any
    rgb: bool
    lead: tuple[int, ...]

    @property
    def spatial(self) -> tuple[int, int]:
        """``(H, W)`` of every plane."""
        return tuple(int(v) for v in self.data.shape[len(self.lead) :][:2])

    @property
    def n_planes(self) -> int:
        return math.prod(self.lead)

    def plane(self, index: tuple[int, ...]) -> np.ndarray:
        """One plane as a numpy array of a dtype :mod:`pkn` accepts."""
        a = np.asarray(self.data[tuple(index)])
        if self.rgb:
            a = a[..., :3]
        if a.dtype in _NATIVE:
            return a
        wide = a.dtype.kind in "iu" and a.dtype.itemsize > 2
        return a.astype(np.float64 if wide else np.float32)


def source_from_layer(layer) -> Source:
    """Check an Image layer and describe its planes (TypeError/ValueError saying why not)."""
    require_image(layer)
    data = layer.data[0] if layer.multiscale else layer.data
    if np.dtype(data.dtype).kind not in "iuf":
        raise TypeError(
            f"layer {layer.name!r} has {data.dtype} pixels; PKN needs intensities "
            "(integer or float). Convert the layer or choose another one."
        )
    n_lead = data.ndim - (3 if layer.rgb else 2)
    src = Source(layer.name, data, bool(layer.rgb), tuple(int(s) for s in data.shape[:n_lead]))
    h, w = src.spatial
    if min(h, w) < 2:
        raise ValueError(
            f"layer {layer.name!r} has {h}x{w}-pixel planes; PKN needs at least 2x2 pixels. "
            "Choose a larger image."
        )
    return src


def _plain(v):
    """``v`` as JSON-friendly Python values (numpy scalars and arrays become numbers and
    lists), for a layer's provenance."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v


def psf_from_layer(layer, image_shape=None) -> tuple[np.ndarray, dict]:
    """The PSF a deconvolution uses, imported from an Image layer of a bead (2-D, or a 3-D
    z-stack whose in-focus plane is taken) by :func:`pkn.psf.import_psf` (background
    removed, centred, cropped, normalised to sum 1) and checked by
    :func:`pkn.psf.check_psf` against the planes to deblur (``image_shape``).

    Returns
    -------
    (numpy.ndarray, dict)
        The PSF (2-D float32, odd square, sum 1) and its provenance: ``psf_layer`` (the
        layer's name) and ``psf`` (plane, background, shift, source shape, import info).

    Raises
    ------
    TypeError, ValueError
        Not an Image layer, or not usable as a PSF (the message says why and what to do).

    Examples
    --------
    >>> from napari.layers import Image
    >>> yy, xx = np.mgrid[-7:8, -7:8]
    >>> bead = Image(100 + 900 * np.exp(-(yy**2 + xx**2) / 3.0), name="bead")
    >>> psf, info = psf_from_layer(bead)
    >>> psf.dtype, round(float(psf.sum()), 4), info["psf_layer"]
    (dtype('float32'), 1.0, 'bead')
    """
    from pkn.psf import check_psf, import_psf

    require_image(layer)
    if layer.rgb:
        raise ValueError(
            f"PSF layer {layer.name!r} is an RGB image; a PSF is one gray 2-D image or a "
            "3-D z-stack of a bead. Choose another PSF layer or use a Gaussian blur sigma."
        )
    data = layer.data[0] if layer.multiscale else layer.data
    if np.dtype(data.dtype).kind not in "iuf":
        raise TypeError(
            f"PSF layer {layer.name!r} has {data.dtype} pixels; a PSF needs intensities."
        )
    if data.ndim not in (2, 3):
        raise ValueError(
            f"PSF layer {layer.name!r} has shape {tuple(int(n) for n in data.shape)}; a PSF "
            "is a 2-D image or a 3-D z-stack of a bead."
        )
    name = f"PSF layer {layer.name!r}"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            psf = import_psf(np.array(data, dtype=np.float32))
        array = check_psf(psf.array, image_shape=image_shape, name=name)
    except ValueError as e:
        text = readable(str(e))
        raise ValueError(text if name in text else f"{name}: {text}") from None
    record = {
        "plane": psf.plane,
        "background": psf.background,
        "shift": psf.shift,
        "source_shape": psf.source_shape,
        "shape": array.shape,
        "info": psf.info,
    }
    notes = [readable(str(w.message)) for w in caught]
    if notes:
        record["warnings"] = notes
    return np.asarray(array, np.float32), {"psf_layer": layer.name, "psf": _plain(record)}


def _real(v) -> bool:
    """Whether ``v`` is a real number (Python or numpy; not a bool)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_)


def _say(v) -> str:
    """A value for a message: numbers plainly (``-50``, never ``np.int64(-50)``), anything
    else as its repr."""
    if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool):
        from ._layers import number

        return number(v)
    return repr(v)


def catalogue():
    """What the plugin offers: :func:`pkn.catalogue` (tasks with their default kernel, the
    kernel descriptors, the shipped and session-added models)."""
    import pkn

    return pkn.catalogue()


def tasks() -> list[str]:
    """All tasks pkn knows, shipped model or not."""
    return list(catalogue().tasks)


@dataclass
class Options:
    """What to run: as :func:`restore_layer`'s arguments (``model``: a catalogue name)."""

    task: str = "denoise"
    model: str | None = None
    noise: Any = None
    blur: Any = None
    factor: float | None = None
    strength: float | str = 1.0  # or "auto" (denoising): SURE on one plane
    extra: dict | None = None  # added to the provenance (e.g. the PSF layer's name)
    per_plane: bool = False  # stacks: estimate the noise of every plane on its own


def resolve(options: Options, source: Source):
    """The model for ``options`` (a :class:`pkn._catalogue.ModelInfo`), after checks that
    say what to change (ValueError)."""
    o, cat = options, catalogue()
    known = list(cat.tasks)
    if o.task not in known:
        raise ValueError(f"task must be one of {known}, got {o.task!r}.")
    entries = cat.models_for(o.task)
    if not entries:
        have = sorted({e.task for e in cat.models})
        raise ValueError(f"no {o.task} model ships with this napari-pkn; available: {have}.")
    default = cat.tasks[o.task]  # the task's default kernel, else the first model
    entry = next((e for e in entries if default in (e.name, e.kernel)), entries[0])
    if o.model is not None:
        entry = next((e for e in entries if o.model in (e.name, e.kernel)), None)
        if entry is None:
            names = [e.name for e in entries]
            raise ValueError(f"no {o.task} model {o.model!r}; choose one of {names}.")
    needs = cat.kernels[entry.kernel].inputs
    if "blur" in needs and o.blur is None:
        raise ValueError("deblurring needs the blur: a Gaussian sigma (px) or a PSF layer.")
    if "size" in needs:
        f = o.factor
        if not (_real(f) and math.isfinite(f) and 1 < f <= MAX_FACTOR):
            raise ValueError(
                f"the upsampling factor must be in (1, {MAX_FACTOR:g}], got {_say(f)}."
            )
        h, w = source.spatial
        if round(h * f) * round(w * f) > MAX_OUTPUT_PIXELS:
            raise ValueError(
                f"upsampling {h}x{w} by {f:g} gives more than {MAX_OUTPUT_PIXELS >> 20} "
                "megapixels per plane; choose a smaller factor or crop the image."
            )
    s = o.strength
    if isinstance(s, str) and s == "auto":
        if entry.task != AUTO_TASK:
            raise ValueError(
                f"strength='auto' chooses the strength for {AUTO_TASK} only (SURE needs a "
                f"noise model); give {o.task} a number."
            )
    elif not (_real(s) and math.isfinite(s) and s >= 0):
        raise ValueError(f"strength must be a finite number >= 0 or 'auto', got {_say(s)}.")
    return entry


def estimate_noise(plane: np.ndarray, rgb: bool) -> dict:
    """The noise :class:`pkn.Restorer` would estimate for ``plane`` (its description), so
    the widget shows what a run will use."""
    from pkn.restoration import estimate_noise

    return estimate_noise(plane, -1 if rgb else None)


class Job:
    """A restoration of one layer's data, plane by plane, kept in memory: ``image`` (the
    restored stack), ``maps`` (name -> ``lead + (h, w)``, ``+ (C,)`` for RGB), ``qc``
    (denoising: ``(input - result) / noise std``, the result's shape; else None; QC and
    maps float16: :data:`napari_pkn._stacks.MAP_DTYPE`) and ``restorers`` (plane index
    -> :class:`pkn.Restorer` with its cached maps, all sharing one network).

    A stack gets one noise model (:func:`napari_pkn._stacks.stack_noise`: pooled over its
    planes, estimated once, or ``noise`` when given) unless ``options.per_plane``.
    ``preview`` (a plane index of a stack) restores only that plane: the arrays then have
    one plane (``(1, ..., 1) + plane``) placed at :attr:`origin`; the layer is never read
    beyond that plane (and the noise sample).

    Memory (float32 input, ``k`` maps), in input bytes: image 1, QC 0.5, maps ``k / 8``,
    cached maps ``k / 4`` (NLM: 2.25x; three maps: 2.6x plus the glyphs), one network.

    ``entry`` is the model (a :class:`pkn._catalogue.ModelInfo`); ``kernel`` is its
    kernel's descriptor (:class:`pkn.kernels.registry.Kernel`), from which the layers take
    their styles and the probe its availability.

    With ``options.strength == "auto"`` the strength is chosen by
    :meth:`pkn.Restorer.auto_strength` on plane ``auto_plane`` (default the first), which
    is restored first, and used for every plane; :attr:`auto` keeps ``(strength, info)``.
    """

    def __init__(
        self,
        source: Source,
        options: Options,
        entry,
        layer_name=None,
        kernel=None,
        auto_plane: tuple | None = None,
        preview: tuple | None = None,
        noise=None,
    ):
        self.source, self.options, self.entry = source, options, entry
        self.kernel = kernel if kernel is not None else catalogue().kernels[entry.kernel]
        self.layer_name = layer_name or source.name
        wants_auto = isinstance(options.strength, str) and options.strength == "auto"
        self.wants_auto = wants_auto
        self.strength = None if wants_auto else float(options.strength)
        self.auto_plane = tuple(auto_plane) if auto_plane is not None else None
        self.auto: tuple[float, dict] | None = None
        self.restorers: dict = {}
        self.infos: dict = {}
        self.image: np.ndarray | None = None
        self.maps: dict[str, np.ndarray] = {}
        self.qc: np.ndarray | None = None
        self.model_record: dict = {}  # the model file's own info (e.g. its adaptation)
        lead = source.lead
        if preview is not None:
            preview = tuple(int(i) for i in preview)
            if len(preview) != len(lead) or not all(
                0 <= i < n for i, n in zip(preview, lead, strict=True)
            ):
                raise ValueError(f"preview must be a plane index of {lead}, got {preview!r}.")
        self.preview = preview if lead else None
        self.origin = self.preview if self.preview is not None else (0,) * len(lead)
        self.noise = noise  # a napari_pkn._stacks.StackNoise once known
        self._net = None  # the one network every plane's Restorer uses

    @property
    def planes(self) -> list[tuple]:
        """The plane indices this job restores (one for a preview)."""
        if self.preview is not None:
            return [self.preview]
        return list(np.ndindex(*self.source.lead))

    @property
    def n_planes(self) -> int:
        return len(self.planes)

    def _local(self, index: tuple) -> tuple:
        """Where plane ``index`` goes in :attr:`image` (0 for a preview's plane)."""
        return tuple(0 for _ in index) if self.preview is not None else tuple(index)

    @property
    def total(self) -> int:
        """Number of progress steps: a network pass and a filter run per plane (and the
        strength search for ``"auto"``)."""
        return 2 * self.n_planes + int(self.wants_auto)

    def run(self):
        """Restore every plane: a generator yielding ``(steps_done, total, message)``."""
        from pkn.restoration import Restorer

        from ._stacks import stack_noise

        src, o, n = self.source, self.options, self.n_planes
        total, done = self.total, 0
        order = self.planes
        if self.strength is None and self.auto_plane in order:  # its plane first
            order.remove(self.auto_plane)
            order.insert(0, self.auto_plane)
        if self.noise is None:
            try:
                self.noise = stack_noise(src, o.noise, bool(o.per_plane))
            except (TypeError, ValueError) as e:
                raise type(e)(readable(f"layer {src.name!r}: {e}")) from None
        for k, idx in enumerate(order):
            where = f"layer {src.name!r}" + (f", plane {idx}" if src.lead else "")
            try:
                r = Restorer(
                    src.plane(idx),
                    o.task,
                    kernel=self.entry.kernel,
                    model=self.entry.ref,
                    noise=self.noise.argument,
                    blur=o.blur,
                    scale=o.factor if "size" in self.kernel.inputs else None,
                    channel_axis=-1 if src.rgb else None,
                    normalisation=self.noise.normalisation,
                )
                if self._net is None:
                    self._net = r.net
                else:  # one network for the stack, not a copy per plane
                    r.net = self._net
                self.restorers[idx] = r
                if not self.model_record:
                    self.model_record = dict(r.model_info.get("info") or {})
                done += 1
                yield done, total, f"plane {k + 1}/{n}: maps predicted"
                if self.strength is None:
                    s, info = r.auto_strength()
                    self.auto = (float(s), {**info, "plane": [int(i) for i in idx]})
                    self.strength = float(s)
                    done += 1
                    yield done, total, f"strength {s:.2f} chosen by SURE on plane {k + 1}"
                self.store(idx, r.render(self.strength))
            except (TypeError, ValueError) as e:
                raise type(e)(readable(f"{where}: {e}")) from None
            done += 1
            yield done, total, f"plane {k + 1}/{n}: filtered"

    def render(self, strength: float, first=None):
        """Re-run only the filter at ``strength``: yields ``(index, Restoration)``."""
        for idx in sorted(self.restorers, key=lambda i: i != first):
            yield idx, self.restorers[idx].render(strength)

    def store(self, index: tuple, res) -> None:
        """Write one plane's :class:`pkn.Restoration` into :attr:`image`, :attr:`maps`
        and :attr:`qc` (in place: layers made from them show the new values)."""
        from ._stacks import MAP_DTYPE, QC_DTYPE

        lead = self.source.lead if self.preview is None else (1,) * len(self.source.lead)
        if self.image is None:
            self.image = np.empty(lead + res.image.shape, res.image.dtype)
            self.maps = {k: np.empty(lead + v.shape, MAP_DTYPE) for k, v in res.maps.items()}
            qc = getattr(res, "qc", None)
            self.qc = None if qc is None else np.empty(lead + qc.shape, QC_DTYPE)
        at = self._local(index)
        self.image[at] = res.image
        for k, v in res.maps.items():
            self.maps[k][at] = v
        if self.qc is not None:
            self.qc[at] = res.qc
        self.infos[index] = res.info

    def probe(self, index: tuple, pixel: tuple[int, int], channel: int = 0):
        """The weights the filter used at ``pixel`` of plane ``index`` (a pkn Probe)."""
        index = tuple(index)
        if index not in self.restorers:
            raise ValueError(
                f"plane {index} is not restored: the preview shows plane {self.preview}."
            )
        return self.restorers[index].probe(pixel, channel, self.strength)

    @property
    def strength_is_auto(self) -> bool:
        """Whether the current strength is the one ``"auto"`` chose."""
        return (
            self.auto is not None
            and self.strength is not None
            and math.isclose(self.strength, self.auto[0], rel_tol=1e-6, abs_tol=1e-6)
        )

    def provenance(self) -> dict:
        """``layer.metadata["pkn"]``: pkn's info plus the input layer and the planes.

        Denoising adds ``whiteness`` (the residual's neighbour correlation; the mean over
        planes for a stack, each plane's in ``whiteness_per_plane``); a strength chosen by
        ``"auto"`` adds ``strength_auto`` (SURE's record, while the strength is still that
        one); an adapted model adds ``adaptation`` (its card, base model and data).
        """
        planes = sorted(self.infos)
        meta = {**self.infos[planes[0]], "strength": self.strength}
        meta.pop("strength_auto", None)
        if self.strength_is_auto:
            meta["strength_auto"] = self.auto[1]
        meta["input_layer"] = self.layer_name
        meta.update(self.options.extra or {})
        if self.source.lead:
            meta["planes"] = len(planes)
            if self.preview is not None:
                meta["preview_plane"] = [int(i) for i in self.preview]
            if self.noise is not None and self.noise.desc:  # one model for the stack
                meta["noise"] = {**self.noise.desc, "planes": self.noise.n_planes}
                if len(self.noise.sampled) < self.noise.n_planes:
                    meta["noise"]["sampled_planes"] = list(self.noise.sampled)
            else:
                meta["noise_per_plane"] = [self.infos[i]["noise"] for i in planes]
            per = [self.infos[i]["whiteness"] for i in planes if "whiteness" in self.infos[i]]
            if per:
                meta["whiteness"] = {
                    k: round(float(np.mean([w[k] for w in per])), 4) for k in per[0]
                }
                meta["whiteness_per_plane"] = per
        adaptation = adaptation_summary(self.model_record, meta.get("model_file"))
        if adaptation:
            meta["adaptation"] = adaptation
        return meta


def adaptation_summary(record: dict, model_file) -> dict:
    """What a layer's provenance says about an adapted model (``{}`` for other models):
    its card, base model, mode, data and training, from the record in the model file."""
    from pathlib import Path

    a = (record or {}).get("adaptation")
    if not a:
        return {}
    card = Path(model_file).with_suffix(".md") if model_file else None
    keys = ("mode", "kernel", "base_model", "data", "noise", "steps", "steps_done", "seed")
    out = {"card": str(card) if card is not None and card.is_file() else None}
    out.update({k: a[k] for k in keys if k in a})
    if "napari" in a:
        out["layers"] = a["napari"].get("layers")
    return out


def restore_layer(viewer, layer, task: str = "denoise", kernel: str | None = None, **options):
    """Restore an Image layer synchronously and add the results to ``viewer``.

    Parameters
    ----------
    viewer : napari.Viewer
    layer : napari.layers.Image or str
        The input (or its name); it is never modified.
    task : str
        One of ``pkn.catalogue().tasks`` (denoise, deblur, upsample).
    kernel : str, optional
        A model of the task (its name or its kernel's; ``pkn.catalogue().models_for(task)``
        lists them); default: the task's default kernel.
    **options
        ``noise`` (None = estimated, a sigma, or ``(a, b)``), ``blur`` (a Gaussian sigma,
        ``(sigma_y, sigma_x, rho)``, a 2-D PSF array, or an Image layer of a bead, 2-D or
        a 3-D z-stack, imported by :func:`pkn.psf.import_psf` and checked: see
        :func:`psf_from_layer`; its provenance goes to ``metadata["pkn"]["psf"]``),
        ``factor`` (upsampling), ``strength`` (default 1; ``"auto"`` for denoising: the
        strength minimising SURE on the first plane, used for every plane and recorded as
        ``strength_auto``), ``per_plane`` (stacks: default False, one noise model
        pooled over the planes; True: each plane's own), ``maps`` (default True: the
        map layers are visible), ``qc`` (default: as ``maps``: the QC layer is visible).

    Returns
    -------
    list of napari.layers.Layer
        The restored image, one layer per parameter map (styled by the kernel's
        descriptor), orientation glyphs for kernels with a covariance (``glyphs``) and,
        for denoising, the QC layer ``"<name> qc"`` (residual / noise std, whiteness in
        its provenance); provenance in each ``metadata["pkn"]``.

    Raises
    ------
    TypeError, ValueError
        Not an Image layer, or settings that cannot work (the message says what to do).
    """
    from napari.layers import Layer

    if isinstance(layer, str):
        if layer not in viewer.layers:
            raise ValueError(f"no layer named {layer!r} in this viewer.")
        layer = viewer.layers[layer]
    show_maps = bool(options.pop("maps", True))
    show_qc = bool(options.pop("qc", show_maps))
    unknown = set(options) - {"noise", "blur", "factor", "strength", "per_plane"}
    if unknown:
        raise TypeError(f"unknown options {sorted(unknown)}; see help(restore_layer).")
    source = source_from_layer(layer)
    extra = None
    if isinstance(options.get("blur"), Layer):
        options["blur"], extra = psf_from_layer(options["blur"], source.spatial)
    opts = Options(task, kernel, extra=extra, **options)
    job = Job(source, opts, resolve(opts, source), layer.name)
    for _ in job.run():
        pass
    return put_layers(viewer, result_specs(layer, job, show_maps, show_qc))
