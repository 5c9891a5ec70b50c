"""Non-local means and bilateral filtering with a per-pixel signal sigma."""

from __future__ import annotations

from dataclasses import replace
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import nn

from ._common import (
    Param,
    as_map,
    check_flag,
    check_guide,
    check_image,
    check_window,
    odd_int,
    pad,
    row_tiles,
)
from .registry import Kernel, half_maps, signal_sigma
from .registry import Param as P

__all__ = ["NLM", "Bilateral", "bilateral", "nlm"]

_SIGMA_FLOOR = 1e-10  # keeps 1 / sigma^2 finite: sigma -> 0 is the identity, never NaN
_EXP_FLOOR = -60.0  # smallest exponent of a weight: exp(-60) = 8.8e-27, a normal float32


def _box(d: torch.Tensor, size: int) -> torch.Tensor:
    """Sum over a ``size x size`` window ('valid'): output shrinks by ``size - 1``."""
    if size == 1:
        return d
    h, w = d.shape[-2] - size + 1, d.shape[-1] - size + 1
    rows = d[..., 0:h, :]
    for i in range(1, size):
        rows = rows + d[..., i : i + h, :]
    out = rows[..., 0:w]
    for j in range(1, size):
        out = out + rows[..., j : j + w]
    return out


def nlm(
    x: torch.Tensor,
    sigma: Param,
    *,
    patch_size: int = 3,
    search_size: int = 5,
    spatial_sigma: Param | None = None,
    guide: torch.Tensor | None = None,
    joint: bool = False,
    blind_spot: int | None = None,
) -> torch.Tensor:
    r"""Non-local means with a per-pixel signal sigma.

    For every pixel :math:`p` and every offset :math:`o` of the ``search_size x
    search_size`` window, the mean squared difference of the two patches is

    .. math:: D_o(p) = \frac{1}{|P|\,K} \sum_{k} \sum_{q \in P} (g_k(p+q) - g_k(p+o+q))^2

    where :math:`g` is the guide (default: the image itself), :math:`P` the
    ``patch_size x patch_size`` window and :math:`K` the number of guide channels the
    distance is averaged over (``K = 1`` per channel; all guide channels if ``joint``).
    The weights and the output are

    .. math::
        w_o(p) = \exp\!\Big(-\frac{D_o(p)}{2\,\sigma(p)^2}\Big)
                 \exp\!\Big(-\frac{|o|^2}{2\,\sigma_s^2}\Big), \qquad
        y(p) = \frac{\sum_o w_o(p)\, x(p+o)}{\sum_o w_o(p)}

    (the spatial factor only when ``spatial_sigma`` :math:`\sigma_s` is given; it may vary
    per pixel like :math:`\sigma`, and :math:`\sigma_s \to 0` keeps only the centre).
    The centre weight is
    always 1, so the sum of weights is at least 1 and the output is a convex
    combination of input pixels: it lies within the min/max of the search window.
    ``sigma -> 0`` gives the identity, ``sigma -> inf`` the mean of the search
    window. Borders are mirrored. Weights never go below :math:`e^{-60} \approx
    8.8 \cdot 10^{-27}` (the exponent is clamped): far below the rounding of float32 and
    float64 next to the centre's 1, and it keeps subnormal numbers, which are 5-20x slower
    on CPUs, out of the sums (small sigmas would otherwise be much slower).

    Parameters
    ----------
    x : torch.Tensor
        Image ``(B, C, H, W)``, float32 or float64.
    sigma : float or torch.Tensor
        Signal sigma, >= 0, in the units of ``x``: a number or a map
        ``(B or 1, 1 or C, h, w)`` at any resolution (bilinearly resampled).
        With ``joint=True`` and ``C`` channels the distance is shared and each channel
        falls off with its own sigma.
    patch_size, search_size : int
        Odd sizes of the comparison patch and of the search window (numpy integers
        too); their radii must be at most ``max(H, W, 32)`` (a window beyond the image
        only repeats its border pixels).
    spatial_sigma : float or torch.Tensor, optional
        Gaussian falloff over the search offsets, in pixels, >= 0: a number or a map
        like ``sigma``. Default: none (a box window).
    guide : torch.Tensor, optional
        ``(B, 1 or C, H, W)`` image the patch distances are computed on; ``x`` is
        what gets averaged. With ``joint=True`` it may have any number of channels.
    joint : bool
        Average the patch distance over all guide channels so that every channel
        uses the same weights (better on RGB than per-channel distances).
    blind_spot : int, optional
        ``r >= 0``: a *blind-spot* (J-invariant) filter for self-supervised training
        (Noise2Self): the output at ``p`` never reads ``x`` or the guide inside the blind
        region ``max(|dy|, |dx|) <= r`` around ``p`` (``r = 0``: the pixel itself; ``r``
        = the noise's correlation length). See :func:`_nlm_blind`. Default ``None``: the
        ordinary filter.

    Returns
    -------
    torch.Tensor
        Filtered image, same shape, dtype and device as ``x``. Differentiable with
        respect to ``x``, ``sigma`` and ``guide``.

    References
    ----------
    .. [1] A. Buades, B. Coll, J.-M. Morel, "A non-local algorithm for image
       denoising", CVPR 2005.
    .. [2] B. Wronski, "Procedural Kernel Networks", arXiv:2112.09318, 2021.
    """
    check_image(x)
    ps, ss = odd_int(patch_size, "patch_size"), odd_int(search_size, "search_size")
    pr, sr = ps // 2, ss // 2
    check_window(sr, x, f"search_size={ss}")
    check_window(pr, x, f"patch_size={ps}")
    joint = check_flag(joint, "joint")
    B, C, H, W = x.shape
    g = x if guide is None else guide
    if guide is not None:
        check_guide(guide, x)
        if not joint and guide.shape[1] not in (1, C):
            raise ValueError(
                f"guide has {guide.shape[1]} channels; per-channel distances need 1 or "
                f"{C} (the image's). Pass joint=True to average over the guide's channels."
            )
        g = guide.to(x.dtype)
    s = as_map(sigma, x, "sigma", low=0.0)
    if blind_spot is not None:
        qb = None if spatial_sigma is None else as_map(spatial_sigma, x, "spatial_sigma", low=0.0)
        return _nlm_blind(x, g, s, qb, ps, ss, _blind_radius(blind_spot, ss, H, W), joint)
    q = None  # the spatial sigma map (per band below: -|o|^2 / (2 q^2) in the exponent)
    if spatial_sigma is not None:
        q = as_map(spatial_sigma, x, "spatial_sigma", low=0.0)
        if q.stride(-1) == 0 and q.stride(-2) == 0:  # a number: one value for all pixels
            q = q[..., :1, :1]

    K = g.shape[1] if joint else 1
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, g, s, q))
    R = pr + sr
    gp = pad(g, R)  # (B, Cg, H+2R, W+2R): guide for the patches
    xp = gp[..., pr : gp.shape[-2] - pr, pr : gp.shape[-1] - pr] if g is x else pad(x, sr)
    offsets = [(dy, dx) for dy in range(-sr, sr + 1) for dx in range(-sr, sr + 1) if dy or dx]
    depth = B * max(C, g.shape[1]) * (4 if grad else 1)
    tiles = []
    for r0, r1 in row_tiles(H, W + 2 * R, depth, target=1 << 17):
        h = r1 - r0
        gt = gp[:, :, r0 : r1 + 2 * R]
        xt = xp[:, :, r0 : r1 + 2 * sr]
        # -1 / (2 sigma^2 |P| K): multiplies the patch *sum* of squared differences
        it = s[:, :, r0:r1].clamp_min(_SIGMA_FLOOR).square().mul(-2.0 * ps * ps * K).reciprocal()
        qo = {}  # |o|^2 -> -|o|^2 / (2 sigma_s^2), the spatial part of the exponent
        if q is not None:
            qt = q if q.shape[-2] == 1 else q[:, :, r0:r1]  # (B, 1|C, h|1, W|1)
            qt = qt.clamp_min(_SIGMA_FLOOR).square().mul(-2.0).reciprocal()
            for o2 in sorted({dy * dy + dx * dx for dy, dx in offsets}):
                qo[o2] = qt * float(o2)
        centre = gt[:, :, sr : sr + h + 2 * pr, sr : sr + W + 2 * pr]
        num = xt[:, :, sr : sr + h, sr : sr + W].clone()  # centre offset: weight 1
        ebuf = None  # (B, C, h, W) when the exponent is wider than the distance (joint)
        den = None
        for dy, dx in offsets:
            shifted = gt[:, :, sr + dy : sr + dy + h + 2 * pr, sr + dx : sr + dx + W + 2 * pr]
            d = (shifted - centre).square() if grad else (shifted - centre).square_()
            if joint:
                d = d.sum(1, keepdim=True)  # (B, 1, h+2pr, W+2pr)
            d = _box(d, ps)  # (B, 1|Cg, h, W)
            sp = qo.get(dy * dy + dx * dx)  # None without a spatial sigma
            if grad:
                e = d * it if sp is None else torch.addcmul(sp, d, it)
            else:  # one pass, into d unless the exponent broadcasts wider
                shape = torch.broadcast_shapes(d.shape, it.shape, (d if sp is None else sp).shape)
                if shape != d.shape and ebuf is None:
                    ebuf = torch.empty(shape, dtype=d.dtype, device=d.device)
                out = d if shape == d.shape else ebuf
                e = torch.mul(d, it, out=out) if sp is None else torch.addcmul(sp, d, it, out=out)
            # below the floor a weight is < 1e-26 of the centre's: no effect at any precision,
            # but exp would return subnormal numbers, which are 5-20x slower to compute with
            w = e.clamp(min=_EXP_FLOOR).exp() if grad else e.clamp_(min=_EXP_FLOOR).exp_()
            v = xt[:, :, sr + dy : sr + dy + h, sr + dx : sr + dx + W]  # (B, C, h, W)
            if grad:
                num = num + w * v
                den = w + 1.0 if den is None else den + w
            else:
                num.addcmul_(w, v)
                den = w + 1.0 if den is None else den.add_(w)
        if den is None:  # 1x1 search window: the identity
            tiles.append(num)
        else:
            tiles.append(num / den if grad else num.div_(den))
    return tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=2)


def _blind_radius(r, search_size: int, H: int, W: int) -> int:
    """``r`` if it is a valid blind-spot radius for this window and image size."""
    if isinstance(r, bool) or not isinstance(r, Integral) or r < 0:
        raise ValueError(f"blind_spot must be an integer >= 0 (a radius in pixels), got {r!r}.")
    r = int(r)
    if r >= search_size // 2:
        raise ValueError(
            f"blind_spot={r} hides the whole {search_size}x{search_size} search window; use "
            f"blind_spot < {search_size // 2} or a larger search_size."
        )
    if max(H, W) < 2 * r + 3:
        raise ValueError(
            f"image is {H}x{W} pixels; blind_spot={r} needs at least {2 * r + 3} pixels "
            "along one axis."
        )
    return r


def _ring_mean(t: torch.Tensor, valid: torch.Tensor, r: int) -> torch.Tensor:
    """Mean of ``t`` over the ring ``max(|dy|, |dx|) == r + 1`` around each pixel, over the
    pixels inside the image (``valid`` ``(1, 1, H, W)`` ones): the blind region's value as
    its surroundings predict it (Noise2Self's "donut" interpolation)."""
    k = r + 1
    tp, vp = F.pad(t, (k,) * 4), F.pad(valid, (k,) * 4)  # zeros outside the image
    ring = _box(tp, 2 * k + 1) - _box(tp[..., 1:-1, 1:-1], 2 * k - 1)
    count = _box(vp, 2 * k + 1) - _box(vp[..., 1:-1, 1:-1], 2 * k - 1)
    return ring / count.clamp_min(1.0)


def _nlm_blind(x, g, s, q, ps: int, ss: int, r: int, joint: bool) -> torch.Tensor:
    r"""The blind-spot (J-invariant) variant of :func:`nlm` with radius ``r``.

    Let :math:`B(p) = \{p' : \max(|p'_y - p_y|, |p'_x - p_x|) \le r\}`. Then

    * only offsets outside the blind region are averaged (``|o|_inf > r``; the centre's
      weight is 0, not 1);
    * in the patch distance :math:`D_o(p)`, every patch pixel inside :math:`B(p)` (of the
      centre patch or of the shifted one) is replaced by :math:`m(p)`, the mean of the
      guide over the ring at distance ``r + 1`` (:func:`_ring_mean`); pairs of which both
      pixels are blind are left out, and :math:`D_o` is the mean over the pairs kept;
    * outside the image nothing is read: offsets and patch pixels that fall outside are
      left out (no mirroring, which would bring :math:`x(p)` or its neighbours back in).

    So :math:`y(p)` depends on neither :math:`x` nor the guide in :math:`B(p)`: a
    self-supervised loss :math:`\|f(x) - x\|^2` then estimates the supervised one up to a
    constant when the noise is independent beyond distance ``r`` (Batson & Royer 2019,
    "Noise2Self"). For ``patch_size = 1`` (bilateral) the range weight compares
    :math:`g(p + o)` with :math:`m(p)`. Not banded: meant for training crops.
    """
    num, den = _nlm_blind_sums(x, g, s, q, ps, ss, r, joint)
    return num / den


def _nlm_blind_sums(x, g, s, q, ps: int, ss: int, r: int, joint: bool):
    """``(numerator, sum of weights)`` of :func:`_nlm_blind`: the output is their
    ratio; the weights exclude the (blind) centre."""
    H, W = x.shape[-2:]
    pr, sr = ps // 2, ss // 2
    P = pr + sr
    K = g.shape[1] if joint else 1
    one = torch.ones(1, 1, H, W, dtype=x.dtype, device=x.device)
    vp, gp, xp = F.pad(one, (P,) * 4), F.pad(g, (P,) * 4), F.pad(x, (sr,) * 4)

    def at(t, p0, dy, dx):
        return t[..., p0 + dy : p0 + dy + H, p0 + dx : p0 + dx + W]

    def blind(dy, dx):
        return max(abs(dy), abs(dx)) <= r

    m = _ring_mean(g, one, r)  # (B, Cg, H, W)
    it = s.clamp_min(_SIGMA_FLOOR).square().mul(-2.0 * K).reciprocal()  # times the mean distance
    qt = None if q is None else q.clamp_min(_SIGMA_FLOOR).square().mul(-2.0).reciprocal()
    patch = [(qy, qx) for qy in range(-pr, pr + 1) for qx in range(-pr, pr + 1)]
    num = den = None
    for dy in range(-sr, sr + 1):
        for dx in range(-sr, sr + 1):
            if blind(dy, dx):
                continue
            dsum, count = None, torch.zeros_like(one)
            for qy, qx in patch:
                a_blind, b_blind = blind(qy, qx), blind(qy + dy, qx + dx)
                if a_blind and b_blind:
                    continue
                a = m if a_blind else at(gp, P, qy, qx)
                b = m if b_blind else at(gp, P, qy + dy, qx + dx)
                v = one
                if not a_blind:
                    v = v * at(vp, P, qy, qx)
                if not b_blind:
                    v = v * at(vp, P, qy + dy, qx + dx)
                t = (a - b).square() * v
                if joint:
                    t = t.sum(1, keepdim=True)
                dsum = t if dsum is None else dsum + t
                count = count + v
            e = dsum / count.clamp_min(1.0) * it
            if qt is not None:
                e = e + qt * float(dy * dy + dx * dx)
            w = e.clamp(min=_EXP_FLOOR).exp() * at(vp, P, dy, dx)
            wv = w * at(xp, sr, dy, dx)
            num = wv if num is None else num + wv
            den = w if den is None else den + w
    return num, den


def bilateral(
    x: torch.Tensor,
    sigma: Param,
    *,
    search_size: int = 5,
    spatial_sigma: Param | None = None,
    guide: torch.Tensor | None = None,
    joint: bool = False,
    blind_spot: int | None = None,
) -> torch.Tensor:
    """Bilateral filter: :func:`nlm` with a 1x1 patch (range weight on single pixels).

    Parameters and returns as for :func:`nlm`; ``spatial_sigma`` gives the classic
    spatial Gaussian factor of the bilateral filter (off by default: a box window).
    With ``blind_spot`` the range weights compare each neighbour with the mean of the
    ring just outside the blind region instead of the centre value.

    References
    ----------
    .. [1] C. Tomasi, R. Manduchi, "Bilateral filtering for gray and color images",
       ICCV 1998.
    """
    return nlm(
        x,
        sigma,
        patch_size=1,
        search_size=search_size,
        spatial_sigma=spatial_sigma,
        guide=guide,
        joint=joint,
        blind_spot=blind_spot,
    )


class NLM(nn.Module):
    """Thin module around :func:`nlm`: ``NLM(patch_size, search_size)(x, sigma)``."""

    def __init__(self, patch_size: int = 3, search_size: int = 5, joint: bool = False):
        super().__init__()
        self.patch_size, self.search_size, self.joint = patch_size, search_size, joint

    def forward(
        self,
        x: torch.Tensor,
        sigma: Param,
        spatial_sigma: Param | None = None,
        guide: torch.Tensor | None = None,
    ):
        return nlm(
            x,
            sigma,
            patch_size=self.patch_size,
            search_size=self.search_size,
            spatial_sigma=spatial_sigma,
            guide=guide,
            joint=self.joint,
        )


class Bilateral(nn.Module):
    """Thin module around :func:`bilateral`: ``Bilateral(search_size)(x, sigma)``."""

    def __init__(self, search_size: int = 5, joint: bool = False):
        super().__init__()
        self.search_size, self.joint = search_size, joint

    def forward(
        self,
        x: torch.Tensor,
        sigma: Param,
        spatial_sigma: Param | None = None,
        guide: torch.Tensor | None = None,
    ):
        return bilateral(
            x,
            sigma,
            search_size=self.search_size,
            spatial_sigma=spatial_sigma,
            guide=guide,
            joint=self.joint,
        )


# ------------------------------------------------------------------ descriptors
def _apply(fn):
    """Run ``fn`` (nlm or bilateral) with a model's maps.

    With a ``guide`` ``(B, K, H, W)``, the patch distances are computed on it. With the
    option ``joint`` and no guide, a batch of single-channel images ``(C, 1, H, W)`` is
    read as the channels of *one* image, all sharing the distances (the layout of
    :func:`pkn.restore`).
    """

    def apply(x, maps, options, guide=None, **_):
        if guide is not None:
            return fn(x, **maps, guide=guide, **options)
        if options.get("joint") and x.shape[1] == 1 and x.shape[0] > 1:
            maps = {
                n: m.transpose(0, 1) if isinstance(m, torch.Tensor) else m for n, m in maps.items()
            }
            return fn(x.transpose(0, 1), **maps, **options).transpose(0, 1)  # (C, 1, H, W)
        return fn(x, **maps, **options)

    return apply


def _probe_options(options, channels):
    """A model's options for the probe of one channel: with ``joint``, the patch
    distances come from every channel of the image ``channels (1, C, H, W)``."""
    if options.get("joint") and options.get("guide") is None:
        return {**options, "guide": channels}
    return dict(options)


_SIGMA = signal_sigma()
_SPATIAL = P(
    "spatial_sigma",
    unit="px",
    low=0.0,
    high=4.0,  # at 4 px the 5x5 search window is nearly flat
    init=2.0,
    label="spatial sigma",
    doc="[0, 4] px, Gaussian falloff over the search window",
    colormap="viridis",
)
_NLM_RADIUS = lambda maps, o, i: o.get("patch_size", 3) // 2 + o.get("search_size", 5) // 2  # noqa: E731
_SPATIAL_GRID = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 3.9)  # the oracle's second axis, px

_NLM = Kernel(
    name="nlm",
    rank=0,
    task="denoise",
    description="non-local means (3x3 patches, 5x5 search), per-pixel signal sigma and "
    "spatial sigma",
    function=nlm,
    module=NLM,
    params=(_SIGMA, _SPATIAL),
    apply=_apply(nlm),
    radius=_NLM_RADIUS,
    probe_options=_probe_options,
    weights_from_guide=True,
    grid=lambda t: {"sigma": 4.0 * t, "spatial_sigma": _SPATIAL_GRID[-1]},
    refine={"spatial_sigma": _SPATIAL_GRID},
    example=lambda x, gen: (half_maps(x, sigma=0.1), {}, {}),
    example_doc="nlm(x, sigma), sigma = half-res map of 0.1; patch 3, search 5",
)
# the same filters with the signal sigma only (the paper's kernel) and a 1x1 patch
KERNELS = (
    _NLM,
    replace(
        _NLM,
        name="nlm-sigma",
        rank=1,
        description="non-local means (3x3 patches, 5x5 search), per-pixel signal sigma only",
        params=(_SIGMA,),
        grid=lambda t: {"sigma": 4.0 * t},
        refine={},
    ),
    replace(
        _NLM,
        name="bilateral",
        rank=2,
        description="bilateral filter (5x5 window), per-pixel range sigma",
        function=bilateral,
        module=Bilateral,
        params=(_SIGMA,),
        apply=_apply(bilateral),
        radius=lambda maps, o, i: o.get("search_size", 5) // 2,
        grid=lambda t: {"sigma": 4.0 * t},
        refine={},
        example_doc="bilateral(x, sigma), sigma = half-res map of 0.1; search 5",
    ),
)
