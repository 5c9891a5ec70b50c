"""The data side of :func:`pkn.adapt`: reading and validating the images, recording
where they came from (names, SHA-256), normalising them as :func:`pkn.restore` does, the
noise model, and the random crops the adaptation trains on."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._input import _noise, prepare

__all__ = ["Group", "Source", "load_inputs", "make_groups", "noise_model", "sample"]

_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


@dataclass(frozen=True)
class Source:
    """One adaptation image as recorded on the model card."""

    name: str  # the file name, or "array[i]" for arrays passed directly
    sha256: str  # of the file's bytes, or of the array's (C-order) bytes
    shape: tuple[int, ...]
    dtype: str
    path: str = ""  # the file as given ("" for arrays)
    frame: int | None = None  # the frame of a stack (split along ``axis``)

    def record(self) -> dict:
        out = {"name": self.name, "sha256": self.sha256, "shape": list(self.shape)}
        out["dtype"] = self.dtype
        if self.path:
            out["path"] = self.path
        if self.frame is not None:
            out["frame"] = self.frame
        return out


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist.")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(str(path)))
    from skimage import io

    return np.asarray(io.imread(str(path)))


def load_inputs(images, axis: int | None = None) -> tuple[list[np.ndarray], list[Source]]:
    """2-D frames and their sources from ``images``.

    ``images`` is an array or a path, or a list of them. A 2-D array is one image; an
    array (or file) with more dimensions is a stack of frames split along ``axis`` (which
    must then be given; the other two axes are the image).
    """
    if isinstance(images, str | Path | np.ndarray) or not isinstance(images, Sequence):
        items = [images]
    else:
        items = list(images)
    if not items:
        raise ValueError("images is empty: give at least one image (an array or a file).")
    frames, sources = [], []
    for i, item in enumerate(items):
        if isinstance(item, str | Path):
            path = Path(item)
            a = _read(path)
            base = {"name": path.name, "sha256": _file_sha(path), "path": str(item)}
        elif isinstance(item, np.ndarray) or hasattr(item, "__array__"):
            a = np.asarray(item)
            base = {"name": f"array[{i}]", "sha256": _sha(a)}
        else:
            raise TypeError(
                f"images[{i}] is a {type(item).__name__}; give numpy arrays or image file paths."
            )
        if a.dtype not in _DTYPES:
            raise TypeError(
                f"{base['name']} has dtype {a.dtype}; use uint8, uint16, float32 or float64."
            )
        if a.ndim == 2:
            frames.append(a)
            sources.append(Source(shape=a.shape, dtype=str(a.dtype), **base))
            continue
        if a.ndim < 2:
            raise ValueError(f"{base['name']} has shape {a.shape}; an image is 2-D.")
        if axis is None:
            raise ValueError(
                f"{base['name']} has shape {a.shape}: a stack of frames needs axis= (the "
                "axis of the repeated captures or time/z frames; CLI: --axis). Colour images "
                "are not supported: adapt on one channel at a time."
            )
        if a.ndim != 3:
            raise ValueError(
                f"{base['name']} has shape {a.shape}; a stack is 3-D (frames along axis)."
            )
        if not -3 <= axis < 3:
            raise ValueError(f"axis {axis} is out of range for {base['name']} of shape {a.shape}.")
        stack = np.moveaxis(a, axis, 0)
        for k, f in enumerate(stack):
            frames.append(f)
            sources.append(Source(shape=f.shape, dtype=str(a.dtype), frame=k, **base))
    for f, s in zip(frames, sources, strict=True):
        if min(f.shape) < 16:
            raise ValueError(f"{s.name} is {f.shape[0]}x{f.shape[1]} pixels; need at least 16x16.")
        if not np.isfinite(f).all():
            raise ValueError(f"{s.name} contains NaN or Inf values; replace them first.")
    return frames, sources


def noise_model(p, noise, frames: list[np.ndarray]) -> tuple[torch.Tensor, dict, float]:
    """``(std, description, correlation length)`` for prepared frames ``p``.

    The noise std map and its description are those :func:`pkn.restore` computes with the
    same ``noise`` argument (so the adapted network sees at inference what it trained
    on). The correlation length (px) is the calibrated noise model's
    (:func:`pkn.noise.calibrate`), measured on the frames when ``noise`` is given. This is
    the one place to change the noise model.
    """
    std, desc = _noise(p, noise)
    lengths = desc.get("correlation_length")
    if lengths is None:  # noise given: the correlation is still measured
        from .noise import calibrate

        nm = calibrate(np.stack(frames))
        lengths = [nm.length]
        desc = {**desc, "correlation_length": lengths, "rho": [list(nm.rho)]}
    length = float(max(np.atleast_1d(lengths))) if np.size(lengths) else 0.0
    return std, desc, length


@dataclass
class Group:
    """Frames normalised together: ``x`` ``(N, 1, H, W)`` and ``std`` ``(N, 1, 1|H, 1|W)``."""

    x: torch.Tensor
    std: torch.Tensor
    sources: list[int]  # indices into the sources
    noise: dict
    length: float
    offset: float = 0.0  # x = (input - offset) / scale
    scale: float = 1.0
    clean: torch.Tensor | None = None  # benchmarks only: clean targets, same units as x

    @property
    def pixels(self) -> int:
        return int(self.x.shape[0] * self.x.shape[-2] * self.x.shape[-1])


def make_groups(frames, noise, joint: bool) -> list[Group]:
    """One group of all frames (``joint``: repeated captures, normalised with one offset and
    scale) or one group per frame (each normalised as :func:`pkn.restore` would)."""
    if joint:
        parts = [list(range(len(frames)))]
    else:
        parts = [[i] for i in range(len(frames))]
    groups = []
    for idx in parts:
        fs = [frames[i] for i in idx]
        p = prepare(np.stack(fs), channel_axis=0) if len(fs) > 1 else prepare(fs[0])
        x = p.x.float()
        std, desc, length = noise_model(p, noise, fs)
        groups.append(Group(x, std.float(), idx, desc, length, p.offset, p.scale))
    return groups


def _crop_std(std: torch.Tensor, i: int, r: int, c: int, size: int) -> torch.Tensor:
    s = std[i : i + 1]
    if s.shape[-2:] == (1, 1):
        return s
    return s[..., r : r + size, c : c + size]


def sample(groups: list[Group], n: int, size: int, gen: torch.Generator, pairs):
    """``n`` random ``size x size`` crops at even offsets (the maps' 2x2 grid).

    Returns ``(x, std, target)``: with ``pairs`` the target is the same crop of another
    frame of the same group (Noise2Noise); with ``pairs="clean"`` the clean crop (the
    benchmarks' supervised baseline); else ``None``.
    """
    weights = torch.tensor([float(g.pixels) for g in groups])
    xs, ss, ts = [], [], []
    for _ in range(n):
        g = groups[int(torch.multinomial(weights, 1, generator=gen))]
        N, _, H, W = g.x.shape
        i = int(torch.randint(N, (1,), generator=gen))
        r = 2 * int(torch.randint((H - size) // 2 + 1, (1,), generator=gen))
        c = 2 * int(torch.randint((W - size) // 2 + 1, (1,), generator=gen))
        xs.append(g.x[i : i + 1, :, r : r + size, c : c + size])
        ss.append(_crop_std(g.std, i, r, c, size))
        if pairs == "clean":
            ts.append(g.clean[i : i + 1, :, r : r + size, c : c + size])
        elif pairs:
            j = int(torch.randint(N - 1, (1,), generator=gen))
            j += j >= i  # another capture
            ts.append(g.x[j : j + 1, :, r : r + size, c : c + size])
    if all(s.shape[-2:] == (1, 1) for s in ss):
        std = torch.cat(ss)  # one number per crop (AWGN)
    else:  # maps (Poisson-Gaussian), numbers expanded where groups mix both
        std = torch.cat([s.expand(1, 1, size, size) for s in ss])
    return torch.cat(xs), std, (torch.cat(ts) if pairs else None)
