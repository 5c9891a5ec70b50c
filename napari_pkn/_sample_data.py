"""Sample data for napari's File > Open Sample menu: noisy images with clean references.

Each sample returns the clean reference first (hidden) and the noisy image on top, so the
noisy layer is selected and ready for the PKN restoration widget. Cheap to import.
"""

from __future__ import annotations

__all__ = [
    "bacteria16_sample",
    "bead_psf_sample",
    "fluorescence_sample",
    "natural_sample",
    "volume_sample",
]

_IID = "Instant-Image-Denoising repository (GPL-3.0 repository)"


def fluorescence_sample() -> list[tuple]:
    """Real noisy fluorescence microscopy (256x256 uint8, SRDTrans) and its reference."""
    from pkn.samples import fluorescence

    noisy, clean = fluorescence()
    source = {"pkn_sample": "fluorescence", "source": "SRDTrans (Li et al. 2023), Apache-2.0"}
    return [
        (
            clean,
            {
                "name": "fluorescence (clean reference)",
                "visible": False,
                "metadata": {**source, "role": "clean reference"},
            },
            "image",
        ),
        (noisy, {"name": "fluorescence (noisy)", "metadata": {**source, "role": "noisy"}}, "image"),
    ]


def natural_sample(sigma: float = 0.08) -> list[tuple]:
    """scikit-image's camera (512x512 float32 in [0, 1]) with Gaussian noise ``sigma``."""
    from pkn.samples import natural

    noisy, clean = natural(sigma)
    source = {"pkn_sample": "natural", "noise_sigma": sigma, "source": "scikit-image camera"}
    limits = {"contrast_limits": (0.0, 1.0)}
    return [
        (
            clean,
            {
                "name": "camera (clean reference)",
                "visible": False,
                **limits,
                "metadata": {**source, "role": "clean reference"},
            },
            "image",
        ),
        (
            noisy,
            {
                "name": f"camera (noisy, sigma {sigma:g})",
                **limits,
                "metadata": {**source, "role": "noisy"},
            },
            "image",
        ),
    ]


def bacteria16_sample() -> list[tuple]:
    """Real 16-bit fluorescence (bacteria, 512x512 uint16, camera offset kept) + target."""
    from pkn.samples import bacteria16

    noisy, target = bacteria16()
    source = {"pkn_sample": "bacteria16", "source": _IID, "pixel_size": "unknown"}
    return [
        (
            target,
            {
                "name": "bacteria16 (averaged target)",
                "visible": False,
                "metadata": {**source, "role": "averaged target (affine fit before PSNR)"},
            },
            "image",
        ),
        (
            noisy,
            {
                "name": "bacteria16 (noisy, 16-bit with offset)",
                "metadata": {**source, "role": "noisy"},
            },
            "image",
        ),
    ]


def volume_sample() -> list[tuple]:
    """A real noisy fluorescence z-stack (3x256x256 uint8), no clean reference."""
    from pkn.samples import volume

    meta = {"pkn_sample": "volume", "source": _IID, "voxel_size": "unknown", "role": "noisy"}
    return [(volume(), {"name": "volume (noisy z-stack)", "metadata": meta}, "image")]


def bead_psf_sample() -> list[tuple]:
    """A measured bead stack, the PSF imported from it, and a target blurred by that PSF.

    The raw bead (21x64x64 uint16, ~0.1 um voxels, hidden), its PSF from
    :func:`pkn.psf.import_psf` (19x19, 0.1 um pixels) and the fluorescence sample's clean
    image blurred by that PSF with Poisson-Gaussian noise (selected, ready to deblur
    with the PSF layer), its clean reference hidden.
    """
    from pkn.psf import import_psf
    from pkn.samples import BEAD_VOXEL_UM, bead, blurred_target

    raw = bead()
    psf = import_psf(raw)
    blurred, clean, _ = blurred_target()
    um = BEAD_VOXEL_UM
    src = "pycudadecon repository (MIT), bead PSF"
    psf_meta = {
        "pkn_sample": "bead_psf",
        "source": src,
        "role": "psf",
        "psf": {
            "plane": psf.plane,
            "background": psf.background,
            "shift": list(psf.shift),
            "source_shape": list(psf.source_shape),
            "info": psf.info,
        },
    }
    target = {
        "pkn_sample": "bead_psf",
        "source": "SRDTrans clean crop (Apache-2.0) blurred by the bead PSF (simulation)",
        "noise": {"photons": 200.0, "read_noise": 0.005, "variance": [1 / 200.0, 0.005**2]},
    }
    return [
        (
            raw,
            {
                "name": "bead (raw stack)",
                "scale": um,
                "visible": False,
                "metadata": {"pkn_sample": "bead_psf", "source": src, "role": "raw bead"},
            },
            "image",
        ),
        (
            psf.array,
            {"name": "bead PSF (imported)", "scale": um[1:], "metadata": psf_meta},
            "image",
        ),
        (
            clean,
            {
                "name": "bead target (clean reference)",
                "visible": False,
                "contrast_limits": (0.0, 1.0),
                "metadata": {**target, "role": "clean reference"},
            },
            "image",
        ),
        (
            blurred,
            {
                "name": "bead target (blurred + noise)",
                "contrast_limits": (0.0, 1.0),
                "metadata": {**target, "role": "blurred"},
            },
            "image",
        ),
    ]
