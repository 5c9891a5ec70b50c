"""strength="auto" (SURE) against the best strength chosen with the clean image.

    .venv/bin/python scripts/check_sure.py

scikit-image's camera (512x512) with seeded AWGN at sigma 0.04 / 0.12 / 0.2, the noise
given; for each, the PSNR of every strength on a 0.05 grid over [0.5, 1.5] (knows the
clean image) and of the strength SURE picks from the same grid (does not).
"""

from __future__ import annotations

import numpy as np
from skimage import data

import pkn
from pkn._quality import sure_strength


def main() -> None:
    clean = data.camera().astype(np.float32) / 255
    grid = [round(float(v), 2) for v in np.linspace(0.5, 1.5, 21)]
    print("| sigma | best strength | best PSNR | SURE's strength | its PSNR |")
    print("|---|---|---|---|---|")
    for sigma in (0.04, 0.12, 0.2):
        rng = np.random.default_rng(0)
        noisy = (clean + sigma * rng.standard_normal(clean.shape)).astype(np.float32)
        r = pkn.Restorer(noisy, noise=sigma)
        psnr = [-10 * np.log10(np.mean((r.render(s).image - clean) ** 2)) for s in grid]
        _, info = sure_strength(r.net, r.p.x, r.maps, r.noise_std, candidates=grid)
        k = int(np.argmin(info["sure"][: len(grid)]))
        b = int(np.argmax(psnr))
        print(f"| {sigma} | {grid[b]} | {psnr[b]:.3f} | {grid[k]} | {psnr[k]:.3f} |")


if __name__ == "__main__":
    main()
