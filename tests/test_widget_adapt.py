"""'Adapt to this data', 'Load model...' and 'Save model as...' in the PKN widget (Xvfb).

Adaptations run a few steps on small crops so the tests stay fast; the model folder and
the settings live in temporary directories, and models registered during a test are
forgotten after it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from widget_helpers import wait

import pkn._catalogue
from napari_pkn import _adapting
from napari_pkn._qt import _settings
from napari_pkn._sample_data import fluorescence_sample
from pkn import catalogue

pytestmark = pytest.mark.gui

TIMEOUT = 60_000
STEPS = 3


@pytest.fixture(autouse=True)
def _tmp_folders(tmp_path, monkeypatch):
    monkeypatch.setenv(_settings.ENV, str(tmp_path / "config"))
    monkeypatch.setenv(_adapting.ENV, str(tmp_path / "data"))
    monkeypatch.setattr(pkn._catalogue, "_ADDED", {})  # models added here are forgotten


@pytest.fixture
def viewer_widget(menu_widget):
    """The widget as napari makes it from the menu, with few adaptation steps."""
    menu_widget[1].adapt_panel.steps.setValue(STEPS)
    return menu_widget


@pytest.fixture(scope="module")
def noisy():
    return fluorescence_sample()[1][0]


def models_on_disk(tmp_path) -> list:
    folder = tmp_path / "data" / "models"
    return sorted(p.name for p in folder.glob("*")) if folder.is_dir() else []


def kernel_items(widget) -> list[str]:
    k = widget.form.kernel
    return [k.itemData(i) for i in range(k.count())]


def test_adapt_one_layer_blindspot_then_restore_with_it(viewer_widget, qtbot, noisy, tmp_path):
    viewer, widget = viewer_widget
    layer = viewer.add_image(noisy[:48, :48], name="cells")
    assert widget.adapt_plan().mode == "blindspot"
    assert "blind-spot" in widget.adapt_panel.info.text()
    assert not widget.adapt_panel.save_button.isEnabled()  # a shipped model is chosen
    steps = []
    widget.progress.valueChanged.connect(steps.append)
    widget.adapt_panel.adapt_button.click()
    assert widget.busy and not widget.run_button.isEnabled()
    wait(qtbot, widget)
    assert steps[-1] == STEPS == widget.progress.maximum()
    job = widget.adapted
    assert job is not None and job.model.adaptation["mode"] == "blindspot"
    name = job.info.name
    assert name.startswith("nlm-adapted-") and job.path.parent == tmp_path / "data" / "models"
    assert models_on_disk(tmp_path) == [f"{name}.md", f"{name}.safetensors"]
    assert name in [m.name for m in catalogue().models_for("denoise")]
    assert widget.form.kernel.currentData() == name and name in kernel_items(widget)
    assert widget.adapt_panel.save_button.isEnabled()
    assert "press Run" in widget.status.text()
    card = job.card.read_text()
    assert "`cells`" in card and "blindspot" in card.lower()

    widget.run()  # the next restoration uses, and names, the adapted model
    wait(qtbot, widget)
    out = viewer.layers[f"cells [PKN {name}]"]
    for ly in widget.outputs:
        meta = ly.metadata["pkn"]
        assert meta["model"] == name and meta["model_file"] == str(job.path)
        a = meta["adaptation"]
        assert a["card"] == str(job.card) and a["base_model"]["name"] == "nlm"
        assert a["mode"] == "blindspot" and a["layers"] == ["cells"]
        assert [d["name"] for d in a["data"]] == ["cells"]
    assert out.data.shape == layer.data.shape
    json.dumps(out.metadata["pkn"])  # plain data: it can be saved with the layer


def test_two_selected_layers_are_repeated_captures(viewer_widget, qtbot, noisy):
    viewer, widget = viewer_widget
    rng = np.random.default_rng(0)
    clean = noisy[:48, :48].astype(np.float32)
    a = viewer.add_image(clean + rng.normal(0, 8, clean.shape).astype(np.float32), name="a")
    b = viewer.add_image(clean + rng.normal(0, 8, clean.shape).astype(np.float32), name="b")
    viewer.layers.selection = {a, b}
    plan = widget.adapt_plan()
    assert plan.mode == "n2n" and [ly.name for ly in plan.layers] == ["a", "b"]
    assert "Noise2Noise on 2 layers" in widget.adapt_panel.info.text()
    widget.adapt()
    wait(qtbot, widget)
    record = widget.adapted.model.adaptation
    assert record["mode"] == "n2n" and [d["name"] for d in record["data"]] == ["a", "b"]
    assert widget.form.kernel.currentData() == widget.adapted.info.name
    viewer.layers.selection = {a}
    widget.layer.setCurrentText("a")
    widget.run()
    wait(qtbot, widget)
    meta = widget.outputs[0].metadata["pkn"]
    assert meta["adaptation"]["mode"] == "n2n" and meta["adaptation"]["layers"] == ["a", "b"]


def test_plans_for_stacks_and_refusals(viewer_widget, noisy):
    viewer, widget = viewer_widget
    stack = viewer.add_image(np.stack([noisy[:32, :32]] * 3), name="t")
    widget.layer.setCurrentText("t")
    viewer.layers.selection = {stack}
    plan = widget.adapt_plan()
    assert plan.mode == "blindspot" and len(plan.frames) == 3  # time/z: each plane alone
    assert widget.adapt_panel.repeated.isEnabled()
    widget.adapt_panel.repeated.setChecked(True)
    plan = widget.adapt_plan()
    assert plan.mode == "n2n" and "3 planes of 't'" in widget.adapt_panel.info.text()
    assert [f.shape for f in plan.arrays()] == [(32, 32)] * 3

    small = viewer.add_image(noisy[:40, :40], name="small")
    widget.layer.setCurrentText("small")
    viewer.layers.selection = {small}
    assert not widget.adapt_panel.repeated.isEnabled()  # a 2-D image has no planes to pair
    viewer.layers.selection = {stack, small}
    with pytest.raises(ValueError, match="same size"):
        widget.adapt_plan()
    assert "same size" in widget.adapt_panel.info.text()
    rgb = viewer.add_image(np.stack([noisy[:32, :32]] * 3, -1), name="rgb")
    with pytest.raises(ValueError, match="RGB"):
        _adapting.plan([rgb])


def test_adapt_needs_a_denoising_model(viewer_widget, qtbot, noisy, notes, tmp_path):
    viewer, widget = viewer_widget
    viewer.add_image(noisy[:48, :48], name="cells")
    widget.form.task.setCurrentIndex(widget.form.task.findData("upsample"))
    widget.adapt()
    wait(qtbot, widget)
    assert "denoise" in notes[-1].message and notes[-1].severity == "error"
    assert models_on_disk(tmp_path) == []


def test_cancel_stops_adapt_and_leaves_no_model(viewer_widget, qtbot, noisy, tmp_path):
    viewer, widget = viewer_widget
    viewer.add_image(noisy[:64, :64], name="cells")
    widget.adapt_panel.steps.setValue(100_000)
    before, chosen = kernel_items(widget), widget.form.kernel.currentData()
    n_models = len(catalogue().models)
    cancelled = []
    widget.progress.valueChanged.connect(
        lambda v: v > 1 and not cancelled and cancelled.append(widget.cancel_button.click())
    )
    widget.adapt()
    qtbot.waitUntil(lambda: bool(cancelled), timeout=TIMEOUT)
    wait(qtbot, widget)
    assert widget.progress.value() < 50
    assert "cancelled" in widget.status.text() and "no model" in widget.status.text()
    assert models_on_disk(tmp_path) == [] and len(catalogue().models) == n_models
    assert kernel_items(widget) == before and widget.form.kernel.currentData() == chosen
    assert widget.adapted is None and widget.adapt_panel.adapt_button.isEnabled()


def test_load_and_save_model_files(viewer_widget, qtbot, noisy, notes, tmp_path):
    viewer, widget = viewer_widget
    viewer.add_image(noisy[:48, :48], name="cells")
    before, chosen = kernel_items(widget), widget.form.kernel.currentData()
    n_models = len(catalogue().models)
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model at all")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path, hint in ((bad, "cannot load 'broken.safetensors'"), (text, ".safetensors")):
        notes.clear()
        widget.load_model(str(path))
        errors = [n.message for n in notes if n.severity == "error"]
        assert errors and hint in errors[-1], errors
        assert kernel_items(widget) == before and widget.form.kernel.currentData() == chosen
        assert len(catalogue().models) == n_models

    notes.clear()
    widget.save_model(str(tmp_path / "copy.safetensors"))  # a shipped model: refused
    assert "choose an adapted or loaded model" in notes[-1].message
    assert not (tmp_path / "copy.safetensors").exists()

    widget.adapt()
    wait(qtbot, widget)
    job = widget.adapted
    out = tmp_path / "elsewhere" / "my-model"
    widget.save_model(str(out))
    saved = out.with_name("my-model.safetensors")
    assert saved.read_bytes() == job.path.read_bytes()
    assert saved.with_suffix(".md").read_text() == job.card.read_text()
    assert str(saved) in widget.status.text()

    widget.load_model(str(saved))  # a copy under another name: listed and selected
    assert widget.form.kernel.currentData() == "my-model"
    assert {job.info.name, "my-model"} <= set(kernel_items(widget))
    widget.run()
    wait(qtbot, widget)
    meta = widget.outputs[0].metadata["pkn"]
    assert meta["model"] == "my-model" and meta["adaptation"]["card"] == str(
        saved.with_suffix(".md")
    )
    notes.clear()
    widget.load_model(str(job.path.with_name("other") / f"{job.info.name}.safetensors"))
    assert "does not exist" in notes[-1].message
