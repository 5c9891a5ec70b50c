"""The anisotropic Gaussian against NLM in one process, with and without leaving out
negligible offsets (``pkn.kernels._gaussian_general._kept_offsets``).

12-megapixel synthetic float32 image, half-resolution constant maps as in
``python -m benchmarks kernels``; one torch thread; the three calls alternate, best of
``--repeat``. Usage: ``.venv/bin/python scripts/bench_gaussian_skip.py [s1 s2 rho]
[--vary F]``; ``--vary F`` multiplies each map by a smooth random field in ``[1-F, 1+F]``
(maps as a network predicts them: the window follows the largest sigma, and the bounds of
each band are looser than for constant maps).
"""

import argparse
import sys
import time
from pathlib import Path

import torch

import pkn.kernels._gaussian_general as GG

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's benchmarks/
from benchmarks._measure import synthetic_image
from pkn.kernels.gaussian import gaussian
from pkn.kernels.nlm import nlm


def _keep_all(bounds, r, dtype):
    """Every offset kept: the behaviour before offsets were left out."""
    span = ((1, r), (1, r))
    return [(span, span)] * (r + 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("params", nargs="*", type=float, default=[1.0, 2.0, 0.5])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--vary", type=float, default=0.0, help="relative smooth variation")
    a = p.parse_args()
    torch.set_num_threads(1)
    H, W = 3000, 4000
    x = torch.from_numpy(synthetic_image(H, W, 0))[None, None]
    half = (1, 1, (H + 1) // 2, (W + 1) // 2)
    s1, s2, rho = (torch.full(half, v) for v in a.params)
    if a.vary:
        gen = torch.Generator().manual_seed(5)

        def vary(m: torch.Tensor) -> torch.Tensor:  # times 1 + F u, u smooth in [-1, 1]
            u = 2.0 * torch.rand((1, 1, 12, 16), generator=gen) - 1.0
            u = torch.nn.functional.interpolate(u, size=half[-2:], mode="bilinear")
            return m * (1.0 + a.vary * u)

        s1, s2, rho = vary(s1), vary(s2), vary(rho)
    sigma = torch.full(half, 0.1)
    kept = GG._kept_offsets

    def all_offsets():
        GG._kept_offsets = _keep_all
        try:
            return gaussian(x, s1, s2, rho)
        finally:
            GG._kept_offsets = kept

    calls = {
        "nlm": lambda: nlm(x, sigma),
        "gaussian": lambda: gaussian(x, s1, s2, rho),
        "gaussian, all offsets": all_offsets,
    }
    best = dict.fromkeys(calls, float("inf"))
    with torch.no_grad():
        for _ in range(a.repeat):
            for name, f in calls.items():
                t0 = time.perf_counter()
                f()
                best[name] = min(best[name], time.perf_counter() - t0)
    vary = f" (each times a smooth field in [{1 - a.vary:g}, {1 + a.vary:g}])" if a.vary else ""
    print(f"maps sigma1, sigma2, rho = {a.params}{vary}; best of {a.repeat}, one thread")
    for name, t in best.items():
        print(f"{name:24s} {t:.3f} s  ({t / best['nlm']:.2f}x nlm)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
