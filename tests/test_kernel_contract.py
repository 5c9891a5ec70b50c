"""One contract over every kernel of the registry (kornia's ``BaseTester`` as the model).

Each kernel, through its descriptor only: smoke, shapes and dtypes, clear exceptions,
gradcheck in float64, Module == function, a constant image stays constant, convexity of
the smoothing kernels, and the kernel probe agreeing with the output at random pixels.
A new kernel gets all of this by declaring its descriptor; its own test file then brings
mainly its reference loop.
"""

from __future__ import annotations

import pytest
import torch

from pkn.kernels import effective_weights
from pkn.kernels.registry import Kernel, Param, get, registry

NAMES = list(registry())


def _image(B=1, C=1, H=13, W=16, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(xx / 3.0) * torch.cos(yy / 4.0) + 0.2 * (xx > W // 2)
    return (base + 0.05 * torch.randn(B, C, H, W, generator=g)).to(dtype)


def _random_maps(k: Kernel, x: torch.Tensor, seed: int = 1) -> dict:
    """Random valid maps at half resolution: raw values through the descriptor's
    remapping (noise std 0.1) for network kernels, else the example's maps."""
    g = torch.Generator().manual_seed(seed)
    maps, _, _ = k.example(x, g)
    if not k.network:
        return {n: v.to(x.dtype) if isinstance(v, torch.Tensor) else v for n, v in maps.items()}
    B = x.shape[0]
    H, W = x.shape[-2:]
    raw = torch.randn(B, k.n_out, (H + 1) // 2, (W + 1) // 2, generator=g, dtype=x.dtype)
    return k.to_params(raw, torch.full((1, 1, 1, 1), 0.1, dtype=x.dtype))


def _setup(name, B=1, C=1, H=13, W=16, dtype=torch.float64, seed=0):
    k = get(name)
    x = _image(B, C, H, W, dtype, seed)
    _, options, inputs = k.example(x, torch.Generator().manual_seed(seed))
    maps = _random_maps(k, x, seed + 1)
    return k, x, maps, options, inputs


def _out_size(x, inputs):
    return tuple(inputs["size"]) if "size" in inputs else tuple(x.shape[-2:])


# ------------------------------------------------------------------ the descriptors
@pytest.mark.parametrize("name", NAMES)
def test_descriptor_is_complete(name):
    k = get(name)
    assert k.name == name and k.description
    assert k.task in ("denoise", "deblur", "upsample", "")
    assert callable(k.function) and isinstance(k.module, type)
    assert k.params and all(isinstance(p, Param) for p in k.params)
    assert len(set(k.param_names)) == len(k.params)
    assert k.spatial_axes[-2:] == ("y", "x") and k.ndim == len(k.spatial_axes)
    assert set(k.strength_params) <= set(k.param_names)
    assert k.example_doc
    if k.network:  # a network can drive it: a grid for the oracle, init inside the ranges
        assert k.task
        for t in (0.05, 0.5, 0.95):
            assert set(k.grid(t)) == set(k.param_names)
        for p in k.params:
            assert p.low <= p.init <= p.high, p.name


def test_names_are_unique_and_every_task_has_a_network_kernel():
    assert len(NAMES) == len(set(NAMES))
    tasks = {get(n).task for n in NAMES if get(n).network}
    assert {"denoise", "deblur", "upsample"} <= tasks


def test_unknown_name_lists_the_kernels():
    with pytest.raises(ValueError, match="unknown kernel 'median'") as e:
        get("median")
    for n in NAMES:
        assert n in str(e.value)


# ------------------------------------------------------------------ smoke, shapes, dtypes
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_smoke_shapes_and_dtypes(name, dtype):
    k, x, maps, options, inputs = _setup(name, B=2, C=3, H=11, W=14, dtype=dtype)
    y = k.run(x, maps, options, **inputs)
    assert y.dtype == dtype
    assert y.shape == (2, 3, *_out_size(x, inputs))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_run_needs_its_inputs(name):
    k, x, maps, options, inputs = _setup(name)
    for missing in k.inputs:
        rest = {n: v for n, v in inputs.items() if n != missing}
        with pytest.raises(ValueError, match=missing):
            k.run(x, maps, options, **rest)


# ------------------------------------------------------------------ exceptions
@pytest.mark.parametrize("name", NAMES)
def test_bad_image_gives_a_clear_error(name):
    k, x, maps, options, inputs = _setup(name)
    with pytest.raises((TypeError, ValueError), match="x"):
        k.run(x[0], maps, options, **inputs)  # 3-D
    with pytest.raises(TypeError, match="float"):
        k.run((x * 100).to(torch.int32), maps, options, **inputs)
    bad = x.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        k.run(bad, maps, options, **inputs)


@pytest.mark.parametrize("name", NAMES)
def test_nan_in_a_map_names_the_parameter(name):
    k, x, maps, options, inputs = _setup(name)
    for n, m in maps.items():
        if not isinstance(m, torch.Tensor):
            continue
        bad = m.clone()
        bad.view(-1)[0] = float("nan")
        with pytest.raises(ValueError, match=n):
            k.run(x, {**maps, n: bad}, options, **inputs)


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_image_and_every_map(name):
    k, x, maps, options, inputs = _setup(name, H=6, W=7)
    x = x.clone().requires_grad_(True)
    names = [n for n, m in maps.items() if isinstance(m, torch.Tensor)]
    tensors = [maps[n].detach().clone().requires_grad_(True) for n in names]

    def f(xx, *ms):
        return k.run(xx, {**maps, **dict(zip(names, ms, strict=True))}, options, **inputs)

    assert torch.autograd.gradcheck(f, (x, *tensors), eps=1e-6, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ Module == function
@pytest.mark.parametrize("name", NAMES)
def test_module_matches_function(name):
    k, x, maps, options, inputs = _setup(name, C=2)
    module = k.module(**options, **inputs)
    y_mod = module(x, **maps)
    y_fn = k.function(x, **maps, **options, **inputs)
    torch.testing.assert_close(y_mod, y_fn, rtol=0, atol=0)


# ------------------------------------------------------------------ constants, convexity
@pytest.mark.parametrize("name", [n for n in NAMES if get(n).keeps_constants])
def test_constant_image_stays_constant(name):
    k, x, maps, options, inputs = _setup(name, C=2)
    c = torch.full_like(x, 0.37)
    y = k.run(c, maps, options, **inputs)
    torch.testing.assert_close(y, torch.full_like(y, 0.37), rtol=0, atol=1e-12)


def _pixels(shape, n=5, seed=3):
    g = torch.Generator().manual_seed(seed)
    H, W = shape
    return [
        (int(torch.randint(H, (1,), generator=g)), int(torch.randint(W, (1,), generator=g)))
        for _ in range(n)
    ] + [(0, 0), (H - 1, W - 1)]


@pytest.mark.parametrize("name", NAMES)
def test_probe_agrees_with_the_output(name):
    k, x, maps, options, inputs = _setup(name, C=2, H=12, W=15, seed=4)
    y = k.run(x, maps, options, **inputs)
    for row, col in _pixels(y.shape[-2:]):
        for ch in (0, 1):
            pr = effective_weights(
                name, x, **maps, pixel=(row, col), channel=ch, **options, **inputs
            )
            assert pr.value == pytest.approx(float(y[0, ch, row, col]), abs=1e-9)
            r0, c0 = pr.origin
            h, w = pr.weights.shape
            window = x[0, ch, r0 : r0 + h, c0 : c0 + w].numpy()
            recon = float((pr.weights * window).sum()) + pr.bias
            assert recon == pytest.approx(pr.value, abs=1e-9)
            if k.convex:  # a convex combination of input pixels
                assert pr.min >= -1e-12
                assert pr.sum == pytest.approx(1.0, abs=1e-9)
                assert pr.bias == 0.0
                used = window[pr.weights > 1e-12]
                assert used.min() - 1e-9 <= pr.value <= used.max() + 1e-9


CONVEX_ON_INPUT = [n for n in NAMES if get(n).convex and get(n).pixel_grid == "input"]


@pytest.mark.parametrize("name", CONVEX_ON_INPUT)
def test_convex_kernels_stay_within_the_window(name):
    from pkn.kernels._common import pad

    k, x, maps, options, inputs = _setup(name, C=1, H=12, W=15, seed=5)
    y = k.run(x, maps, options, **inputs)
    r = k.support(maps, options, **inputs, x=x)
    win = pad(x, r).unfold(2, 2 * r + 1, 1).unfold(3, 2 * r + 1, 1)  # (1, 1, H, W, k, k)
    lo, hi = win.amin(dim=(-2, -1)), win.amax(dim=(-2, -1))  # (1, 1, H, W)
    assert (y >= lo - 1e-9).all() and (y <= hi + 1e-9).all()


def test_every_task_kernel_is_covered_by_the_convexity_contract():
    assert {"denoise"} <= {get(n).task for n in CONVEX_ON_INPUT}
