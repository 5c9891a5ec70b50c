"""Helpers for the widget's background workers and its status texts."""

from __future__ import annotations

__all__ = ["Failure", "guarded", "noise_text"]


class Failure:
    """An expected error, returned (not raised) by a worker so no traceback is shown."""

    def __init__(self, message: str):
        self.message = message


def guarded(gen):
    """Run the generator ``gen`` in a worker; its errors become a :class:`Failure`.

    A worker must not return an exception object (superqt would re-raise it), and a
    ``RuntimeError`` escaping the generator would be taken for a deleted worker and
    silently dropped: every error is therefore caught here and reported to the user.
    """
    try:
        yield from gen
    except (TypeError, ValueError) as e:
        return Failure(str(e))
    except Exception as e:  # e.g. out of memory: a notification, never a dialog
        return Failure(f"PKN failed: {type(e).__name__}: {e}")
    return None


def noise_text(desc: dict) -> str:
    """One line for a pkn noise description (``Restoration.info["noise"]``)."""

    def fmt(v):
        return ", ".join(f"{x:.3g}" for x in v) if isinstance(v, list) else f"{v:.3g}"

    if desc.get("model") == "awgn":
        return f"Gaussian, sigma = {fmt(desc['sigma'])}"
    return f"Poisson-Gaussian, variance = {desc['a']:.3g} * I + {desc['b']:.3g}"
