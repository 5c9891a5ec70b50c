"""Open napari with the PKN restoration widget docked on the fluorescence sample.

Usage: ``python -m napari_pkn._launch`` (add ``--run`` to restore it straight away;
``--screenshot PATH`` runs it, saves a screenshot of the whole window and quits, which is
how the main job is checked on a machine without a screen, under ``xvfb-run``).
"""

from __future__ import annotations

import argparse

__all__ = ["arrange", "main", "open_viewer"]

DEMO_TASK = "denoise"  # the sample is a noisy fluorescence image
DEMO_MODEL = "nlm-fluo"  # the NLM model trained for fluorescence microscopy (the sample's kind)


def open_viewer(run: bool = False, show: bool = True, viewer=None):
    """A viewer with the noisy fluorescence sample and the docked widget.

    ``viewer``: use this viewer instead of opening a new one (tests).

    Returns
    -------
    (napari.Viewer, PKNWidget)
    """
    import napari

    if viewer is None:
        viewer = napari.Viewer(title="napari-pkn: PKN restoration", show=show)
        viewer.window.resize(1600, 1000)
    viewer.open_sample("napari-pkn", "fluorescence")
    _, widget = viewer.window.add_plugin_dock_widget("napari-pkn", "PKN restoration")
    widget.form.select(layer="fluorescence (noisy)")
    if run:  # the demo: denoising with the sample's model, its maps and QC shown
        widget.form.select(task=DEMO_TASK, model=DEMO_MODEL, show_maps=True, show_qc=True)
        widget.run()
    return viewer, widget


def arrange(viewer) -> None:
    """Side by side in napari's grid: noisy, restored, parameter map(s), QC map, clean
    reference."""
    names = [layer.name for layer in viewer.layers]
    clean = next((n for n in names if "clean" in n), None)
    if clean is not None:
        viewer.layers[clean].visible = True
        viewer.layers.move(viewer.layers.index(clean), len(viewer.layers))
    for layer in viewer.layers:
        layer.name_overlay.visible = True
    grid = grid_of(viewer)
    grid.enabled = True
    n = len(viewer.layers)
    if n > 4:  # two columns: the cells stay wide enough for the layer names
        grid.shape = (-(-n // 2), 2)
    viewer.reset_view()


def grid_of(viewer):
    """The viewer's grid settings: ``viewer.canvas.grid`` (napari >= 0.9; ``viewer.grid``
    is deprecated there), else ``viewer.grid``."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: open the viewer and start napari's event loop."""
    parser = argparse.ArgumentParser(prog="python -m napari_pkn._launch", description=__doc__)
    parser.add_argument("--run", action="store_true", help="restore the sample right away")
    parser.add_argument("--screenshot", metavar="PATH", help="run, save a screenshot, quit")
    args = parser.parse_args(argv)
    import napari

    viewer, widget = open_viewer(run=args.run or bool(args.screenshot))
    if args.run or args.screenshot:

        def done():
            arrange(viewer)
            if args.screenshot:
                widget.when_idle(lambda: shoot(viewer, args.screenshot))

        widget.when_idle(done)
    napari.run()


def shoot(viewer, path: str) -> None:
    viewer.screenshot(path, canvas_only=False)
    print(f"restored the sample; screenshot of the window written to {path}")
    viewer.close()


if __name__ == "__main__":
    main()
