"""``python -m benchmarks microscopy`` and its baselines (``benchmarks/_baselines.py``).

The generalized Anscombe transform and its unbiased inverse on synthetic
Poisson-Gaussian data, the best Gaussian blur on a case whose optimum is known, the noise
model switch, and the command line on tiny data sets laid out like the real ones (every
method, bm3d included, on 32x32 images, with an untrained throwaway model), its cache and
its subsets. That pkn and napari_pkn never import bm3d (a benchmark-only extra) is
checked by tests/test_packaging.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage import io

from benchmarks import _baselines as bl
from benchmarks import microscopy
from pkn.metrics import affine_metrics
from pkn.models.io import save_model
from pkn.models.pkn_model import PKNModel


# --------------------------------------------------------------------------- GAT
@pytest.mark.parametrize(
    ("a", "b", "mu"),
    [(0.01, 1e-4, 0.0), (0.002, 4e-6, 0.0), (0.01, -1e-3, 0.2), (0.05, 1e-3, 0.0)],
)
def test_gat_stabilises_and_its_inverse_is_unbiased(a, b, mu):
    """z = a * Poisson((x - mu) / a) + mu + N(0, s^2), var = a * x + b with
    b = s^2 - a * mu: f(z) has about unit variance, and the inverse of the mean of f(z)
    (what an ideal denoiser returns) is x, down to a few counts."""
    rng = np.random.default_rng(0)
    s = np.sqrt(b + a * mu)
    for x in (0.03, 0.1, 0.3, 0.6, 0.9):
        if x <= mu + 2 * a:
            continue
        z = a * rng.poisson((x - mu) / a, 200_000) + mu + s * rng.standard_normal(200_000)
        f = bl.gat_forward(z, a, b)
        counts = (x - mu) / a
        if counts >= 5:
            assert f.var() == pytest.approx(1.0, abs=0.05), (x, f.var())
        back = float(bl.gat_inverse(np.array([f.mean()]), a, b)[0])
        naive = ((f.mean() * a / 2) ** 2 - 0.375 * a * a - b) / a  # algebraic inverse
        assert abs(back - x) < 0.08 * a + 0.002 * x, (x, back)
        assert abs(back - x) < abs(naive - x)  # the unbiased inverse removes the bias


def test_gat_inverse_is_continuous_and_clipped_at_the_floor():
    a, b = 0.01, 1e-4
    d = np.linspace(0.0, 6.0, 601)
    y = bl.gat_inverse(d, a, b)
    assert np.all(np.diff(y) >= -1e-12)  # monotone: no blow-up of the D^-3 term
    assert np.all(y >= 0) and y[0] == 0
    assert bl.gat_inverse(np.array([bl.GAT_MIN]), a, b)[0] == pytest.approx(0.0, abs=1e-6)
    # a camera offset (b < 0) is the floor
    assert bl.gat_inverse(np.array([0.0]), 0.01, -1e-3)[0] == pytest.approx(0.1)


def test_gat_without_signal_dependence_is_a_scaling():
    z = np.random.default_rng(1).standard_normal(100)
    f = bl.gat_forward(z, 0.0, 0.04)
    assert np.allclose(f, z / 0.2) and np.allclose(bl.gat_inverse(f, 0.0, 0.04), z)


def test_gat_denoisers_reduce_poisson_gaussian_noise():
    rng = np.random.default_rng(2)
    clean = gaussian_filter(rng.random((32, 32)), 3)
    clean = (clean - clean.min()) / (clean.max() - clean.min()) * 0.8 + 0.1
    a, b = 0.01, 1e-4
    noisy = (a * rng.poisson(clean / a) + np.sqrt(b) * rng.standard_normal(clean.shape)).astype(
        np.float32
    )
    model = bl.NoiseParams(a, b, "given")
    before = affine_metrics(noisy, clean)["psnr"]
    for fn in (bl.gat_bm3d, bl.gat_nlm):
        out = fn(noisy, model)
        assert out.shape == noisy.shape and out.dtype == np.float32
        assert affine_metrics(out, clean)["psnr"] > before + 2, fn.__name__
    # BM3D on the benchmark's --threads (its library's default is every core)
    one = bl.gat_bm3d(noisy, model, threads=1)
    np.testing.assert_array_equal(one, bl.gat_bm3d(noisy, model, threads=1))
    np.testing.assert_allclose(one, bl.gat_bm3d(noisy, model), atol=1e-4)


# --------------------------------------------------------------------------- Gaussian
def test_gaussian_best_finds_the_known_optimum():
    """The clean image is the input blurred with sigma 1.5 (up to gain and offset)."""
    base = np.random.default_rng(3).random((48, 48))
    clean = gaussian_filter(base, 1.5, mode="reflect", truncate=4.0)
    out, sigma = bl.gaussian_best(2.0 * base + 0.3, clean)
    assert sigma == pytest.approx(1.5, abs=0.02)
    assert affine_metrics(out, clean)["psnr"] > 60


def test_affine_psnr_matches_affine_metrics():
    rng = np.random.default_rng(4)
    clean = rng.random((20, 20))
    y = 3 * clean - 1 + 0.1 * rng.standard_normal(clean.shape)
    assert bl.affine_psnr(y, clean) == pytest.approx(affine_metrics(y, clean)["psnr"])


def test_noise_model_uses_calibrate_when_the_library_has_it(monkeypatch):
    from pkn import noise

    x = np.random.default_rng(5).random((32, 32)).astype(np.float32)
    with monkeypatch.context() as mp:  # a library before calibrate
        mp.delattr(noise, "calibrate", raising=False)
        mp.setattr(noise, "estimate_poisson_gaussian", lambda image: (0.03, 2e-4))
        assert bl.noise_model(x) == bl.NoiseParams(0.03, 2e-4, "estimate_poisson_gaussian")
        assert bl.noise_source() == "estimate_poisson_gaussian"

    class Model:
        a, b = 0.02, 1e-4

    monkeypatch.setattr(noise, "calibrate", lambda image, **kw: Model(), raising=False)
    assert bl.noise_model(x) == bl.NoiseParams(0.02, 1e-4, "calibrate")
    assert bl.noise_source() == "calibrate"


# --------------------------------------------------------------------------- command line
def _smooth(shape, seed) -> np.ndarray:
    """A smooth random uint8 image with some texture."""
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random(shape), 2) + 0.1 * rng.random(shape)
    a = (a - a.min()) / (a.max() - a.min())
    return (a * 255).round().astype(np.uint8)


def _write(path: Path, img) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    io.imsave(str(path), img, check_contrast=False)


def _noisy_of(clean: np.ndarray, seed: int, gain: float = 4.0, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    z = gain * rng.poisson(clean.astype(np.float64) / gain) + offset
    return z + 2 * rng.standard_normal(clean.shape)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """W2S (2 fields of view x 2 channels), SRDTrans (2 pairs) and a 16-bit bacteria pair."""
    root = tmp_path_factory.mktemp("microscopy")
    for i in (1, 2):
        for ch in (0, 1):
            clean = _smooth((32, 32), 10 * i + ch)
            noisy = np.clip(_noisy_of(clean, i + ch) * 0.7 + 10, 0, 255).astype(np.uint8)
            _write(root / "w2s" / "noisy" / f"input_avg1_{i:03d}_{ch}.tif", noisy)
            _write(root / "w2s" / "clean" / f"target_avg400_{i:03d}_{ch}.tif", clean)
    for i in (0, 1):
        clean = _smooth((32, 32), 40 + i)
        noisy = np.clip(_noisy_of(clean, 50 + i), 0, 255).astype(np.uint8)
        _write(root / "srdtrans" / "noisy" / f"{i}.png", noisy)
        _write(root / "srdtrans" / "clean" / f"{i}.png", clean)
    clean16 = _smooth((32, 32), 60).astype(np.uint16) * 10
    noisy16 = np.clip(_noisy_of(clean16, 61, gain=3.0, offset=111), 0, 65535).astype(np.uint16)
    _write(root / "bacteria16" / "noisy_avg1_16bit.png", noisy16)
    _write(root / "bacteria16" / "target_avg_16bit.png", clean16)
    return root


@pytest.fixture(scope="module")
def nlm_model(tmp_path_factory) -> str:
    """An untrained NLM model (constant initial parameters)."""
    return str(save_model(PKNModel("nlm"), tmp_path_factory.mktemp("m") / "nlm.safetensors"))


def _run(argv, capsys) -> tuple[int, str, str]:
    rc = microscopy.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _computed(err: str) -> list[str]:
    """The per-image progress lines: what was computed (not read from the cache)."""
    return [ln.strip() for ln in err.splitlines() if ln.startswith("  [")]


def test_every_method(data, nlm_model, tmp_path, capsys):
    """Every default method on W2S (two channels) and the 16-bit pair (bm3d costs about
    1.5 s per call even on 32x32: SRDTrans is left to the other tests)."""
    cache = tmp_path / "cache.json"
    argv = ["--data", str(data), "--model", nlm_model, "--threads", "1", "--cache", str(cache)]
    argv += ["--datasets", "w2s", "bacteria16", "--channels", "0", "1", "--oracle-subset", "2"]
    argv += ["--oracle-iters", "3", "--markdown"]
    rc, out, err = _run(argv, capsys)
    assert rc == 0, err
    header = "| data set | images | noisy | pkn | gaussian-best † | gat-bm3d | gat-nlm | global † "
    assert header in out
    for group in ("w2s ch0", "w2s ch1", "w2s all", "bacteria16"):
        assert f"**{group}**" in out and f"| {group} |" in out
    rows = out.splitlines()
    for method in ("| noisy |", "| pkn |", "| gaussian-best † |", "| gat-bm3d |", "| gat-nlm |"):
        assert sum(r.startswith(method) for r in rows) == 4, method
    assert out.count("| global † | 1 of 2 |") == 2 and "| global † | 2 of 4 |" in out
    assert "| oracle † | 1 |" in out  # bacteria16
    assert "Strongest blind baseline:" in out and "dB vs pkn" in out
    assert "**" in out.split("| method |")[1]  # a best value in bold
    # 4 W2S + 1 bacteria images: 5 methods each; global and oracle on 1 + 1 W2S (one in 2
    # of each channel) and the bacteria image
    lines = _computed(err)
    assert len(lines) == 5 * 5 + 3 * 2
    keys = json.loads(cache.read_text())
    assert len(keys) == len(lines)
    entry = next(v for k, v in keys.items() if "|gat-bm3d" in k)
    assert {"psnr", "ssim", "seconds", "alpha", "beta", "noise"} <= set(entry)

    # a rerun reads everything from the cache and prints the same tables
    rc, out2, err2 = _run(argv, capsys)
    assert rc == 0 and not _computed(err2) and out2 == out


def test_cache_fills_only_the_gaps(data, nlm_model, tmp_path, capsys):
    base = ["--data", str(data), "--model", nlm_model, "--threads", "1"]
    base += ["--cache", str(tmp_path / "c.json"), "--datasets", "srdtrans"]
    rc, out, err = _run([*base, "--methods", "noisy", "pkn"], capsys)
    assert rc == 0 and len(_computed(err)) == 4
    assert "srdtrans" in out and "gat-nlm" not in out  # plain text without --markdown
    rc, out, err = _run([*base, "--methods", "noisy", "pkn", "gat-nlm"], capsys)
    assert rc == 0 and [ln.split()[-7] for ln in _computed(err)] == ["gat-nlm:"] * 2
    assert "gat-nlm" in out


def test_subset_takes_every_nth_pair_per_channel(data, tmp_path, capsys):
    argv = ["--data", str(data), "--datasets", "w2s", "--channels", "1", "--subset", "2"]
    rc, out, err = _run([*argv, "--methods", "noisy", "--markdown"], capsys)
    assert rc == 0
    assert "| w2s ch1 | 1 |" in out and "w2s ch0" not in out and "one pair in 2" in out
    assert [ln.split()[3] for ln in _computed(err)] == ["001_1"]


def test_unpaired_and_missing_data_are_clear_errors(tmp_path, capsys):
    _write(tmp_path / "w2s" / "noisy" / "input_avg1_001_0.tif", _smooth((16, 16), 0))
    _write(tmp_path / "w2s" / "clean" / "target_avg400_002_0.tif", _smooth((16, 16), 0))
    rc, _, err = _run(["--data", str(tmp_path), "--methods", "noisy"], capsys)
    assert rc == 2 and "no clean image" in err
    rc, _, err = _run(
        ["--data", str(tmp_path), "--datasets", "srdtrans", "--methods", "noisy"], capsys
    )
    assert rc == 2 and "srdtrans" in err


def test_find_pairs_groups_w2s_by_channel(data):
    groups = microscopy.find_pairs(data, "w2s", channels=(0, 1))
    assert list(groups) == ["w2s ch0", "w2s ch1"]
    assert [p.name for p in groups["w2s ch1"]] == ["001_1", "002_1"]
    (pair,) = microscopy.find_pairs(data, "bacteria16")["bacteria16"]
    noisy, clean = pair.load()
    assert noisy.shape == clean.shape == (32, 32) and noisy.min() > 100 / 65535


def test_the_kernel_follows_the_model(data, tmp_path, capsys):
    """``--model`` of another kernel without ``--kernel`` runs that kernel (it used to be
    refused as "not a nlm model"); a contradicting ``--kernel`` is still a clear error."""
    model = str(save_model(PKNModel("gaussian"), tmp_path / "g.safetensors"))
    argv = ["--data", str(data), "--datasets", "srdtrans", "--methods", "pkn", "--threads", "1"]
    rc, out, err = _run([*argv, "--model", model, "--markdown"], capsys)
    assert rc == 0, err
    assert "PKN: kernel gaussian, model g" in out
    rc, out, err = _run([*argv, "--model", model, "--kernel", "nlm"], capsys)
    assert rc == 2 and "drives the 'gaussian' kernel" in err
