"""The kernel registry: one descriptor per kernel, next to its function.

Every kernel module declares what the rest of the house needs to know about its kernel
in a :class:`Kernel` descriptor (module attribute ``KERNELS``, a tuple): its parameters
with units, ranges and the network's remapping, which maps ``strength`` scales, how to
apply it to an image with its maps, its support radius (for the probe), its task and
display hints. :func:`get` and :func:`names` collect them by importing every public
module of :mod:`pkn.kernels`, so adding a kernel means adding one module (and its
test): the models, :func:`pkn.restore`, the probe, the oracle, the benchmarks, the
command line and the napari plugin all read it from here. No code outside the
descriptors branches on a kernel's name.

Parameter conventions (see ``docs/CONVENTIONS.md``):

* ``unit`` is ``"intensity"`` (input units; the network predicts a multiple of the local
  noise std, ``remap="noise"``), ``"px"`` (input pixels) or ``"none"`` (a correlation or
  a coefficient);
* ``low``/``high`` is the valid range (for ``"noise"`` parameters: of the multiplier);
* ``init`` is the value an untrained network starts from.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache

import torch

from . import remap

__all__ = [
    "Kernel",
    "Param",
    "correlation",
    "get",
    "half_maps",
    "largest",
    "names",
    "px_sigma",
    "registry",
    "signal_sigma",
]

UNITS = ("intensity", "px", "none")
REMAPS = ("sigmoid", "noise", "correlation", "none")
LIMITS = ("zero", "symmetric", "unit", "percentile")


@dataclass(frozen=True)
class Param:
    """One parameter map of a kernel.

    Attributes
    ----------
    name : str
        Keyword the kernel function takes it by (``"sigma"``, ``"sigma1"``, ...).
    unit : {"intensity", "px", "none"}
        What its values measure: the input's intensity units, input pixels, or nothing.
    low, high : float
        Valid range. For ``remap="noise"``: range of the multiplier of the noise std.
    init : float
        Start value of an untrained network (``remap="noise"``: multiple of the noise).
    remap : {"sigmoid", "noise", "correlation", "none"}
        How the network's raw output becomes the parameter: ``low + (high - low) *
        sigmoid(raw)``; the same times the local noise std; ``tanh``-like into (-1, 1);
        or not network-driven.
    strength : bool
        Whether the user's ``strength`` knob multiplies this map.
    label : str
        Short human label (``"sigma1 (along x)"``); defaults to the name.
    doc : str
        Range and meaning for model cards.
    colormap : str
        napari colormap for the map layer.
    limits : {"zero", "symmetric", "unit", "percentile"}
        Contrast limits: ``[0, p99.5]``, ``[-m, m]`` about zero, ``[-1, 1]``, or
        ``[p0.5, p99.5]``.
    channels : int
        Planes of this parameter per image channel (1 for a map; ``K*K`` for KPN logits;
        0: any number, given by the caller).
    """

    name: str
    unit: str = "none"
    low: float = float("-inf")
    high: float = float("inf")
    init: float = 0.0
    remap: str = "sigmoid"
    strength: bool = False
    label: str = ""
    doc: str = ""
    colormap: str = "viridis"
    limits: str = "zero"
    channels: int = 1

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(
                f"Param {self.name!r}: unit must be one of {UNITS}, got {self.unit!r}."
            )
        if self.remap not in REMAPS:
            raise ValueError(
                f"Param {self.name!r}: remap must be one of {REMAPS}, got {self.remap!r}."
            )
        if self.limits not in LIMITS:
            raise ValueError(
                f"Param {self.name!r}: limits must be one of {LIMITS}, got {self.limits!r}."
            )

    @property
    def title(self) -> str:
        return self.label or self.name

    def to_value(self, raw: torch.Tensor, noise_std: torch.Tensor) -> torch.Tensor:
        """The network's raw output ``(B, 1, h, w)`` -> parameter values."""
        if self.remap == "correlation":
            return remap.correlation(raw)
        v = remap.sigmoid_range(raw, self.low, self.high)
        return v * noise_std if self.remap == "noise" else v

    def to_raw(self, value: torch.Tensor, noise_std: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_value`."""
        if self.remap == "correlation":
            return remap.inverse_correlation(value)
        if self.remap == "noise":
            value = value / noise_std.clamp_min(1e-8)
        return remap.inverse_sigmoid_range(value, self.low, self.high)


def _no_grid(t: float) -> dict:
    raise ValueError("this kernel has no oracle grid.")


@dataclass(frozen=True)
class Kernel:
    """Everything the house needs to know about one kernel.

    Attributes
    ----------
    name : str
        The one name of the kernel everywhere (model files, ``restore(kernel=...)``,
        benchmarks, the CLI, napari).
    task : str
        ``"denoise"``, ``"deblur"``, ``"upsample"``, or ``""`` for building blocks that no
        shipped network drives (KPN, basis, affine).
    description : str
        One line for model cards and menus.
    function : callable
        The kernel function, ``function(x, *maps, **options)``.
    module : type
        Its thin ``nn.Module``.
    params : tuple of Param
        Its parameter maps, in the order of the network's outputs.
    apply : callable
        ``apply(x, maps, options, **inputs) -> y``: run the kernel on ``x (B, C, H, W)``
        with ``maps`` (name -> tensor or number) and fixed ``options``; ``inputs`` are the
        per-call inputs the task needs (``blur=``, ``size=``, ``guide=``). Default: the
        function with the maps by keyword.
    radius : callable
        ``radius(maps, options, inputs) -> int``: the support radius in input pixels
        (the probe crops ``2 r + 1`` around a pixel, plus one pixel of margin).
    convex : bool
        Every output pixel is a convex combination of input pixels.
    keeps_constants : bool
        A constant image comes out unchanged (every convex kernel; polyblur's
        ``a = 1 - b - c - d``; not the affine model).
    inputs : tuple of str
        Per-call inputs ``apply`` requires (``"blur"`` for deblurring, ``"size"`` for
        resampling).
    spatial_axes : tuple of str
        The trailing axes the kernel filters over, ``("y", "x")`` for every kernel so far.
        A kernel over ``("z", "y", "x")`` or ``("t", "y", "x")`` declares them here, and
        the one place that splits an input into what the kernel filters at once (the
        input preparation of :class:`pkn.Restorer`, which reads :attr:`ndim`) hands it
        ``ndim``-dimensional blocks instead of planes; every other layer passes the
        blocks through. Until such a kernel exists, ``Restorer`` refuses ``ndim != 2``
        with a clear error.
    pixel_grid : {"input", "output"}
        The grid of the output (and of the probe's pixel): the input's, or another one
        (resampling). ``"px"`` parameters are always in input pixels.
    glyphs : tuple of str
        Names of three maps ``(sigma along x, sigma along y, correlation)`` that describe
        a 2x2 spatial covariance: napari draws orientation glyphs from them. Empty: none.
    probe_options : callable
        ``probe_options(options, channels) -> dict``: a model's fixed options as the probe
        of one channel needs them, given every channel of the image ``(1, C, H, W)``
        (NLM with ``joint``: the distances come from all channels). Default: unchanged.
    weights_from_guide : bool
        The weights are computed from a ``guide=`` image (default: the input itself); the
        probe holds it fixed to read them off.
    fixed_window : callable
        ``fixed_window(radius) -> dict``: options that pin the window the whole image
        used (its radius), so that a probe on a crop applies the same weights.
    grid : callable
        ``grid(t) -> dict``: the oracle's candidate parameters for ``t`` in (0, 1) along the
        kernel's main axis (``"intensity"`` values as multiples of the noise std).
    example : callable
        ``example(x, generator) -> (maps, options, inputs)``: the typical setting the
        benchmarks time on ``x`` (maps at half resolution; random parts drawn from the
        ``torch.Generator``). For ``inputs`` with ``"size"``, ``x`` is the low-resolution
        input and the output is twice its size.
    refine : dict
        The oracle's second stage: parameter name -> candidate values tried after
        :attr:`grid` (NLM: its spatial sigma).
    rank : int
        Listing order (lower first); the first network kernel of a task is its default.
    example_doc : str
        One line saying what :attr:`example` runs (printed with benchmark results).
    """

    name: str
    task: str
    description: str
    function: Callable
    module: type
    params: tuple[Param, ...]
    example: Callable
    radius: Callable
    convex: bool = True
    keeps_constants: bool = True
    apply: Callable | None = None
    inputs: tuple[str, ...] = ()
    spatial_axes: tuple[str, ...] = ("y", "x")
    pixel_grid: str = "input"
    glyphs: tuple[str, ...] = ()
    probe_options: Callable | None = None
    weights_from_guide: bool = False
    fixed_window: Callable | None = None
    grid: Callable = _no_grid
    rank: int = 100
    refine: Mapping = field(default_factory=dict)
    example_doc: str = ""
    extra: Mapping = field(default_factory=dict)

    # ---------------------------------------------------------------- parameters
    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ValueError(
            f"kernel {self.name!r} has no parameter {name!r}; it has {self.param_names}."
        )

    @property
    def strength_params(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.strength)

    @property
    def network(self) -> bool:
        """Whether a parameter network can drive it (every map has a remapping)."""
        return bool(self.params) and all(p.remap != "none" for p in self.params)

    @property
    def n_out(self) -> int:
        return len(self.params)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions the kernel filters over."""
        return len(self.spatial_axes)

    def to_params(self, raw: torch.Tensor, noise_std: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw network outputs ``(B, P, h, w)`` -> name -> ``(B, 1, h, w)`` parameter maps."""
        return {p.name: p.to_value(raw[:, i : i + 1], noise_std) for i, p in enumerate(self.params)}

    def from_params(self, maps: Mapping, noise_std: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_params`: ``(B, P, h, w)`` raw values."""
        return torch.cat([p.to_raw(maps[p.name], noise_std) for p in self.params], dim=1)

    def init_raw(self) -> torch.Tensor:
        """Raw values ``(P,)`` that :meth:`to_params` maps to each parameter's ``init``."""
        one = torch.ones(1, 1, 1, 1)
        maps = {p.name: torch.full((1, 1, 1, 1), float(p.init)) for p in self.params}
        return self.from_params(maps, one).flatten()

    def scaled(self, maps: Mapping, strength: float) -> dict:
        """``maps`` with those that ``strength`` scales multiplied by it (1: unchanged)."""
        if strength == 1.0:
            return dict(maps)
        s = set(self.strength_params)
        return {n: (m * strength if n in s else m) for n, m in maps.items()}

    # ---------------------------------------------------------------- running
    def check_inputs(self, inputs: Mapping) -> None:
        for name in self.inputs:
            if inputs.get(name) is None:
                raise ValueError(f"kernel {self.name!r} needs {name}= ({self.task}).")

    def run(self, x: torch.Tensor, maps: Mapping, options: Mapping | None = None, **inputs):
        """Apply the kernel to ``x`` with ``maps`` (see :attr:`apply`)."""
        self.check_inputs(inputs)
        options = dict(options or {})
        if self.apply is not None:
            return self.apply(x, dict(maps), options, **inputs)
        kw = {k: v for k, v in inputs.items() if v is not None and k != "guide"}
        return self.function(x, **maps, **options, **kw)

    def support(self, maps: Mapping, options: Mapping | None = None, **inputs) -> int:
        """Support radius in input pixels for these maps and options."""
        return int(self.radius(dict(maps), dict(options or {}), inputs))


# ---------------------------------------------------------- the common parameters
def signal_sigma() -> Param:
    """The signal (range) sigma of NLM-type kernels: a multiple of the local noise std."""
    return Param(
        "sigma",
        unit="intensity",
        low=0.0,
        high=4.0,
        init=1.2,
        remap="noise",
        strength=True,
        label="sigma (signal)",
        doc="multiplier in [0, 4] times the local noise std",
        colormap="magma",
    )


def px_sigma(
    name: str, label: str, *, high: float = 4.0, init: float = 1.0, doc: str = ""
) -> Param:
    """A spatial sigma in input pixels, in ``[0, high]``, scaled by strength."""
    return Param(
        name,
        unit="px",
        low=0.0,
        high=high,
        init=init,
        strength=True,
        label=label,
        doc=doc or f"[0, {high:g}] px",
        colormap="viridis",
    )


def correlation(name: str, label: str) -> Param:
    """A correlation in (-1, 1), kept inside by the network's remapping."""
    return Param(
        name,
        unit="none",
        low=-1.0,
        high=1.0,
        init=0.0,
        remap="correlation",
        label=label,
        doc="(-0.999, 0.999)",
        colormap="coolwarm",
        limits="unit",
    )


def largest(maps: Mapping, prefix: str = "sigma") -> float:
    """The largest value of the maps (or numbers) whose names start with ``prefix``."""
    vals = [v for n, v in maps.items() if n.startswith(prefix) and v is not None]
    return max(float(v.detach().max()) if isinstance(v, torch.Tensor) else float(v) for v in vals)


def half_maps(x: torch.Tensor, **values: float) -> dict[str, torch.Tensor]:
    """Constant maps ``(1, 1, ceil(H/2), ceil(W/2))`` in ``x``'s dtype (for examples)."""
    H, W = x.shape[-2:]
    half = ((H + 1) // 2, (W + 1) // 2)
    return {n: torch.full((1, 1, *half), float(v), dtype=x.dtype) for n, v in values.items()}


# -------------------------------------------------------------------- the registry
@cache
def registry() -> dict[str, Kernel]:
    """name -> :class:`Kernel`, from every public module of :mod:`pkn.kernels`."""
    from .. import kernels as pkg

    found: dict[str, Kernel] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in ("registry", "remap", "probe"):
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for k in getattr(mod, "KERNELS", ()):
            if not isinstance(k, Kernel):
                raise TypeError(f"{mod.__name__}.KERNELS holds {k!r}, not a Kernel.")
            if k.name in found:
                raise ValueError(f"kernel name {k.name!r} is declared twice ({mod.__name__}).")
            found[k.name] = k
    return dict(sorted(found.items(), key=lambda kv: (kv[1].rank, kv[0])))


def get(name: str) -> Kernel:
    """The descriptor of kernel ``name`` (a clear error for unknown names)."""
    reg = registry()
    if not isinstance(name, str) or name not in reg:
        raise ValueError(f"unknown kernel {name!r}; choose one of {sorted(reg)}.")
    return reg[name]


def names(task: str | None = None, *, network: bool | None = None) -> list[str]:
    """Kernel names, optionally those of one ``task`` and/or those a network can drive."""
    return [
        n
        for n, k in registry().items()
        if (task is None or k.task == task) and (network is None or k.network == network)
    ]
