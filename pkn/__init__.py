"""napari-pkn: Procedural Kernel Networks.

``import pkn`` is cheap (torch is imported on first use of a submodule), so that the
napari plugin can be discovered without loading torch.
"""

from __future__ import annotations

import importlib

from ._version import __version__

__all__ = [
    "NoiseModel",
    "Restoration",
    "Restorer",
    "__version__",
    "adapt",
    "calibrate",
    "catalogue",
    "check_psf",
    "estimate_noise",
    "import_psf",
    "kernels",
    "psf",
    "restore",
    "samples",
]

_LAZY = {
    "restore": ("pkn.restoration", "restore"),
    "Restoration": ("pkn.restoration", "Restoration"),
    "Restorer": ("pkn.restoration", "Restorer"),
    "estimate_noise": ("pkn.restoration", "estimate_noise"),
    "adapt": ("pkn.adapt", None),  # a callable module: pkn.adapt(images, ...)
    "catalogue": ("pkn._catalogue", "catalogue"),
    "calibrate": ("pkn.noise", "calibrate"),
    "NoiseModel": ("pkn.noise", "NoiseModel"),
    "kernels": ("pkn.kernels", None),
    "samples": ("pkn.samples", None),
    "psf": ("pkn.psf", None),
    "import_psf": ("pkn.psf", "import_psf"),
    "check_psf": ("pkn.psf", "check_psf"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'pkn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
