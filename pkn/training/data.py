"""Training images: loading, the validation split, and random augmented crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["ImageBank", "default_data_dir", "load_folder"]

_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def default_data_dir() -> Path:
    """``../shared/data/train/bsds500`` next to the repository (where the project keeps it)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "train" / "bsds500"


def load_folder(folder: str | Path) -> list[np.ndarray]:
    """Load every image in ``folder`` (sorted by name) as uint8/uint16 ``(H, W, C)`` arrays."""
    from skimage import io

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"training folder {folder} does not exist; pass --data DIR with images "
            "(the project uses ../shared/data/train/bsds500)."
        )
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _EXTS)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(_EXTS))}) in {folder}.")
    out = []
    for f in files:
        a = io.imread(f)
        if a.ndim == 2:
            a = a[..., None]
        out.append(a[..., :3])
    return out


class ImageBank:
    """Images held in memory, split into training and validation sets.

    Parameters
    ----------
    images : list of numpy.ndarray
        ``(H, W, C)`` integer images.
    val_every : int
        Every ``val_every``-th image (in name order) is held out for validation.
    """

    def __init__(self, images: list[np.ndarray], val_every: int = 20):
        self.val = [im for i, im in enumerate(images) if i % val_every == val_every - 1]
        self.train = [im for i, im in enumerate(images) if i % val_every != val_every - 1]
        if not self.train or not self.val:
            raise ValueError(
                f"need at least {val_every} images for a training/validation split, got "
                f"{len(images)}."
            )

    @staticmethod
    def _scale(a: np.ndarray) -> float:
        return float(np.iinfo(a.dtype).max) if a.dtype.kind in "ui" else 1.0

    def crops(self, rng: np.random.Generator, n: int, size: int, *, rgb: bool = False):
        """``n`` random crops in [0, 1], augmented with flips and 90-degree rotations:
        ``(n, 3, size, size)`` with ``rgb`` (gray images repeated), else one random
        channel ``(n, 1, size, size)``."""
        out = np.empty((n, 3 if rgb else 1, size, size), dtype=np.float32)
        for k in range(n):
            im = self.train[rng.integers(len(self.train))]
            H, W, C = im.shape
            if min(H, W) < size:
                raise ValueError(f"crop size {size} is larger than a {H}x{W} training image.")
            i, j, c = rng.integers(H - size + 1), rng.integers(W - size + 1), rng.integers(C)
            patch = im[i : i + size, j : j + size].astype(np.float32) / self._scale(im)
            patch = np.rot90(patch, rng.integers(4))
            if rng.integers(2):
                patch = patch[:, ::-1]
            out[k] = (
                np.moveaxis(np.broadcast_to(patch, (size, size, 3)), -1, 0)
                if rgb
                else (patch[..., c])
            )
        return torch.from_numpy(out)

    def validation_crops(self, size: int) -> torch.Tensor:
        """Deterministic centre crops of every validation image: ``(N, 3, s, s)``."""
        out = []
        for im in self.val:
            H, W, _ = im.shape
            s = min(size, H, W)
            i, j = (H - s) // 2, (W - s) // 2
            out.append(im[i : i + s, j : j + s].astype(np.float32) / self._scale(im))
        s = min(a.shape[0] for a in out)
        rgb = [np.broadcast_to(a[:s, :s], (s, s, 3)) for a in out]
        return torch.from_numpy(np.moveaxis(np.stack(rgb), -1, 1).copy())
