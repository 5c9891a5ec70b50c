"""The tiny parameter network shared by every procedural kernel.

One architecture for all kernels; only the number of output channels (and so the head
width) changes. Input: one image channel and the per-pixel noise standard deviation
map, so one model serves gray images, colour images channel by channel, and
signal-dependent noise. All convolutions run at half resolution or lower: the input is
pixel-unshuffled to half resolution (lossless), encoded at 1/2, 1/4 and 1/8, decoded
back to 1/2 with additive skip connections, and a 1x1 head emits the raw
(unconstrained) parameters at half resolution. :mod:`pkn.models.procedural` turns them into valid
kernel parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PKNet", "correlation_features", "count_parameters", "input_features"]

# The network sees contrast in units of noise; below 1% of the range (the lowest noise in
# training) it sees contrast in units of that floor instead, so nearly noise-free input
# (upsampling clean images) stays inside what it was trained on. The filter still gets
# the true noise level.
_NOISE_FLOOR = 1e-2


#: Block sizes whose mean's noise variance describes the noise correlation to the network.
CORRELATION_BLOCKS = (2, 4)


def correlation_features(correlation, batch: int | None = None) -> torch.Tensor:
    """The noise correlation as the network sees it: ``(B, 2)`` features.

    For each block size ``k`` in :data:`CORRELATION_BLOCKS` (2 and 4), the log of the
    variance of the mean of a ``k x k`` block of noise relative to white noise of the
    same marginal variance::

        r_k = 1 / k^2 * sum_{|dy|, |dx| < k} (k - |dy|) (k - |dx|) C[dy, dx]

    with ``C`` the correlation coefficients at lags ``-2..2`` (lags beyond 2 count as
    uncorrelated). White noise gives ``(0, 0)``; white noise filtered by a 2x2 box
    (correlation 0.5 at lag 1, 0.25 diagonally) gives ``r_2 = 9/4``. These are the
    quantities that decide how much averaging a kernel gets out of its neighbourhood,
    at the network's own 1/2 and 1/4 scales.

    Parameters
    ----------
    correlation : array-like or torch.Tensor or None
        ``(5, 5)`` (one for the whole batch) or ``(B, 5, 5)`` correlation coefficients, as
        :attr:`pkn.noise.NoiseModel.correlation`; ``None`` means white noise.
    batch : int, optional
        Batch size to expand a single matrix (or ``None``) to.
    """
    if correlation is None:
        return torch.zeros(batch or 1, len(CORRELATION_BLOCKS))
    c = torch.as_tensor(correlation, dtype=torch.float64)
    if c.ndim == 2:
        c = c[None]
    if c.ndim != 3 or c.shape[-2:] != (5, 5):
        raise ValueError(
            f"correlation must be a (5, 5) or (B, 5, 5) array of correlation coefficients at "
            f"lags -2..2, got shape {tuple(c.shape)}."
        )
    if not bool(torch.isfinite(c).all()):
        raise ValueError("correlation must be finite (got NaN or inf coefficients).")
    lag = torch.arange(-2, 3, dtype=torch.float64).abs()
    feats = []
    for k in CORRELATION_BLOCKS:
        w = (k - lag).clamp_min(0)  # (5,) weights of each lag in a k x k block
        r = (c * w[:, None] * w[None, :]).sum((-2, -1)) / (k * k)  # (B,)
        feats.append(torch.log(r.clamp(0.05, 20.0)))
    out = torch.stack(feats, dim=1).float()  # (B, 2)
    if batch is not None and out.shape[0] == 1:
        out = out.expand(batch, -1)
    return out


def _means(x, guide, mean, guide_mean):
    """The means subtracted from the image and the guide: their own, or given ones."""
    m = x.mean(dim=(-2, -1), keepdim=True) if mean is None else mean.to(x).view(-1, 1, 1, 1)
    mg = None
    if guide is not None:
        mg = guide.mean(dim=(-2, -1), keepdim=True) if guide_mean is None else guide_mean
        mg = mg.to(x).view(-1, 1, 1, 1)
    return m, mg


def input_features(
    x: torch.Tensor,
    noise_std: torch.Tensor,
    guide: torch.Tensor | None = None,
    correlation: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
    guide_mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Noise-normalized network input ``(B, 2 or 3 (+2), H, W)``.

    Channel 0 is the image minus its mean over each image, divided by the local noise
    std (so the network sees contrast in units of noise, whatever the noise level);
    channel 1 is ``log(noise std)`` (so it still knows the level itself). With a
    ``guide`` (for colour images the mean of all noisy channels, whose noise is lower;
    for gray images the image itself) channel 2 is the guide normalised like channel 0.
    With ``correlation`` features ``(B, 2)`` (:func:`correlation_features`) two constant
    channels follow. ``mean`` / ``guide_mean`` ``(B, 1, 1, 1)`` replace the image's and the
    guide's own means (a window of a larger plane is given the plane's, so that windows
    see exactly what the whole plane would).
    """
    s = noise_std.clamp_min(_NOISE_FLOOR)  # (B, 1, 1|H, 1|W): log before expanding
    m, mg = _means(x, guide, mean, guide_mean)
    feats = [(x - m) / s, torch.log(s).expand_as(x)]
    if guide is not None:
        feats.append((guide - mg) / s)
    if correlation is not None:
        c = correlation.to(x)[:, :, None, None]  # (B, 2, 1, 1)
        feats.append(c.expand(x.shape[0], -1, *x.shape[-2:]))
    return torch.cat(feats, dim=1)


def _conv(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Conv2d:
    if k == 1:
        return _Pointwise(cin, cout, 1)
    return nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation)


class _Pointwise(nn.Conv2d):
    """A 1x1 convolution computed as one matrix product over the channels (``F.linear`` on
    the channels-last layout): the same sums, parameters and state-dict keys as
    ``nn.Conv2d``, without torch's slow CPU path for 1x1 kernels (which spent ~0.4 s of a
    12-megapixel pass broadcasting the bias)."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        w = self.weight.view(self.out_channels, self.in_channels)  # (Co, Ci)
        y = F.linear(t.permute(0, 2, 3, 1), w, self.bias)  # (B, H, W, Co)
        return y.permute(0, 3, 1, 2)  # (B, Co, H, W), channels-last in memory


class PKNet(nn.Module):
    """Tiny U-Net predicting raw parameter maps at half resolution.

    Parameters
    ----------
    n_out : int
        Number of raw parameter maps (1 for NLM's sigma, 3 for an anisotropic Gaussian).
    widths : (int, int, int)
        Channels at 1/2, 1/4 and 1/8 resolution. The network is thin where pixels are
        many and wide where they are few: compute is dominated by the 1/2 level,
        parameters by the 1/8 level.
    guided : bool
        Take a third input, a guide image (see :func:`input_features`).
    correlated : bool
        Also take the noise correlation (two numbers per image,
        :func:`correlation_features`); ``forward``'s ``correlation=None`` means white.

    Notes
    -----
    ``forward(x, noise_std, guide=None, correlation=None, mean=None, guide_mean=None)``
    takes ``x`` ``(B, 1, H, W)``, ``noise_std`` broadcastable to it, optionally a guide
    ``(B, 1, H, W)``, correlation features and the means to subtract, and returns
    ``(B, n_out, ceil(H/2), ceil(W/2))``: map pixel ``(i, j)`` covers input pixels
    ``[2i, 2i+2) x [2j, 2j+2)``. Any input size works (inputs are mirrored up to a
    multiple of 8 internally).
    """

    def __init__(
        self,
        n_out: int,
        widths: tuple[int, int, int] = (12, 16, 24),
        guided: bool = False,
        correlated: bool = False,
    ):
        super().__init__()
        w1, w2, w3 = widths
        self.n_out, self.widths, self.guided = n_out, tuple(widths), bool(guided)
        self.correlated = bool(correlated)
        n_in = 2 + self.guided + len(CORRELATION_BLOCKS) * self.correlated
        self.enc1 = _conv(4 * n_in, w1)  # 1/2
        self.enc2a, self.enc2b = _conv(w1, w2), _conv(w2, w2)  # 1/4
        self.enc3a, self.enc3b = _conv(w2, w3), _conv(w3, w3, dilation=2)  # 1/8
        self.up3 = _conv(w3, w2, k=1)  # 1/8, then upsampled and added to the 1/4 skip
        self.dec2 = _conv(w2, w2)  # 1/4
        self.up2 = _conv(w2, w1, k=1)  # 1/4, then upsampled and added to the 1/2 skip
        self.dec1 = _conv(w1, w1, k=1)  # 1/2
        self.head = _conv(w1, n_out, k=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        x: torch.Tensor,
        noise_std: torch.Tensor,
        guide: torch.Tensor | None = None,
        correlation: torch.Tensor | None = None,
        mean: torch.Tensor | None = None,
        guide_mean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        H, W = x.shape[-2:]
        if self.guided and guide is None:
            guide = x  # gray image: the image is its own guide
        g = guide if self.guided else None
        c = None
        if self.correlated:  # (B, 2) features; white noise when not given
            c = correlation if correlation is not None else correlation_features(None)
            c = c.to(x).expand(x.shape[0], -1)
        if torch.is_grad_enabled():
            f = input_features(x, noise_std, g, c, mean, guide_mean)  # (B, 2|3 (+2), H, W)
            f = F.pixel_unshuffle(_pad8(f), 2)  # (B, 4 * that, H8/2, W8/2)
            f = f.contiguous(memory_format=torch.channels_last)  # ~2x faster convs on CPU
        else:  # the same values, written once into their channels-last places
            f = _unshuffled_features(x, noise_std, g, c, mean, guide_mean)  # (B, 4*(2|3(+2)), ..)
        e1 = _relu(self.enc1(f))  # (B, w1, H/2, W/2)
        e2 = _relu(self.enc2b(_relu(self.enc2a(F.avg_pool2d(e1, 2)))))  # (B, w2, H/4, W/4)
        e3 = _relu(self.enc3b(_relu(self.enc3a(F.avg_pool2d(e2, 2)))))  # (B, w3, H/8, W/8)
        d2 = _add(e2, _up(self.up3(e3)))  # (B, w2, H/4, W/4)
        d2 = _relu(self.dec2(d2))
        d1 = _add(e1, _up(self.up2(d2)))  # (B, w1, H/2, W/2)
        out = self.head(_relu(self.dec1(d1)))  # (B, n_out, H8/2, W8/2)
        return out[..., : (H + 1) // 2, : (W + 1) // 2].contiguous()


def _pad8(t: torch.Tensor) -> torch.Tensor:
    """Mirror ``t`` ``(B, C, H, W)`` at the bottom and right up to multiples of 8 (edge
    replication for images too small to mirror)."""
    H, W = t.shape[-2:]
    ph, pw = (-H) % 8, (-W) % 8
    if not (ph or pw):
        return t
    mode = "reflect" if min(H, W) > max(ph, pw) else "replicate"
    return F.pad(t, (0, pw, 0, ph), mode=mode)


def _unshuffled_features(
    x: torch.Tensor,
    noise_std: torch.Tensor,
    guide: torch.Tensor | None,
    correlation: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
    guide_mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """``pixel_unshuffle(_pad8(input_features(x, noise_std, guide, ...)), 2)`` in channels-last
    memory, without autograd: each feature is computed straight into its places of one
    ``(B, H8/2, W8/2, C, 2, 2)`` buffer (features are pixelwise, so padding the inputs
    first gives the same values), instead of a full-resolution stack, a concatenation,
    an unshuffle and a layout copy."""
    B, _, H, W = x.shape
    s = noise_std.clamp_min(_NOISE_FLOOR)
    s = s.reshape((1,) * (4 - s.ndim) + tuple(s.shape))  # (B|1, 1, 1|H, 1|W)
    full = s.shape[-2:] != (1, 1)  # a map (expanded), or one number per image
    if full:
        s = s.expand(s.shape[0], 1, H, W)
    m, mg = _means(x, guide, mean, guide_mean)
    srcs = [(x, m)]
    if guide is not None:
        srcs.append((guide, mg))
    srcs = [(_pad8(t), m) for t, m in srcs]
    s = _pad8(s) if full else s
    H8, W8 = srcs[0][0].shape[-2:]
    n_corr = 0 if correlation is None else correlation.shape[1]
    out = x.new_empty((B, H8 // 2, W8 // 2, len(srcs) + 1 + n_corr, 2, 2))

    def places(t: torch.Tensor) -> torch.Tensor:  # (B|1, 1, H8, W8) -> (B|1, H8/2, W8/2, 2, 2)
        return t.reshape(t.shape[0], H8 // 2, 2, W8 // 2, 2).permute(0, 1, 3, 2, 4)

    def scalar(t: torch.Tensor) -> torch.Tensor:  # (B|1, 1, 1, 1) -> (B|1, 1, 1, 1, 1)
        return t.reshape(t.shape[0], 1, 1, 1, 1)

    sv = places(s) if full else scalar(s)
    for k, (t, m) in zip((0, 2), srcs, strict=False):  # the image, then the guide
        torch.sub(places(t), scalar(m), out=out[:, :, :, k]).div_(sv)
    out[:, :, :, 1] = torch.log(sv)  # log(noise std), broadcast where it is one number
    for j in range(n_corr):  # constant channels after the image, log std and guide
        out[:, :, :, len(srcs) + 1 + j] = correlation[:, j].reshape(B, 1, 1, 1, 1)
    return out.view(B, H8 // 2, W8 // 2, -1).permute(0, 3, 1, 2)


# Inference allocates large buffers; touching fresh memory costs more than the
# arithmetic on CPUs, so work in place whenever autograd does not need the inputs.
def _relu(t: torch.Tensor) -> torch.Tensor:
    return F.relu(t, inplace=True)  # conv outputs are not needed by conv's backward


def _add(skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return up.add_(skip) if not torch.is_grad_enabled() else up + skip


def _up(t: torch.Tensor) -> torch.Tensor:
    return F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
