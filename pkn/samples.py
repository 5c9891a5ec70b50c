"""Small bundled sample images (no download), each with its clean reference."""

from __future__ import annotations

from importlib import resources

import numpy as np

__all__ = [
    "BEAD_VOXEL_UM",
    "bacteria16",
    "bead",
    "blurred_target",
    "fluorescence",
    "natural",
    "volume",
]

#: Voxel size of the bundled bead stack, (z, y, x) in micrometres (about 0.1 um).
BEAD_VOXEL_UM = (0.1, 0.1, 0.1)


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


def bacteria16() -> tuple[np.ndarray, np.ndarray]:
    """Real 16-bit fluorescence (bacteria), 512x512 uint16: a noisy frame and a target.

    The noisy frame is a single exposure with the camera offset included (values about
    111-2651); the target is an average of many frames, scaled differently (compare
    after an affine fit). Instant-Image-Denoising repository (GPL-3.0), see
    ``resources/samples/README.md``. Pixel size unknown.
    """
    return _read("bacteria16_noisy.png"), _read("bacteria16_target.png")


def volume() -> np.ndarray:
    """A real noisy fluorescence z-stack, 3x256x256 uint8 (no clean reference).

    The central 256x256 crop of a 3x512x512 float32 stack whose values are the integers
    2-255 (so uint8 is lossless). Instant-Image-Denoising repository (GPL-3.0). Voxel
    size unknown.
    """
    import tifffile

    with resources.as_file(
        resources.files("pkn._resources") / "samples" / "volume_3x256x256.tif"
    ) as p:
        return tifffile.imread(p)


def bead() -> np.ndarray:
    """A real measured bead PSF stack, 21x64x64 uint16, raw (camera offset ~142 counts).

    Planes 20-40 (the in-focus plane is 10) and the central 64x64 of the 61x128x128
    bead stack of the pycudadecon repository (MIT); voxels about 0.1 um
    (:data:`BEAD_VOXEL_UM`). The bead sits 7 px below the crop's centre, as measured:
    turn it into a PSF with :func:`pkn.psf.import_psf`.
    """
    import tifffile

    with resources.as_file(
        resources.files("pkn._resources") / "samples" / "bead_psf_21x64x64.tif"
    ) as p:
        return tifffile.imread(p)


def blurred_target(
    photons: float = 200.0, read_noise: float = 0.005, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fluorescence sample's clean image blurred by the bead PSF, with noise.

    The clean reference of :func:`fluorescence` (as float32 in [0, 1]) is convolved
    (mirrored borders) with ``pkn.psf.import_psf(bead()).array`` used as is, in pixels
    (a simulation: the image is treated as sampled like the bead, ~0.1 um), then gets
    Poisson noise (``photons`` at value 1) and Gaussian read noise, seeded.

    Returns
    -------
    (blurred, clean, psf) : float32 arrays; pass ``blur=psf`` and
    ``noise=(1 / photons, read_noise ** 2)`` to :func:`pkn.restore`.
    """
    from .psf import import_psf

    psf = import_psf(bead()).array
    clean = fluorescence()[1].astype(np.float32) / 255.0
    r = psf.shape[0] // 2
    pad = np.pad(clean.astype(np.float64), r, mode="reflect")
    # true convolution: the flipped PSF slides over the padded image
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(pad, psf.shape)
    blurred = np.einsum("ijkl,kl->ij", win, psf[::-1, ::-1].astype(np.float64))
    rng = np.random.default_rng(seed)
    noisy = rng.poisson(np.clip(blurred, 0, None) * photons) / photons
    noisy = noisy + read_noise * rng.standard_normal(noisy.shape)
    return noisy.astype(np.float32), clean, psf
