"""Stacks and big data in the PKN widget (issue #12 item 7; run under Xvfb).

A stack gets one noise model pooled over its planes (per plane only when asked); an
in-memory stack's outputs plus caches stay within 3x the input's bytes; a dask-backed
layer is never read whole: the plane shown is previewed (following the slider), and
"All planes" computes the stack chunk by chunk, into memory or into OME-Zarr files that
are then shown lazily.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from widget_helpers import wait

import pkn
import pkn._lazy
from napari_pkn._stacks import memory_budget, noise_argument, sample_planes
from pkn.restoration import Restorer

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("settings_in_tmp")]

TIMEOUT = 60_000


def select(widget, layer=None, model=None):
    if layer is not None:
        widget.layer.setCurrentText(layer.name)
    if model is not None:
        widget.form.kernel.setCurrentIndex(widget.form.kernel.findData(model))


def noisy_stack(n=10, size=128, seed=0) -> np.ndarray:
    """A smooth scene under white noise whose sigma alternates 0.03 / 0.06 between planes
    (what per-plane estimates of one camera's planes scatter like)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    scene = 0.5 + 0.2 * np.sin(6 * xx) * np.cos(4 * yy)
    sig = np.where(np.arange(n) % 2 == 0, 0.03, 0.06)[:, None, None]
    return (scene + sig * rng.standard_normal((n, size, size))).astype(np.float32)


# ------------------------------------------------------------------ one noise model


def test_a_stack_gets_one_noise_model_unless_asked(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    stack = noisy_stack()
    layer = viewer.add_image(stack, name="z")
    select(widget, layer)
    assert widget.form.per_plane.isVisibleTo(widget) and not widget.form.per_plane.isChecked()
    assert "one model for 10 planes" in widget.form.noise_info.text()
    widget.run()
    wait(qtbot, widget)
    job = widget.job
    pooled = pkn.noise.calibrate(stack)  # all planes pooled
    want = pooled.std_at_mean if pooled.kind == "awgn" else (pooled.a, pooled.b)
    (arg,) = job.noise.argument  # the stack's NoiseModel, given to every plane
    assert (arg.a, arg.b) == pytest.approx((pooled.a, pooled.b), rel=1e-6)
    used = [r.noise_info for r in job.restorers.values()]
    assert len(used) == 10
    for u in used:  # every plane's Restorer got that one model, correlation included
        got = u["sigma"][0] if u["model"] == "awgn" else (u["a"][0], u["b"][0])
        assert got == pytest.approx(want, rel=1e-6)
        assert u["correlation"] == [np.round(pooled.correlation, 4).tolist()]
    meta = widget.outputs[0].metadata["pkn"]
    assert meta["noise"]["scope"] == "stack" and meta["noise"]["planes"] == 10
    assert "one model for 10 planes" in widget.status.text()

    widget.form.per_plane.setChecked(True)  # asked: each plane its own
    assert "one model per plane" in widget.form.noise_info.text()
    widget.run()
    wait(qtbot, widget)
    sig = [float(np.mean(r.noise_info["sigma"])) for r in widget.job.restorers.values()]
    assert sig[1] / sig[0] == pytest.approx(2.0, rel=0.15)  # the planes' own noise
    assert len(widget.outputs[0].metadata["pkn"]["noise_per_plane"]) == 10


# ------------------------------------------------------------------------- memory


def _held_bytes(obj, seen_mem: set, skip, depth=0) -> int:
    """Bytes of the numpy arrays and torch tensors reachable from ``obj`` (attributes,
    dicts, lists; network modules included), each memory block counted once, nothing
    that shares memory with ``skip`` (the input)."""
    if depth > 8:
        return 0
    if isinstance(obj, np.ndarray):
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        if np.shares_memory(base, skip):
            return 0
        key = ("np", base.__array_interface__["data"][0])
        if key in seen_mem:
            return 0
        seen_mem.add(key)
        return int(base.nbytes)
    if isinstance(obj, torch.Tensor):
        st = obj.untyped_storage()
        key = ("torch", st.data_ptr())
        if key in seen_mem or obj.numel() == 0:
            return 0
        if obj.device.type == "cpu" and np.shares_memory(obj.detach().numpy(), skip):
            return 0
        seen_mem.add(key)
        return int(st.nbytes())
    if isinstance(obj, torch.nn.Module):
        return sum(_held_bytes(t, seen_mem, skip, depth + 1) for t in obj.state_dict().values())
    if isinstance(obj, dict):
        return sum(_held_bytes(v, seen_mem, skip, depth + 1) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_held_bytes(v, seen_mem, skip, depth + 1) for v in obj)
    if hasattr(obj, "__dict__") and type(obj).__module__.startswith("pkn"):
        return sum(_held_bytes(v, seen_mem, skip, depth + 1) for v in vars(obj).values())
    return 0


@pytest.mark.parametrize("model", ["nlm", "anisotropic"])
def test_outputs_and_cache_stay_within_3x_the_input(viewer_widget, qtbot, model):
    """float32 10 x 128 x 128: the result layers (image, half-resolution maps and QC in
    float16, glyphs) and what the restorers keep (cached float32 maps, the one network)
    at most 3x the input's bytes; maps stay at half resolution (scale 2, translate 0.5),
    not upsampled copies."""
    viewer, widget = viewer_widget
    stack = noisy_stack()
    layer = viewer.add_image(stack, name="z", scale=(2.0, 0.5, 0.5))
    select(widget, layer, model)
    widget.form.show_maps.setChecked(True)
    widget.run()
    wait(qtbot, widget)
    job, outputs = widget.job, widget.outputs
    seen: set = set()
    out_bytes = sum(_held_bytes(np.asarray(ly.data), seen, stack) for ly in outputs)
    out_bytes += sum(  # the glyphs' features (a table)
        int(ly.features.memory_usage(index=False).sum())
        for ly in outputs
        if ly._type_string == "vectors"
    )
    cache = sum(_held_bytes(r, seen, stack) for r in job.restorers.values())
    ratio = (out_bytes + cache) / stack.nbytes
    print(f"{model}: outputs {out_bytes / stack.nbytes:.3f}x + cache {cache / stack.nbytes:.3f}x")
    assert ratio <= 3.0, (out_bytes, cache, stack.nbytes)
    for ly in outputs[1:]:
        if ly.metadata["pkn"].get("parameter") in job.kernel.param_names:
            assert ly.data.shape == (10, 64, 64) and ly.data.dtype == np.float16
            np.testing.assert_allclose(ly.scale, (2.0, 1.0, 1.0))
            np.testing.assert_allclose(ly.translate, (0.0, 0.25, 0.25))  # 0.5 input px


# --------------------------------------------------------------------- dask layers


class Planes:
    """A dask stack read plane by plane, counting reads; it refuses to read more than
    ``limit`` distinct planes (a stand-in for a stack that does not fit in memory)."""

    def __init__(self, data: np.ndarray, limit: int):
        import dask
        import dask.array as da

        self.data, self.limit, self.reads = data, limit, {}
        self.worker_reads: dict = {}  # reads off the main thread (PKN's, not the display's)
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None  # set: reads wait for it
        planes = [
            da.from_delayed(dask.delayed(self.read)(i), data.shape[1:], data.dtype)
            for i in range(len(data))
        ]
        self.array = da.stack(planes)

    def read(self, i: int) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(10)
        with self.lock:
            if i not in self.reads and len(self.reads) >= self.limit:
                raise MemoryError(f"plane {i}: more than {self.limit} planes read")
            self.reads[i] = self.reads.get(i, 0) + 1
            if threading.current_thread() is not threading.main_thread():
                self.worker_reads[i] = self.worker_reads.get(i, 0) + 1
        return self.data[i].copy()


def test_a_dask_layer_is_previewed_plane_by_plane(viewer_widget, qtbot, monkeypatch, notes):
    viewer, widget = viewer_widget
    stack = noisy_stack(12, 64)
    plane_bytes = stack[0].nbytes
    monkeypatch.setattr(pkn._lazy, "SAMPLE_BYTES", 3 * plane_bytes)  # noise: 3 planes
    src = Planes(stack, limit=6)  # reading the whole stack would raise
    layer = viewer.add_image(src.array, name="big", contrast_limits=(0.0, 1.0))
    viewer.dims.set_current_step(0, 5)
    select(widget, layer)
    widget.run()
    wait(qtbot, widget)
    assert not [n for n in notes if "more than" in str(n.message)]
    job = widget.job
    assert job.preview == (5,) and job.image.shape == (1, 64, 64)
    assert job.noise.sampled == sample_planes(12, plane_bytes, 3 * plane_bytes) == [0, 6, 11]
    assert "estimated on 3 planes" in widget.status.text()
    assert len(src.reads) <= 5 and 5 in src.reads  # the sample, the plane shown (and napari)
    out = widget.outputs[0]
    np.testing.assert_allclose(out.translate, (5.0, 0.0, 0.0))
    r = Restorer(stack[5], noise=job.noise.argument, normalisation=job.noise.normalisation)
    np.testing.assert_allclose(out.data[0], r.render(1.0).image, rtol=1e-5, atol=1e-5)
    assert widget.all_button.isVisibleTo(widget)

    viewer.dims.set_current_step(0, 8)  # the preview follows the slider
    wait(qtbot, widget)
    assert widget.job.preview == (8,) and widget.outputs[0] is out  # same layer, in place
    np.testing.assert_allclose(out.translate, (8.0, 0.0, 0.0))
    r = Restorer(stack[8], noise=job.noise.argument, normalisation=job.noise.normalisation)
    np.testing.assert_allclose(out.data[0], r.render(1.0).image, rtol=1e-5, atol=1e-5)
    assert len(src.reads) <= 6 and 8 in src.reads
    assert widget.job.noise is job.noise  # estimated once for the layer

    widget.form.strength.setValue(0.5)  # the strength re-renders the plane shown
    wait(qtbot, widget)
    np.testing.assert_allclose(out.data[0], r.render(0.5).image, rtol=1e-5, atol=1e-5)


def _all_planes(viewer, widget, qtbot, tmp_path, budget, limit=99):
    stack = noisy_stack(6, 64)
    src = Planes(stack, limit=limit)
    layer = viewer.add_image(src.array, name="big", contrast_limits=(0.0, 1.0))
    select(widget, layer)
    widget.form.show_maps.setChecked(True)
    widget.run()
    wait(qtbot, widget)
    preview = widget.job
    src.worker_reads.clear()
    widget.restore_all(path=tmp_path / "big_pkn.ome.zarr", budget=budget)
    wait(qtbot, widget)
    # every plane read twice: pkn.restore's calibration (the whole array, as it is under
    # pkn._lazy.SAMPLE_BYTES) and the one pass that computes all outputs; the first and
    # last once more (the residual's whiteness, from pkn._lazy.WHITENESS_CHUNKS chunks)
    reads = src.worker_reads
    assert set(reads) == set(range(len(stack)))
    assert sum(reads.values()) <= 2 * len(stack) + pkn._lazy.WHITENESS_CHUNKS, reads
    return stack, src, preview, widget.all_planes["big"]


def test_all_planes_in_memory_when_it_fits(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    stack, src, preview, layers = _all_planes(viewer, widget, qtbot, tmp_path, 10**12)
    image, sigma = layers[0], layers[1]
    assert image.name == "big [PKN nlm] all planes" and image.data.shape == stack.shape
    assert isinstance(image.data, np.ndarray) and not (tmp_path / "big_pkn.ome.zarr").exists()
    lazy = pkn.restore(src.array, noise=preview.noise.argument, strength=1.0)
    np.testing.assert_allclose(image.data, lazy.image.compute(), rtol=1e-6, atol=1e-6)
    assert sigma.data.shape == (6, 32, 32)
    np.testing.assert_allclose(sigma.translate, (0.0, 0.5, 0.5))
    assert preview.image.shape == (1, 64, 64)  # the preview is still one plane


def test_all_planes_to_ome_zarr_when_it_does_not_fit(viewer_widget, qtbot, tmp_path):
    import dask.array as da

    viewer, widget = viewer_widget
    _, src, preview, layers = _all_planes(viewer, widget, qtbot, tmp_path, budget=0)
    image, sigma = layers[0], layers[1]
    assert (tmp_path / "big_pkn.ome.zarr").is_dir()
    assert (tmp_path / "big_pkn_sigma.ome.zarr").is_dir()
    assert isinstance(image.data, da.Array) and isinstance(sigma.data, da.Array)  # lazy
    lazy = pkn.restore(src.array, noise=preview.noise.argument, strength=1.0)
    np.testing.assert_allclose(image.data.compute(), lazy.image.compute(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sigma.data.compute(), lazy.maps["sigma"].compute(), rtol=1e-6)
    assert sigma.data.shape == (6, 32, 32)
    np.testing.assert_allclose(sigma.scale, (1.0, 2.0, 2.0))
    assert "read lazily" in widget.status.text()


def test_all_planes_cancel_adds_nothing(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    stack = noisy_stack(6, 64)
    src = Planes(stack, limit=99)
    layer = viewer.add_image(src.array, name="big", contrast_limits=(0.0, 1.0))
    select(widget, layer)
    widget.run()
    wait(qtbot, widget)
    n = len(viewer.layers)
    src.gate = gate = threading.Event()  # hold the computation until Cancel is pressed
    widget.restore_all(budget=10**12)
    assert widget.busy
    widget.cancel()
    gate.set()
    wait(qtbot, widget)
    assert len(viewer.layers) == n and "big" not in widget.all_planes
    assert "cancelled" in widget.status.text()


def test_memory_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv("PKN_NAPARI_MEMORY_BUDGET", "12345")
    assert memory_budget() == 12345
    monkeypatch.setenv("PKN_NAPARI_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="PKN_NAPARI_MEMORY_BUDGET='lots'"):
        memory_budget()
    monkeypatch.delenv("PKN_NAPARI_MEMORY_BUDGET")
    assert memory_budget() > 0


def test_noise_argument_refuses_several_channels():
    assert noise_argument({"model": "awgn", "sigma": [0.1]}) == 0.1
    with pytest.raises(ValueError, match="3 channels"):
        noise_argument({"model": "awgn", "sigma": [0.1, 0.2, 0.3]})


@pytest.mark.parametrize("big", [False, True])
def test_stack_planes_equal_the_whole_stack_restore(viewer_widget, qtbot, monkeypatch, big):
    """Each plane's Restorer gets the stack's noise models and normalisation: the layer
    equals ``pkn.restore(stack)`` (one model, one normalisation per stack), also for a
    stack big enough to be calibrated on crops."""
    if big:
        import pkn._input as pkn_input

        monkeypatch.setattr(pkn_input, "CAL_PIXELS", 2**14)
    viewer, widget = viewer_widget
    stack = noisy_stack()
    layer = viewer.add_image(stack, name="z")
    select(widget, layer)
    widget.run()
    wait(qtbot, widget)
    ref = pkn.restore(stack)
    out = np.asarray(widget.outputs[0].data)
    assert out.shape == ref.image.shape
    span = float(ref.image.max() - ref.image.min())
    np.testing.assert_allclose(out, ref.image, rtol=0, atol=1e-5 * span)
