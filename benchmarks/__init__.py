"""Benchmarks of napari-pkn, run from the repository's root as
``python -m benchmarks <name> [options]`` (see ``docs/benchmarks.md``).

They live in the repository, not in the installed library: they import :mod:`pkn` as a
library and read their data from ``--data`` or ``$PKN_DATA`` (default
``../shared/data`` next to the repository).
"""
