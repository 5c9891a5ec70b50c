"""pkn.psf: importing a bead PSF and refusing PSFs that would deblur wrongly."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from pkn.psf import PSF, check_psf, import_psf

BEAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "psf" / "bead_psf_3d.tif"


def gaussian(size=64, centre=(40, 30), sigma=1.5, offset=100.0, amp=5000.0):
    yy, xx = np.mgrid[:size, :size]
    r2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    return offset + amp * np.exp(-r2 / (2 * sigma**2))


def centred(sigma=1.5, radius=6):
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return np.exp(-(yy**2 + xx**2) / (2 * sigma**2))


def test_import_2d_uint16_with_offset_and_off_centre_peak():
    bead = np.random.default_rng(0).poisson(gaussian()).astype(np.uint16)
    before = bead.copy()
    p = import_psf(bead)
    assert isinstance(p, PSF) and p.plane is None
    k = p.array
    assert k.dtype == np.float32 and k.ndim == 2 and k.shape[0] == k.shape[1]
    assert k.shape[0] % 2 == 1
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-5) and k.min() >= 0
    c = k.shape[0] // 2
    assert np.unravel_index(int(k.argmax()), k.shape) == (c, c)
    assert p.shift == (40 - 32, 30 - 32)
    assert p.background == pytest.approx(100, abs=3)
    assert p.source_shape == (64, 64)
    assert p.info["check"] == "passed" and p.info["truncated"] is False
    np.testing.assert_array_equal(bead, before)
    # the imported PSF matches the true Gaussian (its support reaches 1% of the peak)
    truth = centred(1.5, c)
    truth /= truth.sum()
    assert np.abs(k - truth).sum() < 0.1
    check_psf(k)  # and passes the check


def test_import_3d_picks_focus_and_ignores_a_hot_pixel():
    stack = np.stack([gaussian(sigma=s, amp=a) for s, a in ((4, 800), (1.2, 6000), (3, 1500))])
    stack[0, 5, 5] = 60000  # a hot pixel in an out-of-focus plane
    stack[2, 50, 9] = 60000
    p = import_psf(stack.astype(np.uint16))
    assert p.plane == 1 and p.source_shape == (3, 64, 64)
    assert import_psf(stack, plane=-1).plane == 2
    q = import_psf(stack, plane=0, background=100.0, support=21)
    assert q.array.shape == (21, 21) and q.background == 100.0 and q.plane == 0


def test_support_and_threshold():
    bead = gaussian(sigma=2.0)
    wide = import_psf(bead, threshold=0.001).array.shape[0]
    with pytest.warns(UserWarning, match="fails check_psf: psf's border is far from zero"):
        narrow = import_psf(bead, threshold=0.2)  # cuts the PSF: warned and recorded
    assert wide > narrow.array.shape[0] and "border" in narrow.info["check"]
    with pytest.warns(UserWarning, match="fails check_psf"):
        assert import_psf(bead, support=5).array.shape == (5, 5)
    with pytest.raises(ValueError, match=r"support=49 does not fit .* largest is 47"):
        import_psf(bead, support=49)


def test_support_cut_by_the_border_warns():
    with pytest.warns(UserWarning) as got:
        p = import_psf(gaussian(centre=(60, 32), sigma=3))
    msgs = [str(w.message) for w in got]
    assert any("cut by the image border" in m for m in msgs)
    assert any("fails check_psf" in m for m in msgs)
    assert p.info["truncated"] is True and p.array.shape == (7, 7)


def test_import_refuses_bad_input():
    with pytest.raises(ValueError, match="bead must be a 2-D"):
        import_psf(np.zeros((2, 2, 8, 8)))
    with pytest.raises(TypeError, match="dtype complex"):
        import_psf(np.zeros((8, 8), complex))
    with pytest.raises(TypeError, match="dtype bool"):
        import_psf(np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="NaN"):
        import_psf(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="at least 5x5"):
        import_psf(np.ones((4, 9)))
    with pytest.raises(ValueError, match="no peak above the background"):
        import_psf(np.full((9, 9), 7.0))
    with pytest.raises(ValueError, match="plane is for 3-D"):
        import_psf(gaussian(), plane=0)
    with pytest.raises(ValueError, match=r"plane must be in \[-2, 1\]"):
        import_psf(np.stack([gaussian()] * 2), plane=2)
    with pytest.raises(ValueError, match="support must be an odd"):
        import_psf(gaussian(), support=6)
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\)"):
        import_psf(gaussian(), threshold=1.5)
    with pytest.raises(TypeError, match="background must be None or a number"):
        import_psf(gaussian(), background="auto")


def test_check_accepts_a_centred_psf_and_normalises():
    k = centred() * 7.0
    before = k.copy()
    out = check_psf(k, image_shape=(64, 64))
    assert out.dtype == np.float32 and float(out.sum()) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(k, before)
    tiny = centred()
    tiny[0, 0] = -1e-4  # a tiny negative part is clipped
    assert check_psf(tiny).min() == 0
    assert check_psf(np.ones((1, 1)))[0, 0] == 1.0
    assert check_psf(PSF(centred(), None, 0.0, (0, 0), (13, 13))).shape == (13, 13)


def test_check_refuses_what_would_deblur_wrongly():
    with pytest.raises(ValueError, match=r"blur must be a 2-D .*import_psf"):
        check_psf(np.ones((3, 5, 5)), name="blur")
    with pytest.raises(ValueError, match="NaN or Inf"):
        check_psf(np.full((3, 3), np.inf))
    with pytest.raises(ValueError, match="no positive mass"):
        check_psf(-centred())
    neg = centred()
    neg[0, :] = -0.5
    with pytest.raises(ValueError, match="large negative part"):
        check_psf(neg)
    with pytest.raises(ValueError, match=r"border is far from zero.*import_psf"):
        check_psf(centred() + 0.02)  # an offset left in (2% of the peak, 60% of the mass)
    with pytest.raises(ValueError, match="border is far from zero"):
        check_psf(np.ones((9, 9)))  # a box ...
    assert check_psf(np.pad(np.ones((9, 9)), 1)).shape == (11, 11)  # ... padded with zeros
    off = gaussian(size=31, centre=(22, 15), offset=0.0)  # peak 7 px below the centre
    with pytest.raises(ValueError, match=r"off centre.*\(\+7\.0, \+0\.0\).*import_psf"):
        check_psf(off)
    assert check_psf(np.roll(centred(), 1, axis=1)).shape == (13, 13)  # 1 px is accepted
    with pytest.raises(ValueError, match=r"\(13x13\) is larger than the image \(12x40\)"):
        check_psf(centred(), image_shape=(12, 40))
    with pytest.raises(ValueError, match="image_shape must be the"):
        check_psf(centred(), image_shape=(3, 64, 64))
    with pytest.raises(TypeError, match="real-valued"):
        check_psf(np.array([["a"]]))


@pytest.mark.skipif(not BEAD.is_file(), reason=f"real bead PSF not found at {BEAD}")
def test_real_bead_stack():
    import tifffile

    bead = tifffile.imread(BEAD)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = import_psf(bead)
    assert p.plane in (30, 31) and p.shift == (7, 0)
    assert 130 < p.background < 155  # the camera offset (border median)
    assert 11 <= p.array.shape[0] <= 31 and p.info["check"] == "passed"
    # the raw in-focus slice, and a raw crop around its peak, are refused
    with pytest.raises(ValueError, match="border is far from zero"):
        check_psf(bead[p.plane])
    with pytest.raises(ValueError, match="border is far from zero"):
        check_psf(bead[p.plane, 71 - 10 : 71 + 11, 64 - 10 : 64 + 11])


def test_deblur_benchmark_psf_mode(tmp_path, monkeypatch, capsys):
    """``python -m benchmarks deblur --psf bead`` end to end on tiny synthetic data."""
    import tifffile
    from skimage import io

    from benchmarks import deblur

    rng = np.random.default_rng(1)
    (tmp_path / "set12").mkdir()
    for i in range(2):
        img = (rng.random((40, 44)) * 200 + 20).astype(np.uint8)
        io.imsave(str(tmp_path / "set12" / f"{i:02d}.png"), img, check_contrast=False)
    stack = np.stack([gaussian(sigma=s) for s in (3.0, 1.2, 3.0)]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "bead.tif", stack, photometric="minisblack")
    monkeypatch.setenv("PKN_DATA", str(tmp_path))
    argv = [
        "--psf", "bead", "--psf-file", str(tmp_path / "bead.tif"), "--datasets", "set12",
        "--photons", "500", "--rows", "wiener-tuned,wiener,rl-tuned,rl,blurred",
        "--rl-iters", "3",
    ]  # fmt: skip
    assert deblur.main(argv) == 0
    out = capsys.readouterr().out
    assert "| data (images) | photons | wiener-tuned | wiener | rl-tuned | rl | blurred |" in out
    row = next(line for line in out.splitlines() if line.startswith("| set12 (2) | 500 |"))
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    psnr = [float(c.strip("*").split(" / ")[0]) for c in cells]
    assert psnr[0] >= psnr[1] - 1e-6  # the tuned Wiener is at least the NSR one
    assert max(psnr[:4]) > psnr[4]  # deblurring beats the blurred input
    assert deblur.main([*argv[:2], "--psf-file", str(tmp_path / "none.tif")]) == 2
