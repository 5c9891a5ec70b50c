"""OME-TIFF writer and reader for napari image layers, keeping geometry and provenance.

``write_layers`` (npe2 multi-layer writer, File > Save Selected Layers) writes one
OME-TIFF per image layer with the layer's pixel size (``scale``, as OME
``PhysicalSizeX/Y/Z`` in the layer's units, ``pixel`` when it has none), its offset
(``translate``, as OME ``Plane PositionX/Y/Z``) and a JSON record of the layer (name,
scale, translate, units, axis labels, display settings and ``metadata``, which holds
the PKN provenance under ``"pkn"``) in an OME ``MapAnnotation`` of namespace
:data:`NAMESPACE`. ``get_reader`` (npe2 reader) opens those files, or a folder of them,
and restores every one of those fields, so a half-resolution parameter map reopens
exactly over its image. napari's builtin reader would open the pixels only (no scale,
translate or metadata).

Cheap to import: tifffile is imported when a file is written or read.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["NAMESPACE", "get_reader", "read_layers", "write_layers"]

#: The OME MapAnnotation namespace of the layer record (also how the reader knows a file).
NAMESPACE = "napari-pkn/layer"
EXTENSIONS = (".ome.tif", ".ome.tiff")
#: OME UnitsLength symbols for the pint units napari layers carry.
_OME_UNITS = {
    "pixel": "pixel",
    "nanometer": "nm",
    "micrometer": "µm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "angstrom": "Å",
}
_AXES = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}
#: Display settings kept in the record and restored on reading.
_DISPLAY = ("colormap", "contrast_limits", "blending", "opacity", "visible", "gamma")


def _jsonable(value):
    """``value`` as JSON types: numpy scalars/arrays to numbers/lists, the rest as text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "name") and isinstance(value.name, str):  # a colormap
        return value.name
    return str(value)


def _strip_ext(path: str) -> str:
    low = path.lower()
    for ext in (*EXTENSIONS, ".tiff", ".tif"):
        if low.endswith(ext):
            return path[: -len(ext)]
    return path


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", name).strip("._") or "layer"


def _record(data, meta: dict) -> tuple[dict, dict]:
    """The JSON layer record and tifffile's OME metadata for one layer."""
    shape = np.shape(data)
    rgb = bool(meta.get("rgb", False))
    spatial = len(shape) - (1 if rgb else 0)
    if spatial not in _AXES:
        raise ValueError(
            f"layer {meta.get('name')!r}: {spatial}-D data (shape {shape}) cannot be "
            f"written as OME-TIFF; 2-D to 5-D images are accepted."
        )
    axes = _AXES[spatial] + ("S" if rgb else "")
    scale = [float(s) for s in meta.get("scale", [1.0] * spatial)]
    translate = [float(t) for t in meta.get("translate", [0.0] * spatial)]
    units = [str(u) for u in (meta.get("units") or ["pixel"] * spatial)]
    record = {
        "format": 1,
        "name": meta.get("name"),
        "shape": list(shape),
        "dtype": str(np.dtype(getattr(data, "dtype", np.float64))),
        "rgb": rgb,
        "scale": scale,
        "translate": translate,
        "units": units,
        "axis_labels": [str(a) for a in meta.get("axis_labels") or []],
        "metadata": _jsonable(dict(meta.get("metadata") or {})),
    }
    affine = meta.get("affine")
    matrix = getattr(affine, "affine_matrix", affine)
    if matrix is not None and not np.allclose(np.asarray(matrix), np.eye(spatial + 1)):
        record["affine"] = np.asarray(matrix, float).tolist()
    for key in _DISPLAY:
        if key in meta:
            record[key] = _jsonable(meta[key])
    ome: dict = {"axes": axes, "Name": str(meta.get("name") or "layer")}
    for ax, i in (("X", -1), ("Y", -2), ("Z", -3)):
        if spatial >= -i:
            unit = _OME_UNITS.get(units[i], "pixel")
            ome[f"PhysicalSize{ax}"] = scale[i]
            ome[f"PhysicalSize{ax}Unit"] = unit
    n_planes = int(np.prod(shape[: spatial - 2], dtype=np.int64)) if spatial > 2 else 1
    plane = {}
    for ax, i in (("X", -1), ("Y", -2), ("Z", -3)):
        if spatial >= -i:
            plane[f"Position{ax}"] = [translate[i]] * n_planes
            plane[f"Position{ax}Unit"] = [_OME_UNITS.get(units[i], "pixel")] * n_planes
    ome["Plane"] = plane
    ome["MapAnnotation"] = {"Namespace": NAMESPACE, "layer": json.dumps(record)}
    return record, ome


def _write_one(path: Path, data, meta: dict) -> None:
    import tifffile

    if meta.get("multiscale") or isinstance(data, list):
        raise ValueError(
            f"layer {meta.get('name')!r} is multiscale; this writer saves single-scale "
            "images only (save its full-resolution level as a new layer)."
        )
    arr = np.asarray(data)  # a view or a computed copy: the layer's data is not touched
    if arr.dtype == np.float16:  # OME has no half floats (PKN's map layers are float16)
        arr = arr.astype(np.float32)
    _, ome = _record(arr, meta)
    fd, tmp = tempfile.mkstemp(suffix=".ome.tif", dir=path.parent)
    os.close(fd)
    try:
        tifffile.imwrite(
            tmp,
            arr,
            ome=True,
            photometric="rgb" if meta.get("rgb") else "minisblack",
            compression="zlib",
            metadata=ome,
        )
        os.replace(tmp, path)  # an existing file is only replaced by a complete one
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_layers(path: str, layer_data: Sequence[tuple]) -> list[str]:
    """Write image layers as OME-TIFF files with pixel size, offset and provenance.

    One layer: one file at ``path`` (``.ome.tif`` appended if missing; an existing file
    is replaced, as napari's save dialog has asked to confirm, and only once the new
    one is complete). Several layers: a folder ``path`` (without its extension) holding
    ``NN_<layer name>.ome.tif``, one per layer, numbered in layer order; files already
    there are never overwritten (:class:`FileExistsError` before anything is written).

    Parameters
    ----------
    path : str
        The path chosen in napari's save dialog.
    layer_data : sequence of (data, meta, layer_type)
        napari's layer data tuples; only ``"image"`` layers.

    Returns
    -------
    list of str
        The files written, one per layer.

    Raises
    ------
    ValueError
        No layers, a non-image layer, data that OME-TIFF cannot hold, or a multiscale
        layer.
    FileExistsError
        Several layers and one of their files exists already.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> meta = {"name": "sigma", "scale": (2.0, 2.0), "translate": (0.5, 0.5),
    ...         "metadata": {"pkn": {"kernel": "nlm"}}}
    >>> [os.path.basename(p) for p in write_layers(os.path.join(d, "out"),
    ...                                            [(np.zeros((4, 4)), meta, "image")])]
    ['out.ome.tif']
    """
    layers = list(layer_data)
    if not layers:
        raise ValueError("layer_data is empty: there is no layer to write.")
    for _, meta, kind in layers:
        if kind != "image":
            raise ValueError(
                f"layer {meta.get('name')!r} is a {kind} layer; this writer saves image "
                "layers only."
            )
    path = os.fspath(path)
    if len(layers) == 1:
        target = Path(path if path.lower().endswith(EXTENSIONS) else path + ".ome.tif")
        if target.is_dir():
            raise ValueError(f"path {str(target)!r} is a folder; give a file name.")
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_one(target, *layers[0][:2])
        return [str(target)]
    folder = Path(_strip_ext(path))
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"path {str(folder)!r} exists and is not a folder.")
    width = max(2, len(str(len(layers) - 1)))
    targets = [
        folder / f"{i:0{width}d}_{_safe_name(str(meta.get('name') or 'layer'))}.ome.tif"
        for i, (_, meta, _) in enumerate(layers)
    ]
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        raise FileExistsError(
            f"not overwriting {len(existing)} existing file(s): {', '.join(existing)}; "
            "choose another name or folder."
        )
    folder.mkdir(parents=True, exist_ok=True)
    for target, (data, meta, _) in zip(targets, layers, strict=True):
        _write_one(target, data, meta)
    return [str(t) for t in targets]


# ---------------------------------------------------------------------- reader
def _layer_record(path: Path) -> dict | None:
    """Our JSON layer record in ``path``'s OME-XML, or None (not written by us)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata
    except (OSError, ValueError, tifffile.TiffFileError):
        return None
    if not xml or NAMESPACE not in xml:
        return None
    from xml.etree import ElementTree

    root = ElementTree.fromstring(xml)
    for el in root.iter():
        if el.tag.endswith("MapAnnotation") and el.get("Namespace") == NAMESPACE:
            for m in el.iter():
                if m.tag.endswith("}M") and m.get("K") == "layer":
                    return json.loads(m.text or "{}")
    return None


def _files(path: str) -> list[Path] | None:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.name.lower().endswith(EXTENSIONS))
    elif p.name.lower().endswith(EXTENSIONS):
        files = [p]
    else:
        return None
    return files if files and all(_layer_record(f) is not None for f in files) else None


def read_layers(path: str | Sequence[str]) -> list[tuple]:
    """Read files written by :func:`write_layers` (a file, a folder of them, or a list).

    Returns napari layer data tuples ``(data, meta, "image")`` with ``name``, ``scale``,
    ``translate``, ``units``, ``axis_labels``, ``metadata`` (and ``affine`` and display
    settings when they were saved) restored.

    Raises
    ------
    ValueError
        A file that was not written by :func:`write_layers`.
    """
    import tifffile

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    out = []
    for item in paths:
        files = _files(os.fspath(item))
        if files is None:
            raise ValueError(
                f"path {os.fspath(item)!r} is not an OME-TIFF (or a folder of them) "
                f"written by napari-pkn (no {NAMESPACE!r} annotation)."
            )
        for f in files:
            rec = _layer_record(f)
            data = tifffile.imread(f)
            meta = {
                "name": rec.get("name") or f.name,
                "scale": rec["scale"],
                "translate": rec["translate"],
                "metadata": rec.get("metadata", {}),
                "rgb": rec.get("rgb", False),
            }
            if rec.get("units"):
                meta["units"] = rec["units"]
            if rec.get("axis_labels"):
                meta["axis_labels"] = rec["axis_labels"]
            if "affine" in rec:
                meta["affine"] = rec["affine"]
            for key in _DISPLAY:
                if key in rec:
                    meta[key] = rec[key]
            out.append((data, meta, "image"))
    return out


def get_reader(path):
    """npe2 reader: :func:`read_layers` for our OME-TIFFs (or folders), else None."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths or any(_files(os.fspath(p)) is None for p in paths):
        return None
    return read_layers
