"""The "PKN restoration" dock widget.

Runs :class:`napari_pkn._scripting.Job` in a napari ``thread_worker`` (a generator that
yields progress after every network pass and filter run, so Cancel stops it at the next
step), adds the restored image, one layer per parameter map and, for kernels with a
covariance, orientation glyphs; for denoising the QC map (residual / noise std) and its
whiteness in one line. Moving the strength slider re-runs only the filter from the cached
maps (debounced, in a worker) and updates the same layers in place; "Auto" chooses the
strength by SURE (in a worker) and moves the slider. "Adapt to this data" fine-tunes the
chosen denoising model on the chosen layer(s) in a worker (progress, Cancel), saves it in
the user's folder, lists and selects it; "Load model..." and "Save model as..." add and
copy model files. Importing this module does not import torch: that happens when the
widget is created.

Stacks get one noise model, pooled over their planes and estimated once per layer ("noise
per plane" asks for each plane's own). A dask-backed stack is never read whole: Run
restores the plane shown (a preview that follows the dims slider, debounced) and "All
planes" computes the whole stack chunk by chunk, in memory when the result fits
:func:`napari_pkn._stacks.memory_budget`, else into OME-Zarr files shown lazily.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from napari.layers import Image, Vectors
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import _adapting, _layers, _stacks
from .._layers import readable
from . import _settings
from ._adapt import AdaptPanel
from ._form import AUTO_TASK, OptionsForm
from ._probe import ProbePanel
from ._run import Failure, guarded, noise_text, whiteness_text

__all__ = ["PKNWidget", "looks_like_psf"]

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
        The restoration of the chosen input layer the strength slider and the probe act on
        (its cached maps); None when that layer has no restoration shown.
    input : napari.layers.Image or None
        Its input layer.
    outputs : list of napari.layers.Layer
        Its layers: the restored image first, then the maps (and glyphs, and the QC map
        for denoising).
    psf_used : napari.layers.Image or None
        The PSF the last deconvolution used, as imported from the chosen PSF layer.
    adapted : napari_pkn._adapting.AdaptJob or None
        The last finished adaptation (its model file, card and catalogue entry).

    Notes
    -----
    The noise settings and the strength belong to one image: a layer chosen for the first
    time starts from its own automatic noise estimate and strength 1; coming back to a
    layer brings back what was set for it. Closing the widget (or removing its dock, or
    closing the viewer, or removing the layer being restored) stops a running restoration:
    no layer is added afterwards.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        from .. import _scripting as eng  # loads the models' metadata, hence torch

        self._eng = eng
        self.viewer = napari_viewer
        self.job = self.input = self.psf_used = None
        self.outputs: list = []
        self._results: dict = {}  # input layer name -> (job, layer, outputs)
        self._per_image: dict = {}  # input layer name -> form.noise_state()
        self._worker = self._render_worker = None
        self._running_on = None  # the input layer of the running restoration
        self._rendered = None  # strength all planes were rendered with (None: mixed)
        self._pending_render = False
        self._started = 0.0
        self._adapt_job = self.adapted = None
        self._shut = False  # shutdown() ran
        self._watched_window = None
        self._abort_note = None  # why a run was stopped (other than Cancel)
        self._noise_cache: dict = {}  # (layer name, id(data)) -> _stacks.StackNoise
        self._all_job = None  # the running "All planes" computation
        self.all_planes: dict = {}  # input layer name -> its "All planes" layers

        self._estimated_for = None  # the layer whose noise (and settings) the form shows
        self.form = OptionsForm(eng.catalogue())
        self.layer = self.form.layer
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.all_button = QPushButton("All planes")
        self.all_button.setToolTip(
            "a lazy (dask) stack is previewed one plane at a time: restore every plane, "
            "chunk by chunk, into memory when the result fits, else into OME-Zarr files"
        )
        self.all_button.setVisible(False)
        self.hint = QLabel("")  # why Run is disabled
        self.hint.setWordWrap(True)
        self.hint.setVisible(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.qc_info = QLabel("")
        self.qc_info.setWordWrap(True)
        self.qc_info.setToolTip(
            "lag-1 correlation of (input - result) / noise std between neighbouring "
            "pixels: about 0 (or slightly negative) when only noise was removed, clearly "
            "positive when image structure was removed too"
        )
        self.qc_info.setVisible(False)
        self.probe = ProbePanel(self)
        self.adapt_panel = AdaptPanel()

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.all_button)
        buttons.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.form)
        lay.addLayout(buttons)
        for w in (
            self.hint,
            self.progress,
            self.status,
            self.qc_info,
            self.probe,
            self.adapt_panel,
        ):
            lay.addWidget(w)
        lay.addStretch(1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._apply_strength)
        self._step_timer = QTimer(self)  # the preview follows the dims slider, debounced
        self._step_timer.setSingleShot(True)
        self._step_timer.setInterval(DEBOUNCE_MS)
        self._step_timer.timeout.connect(self._move_preview)
        self.all_button.clicked.connect(lambda *_: self.restore_all())
        self.form.per_plane.toggled.connect(lambda *_: self._show_estimate())
        napari_viewer.dims.events.current_step.connect(self._on_step)
        self.run_button.clicked.connect(lambda *_: self.run())
        self.cancel_button.clicked.connect(self.cancel)
        self.form.auto.clicked.connect(self.auto_strength)
        self.form.strength.valueChanged.connect(lambda *_: self._timer.start())
        self.form.show_maps.toggled.connect(self._toggle_maps)
        self.form.show_qc.toggled.connect(self._toggle_qc)
        f = self.form
        for combo in (f.task, f.kernel, f.blur_mode, f.psf_layer):
            combo.currentIndexChanged.connect(self._update_buttons)
        self.layer.currentIndexChanged.connect(self._on_layer)
        ap = self.adapt_panel
        ap.adapt_button.clicked.connect(self.adapt)
        ap.load_button.clicked.connect(lambda *_: self.load_model())
        ap.save_button.clicked.connect(lambda *_: self.save_model())
        ap.repeated.toggled.connect(self._update_plan)
        napari_viewer.layers.selection.events.changed.connect(self._update_plan)
        events = napari_viewer.layers.events
        events.removed.connect(self._on_removed)
        for ev in (events.inserted, events.removed, events.reordered, events.renamed):
            ev.connect(self._refresh_layers)
        self.form.restore(_settings.load())
        self._refresh_layers()
        self._update_buttons()

    # ------------------------------------------------------------ layers and settings
    def _refresh_layers(self, *_):
        """Offer the viewer's Image layers; a new choice prefers the selected input. The
        PSF list offers the other input layers, preselecting one only when it looks like
        a PSF (small and peaked), never the input itself."""
        if self._closed:
            return
        images = [ly.name for ly in self.viewer.layers if isinstance(ly, Image)]
        inputs = [n for n in images if "pkn" not in self.viewer.layers[n].metadata]
        active = self.viewer.layers.selection.active
        prefer = active.name if active is not None and active.name in inputs else None
        self.form.set_layers(images, prefer or (inputs[-1] if inputs else None))
        if self.layer.currentText() != self._estimated_for:
            self._on_layer()
        self._refresh_psf_layers()
        self._update_plan()
        self._update_buttons()

    def _refresh_psf_layers(self) -> None:
        chosen = self.input_layer()
        names = [
            n
            for n in (ly.name for ly in self.viewer.layers if isinstance(ly, Image))
            if (chosen is None or n != chosen.name) and "pkn" not in self.viewer.layers[n].metadata
        ]
        shape = None if chosen is None else _spatial(chosen)
        likely = [n for n in names if looks_like_psf(self.viewer.layers[n], shape)]
        self.form.set_psf_layers(names, likely[-1] if likely else None)

    def input_layer(self):
        """The chosen Image layer, or None."""
        name = self.layer.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_layer(self, *_):
        """A new input: its own noise settings and strength (the automatic estimate and 1
        for a layer not chosen before), the slider bound to its restoration (if shown),
        and its noise estimated on the current plane."""
        layer = self.input_layer()
        old = self._estimated_for
        if old is not None and old in self.viewer.layers:
            self._per_image[old] = self.form.noise_state()
        self._estimated_for = None if layer is None else layer.name
        self._bind(layer)
        saved = None if layer is None else self._per_image.get(layer.name)
        if layer is not None and (saved is not None or old != layer.name):
            self.form.set_noise_state(saved)
            if self.job is not None:
                self.form.set_strength(self.job.strength)
        self._refresh_psf_layers()
        self._update_plan()
        if layer is not None:
            self.probe.channel.setVisible(bool(layer.rgb))
        self._show_estimate()

    def _show_estimate(self) -> None:
        """The noise line for the chosen layer: the model a run will use (a stack: one
        model pooled over its planes, estimated once; per plane: the plane shown)."""
        layer = self.input_layer()
        self.form.stack = False
        if layer is None:
            self.form.update_rows()
            self.form.set_estimate(None, "choose an image layer to estimate its noise")
            return
        saved = self._per_image.get(layer.name)
        try:
            src = self._eng.source_from_layer(layer)
            self.form.stack = bool(src.lead)
            self.form.update_rows()
            pooled = src.lead and not src.rgb and not self.form.per_plane.isChecked()
            sn = self.stack_noise(layer, src) if pooled else None
            if sn is not None and sn.desc:
                desc, scope = sn.desc, sn.text()
            else:
                plane = src.plane(self._plane_of(layer, src.lead))
                (h, w), m = plane.shape[:2], ESTIMATE_MAX_SIDE
                y0, x0 = max(0, (h - m) // 2), max(0, (w - m) // 2)
                desc = self._eng.estimate_noise(plane[y0 : y0 + m, x0 : x0 + m], src.rgb)
                scope = "one model per plane (the plane shown)" if src.lead else ""
        except Exception as e:  # any layer: a message, never a traceback
            self.form.update_rows()
            self.form.set_estimate(None, readable(f"cannot restore this layer: {e}"))
            return
        text = f"{noise_text(desc)}; {scope}" if scope else noise_text(desc)
        text += f" for {layer.name!r}"
        if saved is not None and saved.get("noise_mode") != "auto":
            text += f"; using the noise you set for {layer.name!r}"
        self.form.set_estimate(desc, text)

    def stack_noise(self, layer, source=None):
        """The one noise model of the stack ``layer`` (a :class:`napari_pkn._stacks.
        StackNoise`), estimated once per layer and data: pooled over every plane in
        memory, over a bounded sample of planes of a lazy (dask) layer."""
        src = source if source is not None else self._eng.source_from_layer(layer)
        key = (layer.name, id(src.data))
        if key not in self._noise_cache:
            self._noise_cache[key] = _stacks.stack_noise(src, None, False)
        return self._noise_cache[key]

    def _bind(self, layer) -> None:
        """Let the slider and the probe act on ``layer``'s shown restoration, or on none."""
        got = None if layer is None else self._results.get(layer.name)
        alive = (
            got is not None
            and got[1] in self.viewer.layers
            and all(ly in self.viewer.layers for ly in got[2])
        )
        if alive:
            self.job, self.input, self.outputs = got
            self._rendered = self.job.strength
        else:
            self.job, self.input, self.outputs = None, None, []
            self._rendered = None
        self.probe.forget()
        self._update_all_button()

    def _plane_of(self, layer, lead: tuple) -> tuple:
        """Index of the leading axes of ``layer`` that the viewer shows now."""
        if not lead:
            return ()
        pos = layer.world_to_data(self.viewer.dims.point)[: len(lead)]
        return tuple(int(np.clip(round(p), 0, n - 1)) for p, n in zip(pos, lead, strict=True))

    def _options(self, source):
        f = self.form
        task, extra, blur = f.task.currentData(), None, None
        if "blur" in f.inputs():
            blur = f.blur_sigma.value()
            if f.blur_mode.currentData() == "psf":
                name = f.psf_name()
                if name is None or name not in self.viewer.layers:
                    raise ValueError(PSF_NEEDED)
                layer = self.viewer.layers[name]
                blur, extra = self._eng.psf_from_layer(layer, source.spatial)
        strength = f.strength.value()
        return self._eng.Options(
            task,
            f.kernel.currentData(),
            f.noise(),
            blur,
            f.factor.value(),
            strength,
            extra,
            per_plane=bool(source.lead) and f.per_plane.isChecked(),
        )

    def run_blocker(self) -> str:
        """Why Run cannot start with the settings shown (``""``: it can)."""
        if self.input_layer() is None:
            return "open an image layer to restore (File > Open Sample > PKN)"
        if self.form.needs_psf() and self.form.psf_name() is None:
            return PSF_NEEDED
        return ""

    # ------------------------------------------------------------------- running
    @property
    def busy(self) -> bool:
        """A restoration or a strength update is running."""
        return self._worker is not None or self._render_worker is not None

    def run(self, strength=None) -> None:
        """Check the settings, then restore the chosen layer in a background worker.

        ``strength``: ``"auto"`` (what the Auto button does before any restoration)
        chooses it by SURE on the plane shown; default the slider's.
        """
        if self._closed:
            return
        if self._worker is not None:
            show_warning("PKN is already running: wait for it or press Cancel.")
            return
        layer = self.input_layer()
        if layer is None:
            self._fail("No image layer to restore: open one (File > Open Sample > PKN).")
            return
        try:
            source = self._eng.source_from_layer(layer)
            opts = self._options(source)
            if strength is not None:
                opts.strength = strength
            entry = self._eng.resolve(opts, source)
        except (TypeError, ValueError) as e:
            self._fail(str(e))
            return
        _settings.save(self.form.state())
        if self._render_worker is not None:
            self._pending_render = False
            self._render_worker.quit()
        plane = self._plane_of(layer, source.lead)
        lazy = bool(source.lead) and _stacks.is_lazy(source.data)
        noise = None
        if source.lead and opts.noise is None and not opts.per_plane and not source.rgb:
            noise = self._noise_cache.get((layer.name, id(source.data)))
        try:
            job = self._eng.Job(
                source,
                opts,
                entry,
                layer.name,
                auto_plane=plane,
                preview=plane if lazy else None,
                noise=noise,
            )
        except (TypeError, ValueError) as e:
            self._fail(str(e))
            return
        self._started = time.perf_counter()
        self._running_on = layer
        what = f"plane {plane} of {layer.name!r} (preview)" if lazy else repr(layer.name)
        self._start(
            job.run(),
            job.total,
            f"running {entry.name} on {what} ...",
            lambda result: self._on_done(job, layer, result),
        )

    def _start(self, gen, total: int, message: str, on_done, aborted: str = "") -> None:
        """Run the generator ``gen`` (yielding ``(step, total, message)``) in a worker
        with progress and Cancel; ``on_done(result)`` gets what it returns."""
        self.progress.setRange(0, total)
        self.progress.setValue(0)
        self._cancelling = False
        self._say(message)
        worker = create_worker(guarded, gen, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda result: None if self._closed else on_done(result))
        aborted = aborted or "cancelled: no layer was added"
        worker.aborted.connect(lambda: self._on_aborted(aborted))
        worker.finished.connect(lambda: self._finished(worker, aborted))
        self._set_running(worker)
        worker.start()

    def _finished(self, worker, aborted: str) -> None:
        """The worker ended: idle again; after Cancel the status says so, whatever
        progress message was still queued when it was pressed."""
        current = worker is self._worker
        self._set_running(None, worker)
        if current and getattr(self, "_cancelling", False) and "cancel" not in (self.status.text()):
            self._say(aborted)

    def _on_aborted(self, text: str) -> None:
        note, self._abort_note = self._abort_note, None
        if note:
            self._fail(note)
        else:
            self._say(text)

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
        """Stop the running restoration or adaptation at its next step (within about a
        second); a cancelled adaptation saves no model."""
        if self._worker is None:
            return
        self._cancelling = True  # progress messages still queued are not shown
        self._say("cancelling ...")
        if self._adapt_job is not None:
            self._adapt_job.cancel()  # the worker then ends by itself, nothing saved
        else:
            if self._all_job is not None:
                self._all_job.cancel()  # stops dask at its next task
            self._worker.quit()

    def _set_running(self, worker, finished=None) -> None:
        if worker is None and finished is not None and finished is not self._worker:
            return  # an older worker (already replaced) finishing late
        self._worker = worker
        idle = worker is None
        if idle:
            self._adapt_job = self._all_job = None
            self._running_on = None
        if self._closed:
            return
        for b in (self.form.auto, self.adapt_panel.adapt_button, self.all_button):
            b.setEnabled(idle)
        self.adapt_panel.load_button.setEnabled(idle)
        self.cancel_button.setEnabled(not idle)
        self._update_buttons()
        if idle and self.job is not None and self.form.strength.value() != self._rendered:
            self._timer.start()  # a strength set while busy (e.g. by Auto)

    def _update_buttons(self, *_) -> None:
        """Enable Run when it can start (else say why), and "Save model as..." for models
        that do not ship (adapted or loaded)."""
        if self._closed:
            return
        m = self.form.model()
        idle = self._worker is None
        ok = idle and m is not None and not m.shipped
        self.adapt_panel.save_button.setEnabled(ok)
        reason = self.run_blocker()
        self.run_button.setEnabled(idle and not reason)
        self.run_button.setToolTip(reason or "restore the chosen image layer")
        self.hint.setText(f"<span style='color:#e0a040'>Run: {reason}</span>" if reason else "")
        self.hint.setVisible(bool(reason))
        needs = self.form.needs_psf()
        self.form.psf_info.setText(
            (PSF_NEEDED if self.form.psf_name() is None else PSF_HOW) if needs else ""
        )

    def _on_progress(self, step) -> None:
        if self._closed or getattr(self, "_cancelling", False):
            return
        if step[1] != self.progress.maximum():
            self.progress.setMaximum(step[1])
        self.progress.setValue(step[0])
        self._say(step[2])

    def _say(self, message: str) -> None:
        """Show ``message`` in the status line (numbers readable)."""
        if not self._closed:
            self.status.setText(readable(message))

    def _fail(self, message: str) -> None:
        message = readable(message)
        if self._closed:
            return
        self.status.setText(f"<span style='color:#e06c5a'>{message}</span>")
        show_error(message)

    def _on_done(self, job, layer, result) -> None:
        if self._closed:
            return
        if isinstance(result, Failure):
            self._fail(result.message)
            return
        if layer not in self.viewer.layers:
            self._fail(f"layer {layer.name!r} was removed while PKN ran; nothing was added.")
            return
        show, qc = self.form.show_maps.isChecked(), self.form.show_qc.isChecked()
        specs = _layers.result_specs(layer, job, show, qc)
        outputs = _layers.put_layers(self.viewer, specs)
        self._results[layer.name] = (job, layer, outputs)
        if job.noise is not None and job.noise.desc and not job.options.per_plane:
            if job.source.lead and job.options.noise is None and not job.source.rgb:
                self._noise_cache[(layer.name, id(job.source.data))] = job.noise
        psf = job.options.extra or {}
        if "psf" in psf:  # the PSF actually used, with its provenance
            spec = _layers.psf_spec(layer, job.options.blur, psf)
            self.psf_used = _layers.put_layers(self.viewer, [spec])[0]
        current = self.input_layer()
        bound = current is not None and current.name == layer.name
        if bound:
            self.job, self.input, self.outputs, self._rendered = job, layer, outputs, job.strength
            if job.auto is not None:  # "auto": the slider shows what was chosen (no re-run)
                self.form.set_strength(job.strength)
        self.viewer.layers.selection.active = outputs[0]
        seconds = time.perf_counter() - self._started
        n = job.n_planes
        meta = job.provenance()
        noise = noise_text(meta["noise"])
        if job.noise is not None and job.noise.text():
            noise += f"; {job.noise.text()}"
        auto = f"; strength {job.strength:.2f} chosen by SURE" if job.strength_is_auto else ""
        where = (
            ""
            if bound
            else (
                f" (for {layer.name!r}; the strength slider stays with {current.name!r})"
                if current is not None
                else f" (for {layer.name!r})"
            )
        )
        done = f"done: {n} plane{'s' * (n > 1)} in {seconds:.1f} s"
        if job.preview is not None:
            done = (
                f"preview of plane {job.preview} of {job.source.n_planes} in {seconds:.1f} s "
                "(lazy layer: it follows the slider; 'All planes' restores the stack)"
            )
        self._say(f"{done}{where}; {noise}{auto}")
        self._update_all_button()
        if not bound:
            return
        self._show_whiteness(meta)
        self._on_step()  # a preview: the slider may have moved on while it ran
        if not self.probe.refresh() and job.kernel.pixel_grid == "input":
            self.probe.info.setText("tick 'probe' and click a pixel to see its weights")
        if self.form.strength.value() != job.strength:
            self._timer.start()

    def _show_whiteness(self, meta: dict) -> None:
        text = whiteness_text(meta)
        self.qc_info.setText(text)
        self.qc_info.setVisible(bool(text))

    def _update_provenance(self, job, outputs) -> None:
        """Write what a new strength changes into every output's ``metadata["pkn"]``."""
        meta = job.provenance()
        for ly in outputs:
            m = ly.metadata["pkn"]
            for k in ("strength", "strength_auto", "whiteness", "whiteness_per_plane"):
                if k in meta:
                    m[k] = meta[k]
                else:
                    m.pop(k, None)
        if job is self.job:
            self._show_whiteness(meta)

    # ------------------------------------------------------------------ strength
    def auto_strength(self) -> None:
        """Choose the strength by SURE (no clean image) on the plane shown, in a worker,
        and move the slider there (which re-runs the filter for every plane). Without a
        restoration of the chosen layer and model yet, restore it with that strength."""
        if self._worker is not None:
            show_warning("PKN is already running: wait for it or press Cancel.")
            return
        job, layer = self.job, self.input_layer()
        alive = bool(self.outputs) and all(ly in self.viewer.layers for ly in self.outputs)
        same = (  # names: a plugin widget sees the viewer's layers through proxies
            job is not None
            and alive
            and layer is not None
            and layer.name == self.input.name
            and job.entry.name == self.form.kernel.currentData()
        )
        if not same:
            self.run(strength="auto")
            return
        if job.entry.task != AUTO_TASK:
            self._fail(f"Auto strength is for {AUTO_TASK}; set the strength by hand.")
            return
        plane = self._plane_of(self.input, job.source.lead)
        if plane not in job.restorers:  # a preview not yet on the plane shown: its plane
            plane = job.preview

        def choose():
            where = f" on plane {plane}" if plane else ""
            yield 0, 1, f"choosing the strength by SURE{where} (no clean image) ..."
            s, info = job.restorers[plane].auto_strength()
            yield 1, 1, f"strength {s:.2f} chosen by SURE{where}"
            return float(s), {**info, "plane": [int(i) for i in plane]}

        self._start(choose(), 1, "choosing the strength ...", lambda r: self._on_auto(job, r))

    def _on_auto(self, job, result) -> None:
        if isinstance(result, Failure):
            self._fail(result.message)
            return
        if job is not self.job or result is None:
            return
        s, info = result
        job.auto = (s, info)
        self.form.set_strength(s)  # re-renders through the slider, as a move by hand
        if self._rendered is not None and self._rendered == s:
            self._update_provenance(job, self.outputs)
        self._say(f"strength {s:.2f} chosen by SURE on {job.layer_name!r}")

    def _apply_strength(self) -> None:
        """Re-run only the filter at the slider's strength and update the layers in place:
        those of the chosen input's shown restoration, never another layer's."""
        job, s, outputs = self.job, float(self.form.strength.value()), list(self.outputs)
        current = self.input_layer()
        alive = bool(outputs) and all(ly in self.viewer.layers for ly in outputs)
        if job is None or self._worker is not None or not alive or self._closed:
            return
        if current is None or self.input is None or current.name != self.input.name:
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
        worker.yielded.connect(lambda item: self._on_rendered(job, outputs, item))
        worker.returned.connect(lambda result: self._on_render_done(job, outputs, s, t0, result))
        worker.finished.connect(self._on_render_finished)
        self._render_worker = worker
        worker.start()

    def _on_rendered(self, job, outputs, item) -> None:
        index, restoration = item
        job.store(index, restoration)  # writes into the layers' own arrays
        if self._closed:
            return
        for ly in outputs:
            if isinstance(ly, Image) and ly in self.viewer.layers:
                ly.refresh()

    def _on_render_done(self, job, outputs, strength, t0, result) -> None:
        if self._closed:
            return
        if isinstance(result, Failure):
            self._fail(result.message)
            return
        job.strength = strength
        self._update_provenance(job, outputs)
        for ly in outputs:
            if isinstance(ly, Vectors) and ly in self.viewer.layers:
                data, kw, _ = _layers.vectors_spec(self._results[job.layer_name][1], job)
                ly.data, ly.features = data, kw["features"]
        if job is not self.job:
            return
        self._rendered = strength
        self.probe.refresh()  # the weights at the new strength
        ms = 1000 * (time.perf_counter() - t0)
        auto = " (chosen by SURE)" if job.strength_is_auto else ""
        self._say(f"strength {strength:.2f}{auto}: filter re-run in {ms:.0f} ms (no network)")

    def _on_render_finished(self) -> None:
        self._render_worker = None
        if self._pending_render and not self._closed:
            self._pending_render = False
            self._apply_strength()

    def _toggle_maps(self, on: bool) -> None:
        for ly in self.outputs[1:]:
            if ly in self.viewer.layers and not _is_qc(ly):
                ly.visible = on

    def _toggle_qc(self, on: bool) -> None:
        for ly in self.outputs:
            if ly in self.viewer.layers and _is_qc(ly):
                ly.visible = on

    # ------------------------------------------------------- lazy stacks: preview, all
    def _update_all_button(self) -> None:
        if self._closed:
            return
        job = self.job
        self.all_button.setVisible(job is not None and job.preview is not None)

    def _on_step(self, *_) -> None:
        """The dims slider moved: a preview follows it (debounced)."""
        if self._closed:
            return
        job = self.job
        if job is not None and job.preview is not None and self.input is not None:
            if self._plane_of(self.input, job.source.lead) != job.preview:
                self._step_timer.start()

    def _move_preview(self) -> None:
        """Restore the plane now shown and put it in the preview's layers (in place)."""
        job, layer = self.job, self.input
        if self._closed or job is None or job.preview is None or layer is None:
            return
        plane = self._plane_of(layer, job.source.lead)
        if plane == job.preview:
            return
        if self.busy:  # after the running step
            self._step_timer.start()
            return
        opts = replace(job.options, strength=job.strength)
        new = self._eng.Job(
            job.source,
            opts,
            job.entry,
            job.layer_name,
            kernel=job.kernel,
            preview=plane,
            noise=job.noise,
        )
        new.model_record = job.model_record
        self._running_on = layer
        self._start(
            new.run(),
            new.total,
            f"preview: plane {plane} of {layer.name!r} ...",
            lambda result: self._on_moved(new, layer, result),
        )

    def _on_moved(self, job, layer, result) -> None:
        if isinstance(result, Failure):
            self._fail(result.message)
            return
        got = self._results.get(layer.name)
        if got is None or layer not in self.viewer.layers:
            return
        outputs = [ly for ly in got[2] if ly in self.viewer.layers]
        if len(outputs) != len(got[2]):
            return  # the user removed a preview layer: Run makes them again
        specs = _layers.result_specs(layer, job)
        _layers.update_layers(outputs, specs)
        self._results[layer.name] = (job, layer, outputs)
        if self.input is not None and self.input.name == layer.name:
            self.job, self._rendered = job, job.strength
            self.probe.forget()
            self._show_whiteness(job.provenance())
        self._say(f"preview: plane {job.preview} of {layer.name!r}")
        if self.job is job:
            self._on_step()  # the slider moved on meanwhile
            if self.form.strength.value() != job.strength:
                self._timer.start()

    def restore_all(self, path=None, budget=None) -> None:
        """Restore every plane of the previewed lazy layer with the preview's model,
        noise and strength, chunk by chunk in a worker: into memory when the result fits
        the memory budget (``budget`` bytes, default
        :func:`napari_pkn._stacks.memory_budget`), else into OME-Zarr files at ``path``
        (a file dialog without it) opened lazily. Adds the layers ``"<name> [PKN
        <model>] all planes"`` (and its maps and QC); the preview stays."""
        if self._closed:
            return
        if self._worker is not None:
            show_warning("PKN is already running: wait for it or press Cancel.")
            return
        job, layer = self.job, self.input
        if job is None or job.preview is None or layer is None:
            self._fail("'All planes' restores a previewed lazy stack: press Run first.")
            return
        opts = replace(job.options, strength=job.strength)
        try:
            noise = job.noise.argument if job.noise is not None else job.options.noise
            run = _stacks.AllPlanes(
                job.source, opts, job.entry, noise, job.kernel, path=path, budget=budget
            )
            if run.needs_path:
                chosen = self._ask_path(layer, run)
                if not chosen:
                    self._say("all planes: not written (no file chosen)")
                    return
                run.path = Path(chosen)
        except (TypeError, ValueError) as e:
            self._fail(str(e))
            return
        self._all_job = run
        self._running_on = layer
        self._started = time.perf_counter()
        self._start(
            run.run(),
            run.total,
            f"all planes of {layer.name!r} ...",
            lambda result: self._on_all_done(job, run, layer, result),
        )

    def _ask_path(self, layer, run) -> str:
        gib = run.bytes / 2**30
        path, _ = QFileDialog.getSaveFileName(
            self,
            f"The result ({gib:.1f} GiB) does not fit in memory: write it as OME-Zarr",
            f"{layer.name}_pkn.ome.zarr",
            "OME-Zarr (*.ome.zarr *.zarr)",
        )
        return path

    def _on_all_done(self, job, run, layer, result) -> None:
        if isinstance(result, Failure):
            self._fail(result.message)
            return
        if result is None:
            self._say("all planes cancelled: no layer was added")
            return
        if layer not in self.viewer.layers:
            self._fail(f"layer {layer.name!r} was removed while PKN ran; nothing was added.")
            return
        view = _AllView(job, run)
        show, qc = self.form.show_maps.isChecked(), self.form.show_qc.isChecked()
        specs = _layers.result_specs(layer, view, show, qc)
        for _, kw, _ in specs:
            kw["name"] = kw["name"].replace("]", "] all planes", 1)
        self.all_planes[layer.name] = _layers.put_layers(self.viewer, specs)
        seconds = time.perf_counter() - self._started
        where = "in memory" if run.in_memory else f"in {run.path} (read lazily)"
        self._say(f"all {job.source.n_planes} planes of {layer.name!r} in {seconds:.1f} s, {where}")

    # ------------------------------------------------------------------ adaptation
    def adapt_layers(self) -> list:
        """What "Adapt to this data" uses: the selected input Image layers when several
        are selected (repeated captures), else the chosen layer."""
        sel = self.viewer.layers.selection
        chosen = [
            ly
            for ly in self.viewer.layers
            if ly in sel and isinstance(ly, Image) and "pkn" not in ly.metadata
        ]
        if len(chosen) >= 2:
            return chosen
        layer = self.input_layer()
        return [] if layer is None else [layer]

    def adapt_plan(self):
        """The :class:`napari_pkn._adapting.Plan` for the layers and the checkbox now."""
        return _adapting.plan(
            self.adapt_layers(), self.adapt_panel.repeated.isChecked(), self._plane_of
        )

    def _update_plan(self, *_) -> None:
        layers = self.adapt_layers()
        stack = len(layers) == 1 and layers[0].ndim > 2 + bool(layers[0].rgb)
        self.adapt_panel.repeated.setEnabled(stack)  # only a stack has planes to pair
        try:
            text, ok = self.adapt_plan().text, True
        except (TypeError, ValueError) as e:
            text, ok = str(e), False
        self.adapt_panel.show_plan(text, ok)

    def adapt(self, *_) -> None:
        """Fine-tune the chosen denoising model on the chosen layer(s) in a worker; the
        result is saved, listed and selected (see :mod:`napari_pkn._adapting`)."""
        if self._worker is not None:
            show_warning("PKN is already running: wait for it or press Cancel.")
            return
        entry = self.form.model()
        try:
            if entry is None:
                raise ValueError("choose the denoising model to start from.")
            plan = self.adapt_plan()
            steps, noise = self.adapt_panel.steps.value(), self.form.noise()
            job = _adapting.AdaptJob(plan, entry, steps=steps, noise=noise)
        except (TypeError, ValueError) as e:
            self._fail(str(e))
            return
        if self._render_worker is not None:
            self._pending_render = False
            self._render_worker.quit()
        self._adapt_job = job
        self._start(
            job.run(),
            job.total,
            f"adapting {entry.name}: {plan.text} ...",
            lambda result: self._on_adapted(job, result),
            aborted="adaptation cancelled: no model was saved",
        )

    def _on_adapted(self, job, result) -> None:
        if isinstance(result, Failure):
            self._fail(result.message)
            return
        if isinstance(result, _adapting.Cancelled) or result is None:
            self._say("adaptation cancelled: no model was saved")
            return
        self.adapted = job
        self.form.set_catalogue(self._eng.catalogue())
        self.form.select(task=result.task, model=result.name)
        self._update_buttons()
        self._say(_adapting.describe(job))

    def load_model(self, path=None) -> None:
        """Add a ``.safetensors`` PKN model to the list and select it (a file dialog
        without ``path``); a bad file is reported and changes nothing."""
        if path is None:
            folder = _adapting.models_dir()
            path, _ = QFileDialog.getOpenFileName(
                self,
                "Load a PKN model",
                str(folder if folder.is_dir() else ""),
                "PKN models (*.safetensors)",
            )
            if not path:
                return
        try:
            info = _adapting.load_model_file(path, self._eng.catalogue())
        except (TypeError, ValueError) as e:
            self._fail(str(e))
            return
        self.form.set_catalogue(self._eng.catalogue())
        self.form.select(task=info.task, model=info.name)
        self._update_buttons()
        self._say(f"loaded model {info.name!r} ({info.kernel}, {info.task}): selected")

    def save_model(self, path=None) -> None:
        """Copy the chosen adapted or loaded model file and its card (a file dialog
        without ``path``)."""
        entry = self.form.model()
        try:
            _adapting.require_added(entry)
            if path is None:
                path, _ = QFileDialog.getSaveFileName(
                    self, "Save the model as", entry.ref, "PKN models (*.safetensors)"
                )
                if not path:
                    return
            dest = _adapting.copy_model(entry, path)
        except (TypeError, ValueError) as e:
            self._fail(str(e))
            return
        self._say(f"saved model {entry.name!r} to {dest}")

    # ------------------------------------------------------------------ life cycle
    def _on_removed(self, event) -> None:
        """The layer being restored was removed (or the viewer is closing, which removes
        every layer): stop the run now, nothing will be added."""
        layer = getattr(event, "value", None)
        running = self._running_on
        if running is None or layer is None or self._worker is None:
            return
        if layer is running or getattr(layer, "name", None) == running.name:
            self._abort_note = (
                f"layer {running.name!r} was removed while PKN ran; nothing was added."
            )
            if self._all_job is not None:
                self._all_job.cancel()
            self._worker.quit()

    def shutdown(self) -> None:
        """Stop everything this widget runs (restoration, strength update, adaptation),
        stop listening to the viewer and save the settings; nothing is added afterwards.
        Called when the widget is closed, its dock is removed or the viewer closes."""
        if self._shut:
            return
        self._shut = True
        self._pending_render = False
        if self._adapt_job is not None:
            self._adapt_job.cancel()
        for w in (self._worker, self._render_worker):
            if w is not None:
                w.quit()
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered, events.renamed):
            ev.disconnect(self._refresh_layers)
        events.removed.disconnect(self._on_removed)
        self.viewer.layers.selection.events.changed.disconnect(self._update_plan)
        self.viewer.dims.events.current_step.disconnect(self._on_step)
        if self._all_job is not None:
            self._all_job.cancel()
        if _alive(self):  # Qt parts (gone when the viewer deleted the widget first)
            self._timer.stop()
            self._step_timer.stop()
            self.probe.enabled.setChecked(False)
            _settings.save(self.form.state())

    @property
    def _closed(self) -> bool:
        return self._shut or not _alive(self)

    @property
    def closed(self) -> bool:
        """Whether the widget no longer acts (:meth:`shutdown` ran, or Qt deleted it)."""
        return self._closed

    def closeEvent(self, event):  # closing the widget: stop, stop listening, save
        self.shutdown()
        super().closeEvent(event)

    def event(self, ev):
        """Notice the dock being removed (napari takes the widget out of its dock:
        no parent any more) and watch the main window for the viewer closing."""
        if ev.type() == QEvent.Type.ParentChange:
            if self.parent() is None and self._watched_window is not None:
                self.shutdown()
            else:
                win = self.window()
                if win is not self and win is not self._watched_window:
                    win.installEventFilter(self)
                    self._watched_window = win
        return super().event(ev)

    def eventFilter(self, obj, ev):
        if obj is self._watched_window and ev.type() == QEvent.Type.Close:
            QTimer.singleShot(0, lambda: self._window_closed(obj))
        return False

    def _window_closed(self, win) -> None:
        if not _alive(win) or not win.isVisible():  # closed (not cancelled by a dialog)
            self.shutdown()


class _AllView:
    """An "All planes" result as :func:`napari_pkn._layers.result_specs` reads a job:
    the preview job's source, model and noise with the whole stack's arrays (numpy, or
    dask read from OME-Zarr) and provenance. No orientation glyphs (they would read every
    map)."""

    def __init__(self, job, run):
        self.source, self.entry, self.options = job.source, job.entry, job.options
        self.kernel = replace(job.kernel, glyphs=())
        self.image, self.maps, self.qc = run.image, run.maps, run.qc
        self.origin = None
        self._meta = {
            **run.info,
            "input_layer": job.layer_name,
            "planes": job.source.n_planes,
            "strength": job.strength,
            **(job.options.extra or {}),
        }
        if job.noise is not None and job.noise.desc:
            self._meta["noise"] = {**job.noise.desc, "planes": job.noise.n_planes}
            self._meta["noise"]["sampled_planes"] = list(job.noise.sampled)

    def provenance(self) -> dict:
        return dict(self._meta)


PSF_NEEDED = (
    "choose a PSF layer: an image of one bead or point (2-D, or a 3-D z-stack), or use "
    "a Gaussian blur sigma."
)
PSF_HOW = (
    "the bead is background-subtracted, centred (in-focus plane of a z-stack), cropped "
    "and normalised; the PSF used is added as a layer"
)
PSF_MAX_SIDE = 129  # larger layers are not preselected as a PSF


def _alive(obj) -> bool:
    """Whether the C++ side of a Qt object still exists."""
    try:
        obj.objectName()
    except RuntimeError:
        return False
    return True


def _spatial(layer) -> tuple[int, int]:
    shape = layer.data[0].shape if layer.multiscale else layer.data.shape
    shape = shape[:-1] if layer.rgb else shape
    return tuple(int(n) for n in shape[-2:])


def looks_like_psf(layer, image_shape=None) -> bool:
    """Whether an Image layer looks like a PSF (a bead): gray, 2-D or 3-D, small (at most
    :data:`PSF_MAX_SIDE` and half the image's side), one bright peak (the pixels above half
    the peak, over the median, are at most a quarter of the brightest plane)."""
    if layer.rgb or layer.multiscale or layer.ndim not in (2, 3):
        return False
    h, w = _spatial(layer)
    limit = PSF_MAX_SIDE
    if image_shape is not None:
        limit = min(limit, max(image_shape) // 2)
    if max(h, w) > limit or min(h, w) < 3 or layer.data.dtype.kind not in "iuf":
        return False
    a = np.asarray(layer.data, np.float64)
    if not np.isfinite(a).all():
        return False
    if a.ndim == 3:
        a = a[int(np.argmax(a.reshape(len(a), -1).max(axis=1)))]
    above = a - np.median(a)
    peak = above.max()
    return bool(peak > 0 and (above > peak / 2).mean() <= 0.25)


def _is_qc(layer) -> bool:
    """Whether ``layer`` is a QC map made by this widget."""
    return "qc" in layer.metadata.get("pkn", {})
