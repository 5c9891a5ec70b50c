"""``python -m benchmarks microscopy``: real fluorescence noise (W2S, SRDTrans).

Data (``--data``, default ``$PKN_DATA/microscopy``): ``w2s/{noisy,clean}`` (40
widefield fields of view, 512x512 uint8 TIFF; the noisy ``input_avg1_NNN_0.tif`` is paired
with the clean ``target_avg400_NNN_0.tif`` by its number) and ``srdtrans/{noisy,clean}``
(10 pairs, 490x490 uint8 PNG, paired by file name). Images are read as float in [0, 1]
(uint8 / 255); nothing is known about the noise.

Rows (methods):

* ``noisy``: the input itself;
* ``skimage``: what a user does today, ``skimage.restoration.denoise_nl_means(x,
  patch_size=3, patch_distance=2, h=0.8 * sigma_est, sigma=sigma_est, fast_mode=True)``
  with ``sigma_est = skimage.restoration.estimate_sigma(x)``;
* ``pkn``: ``pkn.restore(x)`` (the NLM PKN, ``--model``) with automatic noise
  estimation; the noise model and parameters it chose (``.info["noise"]``, in [0, 1]
  units) are reported per data set.

Input and target were rescaled to 8 bit separately, so before the metrics every output
``y`` is mapped by the least-squares fit ``clean ~ alpha * y + beta`` (one alpha, beta
per image and method); PSNR and SSIM (:mod:`skimage.metrics`, 7x7 window) of the fitted
output use the data range of the clean image (``max - min``). Seconds are the wall time
per image of the method alone. Per-image results are cached in a JSON file
(``--cache``) so rows can be computed in separate runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from ._common import (
    Cache,
    ModelUnavailable,
    affine_metrics,
    command_line,
    data_root,
    fmt_cell,
    image_files,
    markdown_table,
    parse_rows,
    read_image,
    require_model,
    run_grid,
    set_threads,
    task_kernels,
    timed,
)

__all__ = ["ROWS", "SETS", "load_pairs", "main", "run", "skimage_nlm"]

PROG = "python -m benchmarks microscopy"
SETS = ("w2s", "srdtrans")
ROWS = ("noisy", "skimage", "pkn")


def _pair_key(path: Path) -> str:
    """W2S ``input_avg1_001_0`` / ``target_avg400_001_0`` -> ``001_0``; else the stem."""
    m = re.match(r"(?:input|target)_avg\d+_(.+)$", path.stem)
    return m.group(1) if m else path.stem


def load_pairs(folder: str | Path, n: int | None = None) -> list[tuple[str, tuple]]:
    """``(name, (noisy, clean))`` float32 pairs from ``folder/noisy`` and ``folder/clean``.

    Raises
    ------
    FileNotFoundError
        When a folder is missing, empty, or a noisy image has no clean partner.
    """
    folder = Path(folder)
    for sub in ("noisy", "clean"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"{folder / sub} does not exist (--data, --sets).")
    noisy = {_pair_key(p): p for p in image_files(folder / "noisy")}
    clean = {_pair_key(p): p for p in image_files(folder / "clean")}
    if not noisy:
        raise FileNotFoundError(f"no images in {folder / 'noisy'}.")
    missing = sorted(set(noisy) - set(clean))
    if missing:
        raise FileNotFoundError(f"no clean image for {missing[:5]} in {folder / 'clean'}.")
    keys = sorted(noisy)[:n] if n else sorted(noisy)
    out = []
    for k in keys:
        x, c = read_image(noisy[k]), read_image(clean[k])
        if x.shape != c.shape:
            raise ValueError(f"{folder.name} {k}: noisy {x.shape} vs clean {c.shape}.")
        out.append((k, (x, c)))
    return out


def skimage_nlm(x: np.ndarray) -> np.ndarray:
    """scikit-image NLM with its own noise estimate, as benchmarked (module docstring)."""
    from skimage.restoration import denoise_nl_means, estimate_sigma

    s = float(estimate_sigma(x))
    return denoise_nl_means(
        x, patch_size=3, patch_distance=2, h=0.8 * s, sigma=s, fast_mode=True
    ).astype(np.float32)


def _describe(noise: dict) -> str:
    if noise.get("model") == "awgn":
        return f"awgn sigma {np.mean(noise['sigma']):.4f}"
    return f"poisson-gaussian a {noise['a']:.3e}, b {noise['b']:.3e}"


def _noise_summary(entries: list[dict]) -> str:
    """Count of the noise models chosen and the median of their parameters."""
    parts = []
    for model in ("awgn", "poisson-gaussian"):
        es = [e["noise"] for e in entries if e.get("noise", {}).get("model") == model]
        if not es:
            continue
        if model == "awgn":
            sig = np.median([np.mean(e["sigma"]) for e in es])
            parts.append(f"awgn x{len(es)} (median sigma {sig:.4f})")
        else:
            a, b = np.median([e["a"] for e in es]), np.median([e["b"] for e in es])
            parts.append(f"poisson-gaussian x{len(es)} (median a {a:.2e}, b {b:.2e})")
    return "; ".join(parts) or "-"


def run(
    rows=ROWS,
    sets=SETS,
    *,
    data=None,
    n_images: int | None = None,
    kernel=None,
    model=None,
    cache=None,
    threads: int = 0,
    log=None,
) -> tuple[dict, dict]:
    """Compute the table.

    Returns
    -------
    (dict, dict)
        ``{set: {row: Cell}}`` and a dict of notes (model, counts, noise models).

    Raises
    ------
    ModelUnavailable
        When ``pkn`` is among the rows and the model cannot be loaded.
    """
    from pkn import restore

    set_threads(threads)
    root = Path(data) if data else data_root() / "microscopy"
    kernel = kernel or task_kernels("denoise")[0]
    model = model or kernel
    notes: dict = {"data": str(root), "n_images": {}, "noise": {}}
    tags = {}
    if "pkn" in rows:
        info = require_model(model, kernel)
        tags["pkn"] = f"@{info['sha256'][:12]}"
        notes["model"] = f"{info['name']} (sha256 {info['sha256'][:12]})"
        restore(np.random.default_rng(0).random((32, 32), np.float32), model=model)  # warm-up
    cache = Cache(cache)

    def compute(row, x_clean):
        x, clean = x_clean
        extra = {}
        if row == "noisy":
            out, dt = x, 0.0
        elif row == "skimage":
            out, dt = timed(skimage_nlm, x)
        elif row == "pkn":
            r, dt = timed(restore, x, "denoise", model=model)
            out, extra = r.image, {"noise": r.info["noise"]}
            (log or print)(f"    pkn noise estimate: {_describe(r.info['noise'])}")
        else:
            raise ValueError(f"unknown row {row!r}")
        return {**affine_metrics(out, clean), "seconds": dt, **extra}

    tables = {}
    for set_name in sets:
        pairs = load_pairs(root / set_name, n_images)
        notes["n_images"][set_name] = len(pairs)
        table = run_grid(
            cache,
            "microscopy",
            [(set_name, None)],
            pairs,
            rows,
            lambda params, index, name, payload: payload,
            compute,
            row_tag=lambda row: tags.get(row, ""),
            log=log,
        )
        tables[set_name] = table[set_name]
        if "pkn" in rows:
            notes["noise"][set_name] = _noise_summary(table[set_name]["pkn"].entries)
    return tables, notes


def markdown(tables: dict, rows, notes: dict, command: str) -> str:
    """The results as a markdown table with the command line and protocol notes."""
    has_noise = bool(notes["noise"])
    header = ["data set", "images", *rows] + (["pkn noise model (estimated)"] if has_noise else [])
    body = []
    for set_name, cells in tables.items():
        line = [set_name, str(notes["n_images"][set_name]), *(fmt_cell(cells[r]) for r in rows)]
        body.append(line + ([notes["noise"].get(set_name, "-")] if has_noise else []))
    lines = [
        f"Command: `{command}`",
        "",
        f"Real fluorescence noise, {notes['data']}: PSNR dB / SSIM (seconds per image) after "
        "the least-squares fit clean ~ alpha * output + beta per image (input and target "
        "were rescaled separately), data range of the clean image, mean over images. "
        "skimage: denoise_nl_means(patch_size=3, patch_distance=2, h=0.8 * sigma_est, "
        "sigma=sigma_est, fast_mode=True), sigma_est = estimate_sigma(x); pkn: "
        "pkn.restore(x) with automatic noise estimation (parameters in [0, 1] units)."
        + (f" PKN model: {notes['model']}." if "model" in notes else ""),
        "",
        markdown_table(header, body),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line; returns the exit status."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help="methods (default: %(default)s)")
    p.add_argument("--sets", default=",".join(SETS), help="subfolders of --data")
    p.add_argument(
        "--data", default=None, help="folder holding the sets (default: $PKN_DATA/microscopy)"
    )
    p.add_argument("--images", type=int, default=None, help="first N pairs of each set")
    p.add_argument(
        "--kernel",
        default=None,
        choices=task_kernels("denoise"),
        help="denoising kernel of the 'pkn' row (default: the first, %(choices)s)",
    )
    p.add_argument("--model", default=None, help="model name or .safetensors (default: kernel)")
    p.add_argument("--cache", default=None, help="JSON file caching per-image results")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    a = p.parse_args(argv)
    rows = parse_rows(a.rows, ROWS)
    try:
        tables, notes = run(
            rows,
            [s.strip() for s in a.sets.split(",") if s.strip()],
            data=a.data,
            n_images=a.images,
            kernel=a.kernel,
            model=a.model,
            cache=a.cache,
            threads=a.threads,
        )
    except (ModelUnavailable, FileNotFoundError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(markdown(tables, rows, notes, command_line(PROG, argv)))
    return 0
