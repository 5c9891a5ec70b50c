"""Small bundled sample images (no download), each with its clean reference."""

from __future__ import annotations

from importlib import resources

import numpy as np

__all__ = ["fluorescence", "natural"]


def _read(name: str) -> np.ndarray:
    from skimage import io

    with resources.as_file(resources.files("pkn._resources") / "samples" / name) as p:
        return io.imread(p)


def fluorescence() -> tuple[np.ndarray, np.ndarray]:
    """Real noisy fluorescence microscopy (256x256 uint8) and its clean reference.

    A crop of the SRDTrans data (Li et al., Nat. Comput. Sci. 2023; Apache-2.0), see
    ``resources/samples/README.md``. The clean image is an average of many frames and
    was rescaled separately, so compare after an affine fit.
    """
    return _read("fluorescence_noisy.png"), _read("fluorescence_clean.png")


def natural(sigma: float = 0.08, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's ``camera`` (512x512) as float32 in [0, 1] with seeded AWGN ``sigma``.

    Returns
    -------
    (noisy, clean) : float32 arrays; the noise is not clipped.
    """
    from skimage import data

    clean = data.camera().astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    noisy = clean + np.float32(sigma) * rng.standard_normal(clean.shape, dtype=np.float32)
    return noisy, clean
