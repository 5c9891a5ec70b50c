"""``python -m pkn restore``: the batch command on temporary files."""

import hashlib
import json

import numpy as np
import pytest
import tifffile
from skimage import io

from pkn.__main__ import main as pkn_main
from pkn._batch import main
from pkn._io import read_image, read_provenance
from pkn.samples import natural


def _img(size=40, seed=0):
    noisy, _ = natural(0.08, seed=seed)
    return np.clip(noisy[200 : 200 + size, 200 : 200 + size], 0, 1).astype(np.float32)


@pytest.fixture
def files(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "a.tif", _img())
    io.imsave(src / "b.png", (_img(seed=1) * 255).astype(np.uint8), check_contrast=False)
    rgb = (np.stack([_img(seed=2)] * 3, -1) * 255).astype(np.uint8)
    io.imsave(src / "c.png", rgb, check_contrast=False)
    (src / "notes.txt").write_text("not an image")
    return src


def test_folder_tiff_png_and_sidecar(files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(files), "--out", str(out), "--noise", "0.08", "--quiet", "--maps"]) == 0
    names = {p.name for p in out.iterdir()}
    maps = json.loads((out / "a_pkn.json").read_text())["maps"]
    assert "sigma" in maps
    ends = [".ome.tif", ".json", *(f"_{m}.ome.tif" for m in maps)]
    assert names == {f"{s}_pkn{e}" for s in "abc" for e in ends}  # nothing else, no .part
    a = tifffile.imread(out / "a_pkn.ome.tif")
    assert a.dtype == np.float32 and a.shape == (40, 40)
    c = tifffile.imread(out / "c_pkn.ome.tif")
    assert c.shape == (40, 40, 3)  # RGB PNG: channel_axis -1 by default
    assert tifffile.imread(out / "c_pkn_sigma.ome.tif").shape == (20, 20, 3)
    # provenance in the OME-TIFF itself, the same as the sidecar's
    assert read_provenance(out / "a_pkn.ome.tif") == json.loads((out / "a_pkn.json").read_text())
    gm = read_image(out / "a_pkn_sigma.ome.tif").geometry
    assert gm.scale == (2.0, 2.0) and gm.translate == (0.5, 0.5)  # overlays the image
    info = json.loads((out / "a_pkn.json").read_text())
    raw = (files / "a.tif").read_bytes()
    assert info["input"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert info["input"]["size"] == len(raw)
    assert info["input"]["path"].endswith("a.tif")
    assert info["model"] == "nlm" and info["noise"]["sigma"] == 0.08
    assert info["strength"] == 1.0 and info["input_shape"] == [40, 40]
    err = capsys.readouterr().err
    assert "3 restored, 0 skipped, 0 failed" in err


def test_glob_and_dispatch_from_python_m_pkn(files, tmp_path):
    out = tmp_path / "out"
    assert (
        pkn_main(
            ["restore", str(files / "*.png"), "--out", str(out), "--quiet", "--strength", "auto"]
        )
        == 0
    )
    assert sorted(p.name for p in out.glob("*.tif")) == ["b_pkn.ome.tif", "c_pkn.ome.tif"]
    assert "strength_auto" in json.loads((out / "b_pkn.json").read_text())


def _tree_hash(p):
    h = hashlib.sha256()
    for f in [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()):
        h.update(f.as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def test_corrupt_file_is_reported_and_the_others_go_on(files, tmp_path, capsys):
    (files / "bad.tif").write_bytes(b"this is no tiff")
    out = tmp_path / "out"
    before = {f.name: _tree_hash(f) for f in files.iterdir()}
    rc = main([str(files / "*.tif"), str(files / "b.png"), "--out", str(out), "--quiet"])
    assert rc == 1
    assert (out / "a_pkn.ome.tif").exists() and (out / "b_pkn.ome.tif").exists()
    assert not list(out.glob("bad_pkn*"))
    err = capsys.readouterr().err
    assert "bad.tif: failed: cannot read" in err
    assert "2 restored, 0 skipped, 1 failed" in err
    assert "Traceback" not in err
    assert {f.name: _tree_hash(f) for f in files.iterdir()} == before  # inputs untouched


def test_nothing_is_overwritten_unless_asked(files, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(files / "a.tif"), "--out", str(out), "--quiet", "--noise", "0.08"]
    assert main(args) == 0
    (out / "a_pkn.ome.tif").write_bytes(b"mine")
    assert main([*args, "--strength", "0.5"]) == 0
    assert (out / "a_pkn.ome.tif").read_bytes() == b"mine"
    assert "skipped, a_pkn.ome.tif exists (--overwrite to replace)" in capsys.readouterr().err
    assert main([*args, "--strength", "0.5", "--overwrite"]) == 0
    assert tifffile.imread(out / "a_pkn.ome.tif").shape == (40, 40)
    assert json.loads((out / "a_pkn.json").read_text())["strength"] == 0.5


def test_imagej_uint16_stack_keeps_pixel_sizes_and_axes(tmp_path):
    z = np.stack([_img(48, s) for s in range(3)])
    u = (z * 3000 + 200).round().astype(np.uint16)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(
        src,
        u,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"},
    )
    out = tmp_path / "out"
    assert main([str(src), "--out", str(out), "--quiet"]) == 0
    with tifffile.TiffFile(out / "stack_pkn.ome.tif") as t:
        r = t.asarray()
        assert t.is_ome and t.series[0].axes == "ZYX"
        px = tifffile.xml2dict(t.ome_metadata)["OME"]["Image"]["Pixels"]
    assert (px["PhysicalSizeX"], px["PhysicalSizeY"], px["PhysicalSizeZ"]) == (0.5, 0.5, 0.5)
    assert px["PhysicalSizeXUnit"] == "µm"
    assert r.shape == u.shape and r.dtype == np.float32
    info = json.loads((out / "stack_pkn.json").read_text())
    assert info["planes"]["noise"] == "per stack" and info["axes"] == "zyx"
    assert info["geometry"]["scale"] == [0.5, 0.5, 0.5]
    assert abs(float(r.mean()) - float(u.mean())) < 0.05 * float(u.mean())


def _ome_zarr(path, a, version="0.4"):
    from pkn._io import Geometry, Output, write_images

    g = Geometry(("z", "y", "x"), (3.0, 0.2, 0.2), (5.0, 1.0, -2.0), ("micrometer",) * 3)
    write_images([Output(path, a, g, ngff_version=version)])
    return g


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_in_ome_zarr_out_lazily_with_geometry_and_maps(tmp_path, version):
    u = (np.stack([_img(96, s) for s in range(3)]) * 3000 + 200).round().astype(np.uint16)
    src = tmp_path / "s.ome.zarr"
    g = _ome_zarr(src, u, version)
    before = _tree_hash(src)
    out = tmp_path / "out"
    assert main([str(src), "--out", str(out), "--quiet", "--maps"]) == 0
    assert _tree_hash(src) == before
    im = read_image(out / "s_pkn.ome.zarr")
    assert im.geometry == g and im.ngff_version == version
    r = np.asarray(im.data)
    assert r.shape == u.shape and r.dtype == np.float32
    assert abs(float(r.mean()) - float(u.mean())) < 0.05 * float(u.mean())
    info = json.loads((out / "s_pkn.json").read_text())
    assert im.provenance == info and info["model"] == "nlm" and info["kernel"] == "nlm"
    assert info["input"]["path"] == str(src.resolve()) and len(info["input"]["sha256"]) == 64
    m = read_image(out / "s_pkn_sigma.ome.zarr")
    assert m.data.shape == (3, 48, 48)
    assert m.geometry.scale == (3.0, 0.4, 0.4)
    assert m.geometry.translate == pytest.approx((5.0, 1.1, -1.9))  # + 0.5 input pixel
    assert m.provenance["map"] == "sigma"


def test_output_format_can_differ_from_the_input(tmp_path):
    u = (np.stack([_img(64, s) for s in range(2)]) * 255).astype(np.uint8)
    src = tmp_path / "s.ome.zarr"
    g = _ome_zarr(src, u)
    out = tmp_path / "out"
    assert main([str(src), "--out", str(out), "--quiet", "--format", "tif"]) == 0
    assert read_image(out / "s_pkn.ome.tif").geometry == g
    tifffile.imwrite(tmp_path / "t.tif", u[0])
    assert main([str(tmp_path / "t.tif"), "--out", str(out), "--quiet", "--format", "zarr"]) == 0
    assert np.asarray(read_image(out / "t_pkn.ome.zarr").data).shape == (64, 64)


def test_upsampling_output_overlays_the_input(tmp_path):
    src = tmp_path / "u.ome.tif"
    from pkn._io import Geometry, Output, write_images

    g = Geometry(("y", "x"), (1.0, 1.0), (0.0, 0.0), ("micrometer",) * 2)
    write_images([Output(src, _img(24), g)])
    out = tmp_path / "out"
    args = [str(src), "--out", str(out), "--quiet", "--task", "upsample", "--scale", "2"]
    assert main(args) == 0
    r = read_image(out / "u_pkn.ome.tif")
    assert r.data.shape == (48, 48)
    # output pixel i at input index (i + 0.5) / 2 - 0.5: same physical extent
    assert r.geometry.scale == (0.5, 0.5) and r.geometry.translate == (-0.25, -0.25)


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--noise", "loud"], "--noise must be"),
        (["--noise", "0,-1"], "--noise must be"),
        (["--noise", "nan"], "--noise must be"),
        (["--strength", "-1"], "--strength must be"),
        (["--strength", "abc"], "--strength must be"),
        (["--channel-axis", "7"], "--channel-axis 7 is out of range for"),
        (["--channel-axis", "x"], "--channel-axis must be an integer"),
        (["--blur", "-1"], "--blur must be a number > 0"),
        (["--task", "upsample", "--scale", "inf"], "--scale must be a number > 0"),
        (["--format", "png"], "invalid choice"),
        (["--kernel", "median"], "invalid choice"),
        (["--model", "nope"], "no shipped model"),
        (["--task", "deblur"], "needs --blur"),
        (["--task", "deblur", "--kernel", "nlm", "--blur", "1"], "does denoise, not deblur"),
        (["MISSING"], "missing.tif: no such file or folder"),
        (["GLOB"], "nothing*.tif: the pattern matches no file"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(files, tmp_path, capsys, extra, match):
    extra = [
        str(tmp_path / "missing.tif")
        if e == "MISSING"
        else str(files / "nothing*.tif")
        if e == "GLOB"
        else e
        for e in extra
    ]
    out = tmp_path / "o"
    assert main([str(files), "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() or not list(out.iterdir())  # nothing processed


def test_big_tiff_is_restored_lazily_with_the_same_result(tmp_path, monkeypatch):
    """A TIFF over LAZY_TIFF_BYTES is read page by page (never whole) and gives the file
    the in-memory restore gives; options that need the whole stack keep it in memory."""
    import dask.array as da

    import pkn._batch as B
    import pkn._io as IO

    z = np.stack([_img(64, s) for s in range(3)])
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, z, photometric="minisblack")  # 3 pages: a z-stack
    lazy = read_image(src, lazy=True).data
    assert isinstance(lazy, da.Array) and lazy.chunks[0] == (1, 1, 1)
    np.testing.assert_array_equal(lazy.compute(), z)
    assert main([str(src), "--out", str(tmp_path / "mem"), "--quiet"]) == 0
    seen = []
    original = IO.read_image
    monkeypatch.setattr(
        IO, "read_image", lambda q, lazy=None: seen.append(lazy) or original(q, lazy=lazy)
    )
    monkeypatch.setattr(B, "LAZY_TIFF_BYTES", 0)
    assert main([str(src), "--out", str(tmp_path / "lazy"), "--quiet"]) == 0
    assert seen == [True]
    a = tifffile.imread(tmp_path / "mem" / "big_pkn.ome.tif")
    b = tifffile.imread(tmp_path / "lazy" / "big_pkn.ome.tif")
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * float(np.ptp(a)))
    seen.clear()
    assert main([str(src), "--out", str(tmp_path / "auto"), "--quiet", "--strength", "auto"]) == 0
    assert seen == [None]  # SURE needs the whole stack: in memory


def test_a_model_alone_chooses_the_kernel(files, tmp_path):
    out = tmp_path / "out"
    assert (
        main(
            [
                str(files / "a.tif"),
                "--out",
                str(out),
                "--noise",
                "0.08",
                "--quiet",
                "--model",
                "gaussian",
            ]
        )
        == 0
    )
    info = json.loads((out / "a_pkn.json").read_text())
    assert info["model"] == "gaussian" and info["kernel"] == "gaussian"


def test_a_model_for_another_kernel_is_refused_up_front(files, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(files / "a.tif"), "--out", str(out), "--quiet", "--kernel", "nlm"]
    assert main([*args, "--model", "gaussian"]) == 2
    err = capsys.readouterr().err
    assert "'gaussian' drives kernel 'gaussian', not 'nlm'" in err
    assert not out.exists()  # refused before any file is read or written
