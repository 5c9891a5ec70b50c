"""Helpers shared by the napari widget tests (fixtures are in conftest.py)."""

from __future__ import annotations

from pkn.models.pkn_model import PKNModel

#: ms a widget test waits for a run to end (the machine may be shared and slow)
TIMEOUT = 60_000


def wait(qtbot, widget, timeout: int = TIMEOUT) -> None:
    """Until the widget is idle: no worker, no pending re-render or plane step."""

    def idle():
        step = getattr(widget, "_step_timer", None)
        return (
            not widget.busy
            and not widget._timer.isActive()
            and not (step is not None and step.isActive())
        )

    qtbot.waitUntil(idle, timeout=timeout)


def count_network(monkeypatch) -> list[int]:
    """Count the network passes (``PKNModel.predict_maps`` calls) in ``[0]``."""
    calls = [0]
    original = PKNModel.predict_maps

    def counting(self, *args, **kwargs):
        calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PKNModel, "predict_maps", counting)
    return calls
