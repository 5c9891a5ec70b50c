"""Helpers shared by the restoration benchmarks (``deblur``, ``upsample``, ``microscopy``).

The data root, image loading, the metrics (PSNR and SSIM via :mod:`skimage.metrics`, and
their versions after an affine fit, from :mod:`pkn.metrics`), a JSON
cache of per-image results that several runs can fill in turn, the grid runner that
skips what the cache already holds, and the markdown table.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pkn.metrics import affine_metrics, metrics

__all__ = [
    "DATA_ENV",
    "Cache",
    "ModelUnavailable",
    "affine_metrics",
    "command_line",
    "data_root",
    "fmt_cell",
    "from_batch",
    "load_images",
    "markdown_table",
    "metrics",
    "parse_floats",
    "require_model",
    "run_grid",
    "seed",
    "set_threads",
    "task_kernels",
    "timed",
    "to_batch",
]

#: The environment variable naming the data root (Kodak24, Set12, PSFs, microscopy, ...).
DATA_ENV = "PKN_DATA"
#: Where the project keeps its data: ``../shared/data`` next to the repository. The
#: benchmarks live in the repository (they are not installed), so this path is theirs.
REPO_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_root() -> Path:
    """The data root: ``$PKN_DATA`` if set, else ``../shared/data`` next to the repository."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else REPO_DATA


IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


# --------------------------------------------------------------------------- images
def read_image(path: str | Path) -> np.ndarray:
    """Read one image as float32 in [0, 1] (uint8 / 255, uint16 / 65535; floats as is).

    An alpha channel is dropped; gray images stay 2-D, colour ones are ``(H, W, 3)``.
    """
    from skimage import io

    a = np.asarray(io.imread(str(path)))
    if a.ndim == 3 and a.shape[-1] in (2, 4):  # gray + alpha, RGB + alpha
        a = a[..., : a.shape[-1] - 1]
        a = a[..., 0] if a.shape[-1] == 1 else a
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    raise TypeError(f"{path}: unsupported image dtype {a.dtype}.")


def image_files(folder: str | Path) -> list[Path]:
    """Image files of ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_images(folder: str | Path, n: int | None = None) -> list[tuple[str, np.ndarray]]:
    """The first ``n`` (all if None) images of ``folder`` as ``(name, float32 image)``.

    Raises
    ------
    FileNotFoundError
        When the folder does not exist or holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist.")
    files = image_files(folder)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}.")
    files = files[:n] if n else files
    return [(f.stem, read_image(f)) for f in files]


def to_batch(img: np.ndarray):
    """``(H, W)`` or ``(H, W, C)`` numpy -> ``(C, 1, H, W)`` torch tensor (channels as batch,
    as the network processes them)."""
    import torch

    a = img[..., None] if img.ndim == 2 else img
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 0)[:, None]))


def from_batch(x, ndim: int) -> np.ndarray:
    """Inverse of :func:`to_batch`: ``(C, 1, H, W)`` -> ``(H, W)`` (``ndim`` 2) or
    ``(H, W, C)``."""
    a = np.moveaxis(x[:, 0].detach().cpu().numpy(), 0, -1)
    return a[..., 0] if ndim == 2 else a


# --------------------------------------------------------------------------- misc
def seed(*parts) -> int:
    """A reproducible seed from the parts' text (independent of run order and subsets)."""
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def timed(fn: Callable, *args, **kw):
    """``(fn(*args, **kw), seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def set_threads(n: int) -> None:
    """Use ``n`` torch threads (0: leave torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)


def parse_floats(text: str) -> list[float]:
    """``"1,1.5, 2"`` -> ``[1.0, 1.5, 2.0]``; ``""`` or ``"none"`` -> ``[]``."""
    text = text.strip()
    if text.lower() in ("", "none"):
        return []
    return [float(t) for t in text.split(",") if t.strip()]


def parse_rows(text: str, known: Sequence[str]) -> list[str]:
    """Comma-separated row names, checked against ``known``."""
    rows = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in rows if r not in known]
    if bad or not rows:
        raise SystemExit(f"--rows: unknown {bad or 'empty'}; choose from {', '.join(known)}.")
    return rows


class ModelUnavailable(RuntimeError):
    """The PKN model a benchmark row needs cannot be loaded."""


def require_model(name: str | Path, kernel: str) -> dict:
    """Load model ``name`` (shipped name or ``.safetensors`` path) and check its kernel.

    Returns its metadata (``sha256``, ``name``, ``path``, ...).

    Raises
    ------
    ModelUnavailable
        With a message saying which model is missing and what to do.
    """
    from pkn.models.io import list_models, load_model

    try:
        net, info = load_model(name)
    except (ValueError, FileNotFoundError, OSError) as e:
        hint = "" if "available" in str(e) else f" Shipped models: {list_models() or 'none'}."
        raise ModelUnavailable(
            f"cannot load the {kernel} model {str(name)!r}: {str(e).rstrip('.')}.{hint} "
            f"Train one (python -m pkn train --kernel {kernel} ...) and pass --model "
            "PATH.safetensors, or leave out the 'pkn' row with --rows."
        ) from None
    if net.kernel != kernel:
        raise ModelUnavailable(
            f"model {str(name)!r} drives the {net.kernel!r} kernel; this benchmark needs "
            f"a {kernel!r} model (--model)."
        )
    return info


def task_kernels(task: str) -> list[str]:
    """The network-driven kernels of ``task`` in registry order; the first is its default."""
    from pkn.kernels.registry import names

    return names(task=task, network=True)


def command_line(prog: str, argv: Sequence[str] | None) -> str:
    """The exact command, for the table's caption."""
    args = list(sys.argv[1:] if argv is None else argv)
    return prog + (" " + shlex.join(args) if args else "")


# --------------------------------------------------------------------------- cache
class Cache:
    """Per-image results in a JSON file (``{key: {"psnr": ..., ...}}``), or in memory.

    Every :meth:`put` re-reads the file and merges before writing (under an exclusive
    ``flock`` where available, then an atomic rename), so separate runs, even at the
    same time, can fill different rows of the same table.
    """

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.data: dict = {}
        if self.path and self.path.is_file():
            self.data = json.loads(self.path.read_text() or "{}")

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __getitem__(self, key: str) -> dict:
        return self.data[key]

    def put(self, key: str, value: dict) -> None:
        """Store ``value`` under ``key`` (and write the file)."""
        self.data[key] = value
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with open(lock, "w") as lk:
            try:
                import fcntl

                fcntl.flock(lk, fcntl.LOCK_EX)
            except (ImportError, OSError):  # no flock: merging still limits the damage
                pass
            if self.path.is_file():
                try:
                    disk = json.loads(self.path.read_text() or "{}")
                except json.JSONDecodeError:
                    disk = {}
                disk.update(self.data)
                self.data = disk
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)


# --------------------------------------------------------------------------- runner
def _print(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class Cell:
    """Mean results of one row (method) under one condition."""

    psnr: float
    ssim: float
    seconds: float
    n: int
    entries: list


def run_grid(
    cache: Cache,
    prefix: str,
    conditions: Sequence[tuple[str, object]],
    images: Sequence[tuple[str, object]],
    rows: Sequence[str],
    prepare: Callable,
    compute: Callable,
    *,
    row_tag: Callable[[str], str] = lambda row: "",
    log: Callable[[str], object] | None = None,
) -> dict[str, dict[str, Cell]]:
    """Evaluate every row on every image under every condition, using the cache.

    Parameters
    ----------
    cache : Cache
    prefix : str
        Start of the cache keys (benchmark and data set), e.g. ``"deblur|kodak24"``.
    conditions : sequence of (label, params)
        E.g. ``("g1.5 n0.01", {...})``; ``label`` goes into the keys and the table.
    images : sequence of (name, payload)
    rows : sequence of str
        Method names.
    prepare : callable
        ``prepare(params, index, name, payload) -> ctx``: the degraded input etc.; only
        called for an image when some row still needs computing.
    compute : callable
        ``compute(row, ctx) -> dict`` with at least ``psnr``, ``ssim``, ``seconds``.
    row_tag : callable
        Extra key text per row (model hash, iteration counts) so that results of other
        settings are never reused.
    log : callable
        Progress output, one string per call (default: print and flush).

    Returns
    -------
    dict
        ``{condition label: {row: Cell}}``.
    """
    log = log or _print
    table: dict[str, dict[str, Cell]] = {}
    n_img = len(images)
    for label, params in conditions:
        for i, (name, payload) in enumerate(images):
            ctx = None
            for row in rows:
                key = f"{prefix}|{label}|{row}{row_tag(row)}|{name}"
                if key in cache:
                    continue
                if ctx is None:
                    ctx = prepare(params, i, name, payload)
                res = compute(row, ctx)
                cache.put(key, res)
                log(
                    f"  [{i + 1}/{n_img}] {label} {name} {row}: {res['psnr']:.2f} dB, "
                    f"SSIM {res['ssim']:.4f}, {res['seconds']:.2f} s"
                )
        table[label] = {}
        for row in rows:
            ents = [cache[f"{prefix}|{label}|{row}{row_tag(row)}|{n}"] for n, _ in images]
            cell = Cell(
                float(np.mean([e["psnr"] for e in ents])),
                float(np.mean([e["ssim"] for e in ents])),
                float(np.mean([e["seconds"] for e in ents])),
                len(ents),
                ents,
            )
            table[label][row] = cell
            log(
                f"{prefix} {label}: {row:8s} {cell.psnr:.2f} dB, SSIM {cell.ssim:.4f} "
                f"({cell.seconds:.2f} s/image, {cell.n} images)"
            )
    return table


# --------------------------------------------------------------------------- output
def fmt_cell(cell: Cell) -> str:
    """``"28.41 / 0.8123 (0.52 s)"``: PSNR dB / SSIM (seconds per image)."""
    return f"{cell.psnr:.2f} / {cell.ssim:.4f} ({cell.seconds:.2f} s)"


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(lines)
