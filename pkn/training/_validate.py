"""Validation of a :class:`~pkn.training.loop.TrainConfig` (the Python API and the CLI).

:func:`check_config` raises a ValueError (TypeError for a wrong type) naming the field,
the value given and what is accepted, before anything is built or trained. The command
line (:mod:`pkn.training.cli`) checks each option as it parses it with the same rules
(:func:`rule`), so both give the same message.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

__all__ = ["check_config", "rule"]

MAX_SCALE = 8.0  # largest upsampling factor trained (the crop must keep >= 6 pixels)
MIN_CROP = 16  # the network works at half resolution with two more halvings
MAX_WIDTH = 4096  # channels per network level
LOSSES = ("l2", "l1", "ssim", "msssim")
NOISES = ("awgn", "poisson-gaussian", "mixed")

# field -> (kind, low, high, accepted): kinds "int", "float", "pair" (LOW <= HIGH), "floats"
# (a non-empty list), "ints3" (three ints)
_RULES: dict[str, tuple[str, float | None, float | None, str]] = {
    "iters": ("int", 1, None, "an integer >= 1"),
    "batch": ("int", 1, None, "an integer >= 1"),
    "crop": ("int", MIN_CROP, None, f"an integer >= {MIN_CROP} (pixels)"),
    "val_crop": ("int", MIN_CROP, None, f"an integer >= {MIN_CROP} (pixels)"),
    "val_every": ("int", 1, None, "an integer >= 1 (iterations)"),
    "seed": ("int", 0, None, "an integer >= 0"),
    "threads": ("int", 0, None, "an integer >= 0 (0: torch's default)"),
    "lr": ("float", 0.0, None, "a finite number > 0"),
    "clip": ("float", 0.0, None, "a finite number >= 0 (0: off)"),
    "levin": ("float", 0.0, 1.0, "a probability in [0, 1]"),
    "p_gray": ("float", 0.0, 1.0, "a fraction in [0, 1]"),
    "correlated": ("float", 0.0, 1.0, "a fraction in [0, 1]"),
    "band_limit": ("float", 0.0, 1.0, "a fraction in [0, 1]"),
    "synthetic": ("float", 0.0, 1.0, "a fraction in [0, 1]"),
    "noise_power": ("float", 0.0, None, "a finite number >= 0 (0: the loss's own)"),
    "sigma": ("pair", 0.0, None, "LOW,HIGH with 0 <= LOW <= HIGH, finite"),
    "pg_a": ("pair", 0.0, None, "LOW,HIGH with 0 <= LOW <= HIGH, finite"),
    "pg_b": ("pair", 0.0, None, "LOW,HIGH with 0 <= LOW <= HIGH, finite"),
    "blur": ("pair", 0.0, None, "LOW,HIGH with 0 < LOW <= HIGH, finite (pixels)"),
    "band_sigma": ("pair", 0.0, 20.0, "LOW,HIGH with 0 < LOW <= HIGH <= 20 (pixels)"),
    "scales": ("floats", 1.0, MAX_SCALE, f"factors in [1, {MAX_SCALE:g}], comma-separated"),
    "widths": ("ints3", 1, MAX_WIDTH, f"three integers in [1, {MAX_WIDTH}], e.g. 12,16,24"),
}
_STRICT_LOW = {"lr", "blur", "band_sigma"}  # low itself is not accepted


def _number(v: object, integer: bool) -> bool:
    if isinstance(v, bool | np.bool_):
        return False
    return isinstance(v, Integral) if integer else isinstance(v, Real)


def _in_range(v: float, low, high, strict: bool) -> bool:
    if not math.isfinite(v):
        return False
    if low is not None and (v <= low if strict else v < low):
        return False
    return high is None or v <= high


def rule(name: str, value: object):
    """``value`` checked (and normalized: ints, floats, tuples) by the rule of field
    ``name``; a ValueError/TypeError naming the field, the value and what is accepted."""
    kind, low, high, accepted = _RULES[name]
    strict = name in _STRICT_LOW
    bad = f"{name} must be {accepted}, got {value!r}."
    if kind in ("int", "float"):
        if not _number(value, kind == "int"):
            raise TypeError(bad)
        v = int(value) if kind == "int" else float(value)
        if not _in_range(float(v), low, high, strict):
            raise ValueError(bad)
        return v
    if not isinstance(value, tuple | list) or not value:
        raise TypeError(bad)
    if kind == "ints3":
        if len(value) != 3 or not all(_number(v, True) for v in value):
            raise ValueError(bad)
        if not all(_in_range(float(v), low, high, False) for v in value):
            raise ValueError(bad)
        return tuple(int(v) for v in value)
    if not all(_number(v, False) for v in value):
        raise TypeError(bad)
    vals = tuple(float(v) for v in value)
    if not all(_in_range(v, low, high, strict) for v in vals):
        raise ValueError(bad)
    if kind == "pair" and (len(vals) != 2 or vals[0] > vals[1]):
        raise ValueError(bad)
    return vals


def check_config(cfg) -> None:
    """Raise a clear ValueError/TypeError unless every field of ``cfg`` (a
    :class:`~pkn.training.loop.TrainConfig`) is valid; nothing is built or read.

    Parameters
    ----------
    cfg : TrainConfig
        The run's configuration.

    Raises
    ------
    ValueError, TypeError
        Naming the field, the value given and what is accepted, e.g. ``iters must be an
        integer >= 1, got -5.``

    Examples
    --------
    >>> from pkn.training.loop import TrainConfig
    >>> check_config(TrainConfig())
    >>> check_config(TrainConfig(iters=0))
    Traceback (most recent call last):
    ...
    ValueError: iters must be an integer >= 1, got 0.
    """
    for name in _RULES:
        rule(name, getattr(cfg, name))
    if not isinstance(cfg.options, dict):
        raise TypeError(
            f"options must be a dict of kernel options (JSON object), got {cfg.options!r}."
        )
    for name in ("noise_weighted", "guided", "resume"):
        v = getattr(cfg, name)
        if not isinstance(v, bool | np.bool_):
            raise TypeError(f"{name} must be True or False, got {v!r}.")
    for name, choices in (("loss", LOSSES), ("noise", NOISES)):
        if getattr(cfg, name) not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {getattr(cfg, name)!r}.")
    from ..models.procedural import network_kernels

    if cfg.kernel not in network_kernels():
        raise ValueError(f"kernel must be one of {network_kernels()}, got {cfg.kernel!r}.")
