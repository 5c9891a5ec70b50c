"""Helpers for the widget's background workers and its status texts."""

from __future__ import annotations

__all__ = ["WHITENESS_WARN", "Failure", "guarded", "noise_text", "whiteness_text"]


class Failure:
    """An expected error, returned (not raised) by a worker so no traceback is shown."""

    def __init__(self, message: str):
        self.message = message


def guarded(gen):
    """Run the generator ``gen`` in a worker (returning what it returns); its errors
    become a :class:`Failure`.

    A worker must not return an exception object (superqt would re-raise it), and a
    ``RuntimeError`` escaping the generator would be taken for a deleted worker and
    silently dropped: every error is therefore caught here and reported to the user.
    """
    try:
        return (yield from gen)
    except (TypeError, ValueError) as e:
        return Failure(str(e))
    except Exception as e:  # e.g. out of memory: a notification, never a dialog
        return Failure(f"PKN failed: {type(e).__name__}: {e}")


def noise_text(desc: dict) -> str:
    """One line for a pkn noise description (``Restoration.info["noise"]``): the std at
    the mean intensity first (per channel), then the variance model with its sign."""

    def fmt(v):
        return ", ".join(f"{x:.3g}" for x in v) if isinstance(v, list | tuple) else f"{v:.3g}"

    def affine(a, b):
        return f"{a:.3g} * I {'-' if b < 0 else '+'} {abs(b):.3g}"

    how = "estimated" if desc.get("estimated") else "given"
    if desc.get("model") == "awgn":
        return f"Gaussian noise ({how}): std {fmt(desc['sigma'])}"
    a, b = desc["a"], desc["b"]
    pairs = zip(a, b, strict=True) if isinstance(a, list) else [(a, b)]
    var = "; ".join(affine(x, y) for x, y in pairs)
    std = f"std {fmt(desc['sigma'])} at the mean, " if "sigma" in desc else ""
    return f"Poisson-Gaussian noise ({how}): {std}variance = {var}"


WHITENESS_WARN = 0.1  # neighbour correlation above which the residual shows structure


def whiteness_text(meta: dict) -> str:
    """One line (rich text) about the residual's whiteness in a restoration's provenance,
    or ``""`` when it has none (not denoising)."""
    w = meta.get("whiteness")
    if not w:
        return ""
    score = float(w["score"])
    planes = f", mean of {meta['planes']} planes" if meta.get("planes") else ""
    text = f"QC: residual neighbour correlation {score:.2f}{planes} (white noise: about 0)"
    if score > WHITENESS_WARN:
        text += (
            "<br><b style='color:#e0a040'>the residual has structure</b>: edges or texture "
            "were removed; lower the strength and look at the qc layer"
        )
    return text
