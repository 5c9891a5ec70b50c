"""napari-pkn: Procedural Kernel Networks."""
from ._version import __version__

__all__ = ["__version__"]
