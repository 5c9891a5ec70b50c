"""Adversarial inputs to pkn.restore (issue #13): every case ends in a correct result or an
error naming the argument, the value given and what is accepted; the input is never
modified; a refused call allocates next to nothing (checked with tracemalloc)."""

import tracemalloc

import numpy as np
import pytest

import pkn
from pkn.samples import natural


def _img(n=32, seed=0):
    noisy, _ = natural(0.08, seed=seed)
    return noisy[200 : 200 + n, 200 : 200 + n].astype(np.float32)


IMG = _img()


def _refused(image, exc, words, **kw):
    """``pkn.restore(image, **kw)`` raises ``exc`` whose message holds every word, leaves
    ``image`` as it was and allocates under 16 MB (numpy) on the way."""
    before = np.array(image, copy=True) if isinstance(image, np.ndarray) else None
    tracemalloc.start()
    try:
        with pytest.raises(exc) as e:
            pkn.restore(image, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(e.value)
    for w in words:
        assert w in msg, (w, msg)
    assert peak < 16 * 2**20, peak
    if before is not None:
        np.testing.assert_array_equal(np.asarray(image), before)
    return msg


# ------------------------------------------------------------------ noise
BAD_NOISE = [
    ((0, -1), ValueError, ["noise=(0, -1)", "a * x + b is <= 0"]),
    ((0.0, -1e-9), ValueError, ["noise=(0.0, -1e-09)", "positive somewhere"]),
    ((-0.1, 0.01), ValueError, ["noise=(-0.1, 0.01)", "a >= 0"]),
    ((float("nan"), 0.01), ValueError, ["noise=(nan, 0.01)", "finite"]),
    ((0.01, float("inf")), ValueError, ["noise=(0.01, inf)", "finite"]),
    (("0.1", 0.01), TypeError, ["noise=('0.1', 0.01)", "two numbers"]),
    ([0.1, None], TypeError, ["noise=[0.1, None]", "two numbers"]),
    ((True, 0.01), TypeError, ["noise=(True, 0.01)", "two numbers"]),
    ((0.1,), ValueError, ["noise=(0.1,)", "(a, b), two numbers"]),
    ((0.1, 0.2, 0.3), ValueError, ["noise=(0.1, 0.2, 0.3)", "(a, b)"]),
    (np.array([[0.1, 0.2]]), ValueError, ["noise=array([[0.1, 0.2]])", "(a, b)"]),
    (-0.5, ValueError, ["noise sigma", "-0.5", ">= 0"]),
    (float("nan"), ValueError, ["noise sigma", "nan"]),
    (float("inf"), ValueError, ["noise sigma", "inf"]),
    (np.float32(-1), ValueError, ["noise sigma", "-1"]),
    ("loud", ValueError, ["'loud'", "not understood", "(a, b)"]),
    (True, TypeError, ["noise=True", "accepted"]),
    ({"sigma": 0.1}, TypeError, ["noise={'sigma': 0.1}", "accepted"]),
]


@pytest.mark.parametrize("noise,exc,words", BAD_NOISE, ids=[repr(c[0]) for c in BAD_NOISE])
def test_invalid_noise_is_refused_quoting_the_value(noise, exc, words):
    _refused(IMG, exc, words, noise=noise)


@pytest.mark.parametrize(
    "given,same_as",
    [
        (np.array([0.004, 0.002]), (0.004, 0.002)),
        ([0.004, 0.002], (0.004, 0.002)),
        ((np.float32(0.004), np.float64(0.002)), (0.004, 0.002)),
        (np.float32(0.08), 0.08),
        (np.array(0.08), 0.08),
    ],
    ids=["numpy-pair", "list-pair", "numpy-scalars-pair", "float32-sigma", "0d-array-sigma"],
)
def test_numpy_noise_values_are_accepted(given, same_as):
    x = IMG.copy()
    a = pkn.restore(x, noise=given)
    b = pkn.restore(x, noise=same_as)
    np.testing.assert_allclose(a.image, b.image, atol=1e-6)
    np.testing.assert_array_equal(x, IMG)


def test_integer_sigma_in_uint8_units():
    u8 = (np.clip(IMG, 0, 1) * 255).round().astype(np.uint8)
    a = pkn.restore(u8, noise=np.int64(20))
    b = pkn.restore(u8, noise=20.0)
    np.testing.assert_array_equal(a.image, b.image)


# ------------------------------------------------------------------ strength
BAD_STRENGTH = [True, False, np.bool_(True), "high", float("nan"), float("inf"), -1, None, [1.0]]


@pytest.mark.parametrize("strength", BAD_STRENGTH, ids=[repr(s) for s in BAD_STRENGTH])
def test_invalid_strength_is_refused_not_coerced(strength):
    _refused(IMG, ValueError, ["strength must be", repr(strength)], strength=strength, noise=0.08)


@pytest.mark.parametrize("strength,same", [(np.float32(0.5), 0.5), (np.int64(2), 2.0)])
def test_numpy_strengths_are_accepted(strength, same):
    a = pkn.restore(IMG, noise=0.08, strength=strength)
    b = pkn.restore(IMG, noise=0.08, strength=same)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.info["strength"] == same


# ------------------------------------------------------------------ scale / blur
CROSS = [
    ({"scale": 2.0}, ["scale=2.0 is only used for upsampling", "'denoise'"]),
    ({"blur": 1.5}, ["blur=1.5 is only used for deblurring", "'denoise'"]),
    ({"task": "upsample", "scale": 2.0, "blur": 1.0}, ["blur=1.0", "'upsample'"]),
    ({"task": "deblur", "blur": 1.0, "scale": 2}, ["scale=2 is only used for upsampling"]),
    ({"task": "deblur", "blur": 1.0, "scale": 1.0}, ["scale=1.0"]),
]


@pytest.mark.parametrize("kw,words", CROSS, ids=[str(c[0]) for c in CROSS])
def test_inputs_for_another_task_are_refused_not_ignored(kw, words):
    _refused(IMG, ValueError, words, **kw)


BAD_BLUR = [
    (1e6, ValueError, ["blur=1000000.0", "(0, 50] px"]),
    (0.0, ValueError, ["blur=0.0", "(0, 50] px"]),
    (-1, ValueError, ["blur=-1"]),
    (float("nan"), ValueError, ["blur=nan"]),
    ("1.5", TypeError, ["blur='1.5'", "accepted"]),
    (True, TypeError, ["blur=True", "accepted"]),
    ((1.0, 1.0), TypeError, ["blur=(1.0, 1.0)", "three numbers"]),
    ((1.0, 2.0, 1.5), ValueError, ["blur=(1.0, 2.0, 1.5)", "rho"]),
    ((1.0, 1e6, 0.0), ValueError, ["blur=(1.0, 1000000.0, 0.0)", "sigma_y and sigma_x"]),
    (-np.ones((3, 3)), ValueError, ["blur=", "positive sum"]),
    (np.ones((3, 3, 3)), ValueError, ["blur=", "(3, 3, 3)", "pkn.psf.import_psf"]),
    (np.pad(np.ones((3, 3)), ((1, 1), (1, 5))), ValueError, ["blur=", "centre"]),
    (np.pad(np.ones((5, 5)), 1) + 0.5, ValueError, ["blur=", "border"]),
    (np.ones((1001, 1001)), ValueError, ["blur=<array of shape (1001, 1001)", "1001 x 1001"]),
]


@pytest.mark.parametrize("blur,exc,words", BAD_BLUR, ids=[f"blur{i}" for i in range(len(BAD_BLUR))])
def test_invalid_blur_is_refused_with_what_is_accepted(blur, exc, words):
    _refused(IMG, exc, [*words, "accepted"], task="deblur", blur=blur)


BAD_SCALE = [
    (1e5, ["scale=100000.0", "3200000x3200000", "GiB", "268435456"]),
    (1e9, ["scale=1000000000.0", "GiB"]),
    (0, ["scale=", "got 0"]),
    (-2.0, ["got -2.0"]),
    (float("nan"), ["got nan"]),
    (True, ["got True"]),
    ("2", ["got '2'"]),
]


@pytest.mark.parametrize("scale,words", BAD_SCALE, ids=[repr(c[0]) for c in BAD_SCALE])
def test_invalid_or_huge_upsampling_scale_is_refused(scale, words):
    _refused(IMG, ValueError, words, task="upsample", scale=scale)


# ------------------------------------------------------------------ masked arrays
def test_masked_pixels_are_refused_never_dropped():
    m = np.ma.masked_array(IMG.copy(), mask=np.zeros(IMG.shape, bool))
    m.mask[3, 4] = True
    msg = _refused(m, ValueError, ["masked array with 1 masked pixel", "filled"])
    assert "image.data" in msg
    assert m.mask[3, 4] and m.mask.sum() == 1  # the mask is left alone


def test_masked_array_without_masked_pixels_is_its_data():
    m = np.ma.masked_array(IMG.copy(), mask=False)
    np.testing.assert_array_equal(
        pkn.restore(m, noise=0.08).image, pkn.restore(IMG, noise=0.08).image
    )


# ------------------------------------------------------------------ byte order
@pytest.mark.parametrize("dtype", [">u2", ">f4", ">f8", "<u2"])
def test_any_byte_order_gives_the_native_result(dtype):
    native = np.dtype(dtype).newbyteorder("=")
    x = (np.clip(IMG, 0, 1) * 4000).astype(native) if native.kind == "u" else IMG.astype(native)
    swapped = x.astype(dtype)
    before = swapped.copy()
    a = pkn.restore(swapped)
    b = pkn.restore(x)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.dtype == b.image.dtype and a.image.dtype.isnative
    np.testing.assert_array_equal(swapped, before)
    assert swapped.dtype == np.dtype(dtype)


# ------------------------------------------------------------------ extreme values
def _with(value, dtype=np.float64, where=(5, 6)):
    x = IMG.astype(dtype)
    x[where] = value
    return x


EXTREME = [
    (_with(1e300), ["+-1e+30", "1e+300", "Rescale"]),
    (IMG.astype(np.float64) * 1e300, ["+-1e+30", "Rescale"]),
    (_with(-3e38, np.float32), ["+-1e+30", "-3e+38"]),
    (_with(np.inf), ["NaN or Inf", "1 pixel"]),
    (_with(-np.inf, np.float32), ["NaN or Inf"]),
    (_with(np.nan, np.float32), ["NaN or Inf", "1 pixel"]),
    (np.stack([IMG, _with(np.nan, np.float32)]), ["NaN or Inf", "plane (1,)"]),
]


@pytest.mark.parametrize("image,words", EXTREME, ids=[f"extreme{i}" for i in range(len(EXTREME))])
def test_extreme_or_non_finite_values_get_a_clear_error(image, words):
    _refused(image, ValueError, words)


def test_tiny_values_give_the_scaled_result():
    x = IMG.astype(np.float64)
    a = pkn.restore(x * 1e-20, noise=0.08e-20).image
    b = pkn.restore(x, noise=0.08).image
    np.testing.assert_allclose(a * 1e20, b, atol=1e-6)


def test_values_near_the_limit_are_restored_in_their_units():
    x = IMG.astype(np.float64) * 1e29
    r = pkn.restore(x, noise=0.08e29)
    assert np.isfinite(r.image).all() and np.isfinite(r.maps["sigma"]).all()
    np.testing.assert_allclose(
        r.image / 1e29, pkn.restore(IMG.astype(np.float64), noise=0.08).image, atol=1e-6
    )


# ------------------------------------------------------------------ shapes and dtypes
SHAPES = [
    (np.zeros((0, 0), np.float32), ValueError, ["empty", "(0, 0)"]),
    (np.zeros((0, 16), np.float32), ValueError, ["empty", "(0, 16)"]),
    (np.zeros((3, 0, 16), np.float32), ValueError, ["empty", "(3, 0, 16)"]),
    (np.zeros((0, 16, 16), np.float32), ValueError, ["empty", "(0, 16, 16)"]),
    (np.zeros((1, 1), np.float32), ValueError, ["1x1 pixels", "2x2"]),
    (np.float32(1.0), ValueError, ["shape ()", "(..., y, x)"]),
    (np.zeros(16, np.float32), ValueError, ["shape (16,)", "(..., y, x)"]),
    (np.zeros((16, 16), bool), TypeError, ["dtype bool", "uint8, uint16, float32 or float64"]),
    (np.zeros((16, 16), object), TypeError, ["dtype object", "uint8"]),
    (np.zeros((16, 16), np.complex64), TypeError, ["dtype complex64", "uint8"]),
    (np.zeros((16, 16), np.int32), TypeError, ["dtype int32", "uint8"]),
    (np.zeros((16, 16), np.float16), TypeError, ["dtype float16", "float32"]),
    ([[0.1, 0.2], ["a", "b"]], TypeError, ["dtype <U", "uint8"]),
]


@pytest.mark.parametrize("image,exc,words", SHAPES, ids=[f"shape{i}" for i in range(len(SHAPES))])
def test_unusable_shapes_and_dtypes_are_refused(image, exc, words):
    _refused(image, exc, words)


def test_two_by_two_and_constant_images_are_restored():
    tiny = np.array([[0.1, 0.2], [0.3, 0.4]], np.float32)
    r = pkn.restore(tiny)
    assert r.image.shape == (2, 2) and np.isfinite(r.image).all()
    flat = np.full((16, 16), 7, np.uint16)
    np.testing.assert_allclose(pkn.restore(flat).image, 7, atol=1e-4)
