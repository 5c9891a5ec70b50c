"""In-memory restoration in windows (pkn._tiles): the same result as all at once."""

import numpy as np
import pytest
import torch

import pkn
import pkn._tiles as T
from pkn.models.io import load_model
from pkn.samples import natural


def _img(h=201, w=233, sigma=0.08, seed=0):
    noisy, _ = natural(sigma, seed=seed)
    return noisy[100 : 100 + h, 50 : 50 + w].astype(np.float32)


@pytest.mark.parametrize("kernel", ["nlm", "polyblur"])  # a guided and an unguided network
def test_receptive_field_is_what_one_perturbed_pixel_reaches(kernel):
    net, _ = load_model(kernel)
    rf = T.receptive_field(net)
    x = torch.rand(1, 1, 224, 224, generator=torch.Generator().manual_seed(0))
    std = torch.full((1, 1, 1, 1), 0.05)
    mean = x.mean(dim=(-2, -1)).double().numpy()[0]
    with torch.no_grad():
        ref = T.predict_maps(net, x, std, mean)
        reach = 0
        for py in range(104, 120):  # every phase on the 1/8 grid (and 1/16)
            x2 = x.clone()
            x2[..., py, 112] += 0.5
            # the plane's mean held fixed, as for a window: only the reach is measured
            maps = T.predict_maps(net, x2, std, mean)
            # changed beyond float32 rounding of the shifted features
            moved = sum((maps[k] - ref[k]).abs() > 1e-5 * ref[k].abs().max() for k in ref)
            ys = torch.nonzero(moved[0, 0], as_tuple=True)[0]
            reach = max(reach, py - 2 * int(ys.min()), 2 * int(ys.max()) + 1 - py)
    assert rf - 2 <= reach <= rf, (reach, rf)
    assert rf == 51  # the shipped architecture (documented in docs/big-data.md)


def test_windows_tile_the_plane_on_the_grid():
    seen = np.zeros((201, 233), int)
    for (y0, y1, x0, x1), (wy0, wy1, wx0, _) in T.windows(201, 233, 64, 56):
        seen[y0:y1, x0:x1] += 1
        assert y0 % 8 == 0 and x0 % 8 == 0 and wy0 % 8 == 0 and wx0 % 8 == 0
        assert wy0 == max(0, y0 - 56) and wy1 == min(201, y1 + 56)
    assert (seen == 1).all()
    with pytest.raises(ValueError, match="multiples of 8"):
        list(T.windows(10, 10, 12, 8))


CASES = {
    "gray-odd": (lambda: _img(), {}),
    "poisson-gaussian": (lambda: _img(), {"noise": (0.01, 0.001)}),
    "uint16": (lambda: (np.clip(_img(), 0, 1) * 4000 + 100).astype(np.uint16), {}),
    "colour": (lambda: np.stack([_img(), _img(seed=1), _img(seed=2)], -1), {"channel_axis": -1}),
    "stack": (lambda: np.stack([_img(150, 170), _img(150, 170, seed=3)]), {}),
    "gaussian": (lambda: _img(), {"kernel": "gaussian", "noise": 0.08}),
    "anisotropic": (lambda: _img(), {"kernel": "anisotropic", "noise": 0.08}),
    "deblur": (lambda: _img(), {"task": "deblur", "blur": 1.5, "noise": 0.02}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_windows_give_the_result_of_the_whole_plane(case, monkeypatch):
    make, kw = CASES[case]
    x = make()
    before = x.copy()
    whole = pkn.restore(x, **kw)
    monkeypatch.setattr(T, "TILE", 64)  # 4 x 4 windows with seams everywhere
    tiled = pkn.restore(x, **kw)
    np.testing.assert_array_equal(x, before)
    span = float(np.ptp(whole.image))
    err = np.abs(tiled.image.astype(np.float64) - whole.image).max() / span
    assert err <= 1e-5, err
    for k, m in whole.maps.items():
        assert tiled.maps[k].shape == m.shape
        assert np.abs(tiled.maps[k] - m).max() <= 1e-5 * max(float(np.abs(m).max()), 1e-12)
    if whole.qc is not None:
        np.testing.assert_allclose(tiled.qc, whole.qc, atol=1e-3)
        assert tiled.info["whiteness"] == pytest.approx(whole.info["whiteness"], abs=2e-4)


def test_restorer_caches_only_half_resolution_maps(monkeypatch):
    monkeypatch.setattr(T, "TILE", 64)
    x = _img(200, 240)
    r = pkn.Restorer(x, noise=0.08)
    tensors = [v for v in vars(r).values() if isinstance(v, torch.Tensor)]
    assert tensors == []  # nothing full-size is kept (p, noise_std are built on access)
    cached = sum(m.numel() * m.element_size() for d in r._maps for m in d.values())
    assert cached == len(r.maps) * 100 * 120 * 4  # float32, a quarter of the pixels each
    assert cached <= 0.5 * x.nbytes  # NLM: 2 maps, half a float32 input
    a = r.render(0.7).image
    b = r.render(0.7).image
    np.testing.assert_array_equal(a, b)  # render leaves the cache as it was


def test_banded_lag1_is_the_whiteness_of_the_residual():
    from pkn._quality import whiteness
    from pkn.restoration import _lag1, _whiteness_of

    q = np.random.default_rng(0).standard_normal((3, 300, 200)).astype(np.float32)
    q[:, 1:] += 0.3 * q[:, :-1]  # some correlation along y
    assert _whiteness_of(_lag1(q, rows=64)) == whiteness(q)


def test_plane_mean_is_the_normalised_mean():
    raw = np.random.default_rng(1).random((2, 300, 70)).astype(np.float32)
    m = T.plane_mean(raw, 0.1, 2.0, rows=64)
    np.testing.assert_allclose(m, (raw.astype(np.float64).mean(axis=(1, 2)) - 0.1) / 2.0)
