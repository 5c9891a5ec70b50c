"""The PKN restoration dock widget, end to end in a napari viewer (run under Xvfb).

Every shipped model runs on both samples. Network kernels of the registry that do not
ship a model yet run as untrained stand-in models written to a temporary directory and
added to the widget's catalogue, so a new kernel is exercised the day it is registered.
What the widget does with a kernel (map styles, glyphs, which inputs, the probe) is
checked against its descriptor. Images are cropped to <= 128 px.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from widget_helpers import count_network, wait

import napari_pkn
import napari_pkn._scripting as eng
from napari_pkn._layers import PROBE_NAME
from napari_pkn._qt import _settings
from napari_pkn._qt._widget import PKNWidget
from napari_pkn._sample_data import fluorescence_sample, natural_sample
from pkn import catalogue
from pkn._catalogue import ModelInfo
from pkn.kernels.registry import get, names
from pkn.models.io import save_model
from pkn.models.pkn_model import PKNModel

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("settings_in_tmp")]

SHIPPED = {m.name: m.kernel for m in catalogue().models if m.shipped}
STAND_INS = [k for k in names(network=True) if k not in SHIPPED.values()]
GEOMETRY = {"scale": (0.5, 0.25), "translate": (10.0, -3.0), "units": ("um", "um")}
SAMPLES = {"fluorescence": fluorescence_sample, "natural": natural_sample}
TIMEOUT = 30_000


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory) -> list[ModelInfo]:
    """Untrained models (small random heads, so the maps vary) for unshipped kernels."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    out = []
    for k in STAND_INS:
        model = PKNModel(k, widths=(4, 4, 4))
        with torch.no_grad():
            model.net.head.weight.normal_(0.0, 0.5)
        path = save_model(model, root / f"{k}.safetensors", {"stand_in": True})
        d = get(k)
        out.append(ModelInfo(k, k, d.task, d.param_names, str(path), d.description, False))
    return out


@pytest.fixture
def all_models(monkeypatch, stand_ins):
    base = eng.catalogue()
    cat = replace(base, models=base.models + tuple(stand_ins))
    monkeypatch.setattr(eng, "catalogue", lambda: cat)
    return list(cat.models)


def select(widget, layer=None, task=None, model=None):
    if layer is not None:
        widget.layer.setCurrentText(layer.name)
    if task is not None:
        widget.form.task.setCurrentIndex(widget.form.task.findData(task))
    if model is not None:
        widget.form.kernel.setCurrentIndex(widget.form.kernel.findData(model))


def snapshot(layer) -> dict:
    return {
        "data": np.array(layer.data, copy=True),
        "name": layer.name,
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "metadata": repr(layer.metadata),
        "contrast_limits": tuple(layer.contrast_limits),
    }


def assert_unchanged(layer, before: dict):
    after = snapshot(layer)
    np.testing.assert_array_equal(after.pop("data"), before.pop("data"))
    assert after == before


def world(layer, index) -> np.ndarray:
    return np.asarray(layer.data_to_world(np.asarray(index, float)))


UNITS = {"intensity": "intensity units of the input", "none": ""}
PIXEL = "1 px = 0.5 µm (y) x 0.25 µm (x)"  # GEOMETRY's pixel


def map_layer(viewer, base: str, param: str):
    """The map layer of ``param``: its name is ``"<base> <param>"`` plus its units."""
    found = [ly for ly in viewer.layers if ly.name.split(" (")[0] == f"{base} {param}"]
    assert len(found) == 1, (base, param, [ly.name for ly in viewer.layers])
    return found[0]


def check_style(m, kernel, name, pixel=PIXEL):
    """A map layer's colormap, contrast limits, label and units are its descriptor's."""
    p = kernel.param(name)
    lo, hi = m.contrast_limits
    assert m.colormap.name == p.colormap, (name, m.colormap.name)
    ok = {"unit": (lo, hi) == (-1, 1), "symmetric": lo == -hi < hi, "zero": lo == 0 < hi}
    assert ok.get(p.limits, lo < hi), (name, p.limits, lo, hi)
    about = m.metadata["pkn"]
    px = "px" if kernel.pixel_grid == "input" else "input px"
    px = f"{px}; {pixel}" if pixel else px  # µm where the input has them
    assert about["parameter"] == name and about["label"] == p.title
    assert about["units"] == UNITS.get(p.unit, px)
    if p.unit == "px":
        assert m.name.endswith(f"] {name} ({px})")
    assert m.colorbar.visible


def check_maps(viewer, layer, entry, show=True):
    """One map layer per parameter, overlaying the input pixel for pixel, styled by the
    kernel's descriptor."""
    h, w = layer.data.shape[-2:]
    maps = [map_layer(viewer, f"{layer.name} [PKN {entry.name}]", p) for p in entry.params]
    for p, m in zip(entry.params, maps, strict=True):
        assert m.data.shape == ((h + 1) // 2, (w + 1) // 2)
        np.testing.assert_allclose(m.scale, 2 * np.asarray(layer.scale))
        np.testing.assert_allclose(m.translate, np.asarray(layer.translate) + 0.5 * layer.scale)
        for ij in [(0, 0), (3, 5)]:  # map pixel (i, j) centre = input pixel (2i+.5, 2j+.5)
            np.testing.assert_allclose(world(m, ij), world(layer, 2 * np.array(ij) + 0.5))
        assert m.visible == show
        check_style(m, get(entry.kernel), p)
    return maps


CASES = [(s, n) for s in SAMPLES for n in SHIPPED] + [("fluorescence", k) for k in STAND_INS]


@pytest.mark.parametrize(("sample", "model"), CASES)
def test_end_to_end(all_models, viewer_widget, qtbot, sample, model):
    viewer, widget = viewer_widget
    _, noisy = SAMPLES[sample]()
    data = noisy[0][100:228, 150:251] if sample == "natural" else noisy[0][64:160, 64:160]
    layer = viewer.add_image(data, name="cells", **GEOMETRY)
    before = snapshot(layer)
    entry = next(e for e in all_models if e.name == model)
    kernel = get(entry.kernel)
    select(widget, layer, entry.task, model)
    assert widget.form.descriptor() is kernel
    assert widget.form.blur_sigma.isVisibleTo(widget) == ("blur" in kernel.inputs)
    assert widget.form.factor.isVisibleTo(widget) == ("size" in kernel.inputs)
    widget.form.blur_sigma.setValue(1.2)
    widget.form.factor.setValue(1.5)
    widget.form.show_maps.setChecked(True)
    widget.run()
    assert widget.busy
    wait(qtbot, widget)
    assert_unchanged(layer, before)
    out = viewer.layers[f"cells [PKN {model}]"]
    assert widget.outputs[0] is out and widget.progress.value() == widget.progress.maximum()
    meta = out.metadata["pkn"]
    assert meta["input_layer"] == "cells" and meta["kernel"] == entry.kernel
    assert meta["task"] == entry.task and meta["strength"] == 1.0
    assert {"model", "model_sha256", "noise", "pkn_version"} <= set(meta)
    assert tuple(str(u) for u in out.units) == ("micrometer", "micrometer")
    h, w = data.shape
    if "size" in kernel.inputs:
        ho, wo = round(h * 1.5), round(w * 1.5)
        assert out.data.shape == (ho, wo)
        np.testing.assert_allclose(out.scale, np.asarray(layer.scale) * (h / ho, w / wo))
        for ij in [(0, 0), (7, 11)]:  # align_corners=False: same pixel centres
            src = (np.asarray(ij) + 0.5) * (h / ho, w / wo) - 0.5
            np.testing.assert_allclose(world(out, ij), world(layer, src))
    else:
        assert out.data.shape == data.shape
        np.testing.assert_allclose(out.scale, layer.scale)
        np.testing.assert_allclose(out.translate, layer.translate)
    if kernel.pixel_grid != "input":  # no input pixel to probe
        assert widget.probe.probe((), (20, 30)) is None
        assert PROBE_NAME not in viewer.layers
    else:
        pr = widget.probe.probe((), (20, 30))
        probe = viewer.layers[PROBE_NAME]
        assert probe.opacity <= 0.6
        np.testing.assert_allclose(world(probe, (0, 0)), world(layer, pr.origin))
        assert probe.metadata["pkn"]["probe"]["sum"] == pytest.approx(pr.sum)
        assert "sum of weights" in widget.probe.info.text()
        if kernel.convex:  # a weighted average of input pixels
            assert pr.sum == pytest.approx(1, abs=1e-5) and pr.min >= -1e-7
    maps = check_maps(viewer, layer, entry)
    for m in maps:
        assert m.metadata["pkn"]["model_sha256"] == meta["model_sha256"]
    assert (f"cells [PKN {model}] orientation" in viewer.layers) == bool(kernel.glyphs)
    if kernel.glyphs:
        vec = viewer.layers[f"cells [PKN {model}] orientation"]
        assert vec.data.shape[1:] == (2, 2) and len(vec.data) > 0
        assert set(vec.features.columns) >= {"elongation", "sigma_major"}
        np.testing.assert_allclose(vec.scale, layer.scale)


def test_rgb_and_stacks(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    noisy = fluorescence_sample()[1][0][:48, :40]
    rgb = viewer.add_image(np.stack([noisy, noisy[::-1], noisy[:, ::-1]], -1), name="rgb")
    assert rgb.rgb
    select(widget, rgb)
    widget.form.show_maps.setChecked(True)
    widget.run()
    wait(qtbot, widget)
    out = viewer.layers["rgb [PKN nlm]"]
    assert out.rgb and out.data.shape == (48, 40, 3)
    sigma = map_layer(viewer, "rgb [PKN nlm]", "sigma")
    assert sigma.data.shape == (3, 24, 20) and sigma.axis_labels[0] == "channel"
    np.testing.assert_allclose(world(sigma, (1, 2, 3))[-2:], world(rgb, (4.5, 6.5)))
    assert widget.probe.probe((), (10, 10), channel=2).sum == pytest.approx(1, abs=1e-5)

    stack = np.stack([noisy[:32, :32] + i for i in range(6)]).reshape(2, 3, 32, 32)
    tz = viewer.add_image(stack, name="tz", scale=(3, 2, 1, 1))
    select(widget, tz)
    steps = []
    widget.progress.valueChanged.connect(steps.append)
    widget.run()
    wait(qtbot, widget)
    assert steps == list(range(13))  # a network pass and a filter run per plane
    out = viewer.layers["tz [PKN nlm]"]
    assert out.data.shape == stack.shape and out.metadata["pkn"]["planes"] == 6
    noise = out.metadata["pkn"]["noise"]  # one model for the stack, not one per plane
    assert noise["scope"] == "stack" and noise["planes"] == 6
    assert "noise_per_plane" not in out.metadata["pkn"]
    assert "one model for 6 planes" in widget.status.text()
    sigma = map_layer(viewer, "tz [PKN nlm]", "sigma")
    assert sigma.data.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(sigma.scale, (3, 2, 2, 2))
    pr = widget.probe.probe((1, 2), (5, 6))
    probe = viewer.layers[PROBE_NAME]
    assert probe.data.shape[:2] == (1, 1)
    np.testing.assert_allclose(world(probe, (0, 0, 0, 0)), world(tz, (1, 2, *pr.origin)))


def test_cancel_stops_a_long_run(viewer_widget, qtbot, monkeypatch):
    viewer, widget = viewer_widget
    calls = count_network(monkeypatch)
    stack = np.random.default_rng(0).random((20, 128, 128), dtype=np.float32)
    viewer.add_image(stack, name="long")
    n_layers = len(viewer.layers)
    cancelled = []
    widget.progress.valueChanged.connect(
        lambda v: v > 0 and not cancelled and cancelled.append(widget.cancel())
    )
    widget.run()
    qtbot.waitUntil(lambda: bool(cancelled), timeout=TIMEOUT)
    t0 = time.perf_counter()
    wait(qtbot, widget)
    assert time.perf_counter() - t0 < 2.0  # stops at the next step: well within a second
    assert len(viewer.layers) == n_layers and calls[0] < 5
    assert "cancelled" in widget.status.text() and widget.run_button.isEnabled()


def test_strength_reuses_maps_and_layers(viewer_widget, qtbot, monkeypatch):
    viewer, widget = viewer_widget
    calls = count_network(monkeypatch)
    noisy = fluorescence_sample()[1][0][:96, :96]
    layer = viewer.add_image(noisy, name="cells")
    widget.run()
    wait(qtbot, widget)
    assert calls[0] == 1
    out, sigma, _, qc = widget.outputs  # nlm: sigma and spatial sigma maps; QC map
    names, data_id, first = [ly.name for ly in viewer.layers], id(out.data), out.data.copy()
    s1, q1 = sigma.data.copy(), qc.data.copy()
    w1 = out.metadata["pkn"]["whiteness"]
    for s in (0.3, 0.6, 0.0):  # quick moves are debounced into one filter run
        widget.form.strength.setValue(s)
    wait(qtbot, widget)
    assert calls[0] == 1, "a strength change must not run the network"
    assert [ly.name for ly in viewer.layers] == names and id(out.data) == data_id
    np.testing.assert_allclose(out.data, layer.data, atol=1e-3)  # strength 0: identity
    assert np.all(sigma.data == 0) and out.metadata["pkn"]["strength"] == 0.0
    assert np.abs(qc.data).max() < 1e-3  # nothing removed: a zero residual
    assert out.metadata["pkn"]["whiteness"] != w1  # of the new residual
    assert qc.metadata["pkn"]["whiteness"] == out.metadata["pkn"]["whiteness"]
    widget.form.strength.setValue(1.0)
    wait(qtbot, widget)
    np.testing.assert_allclose(out.data, first, rtol=1e-5)
    np.testing.assert_allclose(sigma.data, s1, rtol=1e-5)
    np.testing.assert_allclose(qc.data, q1, rtol=1e-4, atol=1e-5)
    assert out.metadata["pkn"]["whiteness"] == w1 == qc.metadata["pkn"]["whiteness"]
    assert calls[0] == 1 and "no network" in widget.status.text()


def test_bad_input_notifies_and_adds_nothing(all_models, viewer_widget, qtbot, notes, monkeypatch):
    viewer, widget = viewer_widget
    monkeypatch.setattr(eng, "MAX_OUTPUT_PIXELS", 1000)
    viewer.add_labels(np.zeros((16, 16), int), name="labels")
    viewer.add_points([[1, 1]], name="points")
    viewer.add_shapes([[[0, 0], [5, 5], [0, 5]]], shape_type="polygon", name="shapes")
    assert widget.layer.count() == 0  # only Image layers are offered
    widget.run()
    assert "open one" in notes[-1].message and notes[-1].severity == "error"
    nan = viewer.add_image(np.full((16, 16), np.nan, np.float32), name="nan")
    dot = viewer.add_image(np.ones((1, 1)), name="dot")
    viewer.add_image(np.ones((3, 4, 4)), name="psf3d")
    ok = viewer.add_image(np.ones((32, 32), np.float32), name="ok")
    assert widget.layer.count() == 4
    widget.form.blur_sigma.setValue(2.0)
    cases = [  # (layer, task, PSF from a layer, what the message says)
        (nan, "denoise", False, "NaN"),
        (dot, "denoise", False, "at least 2x2"),
        (nan, "deblur", True, "PSF layer 'psf3d'"),
        (nan, "deblur", False, "NaN"),
        (ok, "upsample", False, "choose a smaller factor"),
    ]
    for layer, task, psf, hint in cases:
        notes.clear()
        n = len(viewer.layers)
        select(widget, layer, task)
        widget.form.blur_mode.setCurrentIndex(int(psf))
        widget.form.psf_layer.setCurrentText("psf3d")
        widget.run()
        wait(qtbot, widget)
        errors = [x.message for x in notes if x.severity == "error"]
        assert errors and hint in errors[-1], (hint, errors)
        assert len(viewer.layers) == n
    assert not [ly for ly in viewer.layers if "PKN" in ly.name]


def test_settings_persist_but_noise_and_strength_are_per_image(viewer_widget, qtbot):
    """Task, kernel, blur, factor and what is shown are remembered; a manual noise and a
    strength from an earlier session are not applied to new data (which gets its own
    automatic estimate and strength 1); within a session each layer keeps its own."""
    viewer, widget = viewer_widget
    rng = np.random.default_rng(1)
    viewer.add_image(rng.random((32, 32), dtype=np.float32), name="r")
    f = widget.form
    f.noise_mode.setCurrentIndex(f.noise_mode.findData("gaussian"))
    f.sigma.setValue(7.0)
    f.strength.setValue(1.7)
    f.blur_sigma.setValue(2.5)
    f.show_maps.setChecked(True)
    f.show_qc.setChecked(True)
    _settings.save(f.state())
    saved = _settings.load()
    assert saved["blur_sigma"] == 2.5 and not {"sigma", "strength", "noise_mode"} & set(saved)
    _settings.save({**saved, "noise_mode": "gaussian", "sigma": 7.0, "strength": 1.7})  # old file
    again = PKNWidget(viewer)
    assert again.form.noise_mode.currentData() == "auto"  # not the old session's 7
    assert again.form.strength.value() == 1.0
    assert again.form.blur_sigma.value() == pytest.approx(2.5)
    assert again.form.show_maps.isChecked() and again.form.show_qc.isChecked()
    again.shutdown()
    again.deleteLater()

    noisy = viewer.add_image(rng.normal(100, 35, (32, 32)).astype(np.float32), name="noisy")
    select(widget, noisy)  # a new layer: its own estimate, strength 1
    assert f.noise_mode.currentData() == "auto" and f.strength.value() == 1.0
    assert "'noisy'" in f.noise_info.text() and "std = 3" in f.noise_info.text()
    select(widget, viewer.layers["r"])  # back: what was set for "r"
    assert f.noise_mode.currentData() == "gaussian" and f.sigma.value() == 7.0
    assert f.strength.value() == pytest.approx(1.7)
    assert "using the noise you set for 'r'" in f.noise_info.text()


def test_maps_checkbox_probe_click_and_menu(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(fluorescence_sample()[1][0][:64, :64], name="cells")
    widget.form.show_maps.setChecked(False)
    widget.form.show_qc.setChecked(False)
    widget.run()
    wait(qtbot, widget)
    sigma = map_layer(viewer, "cells [PKN nlm]", "sigma")
    qc = viewer.layers["cells [PKN nlm] qc"]
    assert not sigma.visible and not qc.visible
    widget.form.show_maps.setChecked(True)
    assert sigma.visible and not qc.visible  # the QC map has its own checkbox
    widget.form.show_qc.setChecked(True)
    assert qc.visible

    widget.probe.enabled.setChecked(True)
    callback = widget.probe.on_mouse
    assert callback in viewer.mouse_drag_callbacks

    class Event:  # a click: press then release at the same place
        button, type, position = 1, "mouse_press", tuple(world(layer, (12, 34)))

    gen = callback(viewer, Event)
    next(gen)
    Event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)
    probe = viewer.layers[PROBE_NAME]
    assert probe.metadata["pkn"]["probe"]["pixel"] == [12, 34]
    widget.probe.enabled.setChecked(False)
    assert callback not in viewer.mouse_drag_callbacks

    _, plugin_widget = viewer.window.add_plugin_dock_widget("napari-pkn", "PKN restoration")
    assert isinstance(plugin_widget, PKNWidget)
    assert [widget.form.kernel.itemText(i) for i in range(widget.form.kernel.count())] == [
        e.name for e in eng.catalogue().models_for("denoise")
    ]


def bead(sigmas=(3.0, 1.2, 2.5), half=9) -> np.ndarray:
    """A z-stack of one bead (in focus where the sigma is smallest), offset 100."""
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    planes = [np.exp(-(yy**2 + xx**2) / (2 * s * s)) / s**2 for s in sigmas]
    return (np.stack(planes) * 900 + 100).astype(np.float32)


def test_deblur_with_a_psf_layer(all_models, viewer_widget, qtbot, notes):
    """The PSF list never preselects the input; a bead layer (2-D or 3-D) is imported
    (background, in-focus plane, centre, crop, sum 1) and the PSF used is shown as a
    layer with its provenance; a bad PSF is a message, never a traceback."""
    viewer, widget = viewer_widget
    model = next(e.name for e in all_models if e.task == "deblur")
    layer = viewer.add_image(fluorescence_sample()[1][0][:64, :64], name="cells")
    f = widget.form
    select(widget, layer, "deblur", model)
    f.blur_mode.setCurrentIndex(f.blur_mode.findData("psf"))
    items = [f.psf_layer.itemText(i) for i in range(f.psf_layer.count())]
    assert items == ["choose a PSF layer"]  # the input itself is never offered
    assert f.psf_name() is None and not widget.run_button.isEnabled()
    assert "choose a PSF layer" in widget.hint.text() and widget.hint.isVisibleTo(widget)
    other = viewer.add_image(fluorescence_sample()[1][0][64:128, :64], name="other")
    assert f.psf_name() is None and not widget.run_button.isEnabled()  # not PSF-like
    stack = viewer.add_image(bead(), name="bead")
    before = stack.data.copy()
    assert f.psf_name() == "bead" and widget.run_button.isEnabled()  # small and peaked
    assert not widget.hint.isVisibleTo(widget)
    select(widget, layer)
    widget.run()
    wait(qtbot, widget)
    np.testing.assert_array_equal(stack.data, before)
    meta = widget.outputs[0].metadata["pkn"]
    assert meta["psf_layer"] == "bead" and meta["blur"].startswith("psf array")
    assert meta["psf"]["plane"] == 1 and meta["psf"]["source_shape"] == [3, 19, 19]
    used = viewer.layers["PSF used (imported from bead)"]
    assert widget.psf_used is used and used.metadata["pkn"]["psf"] == meta["psf"]
    assert used.data.dtype == np.float32 and used.data.sum() == pytest.approx(1, abs=1e-5)
    assert used.data.shape[0] == used.data.shape[1] and used.data.shape[0] % 2 == 1
    added = napari_pkn.restore_layer(viewer, "cells", "deblur", blur=stack, maps=False)
    assert added[0] is viewer.layers[f"cells [PKN {model}]"] and not added[1].visible
    assert added[0].metadata["pkn"]["psf"] == meta["psf"]

    f.psf_layer.setCurrentText("other")  # chosen by hand: not a PSF
    notes.clear()
    n = len(viewer.layers)
    widget.run()
    wait(qtbot, widget)
    errors = [x.message for x in notes if x.severity == "error"]
    assert errors and "PSF layer 'other'" in errors[-1] and len(viewer.layers) == n
    assert "PSF layer 'other'" in widget.status.text()
    assert all(type(x).__name__ != "ErrorNotification" for x in notes)  # no traceback
    select(widget, other)  # "other" is now the input: no longer offered as its PSF
    assert "other" not in [f.psf_layer.itemText(i) for i in range(f.psf_layer.count())]


def test_main_job_runs_the_samples_model_and_shows_every_map(make_napari_viewer, qtbot):
    """``python -m napari_pkn._launch --run``: whatever kernel the user last chose, the demo
    restores the fluorescence sample with the NLM model trained for fluorescence (so no
    model hint is shown) and lays out all its maps."""
    from napari_pkn._launch import arrange, grid_of, open_viewer
    from napari_pkn._qt import _settings

    _settings.save({"task": "deblur", "kernel": "bilateral", "show_maps": False})
    viewer, widget = open_viewer(run=True, viewer=make_napari_viewer())
    wait(qtbot, widget)
    assert widget.form.task.currentData() == "denoise"
    assert widget.form.kernel.currentData() == "nlm-fluo"
    assert not widget.form.model_hint.isVisibleTo(widget)
    assert widget.form.show_maps.isChecked()
    arrange(viewer)
    names = [ly.name for ly in viewer.layers]
    assert names[-1] == "fluorescence (clean reference)"
    assert any("] sigma (intensity)" in n for n in names)
    assert any("] spatial_sigma (px" in n for n in names)
    assert viewer.layers[next(n for n in names if n.endswith("] qc"))].visible
    grid = grid_of(viewer)
    assert grid.enabled and tuple(grid.shape) == (3, 2)


# ------------------------------------------------------------ QC map and Auto strength


def test_qc_layer_and_whiteness_line(viewer_widget, qtbot):
    """Denoising adds the QC layer: (input - result) / noise std on the input's grid, a
    diverging colormap on (-4, 4), units "noise std", hidden unless "show QC" is ticked;
    the widget shows the residual's whiteness in one line."""
    viewer, widget = viewer_widget
    data = fluorescence_sample()[1][0][64:128, 64:128]
    layer = viewer.add_image(data, name="cells", **GEOMETRY)
    f = widget.form
    f.noise_mode.setCurrentIndex(f.noise_mode.findData("gaussian"))
    f.sigma.setValue(7.0)
    f.show_qc.setChecked(True)
    assert f.auto.isVisibleTo(widget) and f.show_qc.isVisibleTo(widget)
    widget.run()
    wait(qtbot, widget)
    out, qc = viewer.layers["cells [PKN nlm]"], viewer.layers["cells [PKN nlm] qc"]
    assert qc is widget.outputs[-1] and qc.visible
    assert qc.data.shape == data.shape
    np.testing.assert_allclose(qc.scale, layer.scale)
    np.testing.assert_allclose(qc.translate, layer.translate)
    for ij in [(0, 0), (17, 40)]:
        np.testing.assert_allclose(world(qc, ij), world(out, ij))
    residual = (data.astype(np.float64) - out.data) / 7.0
    np.testing.assert_allclose(qc.data, residual, rtol=1e-3, atol=1e-3)  # float16
    assert qc.colormap.name == "coolwarm" and tuple(qc.contrast_limits) == (-4.0, 4.0)
    assert qc.metadata["pkn"]["units"] == "noise std"
    score = out.metadata["pkn"]["whiteness"]["score"]
    text = widget.qc_info.text()
    assert widget.qc_info.isVisibleTo(widget)
    assert f"residual neighbour correlation {score:.2f}" in text and "white noise" in text

    select(widget, layer, "upsample")  # no QC for other tasks
    assert not f.auto.isVisibleTo(widget) and not f.show_qc.isVisibleTo(widget)
    widget.run()
    wait(qtbot, widget)
    assert widget.outputs[0].metadata["pkn"]["task"] == "upsample"
    assert all("qc" not in ly.metadata["pkn"] for ly in widget.outputs)
    assert not widget.qc_info.isVisibleTo(widget)


def test_auto_button_sets_the_sure_strength(viewer_widget, qtbot, monkeypatch):
    """Auto: Restorer.auto_strength() on the plane shown, set on the slider, every plane
    re-filtered (no network), strength_auto in the provenance until the slider moves."""
    import pkn
    from pkn.restoration import Restorer

    viewer = viewer_widget[0]  # the widget as napari makes it (layers seen through proxies)
    _, widget = viewer.window.add_plugin_dock_widget("napari-pkn", "PKN restoration")
    calls = count_network(monkeypatch)
    noisy = fluorescence_sample()[1][0]
    stack = np.stack([noisy[:64, :64], noisy[100:164, 120:184]])
    layer = viewer.add_image(stack, name="t")
    widget.run()
    wait(qtbot, widget)
    assert calls[0] == 2
    viewer.dims.set_current_step(0, 1)  # look at plane 1
    widget.form.auto.click()
    assert widget.busy
    wait(qtbot, widget)
    assert calls[0] == 2, "Auto re-uses the maps: no network"
    # one noise model and one normalisation for the stack, as pkn.restore(stack)
    norm = pkn.restore(stack).info["normalisation"]
    kw = {"noise": pkn.calibrate(stack), "normalisation": (norm["offset"], norm["scale"])}
    expected, _ = Restorer(stack[1], "denoise", **kw).auto_strength()
    assert widget.form.strength.value() == pytest.approx(expected)
    out = widget.outputs[0]
    meta = out.metadata["pkn"]
    assert meta["strength"] == pytest.approx(expected) and meta["strength_auto"]["plane"] == [1]
    assert all(ly.metadata["pkn"].get("strength_auto") for ly in widget.outputs)
    fixed = Restorer(stack[0], "denoise", **kw).render(expected).image
    np.testing.assert_allclose(out.data[0], fixed, rtol=1e-4, atol=1e-3)
    assert "SURE" in widget.status.text()
    widget.form.strength.setValue(0.5)  # by hand: no longer the automatic choice
    wait(qtbot, widget)
    assert "strength_auto" not in out.metadata["pkn"] and meta is out.metadata["pkn"]
    assert out.metadata["pkn"]["strength"] == 0.5 and layer.data is stack


def test_auto_before_any_run_restores_with_it(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    data = fluorescence_sample()[1][0][:64, :64]
    viewer.add_image(data, name="cells")
    widget.form.auto.click()
    wait(qtbot, widget)
    from pkn.restoration import Restorer

    expected, _ = Restorer(data, "denoise").auto_strength()
    meta = viewer.layers["cells [PKN nlm]"].metadata["pkn"]
    assert meta["strength"] == pytest.approx(expected) and "strength_auto" in meta
    assert widget.form.strength.value() == pytest.approx(expected)
    assert "chosen by SURE" in widget.status.text()


def test_a_strength_above_the_slider_range_widens_it(viewer_widget):
    _, widget = viewer_widget
    f = widget.form
    f.set_strength(4.3)  # SURE may choose more than the usual maximum
    assert f.strength.value() == pytest.approx(4.3) and f.strength.maximum() == 5.0
    f.set_strength(5.5)
    assert f.strength.value() == pytest.approx(5.5) and f.strength.maximum() == 6.0


def test_signal_dependent_noise_suggests_the_fluorescence_model(viewer_widget):
    """A microscope-like layer (Poisson-Gaussian noise estimated) with a model trained for
    photographs gets a one-line suggestion; choosing the suggested model, or a layer with
    white Gaussian noise, hides it."""
    viewer, widget = viewer_widget
    f = widget.form
    rng = np.random.default_rng(0)
    clean = np.kron(rng.uniform(5, 200, (8, 8)), np.ones((16, 16)))  # bright and dark blocks
    counts = rng.poisson(clean).astype(np.float32)  # photon noise: variance = intensity
    micro = viewer.add_image(counts, name="micro")
    select(widget, micro, task="denoise", model="nlm")
    assert "Poisson-Gaussian" in f.noise_info.text()
    assert f.model_hint.isVisibleTo(widget)
    assert "anisotropic-fluo" in f.model_hint.text()
    select(widget, model="anisotropic-fluo")
    assert not f.model_hint.isVisibleTo(widget)
    select(widget, model="nlm")
    assert f.model_hint.isVisibleTo(widget)
    photo = viewer.add_image((clean + rng.normal(0, 10, clean.shape)).astype(np.float32), name="p")
    select(widget, photo)
    assert "Gaussian," in f.noise_info.text() and not f.model_hint.isVisibleTo(widget)
