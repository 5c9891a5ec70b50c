"""Output layers of a restoration: names, geometry, colormaps, provenance metadata.

Geometry: a derived layer whose data index ``i`` lands on the input's data index
``factor * i + offset`` (per axis) gets ``scale * factor`` and a translate moved by the
offset through the input's rotation and shear, so it overlays the input exactly in world
coordinates (parameter maps: factor 2, offset 0.5; upsampled output: factor
``n_in / n_out``, offset ``0.5 * n_in / n_out - 0.5``, the ``align_corners=False`` grid).
The QC map (denoising) is on the input grid, so it takes the input's geometry. Only numpy
and napari are imported here (no torch).
"""

from __future__ import annotations

import math
import re

import numpy as np

__all__ = [
    "base_name",
    "contrast_limits",
    "derived_geometry",
    "map_style",
    "number",
    "pixel_size_text",
    "probe_spec",
    "psf_spec",
    "put_layers",
    "qc_spec",
    "readable",
    "require_image",
    "result_specs",
    "unit_suffix",
    "units_text",
    "update_layers",
]

PROBE_NAME = "PKN probe (kernel weights)"  # one layer, updated in place
PROBE_OPACITY = 0.6


def require_image(layer):
    """Return ``layer`` if it is a napari Image layer, else raise a TypeError saying why."""
    from napari.layers import Image

    if not isinstance(layer, Image):
        kind = type(layer).__name__
        name = getattr(layer, "name", repr(layer))
        raise TypeError(
            f"PKN restores intensity images, but {name!r} is a {kind} layer. "
            "Choose an Image layer (e.g. File > Open Sample > PKN restoration)."
        )
    return layer


def _embed(matrix: np.ndarray, n: int) -> np.ndarray:
    """``matrix`` (k x k) in the lower-right corner of an ``n x n`` identity."""
    out = np.eye(n)
    k = matrix.shape[0]
    out[n - k :, n - k :] = matrix
    return out


def derived_geometry(layer, factors=None, offsets=None, extra_axis: bool = False) -> dict:
    """Layer keyword arguments that place data index ``i`` on the input's ``f * i + o``.

    Parameters
    ----------
    layer : napari.layers.Layer
        The input layer (its scale, translate, rotate, shear, affine, units, labels).
    factors, offsets : sequence of float, optional
        Per trailing axis (e.g. the two spatial axes); leading axes keep 1 and 0.
    extra_axis : bool
        Prepend a unit "channel" axis (per-channel parameter maps of RGB input).
    """
    from napari.utils.transforms import CompositeAffine
    from napari.utils.transforms.transform_utils import shear_to_matrix

    n = layer.ndim
    f, o = np.ones(n), np.zeros(n)
    if factors is not None:
        f[n - len(factors) :] = factors
        o[n - len(offsets) :] = offsets
    scale = np.asarray(layer.scale, float)
    lin = CompositeAffine(np.ones(n), rotate=layer.rotate, shear=layer.shear, ndim=n)
    translate = np.asarray(layer.translate, float) + lin.linear_matrix @ (scale * o)
    geo = {
        "scale": scale * f,
        "translate": translate,
        "rotate": np.asarray(layer.rotate),
        "shear": shear_to_matrix(np.asarray(layer.shear), ndim=n),
        "affine": np.asarray(layer.affine.affine_matrix),
        "units": tuple(str(u) for u in layer.units),
        "axis_labels": tuple(layer.axis_labels),
    }
    if extra_axis:
        geo["scale"] = np.r_[1.0, geo["scale"]]
        geo["translate"] = np.r_[0.0, geo["translate"]]
        geo["rotate"] = _embed(geo["rotate"], n + 1)
        geo["shear"] = _embed(geo["shear"], n + 1)
        geo["affine"] = _embed(geo["affine"], n + 2)
        geo["units"] = ("pixel", *geo["units"])
        geo["axis_labels"] = ("channel", *geo["axis_labels"])
    return geo


def _finite(v: np.ndarray) -> np.ndarray:
    """The finite values of ``v``, at least float32 (percentiles of float16 maps are
    computed in float32)."""
    v = np.asarray(v)
    finite = v[np.isfinite(v)]
    return finite.astype(np.float32) if finite.dtype == np.float16 else finite


def _robust_max(v: np.ndarray, q: float = 99.5) -> float:
    finite = _finite(v)
    m = float(np.percentile(finite, q)) if finite.size else 0.0
    return m if m > 0 else float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def contrast_limits(limits: str, values: np.ndarray) -> tuple[float, float]:
    """Contrast limits of a map by its parameter's ``limits`` (see
    :class:`pkn.kernels.registry.Param`): ``"zero"`` ``[0, p99.5]``, ``"symmetric"``
    ``[-m, m]`` with ``m`` the p99.5 of ``|values|``, ``"unit"`` ``[-1, 1]``, else
    (``"percentile"``) ``[p0.5, p99.5]``."""
    if limits == "unit":
        return (-1.0, 1.0)
    if limits == "zero":
        return (0.0, _robust_max(values))
    if limits == "symmetric":
        m = _robust_max(np.abs(values))
        return (-m, m)
    finite = _finite(values)
    if not finite.size:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
    return (lo, hi if hi > lo else lo + 1.0)


def map_style(param, values: np.ndarray) -> dict:
    """Colormap and contrast limits of a parameter map, as its descriptor says.

    ``param`` is a :class:`pkn.kernels.registry.Param` (its ``colormap`` and ``limits``),
    or None for a map the kernel does not declare (gray, percentile limits).
    """
    cmap = "gray" if param is None else param.colormap
    limits = "percentile" if param is None else param.limits
    return {"colormap": cmap, "contrast_limits": contrast_limits(limits, values)}


def pixel_size_text(layer) -> str:
    """``"1 px = 0.1 µm"`` (``"1 px = 0.5 µm (y) x 0.25 µm (x)"`` for non-square pixels) from
    the input layer's scale and units along its last two axes; ``""`` when they are in
    pixels (no physical units).

    Examples
    --------
    >>> from napari.layers import Image
    >>> pixel_size_text(Image(np.zeros((4, 4)), scale=(0.1, 0.1), units=("um", "um")))
    '1 px = 0.1 µm'
    """
    if layer is None:
        return ""
    units = [str(u) for u in tuple(getattr(layer, "units", ()))[-2:]]
    scale = [float(v) for v in tuple(layer.scale)[-2:]]
    if len(units) < 2 or all(u in ("pixel", "dimensionless", "") for u in units):
        return ""
    short = [f"{u:~P}" if hasattr(u, "dimensionality") else str(u) for u in layer.units[-2:]]
    if short[0] == short[1] and math.isclose(scale[0], scale[1], rel_tol=1e-6):
        return f"1 px = {number(scale[1])} {short[1]}"
    return f"1 px = {number(scale[0])} {short[0]} (y) x {number(scale[1])} {short[1]} (x)"


def units_text(kernel, param, layer=None) -> str:
    """Human units of a parameter map, from ``Param.unit`` and the kernel's pixel grid:
    ``"intensity"`` -> the input's intensity units; ``"px"`` -> pixels (input pixels where
    the kernel's output is on another grid), with their physical size where the input
    ``layer`` has a scale with units (``"px; 1 px = 0.1 µm"``); ``"none"`` -> ``""`` (its
    label says what it is)."""
    if param is None or param.unit == "none":
        return ""
    if param.unit == "intensity":
        return "intensity units of the input"
    px = "px" if kernel.pixel_grid == "input" else "input px"
    size = pixel_size_text(layer)
    return f"{px}; {size}" if size else px


def unit_suffix(kernel, param, layer=None) -> str:
    """What a map layer's name ends with: its units in brackets (``" (px; 1 px = 0.1 µm)"``,
    ``" (intensity)"``), or ``""`` for a map without units."""
    if param is None or param.unit == "none":
        return ""
    if param.unit == "intensity":
        return " (intensity)"
    return f" ({units_text(kernel, param, layer)})"


def number(v) -> str:
    """A readable number: at most 3 significant digits, no exponent between 1e-3 and 1e6,
    plain Python text (never a ``np.float32(...)`` repr).

    Examples
    --------
    >>> number(np.float32(27.4321)), number(-385.2), number(np.int64(-50)), number(1e-5)
    ('27.4', '-385', '-50', '1e-05')
    """
    x = float(v)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    if 1e-3 <= abs(x) < 1e6:
        decimals = max(0, 2 - math.floor(math.log10(abs(x))))
        text = f"{x:.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{x:.3g}"


_NP_REPR = re.compile(r"np\.(?:u?int|float|complex|bool_?|str_)\d*\((['\"]?)([^()]*?)\1\)")


def readable(message: str) -> str:
    """``message`` with numpy scalar reprs (``np.int64(-50)``, ``np.float32(1.5)``) replaced
    by their plain values.

    Examples
    --------
    >>> readable("factor must be > 1, got np.int64(-50).")
    'factor must be > 1, got -50.'
    """
    return _NP_REPR.sub(lambda m: m.group(2), str(message))


def _param(kernel, name: str):
    """The descriptor of parameter ``name`` of ``kernel``, or None if it declares none."""
    return next((p for p in kernel.params if p.name == name), None)


def put_layers(viewer, specs: list[tuple]) -> list:
    """Add ``(data, kwargs, type)`` layers; a PKN layer of the same name is replaced.

    Replaced layers keep their place in the layer list, so re-running a restoration does
    not pile up layers. ``kwargs["colorbar"]`` (not a layer argument) shows the layer's
    colorbar (napari >= 0.5). Returns the new layer objects, in order.
    """
    from napari.layers import Layer

    out = []
    for data, kwargs, kind in specs:
        kwargs = dict(kwargs)
        colorbar = bool(kwargs.pop("colorbar", False))
        layer = Layer.create(data, kwargs, kind)
        if colorbar and hasattr(layer, "colorbar"):
            layer.colorbar.visible = True
        name = kwargs.get("name")
        old = viewer.layers[name] if name in viewer.layers else None
        if old is not None and "pkn" in old.metadata:
            i = viewer.layers.index(old)
            viewer.layers.remove(old)
            viewer.layers.insert(i, layer)
        else:
            viewer.add_layer(layer)
        out.append(layer)
    return out


def update_layers(layers: list, specs: list[tuple]) -> None:
    """Give existing layers the data, placement and metadata of ``specs`` (as made for
    them by :func:`result_specs`), keeping everything the user set (contrast, colormap,
    visibility, their place in the list): a preview moving to another plane."""
    for layer, (data, kw, kind) in zip(layers, specs, strict=True):
        if kind == "vectors":
            layer.data, layer.features = data, kw["features"]
        else:
            layer.data = data
        layer.translate = kw["translate"]
        layer.metadata = kw["metadata"]


# ---------------------------------------------------------------- output layers


def base_name(layer_name: str, model: str) -> str:
    """``"cells [PKN nlm]"``: the name every output of one restoration starts with."""
    return f"{layer_name} [PKN {model}]"


def result_specs(layer, job, show_maps: bool = True, show_qc: bool | None = None) -> list:
    """``(data, kwargs, type)`` for the restored image, its maps, orientation glyphs and
    (denoising) the QC map.

    ``job`` is a finished :class:`napari_pkn._scripting.Job` on ``layer``'s data;
    ``show_qc`` (default: as ``show_maps``) makes the QC layer visible.
    """
    src, base, meta = job.source, base_name(layer.name, job.entry.name), job.provenance()
    (h, w), (ho, wo) = src.spatial, job.image.shape[len(src.lead) : len(src.lead) + 2]
    fy, fx = h / ho, w / wo
    at, ones = _origin(job), (1.0,) * len(src.lead)
    out = {
        "name": base,
        "rgb": src.rgb,
        "contrast_limits": tuple(layer.contrast_limits),
        "gamma": layer.gamma,
        "blending": layer.blending,
        "metadata": {"pkn": meta},
        **derived_geometry(layer, (*ones, fy, fx), (*at, 0.5 * fy - 0.5, 0.5 * fx - 0.5)),
    }
    if not src.rgb:
        out["colormap"] = layer.colormap
    specs = [(job.image, out, "image")]
    f = float(meta.get("map_scale", 2.0))
    kernel = job.kernel
    for name, values in job.maps.items():
        p = _param(kernel, name)
        units = units_text(kernel, p, layer)
        label = name if p is None else p.title
        about = {
            "parameter": name,
            "label": label,
            "units": units,
            "colorbar": f"{label} ({units})" if units else label,
        }
        kw = {
            "name": f"{base} {name}{unit_suffix(kernel, p, layer)}",
            "visible": show_maps,
            "colorbar": True,
            "metadata": {"pkn": {**meta, **about}},
            **map_style(p, _style_sample(values, len(src.lead))),
            **derived_geometry(
                layer, (*ones, f, f), (*at, 0.5 * f - 0.5, 0.5 * f - 0.5), extra_axis=src.rgb
            ),
        }
        specs.append((np.moveaxis(values, -1, 0) if src.rgb else values, kw, "image"))
    if kernel.glyphs and set(kernel.glyphs) <= set(job.maps):
        specs.append(vectors_spec(layer, job, show_maps))
    if getattr(job, "qc", None) is not None:
        specs.append(qc_spec(layer, job, show_maps if show_qc is None else show_qc))
    return specs


QC_LIMITS = (-4.0, 4.0)  # in noise std: white noise stays pale, removed structure is saturated
QC_COLORMAP = "coolwarm"  # diverging, neutral at 0: red where the result is darker


def qc_spec(layer, job, visible: bool = False) -> tuple:
    """The QC map, ``(input - result) / noise std``, over the result pixel for pixel:
    about N(0, 1) noise where only noise was removed; structure shows as coloured edges.
    RGB input gets a leading channel axis (as the maps)."""
    src, meta = job.source, job.provenance()
    data = np.moveaxis(job.qc, -1, 0) if src.rgb else job.qc
    about = {
        "label": "QC: residual (input - result) / noise std",
        "units": "noise std",
        "colorbar": "residual (input - result) in noise std",
        "qc": "(input - result) / noise std; about N(0, 1) where only noise was removed",
    }
    kw = {
        "name": f"{base_name(layer.name, job.entry.name)} qc",
        "colorbar": True,
        "colormap": QC_COLORMAP,
        "contrast_limits": QC_LIMITS,
        "visible": visible,
        "metadata": {"pkn": {**meta, **about}},
        **_placed(layer, job, extra_axis=src.rgb),
    }
    return data, kw, "image"


def _style_sample(values, n_lead: int):
    """The values a map's contrast limits come from: all of an in-memory map, the middle
    plane of a lazy (dask) one (never read whole)."""
    if type(values).__module__.startswith("dask") and n_lead:
        mid = tuple(n // 2 for n in values.shape[:n_lead])
        return np.asarray(values[mid])
    return values


def _origin(job) -> tuple:
    """Where a job's arrays start along the input's leading axes: the previewed plane
    (:attr:`napari_pkn._scripting.Job.origin`), else 0."""
    lead = job.source.lead
    at = getattr(job, "origin", None)
    return tuple(float(i) for i in at) if at is not None else (0.0,) * len(lead)


def _placed(layer, job, extra_axis: bool = False) -> dict:
    """Geometry of a layer on the input's grid that starts at the job's origin."""
    at = _origin(job)
    if not any(at):
        return derived_geometry(layer, extra_axis=extra_axis)
    n = layer.ndim
    return derived_geometry(layer, np.ones(n), (*at, *([0.0] * (n - len(at)))), extra_axis)


def glyphs(
    maps: dict,
    n_lead: int,
    map_scale: float = 2.0,
    rgb: bool = False,
    names: tuple[str, ...] = ("sigma1", "sigma2", "rho"),
):
    """Orientation/elongation glyphs of the covariance maps on a sparse grid.

    The covariance over ``(x, y)`` is ``[[s1^2, r s1 s2], [r s1 s2, s2^2]]``; each glyph
    is a segment along its principal axis (``names``: the kernel's
    :attr:`~pkn.kernels.registry.Kernel.glyphs` maps ``s1, s2, r``), ``2 sqrt(lambda_max)``
    input pixels long (capped at the grid spacing), centred on its map pixel.

    Returns
    -------
    (numpy.ndarray, dict)
        Vectors data ``(N, 2, n_lead + 2)`` (float32) in input data coordinates, and
        features ``elongation`` (``sqrt(lambda_max / lambda_min)``) and ``sigma_major``
        (float32); a glyph every :func:`glyph_step` map pixels.
    """
    s1, s2, r = (np.asarray(maps[k], np.float64) for k in names)
    h, w = s1.shape[n_lead : n_lead + 2]
    step = glyph_step(h, w)
    rows, cols = np.arange(step // 2, h, step), np.arange(step // 2, w, step)
    sub = np.ix_(*[np.arange(n) for n in s1.shape[:n_lead]], rows, cols)
    s1, s2, r = (v.mean(-1) if rgb else v for v in (s1, s2, r))
    s1, s2, r = s1[sub], s2[sub], r[sub]
    a, c, b = s1 * s1, s2 * s2, r * s1 * s2
    half = np.sqrt(((a - c) / 2) ** 2 + b * b)
    lam1, lam2 = (a + c) / 2 + half, np.maximum((a + c) / 2 - half, 1e-12)
    theta = 0.5 * np.arctan2(2 * b, a - c)  # angle of the major axis from +x
    major = np.sqrt(lam1)
    length = np.minimum(2 * major, 0.95 * step * map_scale)
    grid = (
        np.stack(
            np.meshgrid(*[np.arange(n) for n in s1.shape[:n_lead]], rows, cols, indexing="ij"), -1
        )
        .reshape(-1, n_lead + 2)
        .astype(float)
    )
    centre = grid.copy()
    centre[:, -2:] = grid[:, -2:] * map_scale + (map_scale - 1) / 2
    proj = np.zeros_like(centre)
    proj[:, -2] = (np.sin(theta) * length).ravel()  # rows: +y
    proj[:, -1] = (np.cos(theta) * length).ravel()  # columns: +x
    data = np.stack([centre - proj / 2, proj], axis=1).astype(np.float32)
    feats = {
        "elongation": np.minimum(np.sqrt(lam1 / lam2), 100.0).ravel().astype(np.float32),
        "sigma_major": major.ravel().astype(np.float32),
    }
    return data, feats


GLYPH_MIN_STEP = 4  # map pixels between glyphs, at least (8 input pixels for NLM-like maps)


def glyph_step(h: int, w: int) -> int:
    """Map pixels between orientation glyphs on an ``h x w`` map: about 32 along the
    longer side, at least :data:`GLYPH_MIN_STEP` apart (a stack keeps every plane's
    glyphs: small planes would otherwise get one per few pixels, as many bytes as the
    image; at most 1 glyph (32 bytes) per 16 map pixels)."""
    return max(GLYPH_MIN_STEP, round(max(h, w) / 32))


def vectors_spec(layer, job, show_maps: bool = True) -> tuple:
    """A Vectors layer of orientation glyphs for kernels with a covariance (``glyphs``)."""
    src, meta = job.source, job.provenance()
    f = float(meta.get("map_scale", 2.0))
    data, feats = glyphs(job.maps, len(src.lead), f, src.rgb, job.kernel.glyphs)
    hi = float(np.percentile(feats["elongation"], 99)) if len(data) else 2.0
    kw = {
        "name": f"{base_name(layer.name, job.entry.name)} orientation",
        "features": feats,
        "edge_color": "elongation",
        "edge_colormap": "viridis",
        "edge_contrast_limits": (1.0, max(hi, 1.5)),
        "edge_width": max(0.25, 0.12 * f * glyph_step(*(-(-n // int(f)) for n in src.spatial))),
        "vector_style": "line",
        "length": 1.0,
        "opacity": 1.0,
        "visible": show_maps,
        "metadata": {"pkn": {**meta, "parameter": "principal axis of the covariance"}},
        **_placed(layer, job),
    }
    return data, kw, "vectors"


def probe_spec(layer, job, index: tuple, pixel: tuple, channel: int, probe) -> tuple:
    """The weights one output pixel used, as a small Image layer over the input pixels.

    One layer for every probe (:data:`PROBE_NAME`), semi-transparent: non-negative weights
    are added onto the image (black adds nothing, so only the weights show), signed ones
    (deblurring) are drawn at :data:`PROBE_OPACITY`.
    """
    wts = np.asarray(probe.weights, np.float32)
    data = wts.reshape((1,) * len(index) + wts.shape)
    lo, hi = float(wts.min()), float(wts.max())
    if lo < 0:
        m = max(-lo, hi)
        style = {"colormap": "coolwarm", "contrast_limits": (-m, m), "blending": "translucent"}
    else:
        hi = hi if hi > 0 else 1.0
        style = {"colormap": "inferno", "contrast_limits": (0.0, hi), "blending": "additive"}
    info = {
        "input_layer": layer.name,
        "model": job.entry.name,
        "plane": [int(i) for i in index],
        "pixel": [int(pixel[0]), int(pixel[1])],
        "channel": int(channel),
        "origin": [int(v) for v in probe.origin],
        "sum": float(probe.sum),
        "min": float(probe.min),
        "n_eff": float(probe.n_eff),
        "value": float(probe.value),
        "bias": float(probe.bias),
        "strength": job.strength,
    }
    kw = {
        "name": PROBE_NAME,
        "opacity": PROBE_OPACITY,
        "metadata": {"pkn": {**job.provenance(), "probe": info}},
        **style,
        **derived_geometry(layer, np.ones(data.ndim), (*index, *probe.origin)),
    }
    return data, kw, "image"


def psf_spec(layer, psf: np.ndarray, info: dict) -> tuple:
    """The PSF a deconvolution used, as an Image layer named ``"PSF used (imported from
    <layer>)"`` with the input's pixel size (its last two axes) and the import's
    provenance (``info``: :func:`napari_pkn._scripting.psf_from_layer`'s) in
    ``metadata["pkn"]``."""
    source = info.get("psf_layer", "?")
    scale = tuple(float(v) for v in tuple(layer.scale)[-2:])
    units = tuple(str(u) for u in tuple(layer.units)[-2:])
    kw = {
        "name": f"PSF used (imported from {source})",
        "colormap": "inferno",
        "contrast_limits": (0.0, float(np.max(psf)) or 1.0),
        "scale": scale,
        "units": units,
        "colorbar": True,
        "metadata": {"pkn": {"psf_used": True, "input_layer": layer.name, **info}},
    }
    return np.asarray(psf, np.float32), kw, "image"
