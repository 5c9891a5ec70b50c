"""``python -m benchmarks adapt``: self-supervised adaptation (:func:`pkn.adapt`).

Three sections (``--sections``):

* ``w2s``: real widefield fluorescence noise (W2S, ``$PKN_DATA/microscopy/w2s``). Every
  noisy image (fields ``--fields``, channels ``--channels``) is adapted *on its own* in
  blind-spot mode (no clean image, no other capture), then restored with the adapted
  model. Rows: the noisy input; the shipped model (``pkn.restore``, automatic noise);
  the adapted model; the per-image global optimum of the same kernel (one parameter set
  per image, chosen against the clean image: :func:`pkn.oracle.global_optimum`, with the
  same noise std map and the same remapping as the network). Input and target were
  rescaled to 8 bit separately: every output ``y`` is mapped by the least-squares fit
  ``clean ~ alpha * y + beta`` before PSNR (:func:`pkn.metrics.affine_metrics`); the
  oracle's target is the clean image fitted to the noisy one (``noisy ~ g * clean + o``).
* ``n2n``: repeated captures. Gray BSDS500 images (``$PKN_DATA/train/bsds500``,
  ``--bsds`` of them), five synthetic captures each with Poisson-Gaussian noise
  (variance ``a * clean + b``) spatially correlated by a 3x3 binomial kernel (unit
  variance kept). Captures 0-3 adapt the model (``n2n``); capture 4 is kept aside and
  restored for the PSNR. Rows: shipped, ``n2n`` on 4 captures, and the same fine-tuning
  (same crops, steps, seed) with the clean image as target.
* ``time``: seconds of ``pkn.adapt`` with its default settings on four 512x512 frames
  (W2S channel 0, fields 1-4, as repeated captures and as four single images) on one
  and on two torch threads (the target is 60 s on 2 cores).

Prints markdown tables and the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from ._common import affine_metrics, command_line, data_root, markdown_table, set_threads

__all__ = ["main", "run_n2n", "run_time", "run_w2s"]

PROG = "python -m benchmarks adapt"
SECTIONS = ("w2s", "n2n", "time")


def _w2s_pair(root: Path, field: int, channel: int):
    import tifffile

    k = f"{field:03d}_{channel}"
    x = tifffile.imread(root / "noisy" / f"input_avg1_{k}.tif")
    c = tifffile.imread(root / "clean" / f"target_avg400_{k}.tif")
    return k, x, c


def _global(x: np.ndarray, clean: np.ndarray, kernel: str, iters: int) -> np.ndarray:
    """The per-image global optimum, in the input's units."""
    import torch

    from pkn._input import _noise, prepare
    from pkn.models.io import load_model
    from pkn.oracle import global_optimum

    p = prepare(x)
    std, _ = _noise(p, None)
    c = clean.astype(np.float64).ravel()
    g, o = np.linalg.lstsq(np.stack([c, np.ones_like(c)], 1), x.astype(np.float64).ravel())[0]
    target = torch.from_numpy(((g * clean + o - p.offset) / p.scale).astype(np.float32))
    opts = dict(load_model(kernel)[0].options)
    res = global_optimum(kernel, p.x, target[None, None], std, iters=iters, options=opts)
    return res.output[0, 0].numpy() * p.scale + p.offset, {
        k: float(v.mean() / (std.mean() if k == "sigma" else 1.0)) for k, v in res.maps.items()
    }


def run_w2s(fields, channels, *, kernel="nlm", steps=None, oracle_iters=40, log=print):
    """Per-image rows of the W2S section."""
    import pkn
    import pkn.adapt

    root = data_root() / "microscopy" / "w2s"
    rows = []
    for ch in channels:
        for f in fields:
            k, x, c = _w2s_pair(root, f, ch)
            cf = c.astype(np.float32)
            shipped = pkn.restore(x, kernel=kernel).image
            t0 = time.perf_counter()
            m = pkn.adapt(x, kernel=kernel, mode="blindspot", **_steps(steps))
            dt = time.perf_counter() - t0
            adapted = pkn.restore(x, kernel=kernel, model=m).image
            glob, gmaps = _global(x, c, kernel, oracle_iters)
            row = {
                "image": k,
                "channel": ch,
                "noisy": affine_metrics(x.astype(np.float32), cf)["psnr"],
                "shipped": affine_metrics(shipped, cf)["psnr"],
                "adapted": affine_metrics(adapted, cf)["psnr"],
                "global": affine_metrics(glob, cf)["psnr"],
                "seconds": dt,
                "global_maps": gmaps,
            }
            rows.append(row)
            log(
                f"  w2s {k}: noisy {row['noisy']:.2f}, shipped {row['shipped']:.2f}, adapted "
                f"{row['adapted']:.2f}, global {row['global']:.2f} dB ({dt:.1f} s) {gmaps}"
            )
    return rows


def _steps(steps) -> dict:
    return {} if steps is None else {"steps": steps}


def _captures(clean: np.ndarray, n: int, a: float, b: float, seed: int) -> list[np.ndarray]:
    """``n`` captures: Poisson-Gaussian std, spatially correlated (3x3 binomial kernel)."""
    rng = np.random.default_rng(seed)
    k = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float64)
    k /= np.sqrt((k**2).sum())  # unit variance of the filtered white noise
    std = np.sqrt(a * np.clip(clean, 0, None) + b)
    out = []
    for _ in range(n):
        w = rng.standard_normal(clean.shape)
        z = sum(
            k[dy + 1, dx + 1] * np.roll(w, (dy, dx), axis=(0, 1))
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        out.append((clean + std * z).astype(np.float32))
    return out


def run_n2n(n_images, *, kernel="nlm", steps=None, a=0.01, b=4e-4, seed=0, log=print):
    """Per-image rows of the repeated-captures section."""
    import pkn
    import pkn.adapt
    from pkn.adapt import _finetune_clean
    from pkn.metrics import metrics

    from ._common import image_files, read_image

    files = image_files(data_root() / "train" / "bsds500")[:n_images]
    rows = []
    for i, f in enumerate(files):
        rgb = read_image(f)
        clean = (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)
        caps = _captures(clean, 5, a, b, seed + i)
        train, test = caps[:4], caps[4]
        shipped = pkn.restore(test, kernel=kernel).image
        t0 = time.perf_counter()
        m = pkn.adapt(train, kernel=kernel, mode="n2n", seed=seed, **_steps(steps))
        dt = time.perf_counter() - t0
        mc = _finetune_clean(train, clean, kernel=kernel, seed=seed, **_steps(steps))
        row = {
            "image": f.stem,
            "noisy": metrics(test, clean)["psnr"],
            "shipped": metrics(shipped, clean)["psnr"],
            "n2n": metrics(pkn.restore(test, kernel=kernel, model=m).image, clean)["psnr"],
            "clean": metrics(pkn.restore(test, kernel=kernel, model=mc).image, clean)["psnr"],
            "seconds": dt,
        }
        rows.append(row)
        log(
            f"  n2n {f.stem}: noisy {row['noisy']:.2f}, shipped {row['shipped']:.2f}, n2n "
            f"{row['n2n']:.2f}, clean-target {row['clean']:.2f} dB ({dt:.1f} s)"
        )
    return rows


def run_time(*, kernel="nlm", threads=(1, 2), log=print):
    """Seconds of ``pkn.adapt`` (default settings but ``threads``) on four 512x512 frames:
    ``{(mode, threads): seconds}``."""
    import pkn.adapt

    root = data_root() / "microscopy" / "w2s"
    frames = [_w2s_pair(root, f, 0)[1] for f in (1, 2, 3, 4)]
    out = {}
    for n in threads:
        for mode in ("n2n", "blindspot"):
            t0 = time.perf_counter()
            pkn.adapt(frames, kernel=kernel, mode=mode, threads=n)
            out[mode, n] = time.perf_counter() - t0
            log(f"  time {mode}: {out[mode, n]:.1f} s for four 512x512 frames on {n} threads")
    return out


def _w2s_table(rows) -> str:
    body = []
    for ch in [*sorted({r["channel"] for r in rows}), "all"]:
        sel = [r for r in rows if ch == "all" or r["channel"] == ch]
        mean = {k: float(np.mean([r[k] for r in sel])) for k in ("noisy", "shipped", "adapted")}
        mean["global"] = float(np.mean([r["global"] for r in sel]))
        wins = sum(r["adapted"] >= r["global"] for r in sel)
        close = sum(r["adapted"] >= r["global"] - 0.05 for r in sel)
        body.append(
            [
                f"channel {ch}" if ch != "all" else "**all**",
                len(sel),
                f"{mean['noisy']:.2f}",
                f"{mean['shipped']:.2f}",
                f"{mean['adapted']:.2f}",
                f"{mean['global']:.2f}",
                f"{mean['adapted'] - mean['global']:+.2f}",
                f"{wins}/{len(sel)}",
                f"{close}/{len(sel)}",
                f"{np.mean([r['seconds'] for r in sel]):.1f}",
            ]
        )
    head = [
        "W2S",
        "images",
        "noisy",
        "shipped",
        "adapted (blind-spot)",
        "global optimum (knows clean)",
        "adapted - global",
        "adapted >= global",
        "adapted >= global - 0.05",
        "adapt s/image",
    ]
    return markdown_table(head, body)


def _n2n_table(rows) -> str:
    keys = ("noisy", "shipped", "n2n", "clean")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    body = [
        [
            r["image"],
            *(f"{r[k]:.2f}" for k in keys),
            f"{r['n2n'] - r['clean']:+.2f}",
            f"{r['seconds']:.1f}",
        ]
        for r in rows
    ]
    body.append(
        [
            f"**mean ({len(rows)})**",
            *(f"{mean[k]:.2f}" for k in keys),
            f"{mean['n2n'] - mean['clean']:+.2f}",
            f"{np.mean([r['seconds'] for r in rows]):.1f}",
        ]
    )
    head = [
        "BSDS image",
        "noisy",
        "shipped",
        "n2n (4 captures)",
        "clean-target",
        "n2n - clean",
        "s",
    ]
    return markdown_table(head, body)


def _fields(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help="w2s,n2n,time")
    p.add_argument("--kernel", default="nlm")
    p.add_argument("--fields", default="5-8", help="W2S fields of view, e.g. 5-8 or 5,9")
    p.add_argument("--channels", default="0,1,2")
    p.add_argument("--bsds", type=int, default=4, help="BSDS images for the n2n section")
    p.add_argument("--steps", type=int, default=None, help="default: pkn.adapt's")
    p.add_argument("--oracle-iters", type=int, default=40)
    p.add_argument("--threads", type=int, default=1, help="torch threads (w2s, n2n)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-threads", default="1,2", help="torch threads of the time section")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        print(f"{PROG}: unknown sections {bad}; choose from {SECTIONS}.", file=sys.stderr)
        return 2
    set_threads(args.threads)
    out = []
    if "w2s" in sections:
        rows = run_w2s(
            _fields(args.fields),
            [int(c) for c in args.channels.split(",")],
            kernel=args.kernel,
            steps=args.steps,
            oracle_iters=args.oracle_iters,
        )
        out += [
            "### W2S, blind-spot adaptation per image (affine-fit PSNR, dB)",
            "",
            _w2s_table(rows),
            "",
        ]
    if "n2n" in sections:
        rows = run_n2n(args.bsds, kernel=args.kernel, steps=args.steps, seed=args.seed)
        out += [
            "### Repeated captures: BSDS gray, Poisson-Gaussian a=0.01 b=4e-4, 3x3-correlated "
            "(PSNR on a fifth capture kept aside, dB)",
            "",
            _n2n_table(rows),
            "",
        ]
    if "time" in sections:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        t = run_time(kernel=args.kernel, threads=[int(v) for v in args.time_threads.split(",")])
        out += [
            f"### Time: four 512x512 frames, default settings ({os.cpu_count()} cores, load "
            f"average {load:.1f} at the start)",
            "",
            markdown_table(
                ["mode", "torch threads", "seconds", "target"],
                [[m, n, f"{s:.1f}", "<= 60"] for (m, n), s in t.items()],
            ),
            "",
        ]
    print("\n".join(out))
    print(f"Command: `{command_line(PROG, argv)}`")
    return 0
