"""Shared validation, parameter-map resampling, padding and tiling for the kernels.

Every public kernel takes images ``(B, C, H, W)`` and parameters that are either a
Python number or a tensor ``(B or 1, 1 or C, h, w)`` at any resolution. Parameter
maps are resampled bilinearly (pixel centres aligned, ``align_corners=False``) to the
grid where they are needed, so half-resolution maps cover exactly the same extent as
the full-resolution image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F

Param = float | torch.Tensor

__all__ = [
    "WINDOW_FLOOR",
    "Param",
    "all_finite",
    "as_map",
    "check_flag",
    "check_guide",
    "check_image",
    "check_stack",
    "check_window",
    "max_value",
    "odd_int",
    "pad",
    "row_tiles",
    "window_limit",
]

_FLOAT_DTYPES = (torch.float32, torch.float64)

# Windows (radii in pixels) are bounded by the image: at most max(H, W, WINDOW_FLOOR). A
# window beyond the image reads nothing new (its border pixels repeat), so kernels either
# fold it exactly into a bounded one (the axis-aligned Gaussian) or refuse it
# (check_window); the floor keeps small windows on tiny images valid.
WINDOW_FLOOR = 32


def all_finite(t: torch.Tensor) -> bool:
    """Whether every element of ``t`` is finite, usually from a single sum.

    A NaN or an Inf makes the sum non-finite, so a finite sum proves the tensor finite;
    only a non-finite sum (possibly an overflow of finite values) needs the full scan.
    """
    with torch.no_grad():
        if math.isfinite(float(t.sum())):
            return True
        return bool(torch.isfinite(t).all())


def check_ndim(
    t: object, name: str, ndim: int, shape_text: str, *, type_hint: str = "", ndim_hint: str = ""
) -> None:
    """Raise a clear exception unless ``t`` is a tensor with ``ndim`` dimensions.

    ``shape_text`` (e.g. ``"(B, C, H, W)"``) names the expected axes; the hints, if given,
    follow the message after ``"; "`` and say how to fix it.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape {shape_text}, got {type(t).__name__}"
            + (f"; {type_hint}" if type_hint else ".")
        )
    if t.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions {shape_text}, got {t.ndim} with shape "
            f"{tuple(t.shape)}" + (f"; {ndim_hint}" if ndim_hint else ".")
        )


def check_image(x: torch.Tensor, name: str = "x", *, min_size: int = 1) -> None:
    """Raise a clear exception unless ``x`` is a finite floating ``(B, C, H, W)`` tensor."""
    check_ndim(
        x,
        name,
        4,
        "(B, C, H, W)",
        type_hint="convert numpy arrays with torch.from_numpy(a)[None, None] for one gray image.",
        ndim_hint="add batch/channel axes with x[None, None] for one gray image.",
    )
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a floating tensor (float32 or float64), got {x.dtype}; "
            "convert integer images with x.float() (and rescale to [0, 1] if you like)."
        )
    if min(x.shape) < 1:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}.")
    if x.shape[-1] < min_size or x.shape[-2] < min_size:
        raise ValueError(
            f"{name} is {x.shape[-2]}x{x.shape[-1]} pixels; this operation needs at least "
            f"{min_size}x{min_size}."
        )
    if not all_finite(x):
        raise ValueError(
            f"{name} contains NaN or Inf values; replace them first (e.g. torch.nan_to_num)."
        )


def check_stack(p: object, x: torch.Tensor, name: str, shape_text: str) -> torch.Tensor:
    """Validate a ``(B or 1, n, h, w)`` stack of per-pixel maps; return it in ``x``'s dtype."""
    check_ndim(p, name, 4, shape_text)
    B = x.shape[0]
    if p.shape[0] not in (1, B):
        raise ValueError(f"{name} has batch size {p.shape[0]}, but the image has {B} (or use 1).")
    if min(p.shape) < 1:
        raise ValueError(f"{name} is empty: shape {tuple(p.shape)}.")
    if p.dtype == torch.bool or p.is_complex():
        hint = "convert a mask with .to(x.dtype)" if p.dtype == torch.bool else "use .real"
        raise TypeError(
            f"{name} must hold real numbers (a float or integer tensor), got dtype {p.dtype}; "
            f"{hint} if that is meant."
        )
    if not p.is_floating_point():
        p = p.to(x.dtype)
    if not all_finite(p):
        raise ValueError(
            f"{name} contains NaN or Inf values; replace them first (e.g. torch.nan_to_num)."
        )
    return p.to(dtype=x.dtype, device=x.device)


def check_guide(guide: torch.Tensor, x: torch.Tensor) -> None:
    """A clear exception unless ``guide`` is a valid image with ``x``'s batch size and size
    (its channel count is the kernel's business)."""
    check_image(guide, "guide")
    if guide.shape[0] != x.shape[0] or guide.shape[-2:] != x.shape[-2:]:
        B, _, H, W = x.shape
        raise ValueError(
            f"guide must have the image's batch size and size {(B, H, W)}, got shape "
            f"{tuple(guide.shape)}."
        )


def odd_int(value: int, name: str) -> int:
    """``value`` as an ``int`` if it is a positive odd integer (a window side; numpy integers
    too), else a clear ValueError (bools and non-integers included)."""
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    if not ok or value < 1 or value % 2 == 0:
        raise ValueError(
            f"{name} must be a positive odd integer (1, 3, 5, ...), got {value!r}"
            + ("." if ok else f" ({type(value).__name__}).")
        )
    return int(value)


def check_flag(value: object, name: str) -> bool:
    """``value`` as a ``bool`` if it is one (``numpy.bool_`` too), else a clear TypeError
    (a string such as ``"no"`` would otherwise count as true)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__}).")


def window_limit(x: torch.Tensor) -> int:
    """Largest window radius accepted on ``x``: ``max(H, W, WINDOW_FLOOR)`` pixels."""
    return max(x.shape[-2], x.shape[-1], WINDOW_FLOOR)


def check_window(r: int, x: torch.Tensor, what: str, hint: str = "") -> None:
    """A clear ValueError if a window radius ``r`` is beyond :func:`window_limit` of ``x``.

    ``what`` names the argument and its value (e.g. ``"search_size=9999"``); the message
    gives the image size, the radius it needs and the largest accepted.
    """
    limit = window_limit(x)
    if r > limit:
        H, W = x.shape[-2:]
        raise ValueError(
            f"{what} needs a window of radius {r} px, beyond the {H}x{W} image: windows are "
            f"limited to radius max(H, W, {WINDOW_FLOOR}) = {limit} px (a larger one repeats "
            f"the border pixels and only costs time and memory)" + (f"; {hint}" if hint else ".")
        )


def _range_text(low: float | None, high: float | None) -> str:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"[{lo}, {hi}]"


def as_map(
    p: Param,
    x: torch.Tensor,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Turn a number or a parameter map into a tensor that broadcasts against ``x``.

    Parameters
    ----------
    p : float or torch.Tensor
        A number, a 0-d tensor, or a map ``(B or 1, 1 or C, h, w)`` at any resolution.
    x : torch.Tensor
        The image ``(B, C, H, W)`` the parameter belongs to (gives batch, channels,
        dtype and device).
    name : str
        Parameter name, used in error messages.
    low, high : float, optional
        Inclusive range the values must lie in.
    size : (int, int), optional
        Grid the map is needed on; default ``x``'s ``(H, W)``.

    Returns
    -------
    torch.Tensor
        ``(B, 1 or C, H', W')`` (a stride-0 view for numbers), same dtype/device as ``x``.
        Gradients flow back to ``p`` when it is a tensor.
    """
    B, C, H, W = x.shape
    Ho, Wo = (H, W) if size is None else size
    if isinstance(p, Real) and not isinstance(p, bool):
        v = float(p)
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}.")
        if (low is not None and v < low) or (high is not None and v > high):
            raise ValueError(f"{name} must lie in {_range_text(low, high)}, got {v:g}.")
        if abs(v) > torch.finfo(x.dtype).max:
            raise ValueError(
                f"{name}={v:g} is beyond the range of the image's dtype {x.dtype} "
                f"(|{name}| <= {torch.finfo(x.dtype).max:g})."
            )
        return torch.full((1, 1, 1, 1), v, dtype=x.dtype, device=x.device).expand(B, 1, Ho, Wo)
    if not isinstance(p, torch.Tensor):
        raise TypeError(
            f"{name} must be a number or a torch.Tensor of shape (B, 1 or C, h, w), "
            f"got {p!r} ({type(p).__name__})."[:300]
        )
    if p.ndim == 0:
        p = p.reshape(1, 1, 1, 1)
    if p.ndim != 4:
        raise ValueError(
            f"{name} must be a number or a map of shape (B, 1 or C, h, w), got shape "
            f"{tuple(p.shape)}."
        )
    p = check_stack(p, x, name, "(B or 1, 1 or C, h, w)")
    if p.shape[1] not in (1, C):
        raise ValueError(f"{name} has {p.shape[1]} channels, but the image has {C} (or use 1).")
    if low is not None or high is not None:
        with torch.no_grad():
            pmin, pmax = float(p.min()), float(p.max())
        if (low is not None and pmin < low) or (high is not None and pmax > high):
            raise ValueError(
                f"{name} must lie in {_range_text(low, high)}, got values in [{pmin:g}, {pmax:g}]."
            )
    p = p.to(dtype=x.dtype, device=x.device)
    if p.shape[-2:] != (Ho, Wo):
        if p.shape[-2:] == (1, 1):
            p = p.expand(-1, -1, Ho, Wo)
        else:
            p = F.interpolate(p, size=(Ho, Wo), mode="bilinear", align_corners=False)
    return p.expand(B, -1, Ho, Wo)


def max_value(p: torch.Tensor) -> float:
    """Largest value of a map as a Python float (no gradient)."""
    return float(p.detach().max())


def pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Pad the last two axes by ``r`` pixels, mirroring without repeating the edge.

    Mirror ('reflect') padding is used where the image is large enough; images smaller
    than the pad fall back to edge replication, so any image size works.
    """
    if r == 0:
        return x
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    return F.pad(x, (r, r, r, r), mode=mode)


def row_tiles(
    height: int, width: int, depth: int, *, target: int = 1 << 19
) -> Iterator[tuple[int, int]]:
    """Row ranges ``(r0, r1)`` such that ``(r1 - r0) * width * depth`` stays near ``target``.

    Working on a band of rows at a time keeps intermediates in cache, which is what
    makes the offset loops fast on CPUs, and bounds peak memory.
    """
    rows = max(1, min(height, target // max(1, width * depth)))
    for r0 in range(0, height, rows):
        yield r0, min(height, r0 + rows)
