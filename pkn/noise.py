"""Noise models and their calibration from a single image or stack.

The model is the per-pixel (marginal) variance ``a * x + b`` in the input's units, the
usual one for fluorescence microscopy and camera raw data (photon shot noise plus read
noise, Poisson-Gaussian; ``a = 0, b = sigma^2`` is additive white Gaussian noise,
AWGN), plus the noise's spatial correlation (binned or demosaicked data).

:func:`calibrate` measures it (see :mod:`pkn._noise_stats` for how): it is right for
AWGN, Poisson-Gaussian noise from a few photons per pixel to high counts, 8- and 16-bit
data with a camera offset, and spatially correlated noise (footprint up to 3x3 pixels,
as binning and demosaicking make): validated against the truth by ``python -m
benchmarks noise`` (synthetic cases and the real W2S, SRDTrans and 16-bit bacteria
pairs), the marginal std at the mean intensity within 15% of the truth in every case.
:func:`estimate_awgn` and :func:`estimate_poisson_gaussian` are its older, thin faces;
:func:`noise_std_map` turns a model into a per-pixel std map.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from ._noise_stats import TILE, Measurement, measure

__all__ = [
    "NoiseModel",
    "calibrate",
    "estimate_awgn",
    "estimate_poisson_gaussian",
    "noise_std_map",
]

_MAD_TO_STD = 1.4826  # 1 / Phi^-1(3/4)
_STD_FLOOR = 1e-6
_MAX_POOLED_TILES = 1 << 18  # a pooled stack uses at most this many 8x8 tiles (16.7 Mpx)
_CAMERA_KEYS = ("gain", "offset", "read_noise")


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True, eq=False)
class NoiseModel:
    """Per-pixel noise variance ``a * x + b`` (input units) and spatial correlation.

    Attributes
    ----------
    a, b : float
        Variance ``a * x + b`` at intensity ``x``, in the input's units (``a`` in input
        units, ``b`` in units squared). AWGN: ``a = 0``, ``b = sigma^2``.
    kind : str
        ``"awgn"`` (no significant signal dependence) or ``"poisson-gaussian"``.
    mean : float
        Mean intensity of the data the model describes.
    correlation : numpy.ndarray
        ``(5, 5)`` correlation coefficients of the noise at lags ``-2..2`` (``[2, 2]``
        is 1; ``[2, 3]`` lag 1 along x, ``[3, 2]`` lag 1 along y; the two diagonals
        are averaged). The identity for white noise; read-only.
    length : int
        The lag (pixels, 0..2) beyond which the correlation is below 0.1; 0 for white.
    correlated : bool
        Whether the correlation was significant (else ``correlation`` is the identity).
    per_plane : tuple of NoiseModel or None
        One model per plane (leading axes flattened) when ``per_plane=True``.
    source : str
        ``"estimated"`` or ``"camera"`` (``a, b`` from the camera terms).
    details : dict
        Provenance: the measured bins, tile counts, the HH-to-marginal variance factor
        and its standard error, ...
    """

    a: float
    b: float
    kind: str
    mean: float
    correlation: np.ndarray = field(repr=False)
    length: int = 0
    correlated: bool = False
    per_plane: tuple[NoiseModel, ...] | None = field(default=None, repr=False)
    source: str = "estimated"
    details: dict = field(default_factory=dict, repr=False)

    def var_at(self, x):
        """Marginal variance at intensity ``x`` (scalar or array). Where ``a * x + b``
        drops below a millionth of the variance at the mean (below a camera offset) that
        floor is returned instead, so the result is never <= 0 unless the model is zero."""
        floor = 1e-6 * max(self.a * self.mean + self.b, 0.0)
        v = np.maximum(self.a * np.asarray(x, dtype=float) + self.b, floor)
        return float(v) if v.ndim == 0 else v

    def std_at(self, x):
        """Marginal standard deviation at intensity ``x`` (scalar or array)."""
        v = np.sqrt(self.var_at(x))
        return float(v) if np.ndim(v) == 0 else v

    @property
    def std_at_mean(self) -> float:
        """Marginal standard deviation at the data's mean intensity."""
        return self.std_at(self.mean)

    @property
    def sigma(self) -> float | None:
        """The AWGN standard deviation ``sqrt(b)``; None for Poisson-Gaussian noise."""
        return math.sqrt(max(self.b, 0.0)) if self.kind == "awgn" else None

    @property
    def rho(self) -> tuple[float, float]:
        """Lag-1 correlation of the noise along y and along x."""
        return float(self.correlation[3, 2]), float(self.correlation[2, 3])

    def normalised(self, offset: float, scale: float) -> NoiseModel:
        """The same noise for ``(x - offset) / scale``: ``a / scale`` and
        ``(a * offset + b) / scale^2`` (correlation unchanged)."""
        if not (math.isfinite(offset) and math.isfinite(scale) and scale > 0):
            raise ValueError(
                f"normalised needs a finite offset and a finite scale > 0, got offset="
                f"{offset!r}, scale={scale!r}."
            )
        pp = self.per_plane
        return replace(
            self,
            a=self.a / scale,
            b=(self.a * offset + self.b) / scale**2,
            mean=(self.mean - offset) / scale,
            per_plane=None if pp is None else tuple(m.normalised(offset, scale) for m in pp),
        )

    def as_dict(self) -> dict:
        """JSON-friendly description (provenance)."""
        d = {
            "model": self.kind,
            "a": self.a,
            "b": self.b,
            "std_at_mean": self.std_at_mean,
            "mean": self.mean,
            "rho_y": self.rho[0],
            "rho_x": self.rho[1],
            "correlation": self.correlation.round(4).tolist(),
            "correlation_length": self.length,
            "correlated": self.correlated,
            "source": self.source,
            **self.details,
        }
        if self.kind == "awgn":
            d["sigma"] = self.sigma
        if self.per_plane is not None:
            d["per_plane"] = [m.as_dict() for m in self.per_plane]
        return d


# --------------------------------------------------------------------------- checks
def _check_image(image, name: str = "image") -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.dtype == bool:
        raise TypeError(
            f"{name} is a boolean array; the noise of a mask is undefined. "
            "Pass the intensities (integer or float)."
        )
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{name} has dtype {a.dtype}; use an integer or float array.")
    if a.ndim < 2:
        raise ValueError(
            f"{name} has shape {a.shape}; need an image with at least 2 dimensions (..., H, W)."
        )
    return a


def _check_finite(a: np.ndarray, name: str = "image") -> None:
    if np.issubdtype(a.dtype, np.floating):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise ValueError(
                f"{name} contains {bad} NaN or Inf value(s); replace or crop them first."
            )


def _is_number(v) -> bool:
    """A real number (numpy scalars and one-element real tensors too), not a bool."""
    if isinstance(v, torch.Tensor):
        return v.numel() == 1 and v.dtype != torch.bool and not v.is_complex()
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(
        v, bool | np.bool_
    )


def _check_bins(bins) -> int:
    if isinstance(bins, bool | np.bool_) or not isinstance(bins, int | np.integer) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2 (intensity bins), got {bins!r}.")
    return int(bins)


def _check_camera(camera) -> tuple[float, float, dict]:
    if not isinstance(camera, dict):
        raise TypeError(
            f"camera must be a dict(gain=..., offset=..., read_noise=...), got {camera!r}."
        )
    unknown = sorted(set(camera) - set(_CAMERA_KEYS))
    if unknown:
        raise ValueError(
            f"camera has unknown key(s) {unknown}; accepted: {', '.join(_CAMERA_KEYS)} "
            "(gain in counts per photoelectron, offset in counts, read_noise in counts)."
        )
    if "gain" not in camera:
        raise ValueError("camera needs 'gain' (counts per photoelectron, > 0).")
    vals = {}
    for k, default in (("gain", None), ("offset", 0.0), ("read_noise", 0.0)):
        v = camera.get(k, default)
        ok = isinstance(v, int | float | np.integer | np.floating) and not isinstance(
            v, bool | np.bool_
        )
        if not ok or not math.isfinite(float(v)):
            raise ValueError(f"camera {k} must be a finite number, got {v!r}.")
        vals[k] = float(v)
    if vals["gain"] <= 0:
        raise ValueError(
            f"camera gain must be > 0 (counts per photoelectron), got {vals['gain']!r}."
        )
    if vals["read_noise"] < 0:
        raise ValueError(f"camera read_noise must be >= 0 (counts), got {vals['read_noise']!r}.")
    a = vals["gain"]
    b = vals["read_noise"] ** 2 - vals["gain"] * vals["offset"]
    return a, b, vals


def _planes(a: np.ndarray) -> np.ndarray:
    """``(P, H, W)`` view of ``(..., H, W)``."""
    return a.reshape(-1, *a.shape[-2:])


# --------------------------------------------------------------------------- calibrate
def _length(rho: np.ndarray) -> int:
    L = 0
    for d in (1, 2):
        ring = np.abs(rho[2 - d : 3 + d, 2 - d : 3 + d]).copy()
        ring[1:-1, 1:-1] = 0.0
        if ring.max() >= 0.1:
            L = d
    return L


def _model(meas: Measurement, mean: float, camera) -> NoiseModel:
    c = meas.c
    details = {
        "estimated": "8x8-tile dilated Haar energies: flattest tiles per intensity bin, "
        "robust line fit, correlation from 16 dilations",
        "hh_to_marginal": c,
        "hh_to_marginal_se": meas.c_se if math.isfinite(meas.c_se) else None,
        "n_tiles": meas.n_tiles,
        "bins": [
            {"intensity": x, "hh_variance": v, "tiles": k, "inlier": ok}
            for x, v, k, ok in meas.bins
        ],
    }
    if camera is not None:
        a, b, vals = camera
        return NoiseModel(
            a,
            b,
            "poisson-gaussian",
            mean,
            _readonly(meas.rho),
            _length(meas.rho),
            meas.correlated,
            None,
            "camera",
            {**details, "camera": vals},
        )
    a, b = c * meas.a_hh, c * meas.b_hh
    kind = "poisson-gaussian"
    span = meas.hi - meas.lo
    v_mean = a * mean + b
    insignificant = math.isfinite(meas.a_se) and meas.a_hh <= 2.0 * meas.a_se
    if meas.zero or a * span <= 0.1 * max(v_mean, 1e-300) or insignificant:
        # no real signal dependence: the variance at the mean, everywhere
        kind, a, b = "awgn", 0.0, max(v_mean, 0.0)
    return NoiseModel(
        float(a),
        float(b),
        kind,
        mean,
        _readonly(meas.rho),
        _length(meas.rho),
        meas.correlated,
        None,
        "estimated",
        details,
    )


def _readonly(r: np.ndarray) -> np.ndarray:
    r = np.array(r, dtype=float)
    r.setflags(write=False)
    return r


def _calibrate_planes(planes: np.ndarray, bins: int, per_plane: bool, camera) -> NoiseModel:
    P = planes.shape[0]
    tiles_per_plane = (planes.shape[1] // TILE) * (planes.shape[2] // TILE)
    use = np.arange(P)
    if P > 1 and P * tiles_per_plane > _MAX_POOLED_TILES:
        k = max(1, _MAX_POOLED_TILES // tiles_per_plane)
        use = np.unique(np.linspace(0, P - 1, k).round().astype(int))
    sub = [np.asarray(planes[i], dtype=np.float64) for i in use]
    mean = float(np.mean([p.mean() for p in sub]))
    meas = measure(sub, bins)
    model = _model(meas, mean, camera)
    if len(use) < P:
        model.details["planes_used"] = [int(i) for i in use]
    if meas.zero:
        warnings.warn(
            "calibrate: the image has no measurable noise (no pixel-to-pixel variation "
            "within 8x8 tiles); the model is zero noise.",
            stacklevel=3,
        )
    if per_plane:
        models = tuple(
            _model(
                measure([np.asarray(planes[i], dtype=np.float64)], bins),
                float(planes[i].mean()),
                camera,
            )
            for i in range(P)
        )
        model = replace(model, per_plane=models)
    return model


def calibrate(
    image,
    *,
    channel_axis: int | None = None,
    per_plane: bool = False,
    camera: dict | list | tuple | None = None,
    bins: int = 16,
) -> NoiseModel | tuple[NoiseModel, ...]:
    """Measure the noise of an image or stack: variance ``a * x + b`` and correlation.

    Parameters
    ----------
    image : array_like or torch.Tensor
        ``(..., H, W)`` integer or float intensities (any units: 8-bit, 16-bit with a
        camera offset, floats). The last two axes are y and x; leading axes (z, t, ...)
        are planes of one stack, pooled into one model unless ``per_plane``. At least
        8x8 pixels per plane (a few hundred thousand pixels give a good estimate).
    channel_axis : int, optional
        Axis of channels (dyes, colours): each gets its own model and a tuple of models
        is returned, in channel order.
    per_plane : bool
        Also fit every plane on its own (``model.per_plane``); the returned model is
        still the pooled one.
    camera : dict, optional
        ``dict(gain=..., offset=..., read_noise=...)`` (gain in counts per
        photoelectron, offset and read noise in counts) gives the variance directly:
        ``gain * (x - offset) + read_noise^2``, i.e. ``a = gain``, ``b = read_noise^2 -
        gain * offset``; only the correlation is measured. With ``channel_axis``, one
        dict for all channels or a sequence of one per channel.
    bins : int
        Number of intensity bins (at most; fewer for small images), >= 2.

    Returns
    -------
    NoiseModel or tuple of NoiseModel
        One model, or one per channel with ``channel_axis``.

    Raises
    ------
    TypeError
        For boolean or non-numeric images, a camera that is not a dict.
    ValueError
        For NaN/Inf values, planes smaller than 8x8, a bad ``channel_axis``, ``bins``,
        ``per_plane`` or camera term; each message names the argument and the value.

    Notes
    -----
    The estimate is the *marginal* variance even for spatially correlated noise (the
    covariance is measured at lags up to 2 and assumed zero beyond: binning and
    demosaicking footprints up to 3x3). Correlation is only reported when it is clearly
    there: the marginal variance exceeds what the finest Haar details show by > 25% and
    > 3 standard errors; weaker correlation costs at most ~12% in the std, and
    anti-correlated noise (sharpened data) is reported white. It needs a few hundred
    8x8 tiles: below ~128x128 pixels per plane the correlation is often missed, and
    below 64x64 the std is within ~30%. Image structure at the pixel scale (dense fine
    texture at high signal-to-noise) cannot be told from noise and inflates it.
    """
    if not isinstance(per_plane, bool | np.bool_):
        raise ValueError(f"per_plane must be True or False, got {per_plane!r}.")
    bins = _check_bins(bins)
    a = _check_image(image)
    if channel_axis is not None:
        ok = isinstance(channel_axis, int | np.integer) and not isinstance(
            channel_axis, bool | np.bool_
        )
        if not ok or not -a.ndim <= channel_axis < a.ndim:
            raise ValueError(
                f"channel_axis must be an integer axis of the {a.ndim}-D image "
                f"(-{a.ndim}..{a.ndim - 1}), got {channel_axis!r}."
            )
        if a.ndim < 3:
            raise ValueError(
                f"channel_axis={channel_axis} needs an image with >= 3 dimensions (channels "
                f"plus H, W), got shape {a.shape}."
            )
        a = np.moveaxis(a, channel_axis, 0)
    if min(a.shape[-2:]) < TILE:
        raise ValueError(
            f"image planes are {a.shape[-2]}x{a.shape[-1]} pixels; calibrate needs at least "
            f"{TILE}x{TILE} (the last two axes are y and x)."
        )
    if a.size == 0:
        raise ValueError(f"image is empty (shape {a.shape}).")
    _check_finite(a)
    if channel_axis is None:
        cam = None if camera is None else _check_camera(camera)
        return _calibrate_planes(_planes(a), bins, bool(per_plane), cam)
    C = a.shape[0]
    if camera is None or isinstance(camera, dict):
        cams = [None if camera is None else _check_camera(camera)] * C
    elif isinstance(camera, list | tuple):
        if len(camera) != C:
            raise ValueError(
                f"camera has {len(camera)} entries but the image has {C} channels; give "
                "one dict for all or one per channel."
            )
        cams = [_check_camera(c) for c in camera]
    else:
        raise TypeError(
            f"camera must be a dict(gain=..., offset=..., read_noise=...) or a sequence of "
            f"them (one per channel), got {camera!r}."
        )
    return tuple(_calibrate_planes(_planes(a[c]), bins, bool(per_plane), cams[c]) for c in range(C))


# --------------------------------------------------------------------------- older API
def _haar_hh(x: torch.Tensor) -> torch.Tensor:
    """Diagonal Haar details of 2x2 blocks: ``(..., H//2, W//2)``."""
    H, W = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :H, :W]
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2


def estimate_awgn(image) -> float:
    """Noise standard deviation of an image (AWGN sigma), all leading planes pooled.

    Parameters
    ----------
    image : array_like or torch.Tensor
        ``(..., H, W)``.

    Returns
    -------
    float
        The marginal noise std at the mean intensity from :func:`calibrate` (for AWGN
        the sigma; for signal-dependent noise the std at the mean). Planes smaller than
        8x8 (down to 2x2) fall back to ``1.4826 * median(|HH|)`` of 2x2 Haar blocks.
    """
    a = _check_image(image)
    if min(a.shape[-2:]) < 2:
        raise ValueError(f"need at least 2x2 pixels to estimate noise, got {a.shape}.")
    _check_finite(a)
    if min(a.shape[-2:]) < TILE:
        hh = _haar_hh(torch.from_numpy(np.asarray(a, dtype=np.float64)))
        return float(_MAD_TO_STD * hh.abs().median())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a noiseless image: 0.0 is the answer
        return float(calibrate(a).std_at_mean) if _has_noise(a) else 0.0


def _has_noise(a: np.ndarray) -> bool:
    p = _planes(a)
    return bool(np.any(p[:, 1:, :] != p[:, :-1, :]) or np.any(p[:, :, 1:] != p[:, :, :-1]))


def estimate_poisson_gaussian(image, *, bins: int = 16) -> tuple[float, float]:
    """Estimate ``(a, b)`` of Poisson-Gaussian noise with variance ``a * x + b``.

    A thin face of :func:`calibrate` (all leading planes pooled): the marginal
    variance model in the input's units; ``(0.0, b)`` when the noise does not depend
    on the signal, ``(0.0, 0.0)`` for a noiseless image.
    """
    a = _check_image(image)
    bins = _check_bins(bins)
    if min(a.shape[-2:]) < TILE:
        raise ValueError(
            f"need at least {TILE}x{TILE} pixels to estimate Poisson-Gaussian noise, got {a.shape}."
        )
    _check_finite(a)
    if not _has_noise(a):
        return 0.0, 0.0
    m = calibrate(a, bins=bins)
    return float(m.a), float(m.b)


def noise_std_map(x: torch.Tensor, noise) -> torch.Tensor:
    """Per-pixel noise standard deviation for ``x`` ``(B, 1, H, W)``.

    Parameters
    ----------
    x : torch.Tensor
        The noisy image.
    noise : float, (float, float), NoiseModel or torch.Tensor
        AWGN sigma, Poisson-Gaussian ``(a, b)`` or a :class:`NoiseModel` in the units of
        ``x`` (the signal is taken as the noisy image smoothed by a 5x5 box, so the map
        itself is not noisy), or a ready map broadcastable to ``x``.

    Returns
    -------
    torch.Tensor
        ``(B, 1, 1, 1)`` for AWGN, ``(B, 1, H, W)`` otherwise; at least 1e-6.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4:
        raise TypeError(
            "x must be a floating torch.Tensor (B, 1, H, W), got "
            + (
                f"{x.dtype} of shape {tuple(x.shape)}"
                if isinstance(x, torch.Tensor)
                else type(x).__name__
            )
            + "."
        )
    if isinstance(noise, torch.Tensor):
        if noise.dtype == torch.bool or noise.is_complex():
            raise TypeError(f"a noise std map must hold real numbers, got dtype {noise.dtype}.")
        if not bool(torch.isfinite(noise).all()) or bool((noise < 0).any()):
            raise ValueError("a noise std map must be finite and >= 0.")
        try:
            torch.broadcast_shapes(noise.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"noise std map of shape {tuple(noise.shape)} does not broadcast to the "
                f"image's {tuple(x.shape)}."
            ) from None
        return noise.to(x).clamp_min(_STD_FLOOR)
    if isinstance(noise, NoiseModel):
        noise = (noise.a, noise.b) if noise.a > 0 else math.sqrt(max(noise.b, 0.0))
    if isinstance(noise, tuple | list):
        if len(noise) != 2 or not all(_is_number(v) for v in noise):
            raise ValueError(f"Poisson-Gaussian noise is a pair (a, b) of numbers, got {noise!r}.")
        a, b = (float(v) for v in noise)
        if not (math.isfinite(a) and math.isfinite(b)) or a < 0:
            raise ValueError(f"Poisson-Gaussian (a, b) needs finite a >= 0, got {noise!r}.")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                "x contains NaN or Inf values; the Poisson-Gaussian noise std follows the "
                "signal, so replace them first (e.g. torch.nan_to_num)."
            )
        pad = min(2, min(x.shape[-2:]) - 1)
        smooth = x
        if pad > 0:
            mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
            smooth = F.avg_pool2d(F.pad(x, (pad,) * 4, mode=mode), 2 * pad + 1, stride=1)
        return (a * smooth + b).clamp_min(_STD_FLOOR**2).sqrt()
    if not _is_number(noise):
        raise TypeError(
            "noise must be a sigma (a number >= 0), a pair (a, b), a NoiseModel or a std map "
            f"tensor, got {noise!r} ({type(noise).__name__})."
        )
    s = float(noise)
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"the noise sigma must be a finite number >= 0, got {noise!r}.")
    return torch.full((x.shape[0], 1, 1, 1), max(s, _STD_FLOOR), dtype=x.dtype, device=x.device)
