"""The kernel probe: click a pixel, see the weights the filter used there.

:class:`ProbePanel` holds the checkbox, the channel choice (RGB) and the result text; a
plain left click (no drag, so panning stays free) on the canvas probes the pixel under
the mouse. The weights appear as a small Image layer placed over the input pixels they
multiply (its data index ``(i, j)`` is input pixel ``origin + (i, j)``).
"""

from __future__ import annotations

import weakref

import numpy as np
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QCheckBox, QGridLayout, QLabel, QSpinBox, QWidget

from .. import _layers

__all__ = ["ProbePanel", "describe_probe"]


class ProbePanel(QWidget):
    """Probe controls for a widget that exposes ``viewer``, ``job`` and ``input``.

    Parameters
    ----------
    owner : PKNWidget
        Held weakly (the viewer's callback list never keeps the widget alive).
    """

    def __init__(self, owner, parent=None):
        super().__init__(parent)
        self._owner = weakref.ref(owner)
        self.enabled = QCheckBox("probe: click a pixel to see the weights it used")
        self.channel = QSpinBox()
        self.channel.setRange(0, 2)
        self.channel.setPrefix("channel ")
        self.channel.setVisible(False)  # shown for RGB input only
        self.info = QLabel("")
        self.info.setWordWrap(True)
        lay = QGridLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.enabled, 0, 0)
        lay.addWidget(self.channel, 0, 1)
        lay.addWidget(self.info, 1, 0, 1, 2)
        self.on_mouse = _click_callback(weakref.ref(self))
        self.enabled.toggled.connect(self._listen)

    def _listen(self, on: bool) -> None:
        owner = self._owner()
        if owner is None:
            return
        cbs = owner.viewer.mouse_drag_callbacks
        if on and self.on_mouse not in cbs:
            cbs.append(self.on_mouse)
        elif not on and self.on_mouse in cbs:
            cbs.remove(self.on_mouse)

    def probe_world(self, position):
        """Probe the input pixel under a world ``position``."""
        owner = self._owner()
        if owner is None or owner.job is None or owner.input not in owner.viewer.layers:
            show_info("Run a restoration first; then click a pixel to see its kernel.")
            return None
        n = len(owner.job.source.lead)
        coords = np.round(owner.input.world_to_data(position)).astype(int)
        return self.probe(tuple(coords[:n]), tuple(coords[n : n + 2]))

    def probe(self, index: tuple, pixel: tuple, channel: int | None = None):
        """Show the weights used at ``pixel`` (row, col) of plane ``index``.

        Returns the :class:`pkn.kernels.Probe`, or None (with a message) where there is
        nothing to probe.
        """
        owner = self._owner()
        job = owner.job if owner is not None else None
        if job is None or owner.input not in owner.viewer.layers:
            show_info("Run a restoration first; then click a pixel to see its kernel.")
            return None
        viewer, layer = owner.viewer, owner.input
        if job.kernel.pixel_grid != "input":
            show_info(
                f"The kernel probe is not available for {job.kernel.name} (its output "
                "pixels do not sit on the input grid)."
            )
            return None
        (h, w), lead = job.source.spatial, job.source.lead
        where = (*index, *pixel)
        if len(where) != len(lead) + 2 or not all(
            0 <= i < n for i, n in zip(where, (*lead, h, w), strict=True)
        ):
            show_info(f"pixel {pixel} is outside {layer.name!r}: click on the image.")
            return None
        if channel is None:
            channel = self.channel.value() if job.source.rgb else 0
        pr = job.probe(index, pixel, channel)
        data, kw, kind = _layers.probe_spec(layer, job, index, pixel, channel, pr)
        old = viewer.layers[kw["name"]] if kw["name"] in viewer.layers else None
        if old is not None and "pkn" in old.metadata:
            old.data = data
            for key in ("translate", "colormap", "contrast_limits", "metadata"):
                setattr(old, key, kw[key])
        else:
            _layers.put_layers(viewer, [(data, kw, kind)])
        rgb = job.source.rgb
        self.info.setText(describe_probe(pr, index, pixel, channel if rgb else None))
        return pr


def _click_callback(panel_ref):
    """A napari drag callback that probes on release when the mouse did not move."""

    def on_mouse(viewer, event):
        if getattr(event, "button", 1) != 1:
            return
        position = tuple(event.position)
        yield
        moved = False
        while event.type == "mouse_move":
            moved = True
            yield
        panel = panel_ref()
        if not moved and panel is not None:
            panel.probe_world(position)

    return on_mouse


def describe_probe(probe, index: tuple, pixel: tuple, channel: int | None) -> str:
    """Rich text: where, the output value, and the weights' sum, minimum and n_eff."""
    where = f"pixel (row {pixel[0]}, col {pixel[1]})"
    if index:
        where += f", plane {tuple(int(i) for i in index)}"
    if channel is not None:
        where += f", channel {channel}"
    h, w = probe.weights.shape
    convex = abs(probe.sum - 1) < 1e-4 and probe.min >= -1e-7 and probe.bias == 0
    verdict = (
        "non-negative weights summing to 1: a weighted average of real input pixels"
        if convex
        else "not a plain average (deblurring sharpens with negative weights)"
    )
    return (
        f"<b>Probe</b> {where}: output {probe.value:.4g} from a {h}x{w} window.<br>"
        f"sum of weights <b>{probe.sum:.4f}</b>, min <b>{probe.min:.3g}</b>, "
        f"effective number of pixels <b>{probe.n_eff:.1f}</b><br><i>{verdict}</i>"
    )
