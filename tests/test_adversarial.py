"""The adversarial matrix (issue #13) for the kernels, the noise estimators and model files.

Every case ends in a correct result or in a TypeError/ValueError whose message names the
argument, the value given and what is accepted; huge parameters are refused before they
allocate, or computed in bounded time and memory (checked in a child process with a
capped address space and a timeout); inputs are never modified.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pkn import noise
from pkn.kernels import affine, bilateral, gaussian, kpn, nlm, polyblur, rbf_resample
from pkn.kernels.bilateral_aniso import bilateral_aniso

sys.path.insert(0, str(Path(__file__).parent))
from test_gaussian import reference as gaussian_reference


def _image(h=16, w=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, h, w, generator=g, dtype=dtype)


# --------------------------------------------------------------------------- wrong types
X = _image()
M = torch.ones(1, 1, 4, 4)
WRONG = {
    # sigma=True must not silently become 1 (numbers, numpy bools and bool tensors)
    "gaussian-sigma-True": (lambda: gaussian(X, True), TypeError, r"sigma1.*True"),
    "gaussian-sigma-np.bool_": (lambda: gaussian(X, np.bool_(True)), TypeError, r"sigma1.*True"),
    "gaussian-sigma-bool-map": (lambda: gaussian(X, M.bool()), TypeError, r"sigma1.*bool"),
    "gaussian-sigma-complex-map": (
        lambda: gaussian(X, M.to(torch.complex64)),
        TypeError,
        r"sigma1.*complex",
    ),
    "gaussian-sigma-str": (lambda: gaussian(X, "1"), TypeError, r"sigma1.*'1'"),
    "gaussian-sigma-None": (lambda: gaussian(X, None), TypeError, r"sigma1.*None"),
    "gaussian-sigma-nan": (lambda: gaussian(X, math.nan), ValueError, r"sigma1.*finite.*nan"),
    "gaussian-sigma-inf": (lambda: gaussian(X, math.inf), ValueError, r"sigma1.*finite.*inf"),
    "gaussian-sigma-negative": (lambda: gaussian(X, -1.0), ValueError, r"sigma1.*\[0, inf\].*-1"),
    "gaussian-sigma-beyond-float32": (
        lambda: gaussian(X, 1e300),
        ValueError,
        r"sigma1=1e\+300.*float32",
    ),
    "gaussian-sigma-nan-map": (
        lambda: gaussian(X, torch.full((1, 1, 2, 2), math.nan)),
        ValueError,
        r"sigma1.*NaN",
    ),
    "gaussian-rho-2": (lambda: gaussian(X, 1.0, 1.0, 2.0), ValueError, r"rho.*\[-1, 1\].*2"),
    "gaussian-size-True": (lambda: gaussian(X, 1.0, size=True), ValueError, r"size.*odd.*True"),
    "gaussian-size-even": (lambda: gaussian(X, 1.0, size=4), ValueError, r"size.*odd.*4"),
    "gaussian-size-float": (lambda: gaussian(X, 1.0, size=3.0), ValueError, r"size.*odd.*3\.0"),
    "nlm-sigma-True": (lambda: nlm(X, True), TypeError, r"sigma.*True"),
    "nlm-spatial-True": (lambda: nlm(X, 0.1, spatial_sigma=True), TypeError, r"spatial_sigma"),
    "nlm-joint-str": (lambda: nlm(X, 0.1, joint="no"), TypeError, r"joint.*'no'"),
    "nlm-joint-1": (lambda: nlm(X, 0.1, joint=1), TypeError, r"joint.*True or False.*1"),
    "nlm-search-True": (lambda: nlm(X, 0.1, search_size=True), ValueError, r"search_size.*True"),
    "nlm-patch-0": (lambda: nlm(X, 0.1, patch_size=0), ValueError, r"patch_size.*odd.*0"),
    "nlm-blind-True": (lambda: nlm(X, 0.1, blind_spot=True), ValueError, r"blind_spot.*True"),
    "nlm-blind-negative": (lambda: nlm(X, 0.1, blind_spot=-1), ValueError, r"blind_spot.*-1"),
    "bilateral-sigma-True": (lambda: bilateral(X, True), TypeError, r"sigma.*True"),
    "bilateral-sigma-negative": (lambda: bilateral(X, -0.1), ValueError, r"sigma.*-0\.1"),
    "polyblur-b-True": (lambda: polyblur(X, True, 0, 0, blur=1.0), TypeError, r"\bb\b.*True"),
    "polyblur-blur-True": (lambda: polyblur(X, 1, 0, 0, blur=True), TypeError, r"blur.*bool"),
    "polyblur-blur-zero": (lambda: polyblur(X, 1, 0, 0, blur=0.0), ValueError, r"blur.*0\.0"),
    "polyblur-blur-nan": (lambda: polyblur(X, 1, 0, 0, blur=math.nan), ValueError, r"blur.*nan"),
    "polyblur-blur-rho-True": (
        lambda: polyblur(X, 1, 0, 0, blur=(1.0, 1.0, True)),
        TypeError,
        r"rho is bool",
    ),
    "affine-w0-True": (lambda: affine(X, True, 1.0), TypeError, r"w0.*True"),
    "affine-w1-bool-map": (lambda: affine(X, 0.0, M.bool()), TypeError, r"w1.*bool"),
    "rbf-sigma-True": (lambda: rbf_resample(X, True, scale=2), TypeError, r"sigma1.*True"),
    "rbf-scale-True": (lambda: rbf_resample(X, 0.5, scale=True), TypeError, r"scale.*bool"),
    "rbf-scale-zero": (lambda: rbf_resample(X, 0.5, scale=0), ValueError, r"scale.*positive.*0"),
    "rbf-scale-nan": (lambda: rbf_resample(X, 0.5, scale=math.nan), ValueError, r"scale.*nan"),
    "rbf-size-True": (lambda: rbf_resample(X, 0.5, size=(True, 4)), ValueError, r"size.*True"),
    "rbf-size-and-scale": (
        lambda: rbf_resample(X, 0.5, size=(4, 4), scale=2),
        ValueError,
        r"exactly one of scale.*size",
    ),
    "kpn-weights-bool": (
        lambda: kpn(X, torch.ones(1, 9, 4, 4, dtype=torch.bool)),
        TypeError,
        r"weights.*bool",
    ),
    "aniso-search-True": (
        lambda: bilateral_aniso(X, 1, 1, 0, 0.1, 0, 0, search_size=True),
        ValueError,
        r"search_size.*True",
    ),
    "image-bool": (
        lambda: gaussian(torch.ones(1, 1, 4, 4, dtype=torch.bool), 1.0),
        TypeError,
        r"x must be a floating tensor.*bool",
    ),
    "image-numpy": (lambda: gaussian(np.ones((1, 1, 4, 4)), 1.0), TypeError, r"x must be a torch"),
    "image-nan": (
        lambda: gaussian(torch.full((1, 1, 4, 4), math.nan), 1.0),
        ValueError,
        r"x contains NaN",
    ),
    "image-empty": (lambda: gaussian(torch.ones(1, 1, 0, 4), 1.0), ValueError, r"x is empty"),
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_wrong_parameters_raise_clear_errors(case):
    call, exc, pattern = WRONG[case]
    before = X.clone()
    with pytest.raises(exc, match=pattern):
        call()
    assert torch.equal(X, before)


# ------------------------------------------------------------- numpy scalars are numbers
def _same(fn, py_value, np_value):
    x = _image(12, 12)
    before = x.clone()
    expected = fn(x, py_value)
    got = fn(x, np_value)
    assert torch.equal(x, before), "the input was modified"
    assert got.dtype == x.dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


NUMPY = {
    "gaussian-np.float64": (lambda x, v: gaussian(x, v), 1.5, np.float64(1.5)),
    "gaussian-np.float32": (lambda x, v: gaussian(x, v), 1.5, np.float32(1.5)),
    "gaussian-np.int64": (lambda x, v: gaussian(x, v), 2, np.int64(2)),
    "gaussian-size-np.int64": (lambda x, v: gaussian(x, 1.0, size=v), 5, np.int64(5)),
    "nlm-sigma-np.float32": (lambda x, v: nlm(x, v), 0.25, np.float32(0.25)),
    "nlm-search-np.int64": (lambda x, v: nlm(x, 0.1, search_size=v), 3, np.int64(3)),
    "nlm-patch-np.int32": (lambda x, v: nlm(x, 0.1, patch_size=v), 1, np.int32(1)),
    "nlm-joint-np.bool_": (lambda x, v: nlm(x, 0.1, joint=v), True, np.bool_(True)),
    "nlm-blind-np.int64": (lambda x, v: nlm(x, 0.5, blind_spot=v), 0, np.int64(0)),
    "bilateral-np.float64": (lambda x, v: bilateral(x, v), 0.2, np.float64(0.2)),
    "polyblur-b-np.float32": (lambda x, v: polyblur(x, v, 0, 0, blur=1.0), -0.5, np.float32(-0.5)),
    "polyblur-blur-np.float64": (lambda x, v: polyblur(x, 1, 0, 0, blur=v), 1.2, np.float64(1.2)),
    "affine-np.int64": (lambda x, v: affine(x, 0.0, v), 2, np.int64(2)),
    "rbf-sigma-np.float32": (lambda x, v: rbf_resample(x, v, scale=2), 0.5, np.float32(0.5)),
    "rbf-scale-np.int64": (lambda x, v: rbf_resample(x, 0.5, scale=v), 2, np.int64(2)),
    "rbf-size-np.int64": (
        lambda x, v: rbf_resample(x, 0.5, size=v),
        (20, 24),
        (np.int64(20), np.int64(24)),
    ),
    "aniso-search-np.int64": (
        lambda x, v: bilateral_aniso(x, 1, 1, 0, 0.1, 0, 0, search_size=v),
        3,
        np.int64(3),
    ),
}


@pytest.mark.parametrize("case", sorted(NUMPY))
def test_numpy_scalars_are_accepted_as_numbers(case):
    _same(*NUMPY[case])


def test_integer_maps_are_numbers():
    x = _image(8, 8)
    torch.testing.assert_close(
        gaussian(x, torch.full((1, 1, 2, 2), 2, dtype=torch.int64)), gaussian(x, 2.0)
    )


# -------------------------------------------------- huge parameters: bounded or refused
# Run in a child with a capped address space (the baseline after importing torch plus
# 1 GiB) and a timeout: an attempt to allocate terabytes fails there as a RuntimeError
# (a wrong outcome) instead of taking the machine down, and a hang fails the timeout.
_CHILD = textwrap.dedent(
    """
    import json, math, resource, sys, time
    import numpy as np, torch
    from pkn.kernels import gaussian, nlm, bilateral, polyblur, rbf_resample, kpn
    from pkn.kernels.bilateral_aniso import bilateral_aniso
    torch.set_num_threads(1)
    vm = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    cap = vm + (1 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    x0 = x.clone()
    cases = {
        "gaussian-sigma-1e4": lambda: gaussian(x, 1e4),
        "gaussian-sigma-1e30": lambda: gaussian(x, 1e30),
        "gaussian-sigma-map-1e4": lambda: gaussian(x, torch.full((1, 1, 8, 8), 1e4)),
        "gaussian-sigma2-1e6": lambda: gaussian(x, 0.5, 1e6),
        "gaussian-size-100001": lambda: gaussian(x, 1.0, size=100001),
        "gaussian-rho-sigma-1e4": lambda: gaussian(x, 1e4, 1e4, 0.5),
        "gaussian-rho-size-100001": lambda: gaussian(x, 1.0, 1.0, 0.3, size=100001),
        "rbf-scale-1e5": lambda: rbf_resample(x, 0.5, scale=1e5),
        "rbf-size-huge": lambda: rbf_resample(x, 0.5, size=(10**6, 10**6)),
        "rbf-sigma-1e3": lambda: rbf_resample(x, 1e3, scale=1.5),
        "polyblur-blur-1e6": lambda: polyblur(x, 1.0, 0, 0, blur=1e6),
        "polyblur-blur-aniso-1e6": lambda: polyblur(x, 1.0, 0, 0, blur=(1e6, 1.0, 0.2)),
        "nlm-search-100001": lambda: nlm(x, 0.1, search_size=100001),
        "nlm-patch-100001": lambda: nlm(x, 0.1, patch_size=100001),
        "bilateral-search-100001": lambda: bilateral(x, 0.1, search_size=100001),
        "aniso-search-100001": lambda: bilateral_aniso(x, 1, 1, 0, 0.1, 0, 0, search_size=100001),
        "kpn-kernel-size-100001": lambda: kpn(x, torch.zeros(1, 9, 4, 4), kernel_size=100001),
    }
    out = {}
    for name, call in cases.items():
        t = time.perf_counter()
        try:
            y = call()
            res = {"ok": True, "finite": bool(torch.isfinite(y).all()), "shape": list(y.shape),
                   "std": float(y.std()), "mean": float(y.mean())}
        except Exception as e:
            res = {"ok": False, "type": type(e).__name__, "msg": str(e)}
        res["seconds"] = time.perf_counter() - t
        res["unchanged"] = bool(torch.equal(x, x0))
        out[name] = res
    print(json.dumps(out))
    """
)

REFUSED = {
    "gaussian-rho-sigma-1e4": r"sigma1/sigma2 = 10000.*radius 30000.*64x64.*at most|limited",
    "gaussian-rho-size-100001": r"size=100001.*radius 50000.*limited to radius",
    "rbf-scale-1e5": r"scale=100000.*6400000x6400000.*GiB.*2\*\*31",
    "rbf-size-huge": r"size=\(1000000, 1000000\).*2\*\*31",
    "rbf-sigma-1e3": r"sigma1/sigma2 = 1000.*radius 3000.*64x64",
    "polyblur-blur-1e6": r"blur=1000000.0.*radius 3000000.*64x64",
    "polyblur-blur-aniso-1e6": r"blur=\(1000000.0, 1.0, 0.2\).*radius 3000000",
    "nlm-search-100001": r"search_size=100001.*radius 50000.*64x64",
    "nlm-patch-100001": r"patch_size=100001.*radius 50000",
    "bilateral-search-100001": r"search_size=100001.*radius 50000",
    "aniso-search-100001": r"search_size=100001.*radius 50000",
    "kpn-kernel-size-100001": r"kernel_size=100001",
}
COMPUTED = (
    "gaussian-sigma-1e4",
    "gaussian-sigma-1e30",
    "gaussian-sigma-map-1e4",
    "gaussian-sigma2-1e6",
    "gaussian-size-100001",
)


@pytest.fixture(scope="module")
def huge():
    r = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PKN_THREADS": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_huge_parameters_are_refused_before_allocating(huge, case):
    res = huge[case]
    assert not res["ok"], f"{case} was computed: {res}"
    assert res["type"] == "ValueError", res
    assert len(__import__("re").findall(REFUSED[case], res["msg"])) == 1, res["msg"]
    assert res["seconds"] < 1.0
    assert res["unchanged"]


@pytest.mark.parametrize("case", COMPUTED)
def test_huge_gaussian_windows_are_folded_in_bounded_time(huge, case):
    res = huge[case]
    assert res["ok"], res
    assert res["finite"] and res["shape"] == [1, 1, 64, 64]
    assert res["seconds"] < 5.0, res  # about 0.2-0.7 s on one thread; generous on 2 cores
    assert res["unchanged"]


# ------------------------------------------------- folded Gaussian: exact, limit, grads
@pytest.mark.parametrize(
    ("shape", "sigma"),
    # radius ceil(3 sigma) beyond max(H, W): folded (the reference sums the whole window)
    [((1, 1, 16, 16), 6.0), ((2, 1, 7, 12), 5.0), ((1, 2, 5, 5), 4.0), ((1, 1, 9, 4), 3.5)],
)
@pytest.mark.parametrize("as_map", [False, True])
def test_folded_window_matches_the_unfolded_formula(shape, sigma, as_map):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(*shape, dtype=torch.float64, generator=g)
    s = torch.rand(1, 1, 3, 3, dtype=torch.float64, generator=g) * sigma + 1.0 if as_map else sigma
    ref = torch.as_tensor(gaussian_reference(x, s))  # the full (2r+1)^2 window, edge-replicated
    before = x.clone()
    torch.testing.assert_close(gaussian(x, s), ref, rtol=1e-12, atol=1e-12)
    y32 = gaussian(x.float(), s.float() if as_map else s)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), ref, rtol=0, atol=2e-6)
    assert torch.equal(x, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigma_to_infinity_tends_to_the_edge_replicated_limit(dtype):
    # edge replication: far beyond the image every axis sees its two edge values with
    # weight 1/2 each, so the output tends to the mean of the four corners
    x = _image(64, 64, dtype=dtype)
    t = time.perf_counter()
    y = gaussian(x, 1e30)
    assert time.perf_counter() - t < 5.0
    corners = x[..., [0, 0, -1, -1], [0, -1, 0, -1]].mean()
    torch.testing.assert_close(y, corners.expand_as(y), rtol=0, atol=1e-6)


def test_folded_gaussian_gradients():
    x = _image(3, 4, dtype=torch.float64).requires_grad_(True)
    s = torch.full((1, 1, 2, 2), 5.1, dtype=torch.float64, requires_grad=True)  # r = 16 > 4
    assert torch.autograd.gradcheck(lambda a, b: gaussian(a, b), (x, s))
    big = torch.full((1, 1, 1, 1), 300.1, dtype=torch.float64, requires_grad=True)  # closed form
    assert torch.autograd.gradcheck(lambda a, b: gaussian(a, b), (x, big))


def test_euler_maclaurin_tails_match_the_plain_sums():
    from pkn.kernels._gaussian_separable import _tail

    s = torch.tensor([0.5, 10.0, 63.9, 64.0, 100.0, 1000.0], dtype=torch.float64)
    for lo, hi in [(64, 3000), (10, 200), (100, 150), (64, 10000)]:
        d = torch.arange(lo, hi + 1, dtype=torch.float64)[:, None]
        exact = torch.exp(-(d**2) / (2 * s**2)).sum(0)
        assert float(((_tail(s, lo, hi) - exact).abs() / s).max()) < 1e-14


def test_window_limit_keeps_small_windows_on_tiny_images():
    # radius <= max(H, W, 32): the tiny-image cases of the kernels' own tests stay valid
    x = _image(3, 4)
    assert gaussian(x, 1.5, 1.0, 0.5).shape == x.shape  # radius 5 > 4, < 32
    assert nlm(x, 0.1, search_size=7).shape == x.shape
    assert rbf_resample(x, 2.0, scale=2).shape == (1, 1, 6, 8)
    with pytest.raises(ValueError, match=r"search_size=67.*radius 33.*3x4.*32"):
        nlm(x, 0.1, search_size=67)


# ------------------------------------------------------------------------ noise
_rng = np.random.default_rng(0)
IMG = _rng.random((64, 64)).astype(np.float32)
_NAN = IMG.copy()
_NAN[3, 3] = np.nan
_INF = IMG.copy()
_INF[5, 7] = -np.inf
NOISE = {
    "awgn-nan": (lambda: noise.estimate_awgn(_NAN), ValueError, r"image contains 1 NaN or Inf"),
    "awgn-inf": (lambda: noise.estimate_awgn(_INF), ValueError, r"image contains 1 NaN or Inf"),
    "awgn-bool": (lambda: noise.estimate_awgn(IMG > 0.5), TypeError, r"image is a boolean"),
    "awgn-empty": (lambda: noise.estimate_awgn(np.zeros((0, 5))), ValueError, r"2x2.*\(0, 5\)"),
    "awgn-complex": (lambda: noise.estimate_awgn(IMG + 0j), TypeError, r"dtype complex"),
    "awgn-1d": (lambda: noise.estimate_awgn(IMG[0]), ValueError, r"shape \(64,\).*2 dimensions"),
    "awgn-str": (lambda: noise.estimate_awgn("abc"), TypeError, r"dtype <U3"),
    "awgn-object": (lambda: noise.estimate_awgn(np.array([[1, None]])), TypeError, r"object"),
    "awgn-1x1": (lambda: noise.estimate_awgn(IMG[:1, :1]), ValueError, r"2x2.*\(1, 1\)"),
    "awgn-nan-tensor": (
        lambda: noise.estimate_awgn(torch.from_numpy(_NAN)),
        ValueError,
        r"NaN or Inf",
    ),
    "pg-bins-0": (lambda: noise.estimate_poisson_gaussian(IMG, bins=0), ValueError, r"bins.*0"),
    "pg-bins-True": (
        lambda: noise.estimate_poisson_gaussian(IMG, bins=True),
        ValueError,
        r"bins.*True",
    ),
    "pg-bins-float": (
        lambda: noise.estimate_poisson_gaussian(IMG, bins=8.0),
        ValueError,
        r"bins.*8\.0",
    ),
    "pg-bins-str": (
        lambda: noise.estimate_poisson_gaussian(IMG, bins="8"),
        ValueError,
        r"bins.*'8'",
    ),
    "pg-nan": (lambda: noise.estimate_poisson_gaussian(_NAN), ValueError, r"NaN or Inf"),
    "pg-bool": (lambda: noise.estimate_poisson_gaussian(IMG > 0.5), TypeError, r"boolean"),
    "pg-small": (lambda: noise.estimate_poisson_gaussian(IMG[:4, :4]), ValueError, r"at least"),
    "calibrate-nan": (lambda: noise.calibrate(_NAN), ValueError, r"NaN or Inf"),
    "calibrate-bins-1": (lambda: noise.calibrate(IMG, bins=1), ValueError, r"bins.*>= 2.*1"),
    "calibrate-bool": (lambda: noise.calibrate(IMG > 0.5), TypeError, r"boolean"),
    "std-map-True": (
        lambda: noise.noise_std_map(torch.from_numpy(IMG)[None, None], True),
        TypeError,
        r"noise must be a sigma.*True",
    ),
    "std-map-str": (
        lambda: noise.noise_std_map(torch.from_numpy(IMG)[None, None], "0.1"),
        TypeError,
        r"noise must be.*'0.1'",
    ),
    "std-map-None": (
        lambda: noise.noise_std_map(torch.from_numpy(IMG)[None, None], None),
        TypeError,
        r"noise must be.*None",
    ),
    "std-map-nan": (
        lambda: noise.noise_std_map(torch.from_numpy(IMG)[None, None], math.nan),
        ValueError,
        r"finite.*nan",
    ),
    "std-map-pair-bool": (
        lambda: noise.noise_std_map(torch.from_numpy(IMG)[None, None], (True, 0.1)),
        ValueError,
        r"pair \(a, b\) of numbers.*True",
    ),
    "std-map-pair-negative": (
        lambda: noise.noise_std_map(torch.from_numpy(IMG)[None, None], (-1.0, 0.1)),
        ValueError,
        r"a >= 0.*-1",
    ),
    "std-map-pg-nan-image": (
        lambda: noise.noise_std_map(torch.from_numpy(_NAN)[None, None], (0.01, 0.001)),
        ValueError,
        r"x contains NaN",
    ),
    "std-map-bool-map": (
        lambda: noise.noise_std_map(torch.from_numpy(IMG)[None, None], torch.ones(1, dtype=bool)),
        TypeError,
        r"real numbers.*bool",
    ),
    "std-map-numpy-image": (
        lambda: noise.noise_std_map(IMG, 0.1),
        TypeError,
        r"x must be a floating torch.Tensor.*ndarray",
    ),
}


@pytest.mark.parametrize("case", sorted(NOISE))
def test_noise_estimators_refuse_bad_input(case):
    call, exc, pattern = NOISE[case]
    before, before_nan = IMG.copy(), _NAN.copy()
    with pytest.raises(exc, match=pattern):
        call()
    assert np.array_equal(IMG, before) and np.array_equal(_NAN, before_nan, equal_nan=True)


@pytest.mark.parametrize(
    "value", [0.1, np.float32(0.1), np.float64(0.1), np.float16(0.1)], ids=type
)
def test_noise_std_map_accepts_numbers_of_any_kind(value):
    x = torch.from_numpy(IMG)[None, None]
    expected = torch.full((1, 1, 1, 1), float(value))
    torch.testing.assert_close(noise.noise_std_map(x, value), expected)


def test_noise_estimators_accept_numpy_bins_and_integer_images():
    a16 = (IMG * 1000).astype(np.int16)
    before = a16.copy()
    assert noise.estimate_poisson_gaussian(IMG, bins=np.int64(8)) == pytest.approx(
        noise.estimate_poisson_gaussian(IMG, bins=8)
    )
    assert noise.estimate_awgn(a16) == pytest.approx(1000 * noise.estimate_awgn(IMG), rel=0.02)
    assert np.array_equal(a16, before)


# ------------------------------------------------------------------------ model files
@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from pkn.models.io import model_path

    src = model_path("nlm")
    d = tmp_path_factory.mktemp("models")
    raw = src.read_bytes()
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(src))
    first, second = list(state)[:2]

    def w(name, data):
        (d / name).write_bytes(data)
        return d / name

    def ws(name, st, mt):
        save_file(st, str(d / name), metadata=mt)
        return d / name

    def with_(key, fn):
        return {k: fn(v) if k == key else v for k, v in state.items()}

    return {
        "truncated-half": w("half.safetensors", raw[: len(raw) // 2]),
        "truncated-header": w("head.safetensors", raw[:40]),
        "truncated-8": w("eight.safetensors", raw[:8]),
        "empty": w("empty.safetensors", b""),
        "text": w("text.safetensors", b"this is not a model " * 10),
        "png": w("png.safetensors", b"\x89PNG\r\n\x1a\n" + b"\0" * 100),
        "unknown-kernel": ws("uk.safetensors", state, {**meta, "kernel": "nope"}),
        "other-kernel": ws("ok.safetensors", state, {**meta, "kernel": "gaussian"}),
        "missing-tensor": ws("mt.safetensors", {k: state[k] for k in list(state)[1:]}, meta),
        "extra-tensor": ws("et.safetensors", {**state, "zzz": torch.zeros(1)}, meta),
        "wrong-shape": ws("ws.safetensors", with_(first, lambda v: torch.zeros(3)), meta),
        "nan-weights": ws("nw.safetensors", with_(first, lambda v: v * math.nan), meta),
        "inf-weights": ws("iw.safetensors", with_(second, lambda v: v + math.inf), meta),
        "int-weights": ws("int.safetensors", with_(first, lambda v: v.int()), meta),
        "no-metadata": ws("nm.safetensors", state, None),
        "no-kernel": ws("nk.safetensors", state, {k: v for k, v in meta.items() if k != "kernel"}),
        "no-widths": ws("nwd.safetensors", state, {k: v for k, v in meta.items() if k != "widths"}),
        "widths-bad-json": ws("bw.safetensors", state, {**meta, "widths": "[1,2"}),
        "widths-negative": ws("bw3.safetensors", state, {**meta, "widths": "[-1, 0, 3]"}),
        "options-bad-json": ws("bo.safetensors", state, {**meta, "options": "{nope"}),
        "options-list": ws("bo2.safetensors", state, {**meta, "options": "[1]"}),
        "options-unknown": ws("bo3.safetensors", state, {**meta, "options": '{"radius": 3}'}),
        "guided-str": ws("g.safetensors", state, {**meta, "guided": '"yes"'}),
        "info-bad-json": ws("ib.safetensors", state, {**meta, "info": "{bad"}),
        "version-9": ws("v.safetensors", state, {**meta, "format_version": "9"}),
        "folder": d,
        "wrong-extension": w("model.bin", raw),
        "missing-file": d / "nothere.safetensors",
    }


MODEL_ERRORS = {
    "truncated-half": (ValueError, r"half\.safetensors is truncated: its tensors need \d+ bytes"),
    "truncated-header": (ValueError, r"head\.safetensors is truncated: its header needs"),
    "truncated-8": (ValueError, r"eight\.safetensors is not a safetensors file"),
    "empty": (ValueError, r"empty\.safetensors is empty"),
    "text": (ValueError, r"text\.safetensors is not a safetensors file.*this is"),
    "png": (ValueError, r"png\.safetensors is not a safetensors file.*PNG"),
    "unknown-kernel": (ValueError, r"uk\.safetensors is a model of kernel 'nope'.*known"),
    "other-kernel": (ValueError, r"ok\.safetensors.*'options' has \['joint'\].*'gaussian'"),
    "missing-tensor": (ValueError, r"mt\.safetensors lacks 1 tensor\(s\) of a 'nlm' model"),
    "extra-tensor": (ValueError, r"et\.safetensors holds 1 tensor\(s\).*\['zzz'\]"),
    "wrong-shape": (ValueError, r"ws\.safetensors: tensor '.*' has shape \(3,\).*needs"),
    "nan-weights": (ValueError, r"nw\.safetensors: tensor '.*' has \d+ NaN/Inf value"),
    "inf-weights": (ValueError, r"iw\.safetensors: tensor '.*' has \d+ NaN/Inf value"),
    "int-weights": (ValueError, r"int\.safetensors: tensor '.*' has dtype torch\.int32"),
    "no-metadata": (ValueError, r"nm\.safetensors is not a PKN model file.*'format' is None"),
    "no-kernel": (ValueError, r"nk\.safetensors.*metadata lacks 'kernel'"),
    "no-widths": (ValueError, r"nwd\.safetensors.*metadata lacks 'widths'"),
    "widths-bad-json": (ValueError, r"bw\.safetensors: metadata 'widths' is not valid JSON"),
    "widths-negative": (ValueError, r"bw3\.safetensors: metadata 'widths' is \[-1, 0, 3\]"),
    "options-bad-json": (ValueError, r"bo\.safetensors: metadata 'options' is not valid JSON"),
    "options-list": (ValueError, r"bo2\.safetensors: metadata 'options' is \[1\]"),
    "options-unknown": (ValueError, r"bo3\.safetensors.*\['radius'\].*'nlm' does not take"),
    "guided-str": (ValueError, r"g\.safetensors: metadata 'guided' is 'yes'; expected true"),
    "info-bad-json": (ValueError, r"ib\.safetensors: metadata 'info' is not valid JSON"),
    "version-9": (ValueError, r"v\.safetensors has PKN format version '9'"),
    "folder": (ValueError, r"is a folder"),
    "wrong-extension": (ValueError, r"model\.bin' is not a \.safetensors file"),
    "missing-file": (FileNotFoundError, r"nothere\.safetensors does not exist"),
}


@pytest.mark.parametrize("case", sorted(MODEL_ERRORS))
def test_bad_model_files_name_the_file_and_the_problem(model_files, case):
    from pkn.models.io import load_model

    path = model_files[case]
    before = path.read_bytes() if path.is_file() else None
    exc, pattern = MODEL_ERRORS[case]
    with pytest.raises(exc, match=pattern):
        load_model(path)
    if before is not None:
        assert path.read_bytes() == before


@pytest.mark.parametrize("value", [None, 3, True, ["nlm"]], ids=repr)
def test_model_name_of_the_wrong_type(value):
    from pkn.models.io import load_model

    with pytest.raises(TypeError, match="model must be a shipped model name or a path"):
        load_model(value)
