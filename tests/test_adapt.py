"""Tests for pkn.adapt (self-supervised adaptation) and the blind-spot NLM / bilateral."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
import torch

import pkn
import pkn.adapt
from pkn.kernels import bilateral, nlm
from pkn.models.io import load_model
from pkn.models.pkn_model import PKNModel

FAST = {"steps": 3, "batch": 2, "crop": 16}


def _field(H=32, W=40, seed=0):
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    return 0.5 + 0.3 * np.sin(xx / 4.0) * np.cos(yy / 5.0) + 0.15 * (xx > W // 2)


def _captures(n=3, H=32, W=40, sigma=0.08, seed=0):
    rng = np.random.default_rng(seed)
    clean = _field(H, W)
    return [(clean + sigma * rng.standard_normal(clean.shape)).astype(np.float32) for _ in range(n)]


def _state(m: PKNModel) -> dict:
    return {k: v.clone() for k, v in m.state_dict().items()}


# ------------------------------------------------------------------ the blind-spot kernel
def _jacobian(fn, H=9, W=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, H, W, generator=g, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(fn, x).reshape(H * W, H * W)
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    p = torch.stack([yy.flatten(), xx.flatten()], 1)
    cheb = (p[:, None] - p[None]).abs().max(-1).values  # Chebyshev distance output-input
    return J, cheb


@pytest.mark.parametrize("r", [0, 1])
@pytest.mark.parametrize(
    "fn, kw",
    [
        (nlm, {}),
        (nlm, {"spatial_sigma": 1.5}),
        (nlm, {"joint": True}),
        (bilateral, {}),
    ],
    ids=["nlm", "nlm-spatial", "nlm-joint", "bilateral"],
)
def test_blind_spot_output_never_reads_its_blind_region(fn, kw, r):
    H, W = 9, 10
    sigma = 0.05 + 0.3 * torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    sigma = sigma.double()

    def f(x):
        guide = x if kw.get("joint") else None  # the image as its own guide
        return fn(x, sigma, blind_spot=r, guide=guide, **kw)

    J, cheb = _jacobian(f, H, W)
    assert float(J[cheb <= r].abs().max()) == 0.0  # every pixel, borders included
    assert float(J[cheb > r].abs().max()) > 0.1  # ... but it does read the others
    # the ordinary filter reads the centre
    J0, _ = _jacobian(lambda x: fn(x, sigma, **kw), H, W)
    assert float(J0.diagonal().abs().min()) > 0


def test_blind_spot_keeps_constants_and_differentiates_sigma():
    x = torch.full((1, 1, 12, 12), 0.4, dtype=torch.float64)
    assert torch.allclose(nlm(x, 0.1, blind_spot=0), x)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 8, 9, generator=g, dtype=torch.float64)
    s = (0.05 + 0.2 * torch.rand(1, 1, 4, 5, generator=g, dtype=torch.float64)).requires_grad_()
    q = (0.5 + torch.rand(1, 1, 4, 5, generator=g, dtype=torch.float64)).requires_grad_()
    f = lambda s, q: nlm(x, s, spatial_sigma=q, blind_spot=0)  # noqa: E731
    assert torch.autograd.gradcheck(f, (s, q))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"blind_spot": 2}, "hides the whole 5x5 search window"),
        ({"blind_spot": -1}, "integer >= 0"),
        ({"blind_spot": 0.5}, "integer >= 0"),
        ({"blind_spot": True}, "integer >= 0"),
    ],
)
def test_blind_spot_bad_radius(kw, match):
    with pytest.raises(ValueError, match=match):
        nlm(torch.rand(1, 1, 8, 8), 0.1, **kw)


def test_blind_spot_none_is_the_ordinary_filter():
    x = torch.rand(1, 1, 11, 12, generator=torch.Generator().manual_seed(1))
    assert torch.equal(nlm(x, 0.1, blind_spot=None), nlm(x, 0.1))


@pytest.mark.parametrize("r", [0, 1])
def test_training_prediction_is_j_invariant_at_the_grid(r):
    """Maps from the masked image + blind filter: the output at a grid centre depends on
    nothing inside its blind region (network included)."""
    from pkn.adapt import _blind_grid, _blind_predict

    net, _ = load_model("nlm")
    net = net.double()
    options = {**net.options, "blind_spot": r}
    H = W = 16
    centre, block = _blind_grid((1, 1, H, W), r, torch.Generator().manual_seed(r))
    std = torch.full((1, 1, 1, 1), 0.1, dtype=torch.float64)
    x = torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x.requires_grad_(True)
    y, w = _blind_predict(net, x, std, options, centre, block)
    assert bool((w > 0).all())
    pts = centre[0, 0].nonzero().tolist()
    assert len(pts) >= 4
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    for i, j in pts:
        (g,) = torch.autograd.grad(y[0, 0, i, j], x, retain_graph=True)
        near = torch.maximum((yy - i).abs(), (xx - j).abs()) <= r
        assert float(g[0, 0][near].abs().max()) == 0.0
        assert float(g[0, 0][~near].abs().max()) > 0


def test_centre_corrected_loss_estimates_the_ordinary_filters_error():
    """Without the clean image, the estimate is the error of the ordinary filter with the
    blind weights (centre added back with weight 1), and near the optimum (the sigmas the
    adaptation ends up with) that of the ordinary filter itself."""
    from pkn.adapt import _centre_corrected
    from pkn.kernels.nlm import _nlm_blind_sums

    g = torch.Generator().manual_seed(0)
    clean = torch.from_numpy(_field(96, 96))[None, None]
    sd = 0.1
    x = clean + sd * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    var = torch.full_like(x, sd * sd)
    est = {}
    for mult in (0.5, 1.5, 4.0):
        s = torch.full_like(x, mult * sd)
        num, den = _nlm_blind_sums(x, x, s, torch.full_like(x, 2.0), 3, 5, 0, False)
        yb = num / den
        est[mult] = float(_centre_corrected(yb, den, x, var).mean())
        same = float(((x + den * yb) / (1 + den) - clean).square().mean())
        assert abs(est[mult] - same) < 0.1 * same, (mult, est[mult], same)
        if mult > 1:
            true = float((nlm(x, s, spatial_sigma=2.0) - clean).square().mean())
            assert abs(est[mult] - true) < 0.1 * true, (mult, est[mult], true)
    assert min(est, key=est.get) == 4.0  # the truth's choice too


# ------------------------------------------------------------------ adapt
def test_adapt_returns_a_model_restore_takes():
    x = _captures(1)[0]
    m = pkn.adapt(x, **FAST)
    assert isinstance(m, PKNModel) and not m.training
    assert all(not p.requires_grad for p in m.parameters())
    a = m.adaptation
    assert a["mode"] == "blindspot" and a["blind_spot"] == 0 and a["steps_done"] == 3
    assert a["data"][0]["sha256"] == hashlib.sha256(x.tobytes()).hexdigest()
    assert a["base_model"]["name"] == "nlm" and len(a["base_model"]["sha256"]) == 64
    r = pkn.restore(x, model=m)
    assert r.image.shape == x.shape and np.isfinite(r.image).all()
    base = pkn.restore(x).image
    assert not np.array_equal(r.image, base)  # the weights moved


def test_the_module_is_callable_like_the_function():
    assert pkn.adapt.adapt is not pkn.adapt and callable(pkn.adapt)


@pytest.mark.parametrize(
    "images, mode, want",
    [
        (_captures(2), "auto", "n2n"),
        (_captures(1), "auto", "blindspot"),
        ([_captures(1)[0], _captures(1, H=36)[0]], "auto", "blindspot"),
        (_captures(2), "blindspot", "blindspot"),
        (_captures(1), "r2r", "r2r"),
    ],
)
def test_mode(images, mode, want):
    m = pkn.adapt(images, mode=mode, **FAST)
    assert m.adaptation["mode"] == want
    assert len(m.adaptation["data"]) == len(images)


def test_resolve_mode_rules():
    from pkn.adapt import resolve_mode

    assert resolve_mode("auto", [(8, 8), (8, 8)]) == "n2n"
    assert resolve_mode("auto", [(8, 8)]) == "blindspot"
    assert resolve_mode("auto", [(8, 8), (8, 9)]) == "blindspot"
    with pytest.raises(ValueError, match="at least 2 captures"):
        resolve_mode("n2n", [(8, 8)])
    with pytest.raises(ValueError, match="all of one shape"):
        resolve_mode("n2n", [(8, 8), (8, 9)])


def test_stack_with_an_axis_is_split_into_frames():
    stack = np.stack(_captures(3), axis=-1)  # (H, W, 3)
    m = pkn.adapt(stack, axis=-1, **FAST)
    a = m.adaptation
    assert a["mode"] == "n2n" and [d["frame"] for d in a["data"]] == [0, 1, 2]
    assert a["axis"] == -1


def test_seeded_runs_are_identical_and_seeds_differ():
    caps = _captures(2)
    m1, m2 = pkn.adapt(caps, seed=7, **FAST), pkn.adapt(caps, seed=7, **FAST)
    m3 = pkn.adapt(caps, seed=8, **FAST)
    s1, s2, s3 = _state(m1), _state(m2), _state(m3)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert any(not torch.equal(s1[k], s3[k]) for k in s1)
    assert m1.adaptation["loss_every_10"] == m2.adaptation["loss_every_10"]


def test_threads_are_restored():
    n = torch.get_num_threads()
    pkn.adapt(_captures(1)[0], threads=2, steps=1, batch=1, crop=16)
    assert torch.get_num_threads() == n


def test_progress_and_cancel():
    x = _captures(1)[0]
    seen = []
    m = pkn.adapt(x, steps=5, batch=1, crop=16, progress=lambda s, n, loss: seen.append((s, n)))
    assert seen == [(s, 5) for s in range(1, 6)] and not m.adaptation["cancelled"]

    stop = threading.Event()

    def progress(step, total, loss):
        if step == 2:
            stop.set()

    m = pkn.adapt(x, steps=50, batch=1, crop=16, progress=progress, cancel=stop)
    assert m.adaptation["cancelled"] and m.adaptation["steps_done"] == 2

    m = pkn.adapt(x, steps=50, batch=1, crop=16, progress=lambda s, n, loss: s < 3)
    assert m.adaptation["cancelled"] and m.adaptation["steps_done"] == 3

    stop.set()  # set before the start: nothing trained
    m = pkn.adapt(x, steps=50, batch=1, crop=16, cancel=stop)
    assert m.adaptation["steps_done"] == 0


def test_save_round_trips_and_writes_the_card_next_to_it(tmp_path):
    caps = _captures(2)
    m = pkn.adapt(caps, **FAST)
    out = pkn.adapt.save(m, tmp_path / "sub" / "mine.safetensors")
    assert out.is_file()
    loaded, info = load_model(out)
    a, b = _state(m), _state(loaded)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.kernel == m.kernel and loaded.options == m.options
    assert info["info"]["adaptation"]["mode"] == "n2n"
    card = (tmp_path / "sub" / "mine.md").read_text()
    for c in caps:
        assert hashlib.sha256(c.tobytes()).hexdigest() in card
    assert info["sha256"] in card and "n2n" in card and "No clean image" in card
    r1, r2 = pkn.restore(caps[0], model=m), pkn.restore(caps[0], model=out)
    np.testing.assert_allclose(r1.image, r2.image, rtol=0, atol=1e-6)
    assert r2.info["model_sha256"] == info["sha256"]


def test_adapt_with_out_records_files(tmp_path):
    import tifffile

    paths = []
    for i, c in enumerate(_captures(2)):
        paths.append(tmp_path / f"cap{i}.tif")
        tifffile.imwrite(paths[-1], c)
    out = tmp_path / "m.safetensors"
    m = pkn.adapt([str(p) for p in paths], out=out, **FAST)
    data = m.adaptation["data"]
    assert [d["name"] for d in data] == ["cap0.tif", "cap1.tif"]
    assert data[0]["sha256"] == hashlib.sha256(paths[0].read_bytes()).hexdigest()
    card = out.with_suffix(".md").read_text()
    assert "cap0.tif" in card and data[1]["sha256"] in card


def test_cli_end_to_end(tmp_path, capsys):
    import tifffile

    from pkn.__main__ import main

    paths = []
    for i, c in enumerate(_captures(2)):
        paths.append(str(tmp_path / f"f{i}.tif"))
        tifffile.imwrite(paths[-1], (c * 200).clip(0, 255).astype(np.uint8))
    out = tmp_path / "adapted.safetensors"
    argv = ["adapt", *paths, "--out", str(out), "--mode", "auto", "--steps", "2"]
    argv += ["--batch", "1", "--crop", "16", "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert str(out) in text and "n2n" in text
    card = out.with_suffix(".md").read_text()
    assert "python -m pkn adapt" in card and "f0.tif" in card
    img = tifffile.imread(paths[0])
    assert pkn.restore(img, model=str(out)).image.shape == img.shape
    # one image: blind-spot; errors are reported, not raised
    assert main(["adapt", paths[0], "--out", str(tmp_path / "b.safetensors"), "--steps", "1",
                 "--crop", "16", "--quiet"]) == 0  # fmt: skip
    assert "blindspot" in capsys.readouterr().out
    assert main(["adapt", paths[0], "--out", str(tmp_path / "c.safetensors"), "--mode", "n2n",
                 "--quiet"]) == 2  # fmt: skip
    assert "at least 2 captures" in capsys.readouterr().err
    assert main(["adapt", str(tmp_path / "missing.tif"), "--out", str(out), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_is_registered():
    from pkn.__main__ import COMMANDS, _usage

    assert COMMANDS[("adapt",)][0] == "pkn._adapt_cli:main"
    assert "adapt" in _usage()


@pytest.mark.parametrize(
    "images, kw, exc, match",
    [
        ([], {}, ValueError, "images is empty"),
        (_captures(1), {"mode": "n2n"}, ValueError, "at least 2 captures"),
        (_captures(1), {"mode": "bogus"}, ValueError, "mode must be one of"),
        ([np.zeros((32, 32), np.int32)], {}, TypeError, "dtype int32"),
        ([np.zeros((32, 32), bool)], {}, TypeError, "dtype bool"),
        ([np.zeros((8, 8), np.float32)], {}, ValueError, "at least 16x16"),
        ([np.full((32, 32), np.nan, np.float32)], {}, ValueError, "NaN"),
        (np.zeros((3, 32, 32), np.float32), {}, ValueError, "needs axis="),
        (_captures(1), {"crop": 64}, ValueError, "larger than the smallest image side"),
        (_captures(1), {"crop": 17}, ValueError, "crop must be even"),
        (_captures(1), {"crop": 8}, ValueError, "crop must be an integer >= 16"),
        (_captures(1), {"steps": 0}, ValueError, "steps must be an integer >= 1"),
        (_captures(1), {"lr": -1.0}, ValueError, "lr must be"),
        (_captures(1), {"blind_spot": 2}, ValueError, "largest radius is 1"),
        (_captures(2), {"blind_spot": 1, "mode": "n2n"}, ValueError, "blind_spot is for"),
        (_captures(1), {"kernel": "gaussian"}, ValueError, "no blind-spot form"),
        (_captures(1), {"kernel": "polyblur"}, ValueError, "denoising kernel"),
        (_captures(1), {"kernel": "bilateral", "model": "nlm"}, ValueError, "drives kernel"),
        (_captures(1), {"out": "model.pt"}, ValueError, "must end in .safetensors"),
        (["/no/such/file.tif"], {}, FileNotFoundError, "does not exist"),
        ([object()], {}, TypeError, "numpy arrays or image file paths"),
        (_captures(1), {"progress": 3}, TypeError, "progress must be callable"),
    ],
)
def test_clear_errors(images, kw, exc, match):
    with pytest.raises(exc, match=match):
        pkn.adapt(images, **{**FAST, **kw})


def test_never_writes_into_the_package():
    from importlib import resources
    from pathlib import Path

    inside = Path(str(resources.files("pkn._resources"))) / "mine.safetensors"
    with pytest.raises(ValueError, match="inside the installed package"):
        pkn.adapt(_captures(1)[0], out=inside, **FAST)
    assert not inside.exists()


def test_bilateral_and_n2n_for_a_kernel_without_a_blind_spot():
    caps = _captures(2)
    m = pkn.adapt(caps[0], kernel="bilateral", **FAST)
    assert m.kernel == "bilateral" and m.adaptation["mode"] == "blindspot"
    m = pkn.adapt(caps, kernel="gaussian", **FAST)  # n2n needs no blind-spot form
    assert m.adaptation["mode"] == "n2n"
    assert pkn.restore(caps[0], kernel="gaussian", model=m).image.shape == caps[0].shape
