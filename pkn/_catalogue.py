"""What this napari-pkn offers: tasks, kernels and models, as one public listing.

The napari plugin, the command line and scripts list choices from here rather than from
the internals of :mod:`pkn.models`. Kernels come from the registry
(:mod:`pkn.kernels.registry`); models are the ones shipped in the package plus any
``.safetensors`` files registered with :func:`add_model` in this session (e.g. a model
adapted to the user's own data).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Catalogue", "ModelInfo", "add_model", "catalogue"]


@dataclass(frozen=True)
class ModelInfo:
    """A model ``pkn.restore(..., model=ref)`` takes.

    Attributes
    ----------
    name : str
        Shipped name (``"nlm"``) or the file's stem.
    kernel, task : str
        The kernel it drives and that kernel's task.
    params : tuple of str
        Names of the parameter maps it predicts.
    ref : str
        What :func:`pkn.restore`'s ``model=`` takes (a shipped name or a file path).
    description : str
        The kernel's one-line description.
    shipped : bool
        Whether it ships with the package.
    """

    name: str
    kernel: str
    task: str
    params: tuple[str, ...]
    ref: str
    description: str = ""
    shipped: bool = True


@dataclass(frozen=True)
class Catalogue:
    """``tasks``: task -> default kernel; ``kernels``: name -> descriptor (every kernel of
    the registry); ``models``: the models, shipped first."""

    tasks: dict
    kernels: dict
    models: tuple[ModelInfo, ...]

    def models_for(self, task: str) -> list[ModelInfo]:
        """The models of one task in the registry's order (the task's default first),
        shipped models before added ones."""
        order = {name: i for i, name in enumerate(self.kernels)}
        ms = [m for m in self.models if m.task == task]
        return sorted(ms, key=lambda m: (not m.shipped, order.get(m.kernel, len(order))))


_ADDED: dict[str, ModelInfo] = {}


def _info(ref: str, shipped: bool) -> ModelInfo:
    from .models.io import load_model

    net, meta = load_model(ref)  # reads the metadata once (cached by path and hash)
    k = net.spec
    return ModelInfo(meta["name"], k.name, k.task, k.param_names, ref, k.description, shipped)


def add_model(path) -> ModelInfo:
    """Register a model file for this session; it is listed with the shipped ones."""
    from .models.io import list_models

    p = Path(path)
    info = _info(str(p), shipped=False)  # validates the file (clear errors)
    taken = set(list_models()) | {m.name for k, m in _ADDED.items() if k != str(p.resolve())}
    if info.name in taken:
        raise ValueError(
            f"a model named {info.name!r} is already listed; rename the file {p.name!r} "
            "(models are chosen by name)."
        )
    _ADDED[str(p.resolve())] = info
    return info


def catalogue() -> Catalogue:
    """Tasks, kernels and models available now."""
    from .kernels.registry import registry
    from .models.io import list_models
    from .models.procedural import tasks

    shipped = tuple(_info(n, shipped=True) for n in list_models())
    return Catalogue(tasks(), dict(registry()), shipped + tuple(_ADDED.values()))
