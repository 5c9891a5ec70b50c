"""Training images: where they are, loading, the validation split, and augmented crops.

The data never lives in the package. The training images are the folder given with
``--data DIR`` (:attr:`TrainConfig.data <pkn.training.loop.TrainConfig>`) or, without it,
``$PKN_DATA/train/bsds500``: the environment variable :data:`DATA_ENV` names the data
root (the project keeps it in ``../shared/data`` next to the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATA_ENV",
    "IMAGE_SUFFIXES",
    "TRAIN_SUBDIR",
    "ImageBank",
    "data_root",
    "image_files",
    "load_folder",
    "training_dir",
]

#: Environment variable naming the data root (training images, PSFs, test sets).
DATA_ENV = "PKN_DATA"
#: The training images under the data root.
TRAIN_SUBDIR = "train/bsds500"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})


def data_root() -> Path | None:
    """The data root named by ``$PKN_DATA``, or None when the variable is unset or empty."""
    env = os.environ.get(DATA_ENV, "").strip()
    return Path(env).expanduser() if env else None


def training_dir(data: str | Path | None = None) -> Path:
    """The folder of clean training images: ``data`` if given, else
    ``$PKN_DATA/train/bsds500``.

    Raises
    ------
    FileNotFoundError
        When neither is given (the message names both), or the folder does not exist.
    """
    if data:
        folder = Path(data).expanduser()
    elif (root := data_root()) is not None:
        folder = root / TRAIN_SUBDIR
    else:
        raise FileNotFoundError(
            "no training data: pass --data DIR (a folder of clean images) or set the "
            f"environment variable {DATA_ENV} to the data root (images in "
            f"${DATA_ENV}/{TRAIN_SUBDIR}; the project keeps it in ../shared/data)."
        )
    if not folder.is_dir():
        how = "--data" if data else f"${DATA_ENV}/{TRAIN_SUBDIR}"
        raise FileNotFoundError(
            f"training folder {folder} ({how}) does not exist; pass --data DIR with images "
            f"or set {DATA_ENV} to the data root."
        )
    return folder


def image_files(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` (suffixes :data:`IMAGE_SUFFIXES`), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_folder(folder: str | Path) -> list[np.ndarray]:
    """Load every image in ``folder`` (sorted by name) as uint8/uint16 ``(H, W, C)`` arrays."""
    from skimage import io

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"training folder {folder} does not exist; pass --data DIR with images "
            f"or set {DATA_ENV} to the data root."
        )
    files = image_files(folder)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}.")
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
        self.val_every = val_every
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
