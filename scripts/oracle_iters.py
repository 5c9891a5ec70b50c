"""How loose is the Table-1 oracle row (60 Adam steps)? Run it longer on a few images.

Kodak24 crops, the Table-1 protocol (AWGN i.i.d. per channel, seeded, unclipped), the
shipped ``nlm`` kernel options (joint colour distances). Prints the global optimum and
the local oracle after 60 and 240 steps, in dB, per image and sigma.

Usage: ``.venv/bin/python scripts/oracle_iters.py`` (about 15 minutes on one core).
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's benchmarks/
from benchmarks.denoise import _noisy, _psnr, load_kodak
from pkn.oracle import global_optimum, local_oracle


def main() -> int:
    torch.set_num_threads(1)
    images = load_kodak()
    options = {"joint": True}
    out = {}
    for sigma in (0.2, 0.05):
        for idx in (0, 6, 12):  # kodim01, kodim07, kodim13
            name, img = images[idx]
            x = torch.from_numpy(_noisy(img, sigma, idx)).permute(2, 0, 1)[:, None].contiguous()
            c = torch.from_numpy(img).permute(2, 0, 1)[:, None].contiguous()
            s = torch.full((3, 1, 1, 1), sigma)
            g = global_optimum("nlm", x, c, s, options=options)
            row = {"global": _psnr(g.output[:, 0].permute(1, 2, 0).numpy(), img)}
            for iters in (60, 240):
                o = local_oracle("nlm", x, c, s, iters=iters, options=options, init=g)
                row[f"oracle{iters}"] = _psnr(o.output[:, 0].permute(1, 2, 0).numpy(), img)
            out[f"{sigma}|{name}"] = row
            print(sigma, name, {k: round(v, 3) for k, v in row.items()}, flush=True)
    json.dump(out, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
