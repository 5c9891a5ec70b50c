"""The input of :func:`pkn.restore`: validation, normalisation to the network's working
range (:func:`prepare`) and the noise model (:func:`estimate_noise`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .noise import NoiseModel, calibrate, estimate_awgn, noise_std_map

__all__ = [
    "MAX_VALUE",
    "Prepared",
    "Stack",
    "as_image",
    "check_noise",
    "check_strength",
    "estimate_noise",
    "prepare",
    "stack_noise",
]

_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


def check_strength(strength) -> float:
    """``strength`` as a float if it is a finite real number >= 0 (numpy scalars included,
    ``bool`` refused), else a ValueError naming the value and what is accepted."""
    ok = isinstance(strength, int | float | np.integer | np.floating) and not isinstance(
        strength, bool | np.bool_
    )
    if not (ok and np.isfinite(strength) and strength >= 0):
        raise ValueError(
            f"strength must be a finite number >= 0 (1 = as trained, 0 = identity), got "
            f"{strength!r}."
        )
    return float(strength)


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


def _is_real(v) -> bool:
    """A real number (numpy scalars included), not a bool."""
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(
        v, bool | np.bool_
    )


_NOISE_ACCEPTED = (
    "None or 'auto' (estimated), a sigma >= 0 (a finite number, input units), a "
    "Poisson-Gaussian pair (a, b) of finite numbers with a >= 0 (variance a * x + b), or "
    "a pkn.calibrate NoiseModel (one for every channel, or a tuple of one per channel)"
)


def check_noise(noise, lo: float | None = None, hi: float | None = None):
    """``noise`` validated: ``None`` (estimate), a float sigma or a float pair ``(a, b)``.

    A pair may be a tuple, list or 1-D numpy array; numbers may be numpy scalars. With the
    image's range ``[lo, hi]`` a pair whose variance ``a * x + b`` is <= 0 over all of it
    is refused. Errors name the value given and what is accepted.
    """
    if noise is None or (isinstance(noise, str) and noise == "auto"):
        return None
    if isinstance(noise, str):
        raise ValueError(f"noise {noise!r} not understood; use {_NOISE_ACCEPTED}.")
    if isinstance(noise, NoiseModel):
        return (noise,)
    if isinstance(noise, tuple | list) and noise and isinstance(noise[0], NoiseModel):
        if not all(isinstance(m, NoiseModel) for m in noise):
            raise TypeError(
                f"noise: a sequence of noise models must hold NoiseModels only, got "
                f"{[type(m).__name__ for m in noise]}; accepted: {_NOISE_ACCEPTED}."
            )
        return tuple(noise)
    if isinstance(noise, tuple | list | np.ndarray) and np.ndim(noise) >= 1:
        if np.ndim(noise) != 1 or len(noise) != 2:
            raise ValueError(
                f"noise={noise!r}: a Poisson-Gaussian pair is (a, b), two numbers; accepted: "
                f"{_NOISE_ACCEPTED}."
            )
        if not all(_is_real(v) for v in noise):
            raise TypeError(
                f"noise={noise!r}: (a, b) must be two numbers; accepted: {_NOISE_ACCEPTED}."
            )
        a, b = float(noise[0]), float(noise[1])
        if not (np.isfinite(a) and np.isfinite(b)) or a < 0:
            raise ValueError(
                f"noise={noise!r}: Poisson-Gaussian (a, b) needs finite a >= 0 and finite b; "
                f"accepted: {_NOISE_ACCEPTED}."
            )
        if lo is not None and max(a * lo + b, a * hi + b) <= 0:
            raise ValueError(
                f"noise={noise!r}: the variance a * x + b is <= 0 over the image's whole "
                f"range [{lo:.6g}, {hi:.6g}]; it must be positive somewhere."
            )
        return (a, b)
    if isinstance(noise, np.ndarray) and noise.ndim == 0:
        noise = noise[()]
    if not _is_real(noise):
        raise TypeError(
            f"noise={noise!r} ({type(noise).__name__}) is not understood; accepted: "
            f"{_NOISE_ACCEPTED}."
        )
    s = float(noise)
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"noise sigma must be a finite number >= 0, got {noise!r}.")
    return s


def _noise_model(p: Prepared, noise):
    """``(std_fn, desc)``: ``std_fn(x)`` is the per-channel noise std for ``x``
    ``(C, 1, h, w)`` (the plane or any window of it, normalised like ``p``), in normalised
    units; ``desc`` describes the model in input units. Estimated models are fitted on
    ``p`` (a whole plane)."""
    x = p.x
    if noise is None or (isinstance(noise, str) and noise == "auto"):
        if min(x.shape[-2:]) < 8:  # too small for calibrate: the finest Haar details
            s = [estimate_awgn(x[c]) for c in range(x.shape[0])]
            desc = {
                "model": "awgn",
                "sigma": [v * p.scale for v in s],
                "estimated": "Haar MAD per channel (image under 8x8 pixels)",
            }
            t = torch.tensor(s, dtype=x.dtype).view(-1, 1, 1, 1).clamp_min(1e-6)
            return (lambda xw: t.to(xw)), desc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a noiseless channel: its std is floored below
            # x[c]: (1, H, W), or (k, h, w) crops of a big plane (Stack.calibration_sample)
            models = [calibrate(x[c].cpu().numpy()) for c in range(x.shape[0])]
        inp = [m.normalised(-p.offset / p.scale, 1.0 / p.scale) for m in models]  # input units
        how = "pkn.noise.calibrate per channel (marginal variance a * x + b)"
        return _model_std(x, models, inp, how)
    given = check_noise(noise)
    if isinstance(given, tuple) and isinstance(given[0], NoiseModel):
        C = x.shape[0]
        if len(given) not in (1, C):
            raise ValueError(
                f"noise: {len(given)} noise models for an image of {C} channels; give one "
                f"for every channel or one per channel."
            )
        inp = list(given) * C if len(given) == 1 else list(given)
        models = [m.normalised(p.offset, p.scale) for m in inp]  # normalised units
        std_fn, desc = _model_std(x, models, inp, None)
        return std_fn, {**desc, "given": "NoiseModel (pkn.calibrate)"}
    if isinstance(given, tuple):
        a0, b0 = given
        a, b = a0 / p.scale, b0 / p.scale**2
        off = p.offset / p.scale  # variance a*x + b in input units -> normalised units
        desc = {"model": "poisson-gaussian", "a": a0, "b": b0, "estimated": False}
        return (lambda xw: noise_std_map(xw, (a, b + a * off))), desc
    desc = {"model": "awgn", "sigma": given, "estimated": False}
    return (lambda xw: noise_std_map(xw, given / p.scale)), desc


def _std_fn(models, dtype=None):
    """``std_fn(x)``: the per-channel noise std of ``x`` ``(C, 1, h, w)`` (normalised) for
    noise models in normalised units: one number per channel for AWGN, else maps."""
    if all(m.kind == "awgn" for m in models):
        t = torch.tensor([m.std_at_mean for m in models], dtype=dtype)
        t = t.view(-1, 1, 1, 1).clamp_min(1e-6)
        return lambda xw: t.to(xw)

    def std_fn(xw):
        H, W = xw.shape[-2:]
        return torch.cat(
            [noise_std_map(xw[c : c + 1], m).expand(1, 1, H, W) for c, m in enumerate(models)]
        )

    return std_fn


def _model_std(x, models, inp, how: str | None):
    """``(std_fn, desc)`` from per-channel noise models in normalised (``models``) and
    input units (``inp``); ``how`` they were estimated (None: given by the caller)."""
    return _std_fn(models, x.dtype), describe_models(inp, how)


def describe_models(inp, how: str | None = None) -> dict:
    """The description (as ``Restoration.info["noise"]``) of per-channel noise models in
    input units; ``how`` they were estimated (None: given by the caller)."""
    desc = {
        "model": "awgn" if all(m.kind == "awgn" for m in inp) else "poisson-gaussian",
        "sigma": [m.std_at_mean for m in inp],  # marginal std at each channel's mean
        "estimated": how or False,
        "rho": [list(m.rho) for m in inp],
        "correlation_length": [m.length for m in inp],
        "correlation": [_corr_list(m) for m in inp],
    }
    if desc["model"] == "poisson-gaussian":
        desc["a"] = [m.a for m in inp]
        desc["b"] = [m.b for m in inp]
    return desc


def _corr_list(m) -> list:
    """A noise model's ``(5, 5)`` correlation coefficients as nested lists (for ``info``)."""
    return np.round(np.asarray(m.correlation, np.float64), 4).tolist()


def correlation_of(desc: dict, plane: int = 0) -> np.ndarray | None:
    """The per-channel noise correlation ``(C, 5, 5)`` a noise description holds (plane
    ``plane``'s when the noise was estimated per plane), for the models that take it: the
    estimated or given NoiseModels'; ``None`` for a sigma or ``(a, b)`` given (white)."""
    if desc.get("scope") == "plane" and "planes" in desc:
        desc = desc["planes"][plane]
    c = desc.get("correlation")
    return None if c is None else np.asarray(c, np.float64)


def _noise(p: Prepared, noise):
    """Per-channel noise std maps of ``p`` in normalised units, and a description."""
    std_fn, desc = _noise_model(p, noise)
    return std_fn(p.x), desc


def estimate_noise(image, channel_axis: int | None = None, per_plane: bool = False) -> dict:
    """The noise model :func:`restore` would use for ``image`` with ``noise=None``.

    Returns the same description as ``Restoration.info["noise"]``: ``{"model": "awgn",
    "sigma": [per channel], ...}`` or ``{"model": "poisson-gaussian", "a": ..., "b": ...}``,
    in the input's units, with how it was estimated. Stacks ``(..., y, x)``: all planes
    pooled (``"scope": "stack"``) unless ``per_plane``.
    """
    return stack_noise(Stack(image, channel_axis, per_plane), None)[1]


def check_layout(shape: tuple, channel_axis) -> int | None:
    """The channel axis (non-negative, or None) of an image of ``shape``, or an error: at
    least 2-D, a valid ``channel_axis``, and no last axis of 3 or 4 entries without one
    (RGB read as planes of 3-pixel-wide images)."""
    if len(shape) < 2:
        raise ValueError(f"image has shape {shape}; need (..., y, x) with at least 2-D.")
    ca = _check_channel_axis(channel_axis, len(shape))
    if ca is None and len(shape) >= 3 and shape[-1] in (3, 4):
        raise ValueError(
            f"image has shape {shape}: the last axis (x) has {shape[-1]} entries. "
            "If it holds colour channels pass channel_axis=-1; leading axes other than "
            "channel_axis are planes (z, t, ...) of (y, x) images."
        )
    return ca


def _check_channel_axis(channel_axis, ndim: int) -> int | None:
    """``channel_axis`` as a non-negative axis of an ``ndim``-D image, or a ValueError
    naming the value and the accepted range."""
    if channel_axis is None:
        return None
    ok = isinstance(channel_axis, int | np.integer) and not isinstance(
        channel_axis, bool | np.bool_
    )
    if ndim < 3:
        raise ValueError(
            f"channel_axis={channel_axis!r} needs an image with >= 3 dimensions (channels "
            f"plus y, x), got a {ndim}-D image."
        )
    if not ok or not -ndim <= channel_axis < ndim:
        raise ValueError(
            f"channel_axis must be an integer in [{-ndim}, {ndim - 1}] for a {ndim}-D "
            f"image, got {channel_axis!r}."
        )
    return int(channel_axis) % ndim


#: Largest magnitude of an image value: pkn works in float32 (maps, noise variances).
MAX_VALUE = 1e30
#: The noise of planes (or stacks) over this many pixels per channel is calibrated on
#: crops spread over them totalling at most this many (a few hundred thousand pixels give
#: a good estimate, see :func:`pkn.noise.calibrate`): bounded time and memory.
CAL_PIXELS = 1 << 22
_CAL_SIDE = 512


def _cal_crops(n: int, H: int, W: int) -> list[tuple[int, int, int]]:
    """``(plane, y0, x0)`` of the ``_CAL_SIDE``-square crops, spread evenly over ``n``
    planes of ``H x W``, that :meth:`Stack.calibration_sample` takes."""
    s = min(_CAL_SIDE, H, W)
    k = max(1, CAL_PIXELS // (s * s))
    per = max(1, -(-k // n))  # crops per plane (planes spread evenly when k < n)
    planes = np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))
    g = max(1, int(np.ceil(np.sqrt(per))))
    ys = np.linspace(0, H - s, g).round().astype(int)
    xs = np.linspace(0, W - s, g).round().astype(int)
    out = [(int(i), int(y), int(x)) for i in planes for y in ys for x in xs]
    return out[: max(k, len(planes))]


def as_image(image) -> np.ndarray:
    """``image`` as a numpy array of a supported dtype (a view where possible), or a
    TypeError/ValueError naming what was given and what is accepted.

    Masked arrays are refused if any pixel is masked (the mask would be lost); arrays in a
    non-native byte order (e.g. big-endian ``'>u2'``) are converted to native order.
    """
    if isinstance(image, np.ma.MaskedArray):
        n = int(np.ma.getmaskarray(image).sum())
        if n:
            raise ValueError(
                f"image is a masked array with {n} masked pixel(s); pkn.restore does not "
                "honour masks. Fill them first (image.filled(value)) or pass image.data "
                "to restore every pixel."
            )
        image = np.ma.getdata(image)
    a = np.asarray(image)
    native = a.dtype.newbyteorder("=") if a.dtype.byteorder not in ("=", "|") else a.dtype
    if native not in _DTYPES:
        raise TypeError(
            f"image dtype {a.dtype} is not supported; use uint8, uint16, float32 or float64."
        )
    if native != a.dtype:
        a = a.astype(native)  # a native copy: torch and the filters need it
    return a


class Stack:
    """A validated ``(..., [C,] H, W)`` image as planes, without a working copy.

    ``a`` is a view of the input with the channel axis (if any) moved just before
    ``(H, W)``: ``lead + (C, H, W)``. :meth:`plane` returns one plane normalised to the
    network's working range as a :class:`Prepared` (``x`` ``(C, 1, H, W)``), :meth:`window`
    a window of one. ``offset``/``scale`` hold one value per plane (all equal unless
    ``per_plane``), or the ``normalisation=(offset, scale)`` given (one plane of a larger
    stack restored as the whole stack would be).
    """

    def __init__(self, image, channel_axis=None, per_plane: bool = False, normalisation=None):
        if not isinstance(per_plane, bool | np.bool_):
            raise ValueError(f"per_plane must be True or False, got {per_plane!r}.")
        if normalisation is not None:
            ok = (
                isinstance(normalisation, tuple | list)
                and len(normalisation) == 2
                and all(_is_real(v) and np.isfinite(float(v)) for v in normalisation)
                and float(normalisation[1]) > 0
            )
            if not ok:
                raise ValueError(
                    f"normalisation must be (offset, scale): two finite numbers with scale "
                    f"> 0 (as Restoration.info['normalisation']), got {normalisation!r}."
                )
        a = as_image(image)
        ca = check_layout(a.shape, channel_axis)
        self.shape, self.ndim, self.channel_axis = a.shape, a.ndim, ca
        a = a[..., None, :, :] if ca is None else np.moveaxis(a, ca, -3)
        self.a = a
        self.lead = tuple(a.shape[:-3])
        self.n = int(np.prod(self.lead, dtype=np.int64))
        if a.size == 0:
            raise ValueError(f"image is empty (shape {self.shape}).")
        if min(a.shape[-2:]) < 2:
            raise ValueError(f"image is {a.shape[-2]}x{a.shape[-1]} pixels; need at least 2x2.")
        self.per_plane = bool(per_plane)
        self.out_dtype = np.float64 if a.dtype == np.float64 else np.float32
        if a.dtype.kind == "f":
            for i in range(self.n):
                r = self.raw(i)
                lo, hi = float(r.min()), float(r.max())  # NaN propagates; no temporaries
                if not (np.isfinite(lo) and np.isfinite(hi)):
                    bad = int(np.count_nonzero(~np.isfinite(r)))
                    where = f" (plane {self.index(i)})" if self.lead else ""
                    raise ValueError(
                        f"image contains NaN or Inf values ({bad} pixel(s){where}); replace "
                        "them first (e.g. np.nan_to_num)."
                    )
                if max(abs(lo), abs(hi)) > MAX_VALUE:
                    raise ValueError(
                        f"image values must lie within +-{MAX_VALUE:.0e} (pkn works in "
                        f"float32), got values in [{lo:.6g}, {hi:.6g}]. Rescale the image "
                        "(e.g. divide by its maximum) and scale the result back."
                    )
        self.offset, self.scale = self._normalisation(normalisation)

    def _normalisation(self, given=None) -> tuple[list, list]:
        """``(offsets, scales)`` per plane: ``given``, or from the 0.1 / 99.9 percentiles
        of each plane (``per_plane``) or of all planes; over a regular subsample, or for
        big planes and stacks (:meth:`big`) over the noise calibration crops, so that a
        lazy array reads no more than those (:mod:`pkn._lazy` follows these rules)."""
        if given is not None:
            rng = [(float(given[0]), float(given[1]))] * self.n
        elif self.per_plane or self.n == 1:
            rng = [
                self._range(
                    self.calibration_sample(i) if self.big(False) else self.read(self.raw(i))[None]
                )
                for i in range(self.n)
            ]
        else:
            rng = [self._range(self.calibration_sample() if self.big(True) else self._sub())]
            rng = rng * self.n
        return [r[0] for r in rng], [r[1] for r in rng]

    def index(self, i: int) -> tuple:
        """The leading-axes index of flat plane ``i``."""
        return tuple(int(j) for j in np.unravel_index(i, self.lead)) if self.lead else ()

    def raw(self, i: int) -> np.ndarray:
        """Plane ``i`` as a ``(C, H, W)`` view of the input."""
        return self.a[self.index(i)]

    @staticmethod
    def read(piece) -> np.ndarray:
        """A piece of :meth:`raw` as numpy: the view itself here; a lazy stack
        (:class:`pkn._lazy._LazyStack`) reads just that piece."""
        return np.asarray(piece)

    def _sub(self) -> np.ndarray:
        """A regular subsample of all planes (about 1 M values per channel)."""
        H, W = self.a.shape[-2:]
        step = max(1, int(np.sqrt(self.n * H * W / 1e6)))
        return np.stack([self.read(self.raw(i)[:, ::step, ::step]) for i in range(self.n)])

    def _range(self, planes: np.ndarray) -> tuple[float, float]:
        """``(offset, scale)`` from the 0.1 and 99.9 percentiles, as :func:`prepare`:
        ``planes`` is one plane ``(1, C, H, W)`` or a subsample of all."""
        wd = np.float64 if self.out_dtype is np.float64 else np.float32
        H, W = planes.shape[-2:]
        step = max(1, int(np.sqrt(H * W / 1e6))) if len(planes) == 1 else 1
        lo, hi = (
            float(v) for v in np.percentile(planes[..., ::step, ::step].astype(wd), [0.1, 99.9])
        )
        if not hi > lo:
            if len(planes) == 1:
                lo, hi = float(planes.min()), float(planes.max())
            else:  # the whole stack, plane by plane
                lo = min(float(self.raw(i).min()) for i in range(self.n))
                hi = max(float(self.raw(i).max()) for i in range(self.n))
        return lo, (hi - lo if hi > lo else 1.0)

    def plane(self, i: int, device=None) -> Prepared:
        """Plane ``i`` normalised: a :class:`Prepared` with ``x`` ``(C, 1, H, W)``."""
        wd = np.float64 if self.out_dtype is np.float64 else np.float32
        lo, s = self.offset[i], self.scale[i]
        x = torch.from_numpy(((self.read(self.raw(i)).astype(wd) - lo) / s)[:, None].copy())
        if device is not None:
            x = x.to(device)
        ca = None if self.channel_axis is None else 0
        return Prepared(x, lo, s, ca, 2 if ca is None else 3, self.out_dtype)

    def big(self, pooled: bool) -> bool:
        """Whether a plane (``pooled``: the whole stack) has more than :data:`CAL_PIXELS`
        pixels per channel, so that its noise is calibrated on crops."""
        H, W = self.a.shape[-2:]
        return (self.n if pooled else 1) * H * W > CAL_PIXELS

    def calibration_sample(self, i: int | None = None) -> np.ndarray:
        """Crops ``(k, C, s, s)`` (input units) for the noise calibration of plane ``i``,
        or of the whole stack (``i=None``): :func:`_cal_crops`."""
        H, W = self.a.shape[-2:]
        crops = _cal_crops(1 if i is not None else self.n, H, W)
        s = min(_CAL_SIDE, H, W)
        return np.stack(
            [
                self.read(self.raw(j if i is None else i)[:, y : y + s, x : x + s])
                for j, y, x in crops
            ]
        )

    def calibration_plane(self, i: int, device=None) -> Prepared:
        """Plane ``i`` normalised as :meth:`plane` for the noise estimate: the plane itself,
        or for a big one (:meth:`big`) its crops as ``x`` ``(C, k, s, s)``."""
        if not self.big(False):
            return self.plane(i, device)
        wd = np.float64 if self.out_dtype is np.float64 else np.float32
        lo, s = self.offset[i], self.scale[i]
        a = self.calibration_sample(i).astype(wd)  # (k, C, s, s)
        x = torch.from_numpy(((a - lo) / s).transpose(1, 0, 2, 3).copy())
        ca = None if self.channel_axis is None else 0
        return Prepared(x, lo, s, ca, 2 if ca is None else 3, self.out_dtype)

    def window(self, i: int, box: tuple[int, int, int, int], device=None) -> Prepared:
        """Window ``box = (y0, y1, x0, x1)`` of plane ``i``, normalised like the plane."""
        wd = np.float64 if self.out_dtype is np.float64 else np.float32
        lo, s = self.offset[i], self.scale[i]
        y0, y1, x0, x1 = box
        raw = self.read(self.raw(i)[:, y0:y1, x0:x1])
        x = torch.from_numpy(((raw.astype(wd) - lo) / s)[:, None])
        if device is not None:
            x = x.to(device)
        ca = None if self.channel_axis is None else 0
        return Prepared(x, lo, s, ca, 2 if ca is None else 3, self.out_dtype)


def stack_noise(st: Stack, noise, planes: list | None = None):
    """The noise of a stack: ``(std_of, desc)`` with ``std_of(i, p)`` the per-channel
    noise std of plane ``i`` in normalised units, for ``p`` a :class:`Prepared` of that
    plane or of any window of it (:meth:`Stack.window`).

    One plane: exactly :func:`_noise`. ``per_plane``: :func:`_noise` on every plane.
    Otherwise an estimated model pools all planes (per channel) and a given noise is
    the same for every plane.
    """
    estimated = noise is None or (isinstance(noise, str) and noise == "auto")
    if not estimated:
        lo = min(st.offset)
        hi = max(o + s for o, s in zip(st.offset, st.scale, strict=True))
        check_noise(noise, lo, hi)
    if st.n == 1:
        std_fn, desc = _noise_model(planes[0] if planes else st.calibration_plane(0), noise)
        return (lambda i, p: std_fn(p.x)), desc
    if st.per_plane:
        res = [_noise_model(st.calibration_plane(i), noise) for i in range(st.n)]
        desc = (
            {"scope": "plane", "planes": [d for _, d in res]}
            if estimated
            else dict(res[0][1], scope="plane")
        )
        return (lambda i, p: res[i][0](p.x).to(p.x.device)), desc
    if not estimated:
        desc = dict(_noise_model(st.window(0, (0, 2, 0, 2)), noise)[1], scope="stack")
        return (lambda i, p: _noise(p, noise)[0]), desc
    C, (H, W) = st.a.shape[-3], st.a.shape[-2:]
    lo, s = st.offset[0], st.scale[0]
    if min(H, W) < 8:
        sig = [estimate_awgn(st.a[..., c, :, :].astype(np.float64)) for c in range(C)]
        desc = {
            "model": "awgn",
            "sigma": sig,
            "estimated": "Haar MAD per channel, planes pooled (planes under 8x8 pixels)",
            "scope": "stack",
        }
        t = torch.tensor([v / s for v in sig]).view(-1, 1, 1, 1).clamp_min(1e-6)
        return (lambda i, p: t.to(p.x)), desc
    inp = pooled_models(st)
    std_fn = _std_fn([m.normalised(lo, s) for m in inp])
    return (lambda i, p: std_fn(p.x)), {**describe_models(inp, POOLED), "scope": "stack"}


#: How a stack's pooled noise models were estimated (``info["noise"]["estimated"]``).
POOLED = "pkn.noise.calibrate per channel, planes pooled (variance a * x + b)"


def pooled_models(st: Stack) -> list:
    """The per-channel noise models (input units) of all of ``st``'s planes pooled, as
    :func:`pkn.restore` estimates them for a stack: on the calibration crops of a big
    stack (:meth:`Stack.big`), else on every pixel."""
    C = st.a.shape[-3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a noiseless channel: its std is floored
        if st.big(True):  # crops spread over the planes
            sample = st.calibration_sample()
            return [calibrate(sample[:, c]) for c in range(C)]
        return [calibrate(st.read(st.a[..., c, :, :])) for c in range(C)]
