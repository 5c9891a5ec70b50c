"""strength="auto" (SURE), the QC map and the whiteness score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pkn
from pkn._quality import qc_map, sure_strength, whiteness


def _psnr(a, b):
    return float(-10 * np.log10(np.mean((np.asarray(a, np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def camera():
    from skimage import data, transform

    clean = transform.resize(data.camera().astype(np.float32) / 255, (192, 192)).astype(np.float32)
    return clean


@pytest.mark.parametrize("sigma", [0.03, 0.1, 0.2])
def test_auto_strength_is_near_the_best_strength_known_only_with_the_clean_image(camera, sigma):
    rng = np.random.default_rng(0)
    noisy = (camera + sigma * rng.standard_normal(camera.shape)).astype(np.float32)
    r = pkn.Restorer(noisy, noise=sigma)
    grid = np.linspace(0.0, 3.0, 31)
    best = max(_psnr(r.render(float(s)).image, camera) for s in grid)
    auto = r.render("auto")
    assert auto.info["strength"] == pytest.approx(auto.info["strength_auto"]["strength"], abs=1e-4)
    assert _psnr(auto.image, camera) >= best - 0.05
    assert _psnr(auto.image, camera) > _psnr(r.render(0.0).image, camera) + 2


@pytest.mark.parametrize("kernel", ["nlm", "gaussian", "anisotropic", "bilateral"])
def test_sure_tracks_the_true_error(camera, kernel):
    """SURE at each candidate strength is close to the true MSE against the clean image."""
    rng = np.random.default_rng(1)
    sigma = 0.08
    noisy = (camera + sigma * rng.standard_normal(camera.shape)).astype(np.float32)
    r = pkn.Restorer(noisy, kernel=kernel, noise=sigma)
    cands = (0.5, 1.0, 2.0)
    _, info = sure_strength(r.net, r.p.x, r.maps, r.noise_std, candidates=cands)
    clean = torch.from_numpy((camera - r.p.offset) / r.p.scale)[None, None]
    for s, est in zip(cands, info["sure"], strict=False):
        with torch.no_grad():
            mse = float((r.net.filter(r.p.x, r.maps, strength=s) - clean).square().mean())
        assert est == pytest.approx(mse, rel=0.1, abs=2e-5), (kernel, s)


@pytest.mark.parametrize("kernel", ["nlm", "anisotropic"])
def test_sure_search_stops_past_the_minimum_with_the_full_searchs_answer(
    camera, kernel, monkeypatch
):
    """The coarse search stops once SURE has risen twice past its minimum: the wide (slow)
    windows of the largest strengths are never run, and the strength is the full grid's."""
    import pkn._quality as Q

    rng = np.random.default_rng(3)
    noisy = (camera + 0.1 * rng.standard_normal(camera.shape)).astype(np.float32)
    r = pkn.Restorer(noisy, kernel=kernel, noise=0.1)
    args = (r.net, r.p.x, r.maps, r.noise_std)
    fast, info = sure_strength(*args)
    rises = Q._RISES
    monkeypatch.setattr(Q, "_RISES", len(Q.STRENGTHS))  # never stops early
    full, info_full = sure_strength(*args)
    assert fast == pytest.approx(full, abs=1e-9)
    coarse = [c for c in info["candidates"] if c in Q.STRENGTHS]
    assert max(coarse) < 3.0 and len(coarse) < len(Q.STRENGTHS)  # stopped early
    assert len(info_full["candidates"]) >= len(Q.STRENGTHS)
    s = info["sure"][: len(coarse)]
    best = int(np.argmin(s))
    assert s[-1] > s[-2] > s[best] and len(coarse) - 1 - best == rises


def test_auto_strength_only_for_denoising():
    x = np.random.default_rng(2).random((32, 32)).astype(np.float32)
    with pytest.raises(ValueError, match="auto"):
        pkn.restore(x, "deblur", blur=1.0, strength="auto")
    with pytest.raises(ValueError, match="strength"):
        pkn.restore(x, strength="high")


def test_qc_map_layout_and_statistics(camera):
    rng = np.random.default_rng(4)
    flat = np.full((96, 80, 3), 0.5, np.float32)
    noisy = flat + 0.05 * rng.standard_normal(flat.shape).astype(np.float32)
    r = pkn.restore(noisy, channel_axis=-1, noise=0.05)
    assert r.qc.shape == noisy.shape and r.qc.dtype == np.float32
    np.testing.assert_allclose(r.qc, (noisy - r.image) / 0.05, rtol=1e-4, atol=1e-4)
    assert 0.7 < float(r.qc.std()) < 1.1  # about the noise, in noise units
    assert abs(r.info["whiteness"]["score"]) < 0.15


def test_whiteness_sees_structure_removed(camera):
    rng = np.random.default_rng(5)
    noisy = (camera + 0.05 * rng.standard_normal(camera.shape)).astype(np.float32)
    r = pkn.Restorer(noisy, noise=0.05)
    gentle, harsh = r.render(1.0), r.render(6.0)  # over-smoothing removes structure
    assert harsh.info["whiteness"]["score"] > gentle.info["whiteness"]["score"] + 0.05


def test_qc_none_outside_denoising():
    x = np.random.default_rng(6).random((24, 24)).astype(np.float32)
    assert pkn.restore(x, "deblur", blur=1.0).qc is None
    assert "whiteness" not in pkn.restore(x, "upsample", scale=2).info


def test_whiteness_and_qc_helpers():
    white = np.random.default_rng(7).standard_normal((200, 200))
    assert abs(whiteness(white)["score"]) < 0.02
    smooth = np.cumsum(white, axis=1)
    assert whiteness(smooth)["lag1_x"] > 0.9
    assert whiteness(np.zeros((4, 4)))["score"] == 0.0
    np.testing.assert_allclose(qc_map(np.ones(3), np.zeros(3), 0.5), 2.0)


def test_restore_takes_a_model_object():
    from pkn.models.io import load_model

    x = np.random.default_rng(8).random((32, 30)).astype(np.float32)
    net, _ = load_model("nlm")
    a = pkn.restore(x, model=net, noise=0.1)
    b = pkn.restore(x, noise=0.1)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.info["model"].startswith("nlm")
