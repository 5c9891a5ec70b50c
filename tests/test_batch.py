"""``python -m pkn restore``: the batch command on temporary files."""

import hashlib
import json

import numpy as np
import pytest
import tifffile
from skimage import io

from pkn.__main__ import main as pkn_main
from pkn._batch import main
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
    assert {f"{s}_pkn{e}" for s in "abc" for e in (".tif", ".json", "_sigma.tif")} <= names
    assert not any("notes" in n for n in names)
    a = tifffile.imread(out / "a_pkn.tif")
    assert a.dtype == np.float32 and a.shape == (40, 40)
    c = tifffile.imread(out / "c_pkn.tif")
    assert c.shape == (40, 40, 3)  # RGB PNG: channel_axis -1 by default
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
    assert sorted(p.name for p in out.glob("*.tif")) == ["b_pkn.tif", "c_pkn.tif"]
    assert "strength_auto" in json.loads((out / "b_pkn.json").read_text())


def test_corrupt_file_is_reported_and_the_others_go_on(files, tmp_path, capsys):
    (files / "bad.tif").write_bytes(b"this is no tiff")
    out = tmp_path / "out"
    rc = main(
        [
            str(files / "*.tif"),
            str(files / "b.png"),
            str(tmp_path / "missing.tif"),
            "--out",
            str(out),
            "--quiet",
            "--noise",
            "0.08",
        ]
    )
    assert rc == 1
    assert (out / "a_pkn.tif").exists() and (out / "b_pkn.tif").exists()
    assert not (out / "bad_pkn.tif").exists()
    err = capsys.readouterr().err
    assert "bad.tif: failed:" in err and "missing.tif: no such file" in err
    assert "2 restored, 0 skipped, 2 failed" in err
    assert "Traceback" not in err


def test_nothing_is_overwritten_unless_asked(files, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(files / "a.tif"), "--out", str(out), "--quiet", "--noise", "0.08"]
    assert main(args) == 0
    (out / "a_pkn.tif").write_bytes(b"mine")
    assert main([*args, "--strength", "0.5"]) == 0
    assert (out / "a_pkn.tif").read_bytes() == b"mine"
    assert "skipped, a_pkn.tif exists (--overwrite to replace)" in capsys.readouterr().err
    assert main([*args, "--strength", "0.5", "--overwrite"]) == 0
    assert tifffile.imread(out / "a_pkn.tif").shape == (40, 40)
    assert json.loads((out / "a_pkn.json").read_text())["strength"] == 0.5


def test_uint16_stack_keeps_resolution_and_axes(tmp_path):
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
    with tifffile.TiffFile(out / "stack_pkn.tif") as t:
        r = t.asarray()
        assert t.is_imagej and t.series[0].axes == "ZYX"
        assert t.imagej_metadata["spacing"] == 0.5 and t.imagej_metadata["unit"] == "um"
        assert t.pages[0].tags["XResolution"].value == (2, 1)
    assert r.shape == u.shape and r.dtype == np.float32
    info = json.loads((out / "stack_pkn.json").read_text())
    assert info["planes"]["noise"] == "per stack" and info["axes"] == "ZYX"
    assert abs(float(r.mean()) - float(u.mean())) < 0.05 * float(u.mean())


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--noise", "loud"], "--noise must be"),
        (["--strength", "-1"], "--strength must be"),
        (["--kernel", "median"], "invalid choice"),
        (["--model", "nope"], "no shipped model"),
        (["--task", "deblur"], "needs --blur"),
        (["--task", "deblur", "--kernel", "nlm", "--blur", "1"], "does denoise, not deblur"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(files, tmp_path, capsys, extra, match):
    assert main([str(files), "--out", str(tmp_path / "o"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1


def test_ome_zarr_is_a_clear_per_file_error_for_now(tmp_path, capsys):
    store = tmp_path / "img.ome.zarr"
    store.mkdir()
    assert main([str(store), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "OME-Zarr input (img.ome.zarr) is not supported yet" in capsys.readouterr().err
