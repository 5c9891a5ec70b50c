"""The npe2 OME-TIFF writer and reader: geometry and provenance survive a round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from napari.components import ViewerModel

from napari_pkn._writer import NAMESPACE, get_reader, read_layers, write_layers


@pytest.fixture(autouse=True, scope="module")
def _plugins(napari_plugins):
    """npe2 discovers the installed plugins (napari does this at start-up)."""


PROV = {"pkn": {"kernel": "nlm", "model_sha256": "abc123", "noise": [0.01, 1e-4]}}


def _viewer_with_maps() -> ViewerModel:
    v = ViewerModel()
    rng = np.random.default_rng(0)
    v.add_image(
        rng.random((20, 30), dtype=np.float32),
        name="restored",
        scale=(0.1, 0.1),
        translate=(5.0, -2.0),
        units=("micrometer", "micrometer"),
        metadata=PROV,
    )
    # a half-resolution map: twice the pixel size, shifted by half an input pixel
    v.add_image(
        rng.random((10, 15)).astype(np.float64),
        name="sigma map",
        scale=(0.2, 0.2),
        translate=(5.05, -1.95),
        units=("micrometer", "micrometer"),
        colormap="magma",
        metadata={"pkn": {**PROV["pkn"], "map": "sigma"}},
    )
    v.add_image(
        rng.integers(0, 4000, (3, 20, 30), dtype=np.uint16),
        name="stack/raw",
        scale=(0.3, 0.1, 0.1),
        metadata={"note": np.float32(2.5)},
    )
    return v


def test_three_layers_three_files_round_trip(tmp_path):
    v = _viewer_with_maps()
    before = [ly.data.copy() for ly in v.layers]
    v.layers.select_all()
    saved = v.layers.save(str(tmp_path / "out.ome.tif"), selected=True, plugin="napari-pkn")
    assert len(saved) == 3 and len(set(saved)) == 3
    assert [p.split("/")[-1] for p in saved] == [
        "00_restored.ome.tif",
        "01_sigma_map.ome.tif",
        "02_stack_raw.ome.tif",
    ]
    for ly, b in zip(v.layers, before, strict=True):
        np.testing.assert_array_equal(ly.data, b)  # inputs not modified
    w = ViewerModel()
    w.open(str(tmp_path / "out"), plugin="napari-pkn")  # the folder
    assert [ly.name for ly in w.layers] == ["restored", "sigma map", "stack/raw"]
    for a, b in zip(v.layers, w.layers, strict=True):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape
        np.testing.assert_allclose(a.scale, b.scale)
        np.testing.assert_allclose(a.translate, b.translate)
        assert [str(u) for u in a.units] == [str(u) for u in b.units]
    assert w.layers["restored"].metadata == PROV
    assert w.layers["sigma map"].metadata["pkn"]["map"] == "sigma"
    assert w.layers["sigma map"].colormap.name == "magma"
    assert w.layers["stack/raw"].metadata == {"note": 2.5}
    # the map overlays the image exactly: same world extent
    np.testing.assert_allclose(
        w.layers["sigma map"].extent.world, v.layers["sigma map"].extent.world
    )


def test_ome_metadata_is_standard(tmp_path):
    v = _viewer_with_maps()
    (path,) = write_layers(str(tmp_path / "map"), [v.layers["sigma map"].as_layer_data_tuple()])
    assert path.endswith("map.ome.tif")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        xml = tif.ome_metadata
    assert 'PhysicalSizeX="0.2"' in xml and 'PhysicalSizeXUnit="µm"' in xml
    assert 'PositionY="5.05"' in xml and NAMESPACE in xml
    ((data, meta, kind),) = read_layers(path)
    assert kind == "image" and data.dtype == np.float64
    assert json.dumps(meta["metadata"])  # plain JSON


def test_single_layer_replaces_only_when_complete(tmp_path):
    target = tmp_path / "a.ome.tif"
    meta = {"name": "a", "scale": (1.0, 1.0), "translate": (0.0, 0.0)}
    write_layers(str(target), [(np.zeros((4, 4), np.uint8), meta, "image")])
    # the save dialog confirmed the overwrite of the chosen file: replaced
    write_layers(str(target), [(np.ones((4, 4), np.uint8), meta, "image")])
    assert tifffile.imread(target).max() == 1
    with pytest.raises(ValueError, match="6-D data"):
        write_layers(str(target), [(np.zeros((1,) * 6), meta, "image")])
    assert tifffile.imread(target).max() == 1  # a failed write leaves the file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ome.tif"]  # no temp left


def test_multi_layer_never_overwrites(tmp_path):
    layers = [
        (np.zeros((4, 4), np.float32), {"name": n, "scale": (1, 1), "translate": (0, 0)}, "image")
        for n in ("x", "y")
    ]
    write_layers(str(tmp_path / "set"), layers)
    with pytest.raises(FileExistsError, match="not overwriting 2 existing"):
        write_layers(str(tmp_path / "set.ome.tif"), layers)


def test_refusals_and_reader_selection(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_layers(str(tmp_path / "x"), [])
    with pytest.raises(ValueError, match="labels layer"):
        write_layers(str(tmp_path / "x"), [(np.zeros((3, 3), int), {"name": "l"}, "labels")])
    foreign = tmp_path / "other.ome.tif"
    tifffile.imwrite(foreign, np.zeros((4, 4), np.uint8), ome=True)
    assert get_reader(str(foreign)) is None  # not ours: left to other readers
    assert get_reader(str(tmp_path / "x.png")) is None
    with pytest.raises(ValueError, match=r"not an OME-TIFF .* written by napari-pkn"):
        read_layers(str(foreign))


def test_napari_builtin_reader_loses_the_geometry(tmp_path):
    """Why the plugin ships a reader: napari's own tiff reader drops scale and metadata."""
    v = _viewer_with_maps()
    (path,) = write_layers(str(tmp_path / "m"), [v.layers["sigma map"].as_layer_data_tuple()])
    w = ViewerModel()
    w.open(path, plugin="napari")
    assert tuple(w.layers[0].scale) == (1.0, 1.0) and "pkn" not in w.layers[0].metadata


def test_float16_map_layers_are_saved_as_float32(tmp_path):
    """PKN's map and QC layers are float16, which OME-TIFF cannot hold: written as float32
    (exactly the same values), the layer untouched."""
    v = ViewerModel()
    half = np.random.default_rng(2).random((12, 14)).astype(np.float16)
    layer = v.add_image(half, name="sigma (px)", scale=(0.2, 0.2), translate=(0.05, 0.05))
    paths = write_layers(str(tmp_path / "m.ome.tif"), [layer.as_layer_data_tuple()])
    ((data, meta, _),) = read_layers(paths[0])
    assert data.dtype == np.float32 and layer.data.dtype == np.float16
    np.testing.assert_array_equal(data, half.astype(np.float32))
    np.testing.assert_allclose(meta["scale"], (0.2, 0.2))
