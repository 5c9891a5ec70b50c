"""Benchmarks of napari-pkn, run with ``python -m pkn bench <name>``."""
