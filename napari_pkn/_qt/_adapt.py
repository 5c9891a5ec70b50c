"""The "Adapt to this data" controls: what will be trained on, and the model file buttons.

:class:`AdaptPanel` holds the widgets; :class:`~napari_pkn._qt._widget.PKNWidget` runs
the adaptation (it shares the progress bar and Cancel with restorations). The rules for
what is trained on are :func:`napari_pkn._adapting.plan`'s.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
)

__all__ = ["AdaptPanel"]

DEFAULT_STEPS = 200


class AdaptPanel(QGroupBox):
    """Adaptation settings and buttons: ``repeated`` (the planes of a stack are repeated
    captures), ``steps``, ``adapt_button``, ``load_button``, ``save_button`` and ``info``
    (one line: what "Adapt" will do now)."""

    def __init__(self, parent=None):
        super().__init__("Adapt the model to your data (no clean image needed)", parent)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.repeated = QCheckBox("planes are repeated captures")
        self.repeated.setToolTip(
            "tick when the planes of the stack image the same, unchanging field (e.g. a "
            "burst of exposures): then they are adapted on as Noise2Noise pairs. Leave it "
            "off for a time-lapse or z-stack whose content changes: each plane is then "
            "adapted on alone (blind-spot)."
        )
        self.steps = QSpinBox()
        self.steps.setRange(1, 100_000)
        self.steps.setValue(DEFAULT_STEPS)
        self.steps.setPrefix("steps ")
        self.steps.setToolTip("Adam steps on random crops (about 0.1 s each on a CPU)")
        self.adapt_button = QPushButton("Adapt to this data")
        self.adapt_button.setToolTip(
            "fine-tune the chosen denoising model on the chosen layer (or on several "
            "selected layers of one size, as repeated captures); the new model is saved "
            "in your napari-pkn folder, listed with the shipped ones and selected"
        )
        self.load_button = QPushButton("Load model...")
        self.load_button.setToolTip("add a .safetensors PKN model file to the model list")
        self.save_button = QPushButton("Save model as...")
        self.save_button.setToolTip("copy the chosen adapted or loaded model (and its card)")
        lay = QGridLayout(self)
        lay.addWidget(self.info, 0, 0, 1, 3)
        lay.addWidget(self.repeated, 1, 0, 1, 2)
        lay.addWidget(self.steps, 1, 2)
        lay.addWidget(self.adapt_button, 2, 0)
        lay.addWidget(self.load_button, 2, 1)
        lay.addWidget(self.save_button, 2, 2)

    def show_plan(self, text: str, ok: bool = True) -> None:
        """Say what Adapt will do (or why it cannot)."""
        self.info.setText(text if ok else f"<span style='color:#e06c5a'>{text}</span>")
