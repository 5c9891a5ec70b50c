"""``python -m pkn bench table1`` / ``bench denoise``: the paper's Table 1 protocol on Kodak24.

Kodak24 (``../shared/data/kodak24``), AWGN of std ``sigma`` added i.i.d. per channel
(seeded, unclipped), each channel filtered by the kernel (NLM 3x3 patch / 5x5 search for
Table 1). Rows: per-image global optimum (one parameter set per image, knows the clean
image), the network (knows only the noise sigma), and the local oracle (half-resolution
maps optimised against the clean image). PSNR over the whole RGB image, averaged over
images; seconds per image. Per-image results are cached in a JSON file so that rows can
be computed in separate runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["main", "run"]

PAPER = {  # Wronski 2021, Table 1 (Kodak originals): global / network / oracle
    0.025: (35.93, 36.25, 36.68),
    0.05: (31.84, 32.28, 32.87),
    0.1: (27.90, 28.49, 29.03),
    0.2: (23.72, 24.64, 24.99),
}


def kodak_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "kodak24"


def load_kodak(folder: Path | None = None, n: int | None = None) -> list[tuple[str, np.ndarray]]:
    from skimage import io

    folder = folder or kodak_dir()
    files = sorted(folder.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no Kodak24 PNGs in {folder}.")
    files = files[:n] if n else files
    return [(f.stem, io.imread(f)[..., :3].astype(np.float32) / 255.0) for f in files]


def _noisy(img: np.ndarray, sigma: float, index: int) -> np.ndarray:
    rng = np.random.default_rng(1000 * index + round(sigma * 1000))
    return img + sigma * rng.standard_normal(img.shape).astype(np.float32)


def _psnr(y: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((y.astype(np.float64) - x) ** 2)))


def run(
    kernel: str,
    sigmas,
    rows,
    *,
    model=None,
    n_images=None,
    cache=None,
    oracle_iters=100,
    threads=0,
    log=print,
) -> dict:
    """Compute the table; returns ``{sigma: {row: {"psnr": mean, "seconds": mean}}}``."""
    from ..models.io import load_model
    from ..oracle import global_optimum, local_oracle

    if threads:
        torch.set_num_threads(threads)
    images = load_kodak(n=n_images)
    cache_path = Path(cache) if cache else None
    store = json.loads(cache_path.read_text()) if cache_path and cache_path.is_file() else {}
    net = None
    if "network" in rows:
        net, info = load_model(model or kernel)
        store.setdefault("_models", {})[str(model or kernel)] = info["sha256"]
    table = {}
    for sigma in sigmas:
        table[sigma] = {}
        for row in rows:
            vals, secs = [], []
            for idx, (name, img) in enumerate(images):
                key = f"{kernel}|{row}|{sigma}|{name}" + (
                    f"|{model}" if row == "network" and model else ""
                )
                if key not in store:
                    noisy = _noisy(img, sigma, idx)
                    x = torch.from_numpy(noisy).permute(2, 0, 1)[:, None].contiguous()
                    c = torch.from_numpy(img).permute(2, 0, 1)[:, None].contiguous()
                    s = torch.full((3, 1, 1, 1), float(sigma))
                    t0 = time.perf_counter()
                    if row == "network":
                        with torch.no_grad():
                            guide = x.mean(0, keepdim=True).expand_as(x) if net.guided else None
                            y = net(x, s, guide)[0]
                    elif row == "global":
                        y = global_optimum(kernel, x, c, s).output
                    elif row == "oracle":
                        y = local_oracle(kernel, x, c, s, iters=oracle_iters).output
                    else:
                        raise ValueError(f"unknown row {row!r}")
                    dt = time.perf_counter() - t0
                    out = y[:, 0].permute(1, 2, 0).numpy()
                    store[key] = {"psnr": _psnr(out, img), "seconds": dt}
                    if cache_path:
                        cache_path.write_text(json.dumps(store, indent=1))
                vals.append(store[key]["psnr"])
                secs.append(store[key]["seconds"])
            table[sigma][row] = {"psnr": float(np.mean(vals)), "seconds": float(np.mean(secs))}
            log(
                f"sigma {sigma}: {row:8s} {table[sigma][row]['psnr']:.2f} dB "
                f"({table[sigma][row]['seconds']:.2f} s/image, {len(vals)} images)"
            )
    return table


def markdown(table: dict, rows, kernel: str, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "| sigma | " + " | ".join(rows) + " | paper global / network / oracle |",
        "|---" * (len(rows) + 2) + "|",
    ]
    for sigma, r in table.items():
        cells = [f"{r[row]['psnr']:.2f} dB ({r[row]['seconds']:.2f} s)" for row in rows]
        paper = " / ".join(f"{v:.2f}" for v in PAPER.get(sigma, ())) if kernel == "nlm" else ""
        lines.append(f"| {sigma} | " + " | ".join(cells) + f" | {paper} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pkn bench table1", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--kernel", default="nlm")
    p.add_argument("--model", default=None, help="model name or .safetensors (default: kernel)")
    p.add_argument("--sigmas", default="0.025,0.05,0.1,0.2")
    p.add_argument("--rows", default="global,network,oracle")
    p.add_argument("--images", type=int, default=None, help="first N images only")
    p.add_argument("--oracle-iters", type=int, default=100)
    p.add_argument("--cache", default=None, help="JSON file caching per-image results")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    rows = a.rows.split(",")
    table = run(
        a.kernel,
        [float(s) for s in a.sigmas.split(",")],
        rows,
        model=a.model,
        n_images=a.images,
        cache=a.cache,
        oracle_iters=a.oracle_iters,
        threads=a.threads,
    )
    import sys

    print(
        markdown(
            table,
            rows,
            a.kernel,
            "python -m pkn bench table1 " + " ".join(argv if argv is not None else sys.argv[1:]),
        )
    )
    return 0
