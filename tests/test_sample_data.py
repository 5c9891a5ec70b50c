"""Sample data contributed to napari's File > Open Sample menu."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_pkn._sample_data import (
    bacteria16_sample,
    bead_psf_sample,
    fluorescence_sample,
    natural_sample,
    volume_sample,
)


@pytest.fixture(autouse=True, scope="module")
def _plugins(napari_plugins):
    """npe2 discovers the installed plugins (napari does this at start-up)."""


def test_fluorescence_sample():
    clean, noisy = fluorescence_sample()
    assert clean[2] == noisy[2] == "image"
    assert noisy[0].shape == clean[0].shape == (256, 256) and noisy[0].dtype == np.uint8
    assert clean[1]["visible"] is False and "visible" not in noisy[1]
    assert noisy[1]["metadata"]["role"] == "noisy"
    assert not np.array_equal(clean[0], noisy[0])


def test_natural_sample():
    clean, noisy = natural_sample(0.05)
    assert noisy[0].shape == (512, 512) and noisy[0].dtype == np.float32
    assert np.std(noisy[0] - clean[0]) == __import__("pytest").approx(0.05, rel=0.05)
    assert noisy[1]["name"] == "camera (noisy, sigma 0.05)"


def test_open_sample_through_napari():
    viewer = ViewerModel()
    viewer.open_sample("napari-pkn", "fluorescence")
    viewer.open_sample("napari-pkn", "natural")
    names = [ly.name for ly in viewer.layers]
    assert names == [
        "fluorescence (clean reference)",
        "fluorescence (noisy)",
        "camera (clean reference)",
        "camera (noisy, sigma 0.08)",
    ]
    assert viewer.layers.selection.active.name == "camera (noisy, sigma 0.08)"


def test_bacteria16_sample_keeps_16_bits_and_offset():
    target, noisy = bacteria16_sample()
    assert noisy[0].dtype == target[0].dtype == np.uint16 and noisy[0].shape == (512, 512)
    assert 100 < noisy[0].min() < 130 and noisy[0].max() > 2000  # the camera offset is kept
    assert target[1]["visible"] is False and noisy[1]["metadata"]["pixel_size"] == "unknown"


def test_volume_sample_is_a_lossless_stack():
    ((data, meta, kind),) = volume_sample()
    assert kind == "image" and data.shape == (3, 256, 256) and data.dtype == np.uint8
    assert 2 <= data.min() and data.max() <= 255 and meta["name"] == "volume (noisy z-stack)"


def test_bead_psf_sample_imports_the_psf():
    from pkn.psf import check_psf

    raw, psf, clean, blurred = bead_psf_sample()
    assert raw[0].shape == (21, 64, 64) and raw[0].dtype == np.uint16
    assert raw[1]["scale"] == (0.1, 0.1, 0.1) and psf[1]["scale"] == (0.1, 0.1)
    k = psf[0]
    assert k.dtype == np.float32 and k.shape[0] % 2 == 1 and abs(float(k.sum()) - 1) < 1e-5
    assert np.unravel_index(int(k.argmax()), k.shape) == (k.shape[0] // 2,) * 2
    np.testing.assert_array_equal(check_psf(k), k / k.sum())
    info = psf[1]["metadata"]["psf"]
    assert info["shift"] == [7, 0] and info["plane"] == 10 and info["info"]["check"] == "passed"
    assert blurred[0].shape == clean[0].shape == (256, 256) and blurred[0].dtype == np.float32
    # blurred = the clean image convolved with the PSF (pkn's own convolution) + the
    # stated Poisson-Gaussian noise: the residual's variance matches a * mean + b
    import torch

    from pkn.training.degrade import convolve

    ref = convolve(torch.from_numpy(clean[0])[None, None], torch.from_numpy(k))[0, 0].numpy()
    a, b = blurred[1]["metadata"]["noise"]["variance"]
    var = float(np.var(blurred[0] - ref))
    assert var == pytest.approx(a * float(ref.mean()) + b, rel=0.1)


def test_new_samples_through_napari():
    viewer = ViewerModel()
    for key in ("bacteria16", "volume", "bead_psf"):
        viewer.open_sample("napari-pkn", key)
    names = [ly.name for ly in viewer.layers]
    assert names == [
        "bacteria16 (averaged target)",
        "bacteria16 (noisy, 16-bit with offset)",
        "volume (noisy z-stack)",
        "bead (raw stack)",
        "bead PSF (imported)",
        "bead target (clean reference)",
        "bead target (blurred + noise)",
    ]
    assert tuple(viewer.layers["bead PSF (imported)"].scale) == (0.1, 0.1)
    assert viewer.layers.selection.active.name == "bead target (blurred + noise)"


def test_shipped_sample_files_are_small():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "resources" / "samples"
    new = ["bacteria16_noisy.png", "bacteria16_target.png", "volume_3x256x256.tif"]
    new.append("bead_psf_21x64x64.tif")
    assert sum((folder / f).stat().st_size for f in new) < 3_000_000
