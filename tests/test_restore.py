"""Tests for pkn.restore (the one-call API) with the shipped models."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio as psnr
from skimage.restoration import denoise_nl_means, estimate_sigma

import pkn
from pkn.samples import natural


def _crop(sigma=0.08, size=128, seed=0):
    noisy, clean = natural(sigma, seed=seed)
    return noisy[200 : 200 + size, 200 : 200 + size], clean[200 : 200 + size, 200 : 200 + size]


def test_beats_skimage_nlm_with_estimated_sigma():
    noisy, clean = _crop()
    ours = pkn.restore(noisy).image
    s = float(estimate_sigma(noisy))
    base = denoise_nl_means(
        noisy, patch_size=3, patch_distance=2, h=0.8 * s, sigma=s, fast_mode=True
    )
    assert psnr(clean, ours, data_range=1) > psnr(clean, base, data_range=1)
    assert psnr(clean, ours, data_range=1) > psnr(clean, noisy, data_range=1) + 3


@pytest.mark.parametrize(
    "dtype,scale,out",
    [
        (np.uint8, 255, np.float32),
        (np.uint16, 4000, np.float32),
        (np.float32, 1, np.float32),
        (np.float64, 1, np.float64),
    ],
)
def test_dtypes_units_and_shape(dtype, scale, out):
    noisy, clean = _crop(0.05, 64)
    img = np.clip(noisy, 0, 1) * scale
    img = img.round().astype(dtype) if np.dtype(dtype).kind == "u" else img.astype(dtype)
    before = img.copy()
    r = pkn.restore(img, noise=0.05 * scale)
    assert r.image.dtype == out and r.image.shape == img.shape
    np.testing.assert_array_equal(img, before)  # input untouched
    # results are in the input's units: close to the clean image at that scale
    err = np.abs(r.image.astype(np.float64) / scale - clean).mean()
    assert err < np.abs(img.astype(np.float64) / scale - clean).mean()
    assert r.maps["sigma"].shape == (32, 32)
    assert r.map_scale == 2.0
    # sigma map in input units, proportional to the given noise
    assert 0 < np.median(r.maps["sigma"]) < 4 * 0.05 * scale


def test_colour_with_channel_axis_and_map_layout():
    noisy, _ = _crop(0.05, 48)
    rgb = np.stack([noisy, noisy[::-1], noisy[:, ::-1]], axis=0)  # (3, H, W)
    r = pkn.restore(rgb, channel_axis=0)
    assert r.image.shape == rgb.shape
    assert r.maps["sigma"].shape == (3, 24, 24)
    last = pkn.restore(np.moveaxis(rgb, 0, -1), channel_axis=-1)
    assert last.image.shape == (48, 48, 3) and last.maps["sigma"].shape == (24, 24, 3)
    np.testing.assert_allclose(np.moveaxis(last.image, -1, 0), r.image, atol=1e-5)


def test_strength_zero_is_identity_and_strength_scales_maps():
    noisy, _ = _crop(0.08, 64)
    r1 = pkn.restore(noisy, noise=0.08)
    r0 = pkn.restore(noisy, noise=0.08, strength=0.0)
    np.testing.assert_allclose(r0.image, noisy, atol=1e-6)
    r2 = pkn.restore(noisy, noise=0.08, strength=2.0)
    np.testing.assert_allclose(r2.maps["sigma"], 2 * r1.maps["sigma"], rtol=1e-5)


def test_info_reports_provenance_and_noise():
    noisy, _ = _crop(0.08, 64)
    r = pkn.restore(noisy)
    i = r.info
    assert i["model"] == "nlm" and len(i["model_sha256"]) == 64
    assert i["kernel"] == "nlm" and i["task"] == "denoise" and i["strength"] == 1.0
    assert i["pkn_version"] == pkn.__version__ and 0 < i["n_parameters"] < 20_000
    assert i["noise"]["estimated"]
    est = (
        i["noise"]["sigma"][0]
        if i["noise"]["model"] == "awgn"
        else np.sqrt(i["noise"]["a"] * noisy.mean() + i["noise"]["b"])
    )
    assert 0.06 < est < 0.1
    given = pkn.restore(noisy, noise=0.08).info["noise"]
    assert given == {"model": "awgn", "sigma": 0.08, "estimated": False}
    pg = pkn.restore(noisy, noise=(0.01, 0.001)).info["noise"]
    assert pg["model"] == "poisson-gaussian" and pg["a"] == 0.01


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"image": np.zeros((4, 4, 3))}, ValueError, "channel_axis"),
        ({"image": np.zeros((4, 4), np.int32)}, TypeError, "uint8, uint16"),
        ({"image": np.full((4, 4), np.nan)}, ValueError, "NaN"),
        ({"image": np.zeros((1, 9))}, ValueError, "2x2"),
        ({"task": "inpaint"}, ValueError, "task must be one of"),
        ({"kernel": "median"}, ValueError, "kernel must be one of"),
        ({"kernel": "polyblur"}, ValueError, "does deblur"),
        ({"strength": -1}, ValueError, "strength"),
        ({"noise": -0.1}, ValueError, "noise sigma"),
        ({"noise": "loud"}, ValueError, "not understood"),
        ({"task": "deblur"}, ValueError, "blur="),
        ({"task": "upsample"}, ValueError, "scale="),
        ({"model": "nope"}, ValueError, "no shipped model"),
    ],
)
def test_bad_input_errors(kwargs, exc, match):
    kw = {"image": np.random.default_rng(0).random((16, 16)).astype(np.float32)} | kwargs
    image = kw.pop("image")
    with pytest.raises(exc, match=match):
        pkn.restore(image, **kw)


def test_restorer_renders_strengths_without_the_network_and_probes_in_input_units():
    noisy, _ = _crop(0.08, 64)
    img = (np.clip(noisy, 0, 1) * 1000 + 100).astype(np.float32)
    r = pkn.Restorer(img, noise=80.0)
    calls = []
    r.net.net.register_forward_hook(lambda *a: calls.append(1))
    a, b = r.render(1.0), r.render(0.5)
    assert calls == []  # maps are cached: strength changes run only the filter
    np.testing.assert_allclose(a.image, pkn.restore(img, noise=80.0).image, rtol=1e-6)
    assert not np.allclose(a.image, b.image)
    pr = r.probe((30, 40))
    r0, c0 = pr.origin
    win = img[r0 : r0 + pr.weights.shape[0], c0 : c0 + pr.weights.shape[1]]
    assert float((pr.weights * win).sum()) + pr.bias == pytest.approx(
        float(a.image[30, 40]), rel=1e-5
    )
    assert pr.sum == pytest.approx(1.0) and pr.min >= 0 and pr.bias == 0.0


def test_colour_nlm_shares_patch_distances_across_channels_and_probes_them():

    from pkn.kernels import nlm
    from pkn.models.procedural import upsample_map

    rng = np.random.default_rng(3)
    noisy, _ = _crop(0.1, 48)
    rgb = np.stack([noisy, noisy[::-1], noisy[:, ::-1]], -1).astype(np.float32)
    rgb += 0.02 * rng.standard_normal(rgb.shape).astype(np.float32)
    r = pkn.Restorer(rgb, noise=0.1, channel_axis=-1)
    assert r.net.joint and set(r.maps) == {"sigma", "spatial_sigma"}
    out = r.render()
    # the same as one joint NLM over the three channels with the predicted maps
    x = r.p.x.transpose(0, 1)  # (1, 3, H, W), in the normalised units the maps are in
    full = {k: upsample_map(v, rgb.shape[:2]).transpose(0, 1) for k, v in r.maps.items()}
    ref = nlm(x, full["sigma"], spatial_sigma=full["spatial_sigma"], joint=True)
    ref = np.moveaxis(ref[0].numpy(), 0, -1) * r.p.scale + r.p.offset
    np.testing.assert_allclose(out.image, ref, atol=1e-5)
    # and the probe of channel 1 reads the weights that made that output pixel
    pr = r.probe((20, 30), channel=1)
    r0, c0 = pr.origin
    win = rgb[r0 : r0 + pr.weights.shape[0], c0 : c0 + pr.weights.shape[1], 1]
    assert float((pr.weights * win).sum()) == pytest.approx(float(out.image[20, 30, 1]), rel=1e-5)
    assert pr.sum == pytest.approx(1.0) and pr.min >= 0


def test_filter_runs_single_threaded_off_the_main_thread_and_restores_the_count():
    import threading

    import torch

    from pkn.restoration import _filter_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = {}
        with _filter_threads():
            seen["main"] = torch.get_num_threads()

        def worker():
            with _filter_threads():
                seen["worker"] = torch.get_num_threads()
            seen["after"] = torch.get_num_threads()

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert seen == {"main": 2, "worker": 1, "after": 2}
        # and a render from a worker thread gives the same image as from the main thread
        noisy, _ = _crop(0.08, 48)
        r = pkn.Restorer(noisy, noise=0.08)
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("y", r.render().image))
        t.start()
        t.join()
        np.testing.assert_allclose(out["y"], r.render().image, rtol=1e-6, atol=1e-7)
    finally:
        torch.set_num_threads(before)


def test_restorer_reads_the_kernels_spatial_dimensionality(monkeypatch):
    """A kernel over (z, y, x) is refused clearly until the stack path handles it."""
    from dataclasses import replace

    import pkn.restoration as R
    from pkn.kernels.registry import get

    volumetric = replace(get("nlm"), spatial_axes=("z", "y", "x"))
    monkeypatch.setattr(R, "get_spec", lambda name: volumetric)
    with pytest.raises(ValueError, match=r"\('z', 'y', 'x'\)"):
        R.Restorer(np.zeros((8, 8), np.float32), kernel="nlm")


def test_estimated_noise_correlation_reaches_the_network():
    """Correlated noise: the estimated correlation is reported and the shipped nlm (which
    takes it) predicts other maps than when told the same std as white noise."""
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:160, 0:160]
    clean = 0.5 + 0.25 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    n = uniform_filter(rng.standard_normal((161, 161)), size=2)[1:, 1:]  # 2x2 box: rho 0.5
    x = (clean + 0.08 * n / n.std()).astype(np.float32)
    auto = pkn.restore(x)
    noise = auto.info["noise"]
    corr = np.asarray(noise["correlation"][0])
    assert corr.shape == (5, 5) and corr[2, 3] > 0.35 and corr[3, 2] > 0.35
    white = pkn.restore(x, noise=float(noise["sigma"][0]))  # given: treated as white
    assert "correlation" not in white.info["noise"]
    d = np.abs(auto.maps["sigma"] - white.maps["sigma"]).max()
    assert d > 0.01 * np.abs(white.maps["sigma"]).max()
    # models without the correlation input ignore it: the same maps either way
    a = pkn.restore(x, kernel="gaussian")
    b = pkn.restore(x, kernel="gaussian", noise=float(a.info["noise"]["sigma"][0]))
    np.testing.assert_allclose(a.maps["sigma1"], b.maps["sigma1"], rtol=1e-5, atol=1e-6)


def test_a_model_alone_chooses_its_kernel(tmp_path):
    """``model=`` without ``kernel=`` runs the model's kernel (it used to default to the
    task's kernel and refuse the model); a kernel that contradicts the model is refused."""
    from pkn.models.io import load_model

    x = np.random.default_rng(3).normal(0.5, 0.1, (48, 40)).astype(np.float32)
    r = pkn.restore(x, model="gaussian", noise=0.1)
    assert r.info["kernel"] == "gaussian" and set(r.maps) == {"sigma1"}
    ref = pkn.restore(x, kernel="gaussian", noise=0.1)
    np.testing.assert_array_equal(r.image, ref.image)
    obj = load_model("anisotropic")[0]  # a model object too
    assert pkn.restore(x, model=obj, noise=0.1).info["kernel"] == "anisotropic"
    with pytest.raises(ValueError, match="drives kernel 'gaussian', not 'nlm'"):
        pkn.restore(x, kernel="nlm", model="gaussian")
    with pytest.raises(ValueError, match="kernel 'polyblur' does deblur, not denoise"):
        pkn.restore(x, model="polyblur")
    assert (
        pkn.restore(x, "deblur", model="polyblur", blur=1.0, noise=0.01).info["kernel"]
        == "polyblur"
    )
