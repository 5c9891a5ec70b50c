"""``pkn.adapt``: fine-tune a shipped model on your own noisy images, no clean image needed.

The parameter network is tiny (about 17k parameters), so adapting all of it with a few
hundred Adam steps on random crops of the user's images takes seconds to a minute on a
CPU. Three self-supervised losses, none of which sees a clean image:

* ``"n2n"`` (Noise2Noise; Lehtinen et al. 2018): repeated captures of the same field
  (a list of images, or a time/z stack with ``axis``). The model filters capture ``i``;
  the loss is the squared difference to capture ``j != i`` at the same place. The noise
  of the two is independent, so the loss equals the supervised loss plus a constant.
* ``"blindspot"`` (Noise2Self, J-invariance; Batson & Royer 2019): a single image. While
  training, the classical filter runs in its blind-spot form (``blind_spot=r`` of
  :func:`pkn.kernels.nlm`): the output at ``p`` reads neither ``x(p)`` nor anything within
  ``r`` pixels (``r``: the noise's correlation length), also not through the NLM patch
  distances. The network that predicts the maps would see ``x(p)`` too (and learns to
  exploit it: measured, the loss falls while the true error rises), so on a sparse random
  grid of pixels ``J`` (every 4th row and column for ``r = 0``) each blind region is
  replaced by the mean of the ring around it before the network runs, and the loss is
  taken at ``J``. The loss is not ``|f_blind(x) - x|^2`` itself but the error it implies
  for the ordinary filter, which adds the centre pixel with weight 1 (see
  :func:`_centre_corrected`): the plain blind-spot loss tunes the maps for a filter
  without its centre and over-smooths. At inference the ordinary filter runs with the
  adapted maps. (Not masked: the noise std map the network also reads, a 5x5 local mean
  through the noise model in which ``x(p)`` weighs 1/25.)
* ``"r2r"`` (Recorrupted-to-Recorrupted; Pang et al. 2021): a single image recorrupted
  with fresh noise from the noise model, ``x + a n`` as input and ``x - n / a`` as target
  (independent for Gaussian noise). Assumes white noise.

``mode="auto"`` picks ``n2n`` for several images of the same shape, ``blindspot`` otherwise.

The result is a :class:`~pkn.models.pkn_model.PKNModel` that :func:`pkn.restore` takes
as ``model=`` and :func:`save` writes (with its model card next to it). Everything is
seeded; ``progress`` reports every step and can cancel.

``pkn.adapt`` is this module and can be called like its :func:`adapt` function
(``pkn.adapt(images, ...)``), so ``import pkn.adapt`` never shadows the function.
"""

from __future__ import annotations

import copy
import inspect
import math
import sys
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ._adapt_data import load_inputs, make_groups, sample
from ._version import __version__
from .models.pkn_model import PKNModel, run_filter
from .models.procedural import get_spec, network_kernels

__all__ = ["MODES", "adapt", "resolve_mode", "save"]

MODES = ("auto", "n2n", "blindspot", "r2r")
_MIN_CROP = 16
_CROP = 128  # default crop side


def resolve_mode(mode: str, shapes: list[tuple[int, ...]]) -> str:
    """The mode ``"auto"`` stands for: ``n2n`` for several images of one shape, else
    ``blindspot``; other modes are checked against the data."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    same = len(shapes) >= 2 and all(s == shapes[0] for s in shapes)
    if mode == "auto":
        return "n2n" if same else "blindspot"
    if mode == "n2n" and not same:
        if len(shapes) < 2:
            raise ValueError(
                "mode 'n2n' needs at least 2 captures of the same field (got 1 image); "
                "use mode='blindspot' for a single image."
            )
        raise ValueError(
            f"mode 'n2n' needs repeated captures of the same field, all of one shape; got "
            f"shapes {sorted(set(shapes))}."
        )
    return mode


def _check_int(v, name: str, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}.")
    return int(v)


def _base_model(model, kernel: str) -> tuple[PKNModel, dict]:
    from .models.io import load_model

    if kernel not in network_kernels("denoise"):
        raise ValueError(
            f"kernel must be a denoising kernel, one of {network_kernels('denoise')}, got "
            f"{kernel!r}."
        )
    if isinstance(model, PKNModel):
        net = copy.deepcopy(model)
        prov = dict(getattr(model, "provenance", None) or {})
        info = {
            "name": prov.get("name", f"{model.kernel} (in memory)"),
            "sha256": prov.get("sha256"),
            "path": prov.get("path"),
        }
    else:
        net, meta = load_model(model or kernel)
        info = {"name": meta["name"], "sha256": meta["sha256"], "path": meta["path"]}
    if net.kernel != kernel:
        raise ValueError(
            f"model {info['name']!r} drives kernel {net.kernel!r}, not {kernel!r}; pass "
            f"kernel={net.kernel!r}."
        )
    return net, info


def _search_size(spec, options: dict) -> int:
    if "search_size" in options:
        return int(options["search_size"])
    p = inspect.signature(spec.function).parameters.get("search_size")
    return int(p.default) if p is not None else 0


def _blind_radius(spec, options: dict, blind_spot, length: float) -> tuple[int, str]:
    """The blind-spot radius and where it came from."""
    if not _has_blind(spec.name):
        blind = [n for n in network_kernels("denoise") if _has_blind(n)]
        raise ValueError(
            f"kernel {spec.name!r} has no blind-spot form; mode 'blindspot' works with "
            f"{blind} (or use mode 'n2n' with repeated captures)."
        )
    top = _search_size(spec, options) // 2 - 1  # at least one ring of offsets stays
    if blind_spot is not None:
        r = _check_int(blind_spot, "blind_spot", 0)
        if r > top:
            raise ValueError(
                f"blind_spot={r} hides the whole search window of kernel {spec.name!r}; "
                f"the largest radius is {top}."
            )
        return r, "given"
    r = round(max(0.0, length))  # the correlation length (calibrate: whole pixels)
    if r > top:
        return top, f"noise correlation length {length:.2f} px, capped at {top}"
    return r, f"noise correlation length {length:.2f} px"


def _has_blind(name: str) -> bool:
    """Whether the blind-spot training supports kernel ``name`` (the NLM family: its
    filter has a ``blind_spot`` form and a centre weight of 1)."""
    from .kernels.nlm import bilateral, nlm

    return get_spec(name).function in (nlm, bilateral)


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    if callable(cancel):
        return bool(cancel())
    raise TypeError(f"cancel must be a threading.Event or a callable, got {cancel!r}.")


def adapt(
    images,
    *,
    kernel: str = "nlm",
    mode: str = "auto",
    axis: int | None = None,
    model=None,
    noise=None,
    steps: int = 300,
    batch: int = 4,
    crop: int | None = None,
    lr: float = 3e-4,
    blind_spot: int | None = None,
    recorrupt: float = 0.5,
    seed: int = 0,
    threads: int | None = 1,
    progress: Callable | None = None,
    cancel=None,
    out: str | Path | None = None,
) -> PKNModel:
    """Adapt a model to ``images`` without a clean image (see the module docstring).

    Parameters
    ----------
    images : array, path, or list of them
        2-D gray images (uint8, uint16, float32 or float64) or image files; a 3-D array
        or file is a stack of frames along ``axis``. For ``n2n``: repeated captures of
        the same field, all of one shape.
    kernel : str
        The denoising kernel (``"nlm"``, ``"nlm-sigma"``, ``"bilateral"``, ...).
    mode : {"auto", "n2n", "blindspot", "r2r"}
        ``auto``: ``n2n`` for several images of the same shape, else ``blindspot``.
    axis : int, optional
        The frame axis of 3-D stacks (time, z or repeated captures).
    model : str, path or PKNModel, optional
        The model to start from (default: the kernel's shipped model).
    noise : None, "auto", float or (float, float)
        The noise, as for :func:`pkn.restore` (give restore the same value later).
    steps, batch, crop, lr
        Adam steps (cosine decay from ``lr``), crops per step, crop side (even; default
        ``min(128, smallest image side)``).
    blind_spot : int, optional
        Blind-spot radius in pixels (default: the noise's correlation length, 0 for white
        noise); ``blindspot`` mode only.
    recorrupt : float
        ``r2r`` only: the recorruption factor ``a`` (input ``x + a n``, target ``x - n/a``).
    seed : int
        Seeds the crops and the recorruption noise: equal seeds, equal models.
    threads : int or None
        torch threads for the run (restored afterwards); ``None`` keeps torch's setting.
        Default 1: the steps work on small crops, where more threads mostly add
        synchronisation, and on a busy machine a descheduled thread stalls every one of
        the thousands of small operations (measured on the shared 2-core machine: four
        512x512 frames in 9-11 s on one thread, 340-355 s on two).
    progress : callable, optional
        ``progress(step, total, loss)`` after every step; returning ``False`` cancels.
    cancel : threading.Event or callable, optional
        Checked before every step; when set (or true) the adaptation stops early.
    out : str or path, optional
        Also write the model there (``.safetensors``) with its card (:func:`save`).

    Returns
    -------
    PKNModel
        In eval mode; ``.adaptation`` holds the record (data names and SHA-256, noise
        model, settings, seconds, losses, ``cancelled``), ``.provenance`` what
        :func:`pkn.restore` reports about it.
    """
    t0 = time.perf_counter()
    steps = _check_int(steps, "steps", 1)
    batch = _check_int(batch, "batch", 1)
    seed = _check_int(seed, "seed", 0)
    if threads is not None:
        threads = _check_int(threads, "threads", 1)
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}.")
    if not (isinstance(recorrupt, int | float) and math.isfinite(recorrupt) and recorrupt > 0):
        raise ValueError(f"recorrupt must be a finite number > 0, got {recorrupt!r}.")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable(step, total, loss), got {progress!r}.")
    if out is not None:
        _check_out(out)
    net, base = _base_model(model, kernel)
    spec = net.spec
    frames, sources = load_inputs(images, axis)
    mode = resolve_mode(mode, [f.shape for f in frames])
    side = min(min(f.shape) for f in frames)
    if crop is None:
        crop = min(_CROP, side) // 2 * 2
    crop = _check_int(crop, "crop", _MIN_CROP)
    if crop % 2:
        raise ValueError(f"crop must be even (the maps are at half resolution), got {crop}.")
    if crop > side:
        raise ValueError(
            f"crop {crop} is larger than the smallest image side ({side} px); use crop <= "
            f"{side // 2 * 2}."
        )
    groups = make_groups(frames, noise, joint=mode == "n2n")
    options = dict(net.options)
    r, r_from = None, ""
    if mode == "blindspot":
        r, r_from = _blind_radius(spec, options, blind_spot, max(g.length for g in groups))
        options["blind_spot"] = r
    elif blind_spot is not None:
        raise ValueError(f"blind_spot is for mode 'blindspot', not {mode!r}.")
    if mode == "r2r" and max(g.length for g in groups) > 0:
        warnings.warn(
            "mode 'r2r' recorrupts with white noise, but the noise is spatially correlated "
            "(calibrated correlation length > 0): the loss is biased. Prefer 'blindspot' or "
            "'n2n'.",
            stacklevel=2,
        )

    n_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        record = _train(
            net, groups, mode, options, steps, batch, crop, lr, recorrupt, seed, progress, cancel
        )
    finally:
        torch.set_num_threads(n_threads)
    net.eval().requires_grad_(False)
    record.update(
        mode=mode,
        kernel=kernel,
        base_model=base,
        data=[s.record() for s in sources],
        noise=[{"images": [sources[i].name for i in g.sources], **g.noise} for g in groups],
        blind_spot=r,
        blind_spot_from=r_from,
        recorrupt=recorrupt if mode == "r2r" else None,
        axis=axis,
        steps=steps,
        batch=batch,
        crop=crop,
        lr=lr,
        seed=seed,
        threads=threads or n_threads,
        seconds=round(time.perf_counter() - t0, 2),
        pkn_version=__version__,
        torch_version=torch.__version__,
    )
    net.adaptation = record
    net.provenance = {
        "name": f"{base['name']}-adapted",
        "sha256": None,
        "path": None,
        "adapted_from": base,
    }
    if out is not None:
        save(net, out)
    return net


def _train(net, groups, mode, options, steps, batch, crop, lr, a, seed, progress, cancel) -> dict:
    gen = torch.Generator().manual_seed(seed)
    net.train().requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)) * 0.99 + 0.01
    )
    losses, done, cancelled, first = [], 0, False, None
    corr = _correlation(groups)  # what pkn.restore will tell the network at inference
    for step in range(steps):
        if _cancelled(cancel):
            cancelled = True
            break
        pairs = "clean" if mode == "clean" else mode == "n2n"
        x, std, target = sample(groups, batch, crop, gen, pairs=pairs)
        if mode == "blindspot":
            loss = _blind_loss(net, x, std, options, gen, corr)
        else:
            if mode == "r2r":
                n = torch.randn(x.shape, generator=gen) * std
                x, target, std = x + a * n, x - n / a, std * math.sqrt(1 + a * a)
            loss = (_forward(net, x, std, options, corr) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        lv = float(loss.detach())
        first = lv if first is None else first
        losses.append(lv)
        done = step + 1
        if progress is not None and progress(done, steps, lv) is False:
            cancelled = True
            break
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "steps_done": done,
        "cancelled": cancelled,
        "loss_first": first,
        "loss_last": float(np.mean(tail)) if tail else None,
        "loss_every_10": [round(v, 8) for v in losses[::10]],
    }


_SPACING = 4  # blind regions on a grid every 4 (r + 1) pixels: 1/16 of the pixels at r = 0


def _blind_grid(shape, r: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random grid ``J`` of centres (every ``4 (r + 1)`` px, random phase) and the blind
    regions around them (``max(|dy|, |dx|) <= r``), as ``(1, 1, H, W)`` boolean masks."""
    H, W = shape[-2:]
    sp = _SPACING * (r + 1)
    py, px = (int(v) for v in torch.randint(sp, (2,), generator=gen))
    centre = torch.zeros(1, 1, H, W, dtype=torch.bool)
    centre[..., py::sp, px::sp] = True
    block = centre.clone()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            block |= _shift(centre, dy, dx)
    return centre, block


def _blind_predict(net, x, std, options, centre, block, corr=None):
    """The model's blind-spot output on ``x`` and its sum of (non-centre) weights, both
    J-invariant at the ``centre`` pixels.

    Every blind region is replaced by the mean of the ring around it before the network
    predicts the maps (so the maps at a centre never see it: Noise2Self's masking), and
    the filter runs in its blind-spot form on ``x`` (so the average at a centre never
    reads its blind region, also not through the NLM patch distances). The output at a
    centre ``p`` therefore depends on nothing within ``r`` px of ``p``.
    """
    from .kernels._common import as_map
    from .kernels.nlm import _nlm_blind_sums, _ring_mean

    r = options["blind_spot"]
    m = _ring_mean(x, torch.ones_like(centre, dtype=x.dtype), r)
    mc = torch.where(centre, m, torch.zeros_like(m))
    fill = mc.clone()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy or dx:
                fill = fill + _shift(mc, dy, dx)
    maps = net.predict_maps(torch.where(block, fill, x), std, correlation=corr)
    fn = inspect.signature(net.spec.function).parameters
    ps = options.get("patch_size", fn["patch_size"].default if "patch_size" in fn else 1)
    ss = options.get("search_size", fn["search_size"].default)
    s = as_map(maps["sigma"], x, "sigma", low=0.0)
    q = maps.get("spatial_sigma")
    q = None if q is None else as_map(q, x, "spatial_sigma", low=0.0)
    num, den = _nlm_blind_sums(x, x, s, q, ps, ss, r, bool(options.get("joint")))
    return num / den, den


def _blind_loss(net, x, std, options, gen, corr=None) -> torch.Tensor:
    """The J-invariant estimate of the ordinary filter's squared error at a random grid of
    centres (see :func:`_centre_corrected`)."""
    centre, block = _blind_grid(x.shape, options["blind_spot"], gen)
    yb, w = _blind_predict(net, x, std, options, centre, block, corr)
    sel = centre.expand_as(x)
    var = std.expand_as(x)[sel].square()
    return _centre_corrected(yb[sel], w[sel], x[sel], var).mean()


def _centre_corrected(yb, w, x, var):
    """Per-pixel estimate of the ordinary filter's squared error from the blind one.

    The ordinary filter adds the centre with weight 1 to the blind average ``yb`` of
    weight ``w``: ``y = (x + w yb) / (1 + w)`` (its weights taken equal to the blind
    ones). ``x - clean`` (the noise, variance ``var``) is independent of ``yb`` (J-
    invariance), so ``E (y - clean)^2 = (var + w^2 E (yb - clean)^2) / (1 + w)^2`` and
    ``(yb - x)^2 - var`` estimates ``E (yb - clean)^2`` without the clean image.

    Measured on W2S (``benchmarks/adapt.py``): the plain blind-spot loss ``(yb - x)^2``
    optimises the maps for a filter *without* its centre and over-smooths at inference
    (up to 0.3 dB below the shipped model on some images); this estimate does not.
    """
    return (var + w.square() * ((yb - x).square() - var)) / (1 + w).square()


def _shift(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``t`` moved by ``(dy, dx)`` (zeros / False coming in)."""
    H, W = t.shape[-2:]
    out = torch.zeros_like(t)
    out[..., max(dy, 0) : H + min(dy, 0), max(dx, 0) : W + min(dx, 0)] = t[
        ..., max(-dy, 0) : H + min(-dy, 0), max(-dx, 0) : W + min(-dx, 0)
    ]
    return out


def _correlation(groups) -> np.ndarray | None:
    """The noise correlation ``(5, 5)`` the network is told while adapting: the mean of
    the groups' estimated correlations (as :func:`pkn.restore` passes them), or None when
    the noise was given (restore then treats it as white)."""
    from ._input import correlation_of

    cs = [correlation_of(g.noise) for g in groups]
    if any(c is None for c in cs):
        return None
    return np.mean([c.mean(axis=0) for c in cs], axis=0)


def _forward(
    net: PKNModel, x: torch.Tensor, std: torch.Tensor, options: dict, corr=None
) -> torch.Tensor:
    """The model on crops ``x`` ``(B, 1, s, s)``, each its own image (with ``joint`` the
    distances come from the crop itself, not from the batch read as colour channels)."""
    maps = net.predict_maps(x, std, correlation=corr)
    kw = {"guide": x} if options.get("joint") else {}
    return run_filter(net.spec, x, maps, factor=net.factor, options=options, **kw)


def _finetune_clean(
    frames, clean, *, model=None, kernel="nlm", noise=None, steps=300, batch=4, crop=None,
    lr=3e-4, seed=0,
) -> PKNModel:  # fmt: skip
    """The benchmarks' reference: the same fine-tuning as ``n2n`` (same defaults, crops,
    steps and seed) with the clean image as target instead of another capture."""
    net, _ = _base_model(model, kernel)
    frames = list(frames)
    crop = crop or min(_CROP, *(min(f.shape) for f in frames)) // 2 * 2
    groups = make_groups(frames, noise, joint=True)
    g = groups[0]
    c = torch.from_numpy(((np.asarray(clean, np.float64) - g.offset) / g.scale).astype(np.float32))
    g.clean = c.expand(g.x.shape[0], 1, *c.shape)
    _train(net, groups, "clean", dict(net.options), steps, batch, crop, lr, 0.5, seed, None, None)
    return net.eval().requires_grad_(False)


# ---------------------------------------------------------------------- saving
def _check_out(out) -> Path:
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"the model file must end in .safetensors, got {str(out)!r}.")
    package = Path(__file__).resolve().parent
    from importlib import resources

    shipped = Path(str(resources.files("pkn._resources"))).resolve()
    where = out.resolve()
    for root in (package, shipped):
        if where.is_relative_to(root):
            raise ValueError(
                f"{out} is inside the installed package ({root}); write adapted models and "
                "their cards elsewhere."
            )
    return out


def save(model: PKNModel, out: str | Path, *, command: str = "") -> Path:
    """Write an adapted ``model`` to ``out`` (``.safetensors``) and its card ``out.md``
    next to it (never into the package). Returns the model's path.

    ``command`` (the command line that made it) goes on the card.
    """
    from ._adapt_card import write_card
    from .models.io import file_sha256, save_model

    out = _check_out(out)
    record = dict(getattr(model, "adaptation", None) or {})
    if not record:
        raise ValueError("model has no adaptation record; save models made by pkn.adapt().")
    if command:
        record["command"] = command
    save_model(model, out, {"adaptation": record})
    sha = file_sha256(out)
    model.provenance = {**getattr(model, "provenance", {}), "path": str(out), "sha256": sha}
    model.provenance["name"] = out.stem
    write_card(out, record, sha)
    return out


class _CallableModule(types.ModuleType):
    """``pkn.adapt(...)`` calls :func:`adapt` even after ``import pkn.adapt`` made the
    attribute ``pkn.adapt`` this module."""

    def __call__(self, *args, **kwargs):
        return adapt(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
