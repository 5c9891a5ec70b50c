"""Time one kernel and its peak memory in a fresh process.

Run as ``python -m benchmarks._measure NAME [--size HxW] [--repeat N] [--threads T]``
from the repository root; prints one JSON line with the result (see :func:`measure`).
:mod:`benchmarks.kernels` starts one such process per kernel so that every measurement
starts from a clean heap and a peak-RSS counter that no other kernel has touched.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

__all__ = [
    "SKIMAGE",
    "SKIMAGE_SETTINGS",
    "PeakMeter",
    "build",
    "kernel_names",
    "measure",
    "names",
    "settings",
    "synthetic_image",
]

#: The reference every kernel is compared with: scikit-image's fast non-local means.
SKIMAGE = "skimage_nlm"
SKIMAGE_SETTINGS = (
    "skimage.restoration.denoise_nl_means(patch_size=3, patch_distance=2, h=0.1, fast_mode=True)"
)


def kernel_names() -> list[str]:
    """The pkn kernels, in the order they are reported: every kernel of the registry."""
    from pkn.kernels.registry import names as registry_names

    return registry_names()


def names() -> list[str]:
    """Everything :func:`build` can run: the kernels and :data:`SKIMAGE`."""
    return [*kernel_names(), SKIMAGE]


def settings(name: str) -> str:
    """What the benchmark of ``name`` runs (the kernel's ``example_doc``)."""
    if name == SKIMAGE:
        return SKIMAGE_SETTINGS
    from pkn.kernels.registry import get

    return get(name).example_doc


WARMUP_SIZE = (64, 64)
_MB = 1e6


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A seeded, noisy test image: smooth shading, sharp edges and Gaussian noise.

    Parameters
    ----------
    height, width : int
        Size in pixels.
    seed : int
        Seed of the noise.

    Returns
    -------
    numpy.ndarray
        ``(height, width)`` float32. The clean part (a smooth wave, a checkerboard of
        large blocks and a disc) lies in about [0.2, 0.95]; noise of standard deviation
        0.05 is added, so the values lie roughly in [0, 1].
    """
    y = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]  # (H, 1)
    x = ((np.arange(width, dtype=np.float32) + 0.5) / width)[None, :]  # (1, W)
    img = 0.45 + 0.1 * y + 0.15 * np.sin(2 * np.pi * (1.5 * x + 0.3)) * np.cos(2.4 * np.pi * y)
    img = img + 0.2 * ((np.floor(8 * x) + np.floor(6 * y)) % 2) - 0.1  # block edges
    img = img + 0.15 * (((x - 0.6) ** 2 + (y - 0.4) ** 2) < 0.05)  # a disc
    rng = np.random.default_rng(seed)
    img = img + 0.05 * rng.standard_normal((height, width), dtype=np.float32)
    return np.ascontiguousarray(img, dtype=np.float32)


def build(name: str, height: int, width: int, seed: int = 0) -> tuple[Callable[[], object], int]:
    """Prepare the inputs of one benchmark and return a function that runs it once.

    A kernel runs its registry example (:attr:`pkn.kernels.registry.Kernel.example`) on a
    synthetic image; a kernel whose inputs include ``"size"`` (resampling) gets an input
    of half the output size.

    Parameters
    ----------
    name : str
        One of :func:`names`.
    height, width : int
        Output size in pixels.
    seed : int
        Seed of the image and of the random parameter maps.

    Returns
    -------
    run : callable
        Runs the kernel on the prepared inputs and returns its output (a tensor or, for
        :data:`SKIMAGE`, an array) whose last two axes are the output image.
    input_bytes : int
        Size of the input image in bytes.
    """
    valid = names()
    if name not in valid:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(valid)}.")
    if name == SKIMAGE:
        from skimage.restoration import denoise_nl_means

        img = synthetic_image(height, width, seed)
        kw = {"patch_size": 3, "patch_distance": 2, "h": 0.1, "fast_mode": True}
        return (lambda: denoise_nl_means(img, **kw)), img.nbytes

    import torch

    from pkn.kernels.registry import get

    k = get(name)
    if "size" in k.inputs:  # the example resamples to twice the input's size
        height, width = math.ceil(height / 2), math.ceil(width / 2)
    x = torch.from_numpy(synthetic_image(height, width, seed))[None, None]  # (1, 1, H, W)
    gen = torch.Generator().manual_seed(seed + 1)
    maps, options, inputs = k.example(x, gen)
    return (lambda: k.run(x, maps, options, **inputs)), x.nbytes


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


class PeakMeter:
    """Increase of the process's peak RSS during a block, over the RSS just before it.

    On Linux the kernel's high-water mark ``VmHWM`` is reset to the current RSS by
    writing ``5`` to ``/proc/self/clear_refs``, so the measurement is exact. Elsewhere
    (or where that file cannot be written) it falls back to sampling the RSS with
    :mod:`psutil` every millisecond, combined with ``ru_maxrss`` (which cannot be reset,
    so only counts when the block sets a new all-time high); :attr:`exact` is then
    ``False`` and :attr:`method` says so.
    """

    def __init__(self) -> None:
        try:
            self._reset()
            _status_kib("VmHWM")
            self.exact, self.method = True, "VmHWM after /proc/self/clear_refs"
        except OSError:
            self.exact = False
            self.method = "approximate: psutil RSS sampled every 1 ms + ru_maxrss"

    @staticmethod
    def _reset() -> None:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    @staticmethod
    def _rss() -> int:
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:
            return 0

    @staticmethod
    def _maxrss() -> int:
        try:
            import resource
        except ImportError:  # Windows
            return 0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)

    def __enter__(self) -> PeakMeter:
        self.increase = 0
        if self.exact:
            self._reset()
            self._before = _status_kib("VmRSS") * 1024
            return self
        self._before, self._peak = self._rss(), 0
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.001):
                self._peak = max(self._peak, self._rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.exact:
            peak = _status_kib("VmHWM") * 1024
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, self._rss(), self._maxrss())
        self.increase = max(0, peak - self._before)


def measure(
    name: str,
    height: int = 3000,
    width: int = 4000,
    *,
    repeat: int = 3,
    threads: int | None = None,
    seed: int = 0,
) -> dict:
    """Time one benchmark and measure its peak memory (call once per fresh process).

    The kernel runs once on a small image (warm-up), then ``repeat`` times on the full
    image, under ``torch.no_grad()``. Each call gets its own :class:`PeakMeter`.

    Parameters
    ----------
    name : str
        One of :func:`names`.
    height, width : int
        Output size in pixels.
    repeat : int
        Number of timed runs.
    threads : int, optional
        ``torch.set_num_threads(threads)``; default: torch's own choice.
    seed : int
        Seed of the inputs.

    Returns
    -------
    dict
        ``name``, ``ok``, ``seconds`` (median), ``times``, ``out_shape``,
        ``out_megapixels``, ``mp_per_s``, ``peak_bytes`` (largest increase of the peak
        RSS over the RSS just before a call), ``input_bytes``, ``memory_method``,
        ``memory_exact``, ``threads``, ``cpu_count``, ``torch``, ``settings``.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    with torch.no_grad():
        run, _ = build(name, *WARMUP_SIZE, seed)
        run()
        run, input_bytes = build(name, height, width, seed)
        times, peaks, shape = [], [], ()
        for _ in range(repeat):
            gc.collect()
            with PeakMeter() as meter:
                t0 = time.perf_counter()
                out = run()
                times.append(time.perf_counter() - t0)
            peaks.append(meter.increase)
            shape = tuple(int(n) for n in out.shape[-2:])
            del out
    seconds = statistics.median(times)
    mp = shape[0] * shape[1] / 1e6
    return {
        "name": name,
        "ok": True,
        "seconds": seconds,
        "times": times,
        "out_shape": shape,
        "out_megapixels": mp,
        "mp_per_s": mp / seconds if seconds > 0 else math.inf,
        "peak_bytes": max(peaks),
        "input_bytes": input_bytes,
        "memory_method": meter.method,
        "memory_exact": meter.exact,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "settings": settings(name),
    }


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``"3000x4000"``) into ``(H, W)``."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        msg = f"size must look like HxW (e.g. 3000x4000), got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def positive_int(text: str) -> int:
    """Parse a positive integer (for argparse)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Measure one benchmark and print the result as one JSON line; 1 on failure."""
    p = argparse.ArgumentParser(prog="python -m benchmarks._measure", description=__doc__)
    p.add_argument("name", choices=names())
    p.add_argument("--size", type=parse_size, default=(3000, 4000), metavar="HxW")
    p.add_argument("--repeat", type=positive_int, default=3)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        result = measure(a.name, *a.size, repeat=a.repeat, threads=a.threads, seed=a.seed)
    except Exception as e:  # reported to the orchestrating process, which shows it
        print(json.dumps({"name": a.name, "ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
