"""Images in and out with their geometry and provenance: TIFF (OME-TIFF and ImageJ in,
OME-TIFF out), PNG (in) and OME-Zarr (NGFF 0.4 and 0.5, in and out, lazily).

An image is read into an :class:`Image`: the array (numpy, or a dask array for OME-Zarr
and ``lazy=True``), its :class:`Geometry` (axis names, pixel size, translate and units
per axis, NGFF conventions: index ``i`` of an axis lies at ``scale * i + translate``,
pixel centres) and where it came from. :func:`write_images` writes results beside each
other (the restored image and its parameter maps) in one pass over a lazy graph, each
with its geometry, so they overlay exactly in physical coordinates, and the provenance in
the file's own metadata: OME-Zarr ``attrs["pkn"]``, OME-TIFF a ``MapAnnotation``
(``pkn:provenance`` holds the whole record as JSON).

Outputs are written to a ``.part`` name first and renamed when complete; an existing
output is refused (``FileExistsError``) unless ``overwrite=True``. Inputs are only read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Geometry",
    "Image",
    "Output",
    "map_geometry",
    "read_image",
    "read_provenance",
    "write_images",
]

# NGFF (UDUNITS-2) unit names <- the symbols OME-TIFF and ImageJ use
_UNIT_IN = {
    "å": "angstrom",
    "angstrom": "angstrom",
    "pm": "picometer",
    "nm": "nanometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "um": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "micrometer": "micrometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "s": "second",
    "sec": "second",
    "ms": "millisecond",
    "µs": "microsecond",
    "us": "microsecond",
    "ns": "nanosecond",
    "min": "minute",
    "h": "hour",
}
_UNIT_NAMES = {
    *_UNIT_IN.values(),
    "nanometer",
    "millimeter",
    "centimeter",
    "meter",
    "picometer",
    "second",
    "millisecond",
    "microsecond",
    "nanosecond",
    "minute",
    "hour",
    "day",
}
# NGFF name -> OME symbol
_UNIT_OUT = {
    "angstrom": "Å",
    "picometer": "pm",
    "nanometer": "nm",
    "micrometer": "µm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "second": "s",
    "millisecond": "ms",
    "microsecond": "µs",
    "nanosecond": "ns",
    "minute": "min",
    "hour": "h",
}
_CM = {"nanometer": 1e-7, "micrometer": 1e-4, "millimeter": 0.1, "centimeter": 1.0, "meter": 100.0}
_LETTER = {"T": "t", "Z": "z", "C": "c", "S": "c", "Y": "y", "X": "x"}
_TYPE = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_SPATIAL = ("z", "y", "x")


def _unit(u) -> str | None:
    """An NGFF unit name for a unit string of OME, ImageJ or NGFF, or None."""
    if u is None:
        return None
    s = str(u).strip()
    if s in _UNIT_NAMES:
        return s
    return _UNIT_IN.get(s.lower()) or _UNIT_IN.get(s)


@dataclass(frozen=True)
class Geometry:
    """Where an array's pixels lie: per axis a name (NGFF: ``"t"``, ``"c"``, ``"z"``,
    ``"y"``, ``"x"``, or another lower-case name), ``scale`` (pixel size), ``translate``
    (position of index 0) and ``unit`` (an NGFF unit name, or None)."""

    axes: tuple[str, ...]
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[str | None, ...]

    @classmethod
    def default(cls, axes) -> Geometry:
        n = len(axes)
        return cls(tuple(axes), (1.0,) * n, (0.0,) * n, (None,) * n)

    @property
    def channel_axis(self) -> int | None:
        return self.axes.index("c") if "c" in self.axes else None

    def derived(self, factors: dict, offsets: dict) -> Geometry:
        """The geometry of an array whose index ``i`` along axis ``a`` lands on this
        array's ``factors[a] * i + offsets[a]`` (other axes unchanged)."""
        sc, tr = list(self.scale), list(self.translate)
        for a, f in factors.items():
            k = self.axes.index(a)
            tr[k] = tr[k] + sc[k] * offsets[a]
            sc[k] = sc[k] * f
        return Geometry(self.axes, tuple(sc), tuple(tr), self.units)

    def take(self, order) -> Geometry:
        """The axes in ``order`` (indices)."""
        return Geometry(
            tuple(self.axes[i] for i in order),
            tuple(self.scale[i] for i in order),
            tuple(self.translate[i] for i in order),
            tuple(self.units[i] for i in order),
        )

    def as_dict(self) -> dict:
        return {
            "axes": list(self.axes),
            "scale": list(self.scale),
            "translate": list(self.translate),
            "units": list(self.units),
        }


def map_geometry(image: Geometry, map_scale: float) -> Geometry:
    """The geometry of parameter maps computed at ``1 / map_scale`` of the image's
    resolution: map pixel ``(i, j)`` covers image pixels ``[s*i, s*i + s)``, so its centre
    is at image index ``s*i + (s - 1) / 2`` (the ``align_corners=False`` grid)."""
    s = float(map_scale)
    return image.derived({"y": s, "x": s}, {"y": 0.5 * s - 0.5, "x": 0.5 * s - 0.5})


@dataclass
class Image:
    """An image read by :func:`read_image`."""

    data: object  # numpy.ndarray or dask.array.Array
    geometry: Geometry
    path: Path
    format: str  # "tiff", "png" or "ome-zarr"
    rgb: bool = False
    ngff_version: str | None = None
    provenance: dict = field(default_factory=dict)

    @property
    def channel_axis(self) -> int | None:
        return self.geometry.channel_axis


def read_image(path, *, lazy: bool | None = None) -> Image:
    """Read an image file or store with its geometry.

    Parameters
    ----------
    path : str or Path
        A TIFF (``.tif``/``.tiff``; OME-TIFF and ImageJ metadata read), a PNG, or an
        OME-Zarr store (``.zarr`` folder: NGFF 0.4 or 0.5 multiscales, the first,
        full-resolution level; a plain zarr array is read without geometry).
    lazy : bool, optional
        Return a dask array. Default: lazy for OME-Zarr (read chunk by chunk when
        computed), numpy for TIFF and PNG. ``lazy=True``: a TIFF is read page by page
        when computed (tifffile's zarr store); a PNG is read and wrapped in one chunk.

    Returns
    -------
    Image

    Raises
    ------
    ValueError
        The file cannot be read as an image; the message names the file.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.ome.tif"
    >>> g = Geometry(("y", "x"), (0.5, 0.5), (0.0, 0.0), ("micrometer",) * 2)
    >>> write_images([Output(p, np.zeros((4, 4), np.float32), g)])
    >>> read_image(p).geometry.scale
    (0.5, 0.5)
    """
    p = Path(path)
    low = p.name.lower()
    if not p.exists():
        raise ValueError(f"{p}: no such file or folder")
    try:
        if low.endswith(".zarr") or (p.is_dir() and (p / "zarr.json").exists()):
            return _read_zarr(p, True if lazy is None else lazy)
        if low.endswith(".png"):
            return _read_png(p, bool(lazy))
        if low.endswith((".tif", ".tiff")):
            return _read_tiff(p, bool(lazy))
    except ValueError as e:
        if str(p) in str(e):
            raise
        raise ValueError(f"cannot read {p}: {e}") from e
    except Exception as e:  # corrupt file, wrong format, ...
        raise ValueError(f"cannot read {p}: {type(e).__name__}: {e}") from e
    raise ValueError(f"cannot read {p}: not a TIFF, PNG or OME-Zarr (.zarr) input")


def _lazy(a):
    import dask.array as da

    return a if isinstance(a, da.Array) else da.from_array(a, chunks=_plane_chunks(a.shape))


def _plane_chunks(shape, rgb_last: bool = False) -> tuple[int, ...]:
    """One chunk per plane (the last two axes; three for contiguous RGB)."""
    k = 3 if rgb_last else 2
    return (1,) * (len(shape) - k) + tuple(shape[-k:])


def _read_png(p: Path, lazy: bool) -> Image:
    from skimage import io

    a = np.asarray(io.imread(p))
    rgb = a.ndim == 3 and a.shape[-1] in (3, 4)
    if a.ndim not in (2, 3) or (a.ndim == 3 and not rgb):
        raise ValueError(f"unexpected PNG shape {a.shape}")
    axes = ("y", "x", "c") if rgb else ("y", "x")
    return Image(_lazy(a) if lazy else a, Geometry.default(axes), p, "png", rgb=rgb)


def _read_tiff(p: Path, lazy: bool) -> Image:
    import tifffile

    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        letters = series.axes
        a = _tiff_lazy(p) if lazy else series.asarray()
        axes = _tiff_axes(letters)
        n = len(axes)
        scale, trans, units = [1.0] * n, [0.0] * n, [None] * n
        if tif.is_ome:
            _ome_geometry(tifffile.xml2dict(tif.ome_metadata), axes, scale, trans, units)
            prov = _ome_provenance(tif.ome_metadata)
        else:
            prov = {}
            if tif.is_imagej:
                _imagej_geometry(tif.imagej_metadata or {}, axes, scale, trans, units)
            _resolution_geometry(series.pages[0], axes, scale, units, tif.is_imagej)
        rgb = "S" in letters and letters.endswith("S") and a.shape[-1] in (3, 4)
    g = Geometry(axes, tuple(scale), tuple(trans), tuple(units))
    return Image(a, g, p, "tiff", rgb=rgb, provenance=prov)


def _tiff_lazy(p: Path):
    """The first series of TIFF ``p`` as a dask array read page by page when computed
    (tifffile's zarr store, which keeps its own handle on the file): never whole in
    memory."""
    import dask.array as da
    import tifffile
    import zarr

    z = zarr.open(tifffile.imread(p, aszarr=True, series=0), mode="r")
    if isinstance(z, zarr.Group):  # a pyramid: the full-resolution level
        z = z[sorted(z.array_keys())[0]]
    return da.from_zarr(z)


def _tiff_axes(letters: str) -> tuple[str, ...]:
    out = []
    for ch in letters:
        name = _LETTER.get(ch, ch.lower())
        if name == "c" and "c" in out:  # both C and S: the samples are another axis
            name = "s"
        while name in out:  # several Q (other) axes: q, q1, q2, ...
            name = f"{name.rstrip('0123456789')}{len(out)}"
        out.append(name)
    return tuple(out)


def _set(axes, name, arr, value):
    if name in axes and value is not None:
        arr[axes.index(name)] = value


def _ome_geometry(d: dict, axes, scale, trans, units) -> None:
    img = d.get("OME", {}).get("Image", {})
    px = (img[0] if isinstance(img, list) else img).get("Pixels", {})
    for a in ("x", "y", "z"):
        A = a.upper()
        if f"PhysicalSize{A}" in px:
            _set(axes, a, scale, float(px[f"PhysicalSize{A}"]))
            _set(axes, a, units, _unit(px.get(f"PhysicalSize{A}Unit", "µm")))
    if "TimeIncrement" in px:
        _set(axes, "t", scale, float(px["TimeIncrement"]))
        _set(axes, "t", units, _unit(px.get("TimeIncrementUnit", "s")))
    plane = px.get("Plane")
    plane = plane[0] if isinstance(plane, list) else plane
    if isinstance(plane, dict):
        for a in ("x", "y", "z"):
            A = a.upper()
            if f"Position{A}" in plane:
                _set(axes, a, trans, float(plane[f"Position{A}"]))


def _imagej_geometry(md: dict, axes, scale, trans, units) -> None:
    unit = _unit(md.get("unit"))
    for a in ("x", "y", "z"):
        _set(axes, a, units, unit)
    if "spacing" in md:
        _set(axes, "z", scale, float(md["spacing"]))
    if "finterval" in md:
        _set(axes, "t", scale, float(md["finterval"]))
        _set(axes, "t", units, "second")
    for a in ("x", "y", "z"):
        if f"{a}origin" in md:  # ImageJ: the origin in pixels, index 0 at -origin
            k = axes.index(a) if a in axes else None
            if k is not None:
                trans[k] = -float(md[f"{a}origin"]) * scale[k]


def _resolution_geometry(page, axes, scale, units, imagej: bool) -> None:
    """X/YResolution (pixels per unit): ImageJ's unit, centimetre or inch."""
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return
    ru = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    for a, t in (("x", "XResolution"), ("y", "YResolution")):
        num, den = tags[t].value
        if not (num and den) or a not in axes:
            continue
        px = den / num  # units per pixel
        k = axes.index(a)
        if imagej:
            if (num, den) != (1, 1):
                scale[k] = px
        elif ru == 3:  # centimetre
            scale[k], units[k] = px * 1e4, "micrometer"
        elif ru == 2 and (num, den) not in ((72, 1), (96, 1), (1, 1)):  # inch, not a default
            scale[k], units[k] = px * 25400.0, "micrometer"


def _ome_provenance(xml: str) -> dict:
    import tifffile

    sa = tifffile.xml2dict(xml).get("OME", {}).get("StructuredAnnotations", {})
    maps = sa.get("MapAnnotation", [])
    for m in maps if isinstance(maps, list) else [maps]:
        pairs = m.get("Value", {}).get("M", [])
        for kv in pairs if isinstance(pairs, list) else [pairs]:
            if kv.get("K") == "pkn:provenance":
                try:
                    return json.loads(kv.get("value", "{}"))
                except json.JSONDecodeError:
                    return {}
    return {}


def _read_zarr(p: Path, lazy: bool) -> Image:
    import dask.array as da
    import zarr

    node = zarr.open(str(p), mode="r")
    if isinstance(node, zarr.Array):
        axes = _default_axes(node.ndim)
        a = da.from_zarr(node)
        return Image(
            a if lazy else a.compute(), Geometry.default(axes), p, "ome-zarr", ngff_version=None
        )
    attrs = dict(node.attrs)
    ome = attrs.get("ome", attrs)
    version = ome.get("version")
    if "multiscales" not in ome and "bioformats2raw.layout" in ome and "0" in node:
        node, sub = node["0"], zarr.open(str(p / "0"), mode="r")
        attrs = dict(sub.attrs)
        ome = attrs.get("ome", attrs)
    ms = ome.get("multiscales")
    if not ms:
        raise ValueError("no OME-Zarr image in it (a zarr group without 'multiscales')")
    ms = ms[0]
    version = ms.get("version", version)
    ds = ms["datasets"][0]
    arr = node[ds["path"]]
    n = arr.ndim
    axes_md = ms.get("axes")
    if axes_md is None:
        axes = _default_axes(n)
        units = (None,) * n
    else:
        axes = tuple(str(a["name"] if isinstance(a, dict) else a).lower() for a in axes_md)
        units = tuple(_unit(a.get("unit")) if isinstance(a, dict) else None for a in axes_md)
    if len(axes) != n:
        raise ValueError(f"{len(axes)} axes in the metadata for a {n}-D array")
    scale, trans = np.ones(n), np.zeros(n)
    for ct in (
        ds.get("coordinateTransformations") or [],
        ms.get("coordinateTransformations") or [],
    ):
        for t in ct:
            if t.get("type") == "scale":
                v = np.asarray(t["scale"], float)
                scale, trans = scale * v, trans * v
            elif t.get("type") == "translation":
                trans = trans + np.asarray(t["translation"], float)
    a = da.from_zarr(arr)
    g = Geometry(axes, tuple(map(float, scale)), tuple(map(float, trans)), units)
    prov = attrs.get("pkn") if isinstance(attrs.get("pkn"), dict) else {}
    return Image(
        a if lazy else a.compute(), g, p, "ome-zarr", ngff_version=version, provenance=prov
    )


def _default_axes(n: int) -> tuple[str, ...]:
    if not 2 <= n <= 5:
        raise ValueError(f"a plain zarr array of {n} dimensions: 2 to 5 expected (t, c, z, y, x)")
    return ("t", "c", "z", "y", "x")[-n:]


def read_provenance(path) -> dict:
    """The provenance pkn wrote into an output (OME-Zarr ``attrs["pkn"]`` or the OME-TIFF
    ``pkn:provenance`` annotation); ``{}`` when there is none.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.ome.zarr"
    >>> g = Geometry.default(("y", "x"))
    >>> write_images([Output(p, np.zeros((4, 4), np.float32), g, {"model": "nlm"})])
    >>> read_provenance(p)["model"]
    'nlm'
    """
    return read_image(path, lazy=True).provenance


# ------------------------------------------------------------------------------- writing
@dataclass
class Output:
    """One array to write: ``path`` (``.ome.zarr``/``.zarr``: OME-Zarr, ``.tif``/``.tiff``:
    OME-TIFF), ``data`` (numpy or dask), its :class:`Geometry`, the provenance record,
    whether it is RGB (TIFF photometric) and, for OME-Zarr, the NGFF version."""

    path: Path
    data: object
    geometry: Geometry
    provenance: dict = field(default_factory=dict)
    rgb: bool = False
    ngff_version: str = "0.4"

    @property
    def is_zarr(self) -> bool:
        return Path(self.path).name.lower().endswith(".zarr")


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def _is_dask(a) -> bool:
    return type(a).__module__.startswith("dask")


def write_images(outputs, *, overwrite: bool = False) -> None:
    """Write arrays with their geometry and provenance; lazy (dask) arrays are computed
    once, together (a shared graph, e.g. a restored image and its maps, runs once),
    chunk by chunk into the outputs, never whole in memory.

    Parameters
    ----------
    outputs : list of Output
    overwrite : bool
        Replace existing outputs; otherwise an existing path raises ``FileExistsError``
        before anything is written.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> g = Geometry(("z", "y", "x"), (2.0, 0.5, 0.5), (0.0,) * 3, ("micrometer",) * 3)
    >>> write_images([Output(d / "s.ome.zarr", np.ones((2, 8, 8), np.float32), g)])
    >>> read_image(d / "s.ome.zarr").geometry.scale
    (2.0, 0.5, 0.5)
    """
    outputs = [o if isinstance(o, Output) else Output(*o) for o in outputs]
    for o in outputs:
        o.path = Path(o.path)
        if not o.is_zarr and not o.path.name.lower().endswith((".tif", ".tiff")):
            raise ValueError(f"output {o.path}: the name must end in .tif, .tiff or .zarr")
        if o.path.exists() and not overwrite:
            raise FileExistsError(f"{o.path} exists; pass overwrite=True to replace it")
        if np.ndim(o.data) != len(o.geometry.axes):
            raise ValueError(
                f"output {o.path}: {np.ndim(o.data)}-D data for {len(o.geometry.axes)} axes"
            )
    zarrs = [o for o in outputs if o.is_zarr]
    tiffs = [o for o in outputs if not o.is_zarr]
    lazy_tiffs = [o for o in tiffs if _is_dask(o.data)]
    tmp = None
    try:
        # lazy TIFF outputs go through a temporary zarr store so that one compute writes all
        if lazy_tiffs:
            tmp = Path(tempfile.mkdtemp(prefix=".pkn-", dir=lazy_tiffs[0].path.parent))
        staged, sources, targets = [], [], []
        for i, o in enumerate(zarrs + lazy_tiffs):
            if o.is_zarr:
                part = o.path.with_name(o.path.name + ".part")
                _remove(part)
                arr, data = _create_ome_zarr(part, o)
            else:
                part = None
                import zarr

                data = o.data
                arr = zarr.create_array(
                    str(tmp / f"{i}.zarr"),
                    shape=data.shape,
                    dtype=data.dtype,
                    chunks=_chunks(data),
                    zarr_format=3,
                )
            staged.append((o, part, arr))
            if _is_dask(data):
                sources.append(data.rechunk(arr.chunks))
                targets.append(arr)
            else:
                arr[...] = np.asarray(data)
        if sources:
            import dask.array as da

            da.store(sources, targets, lock=False, compute=True)
        for o, part, arr in staged:
            if o.is_zarr:
                _replace(part, o.path)
            else:
                _write_tiff(o, arr)
        for o in tiffs:
            if not _is_dask(o.data):
                _write_tiff(o, np.asarray(o.data))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for o in zarrs:
            _remove(o.path.with_name(o.path.name + ".part"))


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def _replace(part: Path, final: Path) -> None:
    if final.exists():
        _remove(final)
    os.replace(part, final)


def _chunks(data) -> tuple[int, ...]:
    """The dask chunk size (regular), or a plane (y, x capped at 1024) for numpy."""
    if _is_dask(data):
        return tuple(int(c) for c in data.chunksize)
    shape = data.shape
    if len(shape) < 2:
        return tuple(shape)
    return (1,) * (len(shape) - 2) + tuple(min(int(s), 1024) for s in shape[-2:])


def _ngff_order(axes: tuple[str, ...]) -> list[int]:
    """Axis order NGFF asks for: time, channel (or another axis), then space (z, y, x)."""
    rank = {"t": 0, "c": 1, "z": 2, "y": 3, "x": 4}
    return sorted(range(len(axes)), key=lambda i: (rank.get(axes[i], 1), i))


def _create_ome_zarr(path: Path, o: Output):
    """Create the group, the full-resolution array ``0`` and the NGFF metadata; return
    ``(zarr array, data in NGFF axis order)``."""
    import warnings

    import zarr
    from ome_zarr.format import FormatV04, FormatV05

    with warnings.catch_warnings():  # its deprecated Scaler default, built at import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscales_metadata

    version = str(o.ngff_version or "0.4")
    if version not in ("0.4", "0.5"):
        raise ValueError(f"output {o.path}: NGFF version must be '0.4' or '0.5', got {version!r}")
    g = o.geometry
    order = _ngff_order(g.axes)
    data = o.data.transpose(order) if order != list(range(len(order))) else o.data
    g = g.take(order)
    if not 2 <= len(g.axes) <= 5:
        raise ValueError(f"output {o.path}: OME-Zarr takes 2 to 5 axes, got {g.axes}")
    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    kw = {} if version == "0.4" else {"dimension_names": list(g.axes)}
    arr = group.create_array(
        "0", shape=data.shape, dtype=data.dtype, chunks=_chunks(data), fill_value=0, **kw
    )
    axes = []
    for a, u in zip(g.axes, g.units, strict=True):
        d = {"name": a}
        if a in _TYPE:
            d["type"] = _TYPE[a]
        if u is not None and a != "c":
            d["unit"] = u
        axes.append(d)
    ct = [{"type": "scale", "scale": [float(s) for s in g.scale]}]
    if any(t != 0 for t in g.translate):
        ct.append({"type": "translation", "translation": [float(t) for t in g.translate]})
    write_multiscales_metadata(
        group,
        [{"path": "0", "coordinateTransformations": ct}],
        fmt=fmt,
        axes=axes,
        name=o.path.name,
    )
    if o.provenance:
        group.attrs["pkn"] = _jsonable(o.provenance)
    return arr, data


def _write_tiff(o: Output, data) -> None:
    """OME-TIFF: axes, PhysicalSize, TimeIncrement, Plane positions (the translate),
    X/YResolution, provenance as a MapAnnotation. ``data`` is numpy or a zarr array
    (written page by page)."""
    import tifffile

    g = o.geometry
    letters = _tiff_letters(g.axes, o.rgb, data.shape)
    md: dict = {"axes": letters, "Name": o.path.name}
    res = {}
    for a in ("x", "y", "z"):
        if a in g.axes:
            k = g.axes.index(a)
            md[f"PhysicalSize{a.upper()}"] = float(g.scale[k])
            if g.units[k] in _UNIT_OUT:
                md[f"PhysicalSize{a.upper()}Unit"] = _UNIT_OUT[g.units[k]]
    if "t" in g.axes:
        k = g.axes.index("t")
        md["TimeIncrement"] = float(g.scale[k])
        if g.units[k] in _UNIT_OUT:
            md["TimeIncrementUnit"] = _UNIT_OUT[g.units[k]]
    lead = data.shape[: len(data.shape) - (3 if letters.endswith("S") else 2)]
    if any(t != 0 for t in g.translate) and set(letters[: len(lead)]) <= set("TZC"):
        n = int(np.prod(lead, dtype=np.int64))
        plane: dict = {}
        for a in ("x", "y", "z"):
            if a not in g.axes:
                continue
            k = g.axes.index(a)
            if a == "z":
                zi = np.unravel_index(np.arange(n), lead)[k] if lead else np.zeros(n, int)
                pos = [float(g.translate[k] + g.scale[k] * i) for i in zi]
            else:
                pos = [float(g.translate[k])] * n
            plane[f"Position{a.upper()}"] = pos
            if g.units[k] in _UNIT_OUT:
                plane[f"Position{a.upper()}Unit"] = [_UNIT_OUT[g.units[k]]] * n
        md["Plane"] = plane
    ux = g.units[g.axes.index("x")] if "x" in g.axes else None
    uy = g.units[g.axes.index("y")] if "y" in g.axes else None
    if ux in _CM and uy in _CM:  # pixels per centimetre, for readers without OME
        sx, sy = g.scale[g.axes.index("x")] * _CM[ux], g.scale[g.axes.index("y")] * _CM[uy]
        if sx > 0 and sy > 0:
            res = {"resolution": (1.0 / sx, 1.0 / sy), "resolutionunit": "CENTIMETER"}
    if o.provenance:
        prov = _jsonable(o.provenance)
        ann = {"Namespace": "napari-pkn/provenance", "pkn:provenance": json.dumps(prov)}
        for k in ("model", "model_sha256", "kernel", "task", "strength", "pkn_version"):
            if k in prov:
                ann[f"pkn:{k}"] = str(prov[k])
        if isinstance(prov.get("noise"), dict):
            ann["pkn:noise"] = str(prov["noise"].get("model"))
        if isinstance(prov.get("input"), dict):
            ann["pkn:input"] = str(prov["input"].get("path"))
        md["MapAnnotation"] = ann
    photometric = "rgb" if letters.endswith("S") and data.shape[-1] == 3 else "minisblack"
    kw = dict(photometric=photometric, metadata=md, ome=True, **res)
    big = data.size * np.dtype(data.dtype).itemsize > 2**32 - 2**25
    part = o.path.with_name(o.path.name + ".part")

    def write(**kw):
        if isinstance(data, np.ndarray):
            tifffile.imwrite(part, data, bigtiff=big, **kw)
        else:
            k = len(lead)
            pages = (np.asarray(data[idx]) for idx in np.ndindex(*data.shape[:k]))
            tifffile.imwrite(part, pages, shape=data.shape, dtype=data.dtype, bigtiff=big, **kw)

    try:
        try:
            write(**kw)
        except tifffile.OmeXmlError:  # axes OME cannot describe: a shaped TIFF (JSON kept)
            write(photometric=photometric, metadata={"axes": letters})
        _replace(part, o.path)
    finally:
        if part.exists():
            part.unlink()


def _tiff_letters(axes, rgb: bool, shape) -> str:
    out = []
    for i, a in enumerate(axes):
        if a == "c":
            last = i == len(axes) - 1
            out.append("S" if last and (rgb or shape[i] in (3, 4)) else "C")
        elif a in ("t", "z", "y", "x"):
            out.append(a.upper())
        else:
            out.append("Q")
    return "".join(out)
