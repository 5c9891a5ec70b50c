"""The per-image global optimum and the local oracle (``pkn.oracle``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pkn.models.pkn_model import run_filter
from pkn.models.procedural import get_spec
from pkn.oracle import OracleResult, global_optimum, local_oracle
from pkn.training.losses import psnr

SIGMA = 0.1


def _crops(H=40, W=40):
    """Two textured crops of ``camera`` as the channels of one image, with seeded AWGN."""
    from skimage import data

    cam = data.camera().astype(np.float32) / 255.0
    clean = np.stack([cam[60 : 60 + H, 220 : 220 + W], cam[300 : 300 + H, 100 : 100 + W]])
    clean = torch.from_numpy(clean)[:, None]  # (2, 1, H, W)
    g = torch.Generator().manual_seed(0)
    noisy = clean + SIGMA * torch.randn(clean.shape, generator=g)
    return noisy, clean, torch.full((2, 1, 1, 1), SIGMA)


def _psnr(y, clean):
    return float(psnr(y.reshape(1, -1), clean.reshape(1, -1)))


@pytest.fixture(scope="module")
def problem():
    noisy, clean, ns = _crops()
    g = global_optimum("nlm-sigma", noisy, clean, ns, grid=9, iters=15)
    return noisy, clean, ns, g


def test_global_optimum_with_spatial_sigma_and_joint_distances(problem):
    noisy, clean, ns, g = problem
    both = global_optimum("nlm", noisy, clean, ns, grid=9, iters=15)
    assert set(both.maps) == {"sigma", "spatial_sigma"}
    spatial = both.maps["spatial_sigma"]
    assert 0 <= float(spatial.min()) <= float(spatial.max()) <= 4
    # a superset of the sigma-only kernel (whose box window is spatial sigma -> inf)
    assert both.psnr > g.psnr - 0.05
    joint = global_optimum("nlm", noisy, clean, ns, grid=9, iters=5, options={"joint": True})
    assert joint.output.shape == noisy.shape
    with torch.no_grad():  # joint: the batch is read as the channels of one image
        y = run_filter(get_spec("nlm"), noisy, joint.maps, options={"joint": True})
        per = run_filter(get_spec("nlm"), noisy, joint.maps)
    torch.testing.assert_close(y, joint.output)
    assert float((y - per).abs().max()) > 1e-4  # and that differs from per-channel


def test_global_optimum_shapes_and_psnr(problem):
    noisy, clean, ns, g = problem
    assert isinstance(g, OracleResult)
    assert set(g.maps) == {"sigma"}
    assert g.maps["sigma"].shape == (2, 1, 1, 1)
    assert g.output.shape == noisy.shape
    assert g.psnr == pytest.approx(_psnr(g.output, clean), abs=1e-6)
    # one multiplier for the image: sigma is the same multiple of each channel's noise
    mult = g.maps["sigma"] / ns
    assert float(mult.max() - mult.min()) < 1e-6
    assert 0 < float(mult[0]) < 4
    assert g.psnr > _psnr(noisy, clean) + 1.0  # it denoises


@pytest.mark.parametrize("mult", [0.3, 3.5])
def test_global_optimum_beats_fixed_parameters(problem, mult):
    noisy, clean, ns, g = problem
    spec = get_spec("nlm-sigma")
    with torch.no_grad():
        fixed = run_filter(spec, noisy, {"sigma": mult * ns})
    assert g.psnr >= _psnr(fixed, clean)


def test_global_optimum_output_matches_its_maps(problem):
    noisy, _, _, g = problem
    with torch.no_grad():
        y = run_filter(get_spec("nlm-sigma"), noisy, g.maps)
    torch.testing.assert_close(y, g.output)


def test_local_oracle_at_least_global(problem):
    noisy, clean, ns, g = problem
    loc = local_oracle("nlm-sigma", noisy, clean, ns, iters=15, init=g)
    assert loc.maps["sigma"].shape == (2, 1, 20, 20)
    assert loc.output.shape == noisy.shape
    assert torch.isfinite(loc.maps["sigma"]).all()
    assert float(loc.maps["sigma"].min()) >= 0
    assert float((loc.maps["sigma"] / ns).max()) <= 4 + 1e-5
    assert loc.psnr >= g.psnr - 1e-6
    assert loc.psnr == pytest.approx(_psnr(loc.output, clean), abs=1e-6)
    # per-pixel freedom actually helps on a textured image
    assert loc.psnr > g.psnr
    assert float(loc.maps["sigma"].std()) > 0


@pytest.mark.parametrize(("H", "W"), [(21, 19), (15, 24)])
def test_local_oracle_odd_sizes_and_noise_maps(H, W):
    noisy, clean, _ = _crops(H, W)
    ns = torch.full((2, 1, H, W), SIGMA)  # a per-pixel noise map
    g = global_optimum("nlm", noisy, clean, ns, grid=5, iters=3)
    loc = local_oracle("nlm", noisy, clean, ns, iters=3, init=g)
    assert loc.maps["sigma"].shape == (2, 1, math.ceil(H / 2), math.ceil(W / 2))
    assert loc.output.shape == (2, 1, H, W)
    assert loc.psnr >= g.psnr - 1e-6


def test_local_oracle_computes_its_own_start():
    noisy, clean, ns = _crops(16, 16)
    loc = local_oracle("bilateral", noisy, clean, ns, iters=2)
    assert loc.maps["sigma"].shape == (2, 1, 8, 8)
    assert loc.psnr > _psnr(noisy, clean)


def test_unknown_kernel():
    noisy, clean, ns = _crops(8, 8)
    with pytest.raises(ValueError, match="unknown kernel"):
        global_optimum("median", noisy, clean, ns)
