"""pkn._io: TIFF / PNG / OME-Zarr in and out with geometry and provenance."""

import hashlib
import json
import threading

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from skimage import io as skio

from pkn._io import Geometry, Output, map_geometry, read_image, read_provenance, write_images

UM = ("micrometer",) * 3
GEO = Geometry(("z", "y", "x"), (2.0, 0.5, 0.25), (10.0, -1.0, 3.0), UM)
PROV = {"model": "nlm", "model_sha256": "ab" * 32, "kernel": "nlm", "strength": 0.7}


def _tree_hash(p):
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        h.update(str(f.relative_to(p) if f != p else "").encode() + f.read_bytes())
    return h.hexdigest()


def _stack(shape=(3, 12, 10), seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.mark.parametrize("name", ["a.ome.tif", "a.ome.zarr", "a5.ome.zarr"])
@pytest.mark.parametrize("lazy", [False, True])
def test_round_trip_keeps_data_geometry_and_provenance(tmp_path, name, lazy):
    a = _stack()
    data = da.from_array(a, chunks=(1, 12, 10)) if lazy else a
    version = "0.5" if name.startswith("a5") else "0.4"
    write_images([Output(tmp_path / name, data, GEO, PROV, ngff_version=version)])
    im = read_image(tmp_path / name)
    assert im.geometry == GEO
    assert im.provenance == PROV
    assert read_provenance(tmp_path / name) == PROV
    np.testing.assert_array_equal(np.asarray(im.data), a)
    assert np.asarray(im.data).dtype == np.float32
    if name.endswith(".zarr"):
        assert isinstance(im.data, da.Array)  # OME-Zarr is read lazily by default
        assert im.ngff_version == version
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".pkn-*"))


def test_ome_zarr_output_is_valid_ngff_for_ome_zarr_reader(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    a = _stack()
    write_images([Output(tmp_path / "v.ome.zarr", a, GEO, PROV)])
    (node,) = list(Reader(parse_url(str(tmp_path / "v.ome.zarr")))())
    ms = node.metadata
    assert [ax["name"] for ax in ms["axes"]] == ["z", "y", "x"]
    assert all(ax["unit"] == "micrometer" and ax["type"] == "space" for ax in ms["axes"])
    ct = ms["coordinateTransformations"][0]
    assert ct[0]["scale"] == [2.0, 0.5, 0.25] and ct[1]["translation"] == [10.0, -1.0, 3.0]
    np.testing.assert_array_equal(np.asarray(node.data[0]), a)


def test_tiff_output_is_ome_with_physical_sizes_and_axes(tmp_path):
    g = Geometry(
        ("t", "c", "y", "x"),
        (1.5, 1.0, 0.3, 0.3),
        (0.0, 0.0, 2.0, 4.0),
        ("second", None) + ("micrometer",) * 2,
    )
    a = _stack((2, 3, 8, 9))
    write_images([Output(tmp_path / "t.ome.tif", a, g, PROV)])
    with tifffile.TiffFile(tmp_path / "t.ome.tif") as t:
        assert t.is_ome and t.series[0].axes == "TCYX"
        px = tifffile.xml2dict(t.ome_metadata)["OME"]["Image"]["Pixels"]
        xres = t.pages[0].tags["XResolution"].value
    assert px["PhysicalSizeX"] == 0.3 and px["PhysicalSizeY"] == 0.3
    assert px["PhysicalSizeXUnit"] == "µm" and px["TimeIncrement"] == 1.5
    assert px["Plane"][0]["PositionX"] == 4.0 and px["Plane"][0]["PositionY"] == 2.0
    assert abs(xres[0] / xres[1] - 1 / 0.3e-4) < 1  # pixels per centimetre
    im = read_image(tmp_path / "t.ome.tif")
    assert im.geometry == g and im.channel_axis == 1


def test_rgb_goes_to_channel_first_in_ome_zarr_and_stays_rgb_in_tiff(tmp_path):
    rgb = (np.random.default_rng(1).random((8, 9, 3)) * 255).astype(np.uint8)
    skio.imsave(tmp_path / "c.png", rgb, check_contrast=False)
    im = read_image(tmp_path / "c.png")
    assert im.rgb and im.geometry.axes == ("y", "x", "c") and im.channel_axis == 2
    write_images(
        [
            Output(tmp_path / "c.ome.zarr", im.data, im.geometry, rgb=True),
            Output(tmp_path / "c.ome.tif", im.data, im.geometry, rgb=True),
        ]
    )
    z = read_image(tmp_path / "c.ome.zarr")
    assert z.geometry.axes == ("c", "y", "x")  # NGFF order: channel before space
    np.testing.assert_array_equal(np.asarray(z.data), np.moveaxis(rgb, -1, 0))
    with tifffile.TiffFile(tmp_path / "c.ome.tif") as t:
        assert t.series[0].axes == "YXS" and t.pages[0].photometric == 2  # RGB
        np.testing.assert_array_equal(t.asarray(), rgb)


def test_imagej_tiff_geometry_is_read(tmp_path):
    a = (_stack((4, 10, 10)) * 1000).astype(np.uint16)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        a,
        imagej=True,
        resolution=(4.0, 4.0),
        metadata={"axes": "ZYX", "spacing": 1.5, "unit": "micron"},
    )
    im = read_image(tmp_path / "ij.tif")
    assert im.geometry.axes == ("z", "y", "x")
    assert im.geometry.scale == (1.5, 0.25, 0.25)
    assert im.geometry.units == UM
    assert im.data.dtype == np.uint16


def test_maps_overlay_the_image_with_the_same_physical_extent(tmp_path):
    """Map pixel i covers image pixels [2i, 2i + 2): the maps' pixel edges span exactly
    the image's physical extent, also after writing and reading back."""
    img = _stack((3, 12, 10))
    maps = img[:, ::2, ::2].copy()
    gm = map_geometry(GEO, 2.0)
    write_images(
        [Output(tmp_path / "i.ome.zarr", img, GEO), Output(tmp_path / "m.ome.zarr", maps, gm)]
    )
    gi, gm2 = (
        read_image(tmp_path / "i.ome.zarr").geometry,
        read_image(tmp_path / "m.ome.zarr").geometry,
    )
    assert gm2 == gm
    for k, n_img, n_map in ((1, 12, 6), (2, 10, 5)):
        lo_i, hi_i = (
            gi.translate[k] - gi.scale[k] / 2,
            gi.translate[k] + (n_img - 0.5) * gi.scale[k],
        )
        lo_m, hi_m = (
            gm2.translate[k] - gm2.scale[k] / 2,
            gm2.translate[k] + (n_map - 0.5) * gm2.scale[k],
        )
        assert (lo_m, hi_m) == pytest.approx((lo_i, hi_i))
        assert gm2.scale[k] == 2 * gi.scale[k]
    assert gm2.scale[0] == gi.scale[0] and gm2.translate[0] == gi.translate[0]  # z unchanged


def test_lazy_outputs_share_one_compute(tmp_path):
    """An image and its maps from one lazy graph: each source chunk is computed once, and
    TIFF outputs of dask arrays never materialise the whole array."""
    calls = []
    lock = threading.Lock()

    def work(b):
        if b.size:  # not dask's meta probe
            with lock:
                calls.append(b.shape)
        return b * 2

    src = da.from_array(_stack((4, 12, 10)), chunks=(1, 12, 10))
    y = src.map_blocks(work, dtype=np.float32)
    m = y[:, ::2, ::2]
    write_images(
        [
            Output(tmp_path / "y.ome.zarr", y, GEO),
            Output(tmp_path / "y.ome.tif", y, GEO),
            Output(tmp_path / "m.ome.tif", m, map_geometry(GEO, 2)),
        ]
    )
    assert len(calls) == 4  # one per plane, shared by the three outputs
    np.testing.assert_allclose(tifffile.imread(tmp_path / "m.ome.tif"), np.asarray(m))
    np.testing.assert_allclose(np.asarray(read_image(tmp_path / "y.ome.zarr").data), np.asarray(y))


def test_existing_outputs_are_refused_unless_overwrite(tmp_path):
    a = _stack()
    for name in ("o.ome.tif", "o.ome.zarr"):
        write_images([Output(tmp_path / name, a, GEO, {"v": 1})])
        before = _tree_hash(tmp_path / name)
        with pytest.raises(FileExistsError, match=name):
            write_images([Output(tmp_path / name, a * 0, GEO, {"v": 2})])
        assert _tree_hash(tmp_path / name) == before
        write_images([Output(tmp_path / name, a * 0, GEO, {"v": 2})], overwrite=True)
        assert read_provenance(tmp_path / name) == {"v": 2}
        assert not np.asarray(read_image(tmp_path / name).data).any()


def test_reading_never_modifies_the_input(tmp_path):
    a = _stack()
    write_images([Output(tmp_path / "r.ome.zarr", a, GEO, PROV)])
    write_images([Output(tmp_path / "r.ome.tif", a, GEO, PROV)])
    for name in ("r.ome.zarr", "r.ome.tif"):
        before = _tree_hash(tmp_path / name)
        for lazy in (False, True):
            np.asarray(read_image(tmp_path / name, lazy=lazy).data)
        assert _tree_hash(tmp_path / name) == before


def _zarr_json_garbage(p):
    (p / "bad.zarr").mkdir()
    (p / "bad.zarr" / "zarr.json").write_text("{")


@pytest.mark.parametrize(
    "name,make,match",
    [
        ("bad.tif", lambda p: (p / "bad.tif").write_bytes(b"no tiff"), r"cannot read .*bad\.tif"),
        ("bad.png", lambda p: (p / "bad.png").write_bytes(b"\x89PNG"), r"cannot read .*bad\.png"),
        (
            "bad.zarr",
            lambda p: zarr.open_group(str(p / "bad.zarr"), mode="w"),
            r"bad\.zarr: no OME-Zarr image in it \(a zarr group without 'multiscales'\)",
        ),
        ("bad.zarr", _zarr_json_garbage, r"cannot read .*bad\.zarr"),
        ("notes.txt", lambda p: (p / "notes.txt").write_text("x"), "notes.txt: not a TIFF, PNG"),
        ("missing.tif", lambda p: None, r"missing\.tif: no such file"),
    ],
)
def test_unreadable_inputs_raise_a_value_error_naming_the_file(tmp_path, name, make, match):
    make(tmp_path)
    with pytest.raises(ValueError, match=match):
        read_image(tmp_path / name)


def test_bad_outputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.tif, \.tiff or \.zarr"):
        write_images([Output(tmp_path / "x.png", _stack(), GEO)])
    with pytest.raises(ValueError, match="2-D data for 3 axes"):
        write_images([Output(tmp_path / "x.ome.tif", _stack()[0], GEO)])
    with pytest.raises(ValueError, match="NGFF version must be"):
        write_images([Output(tmp_path / "x.ome.zarr", _stack(), GEO, ngff_version="0.3")])
    assert not list(tmp_path.iterdir())


def test_axes_ome_cannot_describe_still_give_a_tiff_with_the_data(tmp_path):
    a = _stack((2, 3, 5, 6))
    write_images([Output(tmp_path / "q.ome.tif", a, Geometry.default(("a", "b", "y", "x")))])
    im = read_image(tmp_path / "q.ome.tif")
    assert len(set(im.geometry.axes)) == 4 and im.geometry.axes[-2:] == ("y", "x")
    np.testing.assert_array_equal(np.asarray(im.data), a)


def test_plain_zarr_array_is_read_with_default_axes(tmp_path):
    z = zarr.create_array(
        str(tmp_path / "p.zarr"), shape=(2, 6, 7), dtype="uint16", chunks=(1, 6, 7)
    )
    z[...] = 5
    im = read_image(tmp_path / "p.zarr")
    assert im.geometry == Geometry.default(("z", "y", "x")) and im.ngff_version is None
    assert json.dumps(im.geometry.as_dict())  # JSON-ready for the provenance sidecar
    assert int(im.data.sum().compute()) == 5 * 2 * 6 * 7
