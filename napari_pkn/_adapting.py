"""Adapting a denoising model to the user's own layers (:func:`pkn.adapt`), Qt-free.

:func:`plan` decides from the chosen layers what to train on and how: several layers of
one shape are repeated captures (Noise2Noise on their current planes); one stack layer is
Noise2Noise over its planes only when the user says they are repeated captures, else
blind-spot (Noise2Self) on each plane; one 2-D layer is blind-spot. :class:`AdaptJob`
runs :func:`pkn.adapt` in a helper thread and is a generator yielding progress (for a
napari ``thread_worker``); it saves the model and its card to the user's model folder
(never into the package) and registers it with :func:`pkn._catalogue.add_model`.
torch and pkn's submodules are imported inside functions only.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "ENV",
    "AdaptJob",
    "Plan",
    "copy_model",
    "load_model_file",
    "models_dir",
    "plan",
    "require_added",
]

ENV = "NAPARI_PKN_DATA_DIR"
ADAPT_TASK = "denoise"  # pkn.adapt fine-tunes denoising models
MODES = {"n2n": "Noise2Noise", "blindspot": "blind-spot (Noise2Self)"}


def models_dir() -> Path:
    """Where adapted models go: ``$NAPARI_PKN_DATA_DIR/models`` when set (tests), else
    ``platformdirs.user_data_dir("napari-pkn")/models``."""
    root = os.environ.get(ENV)
    if not root:
        from platformdirs import user_data_dir

        root = user_data_dir("napari-pkn", appauthor=False)
    return Path(root) / "models"


@dataclass
class Plan:
    """What an adaptation trains on: ``frames`` are ``(layer, plane index)`` pairs (an
    empty index for a 2-D layer), ``mode`` is :func:`pkn.adapt`'s, ``text`` says it in
    one line."""

    layers: list
    frames: list[tuple] = field(default_factory=list)
    mode: str = "blindspot"
    text: str = ""
    repeated: bool = False

    def arrays(self) -> list[np.ndarray]:
        """The frames as 2-D arrays of a dtype :func:`pkn.adapt` takes."""
        from ._scripting import source_from_layer

        sources = {id(ly): source_from_layer(ly) for ly in self.layers}
        return [sources[id(ly)].plane(idx) for ly, idx in self.frames]

    def names(self) -> list[tuple[str, list[int] | None]]:
        """``(layer name, plane index or None)`` per frame (for the model card)."""
        return [(ly.name, [int(i) for i in idx] or None) for ly, idx in self.frames]


def plan(layers: list, repeated: bool = False, plane_of=None) -> Plan:
    """The adaptation for ``layers`` (napari Image layers), or a ValueError saying why not.

    ``plane_of(layer, lead)``: the plane of a stack layer to use when several layers are
    given (the one the viewer shows); default the first.
    """
    from ._scripting import source_from_layer

    if not layers:
        raise ValueError("no image layer to adapt to: open or select one.")
    srcs = [source_from_layer(ly) for ly in layers]
    for ly, src in zip(layers, srcs, strict=True):
        if src.rgb:
            raise ValueError(
                f"layer {ly.name!r} is RGB; adaptation works on gray images (split the "
                "channels with Layers > Split RGB and adapt on one)."
            )
        if min(src.spatial) < 16:
            h, w = src.spatial
            raise ValueError(f"layer {ly.name!r} is {h}x{w} pixels; adaptation needs 16x16.")
    if len(layers) > 1:
        shapes = {src.spatial for src in srcs}
        if len(shapes) > 1:
            sizes = [(ly.name, *src.spatial) for ly, src in zip(layers, srcs, strict=True)]
            desc = ", ".join(f"{name!r} {h}x{w}" for name, h, w in sizes)
            raise ValueError(
                f"several selected layers are used as repeated captures of one field, so "
                f"they must have the same size; got {desc}. Select one layer, or layers of "
                "one size."
            )
        pick = plane_of or (lambda ly, lead: (0,) * len(lead))
        frames = [(ly, tuple(pick(ly, src.lead))) for ly, src in zip(layers, srcs, strict=True)]
        names = ", ".join(repr(ly.name) for ly in layers)
        stacked = any(src.lead for src in srcs)
        text = f"Noise2Noise on {len(layers)} layers as repeated captures: {names}"
        text += " (the planes shown)" if stacked else ""
        return Plan(list(layers), frames, "n2n", text, True)
    (ly,), (src,) = layers, srcs
    frames = [(ly, idx) for idx in np.ndindex(*src.lead)]
    n = len(frames)
    if not src.lead:
        text = f"blind-spot (Noise2Self) on {ly.name!r}, one image"
        return Plan([ly], frames, "blindspot", text)
    if repeated:
        if n < 2:
            raise ValueError(f"layer {ly.name!r} has one plane: no repeated captures.")
        return Plan([ly], frames, "n2n", f"Noise2Noise on the {n} planes of {ly.name!r}", True)
    text = f"blind-spot (Noise2Self) on each of the {n} planes of {ly.name!r}"
    return Plan([ly], frames, "blindspot", text)


class Cancelled:
    """What :meth:`AdaptJob.run` returns when cancelled: nothing was saved."""


class AdaptJob:
    """One adaptation of ``entry`` (a denoising :class:`pkn._catalogue.ModelInfo`) to a
    :class:`Plan`. :meth:`run` is a generator yielding ``(step, steps, message)`` that
    returns the registered model's ``ModelInfo`` (or :class:`Cancelled`); :attr:`model`,
    :attr:`path` and :attr:`card` are set when it is saved."""

    def __init__(
        self, the_plan: Plan, entry, steps: int = 200, seed: int = 0, noise=None, folder=None
    ):
        if entry.task != ADAPT_TASK:
            raise ValueError(
                f"adaptation fine-tunes a {ADAPT_TASK} model; {entry.name!r} does {entry.task}. "
                f"Choose task {ADAPT_TASK!r} and the model to start from."
            )
        self.plan, self.entry, self.steps, self.seed = the_plan, entry, int(steps), int(seed)
        self.noise = noise  # as pkn.restore's noise=: the widget's noise setting
        self.folder = Path(folder) if folder is not None else models_dir()
        self._cancel = threading.Event()
        self.model = self.path = self.card = self.info = None
        self.seconds = 0.0

    @property
    def total(self) -> int:
        return self.steps

    def cancel(self) -> None:
        """Stop before the next step; nothing is saved."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self):
        import pkn.adapt as adapt_module

        t0 = time.perf_counter()
        frames = self.plan.arrays()
        what = MODES.get(self.plan.mode, self.plan.mode)
        yield 0, self.steps, f"adapting {self.entry.name} ({what}) on {len(frames)} frame(s) ..."
        steps: queue.Queue = queue.Queue()
        box: dict = {}

        def work():
            try:
                box["model"] = adapt_module.adapt(
                    frames,
                    kernel=self.entry.kernel,
                    mode=self.plan.mode,
                    model=self.entry.ref,
                    noise=self.noise,
                    steps=self.steps,
                    seed=self.seed,
                    progress=lambda s, n, loss: steps.put((s, n, loss)),
                    cancel=self._cancel,
                )
            except BaseException as e:  # re-raised in the worker, reported to the user
                box["error"] = e

        thread = threading.Thread(target=work, name="napari-pkn adapt", daemon=True)
        thread.start()
        try:
            while thread.is_alive() or not steps.empty():
                try:
                    s, n, loss = steps.get(timeout=0.05)
                except queue.Empty:
                    continue
                if self.cancelled:
                    continue
                yield s, n, f"adapting {self.entry.name} ({what}): step {s}/{n}, loss {loss:.4g}"
        finally:  # the worker stopped early: stop the training too
            if thread.is_alive():
                self._cancel.set()
                thread.join()
        if "error" in box:
            raise box["error"]
        model = box["model"]
        if self.cancelled or model.adaptation.get("cancelled"):
            return Cancelled()
        self.model = model
        self._describe_data(model.adaptation)
        self.path = self._save(model)
        self.card = self.path.with_suffix(".md")
        from pkn._catalogue import add_model

        self.info = add_model(self.path)
        self.seconds = time.perf_counter() - t0
        return self.info

    def _describe_data(self, record: dict) -> None:
        """Name the frames after their layers (the model card's data table)."""
        names = self.plan.names()
        rename = {}
        for d, (layer, index) in zip(record.get("data", []), names, strict=False):
            rename[d["name"]] = layer + ("" if index is None else f" {index}")
            d["name"] = layer
            if index is not None:
                d["frame"] = index[0] if len(index) == 1 else index
        for n in record.get("noise", []):
            n["images"] = [rename.get(i, i) for i in n.get("images", [])]
        record["napari"] = {
            "layers": [ly.name for ly in self.plan.layers],
            "plan": self.plan.text,
            "repeated_captures": self.plan.repeated,
        }

    def _save(self, model) -> Path:
        import pkn.adapt as adapt_module

        self.folder.mkdir(parents=True, exist_ok=True)
        stem = f"{self.entry.kernel}-adapted-{time.strftime('%Y%m%d-%H%M%S')}"
        path, k = self.folder / f"{stem}.safetensors", 1
        while path.exists() or path.with_suffix(".md").exists():
            k += 1
            path = self.folder / f"{stem}-{k}.safetensors"
        return adapt_module.save(model, path)


def load_model_file(path, catalogue) -> object:
    """Register a ``.safetensors`` model file for this session (its ``ModelInfo``), or a
    ValueError saying why not; a bad file changes nothing."""
    from pkn._catalogue import add_model

    p = Path(path)
    if p.suffix != ".safetensors":
        raise ValueError(f"{p.name!r} is not a model file: choose a .safetensors file.")
    if not p.is_file():
        raise ValueError(f"model file {str(p)!r} does not exist.")
    for m in catalogue.models:
        same = not m.shipped and Path(m.ref).resolve() == p.resolve()
        if same:
            return m
        if m.name == p.stem:
            raise ValueError(
                f"a model named {p.stem!r} is already listed ({m.ref}); rename the file to "
                "load it too."
            )
    try:
        return add_model(p)
    except ValueError as e:
        raise ValueError(f"cannot load {p.name!r}: {e}") from None
    except Exception as e:  # a damaged or foreign file: safetensors, JSON, state dict errors
        raise ValueError(
            f"cannot load {p.name!r}: it is not a PKN model file ({type(e).__name__}: {e})."
        ) from None


def require_added(entry) -> None:
    """A ValueError unless ``entry`` is a model added in this session (adapted or loaded),
    the only kind that can be saved elsewhere."""
    if entry is None or entry.shipped:
        name = "no model" if entry is None else f"{entry.name!r} ships with napari-pkn"
        raise ValueError(
            f"{name}: choose an adapted or loaded model in the kernel list to save it."
        )


def copy_model(entry, dest) -> Path:
    """Copy an added model's file (and its card, if any) to ``dest`` (``.safetensors``
    added when missing). Returns the new path; ValueError saying why not."""
    require_added(entry)
    src, dest = Path(entry.ref), Path(dest)
    if dest.suffix != ".safetensors":
        dest = dest.with_name(dest.name + ".safetensors")
    if dest.resolve() == src.resolve():
        raise ValueError(f"{dest} is the model's own file; choose another name.")
    from importlib import resources

    import pkn

    for root in (Path(pkn.__file__).parent, Path(str(resources.files("pkn._resources")))):
        if dest.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"{dest} is inside the installed package; save models elsewhere.")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        card = src.with_suffix(".md")
        if card.is_file():
            shutil.copyfile(card, dest.with_suffix(".md"))
    except OSError as e:
        raise ValueError(f"cannot save the model to {dest}: {e}") from None
    return dest


def describe(job: AdaptJob) -> str:
    """One line about a finished adaptation."""
    a = job.model.adaptation
    first, last = a.get("loss_first"), a.get("loss_last")
    loss = ""
    if first is not None and last is not None and math.isfinite(last):
        loss = f", loss {first:.3g} -> {last:.3g}"
    what = MODES.get(a.get("mode"), a.get("mode"))
    return (
        f"adapted {job.entry.name} by {what}: {a.get('steps_done')} steps in "
        f"{job.seconds:.1f} s{loss}. {job.info.name!r} is selected: press Run to use it. "
        f"Saved with its model card in {job.path.parent}"
    )
