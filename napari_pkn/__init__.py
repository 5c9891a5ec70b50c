"""napari plugin for Procedural Kernel Networks (PKN).

Importing this package is cheap (no torch, no napari): ``restore_layer`` is loaded on
first use.
"""

from pkn._version import __version__

__all__ = ["__version__", "restore_layer"]


def __getattr__(name: str):
    if name == "restore_layer":
        from ._scripting import restore_layer

        return restore_layer
    raise AttributeError(f"module 'napari_pkn' has no attribute {name!r}")
