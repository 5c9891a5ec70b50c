"""Procedural kernels: classical filters driven by per-pixel parameter maps.

Images are ``(B, C, H, W)`` tensors; every parameter is a number or a map
``(B or 1, 1 or C, h, w)`` at any resolution, resampled bilinearly where needed.
All kernels are differentiable with respect to the image and every map.

Every kernel module declares a descriptor (:mod:`pkn.kernels.registry`); a kernel added
later is reachable here by its function's and Module's names without editing this file.
"""

from .affine import Affine, affine
from .basis import Basis, basis
from .gaussian import Gaussian, gaussian
from .kpn import KPN, kpn
from .nlm import NLM, Bilateral, bilateral, nlm
from .polyblur import Polyblur, polyblur
from .probe import Probe, effective_weights
from .rbf import RBFResample, rbf_resample

__all__ = [
    "KPN",
    "NLM",
    "Affine",
    "Basis",
    "Bilateral",
    "Gaussian",
    "Polyblur",
    "Probe",
    "RBFResample",
    "affine",
    "basis",
    "bilateral",
    "effective_weights",
    "gaussian",
    "kpn",
    "nlm",
    "polyblur",
    "rbf_resample",
]


def __getattr__(name: str):
    from .registry import registry

    for k in registry().values():
        for obj in (k.function, k.module):
            if obj.__name__ == name:
                return obj
    raise AttributeError(f"module 'pkn.kernels' has no attribute {name!r}")
