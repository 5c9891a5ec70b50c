"""pkn.restore on dask and zarr arrays: lazy results equal to the in-memory ones."""

import threading

import dask
import dask.array as da
import numpy as np
import pytest
import torch
import zarr

import pkn
import pkn._lazy as L
from pkn.samples import natural


def _img(h=201, w=233, seed=0):
    noisy, _ = natural(0.08, seed=seed)
    return noisy[100 : 100 + h, 50 : 50 + w].astype(np.float32)


def _same(lazy, eager, tol=1e-5):
    """Lazy result computed (image, maps and QC together) equals the eager one."""
    assert isinstance(lazy.image, da.Array) and lazy.image.shape == eager.image.shape
    assert all(isinstance(m, da.Array) for m in lazy.maps.values())
    im, qc, *ms = dask.compute(lazy.image, lazy.qc, *lazy.maps.values())
    assert im.dtype == eager.image.dtype
    span = float(np.ptp(eager.image))
    assert np.abs(im.astype(np.float64) - eager.image).max() <= tol * span
    for (k, m), got in zip(eager.maps.items(), ms, strict=True):
        assert got.shape == m.shape, k
        assert np.abs(got - m).max() <= tol * max(float(np.abs(m).max()), 1e-12), k
    if eager.qc is not None:
        np.testing.assert_allclose(qc, eager.qc, atol=1e-3)


CASES = {
    "gray-odd": (lambda: _img(), 64, {}),
    "gray-odd-chunks": (lambda: _img(), (50, 90), {"noise": (0.01, 0.001)}),
    "uint16": (lambda: (np.clip(_img(), 0, 1) * 4000 + 100).astype(np.uint16), (100, 70), {}),
    "colour": (
        lambda: np.stack([_img(), _img(seed=1), _img(seed=2)], -1),
        (64, 64, 1),  # the channel axis is rechunked to one chunk
        {"channel_axis": -1},
    ),
    "stack": (lambda: np.stack([_img(150, 170), _img(150, 170, seed=3)]), (1, 64, 64), {}),
    "deblur": (lambda: _img(), 64, {"task": "deblur", "blur": 1.5, "noise": 0.02}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dask_result_equals_the_in_memory_result_seams_included(case):
    make, chunks, kw = CASES[case]
    x = make()
    eager = pkn.restore(x, **kw)
    lazy = pkn.restore(da.from_array(x, chunks=chunks), **kw)
    assert lazy.info["noise"] == eager.info["noise"]
    assert lazy.info["normalisation"] == eager.info["normalisation"]
    assert lazy.info["lazy"]["calibrated_on"] == "the whole array"
    assert lazy.info["lazy"]["halo"] % 8 == 0
    _same(lazy, eager)


def test_upsampling_a_dask_stack_processes_whole_planes():
    x = np.stack([_img(64, 80), _img(64, 80, seed=1)])
    eager = pkn.restore(x, "upsample", scale=1.5)
    lazy = pkn.restore(da.from_array(x, chunks=(1, 32, 32)), "upsample", scale=1.5)
    assert lazy.image.shape == (2, 96, 120) and lazy.info["lazy"]["halo"] == 0
    _same(lazy, eager)


class _Counting:
    """An array-like that counts the pixels read from it."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.ndim, self.read = a, a.shape, a.dtype, a.ndim, 0

    def __getitem__(self, key):
        out = self.a[key]
        self.read += out.size
        return out


def test_nothing_is_computed_but_a_bounded_sample(monkeypatch):
    x = np.stack([_img(256, 256, seed=s) for s in range(4)])  # 4 planes, 16 chunks
    src = _Counting(x)
    import pkn._input as I

    monkeypatch.setattr(L, "SAMPLE_BYTES", 2 * 128 * 128 * 4)  # two chunks
    monkeypatch.setattr(I, "CAL_PIXELS", 128 * 128)  # a "big" stack: calibrated on crops
    r = pkn.restore(da.from_array(src, chunks=(1, 128, 128)), noise=0.08)
    # one 256 x 256 calibration crop (normalisation), two chunks with their halos (up to
    # 3 x 3 chunks read) for the whiteness
    assert src.read <= 256 * 256 + 2 * 9 * 128 * 128
    assert "1 crops" in r.info["lazy"]["calibrated_on"]
    assert "2 of 16 chunks" in r.info["whiteness"]["estimated_from"]
    before = src.read
    im = r.image.compute()
    assert src.read > before + x.size  # the per-plane means, then every chunk with its halo
    # the in-memory rules on the same crops: the same result
    ref = pkn.restore(x, noise=0.08).image
    np.testing.assert_allclose(im, ref, rtol=0, atol=1e-5 * float(np.ptp(ref)))


def test_zarr_arrays_are_read_lazily(tmp_path):
    x = (np.clip(_img(), 0, 1) * 4000).astype(np.uint16)
    z = zarr.open_array(tmp_path / "a.zarr", mode="w", shape=x.shape, chunks=(64, 64), dtype="u2")
    z[:] = x
    r = pkn.restore(zarr.open_array(tmp_path / "a.zarr", mode="r"))
    assert isinstance(r.image, da.Array)
    _same(r, pkn.restore(x))


def test_chunks_run_with_one_torch_thread_each_and_the_count_comes_back():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen, inside = [], threading.Barrier(2)

        def chunk():
            with L._chunk_threads():
                inside.wait()  # both chunks inside at once
                seen.append(torch.get_num_threads())
                inside.wait()

        ts = [threading.Thread(target=chunk) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_threaded_scheduler_gives_the_synchronous_result():
    x = _img()
    r = pkn.restore(da.from_array(x, chunks=64), noise=0.08)
    a = r.image.compute(scheduler="threads", num_workers=2)
    b = r.image.compute(scheduler="synchronous")
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"per_plane": True}, "per_plane=True is not available for dask"),
        ({"strength": "auto"}, "strength='auto' is not available for dask"),
        ({"strength": True}, "strength must be a finite number"),
        ({"scale": 2.0}, "scale=2.0 is only used for upsampling"),
    ],
)
def test_lazy_refusals_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        pkn.restore(da.zeros((32, 32), np.float32, chunks=16), **kw)


def test_restorer_refuses_lazy_input_and_says_what_to_do():
    with pytest.raises(TypeError, match=r"use pkn\.restore"):
        pkn.Restorer(da.zeros((32, 32), np.float32))


def test_planes_smaller_than_the_halo_work_lazily():
    """A 48 x 40 plane is smaller than the halo (56 px): one chunk per plane, no halo,
    the in-memory result."""
    rng = np.random.default_rng(3)
    x = (0.5 + 0.1 * rng.standard_normal((2, 48, 40))).astype(np.float32)
    lazy = pkn.restore(da.from_array(x, chunks=(1, 48, 40)), noise=0.1)
    ref = pkn.restore(x, noise=0.1)
    np.testing.assert_allclose(lazy.image.compute(), ref.image, atol=1e-5)


def test_psf_arrays_and_objects_deblur_lazily_as_in_memory():
    """A PSF goes through the same check and normalisation lazily as in memory: an
    unnormalised array and an imported PSF give the in-memory result and provenance."""
    from pkn.training.degrade import gaussian_psf

    x = _img()
    psf = 3.0 * gaussian_psf(1.2).numpy()  # sums to 3: normalised by check_psf
    for blur in (psf, pkn.import_psf(np.pad(psf, 4))):
        kw = {"task": "deblur", "blur": blur, "noise": 0.02}
        lazy, eager = pkn.restore(da.from_array(x, chunks=64), **kw), pkn.restore(x, **kw)
        _same(lazy, eager)
        assert lazy.info["blur"] == eager.info["blur"]
        assert ("psf" in lazy.info) == ("psf" in eager.info) == (not isinstance(blur, np.ndarray))
