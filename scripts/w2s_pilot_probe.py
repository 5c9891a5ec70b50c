"""Probe: a second NLM pass whose patch distances come from the first pass (a pilot).

On every 12th W2S pair (10 frames): pass 1 is ``pkn.restore(x, model="nlm-wide")``; pass 2
runs the nlm kernel on the noisy frame with the pass-1 maps (sigma scaled by ``f``,
spatial sigma by ``g``) and the pass-1 output as the guide of the patch distances. Prints
the mean affine-fit PSNR of pass 1 and of every pass-2 variant::

    python scripts/w2s_pilot_probe.py

Data: $PKN_DATA/microscopy/w2s.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import pkn
    from benchmarks import _baselines as bl
    from benchmarks import microscopy as mb
    from pkn.kernels.nlm import nlm
    from pkn.models.procedural import upsample_map

    torch.set_num_threads(1)
    root = Path(os.environ.get("PKN_DATA", "../shared/data")) / "microscopy" / "w2s"
    res: dict = {}
    for _, (x, c) in mb.load_pairs(root)[::12]:
        r = pkn.restore(x, model="nlm-wide")
        res.setdefault("pass 1", []).append(bl.affine_psnr(r.image, c))
        lo, s = float(x.min()), float(x.max() - x.min())
        xt = torch.from_numpy((x - lo) / s)[None, None]
        pilot = torch.from_numpy((r.image - lo) / s)[None, None].float()
        H, W = x.shape
        sig = upsample_map(torch.from_numpy(r.maps["sigma"] / s)[None, None].float(), (H, W), 2)
        sp = upsample_map(torch.from_numpy(r.maps["spatial_sigma"])[None, None].float(), (H, W), 2)
        for ss in (9, 13):
            for f in (0.3, 0.5, 0.8):
                for g in (1.0, 1.5):
                    y = nlm(xt, sig * f, spatial_sigma=(sp * g).clamp(max=6), guide=pilot,
                            joint=True, search_size=ss)
                    y = y[0, 0].numpy() * s + lo
                    res.setdefault(f"pass 2 search {ss} f {f} g {g}", []).append(
                        bl.affine_psnr(y, c)
                    )
    for k, v in res.items():
        print(f"{k}: {np.mean(v):.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
