"""How many offsets the anisotropic Gaussian sums per band, with band bounds or tighter
2D blocks, on the maps the shipped ``anisotropic`` model predicts for real images.

For three Set12 images (tiled to about 3 megapixels, AWGN 0.1), the maps are resampled to
full resolution and, for each block size, the average number of one-sided offsets that
``pkn.kernels._gaussian_general._kept_offsets`` keeps per block is printed (out of
``2 r^2 + 2 r`` for the window radius ``r`` of the largest sigma).
Usage: ``.venv/bin/python scripts/gaussian_block_bounds.py``.
"""

import glob
import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage import io

import pkn.kernels._gaussian_general as GG
from pkn.kernels._band import Scratch
from pkn.restoration import Restorer

BLOCKS = ((32, None), (128, 1024), (64, 256), (16, 64))  # (rows, columns); None: full width


def _kept(bounds, r: int) -> int:
    kept = GG._kept_offsets(bounds, r, torch.float32)
    rows = sum(
        hi - lo + 1 for dy, (spans, _) in enumerate(kept) for lo, hi in spans[: 2 if dy else 1]
    )
    return rows + r  # and the column dx = 0


def main() -> int:
    for f in sorted(glob.glob("../shared/data/set12/*.png"))[:3]:
        img = io.imread(f).astype(np.float32) / 255
        img = np.tile(img, (6, 8)) if img.shape[0] == 256 else np.tile(img, (3, 4))
        noisy = img + 0.1 * np.random.default_rng(0).standard_normal(img.shape, dtype=np.float32)
        maps = Restorer(noisy, kernel="anisotropic", noise=0.1).maps
        H, W = noisy.shape
        s1, s2, rho = (
            F.interpolate(maps[k], size=(H, W), mode="bilinear", align_corners=False)
            for k in ("sigma1", "sigma2", "rho")
        )
        r = math.ceil(3 * max(float(s1.max()), float(s2.max())))
        a, b, c = GG._coefficients(s1, s2, rho, Scratch(s1))
        line = [f"{f.split('/')[-1]}: r = {r}, {2 * r * r + 2 * r} offsets; kept per block"]
        for bh, bw in BLOCKS:
            bw = bw or W
            n = [
                _kept(
                    tuple(
                        float(v)
                        for t in (a, b, c)
                        for v in torch.aminmax(t[..., y : y + bh, x : x + bw])
                    ),
                    r,
                )
                for y in range(0, H, bh)
                for x in range(0, W, bw)
            ]
            line.append(f"{bh}x{'W' if bw == W else bw}: {np.mean(n):.1f}")
        print(", ".join(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
