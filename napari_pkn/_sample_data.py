"""Sample data for napari's File > Open Sample menu: noisy images with clean references.

Each sample returns the clean reference first (hidden) and the noisy image on top, so the
noisy layer is selected and ready for the PKN restoration widget. Cheap to import.
"""

from __future__ import annotations

__all__ = ["fluorescence_sample", "natural_sample"]


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
