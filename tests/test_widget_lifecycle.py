"""The PKN widget's life cycle, probe, slider binding and odd inputs (issue #13; Xvfb).

Closing the widget, removing its dock or closing the viewer during a run stops it and
nothing is added afterwards; the strength slider only ever acts on the shown result of
the chosen input; the probe is one semi-transparent layer updated in place; odd layers
end in a clear message (never a traceback) and are never modified.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from qtpy.QtCore import QTimer
from widget_helpers import count_network, wait

from napari_pkn._layers import PROBE_NAME
from napari_pkn._sample_data import fluorescence_sample

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("settings_in_tmp")]

TIMEOUT = 30_000
NP_REPR = re.compile(r"np\.(u?int|float|bool|str)\w*\(")  # np.int64(-50) and the like


@pytest.fixture
def viewer_widget(menu_widget):
    """The widget as napari makes it from the menu."""
    return menu_widget


@pytest.fixture(scope="module")
def cells():
    return fluorescence_sample()[1][0]


def no_traceback(notes) -> None:
    """Errors reached the user as messages, not as exceptions (traceback dialogs)."""
    assert all(type(n).__name__ != "ErrorNotification" for n in notes), [
        (type(n).__name__, n.message) for n in notes
    ]
    assert not any(NP_REPR.search(n.message) for n in notes), [n.message for n in notes]


# ---------------------------------------------------------------------------- probe


def test_probe_is_one_translucent_layer_updated_in_place(viewer_widget, qtbot, cells):
    viewer, widget = viewer_widget
    viewer.add_image(cells[:64, :64], name="cells")
    widget.run()
    wait(qtbot, widget)
    widget.probe.probe((), (20, 30))
    probe = viewer.layers[PROBE_NAME]
    assert probe.opacity <= 0.6 and probe.blending == "additive"  # only the weights show
    first = probe.data.copy()
    widget.probe.probe((), (40, 10))  # another click: the same layer
    assert viewer.layers[PROBE_NAME] is probe
    assert probe.metadata["pkn"]["probe"]["pixel"] == [40, 10]
    text = widget.probe.info.text()
    assert "row 40, col 10" in text and "strength 1.00" in text

    widget.form.strength.setValue(0.4)  # the weights and the text follow the strength
    wait(qtbot, widget)
    assert viewer.layers[PROBE_NAME] is probe
    assert probe.metadata["pkn"]["probe"]["strength"] == pytest.approx(0.4)
    assert "strength 0.40" in widget.probe.info.text() and "row 40, col 10" in text
    assert not np.array_equal(probe.data, first)

    kernel = widget.form.kernel
    other = next(kernel.itemData(i) for i in range(kernel.count()) if kernel.itemData(i) != "nlm")
    kernel.setCurrentIndex(kernel.findData(other))
    widget.run()  # another kernel: still the same probe layer, text about the new one
    wait(qtbot, widget)
    assert viewer.layers[PROBE_NAME] is probe
    assert sum(ly.name == PROBE_NAME for ly in viewer.layers) == 1
    assert probe.metadata["pkn"]["probe"]["model"] == other
    assert f"{other} on 'cells'" in widget.probe.info.text()


# ---------------------------------------------------------------------- life cycle


def _close_widget(viewer, widget):
    widget.close()


def _remove_dock(viewer, widget):
    viewer.window.remove_dock_widget(widget)


def _close_viewer(viewer, widget):
    viewer.close()


@pytest.mark.parametrize("close", [_close_widget, _remove_dock, _close_viewer])
def test_closing_cancels_the_run(viewer_widget, qtbot, monkeypatch, close):
    viewer, widget = viewer_widget
    calls = count_network(monkeypatch)
    stack = np.random.default_rng(0).random((20, 128, 128), dtype=np.float32)
    viewer.add_image(stack, name="long")
    names = [ly.name for ly in viewer.layers]
    closed = []

    def later():  # from the event loop, as a user's click (not inside the widget's slot)
        if not closed:  # once, though two progress steps may queue it twice
            closed.append(close(viewer, widget) or True)

    widget.progress.valueChanged.connect(
        lambda v: v > 0 and not closed and QTimer.singleShot(0, later)
    )
    widget.run()
    qtbot.waitUntil(lambda: bool(closed), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=TIMEOUT)
    qtbot.wait(300)  # anything queued would arrive now
    assert widget.closed and not widget.busy
    assert calls[0] < 10  # stopped at the next step, not after 20 planes
    assert not widget._results  # no result was kept, no layer added
    if close is not _close_viewer:
        assert [ly.name for ly in viewer.layers] == names


def test_removing_the_input_mid_run_stops_it(viewer_widget, qtbot, monkeypatch, notes):
    viewer, widget = viewer_widget
    calls = count_network(monkeypatch)
    stack = np.random.default_rng(0).random((20, 128, 128), dtype=np.float32)
    layer = viewer.add_image(stack, name="long")
    done = []
    widget.progress.valueChanged.connect(
        lambda v: v > 0 and not done and done.append(viewer.layers.remove(layer))
    )
    widget.run()
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT)
    wait(qtbot, widget)
    assert calls[0] < 10 and len(viewer.layers) == 0
    assert "'long' was removed while PKN ran; nothing was added" in widget.status.text()
    assert widget.run_button.isEnabled() is False  # nothing left to restore
    no_traceback(notes)


def test_slider_acts_only_on_the_shown_result_of_the_chosen_input(viewer_widget, qtbot, cells):
    viewer, widget = viewer_widget
    a = viewer.add_image(cells[:64, :64], name="a")
    b = viewer.add_image(cells[64:128, 64:128], name="b")
    widget.layer.setCurrentText("a")
    widget.run()
    wait(qtbot, widget)
    out_a = widget.outputs[0]
    assert widget.input.name == "a"
    kept = out_a.data.copy()

    widget.layer.setCurrentText("b")  # no result for b: the slider acts on nothing
    assert widget.job is None and widget.outputs == []
    assert widget.form.strength.value() == 1.0
    widget.form.strength.setValue(0.2)
    wait(qtbot, widget)
    np.testing.assert_array_equal(out_a.data, kept)
    assert out_a.metadata["pkn"]["strength"] == 1.0

    widget.run()  # b at 0.2; switch back to a while it runs
    widget.layer.setCurrentText("a")
    wait(qtbot, widget)
    out_b = viewer.layers["b [PKN nlm]"]
    assert out_b.metadata["pkn"]["strength"] == pytest.approx(0.2)
    assert widget.input.name == "a" and widget.outputs[0] is out_a  # not re-bound to b
    assert widget.form.strength.value() == 1.0  # a's strength
    assert "the strength slider stays with 'a'" in widget.status.text()
    b_data = out_b.data.copy()
    widget.form.strength.setValue(0.0)  # acts on a's result only
    wait(qtbot, widget)
    np.testing.assert_allclose(out_a.data, a.data, atol=1e-3)
    np.testing.assert_array_equal(out_b.data, b_data)
    assert out_b.metadata["pkn"]["strength"] == pytest.approx(0.2)

    widget.layer.setCurrentText("b")  # re-bound to b's result, with b's strength
    assert widget.outputs[0] is out_b and widget.form.strength.value() == pytest.approx(0.2)
    assert b.data is not None


# ------------------------------------------------------------------ odd inputs


def _labels(viewer):
    viewer.add_labels(np.ones((16, 16), np.int32), name="mask")
    return None


def _big_negative_ints(rng):
    return rng.integers(-50, 50, (24, 24)).astype(np.int64)


def _nan_pixels(rng):
    a = rng.random((24, 24), dtype=np.float32)
    a[3, 4] = np.nan
    return a


ODD = {  # name: (data or a callable adding a non-image layer, expected message)
    "bool": (lambda rng: rng.random((24, 24)) > 0.5, "bool pixels"),
    "1x1": (lambda rng: np.ones((1, 1), np.float32), "at least 2x2"),
    "rgb": (lambda rng: rng.integers(0, 255, (24, 20, 3)).astype(np.uint8), "done:"),
    "4-D": (lambda rng: rng.random((2, 2, 16, 16), dtype=np.float32), "done: 4 planes"),
    "int64 negative": (_big_negative_ints, "done:"),
    "NaN pixels": (_nan_pixels, "NaN"),
    "labels": (None, "open one"),
    "removed mid-run": (lambda rng: rng.random((12, 48, 48), dtype=np.float32), "removed"),
}


@pytest.mark.parametrize("case", list(ODD))
def test_odd_inputs_end_in_a_message(viewer_widget, qtbot, notes, case):
    """Every odd input ends in a clear message in the widget (status line; errors also
    as a notification), never an exception; the input's data is never changed."""
    viewer, widget = viewer_widget
    rng = np.random.default_rng(3)
    make, expected = ODD[case]
    if make is None:
        _labels(viewer)
        layer = None
        assert widget.layer.count() == 0  # Labels are not offered
    else:
        data = make(rng)
        layer = viewer.add_image(data, name="odd")
        before = np.array(layer.data, copy=True)
        widget.layer.setCurrentText("odd")
    if case == "removed mid-run":
        widget.progress.valueChanged.connect(
            lambda v: v == 1 and layer in viewer.layers and viewer.layers.remove(layer)
        )
    n = len(viewer.layers)
    widget.run()
    wait(qtbot, widget)
    text = widget.status.text()
    assert expected in text, (case, text)
    assert not NP_REPR.search(text) and "Traceback" not in text
    no_traceback(notes)
    if layer is not None:
        np.testing.assert_array_equal(np.asarray(layer.data), before)
        assert layer.data.dtype == before.dtype
    if not expected.startswith("done"):
        errors = [x.message for x in notes if x.severity == "error"]
        assert errors and expected in errors[-1]
        added = [ly for ly in viewer.layers if "pkn" in ly.metadata]
        assert not added and len(viewer.layers) <= n
