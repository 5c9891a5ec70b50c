"""Kernel prediction: a free-form, softmax-normalized kernel per pixel (PKN eq. 7)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._band import pad_band, resample_rows
from ._common import check_image, check_stack, odd_int, pad, row_tiles
from .registry import Kernel
from .registry import Param as P

__all__ = ["KPN", "kpn"]

_TILE = 1 << 20  # logit elements per band of rows (no-grad path)
_LOG2E = 1.0 / math.log(2.0)


class _BandResampler:
    """Bilinear resampling (``align_corners=False``) of a map stack, one band of rows at a time.

    Gives exactly ``F.interpolate(p, size=(H, W), mode="bilinear", align_corners=False)``
    restricted to rows ``r0:r1`` without ever building the full-resolution stack, so a
    ``(B, 25, h, w)`` logit stack never costs 25 full-resolution planes of memory.
    Differentiable with respect to ``p``.
    """

    def __init__(self, p: torch.Tensor, size: tuple[int, int]):
        self.p = p
        self.H, self.W = size
        h = p.shape[-2]
        self.rows = None
        if h not in (1, self.H):
            # source row of output row i: (i + 0.5) * h / H - 0.5, clamped at 0 (as PyTorch)
            src = (torch.arange(self.H, dtype=torch.float64) + 0.5) * (h / self.H) - 0.5
            src = src.clamp_min(0.0)
            i0 = src.floor().long().clamp_max(h - 1)
            i1 = (i0 + 1).clamp_max(h - 1)
            lam = (src - i0).to(p.dtype)
            self.rows = (i0.to(p.device), i1.to(p.device), lam.to(p.device))

    def band(self, r0: int, r1: int) -> tuple[torch.Tensor, bool]:
        """Rows ``r0:r1`` of the resampled stack ``(Bp, n, r1 - r0, W)``, and whether it is
        a fresh tensor (``False``: a view of the input, which must not be modified)."""
        p = self.p
        Bp, n, h, w = p.shape
        rb = r1 - r0
        fresh = False
        if h == self.H:
            b = p[:, :, r0:r1]
        elif h == 1:
            b = p.expand(Bp, n, rb, w)
        else:
            i0, i1, lam = self.rows
            lo = p.index_select(2, i0[r0:r1])  # (Bp, n, rb, w)
            hi = p.index_select(2, i1[r0:r1])
            b, fresh = torch.lerp(lo, hi, lam[r0:r1, None]), True
        if w == self.W:
            return b, fresh
        if w == 1:
            return b.expand(Bp, n, rb, self.W), False
        # the rows are final: 1-D linear along W (same weights as bilinear, and faster)
        b = F.interpolate(b.reshape(Bp, n * rb, w), size=self.W, mode="linear", align_corners=False)
        return b.view(Bp, n, rb, self.W), True


def _kernel_size(n: int, C: int, kernel_size: int | None) -> tuple[int, bool]:
    """``(K, per_channel)`` from the logit channel count ``n`` and the image channels ``C``."""
    accepted = "K*K (shared by all channels) or C*K*K (one kernel per channel) with K odd"
    if kernel_size is not None:
        K = odd_int(kernel_size, "kernel_size")
        if n == K * K:
            return K, False
        if n == C * K * K:
            return K, True
        raise ValueError(
            f"weights has {n} channels, but kernel_size={K} with a {C}-channel image needs "
            f"{K * K} (shared) or {C * K * K} (per channel)."
        )
    K = math.isqrt(n)
    if K * K == n and K % 2 == 1:
        return K, False
    if n % C == 0:
        K = math.isqrt(n // C)
        if K * K == n // C and K % 2 == 1:
            return K, True
    raise ValueError(
        f"weights has {n} channels; with a {C}-channel image it must have {accepted} "
        "(e.g. 9 or 25 shared, or 9*C per channel)."
    )


def kpn(
    x: torch.Tensor,
    weights: torch.Tensor,
    *,
    kernel_size: int | None = None,
) -> torch.Tensor:
    r"""Per-pixel free-form kernel from softmax-normalized logits (kernel prediction).

    With :math:`r = K // 2` and the ``K x K`` offsets :math:`o_k = (dy, dx)`,
    :math:`dy, dx \in [-r, r]`, numbered in row-major order
    :math:`k = (dy + r)\,K + (dx + r)`, the output is

    .. math::
        y_c(p) = \sum_{k=0}^{K^2-1} \frac{\exp \ell_{c,k}(p)}{\sum_{j} \exp \ell_{c,j}(p)}
                 \, x_c(p + o_k)

    where :math:`\ell` are the logits ``weights`` after bilinear resampling
    (``align_corners=False``) to the image size: resampling happens *before* the
    softmax. The softmax is computed stably (the per-pixel maximum logit is
    subtracted), so logits of any finite magnitude give finite outputs. The weights
    are positive and sum to 1, so the output is a convex combination of the input
    pixels of the window: it lies within their min/max, and constants stay constant.
    A dominant centre logit (index ``r*K + r``) gives the identity, equal logits the
    ``K x K`` box mean. Borders are mirrored.

    Parameters
    ----------
    x : torch.Tensor
        Image ``(B, C, H, W)``, float32 or float64.
    weights : torch.Tensor
        Unnormalized logits ``(B or 1, K*K, h, w)``, one kernel shared by all channels,
        or ``(B or 1, C*K*K, h, w)``, one kernel per channel in channel-major order
        (channel ``c`` uses logits ``c*K*K : (c+1)*K*K``). Any resolution ``h, w``;
        bilinearly resampled to ``(H, W)``. ``K`` (odd) is inferred from the channel
        count.
    kernel_size : int, optional
        ``K``, only needed to resolve the ambiguous case where the channel count is
        both an odd square and ``C`` times an odd square (``C`` itself an odd square
        > 1, e.g. 81 logits for 9 channels); without it such stacks are read as shared.

    Returns
    -------
    torch.Tensor
        Filtered image, same shape, dtype and device as ``x``. Differentiable with
        respect to ``x`` and ``weights``.

    References
    ----------
    .. [1] B. Mildenhall, J. T. Barron, J. Chen, D. Sharlet, R. Ng, R. Carroll,
       "Burst denoising with kernel prediction networks", CVPR 2018.
    .. [2] S. Bako, T. Vogels, B. McWilliams, M. Meyer, J. Novák, A. Harvill, P. Sen,
       T. DeRose, F. Rousselle, "Kernel-predicting convolutional networks for
       denoising Monte Carlo renderings", SIGGRAPH 2017.
    .. [3] B. Wronski, "Procedural Kernel Networks", arXiv:2112.09318, 2021 (eq. 7).
    """
    grad = torch.is_grad_enabled() and (
        getattr(x, "requires_grad", False) or getattr(weights, "requires_grad", False)
    )
    if grad:
        check_image(x)
        lg = check_stack(weights, x, "weights", "(B or 1, K*K or C*K*K, h, w)")
    else:
        check_image(x)
        lg = check_stack(weights, x, "weights", "(B or 1, K*K or C*K*K, h, w)")
    C, H, W = x.shape[1:]
    K, per_channel = _kernel_size(lg.shape[1], C, kernel_size)
    r = K // 2
    G = C if per_channel else 1
    if grad:
        return _kpn_grad(pad(x, r), lg, r, G, (H, W))  # padded (B, C, H+2r, W+2r)
    return _kpn_inference(x, lg, r, G)


def _kpn_grad(
    xp: torch.Tensor, lg: torch.Tensor, r: int, G: int, size: tuple[int, int]
) -> torch.Tensor:
    """Autograd path: out-of-place softmax and sums, band by band. ``xp`` is the padded image
    ``(B, C, H+2r, W+2r)``, ``lg`` the logits ``(Bw, G*K*K, h, w)``."""
    H, W = size
    B, C = xp.shape[:2]
    Bw, KK = lg.shape[0], (2 * r + 1) ** 2
    res = _BandResampler(lg, (H, W))
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    depth = (2 * Bw * G * KK + 2 * B * C) * 3
    tiles = []
    for r0, r1 in row_tiles(H, W + 2 * r, depth):
        lb, _ = res.band(r0, r1)
        wk = torch.softmax(lb.reshape(Bw, G, KK, r1 - r0, W), dim=2)  # (Bw, G, KK, h, W)
        num = None
        for k, (dy, dx) in enumerate(offsets):
            v = xp[:, :, r + r0 + dy : r + r1 + dy, r + dx : r + dx + W]  # (B, C, h, W)
            t = wk[:, :, k] * v
            num = t if num is None else num + t
        tiles.append(num)
    return tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=2)


def _kpn_inference(x: torch.Tensor, lg: torch.Tensor, r: int, G: int) -> torch.Tensor:
    """No-grad path: in-place softmax and sums in reused buffers, band by band. ``x`` is the
    image ``(B, C, H, W)`` (padded band by band), ``lg`` the logits ``(Bw, G*K*K, h, w)``."""
    B, C, H, W = x.shape
    Bw, n = lg.shape[:2]
    K = 2 * r + 1
    KK = n // G
    out = torch.empty_like(x)
    rows = max(1, min(H, _TILE // (W * n)))
    lbuf = x.new_empty(Bw * n * rows * W)  # resampled logits, then weights
    tbuf = x.new_empty(Bw * n * rows * lg.shape[-1])  # logits resampled along H only
    mbuf, dbuf = x.new_empty(Bw * G * rows * W), x.new_empty(Bw * G * rows * W)
    xbuf = x.new_empty(B * C * (rows + 2 * r) * (W + 2 * r))  # padded band
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        h = r1 - r0
        band = lbuf[: Bw * n * h * W].view(Bw, n, h, W)
        tmp = tbuf[: Bw * n * h * lg.shape[-1]].view(Bw, n, h, lg.shape[-1])
        lb = resample_rows(lg, (H, W), r0, r1, out=band, tmp=tmp)  # (Bw, n, h, W)
        lb = lb.reshape(Bw, G, KK, h, W)  # (Bw, G, KK, h, W) logits
        m = torch.amax(lb, dim=2, keepdim=True, out=mbuf[: Bw * G * h * W].view(Bw, G, 1, h, W))
        # stable softmax: the largest weight is 1 (into the buffer, never into the caller's);
        # exp(l - m) as 2^(l log2(e) - m log2(e)): exp2 is faster than exp
        m = m.mul_(-_LOG2E)
        e = torch.add(m, lb, alpha=_LOG2E, out=band.view(Bw, G, KK, h, W)).exp2_()
        den = torch.sum(e, dim=2, out=dbuf[: Bw * G * h * W].view(Bw, G, h, W))  # >= 1
        xt = xbuf[: B * C * (h + 2 * r) * (W + 2 * r)].view(B, C, h + 2 * r, W + 2 * r)
        xt = pad_band(x, r, r0, r1, xt)  # (B, C, h+2r, W+2r)
        win = xt.unfold(2, K, 1).unfold(3, K, 1).permute(4, 5, 0, 1, 2, 3)  # (K, K, B, C, h, W)
        win = [v for row in win.unbind(0) for v in row.unbind(0)]  # x(p + o_k), row-major k
        ob = out[:, :, r0:r1]  # (B, C, h, W) view
        torch.mul(e[:, :, 0], win[0], out=ob)
        for k in range(1, KK):
            ob.addcmul_(e[:, :, k], win[k])
        ob.div_(den)
    return out


class KPN(nn.Module):
    """Thin module around :func:`kpn`: ``KPN()(x, weights)``."""

    def __init__(self, kernel_size: int | None = None):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return kpn(x, weights, kernel_size=self.kernel_size)


# ------------------------------------------------------------------ descriptor
def _radius(maps, options, inputs) -> int:
    if options.get("kernel_size") is not None:
        return int(options["kernel_size"]) // 2
    n = maps["weights"].shape[1]
    k = math.isqrt(n)
    if k * k != n and inputs.get("x") is not None:  # per-channel logits: C * K * K
        k = math.isqrt(n // inputs["x"].shape[1])
    return k // 2


def _example(x, gen):
    H, W = x.shape[-2:]
    half = ((H + 1) // 2, (W + 1) // 2)
    return {"weights": 2.0 * torch.randn((1, 25, *half), generator=gen).to(x.dtype)}, {}, {}


KERNELS = (
    Kernel(
        name="kpn",
        rank=40,
        task="",
        description="kernel prediction: per-pixel K x K kernels from softmax-normalised logits",
        function=kpn,
        module=KPN,
        params=(
            P(
                "weights",
                remap="none",
                label="logits",
                channels=0,
                limits="percentile",
                colormap="gray",
            ),
        ),
        radius=_radius,
        example=_example,
        example_doc="kpn(x, weights), 25 random logits (5x5 kernel) at half-res",
    ),
)
