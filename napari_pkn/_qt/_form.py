"""The widget's settings form: task, kernel, noise, blur, factor, strength (and its Auto
button), maps and QC."""

from __future__ import annotations

import math

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from ._run import model_hint

__all__ = ["OptionsForm"]

NOISE_MODES = {
    "auto": "automatic estimate",
    "gaussian": "Gaussian sigma",
    "poisson-gaussian": "Poisson-Gaussian (a, b)",
}
BLUR_MODES = {"gaussian": "Gaussian sigma (pixels)", "psf": "PSF from an image layer"}
STRENGTH_MAX = 3.0  # the slider's range; "Auto" may extend it
AUTO_TASK = "denoise"  # the task the Auto strength (SURE) is offered for


def _spin(lo: float, hi: float, value: float, decimals: int = 4, tip: str = "") -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
    s.setValue(value)
    s.setToolTip(tip)
    return s


def _combo(items: dict) -> QComboBox:
    c = QComboBox()
    for key, text in items.items():
        c.addItem(text, key)
    return c


class OptionsForm(QWidget):
    """What to run. Rows not used by the chosen kernel are hidden.

    Parameters
    ----------
    catalogue : pkn._catalogue.Catalogue
        What to offer (:func:`pkn.catalogue`): every task (those without a model are
        listed but disabled), each task's models in the registry's order, its default
        kernel preselected; each kernel's descriptor says which inputs it needs (a blur,
        an output size) and so which rows are shown.
    """

    def __init__(self, catalogue, parent=None):
        super().__init__(parent)
        self._catalogue = catalogue
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._form = form
        self.layer = QComboBox()
        self.layer.setToolTip("Image layers only (Labels, Points, Shapes are not images)")
        self.task = QComboBox()
        for t in catalogue.tasks:
            self.task.addItem(t, t)
        self._label_tasks()
        self.kernel = QComboBox()
        self.model_hint = QLabel("")  # a better-suited model for this noise, when there is one
        self.model_hint.setWordWrap(True)
        self.model_hint.setVisible(False)
        self._desc = None  # the last noise estimate (set_estimate)
        self.noise_mode = _combo(NOISE_MODES)
        self.noise_info = QLabel("choose an image layer to estimate its noise")
        self.noise_info.setToolTip(
            "noise settings and strength belong to the image: a new image starts from its "
            "own automatic estimate and strength 1"
        )
        self.noise_info.setWordWrap(True)
        self.per_plane = QCheckBox("noise per plane")
        self.per_plane.setToolTip(
            "stacks: estimate the noise of every plane on its own. Off (default): one noise "
            "model for the whole stack, pooled over its planes (planes of one camera share "
            "its noise; one plane alone gives a noisier estimate)"
        )
        self.per_plane.setVisible(False)
        self.stack = False  # the chosen layer is a stack (the widget says): per_plane shown
        self.sigma = _spin(0, 1e9, 0.05, tip="standard deviation, in the image's units")
        self.a = _spin(0, 1e9, 0.01, tip="variance = a * intensity + b (image units)")
        self.b = _spin(-1e12, 1e12, 0.0, tip="variance = a * intensity + b (image units)")
        self.blur_mode = _combo(BLUR_MODES)
        self.blur_sigma = _spin(0.1, 20.0, 1.5, 2, "Gaussian blur sigma, in pixels")
        self.psf_layer = QComboBox()
        self.psf_layer.setToolTip(
            "an image of one bead (or point): 2-D, or a 3-D z-stack whose in-focus plane is "
            "used. Its background is removed, it is centred, cropped and normalised to sum 1; "
            "the PSF actually used is added as a layer. The input image itself is not offered."
        )
        self.psf_info = QLabel("")
        self.psf_info.setWordWrap(True)
        self.factor = _spin(1.1, 8.0, 2.0, 2, "output pixel size = input pixel size / factor")
        self.factor.setSingleStep(0.25)
        self.strength = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(0.0, STRENGTH_MAX)
        self.strength.setValue(1.0)
        self.strength.setToolTip(
            "multiplies the predicted maps; moving it re-runs only the filter (no network)"
        )
        self.auto = QPushButton("Auto")
        self.auto.setToolTip(
            "choose the strength without a clean image: the minimum of SURE (Stein's "
            "unbiased risk estimate) for the estimated noise, on the plane shown; one "
            "strength for the whole stack"
        )
        strength_row = QWidget()
        row = QHBoxLayout(strength_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.strength, 1)
        row.addWidget(self.auto)
        self._strength_row = strength_row
        self.show_maps = QCheckBox("show parameter maps")
        self.show_maps.setToolTip("one image layer per parameter, overlaid pixel for pixel")
        self.show_qc = QCheckBox("show QC map (residual / noise std)")
        self.show_qc.setToolTip(
            "denoising: (input - result) / noise std, blue-white-red from -4 to 4. Pale "
            "speckle everywhere = only noise was removed; edges or shapes = structure removed"
        )
        for label, w in (
            ("image", self.layer),
            ("task", self.task),
            ("kernel", self.kernel),
            ("", self.model_hint),
            ("noise", self.noise_mode),
            ("", self.noise_info),
            ("", self.per_plane),
            ("sigma", self.sigma),
            ("a", self.a),
            ("b", self.b),
            ("blur", self.blur_mode),
            ("blur sigma", self.blur_sigma),
            ("PSF layer", self.psf_layer),
            ("", self.psf_info),
            ("factor", self.factor),
            ("strength", strength_row),
            ("", self.show_maps),
            ("", self.show_qc),
        ):
            form.addRow(label, w)
        self.task.currentIndexChanged.connect(self._on_task)
        self.kernel.currentIndexChanged.connect(self.update_rows)
        self.noise_mode.currentIndexChanged.connect(self.update_rows)
        self.blur_mode.currentIndexChanged.connect(self.update_rows)
        first = next((i for i in range(self.task.count()) if self._enabled(i)), 0)
        self.task.setCurrentIndex(first)
        self._on_task()

    def _enabled(self, i: int) -> bool:
        return self.task.model().item(i).isEnabled()

    def _label_tasks(self) -> None:
        """Tasks without a model are listed but disabled."""
        for i in range(self.task.count()):
            t = self.task.itemData(i)
            n = len(self._catalogue.models_for(t))
            self.task.setItemText(i, t if n else f"{t} (no model shipped yet)")
            self.task.model().item(i).setEnabled(bool(n))

    def set_catalogue(self, catalogue) -> None:
        """Offer the models of ``catalogue`` (e.g. after a model was adapted or loaded),
        keeping the current choices where they are still offered."""
        self._catalogue = catalogue
        self._label_tasks()
        self._on_task()

    def set_strength(self, value: float) -> None:
        """Put the slider at ``value``, widening its range when needed (Auto may choose
        more than the usual maximum)."""
        value = float(value)
        if value > self.strength.maximum():
            self.strength.setMaximum(float(math.ceil(value)))
        self.strength.setValue(value)

    def _show(self, widget: QWidget, on: bool) -> None:
        label = self._form.labelForField(widget)
        for w in (widget, label):
            if w is not None:
                w.setVisible(on)

    def _on_task(self, *_):
        current, cat = self.kernel.currentData(), self._catalogue
        self.kernel.blockSignals(True)
        self.kernel.clear()
        for e in cat.models_for(self.task.currentData()):
            self.kernel.addItem(e.name, e.name)
            self.kernel.setItemData(
                self.kernel.count() - 1, e.description, Qt.ItemDataRole.ToolTipRole
            )
        i = self.kernel.findData(current)
        if i < 0:  # the task's default kernel
            i = self.kernel.findData(cat.tasks.get(self.task.currentData()))
        self.kernel.setCurrentIndex(max(i, 0) if self.kernel.count() else -1)
        self.kernel.blockSignals(False)
        self.update_rows()

    def select(self, layer=None, task=None, model=None, show_maps=None, show_qc=None) -> None:
        """Choose an input layer, a task, a model (by name) and/or whether maps and the QC
        map are shown; a choice that is not offered is ignored."""
        for combo, value in ((self.task, task), (self.kernel, model)):
            i = combo.findData(value) if value is not None else -1
            if i >= 0 and (combo is not self.task or self._enabled(i)):
                combo.setCurrentIndex(i)
        if layer is not None and self.layer.findText(layer) >= 0:
            self.layer.setCurrentText(layer)
        if show_maps is not None:
            self.show_maps.setChecked(bool(show_maps))
        if show_qc is not None:
            self.show_qc.setChecked(bool(show_qc))

    def model(self):
        """The chosen model (a :class:`pkn._catalogue.ModelInfo`), or None."""
        name, task = self.kernel.currentData(), self.task.currentData()
        return next((m for m in self._catalogue.models_for(task) if m.name == name), None)

    def descriptor(self):
        """The chosen model's kernel descriptor (:class:`pkn.kernels.registry.Kernel`),
        or None."""
        m = self.model()
        return None if m is None else self._catalogue.kernels.get(m.kernel)

    def inputs(self) -> tuple[str, ...]:
        """The per-call inputs the chosen kernel needs (``"blur"``, ``"size"``)."""
        k = self.descriptor()
        return () if k is None else tuple(k.inputs)

    def update_rows(self, *_):
        """Show only the rows the chosen kernel and modes use."""
        needs, noise = self.inputs(), self.noise_mode.currentData()
        blur, psf = "blur" in needs, self.blur_mode.currentData() == "psf"
        self.per_plane.setVisible(self.stack and noise == "auto")
        self._show(self.sigma, noise == "gaussian")
        self._show(self.a, noise == "poisson-gaussian")
        self._show(self.b, noise == "poisson-gaussian")
        self._show(self.blur_mode, blur)
        self._show(self.blur_sigma, blur and not psf)
        self._show(self.psf_layer, blur and psf)
        self._show(self.psf_info, blur and psf)
        self._show(self.factor, "size" in needs)
        denoise = self.task.currentData() == AUTO_TASK
        self.auto.setVisible(denoise)
        self.show_qc.setVisible(denoise)
        offered = [m.name for m in self._catalogue.models_for(self.task.currentData())]
        hint = model_hint(self._desc, self.kernel.currentData(), offered) if denoise else ""
        self.model_hint.setText(hint)
        self._show(self.model_hint, bool(hint))

    def set_layers(self, names: list[str], prefer: str | None) -> None:
        """Offer ``names`` in the image combo (no signals); keep the current choice, else
        pick ``prefer``, else the last."""
        combo, keep = self.layer, self.layer.currentText()
        if keep not in names:
            keep = prefer
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        combo.setCurrentIndex(names.index(keep) if keep in names else len(names) - 1)
        combo.blockSignals(False)

    PSF_PLACEHOLDER = "choose a PSF layer"

    def set_psf_layers(self, names: list[str], prefer: str | None) -> None:
        """Offer ``names`` as PSF layers after a "choose a PSF layer" entry (no signals);
        keep the current choice if still offered, else ``prefer``, else none."""
        combo, keep = self.psf_layer, self.psf_name()
        if keep not in names:
            keep = prefer
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(self.PSF_PLACEHOLDER, None)
        for n in names:
            combo.addItem(n, n)
        combo.setCurrentIndex(names.index(keep) + 1 if keep in names else 0)
        combo.blockSignals(False)

    def psf_name(self) -> str | None:
        """The chosen PSF layer's name, or None (none chosen)."""
        return self.psf_layer.currentData()

    def needs_psf(self) -> bool:
        """Whether the chosen kernel deblurs with a PSF from a layer."""
        return "blur" in self.inputs() and self.blur_mode.currentData() == "psf"

    def noise(self):
        """``None`` (estimate), a sigma, or ``(a, b)``: as ``pkn.Restorer(noise=...)``."""
        mode = self.noise_mode.currentData()
        if mode == "gaussian":
            return self.sigma.value()
        if mode == "poisson-gaussian":
            return (self.a.value(), self.b.value())
        return None

    def set_estimate(self, desc: dict | None, text: str) -> None:
        """Show the automatic estimate; pre-fill the manual fields while on automatic."""
        self.noise_info.setText(text)
        self._desc = desc
        self.update_rows()
        if not desc or self.noise_mode.currentData() != "auto":
            return

        def mean(v):  # one value per channel, or one value
            return float(sum(v) / len(v) if isinstance(v, list | tuple) else v)

        if desc.get("model") == "awgn":
            self.sigma.setValue(mean(desc["sigma"]))
        elif desc.get("model") == "poisson-gaussian":
            self.a.setValue(mean(desc["a"]))
            self.b.setValue(mean(desc["b"]))

    # Remembered across sessions. The noise settings and the strength belong to one image
    # (see noise_state): they are never carried over to new data.
    _STATE = ("task", "kernel", "blur_mode")
    _VALUES = ("blur_sigma", "factor")

    def noise_state(self) -> dict:
        """The settings that belong to one image: noise mode and values, strength, and
        (stacks) whether the noise is estimated per plane."""
        return {
            "noise_mode": self.noise_mode.currentData(),
            "sigma": float(self.sigma.value()),
            "a": float(self.a.value()),
            "b": float(self.b.value()),
            "strength": float(self.strength.value()),
            "per_plane": self.per_plane.isChecked(),
        }

    def set_noise_state(self, state: dict | None) -> None:
        """Apply :meth:`noise_state` values (``None``: the defaults for a new image, i.e.
        the automatic noise estimate and strength 1)."""
        state = state or {"noise_mode": "auto", "strength": 1.0}
        i = self.noise_mode.findData(state.get("noise_mode", "auto"))
        self.noise_mode.setCurrentIndex(max(i, 0))
        for k in ("sigma", "a", "b"):
            if k in state:
                getattr(self, k).setValue(float(state[k]))
        self.set_strength(state.get("strength", 1.0))
        self.per_plane.setChecked(bool(state.get("per_plane", False)))
        self.update_rows()

    def state(self) -> dict:
        """The settings as JSON-serialisable values (for persistence): task, kernel, blur,
        factor and what is shown; not the noise or the strength, which are per image."""
        out = {k: getattr(self, k).currentData() for k in self._STATE}
        out.update({k: float(getattr(self, k).value()) for k in self._VALUES})
        out["show_maps"] = self.show_maps.isChecked()
        out["show_qc"] = self.show_qc.isChecked()
        return out

    def restore(self, state: dict) -> None:
        """Apply saved settings; unknown or invalid entries are ignored, and so are noise
        settings and strength (files of older versions have them): they belong to the
        image they were set for."""
        for k in self._STATE:
            combo = getattr(self, k)
            i = combo.findData(state.get(k))
            if i >= 0 and (k != "task" or self._enabled(i)):
                combo.setCurrentIndex(i)
        for k in self._VALUES:
            if isinstance(state.get(k), int | float):
                getattr(self, k).setValue(float(state[k]))
        for k in ("show_maps", "show_qc"):
            if isinstance(state.get(k), bool):
                getattr(self, k).setChecked(state[k])
        self.update_rows()
