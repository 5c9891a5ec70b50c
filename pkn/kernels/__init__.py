"""Procedural kernels: classical filters driven by per-pixel parameter maps.

Images are ``(B, C, H, W)`` tensors; every parameter is a number or a map
``(B or 1, 1 or C, h, w)`` at any resolution, resampled bilinearly where needed.
All kernels are differentiable with respect to the image and every map.
"""

from .affine import Affine, affine
from .basis import Basis, basis
from .gaussian import Gaussian, gaussian
from .kpn import KPN, kpn
from .nlm import NLM, bilateral, nlm
from .polyblur import Polyblur, polyblur
from .probe import Probe, effective_weights
from .rbf import RBFResample, rbf_resample

__all__ = [
    "KPN",
    "NLM",
    "Affine",
    "Basis",
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
