"""pkn.restore on stacks: (..., y, x) with optional channels, plane by plane."""

import numpy as np
import pytest

import pkn
from pkn.samples import natural


def _plane(size=48, sigma=0.08, seed=0):
    noisy, _ = natural(sigma, seed=seed)
    return noisy[200 : 200 + size, 200 : 200 + size].astype(np.float32)


def _flips(a):
    """Four planes with the same values (so the same percentiles as one plane)."""
    return np.stack([a, a[::-1], a[:, ::-1], a[::-1, ::-1]])


def _given(noise):
    if noise["model"] == "awgn":
        return noise["sigma"][0]
    return (noise["a"][0], noise["b"][0])


def test_zstack_equals_planes_restored_with_the_stacks_noise():
    z = _flips(_plane())
    r = pkn.restore(z)
    assert r.image.shape == z.shape and r.qc.shape == z.shape
    assert r.maps["sigma"].shape == (4, 24, 24)
    assert r.info["noise"]["scope"] == "stack"
    assert r.info["planes"] == {"shape": [4], "noise": "per stack", "normalisation": "per stack"}
    noise = _given(r.info["noise"])
    for k in range(len(z)):
        one = pkn.restore(z[k], noise=noise)
        np.testing.assert_allclose(r.image[k], one.image, atol=1e-4)  # float32 rounding
        np.testing.assert_allclose(r.maps["sigma"][k], one.maps["sigma"], rtol=2e-3, atol=1e-5)


def test_planes_are_independent():
    z = np.stack([_plane(seed=s) for s in range(3)])
    a = pkn.restore(z, noise=0.08).image
    z2 = z.copy()
    z2[1] = _plane(seed=7)
    b = pkn.restore(z2, noise=0.08, per_plane=True).image
    c = pkn.restore(z, noise=0.08, per_plane=True).image
    np.testing.assert_array_equal(b[0], c[0])
    np.testing.assert_array_equal(b[2], c[2])
    assert not np.allclose(b[1], c[1])
    # with one normalisation per stack planes j != k are unchanged when k only moves
    # within the stack's range (here: plane 1 flipped)
    z3 = z.copy()
    z3[1] = z[1][::-1]
    d = pkn.restore(z3, noise=0.08).image
    np.testing.assert_allclose(d[0], a[0], atol=1e-6)
    np.testing.assert_allclose(d[2], a[2], atol=1e-6)


def test_tczyx_style_channels_and_layout():
    rng = np.random.default_rng(0)
    p = _plane(32)
    tc = np.stack([np.stack([p, p[::-1]]) for _ in range(3)])  # (t=3, c=2, y, x)
    tc = tc + 0.01 * rng.standard_normal(tc.shape).astype(np.float32)
    r = pkn.restore(tc, channel_axis=1, noise=0.08)
    assert r.image.shape == tc.shape and r.qc.shape == tc.shape
    assert r.maps["sigma"].shape == (3, 2, 16, 16)
    one = pkn.restore(tc[1], channel_axis=0, noise=0.08, per_plane=True)
    np.testing.assert_allclose(r.image[1], one.image, atol=0.02)
    last = pkn.restore(np.moveaxis(tc, 1, -1), channel_axis=-1, noise=0.08)
    assert last.maps["sigma"].shape == (3, 16, 16, 2)
    np.testing.assert_allclose(np.moveaxis(last.image, -1, 1), r.image, atol=1e-5)


def test_per_plane_matches_per_plane_calls_and_differs_from_pooled():
    a = _plane(48)
    z = np.stack([a, 3 * a + 1, 0.5 * a]).astype(np.float32)  # different ranges
    pp = pkn.restore(z, per_plane=True)
    pooled = pkn.restore(z)
    assert pp.info["planes"]["noise"] == "per plane"
    assert len(pp.info["noise"]["planes"]) == 3
    assert len(pp.info["normalisation"]["offset"]) == 3
    for k in range(3):
        np.testing.assert_allclose(pp.image[k], pkn.restore(z[k]).image, atol=1e-5)
    assert not np.allclose(pp.image, pooled.image, atol=1e-4)


def test_uint16_4d_stack_keeps_layout_and_units():
    a = _plane(32)
    s = np.stack([_flips(a), _flips(a)])  # (2, 4, y, x)
    u = (np.clip(s, 0, 1) * 4000 + 100).round().astype(np.uint16)
    r = pkn.restore(u)
    assert r.image.shape == u.shape and r.image.dtype == np.float32
    assert r.maps["sigma"].shape == (2, 4, 16, 16)
    assert abs(float(r.image.mean()) - float(u.mean())) < 0.05 * float(u.mean())


def test_strength_auto_and_probe_on_a_stack():
    z = _flips(_plane(48))
    r = pkn.Restorer(z, noise=0.08)
    out = r.render("auto")
    assert out.info["strength_auto"]["plane"] == [2]
    pr = r.probe((20, 30), plane=1)
    r0, c0 = pr.origin
    win = z[1, r0 : r0 + pr.weights.shape[0], c0 : c0 + pr.weights.shape[1]]
    assert float((pr.weights * win).sum()) + pr.bias == pytest.approx(
        float(r.render(1.0).image[1, 20, 30]), rel=1e-5
    )
    with pytest.raises(ValueError, match=r"plane must be an integer in \[0, 3\]"):
        r.probe((1, 1), plane=4)


@pytest.mark.parametrize(
    "shape,axis,match",
    [
        ((3, 16, 16), 3, r"channel_axis must be an integer in \[-3, 2\].*got 3"),
        ((3, 16, 16), -4, r"\[-3, 2\].*got -4"),
        ((2, 3, 16, 16), 4, r"\[-4, 3\].*got 4"),
        ((16, 16), 0, r"channel_axis=0 needs an image with >= 3"),
        ((3, 16, 16), 1.0, r"got 1.0"),
        ((16, 16, 3), None, r"channel_axis=-1"),
    ],
)
def test_bad_channel_axis_names_value_and_range(shape, axis, match):
    with pytest.raises(ValueError, match=match):
        pkn.restore(np.zeros(shape, np.float32), channel_axis=axis)


def test_per_plane_must_be_bool():
    with pytest.raises(ValueError, match="per_plane"):
        pkn.restore(np.zeros((2, 16, 16), np.float32), per_plane="yes")


def test_big_planes_and_stacks_calibrate_the_noise_on_bounded_crops(monkeypatch):
    import pkn._input as I

    monkeypatch.setattr(I, "CAL_PIXELS", 64 * 64 * 4)  # 4 crops of 64 x 64 at most
    monkeypatch.setattr(I, "_CAL_SIDE", 64)
    rng = np.random.default_rng(0)
    z = (0.5 + 0.05 * rng.standard_normal((3, 200, 180))).astype(np.float32)
    st = I.Stack(z)
    assert st.big(True) and st.big(False)
    assert st.calibration_sample().shape == (4, 1, 64, 64)  # spread over the planes
    assert st.calibration_sample(1).shape == (4, 1, 64, 64)  # crops of plane 1
    for r in (pkn.restore(z), pkn.restore(z[0]), pkn.restore(z, per_plane=True)):
        noise = r.info["noise"]
        sig = noise["planes"][0]["sigma"] if "planes" in noise else noise["sigma"]
        assert sig[0] == pytest.approx(0.05, rel=0.1)


def test_a_calibrated_noise_model_is_used_as_given():
    """noise=pkn.calibrate(...) (per channel) gives what the pooled estimate gives, its
    correlation included; a wrong number of models is refused."""
    rng = np.random.default_rng(11)
    xx = np.mgrid[0:64, 0:72][1]
    base = 0.5 + 0.2 * np.sin(xx / 6.0)[..., None] * np.array([1.0, 0.8, 0.6])
    stack = np.stack([base + 0.05 * rng.standard_normal(base.shape) for _ in range(3)])
    stack = stack.astype(np.float32)  # (z, y, x, c)
    models = pkn.calibrate(stack, channel_axis=-1)
    ref = pkn.restore(stack, channel_axis=-1)
    given = pkn.restore(stack, channel_axis=-1, noise=models)
    np.testing.assert_allclose(given.image, ref.image, atol=1e-6)
    assert given.info["noise"]["correlation"] == ref.info["noise"]["correlation"]
    assert given.info["noise"]["given"].startswith("NoiseModel")
    one = pkn.restore(stack[..., 0], noise=models[0])  # one model, gray stack
    assert one.info["noise"]["sigma"] == [models[0].std_at_mean]
    with pytest.raises(ValueError, match="2 noise models for an image of 3 channels"):
        pkn.restore(stack, channel_axis=-1, noise=models[:2])
    with pytest.raises(TypeError, match="NoiseModels only"):
        pkn.restore(stack, channel_axis=-1, noise=(models[0], 0.1))


def test_one_plane_restored_as_in_its_stack():
    """A plane restored alone with the stack's noise models and normalisation equals its
    plane of ``pkn.restore(stack)``; bad normalisations are refused."""
    rng = np.random.default_rng(5)
    xx = np.mgrid[0:48, 0:56][1]
    stack = (
        0.4 + 0.1 * np.sin(xx / 5.0) + rng.normal(0, [[[0.03]], [[0.06]], [[0.04]]], (3, 48, 56))
    )
    stack = stack.astype(np.float32)
    whole = pkn.restore(stack)
    norm = whole.info["normalisation"]
    alone = pkn.Restorer(
        stack[1], noise=pkn.calibrate(stack), normalisation=(norm["offset"], norm["scale"])
    ).render(1.0)
    np.testing.assert_allclose(alone.image, whole.image[1], atol=1e-6)
    own = pkn.Restorer(stack[1], noise=pkn.calibrate(stack)).render(1.0)
    assert np.abs(own.image - whole.image[1]).max() > 1e-5  # its own normalisation differs
    for bad in [(0.0, 0.0), (0.0, -1.0), (np.nan, 1.0), (0.0,), "x", (True, 1.0)]:
        with pytest.raises(ValueError, match="normalisation"):
            pkn.Restorer(stack[1], noise=0.05, normalisation=bad)
