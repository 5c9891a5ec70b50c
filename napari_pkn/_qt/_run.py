"""Helpers for the widget's background workers and its status texts."""

from __future__ import annotations

from .._layers import number, readable

__all__ = [
    "WHITENESS_WARN",
    "Failure",
    "guarded",
    "model_hint",
    "noise_text",
    "whiteness_text",
]


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
        return Failure(readable(str(e)))
    except Exception as e:  # e.g. out of memory: a notification, never a dialog
        return Failure(readable(f"PKN failed: {type(e).__name__}: {e}"))


def noise_text(desc: dict) -> str:
    """One line for a pkn noise description (``Restoration.info["noise"]``): the noise std
    as a formula of the intensity ``I`` (per channel, proper sign, 3 significant digits),
    then the model, whether it was estimated and (Poisson-Gaussian) the std at the mean.

    Examples
    --------
    >>> noise_text({"model": "poisson-gaussian", "a": 27.4, "b": -385.0, "estimated": True})
    'noise: std = sqrt(27.4·I − 385) (Poisson-Gaussian, estimated)'
    >>> noise_text({"model": "awgn", "sigma": 0.05, "estimated": False})
    'noise: std = 0.05 (Gaussian, given)'
    """

    def each(v):
        return list(v) if isinstance(v, list | tuple) else [v]

    def fmt(v):
        return ", ".join(number(x) for x in each(v))

    def root(a, b):
        if float(b) == 0:
            return f"sqrt({number(a)}·I)"
        return f"sqrt({number(a)}·I {'−' if b < 0 else '+'} {number(abs(b))})"

    how = "estimated" if desc.get("estimated") else "given"
    if desc.get("model") == "awgn":
        return f"noise: std = {fmt(desc['sigma'])} (Gaussian, {how})"
    a, b = each(desc["a"]), each(desc["b"])
    std = ", ".join(root(x, y) for x, y in zip(a, b, strict=True))
    mean = f"; {fmt(desc['sigma'])} at the mean" if "sigma" in desc else ""
    return f"noise: std = {std} (Poisson-Gaussian, {how}{mean})"


# the shipped models for fluorescence microscopy, best first (README: real microscopy)
FLUO_MODELS = ("anisotropic-fluo", "nlm-fluo")


def model_hint(desc: dict | None, model: str | None, offered) -> str:
    """A one-line suggestion when the estimated noise is signal-dependent (Poisson-Gaussian,
    as a microscope camera's) and the chosen model was trained for photographs, or ``""``.

    Examples
    --------
    >>> desc = {"model": "poisson-gaussian", "a": 0.02, "b": 1e-4, "estimated": True}
    >>> model_hint(desc, "nlm", ["nlm", "anisotropic-fluo"])[:47]
    'signal-dependent noise (a microscope camera?): '
    >>> model_hint(desc, "anisotropic-fluo", ["nlm", "anisotropic-fluo"])
    ''
    """
    if not desc or desc.get("model") != "poisson-gaussian" or not desc.get("estimated"):
        return ""
    if model is None or model in FLUO_MODELS:
        return ""
    better = next((m for m in FLUO_MODELS if m in offered), None)
    if better is None:
        return ""
    return (
        f"signal-dependent noise (a microscope camera?): {better} was trained for "
        "fluorescence microscopy"
    )


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
