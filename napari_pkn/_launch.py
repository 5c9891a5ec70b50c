"""Open napari with the PKN restoration widget docked on the fluorescence sample.

Usage: ``python -m napari_pkn._launch`` (add ``--run`` to restore it straight away).
"""

from __future__ import annotations

import argparse

__all__ = ["main", "open_viewer"]


def open_viewer(run: bool = False, show: bool = True):
    """A viewer with the noisy fluorescence sample and the docked widget.

    Returns
    -------
    (napari.Viewer, PKNWidget)
    """
    import napari

    viewer = napari.Viewer(title="napari-pkn: PKN restoration", show=show)
    viewer.open_sample("napari-pkn", "fluorescence")
    _, widget = viewer.window.add_plugin_dock_widget("napari-pkn", "PKN restoration")
    widget.layer.setCurrentText("fluorescence (noisy)")
    if run:
        widget.run()
    return viewer, widget


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: open the viewer and start napari's event loop."""
    parser = argparse.ArgumentParser(prog="python -m napari_pkn._launch", description=__doc__)
    parser.add_argument("--run", action="store_true", help="restore the sample right away")
    args = parser.parse_args(argv)
    import napari

    open_viewer(run=args.run)
    napari.run()


if __name__ == "__main__":
    main()
