"""Responsiveness benchmark of the napari widget: Run -> result on a 2048x2048 image.

Measures the wall time from pressing Run to the output layers being in the viewer, and the
longest gap between ticks of a 5 ms QTimer during that time (how long the Qt event loop,
and so the viewer, was blocked). Also the time for a strength change (filter only).

Usage (needs a display; headless: ``xvfb-run -a .venv/bin/python scripts/bench_widget.py``)::

    python scripts/bench_widget.py [--size 2048] [--kernel nlm]
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--kernel", default="nlm")
    a = p.parse_args(argv)
    import os
    import tempfile

    # a throwaway settings folder: measuring must not change (or read) the user's
    # remembered widget settings
    os.environ["NAPARI_PKN_CONFIG_DIR"] = tempfile.mkdtemp(prefix="pkn-settings-")
    import napari
    import numpy as np
    import torch
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_pkn._qt._widget import PKNWidget

    viewer = napari.Viewer(show=True)
    widget = PKNWidget(viewer)
    viewer.window.add_dock_widget(widget, name="PKN restoration")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : a.size, 0 : a.size] / a.size
    clean = 0.5 + 0.3 * np.sin(12 * xx) * np.cos(9 * yy)
    img = (clean + 0.05 * rng.standard_normal(clean.shape)).astype(np.float32)
    layer = viewer.add_image(img, name="bench")
    widget.layer.setCurrentText(layer.name)
    widget.form.kernel.setCurrentIndex(widget.form.kernel.findData(a.kernel))
    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(5)

    def measure(action) -> tuple[float, float]:
        ticks.clear()
        t0 = time.perf_counter()
        ticks.append(t0)
        action()
        while widget.busy or widget._timer.isActive():
            app.processEvents()
            time.sleep(0.001)
        t1 = time.perf_counter()
        ticks.append(t1)
        gaps = np.diff(ticks)
        return t1 - t0, float(gaps.max())

    total, gap = measure(widget.run)
    new = max(0.1, widget.form.strength.value() / 2)
    s_total, s_gap = measure(lambda: widget.form.strength.setValue(new))
    timer.stop()
    print(
        f"Command: `xvfb-run -a .venv/bin/python scripts/bench_widget.py --size {a.size} "
        f"--kernel {a.kernel}`  "
    )
    print(
        f"{a.size}x{a.size} float32, kernel {a.kernel}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}"
    )
    print()
    print("| action | time to result | longest event-loop gap |")
    print("|---|---|---|")
    print(f"| Run (network + filter, in a worker) | {total:.2f} s | {1000 * gap:.0f} ms |")
    print(f"| strength change (filter only, debounced) | {s_total:.2f} s | {1000 * s_gap:.0f} ms |")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
