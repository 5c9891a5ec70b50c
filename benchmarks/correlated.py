"""``python -m benchmarks correlated``: denoising spatially correlated noise.

Kodak24 (evaluation only, never training), Gaussian noise of marginal std ``sigma``
added per channel, either white or white noise filtered by a fixed small kernel and
rescaled to the same marginal std (as demosaicking, binning and camera processing
leave it): ``box2`` (a 2x2 box: correlation 0.5 at lag 1), ``gauss0.7`` (isotropic
Gaussian, std 0.7 px) and ``aniso`` (Gaussian 1.0 px along x, 0.4 px along y). Seeded,
unclipped. Rows:

- ``white``: a white-noise model (``--white``, e.g. the earlier shipped ``nlm``), told the
  true marginal std (as ``pkn.restore`` with a perfect marginal noise estimate);
- ``corr``: the correlation-aware model, told the true marginal std and correlation;
- ``corr-white``: the same model told "white" (what the correlation input is worth);
- ``corr-est`` / ``white-est``: both models with the noise (marginal std and
  correlation) estimated from the noisy image by :func:`pkn.noise.calibrate`, as
  ``pkn.restore`` does;
- ``global``: the kernel's per-image global optimum (one parameter set per image, chosen
  with the clean image), the strongest baseline of the same kernel.

PSNR over the whole RGB image, averaged over images, seconds per image. Per-image
results are cached (``--cache``) by model hash.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._common import data_root
from .denoise import load_kodak

__all__ = ["KINDS", "ROWS", "main", "noise_kernel", "run"]

ROWS = ("white", "corr", "corr-white", "white-est", "corr-est", "global")
KINDS = ("white", "box2", "gauss0.7", "aniso")


def noise_kernel(kind: str) -> np.ndarray | None:
    """The fixed kernel that colours the noise of ``kind`` (unit L2 norm); None: white."""
    if kind == "white":
        return None
    if kind == "box2":
        k = np.ones((2, 2))
    elif kind in ("gauss0.7", "aniso"):
        sy, sx = (0.7, 0.7) if kind == "gauss0.7" else (0.4, 1.0)
        d = np.arange(-3, 4, dtype=float)
        k = np.exp(-0.5 * ((d[:, None] / sy) ** 2 + (d[None, :] / sx) ** 2))
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    return k / np.sqrt((k**2).sum())


def correlation_of(k: np.ndarray | None) -> np.ndarray:
    """Exact correlation coefficients ``(5, 5)`` at lags -2..2 of white noise filtered
    by ``k``."""
    c = np.zeros((5, 5))
    if k is None:
        c[2, 2] = 1.0
        return c
    kh, kw = k.shape
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            a = k[max(0, dy) : kh + min(0, dy), max(0, dx) : kw + min(0, dx)]
            b = k[max(0, -dy) : kh + min(0, -dy), max(0, -dx) : kw + min(0, -dx)]
            c[dy + 2, dx + 2] = (a * b).sum() if a.size else 0.0
    return c / c[2, 2]


def noisy_image(img: np.ndarray, sigma: float, kind: str, index: int) -> np.ndarray:
    """``img`` (H, W, 3) plus seeded noise of marginal std ``sigma`` of ``kind``."""
    rng = np.random.default_rng([index, round(sigma * 1000), KINDS.index(kind)])
    k = noise_kernel(kind)
    H, W, C = img.shape
    if k is None:
        n = rng.standard_normal(img.shape)
    else:
        kh, kw = k.shape
        w = rng.standard_normal((C, 1, H + kh - 1, W + kw - 1))
        n = F.conv2d(torch.from_numpy(w), torch.from_numpy(k)[None, None])[:, 0]
        n = n.permute(1, 2, 0).numpy()
    return (img + sigma * n).astype(np.float32)


def _psnr(y: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((y.astype(np.float64) - x) ** 2)))


def _run_model(net, x: torch.Tensor, std: torch.Tensor, corr) -> torch.Tensor:
    with torch.no_grad():
        guide = x.mean(0, keepdim=True).expand_as(x) if net.guided else None
        maps = net.predict_maps(x, std, guide, corr)
        kw = {"guide": x[:, 0][None].expand(x.shape[0], -1, -1, -1)} if net.joint else {}
        return net.filter(x, maps, **kw)


def _estimate(noisy: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Per-channel marginal std at each pixel's intensity (std maps) and the pooled
    correlation, from :func:`pkn.noise.calibrate` on the noisy image alone."""
    from pkn.noise import calibrate

    models = calibrate(noisy, channel_axis=-1)
    std = np.stack([m.std_at(noisy[..., i]) for i, m in enumerate(models)])  # (3, H, W)
    corr = np.mean([m.correlation for m in models], axis=0)
    return torch.from_numpy(std.astype(np.float32))[:, None], corr


def run(
    sigmas,
    kinds,
    rows,
    *,
    model: str = "nlm",
    white: str | None = None,
    n_images: int | None = None,
    cache: str | None = None,
    threads: int = 0,
    data: str | None = None,
    log=print,
) -> dict:
    """``{kind: {sigma: {row: {"psnr", "seconds"}}}}`` averaged over the images."""
    from pkn.models.io import load_model
    from pkn.oracle import global_optimum

    if threads:
        torch.set_num_threads(threads)
    bad = [r for r in rows if r not in ROWS] + [k for k in kinds if k not in KINDS]
    if bad:
        raise SystemExit(f"unknown rows/kinds {bad}; rows: {ROWS}, kinds: {KINDS}.")
    images = load_kodak(Path(data) if data else data_root(), n_images)
    corr_net, corr_info = load_model(model)
    if not corr_net.correlated:
        raise SystemExit(f"--model {model!r} does not take the noise correlation.")
    tags = {"corr": corr_info["sha256"][:12]}
    base_net = corr_net
    if any(r.startswith("white") for r in rows):
        if white is None:
            raise SystemExit("rows white / white-est need --white MODEL (a white-noise model).")
        base_net, base_info = load_model(white)
        tags["white"] = base_info["sha256"][:12]
    path = Path(cache) if cache else None
    store = json.loads(path.read_text()) if path and path.is_file() else {}
    table: dict = {}
    for kind in kinds:
        c_true = correlation_of(noise_kernel(kind))
        for sigma in sigmas:
            acc = {r: ([], []) for r in rows}
            for idx, (name, img) in enumerate(images):
                noisy, est = None, None
                for row in rows:
                    who = "corr" if row.startswith("corr") else "white"
                    key = f"{kind}|{sigma}|{row}|{name}"
                    key += "" if row == "global" else f"|{tags[who]}"
                    if key not in store:
                        noisy = noisy_image(img, sigma, kind, idx) if noisy is None else noisy
                        x = torch.from_numpy(noisy).permute(2, 0, 1)[:, None].contiguous()
                        s = torch.full((3, 1, 1, 1), float(sigma))
                        t0 = time.perf_counter()
                        if row == "global":
                            c = torch.from_numpy(img).permute(2, 0, 1)[:, None].contiguous()
                            y = global_optimum("nlm", x, c, s, options=dict(base_net.options))
                            y = y.output
                        else:
                            net = corr_net if who == "corr" else base_net
                            corr = None if row == "corr-white" else c_true
                            if row.endswith("-est"):
                                s, corr = _estimate(noisy) if est is None else est
                                est = (s, corr)
                            y = _run_model(net, x, s, corr)
                        dt = time.perf_counter() - t0
                        out = y[:, 0].permute(1, 2, 0).numpy()
                        store[key] = {"psnr": _psnr(out, img), "seconds": dt}
                        if path:
                            path.parent.mkdir(parents=True, exist_ok=True)
                            path.write_text(json.dumps(store, indent=1))
                    acc[row][0].append(store[key]["psnr"])
                    acc[row][1].append(store[key]["seconds"])
            table.setdefault(kind, {})[sigma] = {
                r: {"psnr": float(np.mean(v)), "seconds": float(np.mean(t))}
                for r, (v, t) in acc.items()
            }
            log(
                f"{kind} sigma {sigma}: "
                + ", ".join(f"{r} {table[kind][sigma][r]['psnr']:.2f}" for r in rows)
            )
    return table


def markdown(table: dict, rows, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "| noise | sigma | " + " | ".join(rows) + " |",
        "|---|---" + "|---" * len(rows) + "|",
    ]
    for kind, per in table.items():
        for sigma, r in per.items():
            cells = [f"{r[row]['psnr']:.2f}" for row in rows]
            lines.append(f"| {kind} | {sigma} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks correlated", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model", default="nlm", help="the correlation-aware model (default: nlm)")
    p.add_argument(
        "--white", default=None, help="a white-noise model for the rows white, white-est"
    )
    p.add_argument("--sigmas", default="0.05,0.1,0.2")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--images", type=int, default=None, help="first N Kodak images only")
    p.add_argument("--cache", default=None, help="JSON file caching per-image results")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data", default=None, metavar="DIR")
    a = p.parse_args(argv)
    rows = a.rows.split(",")
    table = run(
        [float(s) for s in a.sigmas.split(",")],
        a.kinds.split(","),
        rows,
        model=a.model,
        white=a.white,
        n_images=a.images,
        cache=a.cache,
        threads=a.threads,
        data=a.data,
    )
    words = sys.argv[1:] if argv is None else list(argv)
    print(markdown(table, rows, "python -m benchmarks correlated " + " ".join(words)))
    return 0
