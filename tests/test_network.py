"""The tiny parameter network (``pkn.models.network``) and the untrained ``PKNModel``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pkn.models.network import PKNet, count_parameters, input_features
from pkn.models.pkn_model import PKNModel, _half
from pkn.models.procedural import get_spec, network_kernels

KERNELS = network_kernels()

SIZES = [(1, 1), (2, 2), (3, 5), (8, 8), (16, 24), (37, 53), (40, 41)]
NOISE_RELATIVE = {"sigma"}  # parameters documented as multipliers of the local noise std


def _image(B, H, W, seed=0, C=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, C, H, W, generator=g)


def _randomize(net: nn.Module, seed: int = 0) -> None:
    """Give every parameter (including the zero-initialised head) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_parameter_budget_every_kernel(kernel, guided):
    model = PKNModel(kernel, guided=guided)
    n = count_parameters(model)
    assert 0 < n < 20_000, f"{kernel} (guided={guided}) has {n} parameters"
    # the network is the only trainable part; the count matches a manual sum
    assert n == sum(p.numel() for p in model.net.parameters())
    assert model.net.n_out == len(get_spec(kernel).params)


def test_count_parameters_ignores_frozen():
    net = PKNet(1)
    total = count_parameters(net)
    net.head.weight.requires_grad_(False)
    assert count_parameters(net) == total - net.head.weight.numel()


@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize(("H", "W"), SIZES)
@pytest.mark.parametrize("n_out", [1, 3])
def test_output_shape(n_out, H, W, guided):
    net = PKNet(n_out, guided=guided)
    _randomize(net)
    x = _image(2, H, W)
    with torch.no_grad():
        out = net(x, torch.full((2, 1, 1, 1), 0.1))
    assert out.shape == (2, n_out, math.ceil(H / 2), math.ceil(W / 2))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("H", "W"), [(1, 1), (3, 5), (16, 16), (37, 53), (64, 48)])
def test_no_convolution_at_full_resolution(H, W):
    net = PKNet(3, guided=True)
    seen = []

    def hook(module, inputs, output):
        seen.append((module, tuple(inputs[0].shape[-2:])))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net(_image(1, H, W), torch.full((1, 1, 1, 1), 0.1))
    finally:
        for h in handles:
            h.remove()
    n_convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert len(seen) == n_convs  # every convolution ran once
    h_max, w_max = math.ceil(H / 8) * 8 // 2, math.ceil(W / 8) * 8 // 2
    for module, (h, w) in seen:
        assert h <= h_max and w <= w_max, (module, (h, w), (H, W))
        if min(H, W) >= 16:
            assert h < H and w < W, (module, (h, w), (H, W))
    assert seen[0][1] == (h_max, w_max)  # the first convolution works at (padded) half size


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_untrained_model_predicts_init(kernel):
    spec = get_spec(kernel)
    model = PKNModel(kernel)
    x = _image(2, 13, 18, seed=1)
    sigma = torch.tensor([0.05, 0.2]).view(2, 1, 1, 1)
    with torch.no_grad():
        maps = model.predict_maps(x, sigma)
    assert set(maps) == set(spec.param_names)
    for name, value in ((p.name, p.init) for p in spec.params):
        m = maps[name]
        assert m.shape == (2, 1, 7, 9), name
        expected = value * sigma if name in NOISE_RELATIVE else torch.full_like(sigma, value)
        torch.testing.assert_close(m, expected.expand_as(m), rtol=1e-5, atol=1e-6)


def test_untrained_nlm_is_1_2_times_local_noise_map():
    model = PKNModel("nlm")
    x = _image(1, 11, 14, seed=2)
    noise = 0.02 + 0.1 * _image(1, 11, 14, seed=3)  # per-pixel noise std map
    with torch.no_grad():
        maps = model.predict_maps(x, noise)
    assert maps["sigma"].shape == (1, 1, 6, 7)
    torch.testing.assert_close(maps["sigma"], 1.2 * _half(noise), rtol=1e-5, atol=1e-7)


def test_untrained_model_output_is_the_filter_at_init():
    from pkn.kernels import nlm

    model = PKNModel("nlm")
    x = _image(1, 20, 20, seed=4)
    with torch.no_grad():
        y, _ = model(x, torch.full((1, 1, 1, 1), 0.1))
    torch.testing.assert_close(y, nlm(x, 0.12, spatial_sigma=2.0), rtol=1e-5, atol=1e-6)
    model = PKNModel("nlm-sigma")  # the paper's kernel: signal sigma only
    with torch.no_grad():
        y, _ = model(x, torch.full((1, 1, 1, 1), 0.1))
    torch.testing.assert_close(y, nlm(x, 0.12), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize("kernel", ["nlm", "bilateral"])
def test_gradients_reach_every_parameter(kernel, guided):
    model = PKNModel(kernel, guided=guided)
    _randomize(model.net, seed=5)
    x = _image(2, 19, 22, seed=6)
    clean = _image(2, 19, 22, seed=7)
    guide = _image(2, 19, 22, seed=8) if guided else None
    y, _ = model(x, torch.full((2, 1, 1, 1), 0.1), guide)
    (y - clean).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_zero_head_still_gets_gradient_at_init():
    """The head starts at zero (constant maps), but training can start: it gets a gradient."""
    model = PKNModel("nlm")
    x = _image(2, 16, 16, seed=9)
    y, _ = model(x, torch.full((2, 1, 1, 1), 0.1))
    (y - _image(2, 16, 16, seed=10)).square().mean().backward()
    assert model.net.head.weight.grad.abs().sum() > 0
    assert model.net.head.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("c", [-0.3, 0.5, 7.0])
def test_input_features_invariant_to_constant_offset(c):
    x = _image(2, 9, 12, seed=11)
    guide = _image(2, 9, 12, seed=12)
    noise = 0.05 + 0.1 * _image(2, 9, 12, seed=13)
    f0 = input_features(x, noise, guide)
    f1 = input_features(x + c, noise, guide + c)
    assert f0.shape == (2, 3, 9, 12)
    torch.testing.assert_close(f1, f0, rtol=1e-4, atol=1e-4)
    assert input_features(x, noise).shape == (2, 2, 9, 12)
    # ... but not to a scaling of the contrast (it is in units of noise)
    assert not torch.allclose(input_features(2 * x, noise), input_features(x, noise))


def test_input_features_units_of_noise():
    x = _image(1, 8, 8, seed=14)
    f = input_features(x, torch.full((1, 1, 1, 1), 0.25))
    torch.testing.assert_close(f[:, 0:1], (x - x.mean()) / 0.25)
    torch.testing.assert_close(f[:, 1:2], torch.full_like(x, math.log(0.25)))
    # a zero noise level is floored, never Inf/NaN
    assert torch.isfinite(input_features(x, torch.zeros(1, 1, 1, 1))).all()


def test_network_invariant_to_constant_offset():
    net = PKNet(2, guided=True)
    _randomize(net, seed=15)
    x = _image(1, 21, 17, seed=16)
    s = torch.full((1, 1, 1, 1), 0.1)
    with torch.no_grad():
        torch.testing.assert_close(net(x + 0.4, s), net(x, s), rtol=1e-4, atol=1e-4)


def test_guided_net_without_guide_uses_the_image():
    net = PKNet(1, guided=True)
    _randomize(net, seed=17)
    x = _image(1, 16, 16, seed=18)
    s = torch.full((1, 1, 1, 1), 0.1)
    with torch.no_grad():
        torch.testing.assert_close(net(x, s), net(x, s, x))
        assert not torch.allclose(net(x, s), net(x, s, _image(1, 16, 16, seed=19)))


def test_inference_matches_autograd_path():
    """The in-place shortcuts used without autograd give the same result."""
    net = PKNet(3)
    _randomize(net, seed=20)
    x = _image(2, 24, 30, seed=21)
    s = torch.full((2, 1, 1, 1), 0.1)
    with torch.no_grad():
        a = net(x, s)
    b = net(x, s)
    torch.testing.assert_close(a, b.detach())


@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_convolution_equals_conv2d(channels_last):
    from pkn.models.network import _Pointwise

    torch.manual_seed(5)
    conv = _Pointwise(5, 3, 1).double()
    x = torch.randn(2, 5, 7, 9, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = conv(x)
    assert y.shape == (2, 3, 7, 9)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, conv.weight, conv.bias))
    assert set(conv.state_dict()) == {"weight", "bias"}  # the keys of nn.Conv2d
    xs = x[:1, :, :3, :4].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: conv(t), (xs,))
    g = torch.randn(2, 3, 7, 9, dtype=torch.float64)  # parameter gradients as conv2d's
    (conv(x) * g).sum().backward()
    ours = conv.weight.grad.clone(), conv.bias.grad.clone()
    conv.zero_grad()
    (torch.nn.functional.conv2d(x, conv.weight, conv.bias) * g).sum().backward()
    torch.testing.assert_close(ours, (conv.weight.grad, conv.bias.grad))


@pytest.mark.parametrize(("H", "W"), [(1, 1), (3, 5), (16, 16), (37, 53), (64, 48)])
@pytest.mark.parametrize("noise", ["number", "per-image", "map", "rows"])
@pytest.mark.parametrize("guided", [False, True])
def test_inference_features_are_the_training_features(H, W, noise, guided):
    # Without autograd the features are written straight into their unshuffled,
    # channels-last places; they must be bit for bit what training computes.
    from pkn.models.network import _pad8, _unshuffled_features

    x, guide = _image(2, H, W), _image(2, H, W) * 0.5 + 0.2
    s = {
        "number": torch.tensor(0.05),
        "per-image": torch.tensor([0.03, 0.2]).view(2, 1, 1, 1),
        "map": 0.01 + 0.1 * _image(2, H, W),
        "rows": 0.01 + 0.1 * _image(1, H, 1),  # broadcast along W and B
    }[noise]
    g = guide if guided else None
    with torch.no_grad():
        fast = _unshuffled_features(x, s, g)
        ref = torch.nn.functional.pixel_unshuffle(_pad8(input_features(x, s, g)), 2)
    assert fast.shape == ref.shape
    assert fast.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast, ref)


# ------------------------------------------------------------- noise correlation input
def _box_correlation() -> torch.Tensor:
    """Correlation of white noise filtered by a 2x2 box: 0.5 at lag 1, 0.25 diagonally."""
    c = torch.zeros(5, 5)
    c[2, 2] = 1.0
    c[2, 1] = c[2, 3] = c[1, 2] = c[3, 2] = 0.5
    c[1, 1] = c[1, 3] = c[3, 1] = c[3, 3] = 0.25
    return c


def test_correlation_features_white_and_box():
    from pkn.models.network import correlation_features

    white = torch.zeros(5, 5)
    white[2, 2] = 1.0
    torch.testing.assert_close(correlation_features(white), torch.zeros(1, 2))
    torch.testing.assert_close(correlation_features(None, batch=3), torch.zeros(3, 2))
    f = correlation_features(_box_correlation())
    # 2x2 block mean of box-filtered noise: 9/4 the white variance; 4x4 block: lags beyond
    # 1 vanish, weights (4 - |lag|): (16 + 2*12*0.5*2 + 4*9*0.25) / 16 = 49/16
    torch.testing.assert_close(f, torch.tensor([[math.log(9 / 4), math.log(49 / 16)]]))
    assert correlation_features(torch.stack([white, _box_correlation()])).shape == (2, 2)


@pytest.mark.parametrize(
    "bad", [torch.zeros(3, 3), torch.zeros(2, 5, 4), torch.full((5, 5), math.nan)]
)
def test_correlation_features_refuse_bad_input(bad):
    from pkn.models.network import correlation_features

    with pytest.raises(ValueError, match="correlation"):
        correlation_features(bad)


def test_with_correlation_starts_as_the_same_model_and_can_learn_it():
    model = PKNModel("nlm", guided=True)
    _randomize(model.net, seed=3)
    wide = model.with_correlation()
    assert wide.correlated and not model.correlated
    x, s = _image(2, 24, 30), torch.full((2, 1, 1, 1), 0.1)
    with torch.no_grad():
        a = model.predict_maps(x, s, x)
        b = wide.predict_maps(x, s, x, _box_correlation())
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="already"):
        wide.with_correlation()
    # once the new input weights move, the correlation changes the maps
    _randomize(wide.net, seed=4)
    with torch.no_grad():
        w = wide.predict_maps(x, s, x)  # None: white
        c = wide.predict_maps(x, s, x, _box_correlation())
    assert float((w["sigma"] - c["sigma"]).abs().max()) > 1e-3


@pytest.mark.parametrize("guided", [False, True])
def test_correlated_inference_features_are_the_training_features(guided):
    from pkn.models.network import correlation_features

    net = PKNet(2, guided=guided, correlated=True)
    _randomize(net, seed=5)
    x, s = _image(2, 21, 26), 0.05 + 0.1 * _image(2, 21, 26, seed=1)
    c = correlation_features(torch.stack([torch.eye(5), _box_correlation()]))
    g = _image(2, 21, 26, seed=2) if guided else None
    with torch.no_grad():
        fast = net(x, s, g, c)
    with torch.enable_grad():
        slow = net(x, s, g, c)
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-5, atol=1e-5)
