"""``python -m benchmarks table1``: the paper's Table 1 protocol on Kodak24.

Kodak24 (``--data`` or ``$PKN_DATA``, subfolder ``kodak24``), AWGN of std ``sigma`` added
i.i.d. per channel (seeded, unclipped), each channel filtered by the kernel (NLM 3x3
patch / 5x5 search for Table 1). Rows: per-image global optimum (one parameter set per
image, knows the clean image), the network (knows only the noise sigma), and the local
oracle (half-resolution maps optimised against the clean image). PSNR over the whole RGB
image, averaged over images; seconds per image. Per-image results are cached in a JSON
file so that rows can be computed in separate runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ._common import data_root, task_kernels

__all__ = ["main", "run"]

#: The kernel of the paper's Table 1; its column is shown for every kernel that runs the
#: same filter function (NLM with 3x3 patches, 5x5 search).
PAPER_KERNEL = "nlm"
PAPER = {  # Wronski 2021, Table 1 (Kodak originals): global / network / oracle
    0.025: (35.93, 36.25, 36.68),
    0.05: (31.84, 32.28, 32.87),
    0.1: (27.90, 28.49, 29.03),
    0.2: (23.72, 24.64, 24.99),
}


def load_kodak(root: Path | None = None, n: int | None = None) -> list[tuple[str, np.ndarray]]:
    """The Kodak24 images (``ROOT/kodak24/*.png``, default root: ``$PKN_DATA``), RGB in
    [0, 1]."""
    from skimage import io

    folder = Path(root or data_root()) / "kodak24"
    files = sorted(folder.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no Kodak24 PNGs in {folder}.")
    files = files[:n] if n else files
    return [(f.stem, io.imread(f)[..., :3].astype(np.float32) / 255.0) for f in files]


def load_bsds_validation(root: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """The held-out validation split of the training data (every 20th image of
    ``ROOT/train/bsds500``, default root: ``$PKN_DATA``), RGB in [0, 1]: for choosing
    between models without looking at Kodak24."""
    from pkn.training.data import TRAIN_SUBDIR, ImageBank, image_files, load_folder

    folder = Path(root or data_root()) / TRAIN_SUBDIR
    names = [p.name for p in image_files(folder)]
    bank = ImageBank(load_folder(folder))
    val_names = [n for i, n in enumerate(names) if i % 20 == 19]
    if len(val_names) != len(bank.val):
        raise RuntimeError("could not match the validation images to their file names.")
    return [
        (n, np.broadcast_to(im, (*im.shape[:2], 3)).astype(np.float32) / 255.0)
        for n, im in zip(val_names, bank.val, strict=True)
    ]


DATASETS = {"kodak24": load_kodak, "bsds-val": load_bsds_validation}


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
    options=None,
    dataset="kodak24",
    data=None,
    log=print,
) -> dict:
    """Compute the table; returns ``{sigma: {row: {"psnr": mean, "seconds": mean}}}``.

    The baselines (global, oracle) run the kernel with the network's options (e.g. joint
    colour distances), or with ``options`` when no model is loaded; cache keys carry the
    variant (``nlm+joint|global|0.1|kodim01``), network keys also the model's name and
    file hash (a retrained model is measured afresh).
    """
    from pkn.models.io import list_models, load_model
    from pkn.oracle import global_optimum, local_oracle

    if threads:
        torch.set_num_threads(threads)
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}.")
    images = DATASETS[dataset](Path(data) if data else data_root())
    images = images[:n_images] if n_images else images
    cache_path = Path(cache) if cache else None
    store = json.loads(cache_path.read_text()) if cache_path and cache_path.is_file() else {}
    net = None
    name = model or kernel
    if "network" in rows or str(name) in list_models() or str(name).endswith(".safetensors"):
        net, info = load_model(name)
        if net.kernel != kernel:
            raise ValueError(f"model {name!r} drives kernel {net.kernel!r}, not {kernel!r}.")
        net_sha = info["sha256"]
        if options is not None and dict(options) != dict(net.options):
            raise ValueError(f"options {options} differ from the model's {net.options}.")
        options = dict(net.options)  # the baselines use the network's kernel options
    options = dict(options or {})
    variant = kernel + ("+joint" if options.get("joint") else "")  # of the baselines' kernel
    if dataset != "kodak24":
        variant = f"{dataset}:{variant}"
    table = {sigma: {} for sigma in sigmas}
    per_row = {(sigma, row): ([], []) for sigma in sigmas for row in rows}
    for sigma in sigmas:
        for idx, (img_name, img) in enumerate(images):
            glob = None  # the global optimum of this image, reused as the oracle's start
            for row in rows:
                key = f"{variant}|{row}|{sigma}|{img_name}"
                if row == "network":  # a retrained model must not reuse old results
                    key += f"|{Path(str(name)).stem}@{net_sha[:12]}"
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
                        glob = global_optimum(kernel, x, c, s, options=options)
                        y = glob.output
                    elif row == "oracle":
                        kw = {"iters": oracle_iters, "options": options, "init": glob}
                        y = local_oracle(kernel, x, c, s, **kw).output
                    else:
                        raise ValueError(f"unknown row {row!r}")
                    dt = time.perf_counter() - t0
                    out = y[:, 0].permute(1, 2, 0).numpy()
                    store[key] = {"psnr": _psnr(out, img), "seconds": dt}
                    if cache_path:
                        cache_path.write_text(json.dumps(store, indent=1))
                per_row[sigma, row][0].append(store[key]["psnr"])
                per_row[sigma, row][1].append(store[key]["seconds"])
        for row in rows:
            vals, secs = per_row[sigma, row]
            table[sigma][row] = {"psnr": float(np.mean(vals)), "seconds": float(np.mean(secs))}
            log(
                f"sigma {sigma}: {row:8s} {table[sigma][row]['psnr']:.2f} dB "
                f"({table[sigma][row]['seconds']:.2f} s/image, {len(vals)} images)"
            )
    return table


def markdown(table: dict, rows, kernel: str, command: str, *, paper: bool = True) -> str:
    """The table in Markdown; ``paper`` adds the paper's Table 1 column (NLM on Kodak24)."""
    from pkn.kernels.registry import get

    paper = paper and get(kernel).function is get(PAPER_KERNEL).function
    lines = [
        f"Command: `{command}`",
        "",
        "| sigma | " + " | ".join(rows) + " |" + (" paper global / network / oracle |" * paper),
        "|---" * (len(rows) + 1 + paper) + "|",
    ]
    for sigma, r in table.items():
        cells = [f"{r[row]['psnr']:.2f} dB ({r[row]['seconds']:.2f} s)" for row in rows]
        ref = " " + " / ".join(f"{v:.2f}" for v in PAPER.get(sigma, ())) + " |" if paper else ""
        lines.append(f"| {sigma} | " + " | ".join(cells) + " |" + ref)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks table1", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--kernel", default="nlm", choices=task_kernels("denoise"))
    p.add_argument("--model", default=None, help="model name or .safetensors (default: kernel)")
    p.add_argument("--sigmas", default="0.025,0.05,0.1,0.2")
    p.add_argument("--rows", default="global,network,oracle")
    p.add_argument("--images", type=int, default=None, help="first N images only")
    p.add_argument(
        "--dataset",
        default="kodak24",
        choices=sorted(DATASETS),
        help="kodak24 (the paper's protocol) or bsds-val (the training data's held-out "
        "split, for choosing between models)",
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="data root holding kodak24/ and train/bsds500/ (default: $PKN_DATA, else "
        "../shared/data next to the repository)",
    )
    p.add_argument("--oracle-iters", type=int, default=100)
    p.add_argument("--cache", default=None, help="JSON file caching per-image results")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--options",
        type=json.loads,
        default=None,
        help="kernel options as JSON for the baselines when no model is loaded "
        '(default: the model\'s, e.g. {"joint": true} for the shipped nlm)',
    )
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
        options=a.options,
        dataset=a.dataset,
        data=a.data,
    )
    import sys

    print(
        markdown(
            table,
            rows,
            a.kernel,
            "python -m benchmarks table1 " + " ".join(argv if argv is not None else sys.argv[1:]),
            paper=a.dataset == "kodak24",
        )
    )
    return 0
