"""Sample data contributed to napari's File > Open Sample menu."""

from __future__ import annotations

import numpy as np
from napari.components import ViewerModel

from napari_pkn._sample_data import fluorescence_sample, natural_sample


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
