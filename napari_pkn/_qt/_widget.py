"""The "PKN restoration" dock widget.

Runs :class:`napari_pkn._scripting.Job` in a napari ``thread_worker`` (a generator that
yields progress after every network pass and filter run, so Cancel stops it at the next
step), adds the restored image, one layer per parameter map and, for kernels with a
covariance, orientation glyphs. Moving the strength slider re-runs only the filter from
the cached maps (debounced, in a worker) and updates the same layers in place. Importing
this module does not import torch: that happens when the widget is created.
"""

from __future__ import annotations

import time

import numpy as np
from napari.layers import Image, Vectors
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from .. import _layers
from . import _settings
from ._form import OptionsForm
from ._probe import ProbePanel
from ._run import Failure, guarded, noise_text

__all__ = ["PKNWidget"]

DEBOUNCE_MS = 120
ESTIMATE_MAX_SIDE = 512  # the noise shown on layer choice is estimated on this centre crop


class PKNWidget(QWidget):
    """Restore an Image layer with a Procedural Kernel Network; inspect maps and kernels.

    Parameters
    ----------
    napari_viewer : napari.Viewer

    Attributes
    ----------
    job : napari_pkn._scripting.Job or None
        The last finished restoration (its cached maps drive strength and probe).
    input : napari.layers.Image or None
        Its input layer.
    outputs : list of napari.layers.Layer
        Its layers: the restored image first, then the maps (and glyphs).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        from .. import _scripting as eng  # loads the models' metadata, hence torch

        self._eng = eng
        self.viewer = napari_viewer
        self.job = self.input = None
        self.outputs: list = []
        self._worker = self._render_worker = None
        self._rendered = None  # strength all planes were rendered with (None: mixed)
        self._pending_render = False
        self._started = 0.0

        self._estimated_for = None  # the layer whose noise the form shows
        self.form = OptionsForm(eng.catalogue())
        self.layer = self.form.layer
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.probe = ProbePanel(self)

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.form)
        lay.addLayout(buttons)
        for w in (self.progress, self.status, self.probe):
            lay.addWidget(w)
        lay.addStretch(1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._apply_strength)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.form.strength.valueChanged.connect(lambda *_: self._timer.start())
        self.form.show_maps.toggled.connect(self._toggle_maps)
        self.layer.currentIndexChanged.connect(self._on_layer)
        events = napari_viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered, events.renamed):
            ev.connect(self._refresh_layers)
        self.form.restore(_settings.load())
        self._refresh_layers()

    # ------------------------------------------------------------ layers and settings
    def _refresh_layers(self, *_):
        """Offer the viewer's Image layers; a new choice prefers the selected input."""
        images = [ly.name for ly in self.viewer.layers if isinstance(ly, Image)]
        inputs = [n for n in images if "pkn" not in self.viewer.layers[n].metadata]
        active = self.viewer.layers.selection.active
        prefer = active.name if active is not None and active.name in inputs else None
        self.form.set_layers(images, prefer or (inputs[-1] if inputs else None))
        if self.layer.currentText() != self._estimated_for:
            self._on_layer()

    def input_layer(self):
        """The chosen Image layer, or None."""
        name = self.layer.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_layer(self, *_):
        """Estimate the noise of the chosen layer's current plane and show it."""
        layer = self.input_layer()
        self._estimated_for = None if layer is None else layer.name
        if layer is None:
            self.form.set_estimate(None, "choose an image layer to estimate its noise")
            return
        self.probe.channel.setVisible(bool(layer.rgb))
        try:
            src = self._eng.source_from_layer(layer)
            plane = src.plane(self._plane_of(layer, src.lead))
            (h, w), m = plane.shape[:2], ESTIMATE_MAX_SIDE
            y0, x0 = max(0, (h - m) // 2), max(0, (w - m) // 2)
            desc = self._eng.estimate_noise(plane[y0 : y0 + m, x0 : x0 + m], src.rgb)
        except (TypeError, ValueError) as e:
            self.form.set_estimate(None, f"cannot restore this layer: {e}")
            return
        self.form.set_estimate(desc, f"estimated: {noise_text(desc)}")

    def _plane_of(self, layer, lead: tuple) -> tuple:
        """Index of the leading axes of ``layer`` that the viewer shows now."""
        if not lead:
            return ()
        pos = layer.world_to_data(self.viewer.dims.point)[: len(lead)]
        return tuple(int(np.clip(round(p), 0, n - 1)) for p, n in zip(pos, lead, strict=True))

    def _options(self):
        f = self.form
        task, extra, blur = f.task.currentData(), None, None
        if "blur" in f.inputs():
            blur = f.blur_sigma.value()
            if f.blur_mode.currentData() == "psf":
                name = f.psf_layer.currentText()
                if name not in self.viewer.layers:
                    raise ValueError("choose the image layer that holds the PSF.")
                blur = self._eng.psf_from_layer(self.viewer.layers[name])
                extra = {"psf_layer": name}
        strength = f.strength.value()
        return self._eng.Options(
            task, f.kernel.currentData(), f.noise(), blur, f.factor.value(), strength, extra
        )

    # ------------------------------------------------------------------- running
    @property
    def busy(self) -> bool:
        """A restoration or a strength update is running."""
        return self._worker is not None or self._render_worker is not None

    def run(self) -> None:
        """Check the settings, then restore the chosen layer in a background worker."""
        if self._worker is not None:
            show_warning("PKN is already running: wait for it or press Cancel.")
            return
        layer = self.input_layer()
        if layer is None:
            self._fail("No image layer to restore: open one (File > Open Sample > PKN).")
            return
        try:
            source = self._eng.source_from_layer(layer)
            opts = self._options()
            entry = self._eng.resolve(opts, source)
        except (TypeError, ValueError) as e:
            self._fail(str(e))
            return
        _settings.save(self.form.state())
        if self._render_worker is not None:
            self._pending_render = False
            self._render_worker.quit()
        job = self._eng.Job(source, opts, entry, layer.name)
        self._started = time.perf_counter()
        self.progress.setRange(0, job.total)
        self.progress.setValue(0)
        self.status.setText(f"running {entry.name} on {layer.name!r} ...")
        worker = create_worker(guarded, job.run(), _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda result: self._on_done(job, layer, result))
        worker.aborted.connect(lambda: self.status.setText("cancelled: no layer was added"))
        worker.finished.connect(lambda: self._set_running(None))
        self._set_running(worker)
        worker.start()

    def when_idle(self, callback, first_ms: int = 500, poll_ms: int = 200) -> None:
        """Call ``callback()`` from the event loop once nothing runs (checked after
        ``first_ms``, then every ``poll_ms``)."""

        def check():
            if self.busy:
                QTimer.singleShot(poll_ms, check)
            else:
                callback()

        QTimer.singleShot(first_ms, check)

    def cancel(self) -> None:
        """Stop the running restoration at its next step (within about a second)."""
        if self._worker is not None:
            self.status.setText("cancelling ...")
            self._worker.quit()

    def _set_running(self, worker) -> None:
        self._worker = worker
        self.run_button.setEnabled(worker is None)
        self.cancel_button.setEnabled(worker is not None)

    def _on_progress(self, step) -> None:
        self.progress.setValue(step[0])
        self.status.setText(step[2])

    def _fail(self, message: str) -> None:
        self.status.setText(f"<span style='color:#e06c5a'>{message}</span>")
        show_error(message)

    def _on_done(self, job, layer, result) -> None:
        if isinstance(result, Failure):
            self._fail(result.message)
            return
        if layer not in self.viewer.layers:
            self._fail(f"layer {layer.name!r} was removed while PKN ran; nothing was added.")
            return
        show = self.form.show_maps.isChecked()
        self.outputs = _layers.put_layers(self.viewer, _layers.result_specs(layer, job, show))
        self.job, self.input, self._rendered = job, layer, job.strength
        self.viewer.layers.selection.active = self.outputs[0]
        seconds = time.perf_counter() - self._started
        n = job.source.n_planes
        noise = noise_text(job.provenance()["noise"])
        self.status.setText(f"done: {n} plane{'s' * (n > 1)} in {seconds:.1f} s; noise {noise}")
        if job.kernel.pixel_grid == "input":  # the probe's pixel is an input pixel
            self.probe.info.setText("tick 'probe' and click a pixel to see its weights")
        if self.form.strength.value() != job.strength:
            self._timer.start()

    # ------------------------------------------------------------------ strength
    def _apply_strength(self) -> None:
        """Re-run only the filter at the slider's strength and update the layers in place."""
        job, s = self.job, float(self.form.strength.value())
        alive = bool(self.outputs) and all(ly in self.viewer.layers for ly in self.outputs)
        if job is None or self._worker is not None or not alive:
            return
        if self._render_worker is not None:
            self._pending_render = True
            self._render_worker.quit()
            return
        if self._rendered == s:
            return
        self._rendered = None
        first = self._plane_of(self.input, job.source.lead)
        t0 = time.perf_counter()
        worker = create_worker(guarded, job.render(s, first), _start_thread=False)
        worker.yielded.connect(lambda item: self._on_rendered(job, item))
        worker.returned.connect(lambda result: self._on_render_done(job, s, t0, result))
        worker.finished.connect(self._on_render_finished)
        self._render_worker = worker
        worker.start()

    def _on_rendered(self, job, item) -> None:
        if job is not self.job:
            return
        index, restoration = item
        job.store(index, restoration)  # writes into the layers' own arrays
        for ly in self.outputs:
            if isinstance(ly, Image):
                ly.refresh()

    def _on_render_done(self, job, strength, t0, result) -> None:
        if isinstance(result, Failure):
            self._fail(result.message)
            return
        if job is not self.job:
            return
        job.strength, self._rendered = strength, strength
        for ly in self.outputs:
            ly.metadata["pkn"]["strength"] = strength
            if isinstance(ly, Vectors):
                data, kw, _ = _layers.vectors_spec(self.input, job)
                ly.data, ly.features = data, kw["features"]
        ms = 1000 * (time.perf_counter() - t0)
        self.status.setText(f"strength {strength:.2f}: filter re-run in {ms:.0f} ms (no network)")

    def _on_render_finished(self) -> None:
        self._render_worker = None
        if self._pending_render:
            self._pending_render = False
            self._apply_strength()

    def _toggle_maps(self, on: bool) -> None:
        for ly in self.outputs[1:]:
            if ly in self.viewer.layers:
                ly.visible = on

    def closeEvent(self, event):  # closing the dock: stop listening to clicks, save
        self.probe.enabled.setChecked(False)
        _settings.save(self.form.state())
        super().closeEvent(event)
