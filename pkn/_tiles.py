"""Restoring big planes window by window with the same result as all at once.

Three things make a window's result differ from the whole plane's, and each is handled:

* **Reach.** A map pixel depends on the input within the network's receptive field
  (:func:`receptive_field`, derived from :class:`pkn.models.network.PKNet`'s layers), and
  an output pixel on the maps and the input within the kernel's support
  (``Kernel.radius``). A window keeps only its core, a halo away from its edges
  (:func:`halo`), where neither reaches an edge.
* **Grid.** The network pools to 1/8 resolution: windows start at multiples of 8
  (:data:`ALIGN`) in plane coordinates, so their pooling cells are the plane's.
* **The plane's mean.** The network sees ``(x - mean(x)) / noise std`` with the mean of
  the whole plane. :func:`predict_maps` passes each window the plane's mean (one value
  per channel, :func:`plane_mean`) by shifting the first features of the window, so a
  window sees exactly what the whole plane would.

The caller loops over :func:`windows`; everything here works on one window.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "ALIGN",
    "TILE",
    "filter_halo",
    "halo",
    "plane_mean",
    "predict_maps",
    "receptive_field",
    "windows",
]

#: Windows start at multiples of this (the network's coarsest level is 1/8).
ALIGN = 8
#: Side of a window's core for in-memory planes (a multiple of :data:`ALIGN`). A
#: 512 x 512 core with the network's 56-pixel halo: the network sees 1.5x the pixels, the
#: working memory of one window is about 25 MB (float32); 1024 x 1024 cores measured
#: 1.2x the pixels but +120 MB peak RSS on a 4000 x 4000 image for no measurable speed
#: gain on 2 busy cores (benchmarks/memory.py).
TILE = 512


def _round8(n: int) -> int:
    return -(-int(n) // ALIGN) * ALIGN


def _conv_reach(conv) -> int:
    """Pixels one convolution reaches on either side, at its own resolution."""
    k, d = conv.kernel_size[0], conv.dilation[0]
    return d * (k // 2)


def receptive_field(net) -> int:
    """How far (input pixels) from any pixel of its 2 x 2 footprint a map pixel of ``net``
    sees.

    Walks :class:`pkn.models.network.PKNet` backwards from one half-resolution map pixel
    ``i`` (covering input pixels ``[2i, 2i + 2)``), with the exact index arithmetic of
    each layer, for every position of ``i`` on the 1/8 grid, and returns the largest
    reach. Reads the layers' kernel sizes and dilations from ``net`` (a ``PKNet`` or a
    ``PKNModel``):

    * ``head``, ``dec1``, ``up2``, ``up3``: 1 x 1, reach 0;
    * bilinear x2 upsampling (``align_corners=False``): output ``i`` reads input
      ``floor((i + 0.5) / 2 - 0.5)`` and the next one;
    * 3 x 3 convolutions with dilation ``d``: ``+-d``; 2 x 2 average pooling: ``[2i, 2i+1]``;
    * the pixel unshuffle: half-resolution ``i`` is input ``[2i, 2i + 1]``.

    The shipped architecture gives 51 pixels; ``tests/test_tiles.py`` checks it by
    perturbing one pixel.
    """
    n = getattr(net, "net", net)
    r1 = _conv_reach(n.enc1)
    r2 = _conv_reach(n.enc2a) + _conv_reach(n.enc2b)
    r3 = _conv_reach(n.enc3a) + _conv_reach(n.enc3b)
    rd2 = _conv_reach(n.dec2)
    rd1 = _conv_reach(n.dec1) + _conv_reach(n.head)
    ru2, ru3 = _conv_reach(n.up2), _conv_reach(n.up3)

    def up(lo: int, hi: int) -> tuple[int, int]:  # bilinear x2: fine [lo, hi] -> coarse
        return math.floor((lo + 0.5) / 2 - 0.5), math.floor((hi + 0.5) / 2 - 0.5) + 1

    def e2(lo: int, hi: int) -> tuple[int, int]:  # e2 at 1/4 [lo, hi] -> e1 at 1/2
        lo, hi = lo - r2, hi + r2
        return 2 * lo, 2 * hi + 1

    def e3(lo: int, hi: int) -> tuple[int, int]:  # e3 at 1/8 -> e2 at 1/4 -> e1 at 1/2
        lo, hi = lo - r3, hi + r3
        return e2(2 * lo, 2 * hi + 1)

    reach = 0
    for i in range(ALIGN):  # every phase of a map pixel on the 1/8 grid
        lo, hi = i - rd1, i + rd1  # d1 at 1/2
        spans = [(lo, hi)]  # e1 skip
        a, b = up(lo - ru2, hi + ru2)  # d2 (after dec2) at 1/4
        a, b = a - rd2, b + rd2  # d2 before dec2 = e2 skip + up(up3(e3))
        spans.append(e2(a, b))
        spans.append(e3(*up(a - ru3, b + ru3)))
        lo1 = min(s[0] for s in spans) - r1  # enc1 at 1/2
        hi1 = max(s[1] for s in spans) + r1
        # half-resolution [lo1, hi1] is input [2 lo1, 2 hi1 + 1]; distance from any pixel
        # of the map pixel's own footprint [2i, 2i + 1]
        reach = max(reach, 2 * i + 1 - 2 * lo1, 2 * hi1 + 1 - 2 * i)
    return int(reach)


def filter_halo(spec, maps: dict, options: dict, inputs: dict) -> int:
    """Halo (a multiple of 8) a filter window needs around its core: the kernel's support
    for these (already strength-scaled) ``maps`` plus 2 pixels for the bilinear
    upsampling of half-resolution maps (and its edge clamping)."""
    r = spec.support(maps, options, **inputs)
    return _round8(r + 2)


def halo(net, spec, maps: dict, options: dict, inputs: dict) -> int:
    """Halo (a multiple of 8) around a core for the network *and* the filter in one window:
    :func:`receptive_field` + the kernel's support + 2 (map upsampling)."""
    r = spec.support(maps, options, **inputs)
    return _round8(receptive_field(net) + r + 2)


def windows(H: int, W: int, core: int, margin: int):
    """Yield ``(core_box, window_box)`` covering an ``H x W`` plane: ``(y0, y1, x0, x1)``
    of a core (cores tile the plane; starts at multiples of ``core``, itself a multiple of
    8) and of its window (the core grown by ``margin`` and clipped to the plane)."""
    if core % ALIGN or margin % ALIGN:
        raise ValueError(f"core {core} and margin {margin} must be multiples of {ALIGN}.")
    for y0 in range(0, H, core):
        for x0 in range(0, W, core):
            y1, x1 = min(H, y0 + core), min(W, x0 + core)
            win = (
                max(0, y0 - margin),
                min(H, y1 + margin),
                max(0, x0 - margin),
                min(W, x1 + margin),
            )
            yield (y0, y1, x0, x1), win


def plane_mean(raw: np.ndarray, offset: float, scale: float, rows: int = 256) -> np.ndarray:
    """Per-channel mean of ``(raw - offset) / scale`` for a plane ``(C, H, W)`` in
    float64, band by band (no full-size copy)."""
    C, H, _ = raw.shape
    s = np.zeros(C)
    for y in range(0, H, rows):
        s += raw[:, y : y + rows].sum(axis=(1, 2), dtype=np.float64)
    n = raw.shape[1] * raw.shape[2]
    return (s / n - offset) / scale


def predict_maps(net, x: torch.Tensor, std: torch.Tensor, mean=None, correlation=None) -> dict:
    """``net.predict_maps`` on a window ``x`` ``(C, 1, h, w)`` (normalised) as if it saw
    the whole plane, whose per-channel mean (normalised units) is ``mean``; ``None``: the
    window is the whole plane. Colour input of a guided model gets the channel mean as
    its guide, as :class:`pkn.Restorer` does. ``correlation``: the noise's ``(C, 5, 5)``
    correlation coefficients (models that take it; ``None``: white)."""
    guided = net.guided and len(x) > 1
    guide = x.mean(0, keepdim=True).expand_as(x) if guided else None
    if mean is None:
        return net.predict_maps(x, std, guide, correlation)
    m = torch.as_tensor(np.asarray(mean, np.float64)).view(-1, 1, 1, 1).to(x)  # (C, 1, 1, 1)
    gm = None
    if net.guided:  # colour: the guide is the channel mean; gray: the image is its guide
        gm = m.mean().view(1, 1, 1, 1).expand_as(m) if guided else m
    return net.predict_maps(x, std, guide, correlation, mean=m, guide_mean=gm)
