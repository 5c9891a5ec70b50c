"""The kernel probe: click a pixel, see the weights the filter used there.

:class:`ProbePanel` holds the checkbox, the channel choice (RGB) and the result text; a
plain left click (no drag, so panning stays free) on the canvas probes the pixel under
the mouse. The weights appear in one semi-transparent Image layer
(:data:`napari_pkn._layers.PROBE_NAME`), updated in place for every click, kernel and
strength, placed over the input pixels they multiply (its data index ``(i, j)`` is input
pixel ``origin + (i, j)``). After a new strength or restoration the same pixel is probed
again, so the text and the weights always describe what is shown.
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
        self.last: tuple | None = None  # (plane index, pixel, channel) of the last probe
        self.layer = None  # the probe layer

    def forget(self) -> None:
        """The restoration changed to another input: clear the text and hide the weights."""
        self.last = None
        self.info.setText("")
        owner = self._owner()
        if owner is not None and self.layer is not None and self.layer in owner.viewer.layers:
            self.layer.visible = False

    def refresh(self) -> bool:
        """Probe the last pixel again (after a new strength or restoration); False when
        there is nothing to refresh (the text is then cleared)."""
        owner = self._owner()
        if self.last is None or owner is None or owner.job is None:
            return False
        index, pixel, channel = self.last
        job = owner.job
        ok = (
            job.kernel.pixel_grid == "input"
            and len(index) == len(job.source.lead)
            and all(
                0 <= i < n
                for i, n in zip(
                    (*index, *pixel), (*job.source.lead, *job.source.spatial), strict=True
                )
            )
        )
        if not ok:
            self.forget()
            return False
        return self.probe(index, pixel, channel if job.source.rgb else None, quiet=True) is not None

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

    def probe(self, index: tuple, pixel: tuple, channel: int | None = None, quiet=False):
        """Show the weights used at ``pixel`` (row, col) of plane ``index``.

        Returns the :class:`pkn.kernels.Probe`, or None (with a message, unless ``quiet``)
        where there is nothing to probe.
        """
        say = (lambda _m: None) if quiet else show_info
        owner = self._owner()
        job = owner.job if owner is not None else None
        if job is None or owner.input not in owner.viewer.layers:
            say("Run a restoration first; then click a pixel to see its kernel.")
            return None
        viewer, layer = owner.viewer, owner.input
        if job.kernel.pixel_grid != "input":
            say(
                f"The kernel probe is not available for {job.kernel.name} (its output "
                "pixels do not sit on the input grid)."
            )
            return None
        (h, w), lead = job.source.spatial, job.source.lead
        where = (*index, *pixel)
        if len(where) != len(lead) + 2 or not all(
            0 <= i < n for i, n in zip(where, (*lead, h, w), strict=True)
        ):
            say(f"pixel {pixel} is outside {layer.name!r}: click on the image.")
            return None
        if channel is None:
            channel = self.channel.value() if job.source.rgb else 0
        pr = job.probe(index, pixel, channel)
        data, kw, kind = _layers.probe_spec(layer, job, index, pixel, channel, pr)
        old = self.layer if self.layer is not None and self.layer in viewer.layers else None
        if old is None and kw["name"] in viewer.layers:
            old = viewer.layers[kw["name"]]
        if old is not None and "probe" in old.metadata.get("pkn", {}) and old.ndim == data.ndim:
            for key in ("scale", "translate", "rotate", "shear", "affine", "units"):
                setattr(old, key, kw[key])
            old.data = data
            for key in ("colormap", "contrast_limits", "blending", "opacity", "metadata"):
                setattr(old, key, kw[key])
            old.visible = True
            self.layer = old
        else:
            if old is not None:
                viewer.layers.remove(old)
            self.layer = _layers.put_layers(viewer, [(data, kw, kind)])[0]
        self.last = (tuple(index), tuple(pixel), int(channel))
        rgb = job.source.rgb
        text = describe_probe(pr, index, pixel, channel if rgb else None)
        self.info.setText(
            f"{text}<br>{job.entry.name} on {layer.name!r}, strength {job.strength:.2f}"
        )
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
