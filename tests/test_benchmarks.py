"""The repository's benchmarks (``python -m benchmarks <name>``, not installed).

Smoke tests of ``deblur``, ``upsample`` and ``table1`` on tiny synthetic images written
to ``tmp_path``, with untrained throwaway models (``microscopy``: its own test file); of
``restore`` on a tiny image with the shipped models; of ``kernels`` on a tiny image,
every kernel of the registry; and of the data root (``--data`` / ``$PKN_DATA``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage import io

from benchmarks import _common, _measure, deblur, restore_speed, upsample
from benchmarks import kernels as kernels_bench
from pkn.kernels.registry import get, names
from pkn.models.io import save_model
from pkn.models.pkn_model import PKNModel

REPO = Path(__file__).resolve().parents[1]


def run_benchmarks(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m benchmarks ARGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


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
    np.savez(levin, k00=np.pad(np.ones((3, 3), np.float32), 1), k01=k_even)
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
    assert "Command: `python -m benchmarks deblur --data" in out
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
    from benchmarks import denoise

    imgs = [(f"im{i}", _smooth((24, 28, 3), i).astype(np.float32) / 255.0) for i in range(2)]
    monkeypatch.setitem(denoise.DATASETS, "kodak24", lambda root: imgs)
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
    # the maps in pixels (the Gaussian kernels' window follows them) are reported
    px = [p.name for p in get(kernel).params if p.unit == "px"]
    assert ("Largest predicted map in pixels (" + ", ".join(px) + ")" in out) == bool(px)
    last = out.strip().splitlines()[-1]
    if kernel == "nlm":
        assert last.endswith(("pass", "FAIL"))
    else:
        assert "the target is the nlm model's" in last


def test_restore_speed_rejects_a_kernel_that_does_not_denoise(capsys):
    with pytest.raises(SystemExit):
        restore_speed.main(["--kernel", "polyblur"])
    assert "invalid choice: 'polyblur'" in capsys.readouterr().err


def test_restore_speed_offers_the_denoising_kernels_of_the_registry(capsys):
    with pytest.raises(SystemExit):
        restore_speed.main(["--help"])
    help_text = capsys.readouterr().out
    for name in names(task="denoise", network=True):
        assert name in help_text


# --------------------------------------------------------------------------- data root
def test_data_root_comes_from_pkn_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PKN_DATA", str(tmp_path))
    assert _common.data_root() == tmp_path
    _write(tmp_path / "kodak24" / "im.png", _smooth((20, 22, 3), 0))
    argv = ["--blurs", "1", "--noises", "0.01", "--rows", "blurred"]
    rc, out, _ = _run(deblur, argv, capsys)  # no --data: $PKN_DATA/kodak24
    assert rc == 0 and str(tmp_path / "kodak24") in out
    monkeypatch.delenv("PKN_DATA")
    assert _common.data_root() == REPO.parent / "shared" / "data"  # the repository's default


def test_deblur_levin_kernels_from_pkn_data(tmp_path, monkeypatch):
    monkeypatch.setenv("PKN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--levin-file"):
        deblur.blur_kernels([], levin=True)
    (tmp_path / "psf").mkdir()
    np.savez(tmp_path / "psf" / "levin09_blur_kernels.npz", k00=np.ones((3, 3), np.float32))
    assert [label for label, _ in deblur.blur_kernels([1.0], levin=True)] == ["g1", "levin-k00"]


# --------------------------------------------------------------------------- dispatcher
def test_benchmarks_help_and_unknown_name():
    from benchmarks.__main__ import BENCHMARKS, main

    proc = run_benchmarks("--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name, (target, description) in BENCHMARKS.items():
        assert name in proc.stdout and description in proc.stdout
        assert target.startswith("benchmarks.")
    assert main(["nosuchbench"]) == 2
    assert main([]) == 2


def test_benchmarks_dispatch_passes_the_remaining_arguments(monkeypatch):
    from benchmarks.__main__ import BENCHMARKS, main

    seen = []
    fake = type(sys)("bench_fake")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "bench_fake", fake)
    monkeypatch.setitem(BENCHMARKS, "fake", ("bench_fake:main", "a fake"))
    assert main(["fake", "--x", "1"]) == 7
    assert seen == [["--x", "1"]]


# --------------------------------------------------------------------------- kernels
def test_kernel_benchmark_reads_the_registry():
    """Every kernel of the registry, by its one name, in registry order; the settings are
    the kernels' own example descriptions."""
    assert _measure.kernel_names() == names()
    assert _measure.names() == [*names(), _measure.SKIMAGE]
    for name in names():
        assert _measure.settings(name) == get(name).example_doc
    for old in ("gaussian_aniso", "rbf_resample"):
        with pytest.raises(ValueError, match="unknown benchmark"):
            _measure.build(old, 16, 16)


@pytest.mark.parametrize("name", [*names(), _measure.SKIMAGE])
def test_build_runs_every_kernel_at_the_output_size(name):
    run, input_bytes = _measure.build(name, 18, 22)
    with torch.no_grad():
        out = run()
    assert tuple(out.shape[-2:]) == (18, 22)
    # a resampling kernel gets a half-size input: x2 in each direction
    resamples = name != _measure.SKIMAGE and "size" in get(name).inputs
    assert input_bytes == 4 * (9 * 11 if resamples else 18 * 22)


def test_bench_kernels_small_markdown():
    args = ["--size", "64x96", "--repeat", "1", "--threads", "1", "--only", "nlm", "rbf"]
    proc = run_benchmarks("kernels", *args, "--markdown")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "python -m benchmarks kernels --size 64x96" in out  # the command line on top
    assert "date:" in out and "torch threads: 1" in out
    header = "| kernel | seconds | MP/s (output) | peak MB over input | time vs skimage NLM |"
    assert header in out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"skimage_nlm", "nlm", "rbf"} <= set(rows)
    assert "reference" in rows["skimage_nlm"]
    for name in ("nlm", "rbf"):
        cells = [c.strip() for c in rows[name].split("|")[1:-1]]
        assert "error" not in rows[name]
        assert float(cells[1]) >= 0 and float(cells[2]) > 0  # seconds, MP/s
        assert cells[5].startswith(("pass", "FAIL"))  # the target was checked
    assert f"- rbf: {get('rbf').example_doc}" in out


def test_bench_kernels_rejects_unknown_and_old_kernel_names():
    for bad in ("nosuchkernel", "gaussian_aniso"):
        proc = run_benchmarks("kernels", "--only", bad, timeout=120)
        assert proc.returncode == 2
        assert bad in proc.stderr


def test_synthetic_image_is_seeded_noisy_and_in_range():
    from benchmarks._measure import synthetic_image

    a, b = synthetic_image(120, 160, seed=3), synthetic_image(120, 160, seed=3)
    assert a.dtype == "float32" and a.shape == (120, 160)
    assert (a == b).all() and not (a == synthetic_image(120, 160, seed=4)).all()
    assert a.std() > 0.1 and -0.3 < a.min() and a.max() < 1.3
    assert 0.2 < float(a.mean()) < 0.8


def test_peak_meter_sees_a_large_allocation():
    from benchmarks._measure import PeakMeter

    with PeakMeter() as meter:
        block = np.ones(50_000_000, dtype=np.uint8)  # 50 MB, touched
        del block
    assert meter.increase >= 40e6, meter.method


def test_evaluate_marks_targets():
    evaluate, format_table = kernels_bench.evaluate, kernels_bench.format_table

    def r(name, seconds, peak=0.0, mp=12.0):
        return {
            "name": name,
            "ok": True,
            "seconds": seconds,
            "out_megapixels": mp,
            "mp_per_s": mp / seconds,
            "peak_bytes": peak,
            "input_bytes": 48e6,
        }

    results = evaluate(
        [
            r("skimage_nlm", 10.0),
            r("nlm", 4.0, peak=300e6),
            r("gaussian", 1.0),
            r("kpn", 5.0),
            {"name": "affine", "ok": False, "error": "ImportError: nope"},
        ]
    )
    target = {x["name"]: x["target"] for x in results}
    assert target["skimage_nlm"] == "reference"
    assert target["nlm"].startswith("pass")  # 0.4x <= 0.5x; 300 MB <= 4 * 48 + 200 MB
    assert target["gaussian"].startswith("pass") and target["kpn"].startswith("FAIL")
    assert "not measured" in target["affine"]
    slow = evaluate([r("skimage_nlm", 10.0), r("nlm", 6.0, peak=500e6)])[1]["target"]
    assert slow.startswith("FAIL") and "time" in slow and "peak" in slow
    text = format_table(results)
    assert "error: ImportError: nope" in text and "0.40x" in text


def test_combine_rounds_takes_each_kernels_median_round():
    combine_rounds = kernels_bench.combine_rounds

    def r(name, seconds, ok=True):
        return {"name": name, "ok": ok, "seconds": seconds, "round_tag": seconds}

    rounds = [
        [r("skimage_nlm", 2.5), r("nlm", 1.2), {"name": "kpn", "ok": False, "error": "x"}],
        [r("skimage_nlm", 2.3), r("nlm", 0.9), r("kpn", 0.7)],
        [r("skimage_nlm", 2.4), r("nlm", 1.0), {"name": "kpn", "ok": False, "error": "y"}],
    ]
    out = {x["name"]: x for x in combine_rounds(rounds)}
    assert [x["name"] for x in combine_rounds(rounds)] == ["skimage_nlm", "nlm", "kpn"]
    assert out["skimage_nlm"]["seconds"] == 2.4 and out["nlm"]["seconds"] == 1.0
    assert out["nlm"]["seconds_rounds"] == [0.9, 1.0, 1.2]
    assert out["kpn"]["seconds"] == 0.7  # the only round that measured it
    two = combine_rounds([[r("nlm", 1.0)], [r("nlm", 2.0)]])[0]
    assert two["seconds"] == 1.0  # even count: the lower middle round
    failed = combine_rounds([[{"name": "affine", "ok": False, "error": "e"}]])[0]
    assert failed == {"name": "affine", "ok": False, "error": "e"}


# --------------------------------------------------------------------------- correlated
def test_correlated_noise_of_the_benchmark_has_its_stated_correlation():
    from benchmarks import correlated

    img = np.full((160, 170, 3), 0.5, np.float32)
    for kind in ("box2", "aniso"):
        n = correlated.noisy_image(img, 0.1, kind, 0)[..., 0] - 0.5
        c = correlated.correlation_of(correlated.noise_kernel(kind))
        v = n.var()
        assert float(np.sqrt(v)) == pytest.approx(0.1, rel=0.05)
        assert float((n[:, 1:] * n[:, :-1]).mean() / v) == pytest.approx(c[2, 3], abs=0.03)
        assert float((n[1:] * n[:-1]).mean() / v) == pytest.approx(c[3, 2], abs=0.03)
    white = correlated.correlation_of(None)
    assert white[2, 2] == 1 and np.count_nonzero(white) == 1
    with pytest.raises(ValueError, match="kind"):
        correlated.noise_kernel("pink")


def test_correlated_table_rows_and_cache(tmp_path, monkeypatch, capsys):
    from benchmarks import correlated

    imgs = [(f"im{i}", _smooth((32, 36, 3), i).astype(np.float32) / 255.0) for i in range(2)]
    monkeypatch.setattr(correlated, "load_kodak", lambda root, n=None: imgs[:n])
    model = PKNModel("nlm", guided=True, options={"joint": True}, correlated=True)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the correlation input matters (random weights)
        for p in model.net.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    path = save_model(model, tmp_path / "c.safetensors")
    cache = tmp_path / "cache.json"
    white = save_model(
        PKNModel("nlm", guided=True, options={"joint": True}), tmp_path / "w.safetensors"
    )
    argv = [
        "--model",
        str(path),
        "--white",
        str(white),
        "--sigmas",
        "0.1",
        "--kinds",
        "white,box2",
        "--cache",
        str(cache),
    ]
    rc, out, _ = _run(correlated, argv, capsys)
    assert rc == 0 and "| box2 | 0.1 |" in out and "corr-est" in out
    t = correlated.run(
        [0.1],
        ["box2"],
        list(correlated.ROWS),
        model=str(path),
        white=str(white),
        cache=str(cache),
        log=lambda *_: None,
    )
    r = t["box2"][0.1]
    assert r["corr"]["psnr"] != r["corr-white"]["psnr"]  # the model was told something
    keys = json.loads(cache.read_text())
    assert len(keys) == 2 * 2 * len(correlated.ROWS)  # 2 kinds x 2 images x rows
    with pytest.raises(SystemExit, match="correlation"):
        correlated.run([0.1], ["box2"], ["corr"], model=str(white), log=print)
    with pytest.raises(SystemExit, match="--white"):
        correlated.run([0.1], ["box2"], ["white"], model=str(path), log=print)
