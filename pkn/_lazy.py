"""``pkn.restore`` on dask and zarr arrays: lazy results built with ``map_overlap``.

The array is restored chunk by chunk. Each chunk is read with a halo (:func:`pkn._tiles.halo`:
the network's receptive field, the kernel's support and 2 pixels, a multiple of 8) and
y/x chunks are multiples of 8, so every chunk sees what the whole plane would
(:mod:`pkn._tiles`); what differs between chunks is made the same for all of them
before any is computed:

* the normalisation and the noise model: computed once, from the whole array up to
  :data:`SAMPLE_BYTES`, above from a bounded sample of whole chunks spread over it;
* each plane's mean, which the network subtracts: a lazy reduction that the chunks
  depend on (one extra read of the array when computed, no extra memory).

Only the calibration sample (and, for denoising, the whiteness's at most
:data:`WHITENESS_CHUNKS` chunks) is computed by :func:`restore_lazy`.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager

import numpy as np
import torch

from . import _tiles
from ._input import (
    _CAL_SIDE,
    _DTYPES,
    Prepared,
    Stack,
    _cal_crops,
    check_layout,
    check_strength,
    correlation_of,
    stack_noise,
)

__all__ = ["SAMPLE_BYTES", "WHITENESS_CHUNKS", "restore_lazy"]

#: Arrays up to this many bytes are calibrated (normalisation, noise) on all their
#: values, exactly as in memory; larger ones on whole chunks totalling at most this.
SAMPLE_BYTES = 64 * 2**20
#: Denoising: the whiteness of the residual is measured on this many chunks at most.
WHITENESS_CHUNKS = 2

_LOCK = threading.Lock()
_ACTIVE = [0, 0]  # chunks running off the main thread, torch threads before the first


@contextmanager
def _chunk_threads():
    """One torch thread while chunks run in dask's worker threads (several chunks run at
    once: one thread each uses the cores without oversubscribing them). Reference counted,
    because torch's thread count is process-wide: the count in force before the first
    chunk is restored when the last one ends. On the main thread (dask's synchronous
    scheduler) :func:`pkn._threads.thread_policy` decides, as for numpy input."""
    if threading.current_thread() is threading.main_thread():
        from ._threads import thread_policy

        with thread_policy():
            yield
        return
    with _LOCK:
        if _ACTIVE[0] == 0:
            _ACTIVE[1] = torch.get_num_threads()
            torch.set_num_threads(1)
        _ACTIVE[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE[0] -= 1
            if _ACTIVE[0] == 0:
                torch.set_num_threads(_ACTIVE[1])


def as_dask(image):
    """A dask array for a dask or zarr array (zarr through ``dask.array.from_zarr``)."""
    import dask.array as da

    if isinstance(image, da.Array):
        return image
    return da.from_zarr(image)


def _validate(x, channel_axis):
    """Dtype, shape and channel axis of a lazy array (no data read), as :class:`Stack`."""
    dt = x.dtype
    native = dt.newbyteorder("=") if dt.byteorder not in ("=", "|") else dt
    if native not in _DTYPES:
        raise TypeError(
            f"image dtype {dt} is not supported; use uint8, uint16, float32 or float64."
        )
    ca = check_layout(x.shape, channel_axis)
    if x.size == 0:
        raise ValueError(f"image is empty (shape {x.shape}).")
    y, w = (
        (x.shape[-2], x.shape[-1])
        if ca is None
        else tuple(s for k, s in enumerate(x.shape) if k != ca)[-2:]
    )
    if min(y, w) < 2:
        raise ValueError(f"image is {y}x{w} pixels; need at least 2x2.")
    return ca, native


def _rechunk(xm, depth: int, whole: bool):
    """``xm`` ``lead + (C, H, W)`` with C in one chunk and y/x chunks of one size, a
    multiple of 8 and at least ``depth`` (the input's first chunk rounded up; a last
    chunk under ``depth`` joins the one before); ``whole``: y/x in one chunk."""
    chunks = {xm.ndim - 3: -1}
    for ax in (xm.ndim - 2, xm.ndim - 1):
        n = xm.shape[ax]
        if whole:
            chunks[ax] = -1
            continue
        c = _tiles._round8(max(xm.chunks[ax][0], 8, depth))
        cs = [c] * (n // c) + ([n % c] if n % c else [])
        if len(cs) > 1 and cs[-1] < depth:  # dask's overlap needs chunks >= the depth
            cs[-2:] = [cs[-2] + cs[-1]]
        chunks[ax] = tuple(cs)
    return xm.rechunk(chunks)


class _LazyStack(Stack):
    """:class:`pkn._input.Stack`'s rules on a lazy ``(lead..., C, H, W)`` big array
    (:meth:`Stack.big`; smaller ones are read whole), reading only what they need: the
    calibration crops (:meth:`Stack.calibration_sample`), from
    which both the normalisation and the noise model come, so that a big lazy array gets
    exactly the offset, scale and noise model the same array gets in memory. ``a`` is a
    zero-strided stand-in with the array's shape (no data)."""

    def __init__(self, xm, channel_axis):
        self._xm = xm
        self.a = np.broadcast_to(np.zeros((), xm.dtype), xm.shape)
        self.channel_axis = channel_axis
        self.lead = tuple(xm.shape[:-3])
        self.n = int(np.prod(self.lead, dtype=np.int64))
        self.per_plane = False
        self.out_dtype = np.float64 if xm.dtype == np.float64 else np.float32
        self.offset, self.scale = self._normalisation()

    def raw(self, i: int):
        """Plane ``i``, lazily (only the pieces :meth:`Stack.read` gets are read)."""
        return self._xm[self.index(i)]


def _calibration(xm, channel_axis, noise):
    """``(offset, scale, std_of, noise_desc, how, out_dtype, means)`` from all of ``xm``
    (up to :data:`SAMPLE_BYTES`) or from whole chunks spread evenly over it; ``means``:
    each plane's mean (normalised units) when the whole array was read, else None."""

    C = xm.shape[-3]
    means = None
    from . import _input

    pixels = int(np.prod(xm.shape[:-3], dtype=np.int64)) * xm.shape[-2] * xm.shape[-1]
    if xm.nbytes <= SAMPLE_BYTES or pixels <= _input.CAL_PIXELS:  # else: a big array
        a = np.asarray(xm.compute())
        how = "the whole array"
        means = a.sum(axis=(-2, -1), dtype=np.float64) / (a.shape[-2] * a.shape[-1])
    else:  # in-memory Stack's rules on the pieces they read: the same result
        st = _LazyStack(xm, channel_axis)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            std_of, desc = stack_noise(st, noise, [st.calibration_plane(0)] if st.n == 1 else None)
        H, W = xm.shape[-2:]
        how = (
            f"{len(_cal_crops(st.n, H, W))} crops of up to {_CAL_SIDE}x{_CAL_SIDE} pixels "
            f"spread evenly, as an in-memory restore of a big array takes them (array over "
            f"{SAMPLE_BYTES // 2**20} MiB)"
        )
        return st.offset[0], st.scale[0], std_of, desc, how, st.out_dtype, None
    a = a.reshape(-1, C, *a.shape[-2:])  # planes (n, C, h, w)
    if channel_axis is not None:
        st = Stack(a, 1)
    else:
        st = Stack(a[0, 0] if len(a) == 1 else a[:, 0])
    std_of, desc = stack_noise(st, noise, [st.calibration_plane(0)] if st.n == 1 else None)
    lo, sc = st.offset[0], st.scale[0]
    means = None if means is None else (means - lo) / sc  # normalised, (lead..., C)
    return lo, sc, std_of, desc, how, st.out_dtype, means


def restore_lazy(
    image,
    task="denoise",
    *,
    kernel=None,
    noise=None,
    blur=None,
    scale=None,
    strength=1.0,
    channel_axis=None,
    per_plane=False,
    model=None,
    device=None,
):
    """:func:`pkn.restore` for a dask or zarr array: a :class:`pkn.Restoration` of dask
    arrays (see ``pkn.restore``'s Returns)."""
    import dask
    import dask.array as da

    from .models.io import load_model
    from .models.pkn_model import run_filter
    from .restoration import (
        Restoration,
        _blur_info,
        _blur_input,
        _check_size,
        _check_task_inputs,
        _kernel_model,
        _task_kernel,
    )

    kernel, spec = _task_kernel(task, kernel, model)
    _check_task_inputs(spec, task, blur, scale)
    if isinstance(strength, str) and strength == "auto":
        raise ValueError(
            "strength='auto' is not available for dask/zarr input yet; give a number, or "
            "choose it on a crop in memory (pkn.Restorer(np.asarray(crop)).auto_strength())."
        )
    strength = check_strength(strength)
    if not isinstance(per_plane, bool | np.bool_):
        raise ValueError(f"per_plane must be True or False, got {per_plane!r}.")
    if per_plane:
        raise ValueError(
            "per_plane=True is not available for dask/zarr input (it needs every plane's "
            "statistics before any chunk); restore plane by plane or use one noise model "
            "per stack (the default)."
        )
    x = as_dask(image)
    ca, native = _validate(x, channel_axis)
    if native != x.dtype:
        x = x.astype(native)
    xm = x[..., None, :, :] if ca is None else da.moveaxis(x, ca, -3)
    lead, (C, H, W) = tuple(xm.shape[:-3]), xm.shape[-3:]
    inputs: dict = {}
    if "blur" in spec.inputs:
        inputs["blur"] = _blur_input(blur, (H, W))
    if "size" in spec.inputs:
        _check_size(xm.shape, np.float64 if native == np.float64 else np.float32, scale)
        inputs["size"] = (max(1, round(H * scale)), max(1, round(W * scale)))
    net, mi = _kernel_model(model, kernel, load_model)

    # the halo: the kernel's support at the largest maps it can get (strength included)
    tiled = spec.pixel_grid == "input"
    top = {
        p.name: torch.full((1, 1, 1, 1), float(p.high) * (strength if p.strength else 1.0))
        for p in spec.params
        if p.unit == "px" and np.isfinite(p.high)
    }
    opts = dict(net.options)
    r_kernel = spec.support(
        {**{p.name: torch.ones(1, 1, 1, 1) for p in spec.params}, **top}, opts, **inputs
    )
    if spec.fixed_window is not None:  # every chunk filters with the same window
        opts.update(spec.fixed_window(r_kernel))
    depth = _tiles._round8(_tiles.receptive_field(net) + r_kernel + 2) if tiled else 0
    xm = _rechunk(xm, depth, whole=not tiled)

    lo, sc, std_of, noise_desc, how, out_dtype, means_read = _calibration(xm, ca, noise)
    corr = correlation_of(noise_desc)  # (C, 5, 5), one for the whole array; None: white
    wd = np.float64 if out_dtype is np.float64 else np.float32
    net = net.to(device or "cpu", torch.float64 if wd is np.float64 else torch.float32)
    one_chunk = len(xm.chunks[-2]) == 1 and len(xm.chunks[-1]) == 1
    means = None
    if not one_chunk and means_read is not None:  # read with the calibration
        means = means_read
    elif not one_chunk:  # each plane's mean (normalised units), lazily: (lead..., C)
        s = xm.astype(np.float64).sum(axis=(-2, -1)) / (H * W)
        means = dask.delayed(np.asarray)((s - lo) / sc)
    ychunks, xchunks = xm.chunks[-2], xm.chunks[-1]
    ystart, xstart = np.cumsum((0, *ychunks)), np.cumsum((0, *xchunks))
    denoise = spec.task == "denoise"

    def chunk(block, means=None, block_info=None):
        loc = block_info[0]["chunk-location"]
        alo = block_info[0]["array-location"]
        iy, ix = loc[-2], loc[-1]
        y0, y1, x0, x1 = ystart[iy], ystart[iy + 1], xstart[ix], xstart[ix + 1]
        wy0 = y0 - (depth if iy > 0 else 0)
        wx0 = x0 - (depth if ix > 0 else 0)
        planes = block.shape[:-3]
        res: dict = {}
        with _chunk_threads(), torch.no_grad():
            for idx in np.ndindex(*planes):
                raw = block[idx]
                xw = torch.from_numpy(((raw.astype(wd) - lo) / sc)[:, None])
                if device is not None:
                    xw = xw.to(device)
                p = Prepared(xw, lo, sc, None if ca is None else 0, 2, out_dtype)
                std = std_of(0, p)
                gidx = tuple(a[0] + i for a, i in zip(alo[: len(planes)], idx, strict=True))
                m = None if means is None else means[gidx]
                maps = _tiles.predict_maps(net, xw, std, m, corr)
                y = run_filter(
                    spec, xw, maps, factor=net.factor, strength=strength, options=opts, **inputs
                )
                if tiled:
                    sl = (slice(None), 0, slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))
                else:
                    sl = (slice(None), 0)
                o = (y[sl] * sc + lo).cpu().numpy().astype(out_dtype, copy=False)
                out = {"image": o}
                if denoise:
                    out["qc"] = ((xw - y) / std)[sl].cpu().numpy().astype(np.float32)
                r0, c0 = (y0 - wy0) // 2, (x0 - wx0) // 2
                h, w = -(-y1 // 2) - y0 // 2, -(-x1 // 2) - x0 // 2
                for name, v in spec.scaled(maps, strength).items():
                    unit = sc if spec.param(name).unit == "intensity" else 1.0
                    if v.shape[-2:] == (1, 1):
                        v = v.expand(-1, -1, h, w)
                    elif tiled:
                        v = v[..., r0 : r0 + h, c0 : c0 + w]
                    out["map:" + name] = (v[:, 0] * unit).cpu().numpy().astype(np.float32)
                for k, v in out.items():
                    if k not in res:
                        res[k] = np.empty(planes + v.shape, v.dtype)
                    res[k][idx] = v
        return res

    def chunks_of(**kw):
        return da.map_overlap(
            chunk,
            xm,
            # no halo along an axis held in one chunk (dask refuses a halo larger than
            # the array, and a single chunk needs none)
            depth={
                xm.ndim - 2: depth if len(ychunks) > 1 else 0,
                xm.ndim - 1: depth if len(xchunks) > 1 else 0,
            },
            boundary="none",
            trim=False,
            dtype=object,
            meta=np.empty((0,) * xm.ndim, object),
            chunks=xm.chunks,
            **kw,
        )

    packed = chunks_of() if means is None else chunks_of(means=means)
    lead_chunks = xm.chunks[:-3]
    if tiled:
        img_chunks = xm.chunks
    else:
        img_chunks = (*lead_chunks, (C,), (inputs["size"][0],), (inputs["size"][1],))

    def half(cs):  # map rows [s/2, ceil((s + c)/2)) of each chunk [s, s + c)
        starts = np.cumsum((0, *cs))[:-1]
        return tuple(int(-(-(s + c) // 2) - s // 2) for s, c in zip(starts, cs, strict=True))

    map_chunks = (*lead_chunks, (C,), half(ychunks), half(xchunks))

    def part(name, chunks, dtype, packed=packed):
        return packed.map_blocks(
            lambda d: d[name], dtype=dtype, chunks=chunks, meta=np.empty((0,) * xm.ndim, dtype)
        )

    image = part("image", img_chunks, out_dtype)
    qc = part("qc", xm.chunks, np.float32) if denoise else None
    maps = {p.name: part("map:" + p.name, map_chunks, np.float32) for p in spec.params}

    def back(a):
        return a[..., 0, :, :] if ca is None else da.moveaxis(a, -3, ca)

    qc_in = qc  # lead + (C, H, W)
    image, qc = back(image), None if qc is None else back(qc)
    maps = {k: back(v) for k, v in maps.items()}
    info = {
        "model": mi["name"],
        "model_sha256": mi["sha256"],
        "model_file": mi["path"],
        "kernel": kernel,
        "task": task,
        "noise": noise_desc,
        "strength": strength,
        "n_parameters": mi["n_parameters"],
        "pkn_version": __import__("pkn").__version__,
        "map_scale": float(net.factor),
        "normalisation": {"offset": lo, "scale": sc},
        "lazy": {
            "chunks": [list(c) if len(c) <= 8 else f"{len(c)} x {c[0]}" for c in xm.chunks],
            "halo": int(depth),
            "calibrated_on": how,
        },
    }
    if lead:
        info["planes"] = {"shape": list(lead), "noise": "per stack", "normalisation": "per stack"}
    adapted = (mi.get("info") or {}).get("adaptation")
    if adapted:
        info["adaptation"] = adapted
    if "blur" in spec.inputs:
        info.update(_blur_info(blur, inputs["blur"]))
    if "size" in spec.inputs:
        info["scale"] = float(scale)
    if denoise:  # lazy means: on chunks that see their own mean (no pass over the array)
        lazy_means = means is not None and not isinstance(means, np.ndarray)
        qw = part("qc", xm.chunks, np.float32, chunks_of()) if lazy_means else qc_in
        info["whiteness"] = _whiteness(qw)
    return Restoration(image, maps, float(net.factor), info, qc)


def _whiteness(q) -> dict:
    """The whiteness of the residual ``q`` ``lead + (C, H, W)`` from at most
    :data:`WHITENESS_CHUNKS` chunks (their planes summed as for a stack), saying so."""
    import dask

    from .restoration import _lag1, _whiteness_of

    grid = [len(c) for c in q.chunks]
    n = int(np.prod(grid))
    picks = np.unique(np.linspace(0, n - 1, min(n, WHITENESS_CHUNKS)).round().astype(int))
    got = dask.compute(*[q.blocks[np.unravel_index(int(f), grid)] for f in picks])
    s = np.zeros(3)
    for b in got:
        for idx in np.ndindex(*b.shape[:-3]):
            s += _lag1(b[idx])
    w = _whiteness_of(s)
    w["estimated_from"] = (
        f"{len(got)} of {n} chunks, each with its own mean (lazy input: not the whole residual)"
    )
    return w
