"""Make docs/screenshot.png: napari with the PKN widget on the fluorescence sample.

Run under a display (a virtual one works):

    xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python scripts/screenshot.py

Restores the noisy sample (pixel size 0.1 µm) and shows, in napari's grid mode (all cells
share the same world coordinates and camera), the noisy input, the restored image, the NLM
sigma map (intensity units) and spatial sigma map (px, with the pixel size in µm) and the
clean reference, each cell labelled with its layer name (which carries the map's units),
the maps with colorbars; probes one pixel (its weights are reported in the widget), and
saves ``viewer.screenshot(canvas_only=False)`` (the whole window).

    xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python scripts/screenshot.py OUT.png

writes elsewhere.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "screenshot.png"
PROBE = (118, 140)  # (row, col) of a pixel on a bright cell edge
PIXEL_UM = 0.1  # the pixel size given to the sample (µm)


def _wait(app, until, timeout: float = 120.0) -> None:
    t0 = time.perf_counter()
    while not until():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the restoration did not finish in time")
        app.processEvents()
        time.sleep(0.02)


def main(out: Path = OUT) -> Path:
    import os
    import tempfile

    # a throwaway settings folder: measuring must not change (or read) the user's
    # remembered widget settings
    os.environ["NAPARI_PKN_CONFIG_DIR"] = tempfile.mkdtemp(prefix="pkn-settings-")
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from napari_pkn._launch import DEMO_MODEL, DEMO_TASK, grid_of, open_viewer
    from napari_pkn._layers import PROBE_NAME

    viewer, widget = open_viewer(run=False, show=True)
    for layer in viewer.layers:  # a microscope's pixel size: units on maps and colorbars
        layer.scale, layer.units = (PIXEL_UM, PIXEL_UM), ("um", "um")
        layer.name = layer.name.replace("fluorescence ", "").strip("()")  # short labels
    widget.form.select(layer="noisy", task=DEMO_TASK, model=DEMO_MODEL)  # as the main job
    app = QApplication.instance()
    qt_window = viewer.window._qt_window
    qt_window.resize(1600, 1150)
    dock = viewer.window._qt_viewer.dockLayerList
    qt_window.resizeDocks([dock], [380], Qt.Orientation.Horizontal)
    widget.form.strength.setValue(1.0)
    widget.form.show_maps.setChecked(True)
    widget.run()
    _wait(app, lambda: not widget.busy)
    widget.probe.enabled.setChecked(True)
    widget.probe.probe((), PROBE)
    layers = viewer.layers
    layers.remove(layers[PROBE_NAME])  # the probe patch: its numbers stay in the widget
    clean = layers["clean reference"]
    clean.visible = True
    layers.move(layers.index(clean), len(layers))
    grid = grid_of(viewer)
    grid.enabled = True
    grid.shape = (3, 2)  # noisy, restored / sigma, spatial sigma / clean
    for layer in layers:  # each grid cell is labelled with its layer's name (and units)
        layer.name_overlay.visible = True
        layer.name_overlay.font_size = 8  # room for the units of the maps
        if "parameter" in layer.metadata.get("pkn", {}):
            layer.colorbar.position = "bottom_right"  # not over the name
    maps = [ly for ly in layers if "parameter" in ly.metadata.get("pkn", {})]
    if not all(m.colorbar.visible for m in maps):  # the widget shows them
        raise RuntimeError("the map layers lost their colorbars")
    layers.selection.active = maps[0]  # its layer controls are shown
    viewer.reset_view()
    viewer.camera.zoom *= 0.88  # room for the colorbar beside the map
    for _ in range(25):
        app.processEvents()
        time.sleep(0.02)
    image = viewer.screenshot(path=str(out), canvas_only=False)
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]})")
    viewer.close()
    napari.Viewer.close_all()
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
