"""Smoke tests of ``bench deblur``, ``bench upsample`` and ``bench microscopy`` on tiny
synthetic images written to ``tmp_path``, with untrained throwaway models, and of
``bench restore`` on a tiny image with the shipped models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage import io

from pkn.benchmarks import _common, deblur, microscopy, restore_speed, upsample
from pkn.models.io import save_model
from pkn.models.pkn_model import PKNModel


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Untrained models (constant initial parameters) for the three kernels."""
    d = tmp_path_factory.mktemp("models")
    return {
        k: str(save_model(PKNModel(k), d / f"{k}.safetensors")) for k in ("polyblur", "rbf", "nlm")
    }


def _smooth(shape, seed) -> np.ndarray:
    """A smooth random uint8 image with some texture."""
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random(shape), sigma=(2, 2, 0)[: len(shape)]) + 0.1 * rng.random(shape)
    a = (a - a.min()) / (a.max() - a.min())
    return (a * 255).round().astype(np.uint8)


def _write(path, img) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    io.imsave(str(path), img, check_contrast=False)


def _run(mod, argv, capsys) -> tuple[int, str, str]:
    rc = mod.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


# --------------------------------------------------------------------------- deblur
def test_deblur_table_and_cache(tmp_path, models, capsys):
    data = tmp_path / "kodak"
    for i in range(2):
        _write(data / f"im{i}.png", _smooth((24, 26, 3), i))
    levin = tmp_path / "levin.npz"
    k_even = np.zeros((4, 5), np.float32)
    k_even[1, 1:4] = 1.0  # even height: padded to odd
    np.savez(levin, k00=np.ones((3, 3), np.float32), k01=k_even)
    cache = tmp_path / "cache.json"
    argv = [
        "--data", str(data), "--blurs", "1.5", "--noises", "0.01,0.05", "--levin",
        "--levin-file", str(levin), "--model", models["polyblur"], "--cache", str(cache),
        "--global-iters", "2", "--rl-iters", "3", "--threads", "1",
    ]  # fmt: skip
    rc, out, _ = _run(deblur, argv, capsys)
    assert rc == 0
    assert "| blur | noise | pkn | global | rl | wiener | blurred |" in out
    for row in ("| Gaussian 1.5 px | 0.01 |", "| Gaussian 1.5 px | 0.05 |", "| levin k01 | 0.05 |"):
        assert row in out
    assert "Command: `python -m pkn bench deblur --data" in out
    store = json.loads(cache.read_text())
    assert len(store) == 3 * 2 * 2 * 5  # blurs x noises x images x rows
    # the untrained polyblur model is the identity (b = c = d = 0): pkn == blurred
    key = "deblur|kodak|g1.5 n0.01|{}|im0"
    pkn = next(v for k, v in store.items() if k.startswith("deblur|kodak|g1.5 n0.01|pkn@"))
    assert pkn["psnr"] == pytest.approx(store[key.format("blurred")]["psnr"], abs=1e-3)
    # a second run reads everything from the cache and prints the same table
    rc, out2, _ = _run(deblur, argv, capsys)
    assert rc == 0 and "[1/2]" not in out2
    assert out2.split("Command:")[1] == out.split("Command:")[1]


def test_deblur_missing_model_is_a_clear_error(tmp_path, capsys):
    _write(tmp_path / "im.png", _smooth((20, 20, 3), 0))
    argv = ["--data", str(tmp_path), "--blurs", "1", "--noises", "0.01"]
    rc, _, err = _run(deblur, [*argv, "--model", str(tmp_path / "none.safetensors")], capsys)
    assert rc == 2 and "polyblur" in err and "--model" in err
    rc, out, _ = _run(deblur, [*argv, "--rows", "rl,wiener,blurred"], capsys)  # no model needed
    assert rc == 0 and "| Gaussian 1 px | 0.01 |" in out


def test_odd_psf_keeps_centre_and_sum():
    k = deblur.odd_psf(np.arange(1, 13, dtype=np.float32).reshape(4, 3))
    assert k.shape == (5, 3) and k.sum() == pytest.approx(1.0)
    assert k[-1].sum() == 0 and k[2, 1] == pytest.approx(8 / 78)  # (kh // 2, kw // 2) kept


# --------------------------------------------------------------------------- upsample
def test_upsample_table(tmp_path, models, capsys):
    _write(tmp_path / "kodak24" / "a.png", _smooth((30, 31, 3), 1))
    _write(tmp_path / "set12" / "b.png", _smooth((25, 24), 2))
    argv = [
        "--data", str(tmp_path), "--scales", "1.5,2", "--noises", "0,0.05",
        "--rows", "pkn,bicubic,lanczos,global", "--model", models["rbf"],
        "--global-iters", "2", "--threads", "1",
    ]  # fmt: skip
    rc, out, _ = _run(upsample, argv, capsys)
    assert rc == 0
    assert "| set | scale | noise | pkn | bicubic | lanczos | global |" in out
    for row in ("| kodak24 | 1.5 | 0 |", "| kodak24 | 2 | 0.05 |", "| set12 | 1.5 | 0.05 |"):
        assert row in out
    assert "border of ceil(scale) px" in out


def test_upsample_exact_factor():
    img = np.zeros((31, 32, 3), np.float32)
    hr, lr = upsample.make_pair(img, 1.5, 0.0, 0)
    assert hr.shape == (30, 30, 3) and lr.shape == (20, 20, 3)
    hr, lr = upsample.make_pair(img[..., 0], 3.0, 0.1, 0)
    assert hr.shape == (30, 30) and lr.shape == (10, 10) and lr.std() > 0
    assert upsample.lanczos(lr, (30, 30)).shape == (30, 30)
    assert upsample.bicubic(lr, (30, 30)).shape == (30, 30)


# --------------------------------------------------------------------------- microscopy
def test_microscopy_table(tmp_path, models, capsys):
    rng = np.random.default_rng(0)
    clean = _smooth((32, 32), 3)
    noisy = np.clip(0.5 * clean + 20 + 8 * rng.standard_normal(clean.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    _write(tmp_path / "w2s" / "noisy" / "input_avg1_001_0.tif", noisy)
    _write(tmp_path / "w2s" / "clean" / "target_avg400_001_0.tif", clean)
    _write(tmp_path / "srdtrans" / "noisy" / "0.png", noisy)
    _write(tmp_path / "srdtrans" / "clean" / "0.png", clean)
    argv = ["--data", str(tmp_path), "--model", models["nlm"], "--threads", "1"]
    rc, out, _ = _run(microscopy, argv, capsys)
    assert rc == 0
    assert "| data set | images | noisy | skimage | pkn | pkn noise model (estimated) |" in out
    assert "| w2s | 1 |" in out and "| srdtrans | 1 |" in out
    assert "pkn noise estimate:" in out  # per-image progress says what was estimated


def test_microscopy_unpaired_is_a_clear_error(tmp_path, capsys):
    _write(tmp_path / "w2s" / "noisy" / "input_avg1_001_0.tif", _smooth((16, 16), 0))
    _write(tmp_path / "w2s" / "clean" / "target_avg400_002_0.tif", _smooth((16, 16), 0))
    rc, _, err = _run(microscopy, ["--data", str(tmp_path), "--rows", "noisy"], capsys)
    assert rc == 2 and "no clean image" in err


# --------------------------------------------------------------------------- helpers
def test_affine_metrics_ignore_gain_and_offset():
    rng = np.random.default_rng(0)
    clean = rng.random((24, 24))
    y = clean + 0.05 * rng.standard_normal(clean.shape)
    a, b = _common.affine_metrics(y, clean), _common.affine_metrics(3.0 * y - 0.5, clean)
    assert a["psnr"] == pytest.approx(b["psnr"]) and a["ssim"] == pytest.approx(b["ssim"])
    assert b["alpha"] == pytest.approx(a["alpha"] / 3.0)


def test_cache_merges_separate_runs(tmp_path):
    path = tmp_path / "c.json"
    c1, c2 = _common.Cache(path), _common.Cache(path)
    c1.put("a", {"psnr": 1.0})
    c2.put("b", {"psnr": 2.0})  # c2 was opened before "a" was written: merged, not lost
    assert set(json.loads(path.read_text())) == {"a", "b"}


def test_table1_rows_cache_and_joint_variant(tmp_path, monkeypatch, capsys):
    from pkn.benchmarks import denoise

    imgs = [(f"im{i}", _smooth((24, 28, 3), i).astype(np.float32) / 255.0) for i in range(2)]
    monkeypatch.setitem(denoise.DATASETS, "kodak24", lambda: imgs)
    model = PKNModel("nlm", guided=True, options={"joint": True})
    joint = save_model(model, tmp_path / "j.safetensors")
    cache = tmp_path / "cache.json"
    kw = {"model": str(joint), "cache": cache, "oracle_iters": 2, "log": lambda *_: None}
    t = denoise.run("nlm", [0.1], ["global", "network", "oracle"], **kw)
    r = t[0.1]
    assert r["oracle"]["psnr"] >= r["global"]["psnr"] - 1e-6  # starts from the global optimum
    keys = json.loads(cache.read_text())
    # the baselines ran with the network's options (joint distances): the key says so
    assert sum(k.startswith("nlm+joint|global|0.1|") for k in keys) == 2
    again = denoise.run("nlm", [0.1], ["global", "network", "oracle"], **kw)
    assert again == t  # everything came from the cache
    with torch.no_grad():  # "retrained": same file name, other weights -> measured afresh
        model.net.head.bias.add_(1.0)
    save_model(model, tmp_path / "j.safetensors")
    other = denoise.run("nlm", [0.1], ["network"], **kw)
    assert other[0.1]["network"]["psnr"] != t[0.1]["network"]["psnr"]
    with pytest.raises(ValueError, match="differ from the model"):
        denoise.run("nlm", [0.1], ["network"], model=str(joint), options={}, log=print)
    with pytest.raises(ValueError, match="drives kernel"):
        denoise.run("bilateral", [0.1], ["network"], model=str(joint), log=print)
    md = denoise.markdown(t, ["global", "network", "oracle"], "nlm", "cmd")
    assert "paper" in md and md.count("\n| 0.1 |") == 1
    assert "paper" not in denoise.markdown(t, ["network"], "nlm", "cmd", paper=False)


# --------------------------------------------------------------------------- restore


@pytest.mark.parametrize("kernel", ["nlm", "anisotropic"])
def test_restore_speed_table_for_a_kernel(kernel, capsys):
    argv = ["--size", "40x48", "--repeat", "1", "--kernel", kernel]
    rc, out, _ = _run(restore_speed, argv, capsys)
    assert rc == 0
    assert f"| pkn.restore ({kernel}), noise given |" in out
    assert "|   of which: filter only (Restorer.render) |" in out
    assert ("Largest predicted sigma" in out) == (kernel == "anisotropic")
    last = out.strip().splitlines()[-1]
    if kernel == "nlm":
        assert last.endswith(("pass", "FAIL"))
    else:
        assert "the target is the nlm model's" in last


def test_restore_speed_rejects_a_kernel_that_does_not_denoise(capsys):
    with pytest.raises(SystemExit):
        restore_speed.main(["--kernel", "polyblur"])
    assert "invalid choice: 'polyblur'" in capsys.readouterr().err
