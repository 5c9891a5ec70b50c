"""Probe: does a wider NLM search window help on W2S, and does strength matter?

Runs ``pkn.restore`` with a model's weights but another ``search_size`` (no retraining) on
every 8th W2S pair (15 frames, all channels) and prints the mean affine-fit PSNR
(benchmarks' ``affine_psnr``) per search size and strength::

    git show f3e2705:resources/nlm.safetensors > runs/nlm-white.safetensors
    python scripts/w2s_window_probe.py --model runs/nlm-white.safetensors

(the white-noise nlm, as in docs/benchmarks.md). Data: $PKN_DATA/microscopy/w2s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    import pkn
    from benchmarks import _baselines as bl
    from benchmarks import microscopy as mb
    from pkn.models.io import load_model

    p = argparse.ArgumentParser(prog="python scripts/w2s_window_probe.py")
    p.add_argument("--model", default="nlm")
    p.add_argument("--sizes", default="9,13,17")
    p.add_argument("--strengths", default="1,1.5,2,auto")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(os.environ.get("PKN_DATA", "../shared/data")) / "microscopy" / "w2s"
    sel = mb.load_pairs(root)[::8]
    net, _ = load_model(a.model)
    base = dict(net.options)
    for ss in (int(v) for v in a.sizes.split(",")):
        for st in a.strengths.split(","):
            st = st if st == "auto" else float(st)
            net.options = {**base, "search_size": ss}
            t0, vals = time.time(), []
            for _, (x, c) in sel:
                vals.append(bl.affine_psnr(pkn.restore(x, model=net, strength=st).image, c))
            print(f"search {ss} strength {st}: {np.mean(vals):.2f} dB ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
