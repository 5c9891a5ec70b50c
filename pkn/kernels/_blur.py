"""The blur operator ``B`` of :func:`~pkn.kernels.polyblur.polyblur`.

Validation of the ``blur`` argument and its kernel (separable Gaussian, anisotropic
Gaussian or PSF), and the convolution with mirrored borders (direct, band by band, or by
FFT for large kernels).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn.functional as F

from ._common import check_window, row_tiles

Blur = float | tuple[float, float, float] | torch.Tensor

_TRUNCATE = 3.0  # Gaussian kernels reach ceil(3 sigma) pixels from the centre
_RHO_CAP = 1.0 - 1e-6  # keeps 1 / (1 - rho^2) finite
_FFT_TAPS = 15 * 15  # direct convolution up to this many taps per pixel, FFT above
_TILE = 1 << 18  # elements per band of rows for the direct convolution (see row_tiles)

_ACCEPTED = (
    "blur must be a Gaussian sigma > 0 (a number, in pixels), a tuple (sigma_y, sigma_x, "
    "rho) for an anisotropic Gaussian (sigmas > 0, rho in [-1, 1]), or a 2D PSF tensor "
    "(kh, kw) that is finite and non-negative with a positive sum"
)


def _sigma(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{_ACCEPTED}; {name} is {type(value).__name__}.")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{_ACCEPTED}; got {name} = {v!r}.")
    return v


def _gauss1d(sigma: float) -> torch.Tensor:
    """Normalized taps ``exp(-i^2 / (2 sigma^2))``, ``|i| <= ceil(3 sigma)``, float64."""
    r = math.ceil(_TRUNCATE * sigma)
    i = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (i / sigma) ** 2)
    return k / k.sum()


def _gauss2d(sy: float, sx: float, rho: float) -> torch.Tensor:
    """Normalized anisotropic Gaussian ``(2 ceil(3 sy) + 1, 2 ceil(3 sx) + 1)``, float64.

    The covariance over ``(dx, dy)`` is ``[[sx^2, rho sx sy], [rho sx sy, sy^2]]``.
    """
    ry, rx = math.ceil(_TRUNCATE * sy), math.ceil(_TRUNCATE * sx)
    dy = torch.arange(-ry, ry + 1, dtype=torch.float64).view(-1, 1) / sy
    dx = torch.arange(-rx, rx + 1, dtype=torch.float64).view(1, -1) / sx
    r = min(max(rho, -_RHO_CAP), _RHO_CAP)
    k = torch.exp(-0.5 * (dx * dx - 2.0 * r * dx * dy + dy * dy) / ((1.0 - r) * (1.0 + r)))
    return k / k.sum()


def gaussian_radius(blur: Blur) -> int | None:
    """Radius in pixels of the Gaussian kernel ``blur`` stands for (None for a PSF), from
    its validated sigmas, without building it (:func:`_check`)."""
    if isinstance(blur, torch.Tensor):
        return None
    sigmas = blur[:2] if isinstance(blur, tuple | list) else (blur,)
    return math.ceil(_TRUNCATE * max(float(v) for v in sigmas))


def check_blur(blur: Blur, x: torch.Tensor | None = None) -> None:
    """Validate ``blur`` (a clear exception) without building its kernel; with an image
    ``x``, also refuse a Gaussian whose radius is beyond ``max(H, W, 32)`` pixels (a
    kernel larger than the image: its memory and time would grow without bound)."""
    _check(blur)
    r = gaussian_radius(blur)
    if x is not None and r is not None:
        check_window(r, x, f"blur={blur!r}", "use a smaller sigma (at most a third of the radius)")


def _check(blur: Blur) -> None:
    """The checks of :func:`_kernel`, without building the kernel."""
    if isinstance(blur, torch.Tensor):
        _kernel(blur)  # validates the given tensor (no new allocation beyond it)
        return
    if isinstance(blur, tuple | list):
        if len(blur) != 3:
            raise ValueError(f"{_ACCEPTED}; got a sequence of length {len(blur)}.")
        _sigma(blur[0], "sigma_y"), _sigma(blur[1], "sigma_x")
        _rho(blur[2])
        return
    if isinstance(blur, Real) and not isinstance(blur, bool):
        _sigma(blur, "sigma")
        return
    raise TypeError(f"{_ACCEPTED}; got {type(blur).__name__}.")


def _rho(rho: object) -> float:
    if isinstance(rho, bool) or not isinstance(rho, Real):
        raise TypeError(f"{_ACCEPTED}; rho is {type(rho).__name__}.")
    if not (math.isfinite(float(rho)) and -1.0 <= float(rho) <= 1.0):
        raise ValueError(f"{_ACCEPTED}; got rho = {float(rho)!r}.")
    return float(rho)


def _kernel(blur: Blur) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate ``blur`` and return ``(ky, kx)`` (separable, 1D each) or ``(psf, None)``.

    Gaussian kernels are float64 on the CPU; a PSF keeps its dtype, device and autograd
    history. :class:`_Blur` normalizes them to sum 1 in the image's dtype. Check the
    radius first (:func:`check_blur`): a Gaussian kernel takes ``2 ceil(3 sigma) + 1``
    taps per axis.
    """
    if isinstance(blur, torch.Tensor):
        if blur.ndim != 2 or min(blur.shape) < 1:
            raise ValueError(f"{_ACCEPTED}; got a tensor of shape {tuple(blur.shape)}.")
        if blur.dtype == torch.bool or blur.is_complex():
            raise TypeError(f"{_ACCEPTED}; got a tensor of dtype {blur.dtype}.")
        k = blur if blur.is_floating_point() else blur.double()
        with torch.no_grad():
            if not bool(torch.isfinite(k).all()) or bool((k < 0).any()) or not k.sum() > 0:
                raise ValueError(
                    f"{_ACCEPTED}; this PSF has NaN/Inf, negative values or a zero sum."
                )
        return k, None
    if isinstance(blur, tuple | list):
        if len(blur) != 3:
            raise ValueError(f"{_ACCEPTED}; got a sequence of length {len(blur)}.")
        sy, sx = _sigma(blur[0], "sigma_y"), _sigma(blur[1], "sigma_x")
        rho = _rho(blur[2])
        if rho == 0.0:
            return _gauss1d(sy), _gauss1d(sx)
        return _gauss2d(sy, sx, rho), None
    if isinstance(blur, Real) and not isinstance(blur, bool):
        k = _gauss1d(_sigma(blur, "sigma"))
        return k, k
    raise TypeError(f"{_ACCEPTED}; got {type(blur).__name__}.")


def _pad(z: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Mirror padding without repeating the edge (edge replication for tiny images)."""
    if top == bottom == left == right == 0:
        return z
    fits = z.shape[-2] > max(top, bottom) and z.shape[-1] > max(left, right)
    return F.pad(z, (left, right, top, bottom), mode="reflect" if fits else "replicate")


def _fast_len(n: int) -> int:
    """Smallest ``2^a 3^b 5^c >= n`` (sizes the FFT is fast for)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _normalized(k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``k / k.sum()`` in the dtype and on the device of ``like``."""
    k = k.to(dtype=like.dtype, device=like.device)
    return k / k.sum()


class _Blur:
    """The blur operator ``B``: a true convolution with mirrored borders, ``(N, 1, H, W)``.

    A kernel ``k`` of size ``(kh, kw)`` gives ``(B z)(i, j) = sum_{u,v} k(u, v)
    z(i - u + kh // 2, j - v + kw // 2)`` (``scipy.ndimage.convolve``'s centre).
    """

    def __init__(self, ky: torch.Tensor, kx: torch.Tensor | None, like: torch.Tensor):
        self.sep = kx is not None
        ky = _normalized(ky, like)
        if self.sep:
            self.k = (ky, _normalized(kx, like))
            self.shape = (ky.numel(), kx.numel())
            taps = ky.numel() + kx.numel()
        else:
            self.k = (ky,)
            self.shape = tuple(ky.shape)
            taps = ky.numel()
        kh, kw = self.shape
        self.pads = (kh - 1 - kh // 2, kh // 2, kw - 1 - kw // 2, kw // 2)  # t, b, l, r
        self.fft = taps > _FFT_TAPS
        self.spectrum = None
        # Python numbers make the direct path cheaper (no autograd for the kernel needed).
        self.kgrad = any(k.requires_grad for k in self.k) and torch.is_grad_enabled()
        self.flipped = [k.flip(tuple(range(k.ndim))) for k in self.k]  # correlation taps
        if not self.kgrad:
            self.flipped = [k.tolist() for k in self.flipped]

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        zp = _pad(z, *self.pads)  # (N, 1, H + kh - 1, W + kw - 1)
        if self.fft:
            return self._fft(zp, z.shape[-2:])
        grad = self.kgrad or (torch.is_grad_enabled() and z.requires_grad)
        return self._direct(zp, z.shape[-2:], grad)

    def _fft(self, zp: torch.Tensor, size: torch.Size) -> torch.Tensor:
        (kh, kw), (H, W) = self.shape, size
        s = (_fast_len(zp.shape[-2]), _fast_len(zp.shape[-1]))
        if self.spectrum is None or self.spectrum[0] != s:
            k = self.k[0][:, None] * self.k[1][None, :] if self.sep else self.k[0]
            self.spectrum = (s, torch.fft.rfft2(k, s=s))
        y = torch.fft.irfft2(torch.fft.rfft2(zp, s=s) * self.spectrum[1], s=s)
        # circular convolution of the padded image: rows/cols >= kh-1/kw-1 did not wrap
        return y[..., kh - 1 : kh - 1 + H, kw - 1 : kw - 1 + W]

    def _direct(self, zp: torch.Tensor, size: torch.Size, grad: bool) -> torch.Tensor:
        (kh, kw), (H, W) = self.shape, size
        out = (
            None if grad else torch.empty((*zp.shape[:-2], H, W), dtype=zp.dtype, device=zp.device)
        )
        tiles = []
        for r0, r1 in row_tiles(H, zp.shape[-1], zp.shape[0], target=_TILE):
            h = r1 - r0
            band = zp[..., r0 : r1 + kh - 1, :]  # (N, 1, h + kh - 1, W + kw - 1)
            dst = None if grad else out[..., r0:r1, :]
            if self.sep:
                fy, fx = self.flipped
                rows = [band[..., i : i + h, :] for i in range(kh)]  # (N, 1, h, W + kw - 1)
                v = _taps(rows, fy, grad, None)
                tiles.append(_taps([v[..., j : j + W] for j in range(kw)], fx, grad, dst))
            else:
                (f,) = self.flipped
                views = [band[..., i : i + h, j : j + W] for i in range(kh) for j in range(kw)]
                taps = [f[i][j] for i in range(kh) for j in range(kw)]
                tiles.append(_taps(views, taps, grad, dst))
        if not grad:
            return out
        return tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=-2)


def _taps(views: list[torch.Tensor], taps, grad: bool, out: torch.Tensor | None) -> torch.Tensor:
    """``sum_i taps[i] * views[i]`` (into ``out`` when no gradient is needed)."""
    if grad:
        acc = views[0] * taps[0]
        for v, t in zip(views[1:], taps[1:], strict=True):
            acc = acc + v * t
        return acc
    pairs = [(v, t) for v, t in zip(views, taps, strict=True) if t != 0.0]  # sum > 0: not empty
    acc = torch.mul(pairs[0][0], pairs[0][1], out=out)
    for v, t in pairs[1:]:
        acc.add_(v, alpha=t)
    return acc
