"""Remappings from unconstrained network outputs to valid kernel parameters.

A network's last layer produces real numbers; these functions map them into the
ranges the kernels accept, smoothly and without ever reaching a degenerate value:
sigmoid ranges for bounded parameters (the paper's choice), tanh scaled strictly
inside (-1, 1) for correlations, softplus for positive sigmas. Each bounded map has
an inverse so that maps can be initialised from known parameter values (the oracle
starts from the per-image global optimum this way).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "RHO_LIMIT",
    "correlation",
    "inverse_correlation",
    "inverse_sigmoid_range",
    "positive",
    "sigmoid_range",
    "softmax_weights",
]

RHO_LIMIT = 0.999
"""Largest |rho| :func:`correlation` produces (strictly inside (-1, 1))."""


def _check_range(low: float, high: float) -> None:
    if not (float(low) < float(high)):
        raise ValueError(f"need low < high, got low={low!r}, high={high!r}.")


def sigmoid_range(t: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Map real ``t`` into ``(low, high)``: ``low + (high - low) * sigmoid(t)``.

    The bounds themselves are reached only when ``sigmoid`` saturates in floating point
    (|t| of about 17 in float32); the kernels accept them.
    """
    _check_range(low, high)
    return low + (high - low) * torch.sigmoid(t)


def inverse_sigmoid_range(v: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Inverse of :func:`sigmoid_range`; values at or beyond the bounds are clipped just inside."""
    _check_range(low, high)
    u = ((v - low) / (high - low)).clamp(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


def positive(t: torch.Tensor, *, floor: float = 0.0) -> torch.Tensor:
    """Positive values: ``floor + softplus(t)`` (sigmas that must stay > 0)."""
    return floor + F.softplus(t)


def correlation(t: torch.Tensor, *, limit: float = RHO_LIMIT) -> torch.Tensor:
    """Correlation coefficient strictly inside (-1, 1): ``limit * tanh(t)``."""
    if not 0.0 < limit < 1.0:
        raise ValueError(f"limit must lie in (0, 1), got {limit!r}.")
    return limit * torch.tanh(t)


def inverse_correlation(rho: torch.Tensor, *, limit: float = RHO_LIMIT) -> torch.Tensor:
    """Inverse of :func:`correlation`; |rho| >= limit is clipped just inside."""
    if not 0.0 < limit < 1.0:
        raise ValueError(f"limit must lie in (0, 1), got {limit!r}.")
    return torch.atanh((rho / limit).clamp(-1 + 1e-6, 1 - 1e-6))


def softmax_weights(t: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Non-negative weights summing to 1 along ``dim`` (convex combinations)."""
    return torch.softmax(t, dim=dim)
