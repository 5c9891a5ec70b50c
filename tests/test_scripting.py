"""``napari_pkn.restore_layer``: synchronous restoration from scripts (no Qt needed)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

import napari_pkn
from pkn.samples import fluorescence


@pytest.fixture
def viewer():
    return ViewerModel()


@pytest.fixture(scope="module")
def cells():
    return fluorescence()[0][32:96, 40:104]


def test_restore_layer_adds_and_returns_layers(viewer, cells):
    layer = viewer.add_image(cells, name="cells", scale=(0.2, 0.2), units=("um", "um"))
    before = cells.copy()
    added = napari_pkn.restore_layer(viewer, layer, "denoise", "nlm", noise=6.0, strength=0.8)
    out, sigma, spatial = added  # nlm: signal sigma and spatial sigma maps
    assert [ly.name for ly in viewer.layers] == [
        "cells",
        "cells [PKN nlm]",
        out.name + " sigma",
        out.name + " spatial_sigma",
    ]
    assert spatial.data.shape == (32, 32)
    assert spatial.metadata["pkn"]["parameter"] == "spatial_sigma"
    np.testing.assert_array_equal(layer.data, before)
    assert out.data.shape == cells.shape and sigma.data.shape == (32, 32)
    np.testing.assert_allclose(sigma.scale, (0.4, 0.4))
    np.testing.assert_allclose(sigma.translate, (0.1, 0.1))
    meta = out.metadata["pkn"]
    assert meta["noise"] == {"model": "awgn", "sigma": 6.0, "estimated": False}
    assert meta["strength"] == 0.8 and meta["input_layer"] == "cells"
    assert sigma.metadata["pkn"]["parameter"] == "sigma"
    # by name, maps hidden; re-running replaces the layers in place instead of piling up
    again = napari_pkn.restore_layer(viewer, "cells", kernel="nlm", maps=False)
    assert len(viewer.layers) == 4 and viewer.layers[1] is again[0]
    assert not again[1].visible and again[0].metadata["pkn"]["noise"]["estimated"]


def test_geometry_follows_rotation_and_shear(viewer, cells):
    layer = viewer.add_image(
        cells[:32, :32], scale=(0.5, 2.0), translate=(3, -4), rotate=25, shear=[0.2]
    )
    out, sigma, _ = napari_pkn.restore_layer(viewer, layer)
    for ij in [(0, 0), (5, 9), (15, 2)]:
        here = sigma.data_to_world(np.asarray(ij, float))
        there = layer.data_to_world(2 * np.asarray(ij, float) + 0.5)
        np.testing.assert_allclose(here, there, atol=1e-9)
        np.testing.assert_allclose(out.data_to_world(ij), layer.data_to_world(ij), atol=1e-9)


def test_clear_errors(viewer, cells):
    labels = viewer.add_labels(np.zeros((8, 8), int), name="mask")
    with pytest.raises(TypeError, match="'mask' is a Labels layer"):
        napari_pkn.restore_layer(viewer, labels)
    with pytest.raises(TypeError, match="'mask' is a Labels layer"):
        napari_pkn.restore_layer(viewer, "mask")
    viewer.add_image(cells, name="cells")
    with pytest.raises(ValueError, match="no layer named"):
        napari_pkn.restore_layer(viewer, "nope")
    with pytest.raises(ValueError, match="task must be one of"):
        napari_pkn.restore_layer(viewer, "cells", "sharpen")
    with pytest.raises(ValueError, match="no denoise model 'bm3d'"):
        napari_pkn.restore_layer(viewer, "cells", kernel="bm3d")
    with pytest.raises(TypeError, match="unknown options"):
        napari_pkn.restore_layer(viewer, "cells", sigma=3)
    with pytest.raises(ValueError, match="strength"):
        napari_pkn.restore_layer(viewer, "cells", strength=-1)
    with pytest.raises(ValueError, match="noise sigma must be a finite number >= 0"):
        napari_pkn.restore_layer(viewer, "cells", noise=-2.0)
    viewer.add_image(np.full((4, 4), np.nan, np.float32), name="nan")
    with pytest.raises(ValueError, match="layer 'nan': image contains NaN"):
        napari_pkn.restore_layer(viewer, "nan")
    assert [ly.name for ly in viewer.layers] == ["mask", "cells", "nan"]


def test_stacks_and_dtypes(viewer, cells):
    stack = np.stack([cells[:24, :24], cells[24:48, :24]]).astype(np.int16)
    out, sigma, _ = napari_pkn.restore_layer(viewer, viewer.add_image(stack, name="t"))
    assert out.data.shape == stack.shape and out.data.dtype == np.float32
    assert sigma.data.shape == (2, 12, 12) and out.metadata["pkn"]["planes"] == 2
    with pytest.raises(TypeError, match="bool pixels"):
        napari_pkn.restore_layer(viewer, viewer.add_image(np.ones((8, 8), bool)))


def test_package_exports_restore_layer_lazily():
    assert "restore_layer" in napari_pkn.__all__
    with pytest.raises(AttributeError):
        napari_pkn.not_there  # noqa: B018
