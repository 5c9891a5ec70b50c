"""strength="auto": the SURE search over the whole candidate grid against the early-stopping
search, in the same run, on one W2S frame (default) or any image file.

Usage: python scripts/sure_speed.py [IMAGE] [--models nlm anisotropic-fluo]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import pkn
import pkn._quality as Q
from pkn._io import read_image

DATA = Path(os.environ.get("PKN_DATA", Path(__file__).resolve().parents[1] / "../shared/data"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "image", nargs="?", default=str(DATA / "microscopy/w2s/noisy/input_avg1_001_0.tif")
    )
    p.add_argument("--models", nargs="+", default=["nlm", "anisotropic-fluo"])
    a = p.parse_args()
    torch.set_num_threads(1)
    x = read_image(a.image).data
    print(f"{a.image}: {x.shape}, one thread")
    stop = Q._RISES
    for model in a.models:
        r = pkn.Restorer(x, model=model)
        for label, rises in (("whole grid", len(Q.STRENGTHS)), ("early stop", stop)):
            Q._RISES, r._auto = rises, None
            t = time.perf_counter()
            s, info = r.auto_strength()
            dt = time.perf_counter() - t
            runs = len(info["candidates"])
            print(f"{model:18s} {label}: {dt:6.2f} s, strength {s:.4f}, {runs} runs")


if __name__ == "__main__":
    main()
