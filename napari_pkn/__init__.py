"""napari plugin for Procedural Kernel Networks (PKN)."""
from pkn._version import __version__

__all__ = ["__version__"]
