"""Point spread functions for deblurring: import a measured bead PSF, validate a given one.

A deblurring method is only as good as the PSF it is given. A raw bead image is not a PSF:
it carries the camera offset (a flat floor that acts like a box blur), its peak is rarely
in the middle of the crop (an off-centre PSF shifts the output and, for polynomial
reblurring, leaves ghost copies), a 3-D stack has many planes, and its values do not sum
to one. :func:`import_psf` turns a 2-D or 3-D bead image into a PSF;
:func:`check_psf` refuses, with a message saying what to do, a PSF array that would
silently give a wrong result. Pure numpy (plus :func:`skimage.measure.label`), no torch.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np

__all__ = ["PSF", "check_psf", "import_psf"]

#: check_psf: the mean of the outermost ring may reach this fraction of the peak ...
BORDER_PEAK = 0.05
#: ... and a flat floor at that level may hold at most this fraction of the PSF's mass.
BORDER_MASS = 0.15
#: check_psf: the negative values may hold at most this fraction of the positive mass.
NEGATIVE_MASS = 0.05
#: check_psf: the largest distance (px, per axis) of the centre of mass from the centre.
CENTRE_TOLERANCE = 1.0


@dataclass(frozen=True, eq=False)
class PSF:
    """A PSF imported from a bead image by :func:`import_psf`.

    Attributes
    ----------
    array : numpy.ndarray
        The PSF, 2-D float32, odd x odd, non-negative, sums to 1, its peak on the centre
        pixel ``(kh // 2, kw // 2)``. Pass it as ``blur=`` to :func:`pkn.restore`.
    plane : int or None
        The z index of the plane used (3-D input), None for a 2-D input.
    background : float
        The background (camera offset) subtracted, in the units of the input.
    shift : (int, int)
        ``(dy, dx)`` of the bead's peak from the centre ``(H // 2, W // 2)`` of the input
        plane, i.e. how far off centre it was before centring.
    source_shape : tuple of int
        Shape of the input bead image.
    info : dict
        Provenance (JSON-serialisable): how the plane, background, centre and support
        were found, the peak above background, noise and signal-to-noise ratio, and
        whether the support was cut by the image border.
    """

    array: np.ndarray
    plane: int | None
    background: float
    shift: tuple[int, int]
    source_shape: tuple[int, ...]
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------------- helpers
def _as_real_array(value, name: str) -> np.ndarray:
    if isinstance(value, PSF):
        value = value.array
    try:
        a = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a real-valued array, got {type(value).__name__}.") from e
    if a.dtype == bool or not (
        np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    ):
        raise TypeError(
            f"{name} must be a real-valued (integer or float) array, got dtype {a.dtype}."
        )
    return a


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 mean with edge replication (a hot pixel weighs 1/9 of a real peak)."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def _med3(a: np.ndarray) -> np.ndarray:
    """3x3 median with edge replication (removes isolated hot pixels, keeps a bead)."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    return np.median(np.stack([p[i : i + h, j : j + w] for i in range(3) for j in range(3)]), 0)


def _border(a: np.ndarray, width: int) -> np.ndarray:
    """The pixels within ``width`` of the edge of a 2-D array."""
    mask = np.ones(a.shape, bool)
    mask[width:-width, width:-width] = False
    return a[mask]


def _border_stats(plane: np.ndarray) -> tuple[float, float, int]:
    """Median and robust std (1.4826 MAD) of the border frame, and the frame's width."""
    width = max(1, min(plane.shape) // 16)
    ring = _border(plane, width)
    med = float(np.median(ring))
    return med, float(1.4826 * np.median(np.abs(ring - med))), width


def _centroid(k: np.ndarray) -> tuple[float, float]:
    """Centre of mass ``(y, x)`` of a non-negative 2-D array with a positive sum."""
    total = k.sum()
    y = float((k.sum(axis=1) * np.arange(k.shape[0])).sum() / total)
    x = float((k.sum(axis=0) * np.arange(k.shape[1])).sum() / total)
    return y, x


# ---------------------------------------------------------------------- import
def import_psf(bead, *, plane=None, background=None, support=None, threshold=0.01) -> PSF:
    """Turn a 2-D or 3-D bead image into a PSF for deblurring.

    Steps, on a float64 copy (the input is never modified):

    1. **Plane** (3-D ``(z, y, x)`` input): ``plane=k``, or the in-focus plane, the one
       whose 3x3-median peak above its own background (the median of its border frame)
       is highest. The 3x3 median keeps isolated hot pixels from winning.
    2. **Background**: ``background`` (a number, in input units, e.g. the camera offset),
       or the median of the plane's border frame (``max(1, min(H, W) // 16)`` pixels
       wide; the bead should not touch the border). It is subtracted.
    3. **Centre**: the peak is the maximum of the 3x3 median, refined to the brightest
       pixel of its 3x3 neighbourhood; the crop is centred on that pixel (an integer
       shift: the sub-pixel position of the peak, the centroid of its 3x3 neighbourhood,
       is reported in ``info["subpixel_offset"]`` and not interpolated, which would blur
       the PSF).
    4. **Support**: ``support=n`` (odd) crops ``n x n``; otherwise the crop reaches one
       pixel beyond the farthest pixel of the connected region around the peak where
       the 3x3 mean exceeds ``threshold`` times its peak, and at least three standard
       deviations of its noise (an odd square). A support cut
       by the image border is kept (with a warning and ``info["truncated"]``).
    5. Negative values (noise after subtracting the background) are clipped to zero and
       the PSF is normalised to sum 1, float32.
    6. The result is validated by :func:`check_psf`; a failure (e.g. a plane too noisy
       to give a PSF) is a warning and is kept in ``info["check"]``.

    Parameters
    ----------
    bead : array_like
        ``(y, x)`` or ``(z, y, x)`` image of one isolated bead, any real dtype (e.g.
        uint16 with the camera offset). At least 5x5 pixels per plane.
    plane : int, optional
        3-D input only: the z index to use (negative counts from the end).
    background : float, optional
        The value to subtract; default: estimated from the border (see above).
    support : int, optional
        Odd size of the square crop; it must fit around the peak inside the plane.
    threshold : float
        In (0, 1): fraction of the peak that bounds the automatic support (0.01).

    Returns
    -------
    PSF
        ``.array`` is the 2-D float32 PSF (odd x odd, sums to 1, peak at the centre);
        see :class:`PSF` for the other fields.

    Raises
    ------
    TypeError
        ``bead`` is not a real-valued array, or an option has the wrong type.
    ValueError
        Wrong dimensions, non-finite values, an option out of range, no bead above the
        background, or a ``support`` that does not fit.

    Examples
    --------
    >>> import numpy as np
    >>> from pkn.psf import import_psf
    >>> yy, xx = np.mgrid[:64, :64]
    >>> bead = 100 + 5000 * np.exp(-((yy - 40) ** 2 + (xx - 30) ** 2) / 4.0)
    >>> psf = import_psf(bead.astype(np.uint16))
    >>> psf.array.shape, psf.shift, round(psf.background)
    ((11, 11), (8, -2), 100)
    >>> float(psf.array.sum()) == 1.0 or abs(float(psf.array.sum()) - 1) < 1e-6
    True
    """
    a = _as_real_array(bead, "bead")
    if a.ndim not in (2, 3):
        raise ValueError(f"bead must be a 2-D (y, x) or 3-D (z, y, x) image, got shape {a.shape}.")
    if min(a.shape[-2:]) < 5 or a.shape[0] < 1:
        raise ValueError(f"bead must have at least 5x5 pixels per plane, got shape {a.shape}.")
    if not np.isfinite(a).all():
        raise ValueError("bead has NaN or Inf values; only finite values are accepted.")
    if isinstance(threshold, bool) or not isinstance(threshold, Real):
        raise TypeError(f"threshold must be a number in (0, 1), got {type(threshold).__name__}.")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}.")
    if background is not None:
        if isinstance(background, bool) or not isinstance(background, Real):
            raise TypeError(
                f"background must be None or a number, got {type(background).__name__}."
            )
        if not math.isfinite(float(background)):
            raise ValueError(f"background must be finite, got {background!r}.")
    if support is not None:
        if isinstance(support, bool) or not isinstance(support, Integral):
            raise TypeError(f"support must be None or an odd int, got {type(support).__name__}.")
        if support < 1 or support % 2 == 0:
            raise ValueError(f"support must be an odd size >= 1, got {support!r}.")

    info: dict = {"method": "pkn.psf.import_psf", "threshold": float(threshold)}
    if a.ndim == 3:
        nz = a.shape[0]
        if plane is None:
            scores = []
            for k in range(nz):
                p = a[k].astype(np.float64)
                bg = float(background) if background is not None else _border_stats(p)[0]
                scores.append(float(_med3(p - bg).max()))
            plane = int(np.argmax(scores))
            info["plane_from"] = "highest 3x3-median peak above the plane's background"
        else:
            if isinstance(plane, bool) or not isinstance(plane, Integral):
                raise TypeError(f"plane must be None or an int, got {type(plane).__name__}.")
            if not -nz <= plane < nz:
                raise ValueError(
                    f"plane must be in [{-nz}, {nz - 1}] for {nz} planes, got {plane}."
                )
            plane = int(plane) % nz
            info["plane_from"] = "given"
        img = a[plane].astype(np.float64)
    else:
        if plane is not None:
            raise ValueError(f"plane is for 3-D (z, y, x) beads; this bead is 2-D {a.shape}.")
        img = a.astype(np.float64)

    med, noise, width = _border_stats(img)
    bg = float(background) if background is not None else med
    info["background_from"] = (
        "given" if background is not None else (f"median of the {width}-pixel border frame")
    )
    q = img - bg
    s = _box3(q)
    H, W = q.shape
    py, px = np.unravel_index(int(np.argmax(_med3(q))), q.shape)
    y0, x0 = max(py - 1, 0), max(px - 1, 0)
    nb = q[y0 : py + 2, x0 : px + 2]
    dy, dx = np.unravel_index(int(np.argmax(nb)), nb.shape)
    py, px = int(y0 + dy), int(x0 + dx)
    peak = float(q[py, px])
    if not peak > 0:
        raise ValueError(
            f"bead has no peak above the background {bg:g}: pass a bead image (or a "
            "smaller background=)."
        )
    snr = peak / noise if noise > 0 else math.inf
    if snr < 10:
        warnings.warn(
            f"import_psf: the bead's peak is only {snr:.1f}x the background noise; the PSF "
            "will be noisy (average several beads or planes).",
            stacklevel=2,
        )
    nb = np.clip(q[max(py - 1, 0) : py + 2, max(px - 1, 0) : px + 2], 0, None)
    cy, cx = _centroid(nb) if nb.sum() > 0 else (1.0, 1.0)
    info["subpixel_offset"] = [
        round(cy - (py - max(py - 1, 0)), 3),
        round(cx - (px - max(px - 1, 0)), 3),
    ]

    margin = min(py, H - 1 - py, px, W - 1 - px)
    truncated = False
    if support is not None:
        r = support // 2
        if r > margin:
            raise ValueError(
                f"support={support} does not fit around the peak at ({py}, {px}) in a "
                f"{H}x{W} plane; the largest is {2 * margin + 1}."
            )
    else:
        from skimage.measure import label

        # the level stays 3 noise stds of the 3x3 mean (noise / 3) above the background
        level = max(float(threshold) * float(s[py, px]), noise)
        lab = label(s > level, connectivity=2)
        yy, xx = np.nonzero(lab == lab[py, px])
        r = int(max(np.abs(yy - py).max(), np.abs(xx - px).max())) + 1
        if r > margin:
            truncated = True
            warnings.warn(
                f"import_psf: the PSF's support (radius {r} px) is cut by the image border "
                f"at radius {margin} px; crop the bead with more margin.",
                stacklevel=2,
            )
            r = margin
    crop = q[py - r : py + r + 1, px - r : px + r + 1]
    neg = float(-crop[crop < 0].sum())
    k = np.clip(crop, 0.0, None)
    total = float(k.sum())
    k = (k / total).astype(np.float32)
    ky, kx = _centroid(k.astype(np.float64))
    info.update(
        peak=peak,
        noise_std=noise,
        snr=snr if math.isfinite(snr) else None,
        support=2 * r + 1,
        support_from="given" if support is not None else f"{threshold:g} x peak",
        truncated=truncated,
        clipped_negative_fraction=neg / total,
        centroid_offset=[round(ky - r, 3), round(kx - r, 3)],
    )
    try:
        check_psf(k)
        info["check"] = "passed"
    except ValueError as e:
        info["check"] = str(e)
        warnings.warn(f"import_psf: the imported PSF fails check_psf: {e}", stacklevel=2)
    return PSF(
        array=k,
        plane=plane if a.ndim == 3 else None,
        background=bg,
        shift=(py - H // 2, px - W // 2),
        source_shape=tuple(int(n) for n in a.shape),
        info=info,
    )


# ---------------------------------------------------------------------- check
def check_psf(psf, *, image_shape=None, name="psf") -> np.ndarray:
    """Validate a PSF for deblurring; return it non-negative, float32, summing to 1.

    A PSF must be a 2-D array with finite values, a positive sum and at most a small
    negative part (below 5% of the positive mass; those values are clipped to zero),
    a border close to zero, its centre of mass within 1 pixel of the centre pixel
    ``(kh // 2, kw // 2)``, and no larger than the image. The border test: the mean of
    the outermost ring must stay below 5% of the peak, and a flat floor at that level
    below 15% of the PSF's mass (a camera offset left in a bead crop acts like a box
    blur). PSFs smaller than 3 pixels along an axis skip the border test. A genuinely
    flat-topped blur (a box) passes once padded with a ring of zeros.

    Parameters
    ----------
    psf : array_like or PSF
        The PSF (a :class:`PSF` from :func:`import_psf` is accepted as is).
    image_shape : (int, int), optional
        ``(height, width)`` of the planes to deblur; the PSF may not be larger.
    name : str
        The argument's name in error messages.

    Returns
    -------
    numpy.ndarray
        A new float32 2-D array, non-negative, summing to 1 (the input is not modified).

    Raises
    ------
    TypeError
        Not a real-valued array.
    ValueError
        Any of the conditions above fails; the message says how to fix it (a 3-D stack
        or a raw bead crop goes through :func:`import_psf`).

    Examples
    --------
    >>> import numpy as np
    >>> from pkn.psf import check_psf
    >>> yy, xx = np.mgrid[-4:5, -4:5]
    >>> k = check_psf(np.exp(-(yy**2 + xx**2) / 4.0))
    >>> k.dtype, k.shape, abs(float(k.sum()) - 1) < 1e-6
    (dtype('float32'), (9, 9), True)
    >>> check_psf(np.ones((3, 5, 5)))
    Traceback (most recent call last):
    ...
    ValueError: psf must be a 2-D (y, x) array, got shape (3, 5, 5): a 3-D bead stack ...
    """
    a = _as_real_array(psf, name)
    if a.ndim != 2:
        hint = (
            ": a 3-D bead stack goes through pkn.psf.import_psf(bead), which picks the "
            "in-focus plane (or plane=k)"
            if a.ndim == 3
            else ""
        )
        raise ValueError(f"{name} must be a 2-D (y, x) array, got shape {a.shape}{hint}.")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape}).")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has NaN or Inf values; only finite values are accepted.")
    pos, neg = float(a[a > 0].sum()), float(-a[a < 0].sum())
    if not pos - neg > 0:
        raise ValueError(
            f"{name} has no positive mass (sum {pos - neg:g}); a PSF is non-negative with "
            "a positive sum."
        )
    if neg > NEGATIVE_MASS * pos:
        raise ValueError(
            f"{name} has a large negative part ({neg / pos:.1%} of its positive mass, "
            f"{NEGATIVE_MASS:.0%} accepted): a PSF is non-negative. Was too much background "
            "subtracted? pkn.psf.import_psf(bead) estimates it."
        )
    k = np.clip(a, 0.0, None)
    kh, kw = k.shape
    peak = float(k.max())
    if min(kh, kw) >= 3:
        ring = _border(k, 1)
        floor = float(ring.mean())
        mass = floor * k.size / float(k.sum())
        if floor > BORDER_PEAK * peak or mass > BORDER_MASS:
            raise ValueError(
                f"{name}'s border is far from zero: its mean is {floor / peak:.1%} of the "
                f"peak ({BORDER_PEAK:.0%} accepted) and a floor at that level holds "
                f"{mass:.0%} of the PSF's mass ({BORDER_MASS:.0%} accepted). A camera "
                "offset or background was not removed, or the crop cuts the PSF: use "
                "pkn.psf.import_psf(bead) on the raw bead image. (A genuinely flat-topped "
                "blur passes once padded with a ring of zeros.)"
            )
    cy, cx = _centroid(k)
    oy, ox = cy - kh // 2, cx - kw // 2
    if max(abs(oy), abs(ox)) > CENTRE_TOLERANCE:
        py, px = np.unravel_index(int(np.argmax(_box3(k))), k.shape)
        raise ValueError(
            f"{name} is off centre: its centre of mass is ({oy:+.1f}, {ox:+.1f}) px (dy, dx) "
            f"from the centre pixel ({kh // 2}, {kw // 2}) and its peak at ({py}, {px}); "
            f"at most {CENTRE_TOLERANCE:g} px is accepted (an off-centre PSF shifts the "
            "result and leaves ghost copies). Centre it, e.g. with "
            "pkn.psf.import_psf(bead)."
        )
    if image_shape is not None:
        try:
            shape = tuple(int(n) for n in image_shape)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"image_shape must be (height, width) ints, got {image_shape!r}."
            ) from e
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(
                f"image_shape must be the (height, width) of the planes, got {image_shape!r}."
            )
        if kh > shape[0] or kw > shape[1]:
            raise ValueError(
                f"{name} ({kh}x{kw}) is larger than the image ({shape[0]}x{shape[1]}); "
                "crop it to its support (pkn.psf.import_psf(bead, support=n))."
            )
    return (k / k.sum()).astype(np.float32)
