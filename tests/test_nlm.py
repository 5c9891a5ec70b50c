"""Tests for pkn.kernels.nlm / bilateral."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pkn.kernels import NLM, bilateral, nlm


def reference_nlm(
    x, sigma, patch_size=3, search_size=5, spatial_sigma=None, guide=None, joint=False
):
    """Obviously-correct loops (float64 numpy). sigma: full-res (B, 1|C, H, W) array."""
    x = np.asarray(x, dtype=np.float64)
    g = x if guide is None else np.asarray(guide, dtype=np.float64)
    B, C, H, W = x.shape
    pr, sr = patch_size // 2, search_size // 2
    R = pr + sr
    gp = np.pad(g, ((0, 0), (0, 0), (R, R), (R, R)), mode="reflect")
    xp = np.pad(x, ((0, 0), (0, 0), (sr, sr), (sr, sr)), mode="reflect")
    out = np.zeros_like(x)
    for b in range(B):
        for c in range(C):
            gcs = list(range(g.shape[1])) if joint else [c if g.shape[1] == C else 0]
            for i in range(H):
                for j in range(W):
                    s = sigma[b, c if sigma.shape[1] == C else 0, i, j]
                    num = den = 0.0
                    for dy in range(-sr, sr + 1):
                        for dx in range(-sr, sr + 1):
                            dist = 0.0
                            for k in gcs:
                                for qy in range(-pr, pr + 1):
                                    for qx in range(-pr, pr + 1):
                                        a = gp[b, k, R + i + qy, R + j + qx]
                                        o = gp[b, k, R + i + dy + qy, R + j + dx + qx]
                                        dist += (a - o) ** 2
                            dist /= patch_size**2 * len(gcs)
                            w = np.exp(-dist / (2 * max(s, 1e-10) ** 2))
                            if spatial_sigma is not None:
                                ss = spatial_sigma
                                if np.ndim(ss):  # a full-resolution map (B, 1|C, H, W)
                                    ss = ss[b, c if ss.shape[1] == C else 0, i, j]
                                w *= np.exp(-(dy * dy + dx * dx) / (2 * max(ss, 1e-10) ** 2))
                            num += w * xp[b, c, sr + i + dy, sr + j + dx]
                            den += w
                    out[b, c, i, j] = num / den
    return out


def _rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype)


@pytest.mark.parametrize("patch_size,search_size", [(3, 5), (1, 3), (3, 3), (5, 3)])
def test_matches_reference_with_half_resolution_map(patch_size, search_size):
    x = _rand(2, 2, 9, 8)
    sigma = 0.05 + 0.3 * _rand(2, 1, 5, 4, seed=1)
    full = F.interpolate(sigma, size=(9, 8), mode="bilinear", align_corners=False)
    ours = nlm(x, sigma, patch_size=patch_size, search_size=search_size)
    ref = reference_nlm(x.numpy(), full.numpy(), patch_size, search_size)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6, atol=1e-12)


def test_matches_reference_per_channel_sigma_spatial_and_joint():
    x = _rand(1, 3, 7, 6)
    sigma = 0.1 + 0.2 * _rand(1, 3, 7, 6, seed=2)
    ours = nlm(x, sigma, spatial_sigma=1.5)
    ref = reference_nlm(x.numpy(), sigma.numpy(), spatial_sigma=1.5)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6, atol=1e-12)
    s1 = sigma[:, :1]
    ours = nlm(x, s1, joint=True)
    ref = reference_nlm(x.numpy(), s1.numpy(), joint=True)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6, atol=1e-12)


def test_matches_reference_with_spatial_sigma_map():
    x = _rand(2, 2, 7, 8)
    sigma = 0.1 + 0.3 * _rand(2, 2, 4, 4, seed=6)
    spatial = 0.3 + 2.0 * _rand(2, 1, 4, 4, seed=7)  # half resolution, shared by channels
    full = [
        F.interpolate(m, size=(7, 8), mode="bilinear", align_corners=False)
        for m in (sigma, spatial)
    ]
    ours = nlm(x, sigma, spatial_sigma=spatial)
    ref = reference_nlm(x.numpy(), full[0].numpy(), spatial_sigma=full[1].numpy())
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6, atol=1e-12)
    g = _rand(2, 3, 7, 8, seed=8)  # joint distances over a 3-channel guide
    s1 = sigma[:, :1]
    ours = nlm(x, s1, spatial_sigma=spatial, guide=g, joint=True)
    ref = reference_nlm(
        x.numpy(),
        full[0][:, :1].numpy(),
        spatial_sigma=full[1].numpy(),
        guide=g.numpy(),
        joint=True,
    )
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6, atol=1e-12)


def test_joint_distances_with_per_channel_sigmas():
    x = _rand(1, 3, 7, 6)
    sigma = 0.05 + 0.3 * _rand(1, 3, 4, 3, seed=9)
    full = F.interpolate(sigma, size=(7, 6), mode="bilinear", align_corners=False)
    for grad in (False, True):  # the in-place (inference) and the autograd paths
        ours = nlm(x.clone().requires_grad_(grad), sigma, joint=True, spatial_sigma=1.2)
        ref = reference_nlm(x.numpy(), full.numpy(), joint=True, spatial_sigma=1.2)
        np.testing.assert_allclose(ours.detach().numpy(), ref, rtol=1e-6, atol=1e-12)


def test_spatial_sigma_zero_is_identity_and_constant_equals_number():
    x = _rand(1, 2, 8, 9)
    y = nlm(x, 0.5, spatial_sigma=torch.zeros(1, 1, 4, 5, dtype=torch.float64))
    torch.testing.assert_close(y, x, rtol=0, atol=1e-12)
    m = torch.full((1, 1, 3, 3), 1.3, dtype=torch.float64)
    torch.testing.assert_close(nlm(x, 0.2, spatial_sigma=m), nlm(x, 0.2, spatial_sigma=1.3))


def test_matches_reference_with_separate_guide():
    x, g = _rand(1, 2, 6, 7), _rand(1, 1, 6, 7, seed=3)
    ours = nlm(x, 0.2, guide=g)
    ref = reference_nlm(x.numpy(), np.full((1, 1, 6, 7), 0.2), guide=g.numpy())
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6, atol=1e-12)


def test_tiles_agree_with_single_pass():
    # wide enough that the band tiling splits the image into several bands
    x = _rand(1, 1, 200, 1500, dtype=torch.float32)
    sigma = torch.full((1, 1, 100, 750), 0.1)
    with torch.no_grad():
        tiled = nlm(x, sigma)
    # grad mode runs the out-of-place path with different bands
    plain = nlm(x.requires_grad_(), sigma).detach()
    torch.testing.assert_close(tiled, plain, rtol=1e-5, atol=1e-6)


def test_huge_sigma_is_window_mean_and_tiny_sigma_is_identity():
    x = _rand(1, 1, 12, 12)
    mean = F.avg_pool2d(x, 5, stride=1)  # valid 5x5 mean
    y = nlm(x, 1e6)
    torch.testing.assert_close(y[..., 2:-2, 2:-2], mean, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(nlm(x, 0.0), x)
    torch.testing.assert_close(nlm(x, 1e-6), x)


def test_bilateral_is_nlm_with_1x1_patch():
    x = _rand(1, 2, 8, 9)
    torch.testing.assert_close(bilateral(x, 0.2), nlm(x, 0.2, patch_size=1))
    torch.testing.assert_close(NLM(3, 5)(x, 0.2), nlm(x, 0.2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_device_kept(dtype):
    x = _rand(2, 3, 10, 11, dtype=dtype)
    y = nlm(x, torch.full((1, 3, 5, 6), 0.1, dtype=torch.float64))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device


def test_tiny_images_work():
    for shape in [(1, 1, 1, 1), (1, 1, 2, 3), (1, 1, 1, 9)]:
        x = _rand(*shape)
        y = nlm(x, 0.1)
        assert y.shape == x.shape and torch.isfinite(y).all()


def test_gradcheck_image_sigma_and_guide():
    x = _rand(1, 1, 5, 6).requires_grad_()
    sigma = (0.2 + 0.2 * _rand(1, 1, 3, 3, seed=4)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, s: nlm(a, s), (x, sigma))
    g = _rand(1, 1, 5, 6, seed=5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, gg: nlm(a, 0.3, guide=gg), (x, g))
    x3 = _rand(1, 2, 4, 5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, s: nlm(a, s, joint=True, patch_size=1), (x3, sigma))
    spatial = (0.5 + _rand(1, 1, 3, 3, seed=6)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, s, q: nlm(a, s, spatial_sigma=q), (x, sigma, spatial))


def test_gradients_finite_at_sigma_zero():
    x = _rand(1, 1, 6, 6).requires_grad_()
    sigma = torch.zeros(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    nlm(x, sigma).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(sigma.grad).all()


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x: nlm(x[0], 0.1), "4 dimensions"),
        (lambda x: nlm(x.numpy(), 0.1), "torch.Tensor"),
        (lambda x: nlm(x.to(torch.int32), 0.1), "floating"),
        (lambda x: nlm(x.clone().fill_(float("nan")), 0.1), "NaN"),
        (lambda x: nlm(x, -0.1), r"sigma must lie in \[0"),
        (lambda x: nlm(x, float("inf")), "finite"),
        (lambda x: nlm(x, torch.full((3, 1, 2, 2), 0.1)), "batch size"),
        (lambda x: nlm(x, torch.full((2, 2, 2, 2), 0.1)), "channels"),
        (lambda x: nlm(x, torch.full((2, 2), 0.1)), "shape"),
        (lambda x: nlm(x, 0.1, patch_size=2), "odd"),
        (lambda x: nlm(x, 0.1, search_size=0), "odd"),
        (lambda x: nlm(x, 0.1, spatial_sigma=-1.0), "spatial_sigma"),
        (lambda x: nlm(x, 0.1, guide=torch.rand(2, 1, 4, 4)), "guide"),
        (lambda x: nlm(x, 0.1, spatial_sigma=torch.full((2, 2, 1, 1), 1.0)), "spatial_sigma"),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises((ValueError, TypeError), match=match):
        call(x)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    sigma=st.one_of(st.just(0.0), st.floats(1e-30, 1e3)),
    patch=st.sampled_from([1, 3]),
    joint=st.booleans(),
)
def test_property_output_within_window_range(seed, h, w, sigma, patch, joint):
    x = _rand(1, 2, h, w, seed=seed)
    y = nlm(x, sigma, patch_size=patch, joint=joint)
    assert y.shape == x.shape and torch.isfinite(y).all()
    # convex combination of the 5x5 search window (mirrored borders stay inside it)
    xp = (
        F.pad(x, (2, 2, 2, 2), mode="reflect")
        if min(h, w) > 2
        else F.pad(x, (2, 2, 2, 2), mode="replicate")
    )
    lo = -F.max_pool2d(-xp, 5, stride=1)
    hi = F.max_pool2d(xp, 5, stride=1)
    assert (y >= lo - 1e-12).all() and (y <= hi + 1e-12).all()


@settings(max_examples=20, deadline=None)
@given(value=st.floats(-100, 100), sigma=st.floats(0, 10))
def test_property_constant_stays_constant(value, sigma):
    x = torch.full((1, 1, 6, 7), value, dtype=torch.float64)
    torch.testing.assert_close(nlm(x, sigma), x)


def test_weights_have_a_floor_that_keeps_subnormals_out():
    """A tiny sigma makes every off-centre weight exp(-60) (not a subnormal number), which
    changes nothing at float64 precision: the output is still the identity."""
    x = _rand(1, 1, 9, 9)
    for dtype in (torch.float32, torch.float64):
        y = nlm(x.to(dtype), 1e-6)
        torch.testing.assert_close(y, x.to(dtype), rtol=0, atol=0)
    from pkn.kernels import effective_weights

    pr = effective_weights("nlm", x, 1e-6, pixel=(4, 4))
    off = np.delete(pr.weights[pr.weights > 0], np.argmax(pr.weights[pr.weights > 0]))
    assert len(off) == 24
    np.testing.assert_allclose(off, np.exp(-60.0), rtol=1e-9)
