"""Training: data, degradations, losses, the seeded/resumable loop and its CLI."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pkn.models.io import file_sha256, load_model
from pkn.models.pkn_model import PKNModel
from pkn.training import loop
from pkn.training._validate import check_config
from pkn.training.cli import main as cli_main
from pkn.training.data import ImageBank, load_folder, training_dir
from pkn.training.loop import TrainConfig, degrade_batch, restore_batch, train
from pkn.training.losses import LOSSES, get_loss, ms_ssim, psnr, ssim

N_IMAGES = 25
SIZE = (56, 64)


def _synthetic_rgb(rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    """A colour image with gradients, edges (rectangles, a disc) and a little texture."""
    y, x = np.mgrid[0:H, 0:W] / max(H, W)
    img = np.stack([x, y, 0.5 * (x + y)], -1) * rng.uniform(0.3, 1.0, 3)
    for _ in range(3):
        i0, j0 = rng.integers(0, H - 8), rng.integers(0, W - 8)
        i1, j1 = i0 + rng.integers(6, H - i0 + 1), j0 + rng.integers(6, W - j0 + 1)
        img[i0:i1, j0:j1] = rng.uniform(0, 1, 3)
    cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
    img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    img += 0.05 * np.sin(2 * np.pi * rng.uniform(3, 8) * x)[..., None]
    return (255 * np.clip(img, 0, 1)).astype(np.uint8)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from skimage import io

    folder = tmp_path_factory.mktemp("train_images")
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        io.imsave(folder / f"img_{i:02d}.png", _synthetic_rgb(rng, *SIZE), check_contrast=False)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    """``train`` switches on deterministic algorithms process-wide; undo it afterwards."""
    det = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(det, warn_only=warn)
    torch.set_num_threads(threads)


def _cfg(data_dir, out, **kw) -> TrainConfig:
    base = {
        "kernel": "nlm",
        "data": str(data_dir),
        "out": str(out),
        "iters": 6,
        "batch": 2,
        "crop": 32,
        "val_every": 3,
        "val_crop": 32,
        "seed": 0,
    }
    base.update(kw)
    return TrainConfig(**base)


def _weights(run_dir, kernel="nlm") -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / f"{kernel}.safetensors"))


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    diff = {k: float((a[k] - b[k]).abs().max()) for k in a if not torch.equal(a[k], b[k])}
    assert not diff, f"weights differ (max abs difference per tensor): {diff}"


# ---------------------------------------------------------------- data


def test_load_folder_and_bank(data_dir):
    images = load_folder(data_dir)
    assert len(images) == N_IMAGES  # the .txt file is skipped
    assert all(im.shape == (*SIZE, 3) and im.dtype == np.uint8 for im in images)
    bank = ImageBank(images)
    assert len(bank.val) == 1 and len(bank.train) == N_IMAGES - 1
    rng = np.random.default_rng(0)
    c = bank.crops(rng, 4, 32)
    assert c.shape == (4, 1, 32, 32) and c.dtype == torch.float32
    assert 0 <= float(c.min()) and float(c.max()) <= 1
    rgb = bank.crops(np.random.default_rng(0), 4, 32, rgb=True)
    assert rgb.shape == (4, 3, 32, 32)
    again = bank.crops(np.random.default_rng(0), 4, 32, rgb=True)
    assert torch.equal(rgb, again)  # seeded
    v = bank.validation_crops(32)
    assert v.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="crop size"):
        bank.crops(rng, 1, 100)


def test_load_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_folder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no images"):
        load_folder(tmp_path)
    with pytest.raises(ValueError, match="at least"):
        ImageBank([np.zeros((8, 8, 3), np.uint8)] * 5)


# ---------------------------------------------------------------- the loop


def test_training_writes_model_checkpoint_and_summary(data_dir, tmp_path):
    out = tmp_path / "run"
    summary = train(_cfg(data_dir, out), progress=False)
    for name in ("nlm.safetensors", "checkpoint.pt", "summary.json"):
        assert (out / name).is_file(), name
    model, meta = load_model(out / "nlm.safetensors")
    assert isinstance(model, PKNModel) and model.kernel == "nlm"
    assert meta["n_parameters"] == summary["n_parameters"]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["val_psnr"] == pytest.approx(summary["val_psnr"])
    assert [h["step"] for h in on_disk["history"]] == [3, 6]
    assert np.isfinite(summary["val_psnr"]) and summary["val_psnr"] > 10
    assert meta["info"]["training"]["config"]["iters"] == 6
    # the weights moved away from the constant initial maps
    assert float(model.net.head.weight.detach().abs().max()) > 0


def test_training_is_deterministic(data_dir, tmp_path):
    s1 = train(_cfg(data_dir, tmp_path / "a"), progress=False)
    s2 = train(_cfg(data_dir, tmp_path / "b"), progress=False)
    _assert_same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert s1["val_psnr"] == s2["val_psnr"]
    train(_cfg(data_dir, tmp_path / "c", seed=1), progress=False)
    with pytest.raises(AssertionError, match="weights differ"):
        _assert_same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


def test_resume_refuses_a_different_iteration_count(data_dir, tmp_path):
    """The learning-rate schedule depends on ``iters``: resuming a 3-iteration run as a
    6-iteration one would not reproduce a straight run, so it is refused clearly."""
    train(_cfg(data_dir, tmp_path / "resumed", iters=3), progress=False)
    with pytest.raises(ValueError, match="resume with --iters 3"):
        train(_cfg(data_dir, tmp_path / "resumed", resume=True), progress=False)


def test_resume_after_interruption(data_dir, tmp_path, monkeypatch):
    """A 6-iteration run killed after its step-3 checkpoint, resumed with the same config,
    ends with the same weights as an uninterrupted run."""
    train(_cfg(data_dir, tmp_path / "straight"), progress=False)

    calls = []
    real_evaluate = loop.evaluate

    def evaluate_then_die(model, batches):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real_evaluate(model, batches)

    monkeypatch.setattr(loop, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(data_dir, tmp_path / "resumed"), progress=False)
    monkeypatch.setattr(loop, "evaluate", real_evaluate)
    assert not (tmp_path / "resumed" / "nlm.safetensors").exists()
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert int(state["step"]) == 3

    summary = train(_cfg(data_dir, tmp_path / "resumed", resume=True), progress=False)
    _assert_same_weights(_weights(tmp_path / "straight"), _weights(tmp_path / "resumed"))
    assert [h["step"] for h in summary["history"]] == [3, 6]


def test_guided_training(data_dir, tmp_path):
    out = tmp_path / "guided"
    train(_cfg(data_dir, out, guided=True, iters=3), progress=False)
    model, _ = load_model(out / "nlm.safetensors")
    assert model.guided
    assert model.net.enc1.in_channels == 12


@pytest.mark.parametrize("loss", ["l1", "msssim"])
def test_other_losses_and_noise_train(data_dir, tmp_path, loss):
    out = tmp_path / loss
    s = train(
        _cfg(data_dir, out, loss=loss, noise="poisson-gaussian", iters=2, val_every=2),
        progress=False,
    )
    assert np.isfinite(s["val_psnr"])
    assert (out / "nlm.safetensors").is_file()


def test_cli_trains_and_prints_psnr(data_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--kernel", "nlm", "--data", str(data_dir), "--out", str(out), "--iters", "2"]
    argv += ["--batch", "2", "--crop", "32", "--val-every", "1", "--sigma", "0.1", "--quiet"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    m = re.search(r"validation PSNR (-?[\d.]+) dB", printed)
    assert m, printed
    summary = json.loads((out / "summary.json").read_text())
    assert float(m.group(1)) == pytest.approx(summary["val_psnr"], abs=0.006)
    assert summary["config"]["sigma"] == [0.1, 0.1]
    assert (out / "nlm.safetensors").is_file()


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--kernel", "median"])
    with pytest.raises(SystemExit):
        cli_main(["--sigma", "0.2,0.1"])
    capsys.readouterr()


# ---------------------------------------------------------------- degradations


def _clean(B=4, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(B, 3, s, s, generator=g)


@pytest.mark.parametrize("p_gray", [0.0, 1.0])
def test_degrade_batch_denoise_awgn(p_gray):
    cfg = TrainConfig(sigma=(0.1, 0.1), p_gray=p_gray)
    clean = _clean()
    d = degrade_batch(cfg, clean, np.random.default_rng(0), "denoise")
    B, s = 4, 32
    for t in (d.x, d.target, d.guide):
        assert t.shape == (B, 1, s, s)
    torch.testing.assert_close(d.noise_std.flatten(), torch.full((B,), 0.1))
    noise = d.x - d.target
    assert float(noise.std()) == pytest.approx(0.1, rel=0.05)
    assert abs(float(noise.mean())) < 0.01
    for i in range(B):  # the target is one of the clean channels
        assert any(torch.equal(d.target[i, 0], clean[i, c]) for c in range(3))
    assert d.colour.shape == (B, 3, s, s)  # every noisy channel, for joint NLM distances
    if p_gray == 1.0:
        assert torch.equal(d.guide, d.x)
        assert torch.equal(d.colour, d.x.expand(-1, 3, -1, -1))  # gray: its own distances
    else:  # the mean of the three noisy channels: noise std 0.1 / sqrt(3)
        guide_noise = d.guide[:, 0] - clean.mean(1)
        assert float(guide_noise.std()) == pytest.approx(0.1 / 3**0.5, rel=0.07)


def test_degrade_batch_is_seeded():
    cfg = TrainConfig(sigma=(0.05, 0.1))
    a = degrade_batch(cfg, _clean(), np.random.default_rng(3), "denoise")
    b = degrade_batch(cfg, _clean(), np.random.default_rng(3), "denoise")
    assert torch.equal(a.x, b.x) and torch.equal(a.guide, b.guide)
    s = a.noise_std.flatten()
    assert float(s.min()) >= 0.05 and float(s.max()) <= 0.1


def test_degrade_batch_poisson_gaussian():
    cfg = TrainConfig(noise="poisson-gaussian", pg_a=(0.01, 0.01), pg_b=(1e-3, 1e-3))
    clean = _clean(B=4, s=48, seed=1)
    d = degrade_batch(cfg, clean, np.random.default_rng(0), "denoise")
    assert d.noise_std.shape == (4, 1, 48, 48)
    z = (d.x - d.target) / d.noise_std  # noise in units of the predicted std
    assert float(z.std()) == pytest.approx(1.0, rel=0.15)


def test_degrade_batch_errors():
    with pytest.raises(ValueError, match="noise"):
        degrade_batch(TrainConfig(noise="speckle"), _clean(), np.random.default_rng(0), "denoise")
    with pytest.raises(ValueError, match="task"):
        degrade_batch(TrainConfig(), _clean(), np.random.default_rng(0), "inpaint")


def test_restore_batch_shapes():
    cfg = TrainConfig(sigma=(0.1, 0.1))
    d = degrade_batch(cfg, _clean(B=2, s=21), np.random.default_rng(0), "denoise")
    model = PKNModel("nlm", guided=True)
    with torch.no_grad():
        y, maps = restore_batch(model, d)
    assert y.shape == d.x.shape
    assert maps["sigma"].shape == (2, 1, 11, 11)
    # a joint model computes its distances on each sample's noisy colour channels
    joint = PKNModel("nlm", guided=True, options={"joint": True})
    with torch.no_grad():
        yj, maps = restore_batch(joint, d)
        ref = joint.filter(d.x, maps, guide=d.colour)
    torch.testing.assert_close(yj, ref)
    assert float((yj - joint.filter(d.x, maps)).abs().max()) > 1e-4


def test_joint_training(data_dir, tmp_path):
    out = tmp_path / "joint"
    train(_cfg(data_dir, out, guided=True, iters=2, options={"joint": True}), progress=False)
    model, _ = load_model(out / "nlm.safetensors")
    assert model.joint and model.guided


# ---------------------------------------------------------------- losses and PSNR


def _pair(B=2, s=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = 0.2 + 0.6 * torch.rand(B, 1, s, s, generator=g)
    return t, t + 0.1 * torch.randn(B, 1, s, s, generator=g)


@pytest.mark.parametrize("s", [32, 48, 64])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_zero_for_identical_positive_otherwise(name, s):
    t, y = _pair(s=s)
    fn = get_loss(name)
    same = fn(t.clone(), t)
    assert same.shape == (2,)  # per-sample losses
    assert float(same.abs().max()) < 1e-5
    diff = fn(y, t)
    assert diff.shape == (2,)
    assert float(diff.min()) > 1e-3
    assert torch.isfinite(diff).all()
    worse = fn(t + 0.3 * (y - t) / 0.1, t)  # more noise: larger loss
    assert float(worse.min()) > float(diff.max())


@pytest.mark.parametrize("s", [32, 48, 64, 96])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_see_a_brightness_shift(name, s):
    """Every loss must penalise a uniform brightness error, whatever the crop size."""
    t, _ = _pair(s=s, seed=1)
    assert float(get_loss(name)(t + 0.2, t).min()) > 1e-3


def test_ssim_values():
    t, y = _pair()
    assert torch.allclose(ssim(t, t), torch.ones(2))
    v = ssim(y, t)
    assert float(v.max()) < 1 and float(v.min()) > -1
    m = ms_ssim(y, t)
    assert m.shape == (2,) and float(m.max()) < 1 and float(m.min()) > 0


def test_losses_differentiable():
    t, y = _pair(s=40)
    for name in LOSSES:
        y2 = y.clone().requires_grad_(True)
        get_loss(name)(y2, t).mean().backward()
        assert y2.grad is not None and torch.isfinite(y2.grad).all(), name
        assert float(y2.grad.abs().sum()) > 0, name


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss") as info:
        get_loss("perceptual")
    for name in LOSSES:
        assert name in str(info.value)


def test_psnr():
    t, y = _pair()
    p = psnr(t + 1e-6, t)
    assert p.shape == (2,) and float(p.min()) > 100
    assert float(psnr(t, t).min()) > 100  # identical: large and finite
    assert torch.isfinite(psnr(t, t)).all()
    noisy = psnr(y, t)
    expected = 10 * torch.log10(1 / (y - t).square().flatten(1).mean(1))
    torch.testing.assert_close(noisy, expected)
    assert float(psnr(2 * t, 2 * y, data_range=2.0)[0]) == pytest.approx(float(noisy[0]), 1e-4)


def test_noise_power_weighting_changes_training_and_the_card_says_so(data_dir, tmp_path):
    from pkn.training.card import _weighting

    a = train(_cfg(data_dir, tmp_path / "a", iters=2, val_every=2), progress=False)
    b = train(_cfg(data_dir, tmp_path / "b", iters=2, val_every=2, noise_power=1.0), progress=False)
    assert a["config"]["noise_power"] == 0.0 and b["config"]["noise_power"] == 1.0
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)  # another loss, other gradients
    assert _weighting(a["config"]) == " weighted by 1/noise variance"
    assert _weighting(b["config"]) == " weighted by 1/noise std^1"
    assert _weighting({**b["config"], "noise_weighted": False}) == ""


# ---------------------------------------------------------------- data root and model card


def test_training_dir_from_flag_or_environment(data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("PKN_DATA", raising=False)
    assert training_dir(data_dir) == data_dir
    with pytest.raises(FileNotFoundError) as info:
        training_dir("")
    assert "--data" in str(info.value) and "PKN_DATA" in str(info.value)  # names both
    monkeypatch.setenv("PKN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        training_dir(None)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "bsds500").symlink_to(data_dir)
    assert training_dir(None) == tmp_path / "train" / "bsds500"
    assert training_dir(data_dir) == data_dir  # the flag wins over the environment


def test_cli_without_data_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("PKN_DATA", raising=False)
    with pytest.raises(SystemExit) as info:
        cli_main(["--kernel", "nlm", "--iters", "1", "--quiet"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--data DIR" in err and "PKN_DATA" in err


def test_cli_deblur_needs_the_levin_kernels(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PKN_DATA", str(tmp_path))  # no psf/ there
    argv = ["--kernel", "polyblur", "--data", str(data_dir), "--levin", "0.5", "--quiet"]
    with pytest.raises(SystemExit):
        cli_main(argv)
    assert "Levin kernels not found" in capsys.readouterr().err


def test_training_writes_its_model_card_next_to_the_model(data_dir, tmp_path):
    out = tmp_path / "run"
    cmd = f"python -m pkn train --data {data_dir} --iters 2"
    s = train(_cfg(data_dir, out, iters=2, val_every=2, command=cmd), progress=False)
    card = (out / "nlm.md").read_text()
    assert card.startswith("# Model card: `nlm`")
    assert f"SHA-256 `{file_sha256(out / 'nlm.safetensors')}`" in card
    # the data actually used, not a fixed data set
    assert f"`{data_dir.name}`, {N_IMAGES} images from `{data_dir}` (--data)" in card
    assert "1 of them (every 20th in name order) held out" in card
    assert "BSDS" not in card
    assert "- **Training**: 2 iterations, batch 2, crop 32, Adam lr 0.002" in card
    assert "seed 0" in card and "AWGN, sigma uniform in [0.05, 0.1]" in card
    assert f"**{s['n_parameters']} parameters**" in card
    assert f"```bash\n{cmd}\n```" in card  # the command line, to reproduce
    assert s["data"]["folder"] == str(data_dir) and s["data"]["images"] == N_IMAGES


def test_card_of_a_run_on_pkn_data_spells_out_the_root(data_dir, tmp_path, monkeypatch):
    root = tmp_path / "data root"
    (root / "train").mkdir(parents=True)
    (root / "train" / "bsds500").symlink_to(data_dir)
    monkeypatch.setenv("PKN_DATA", str(root))
    out = tmp_path / "run"
    cfg = _cfg("", out, kernel="gaussian", iters=1, val_every=1, command="python -m pkn train")
    s = train(cfg, progress=False)
    assert s["data"]["source"] == "$PKN_DATA/train/bsds500"
    card = (out / "gaussian.md").read_text()
    assert f"`bsds500`, {N_IMAGES} images from `{root}/train/bsds500`" in card
    assert f"PKN_DATA='{root}' python -m pkn train" in card  # quoted: the path has a space


def test_ship_script_copies_the_model_and_renders_the_card(data_dir, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "ship", Path(__file__).resolve().parents[1] / "scripts" / "ship.py"
    )
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    out = tmp_path / "run"
    train(_cfg(data_dir, out, iters=1, val_every=1, command="python -m pkn train"), progress=False)
    resources = tmp_path / "resources"
    resources.mkdir()
    metrics = tmp_path / "metrics.md"
    metrics.write_text("| set | PSNR |\n|---|---|\n| val | 30.00 |\n")
    argv = [str(out / "nlm.safetensors"), "--name", "nlm-test", "--resources", str(resources)]
    assert ship.main([*argv, "--metrics", str(metrics)]) == 0
    shipped = resources / "nlm-test.safetensors"
    assert shipped.read_bytes() == (out / "nlm.safetensors").read_bytes()
    card = (resources / "nlm-test.md").read_text()
    assert card.startswith("# Model card: `nlm-test`")
    assert f"SHA-256 `{file_sha256(shipped)}`" in card
    assert "python scripts/ship.py " in card and "--name nlm-test" in card
    assert "## Validation metrics" in card and "| val | 30.00 |" in card
    # metrics with their own sections come without an empty "Validation metrics" above
    metrics.write_text("## Real data\n\n| set | PSNR |\n|---|---|\n| w2s | 33.00 |\n")
    assert ship.main([*argv, "--metrics", str(metrics)]) == 0
    card2 = (resources / "nlm-test.md").read_text()
    assert "## Validation metrics" not in card2 and "## Real data\n\n| set" in card2
    # the training card and the shipped one describe the same run
    trained = (out / "nlm.md").read_text()
    assert trained.split("- **Training data**")[1].split("\n")[0] in card
    assert file_sha256(shipped) in capsys.readouterr().out


def test_training_chain_lists_the_fine_tuning_runs_in_order(data_dir, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "chain", Path(__file__).resolve().parents[1] / "scripts" / "training_chain.py"
    )
    chain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chain)
    first, second = tmp_path / "first", tmp_path / "second"
    train(
        _cfg(data_dir, first, iters=1, val_every=1, command="python -m pkn train A"), progress=False
    )
    model = first / "nlm.safetensors"
    cfg = _cfg(
        data_dir, second, iters=1, val_every=1, init=str(model), command="python -m pkn train B"
    )
    train(cfg, progress=False)
    assert chain.main([str(second / "nlm.safetensors")]) == 0
    md = capsys.readouterr().out
    assert md.index("python -m pkn train A") < md.index("python -m pkn train B")
    assert file_sha256(model)[:12] in md and "2 runs" in md
    with pytest.raises(SystemExit):  # not a training run's model: a clear error
        chain.main([str(tmp_path / "elsewhere.safetensors")])
    assert "summary.json" in capsys.readouterr().err
    # a run started from a shipped name goes on through the run that name was shipped from
    third = tmp_path / "third"
    train(
        _cfg(data_dir, third, iters=1, val_every=1, init="nlm", command="python -m pkn train C"),
        progress=False,
    )
    assert chain.main([str(third / "nlm.safetensors")]) == 0
    assert "1 runs" in capsys.readouterr().out  # stops at the shipped name
    with pytest.raises(SystemExit):  # nlm was not shipped from the first run: refused
        chain.main([str(third / "nlm.safetensors"), "--via", f"nlm={model}"])
    assert "SHA-256" in capsys.readouterr().err
    # as if the first run's output had been shipped as "nlm-rel" and the third started there
    summary = third / "summary.json"
    s = json.loads(summary.read_text())
    s["init"] = {"model": "nlm-rel", "sha256": file_sha256(model)}
    summary.write_text(json.dumps(s))
    assert chain.main([str(third / "nlm.safetensors"), "--via", f"nlm-rel={model}"]) == 0
    md = capsys.readouterr().out
    assert "2 runs" in md and md.index("pkn train A") < md.index("pkn train C")


# ------------------------------------------------------- spatially correlated noise
def test_correlated_noise_has_the_correlation_it_reports():
    from pkn.training.degrade import correlated_noise

    n, corr = correlated_noise((8, 1, 192, 192), np.random.default_rng(1), 1.0)
    assert n.shape == (8, 1, 192, 192) and corr.shape == (8, 5, 5)
    for i in range(8):
        x = n[i, 0].double()
        assert float(x.std()) == pytest.approx(1.0, rel=0.05)  # marginal variance kept
        v = x.var()
        emp_x = float((x[:, :-1] * x[:, 1:]).mean() / v)
        emp_y = float((x[:-1] * x[1:]).mean() / v)
        emp_d = float((x[:-1, :-1] * x[1:, 1:]).mean() / v)
        assert emp_x == pytest.approx(float(corr[i, 2, 3]), abs=0.03)
        assert emp_y == pytest.approx(float(corr[i, 3, 2]), abs=0.03)
        assert emp_d == pytest.approx(float(corr[i, 3, 3]), abs=0.03)
    assert float(corr[:, 2, 3].min()) > 0.1  # every sample correlated at p = 1


def test_correlated_fraction_and_white_stream_unchanged():
    clean = _clean(B=16, s=32)
    white = TrainConfig(sigma=(0.1, 0.1))
    d0 = degrade_batch(white, clean, np.random.default_rng(0), "denoise")
    assert d0.correlation is None  # p = 0: the old white-noise stream, no correlation
    mixed = TrainConfig(sigma=(0.1, 0.1), correlated=0.5)
    d = degrade_batch(mixed, clean, np.random.default_rng(0), "denoise")
    lag1 = d.correlation[:, 2, 3]
    assert d.correlation.shape == (16, 5, 5)
    assert 0 < int((lag1 == 0).sum()) < 16  # some white, some correlated
    noise = d.x - d.target
    assert float(noise.std()) == pytest.approx(0.1, rel=0.1)


def test_finetune_from_a_shipped_model_adds_the_correlation_input(data_dir, tmp_path):
    out = tmp_path / "corr"
    cfg = _cfg(data_dir, out)
    cfg.kernel, cfg.init, cfg.correlated = "nlm-sigma", "nlm-sigma", 0.5  # a white-noise model
    summary = train(cfg, progress=False)
    model, meta = load_model(out / "nlm-sigma.safetensors")
    base, base_meta = load_model("nlm-sigma")
    assert model.correlated and not base.correlated
    assert model.guided == base.guided and model.options == base.options  # its set-up kept
    assert meta["n_parameters"] == summary["n_parameters"] < 20_000
    assert summary["init"] == {"model": "nlm-sigma", "sha256": base_meta["sha256"]}
    assert model.net.enc1.weight.shape[1] == base.net.enc1.weight.shape[1] + 8
    cfg2 = _cfg(data_dir, tmp_path / "bad")
    cfg2.init, cfg2.kernel = "nlm-sigma", "gaussian"
    with pytest.raises(ValueError, match="init"):
        train(cfg2, progress=False)


# ------------------------------------------------------- band-limited (microscopy) content
def test_band_limit_blurs_the_chosen_fraction_and_keeps_the_rest():
    from pkn.training.degrade import band_limit, convolve, gaussian_psf

    clean = torch.rand(64, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    out = band_limit(clean, np.random.default_rng(0), 0.5, (2.0, 2.0))
    same = [bool(torch.equal(out[i], clean[i])) for i in range(64)]
    assert 16 < sum(same) < 48  # about half untouched
    i = same.index(False)
    torch.testing.assert_close(out[i : i + 1], convolve(clean[i : i + 1], gaussian_psf(2.0)))
    assert float(out[i].std()) < 0.5 * float(clean[i].std())  # white texture removed
    assert torch.equal(band_limit(clean, np.random.default_rng(0), 0.0), clean)


def test_band_limited_denoising_batch_targets_the_blurred_crop():
    cfg = TrainConfig(sigma=(0.1, 0.1), band_limit=1.0, band_sigma=(1.5, 1.5), p_gray=1.0)
    clean = _clean(B=4, s=32)
    d = degrade_batch(cfg, clean, np.random.default_rng(0), "denoise")
    # every target is a blurred channel: smoother than any clean channel
    tv = (d.target[..., 1:] - d.target[..., :-1]).abs().mean()
    assert float(tv) < 0.5 * float((clean[..., 1:] - clean[..., :-1]).abs().mean())
    assert float((d.x - d.target).std()) == pytest.approx(0.1, rel=0.05)  # noise added after


@pytest.mark.parametrize(
    "field, value",
    [
        ("band_limit", 1.5),
        ("band_limit", -0.1),
        ("band_sigma", (0.0, 1.0)),
        ("band_sigma", (3.0, 1.0)),
        ("band_sigma", (1.0, 50.0)),
    ],
)
def test_band_limit_config_is_checked(field, value):
    with pytest.raises(ValueError, match=field):
        check_config(TrainConfig(**{field: value}))


def test_cli_takes_band_limit(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--band-sigma", "3,1"])
    assert "band_sigma" in capsys.readouterr().err


# ------------------------------------------------------- synthetic fluorescence content
def test_synthetic_fluorescence_is_seeded_bounded_and_band_limited():
    from pkn.training.synthetic import fluorescence

    a = fluorescence(np.random.default_rng(5), 6, 64)
    b = fluorescence(np.random.default_rng(5), 6, 64)
    c = fluorescence(np.random.default_rng(6), 6, 64)
    assert a.shape == (6, 1, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    for img in a[:, 0]:
        assert float(img.max() - img.min()) > 0.05  # something is there
        # seen through a PSF: little energy in the top half of the spectrum
        f = torch.fft.fftshift(torch.fft.fft2(img - img.mean())).abs().square()
        r = torch.hypot(
            *torch.meshgrid(torch.arange(64) - 32.0, torch.arange(64) - 32.0, indexing="ij")
        )
        assert float(f[r > 16].sum() / f.sum()) < 0.05


def test_synthetic_fluorescence_rejects_bad_sizes():
    from pkn.training.synthetic import fluorescence

    with pytest.raises(ValueError, match="count"):
        fluorescence(np.random.default_rng(0), 0, 64)
    with pytest.raises(ValueError, match="size"):
        fluorescence(np.random.default_rng(0), 1, 4)


def test_synthetic_batches_are_gray_and_the_default_stream_is_unchanged(data_dir):
    from pkn.training.loop import _training_batch

    bank = ImageBank(load_folder(data_dir), val_every=3)
    plain = TrainConfig(sigma=(0.1, 0.1), batch=4, crop=32)
    d0 = _training_batch(plain, bank, np.random.default_rng(0), "denoise")
    rng = np.random.default_rng(0)
    ref = degrade_batch(plain, bank.crops(rng, 4, 32, rgb=True), rng, "denoise")
    assert torch.equal(d0.x, ref.x)  # synthetic = 0: exactly the old batches
    syn = dataclasses.replace(plain, synthetic=1.0)
    d = _training_batch(syn, bank, np.random.default_rng(0), "denoise")
    assert torch.equal(d.guide, d.x)  # gray: each sample is its own guide
    assert float((d.target < 0.1).float().mean()) > 0.2  # dark background, unlike photographs
    assert float((d.x - d.target).std()) == pytest.approx(0.1, rel=0.05)


def test_training_with_synthetic_content_says_so_on_the_card(data_dir, tmp_path):
    out = tmp_path / "syn"
    train(_cfg(data_dir, out, synthetic=0.5, band_limit=0.5), progress=False)
    card = (out / "nlm.md").read_text()
    assert "synthetic fluorescence" in card and "band-limited" in card
    with pytest.raises(ValueError, match="synthetic"):
        check_config(TrainConfig(synthetic=2.0))
