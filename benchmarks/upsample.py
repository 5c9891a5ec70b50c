"""``python -m benchmarks upsample``: upsampling by any factor on Kodak24 and Set12.

Protocol. For a factor ``s = p / q`` (as a fraction, e.g. 1.5 = 3/2) the high-resolution
(HR) image, float in [0, 1], is cropped at its top-left corner to a height and width that
are multiples of ``p``, so the low-resolution (LR) size ``(H / s, W / s)`` is an exact
integer and upsampling it by ``s`` gives back exactly ``(H, W)``. LR = antialiased
bilinear downscale of the HR crop (``F.interpolate(..., mode="bilinear", antialias=True,
align_corners=False)``, as in training); AWGN of std ``noise`` (``--noises``) is added
to the LR image, seeded by (set, image, factor, noise), unclipped. Colour images are
processed with their channels as a batch of gray images.

Rows (methods):

* ``pkn``: the RBF PKN, ``pkn.restore(lr, "upsample", scale=s, noise=sigma,
  channel_axis=-1 for colour, model=--model)``; a noise-free input is passed as
  ``noise=1e-3``, the value training uses for noise-free inputs;
* ``bicubic``: ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)``;
* ``lanczos``: Pillow ``Image.resize(..., Image.Resampling.LANCZOS)`` on each channel as
  a float32 (mode ``"F"``) image;
* ``global`` (not run by default: ``--rows``): the RBF filter with one best
  (sigma1, sigma2, rho) per image fitted against the HR image
  (:func:`pkn.oracle.global_optimum` with ``size=(H, W)``: a grid along sigma1 = sigma2,
  rho = 0, then Adam on all three).

PSNR and SSIM (:mod:`skimage.metrics`, ``data_range=1``, 7x7 window, mean over
channels) on the unclipped output against the HR crop, after removing a border of
``--shave`` pixels from both (default ``auto``: ``ceil(s)`` pixels), averaged over images;
seconds are the wall time per image of the method alone. Per-image results are cached
in a JSON file (``--cache``) so rows can be computed in separate runs.
"""

from __future__ import annotations

import argparse
import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from ._common import (
    Cache,
    ModelUnavailable,
    command_line,
    data_root,
    fmt_cell,
    from_batch,
    load_images,
    markdown_table,
    metrics,
    parse_floats,
    parse_rows,
    require_model,
    run_grid,
    seed,
    set_threads,
    task_kernels,
    timed,
    to_batch,
)

__all__ = ["NOISES", "ROWS", "SCALES", "SETS", "main", "make_pair", "run"]

PROG = "python -m benchmarks upsample"
SCALES = (1.5, 2.0, 3.0)
NOISES = (0.0, 0.05)
SETS = ("kodak24", "set12")
ROWS = ("pkn", "bicubic", "lanczos", "global")
DEFAULT_ROWS = ("pkn", "bicubic", "lanczos")
NOISE_FREE = 1e-3  # the noise std training gives the network for noise-free inputs


def _fraction(scale: float) -> Fraction:
    """The factor as an exact fraction of its decimal text (1.5 -> 3/2, 1.33 -> 133/100)."""
    return Fraction(str(float(scale)))


def exact_crop(img: np.ndarray, scale: float) -> np.ndarray:
    """Top-left crop of ``img`` whose height and width the factor maps to integers."""
    p = _fraction(scale).numerator
    H, W = img.shape[:2]
    if H < p or W < p:
        raise ValueError(f"image {H}x{W} is too small for factor {scale}.")
    return img[: H - H % p, : W - W % p]


def make_pair(img: np.ndarray, scale: float, noise: float, rng_seed: int):
    """``(hr, lr)`` numpy images (layout of ``img``) for ``scale`` and LR noise ``noise``."""
    import torch
    import torch.nn.functional as F

    hr = exact_crop(img, scale)
    H, W = hr.shape[:2]
    f = _fraction(scale)
    size = (H * f.denominator // f.numerator, W * f.denominator // f.numerator)
    with torch.no_grad():
        lr = F.interpolate(
            to_batch(hr), size=size, mode="bilinear", antialias=True, align_corners=False
        )
    if noise:
        rng = np.random.default_rng(rng_seed)
        lr = lr + float(noise) * torch.from_numpy(
            rng.standard_normal(tuple(lr.shape), dtype=np.float32)
        )
    return hr, from_batch(lr, img.ndim)


def bicubic(lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic upsampling with torch (``align_corners=False``) to ``size`` ``(H, W)``."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        y = F.interpolate(to_batch(lr), size=size, mode="bicubic", align_corners=False)
    return from_batch(y, lr.ndim)


def lanczos(lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow Lanczos upsampling of each channel as a float32 image to ``size`` ``(H, W)``."""
    from PIL import Image

    chans = lr[..., None] if lr.ndim == 2 else lr
    out = np.empty((*size, chans.shape[-1]), np.float32)
    for c in range(chans.shape[-1]):
        im = Image.fromarray(np.ascontiguousarray(chans[..., c], dtype=np.float32))
        out[..., c] = np.asarray(im.resize((size[1], size[0]), Image.Resampling.LANCZOS))
    return out[..., 0] if lr.ndim == 2 else out


def _shave(a: np.ndarray, b: int) -> np.ndarray:
    return a[b:-b, b:-b] if b > 0 else a


def run(
    rows=DEFAULT_ROWS,
    scales=SCALES,
    noises=NOISES,
    sets=SETS,
    *,
    data=None,
    n_images: int | None = None,
    kernel=None,
    model=None,
    cache=None,
    shave="auto",
    global_iters: int = 40,
    threads: int = 0,
    log=None,
) -> tuple[dict, dict]:
    """Compute the table.

    Returns
    -------
    (dict, dict)
        ``{set: {"x<s> n<noise>": {row: Cell}}}`` and a dict of notes.

    Raises
    ------
    ModelUnavailable
        When ``pkn`` is among the rows and the model cannot be loaded.
    """
    import torch

    from pkn import restore
    from pkn.oracle import global_optimum

    set_threads(threads)
    root = Path(data) if data else data_root()
    default = task_kernels("upsample")[0]
    kernel = kernel or default
    model = model or kernel
    notes: dict = {"data": str(root), "n_images": {}}
    tags = {"global": f"@iters{global_iters}" + ("" if kernel == default else f"@{kernel}")}
    if "pkn" in rows:
        info = require_model(model, kernel)
        tags["pkn"] = f"@{info['sha256'][:12]}"
        notes["model"] = f"{info['name']} (sha256 {info['sha256'][:12]})"
        warm = np.random.default_rng(0).random((16, 16), np.float32)
        restore(warm, "upsample", scale=2.0, noise=0.01, model=model)  # warm-up, not timed
    all_images = {name: load_images(root / name, n_images) for name in sets}
    conditions = [(f"x{s:g} n{n:g}", (float(s), float(n))) for s in scales for n in noises]

    def shave_px(s: float) -> int:
        return math.ceil(s) if shave == "auto" else int(shave)

    tables = {}
    for set_name, images in all_images.items():
        notes["n_images"][set_name] = len(images)

        def prepare(params, index, name, img, set_name=set_name):
            s, noise = params
            hr, lr = make_pair(img, s, noise, seed("upsample", set_name, name, s, noise))
            return {"hr": hr, "lr": lr, "scale": s, "noise": noise}

        def compute(row, ctx):
            hr, lr, s, noise = ctx["hr"], ctx["lr"], ctx["scale"], ctx["noise"]
            size = hr.shape[:2]
            extra = {}
            if row == "pkn":
                axis = -1 if lr.ndim == 3 else None
                r, dt = timed(
                    restore,
                    lr,
                    "upsample",
                    scale=s,
                    noise=noise if noise > 0 else NOISE_FREE,
                    channel_axis=axis,
                    model=model,
                )
                out = r.image
            elif row == "bicubic":
                out, dt = timed(bicubic, lr, size)
            elif row == "lanczos":
                out, dt = timed(lanczos, lr, size)
            elif row == "global":
                lb = to_batch(lr)
                nstd = torch.full((lb.shape[0], 1, 1, 1), max(noise, NOISE_FREE))
                res, dt = timed(
                    global_optimum,
                    kernel,
                    lb,
                    to_batch(hr),
                    nstd,
                    iters=global_iters,
                    size=tuple(size),
                )
                out = from_batch(res.output, hr.ndim)
                extra = {k: float(v.mean()) for k, v in res.maps.items()}
            else:
                raise ValueError(f"unknown row {row!r}")
            if out.shape != hr.shape:
                raise RuntimeError(f"{row} gave shape {out.shape}, expected {hr.shape}.")
            b = shave_px(s)
            return {**metrics(_shave(out, b), _shave(hr, b)), "seconds": dt, **extra}

        tables[set_name] = run_grid(
            Cache(cache),
            f"upsample|{set_name}|shave-{shave}",
            conditions,
            images,
            rows,
            prepare,
            compute,
            row_tag=lambda row: tags.get(row, ""),
            log=log,
        )
    return tables, notes


def markdown(tables: dict, rows, notes: dict, command: str, shave) -> str:
    """The results as a markdown table with the command line and protocol notes."""
    body = []
    for set_name, table in tables.items():
        for label, cells in table.items():
            scale, _, noise = label.rpartition(" n")
            body.append([set_name, scale[1:], noise, *(fmt_cell(cells[r]) for r in rows)])
    counts = ", ".join(f"{k} {v}" for k, v in notes["n_images"].items())
    border = "ceil(scale)" if shave == "auto" else str(shave)
    lines = [
        f"Command: `{command}`",
        "",
        f"Upsampling from an antialiased bilinear downscale (+ AWGN on the low-resolution "
        f"image), {notes['data']} ({counts} images): PSNR dB / SSIM (seconds per image) on "
        f"the high-resolution image with a border of {border} px removed, unclipped "
        "outputs, mean over images."
        + (f" PKN model: {notes['model']}." if "model" in notes else ""),
        "",
        markdown_table(["set", "scale", "noise", *rows], body),
    ]
    return "\n".join(lines)


def _shave_arg(text: str):
    if text == "auto":
        return "auto"
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError("--shave must be 'auto' or an integer >= 0")
    return v


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line; returns the exit status."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--rows",
        default=",".join(DEFAULT_ROWS),
        help=f"methods, from {', '.join(ROWS)} (default: %(default)s)",
    )
    p.add_argument(
        "--scales",
        default=",".join(f"{s:g}" for s in SCALES),
        help="upsampling factors (default: %(default)s)",
    )
    p.add_argument(
        "--noises",
        default=",".join(f"{n:g}" for n in NOISES),
        help="AWGN stds added to the low-resolution image (default: %(default)s)",
    )
    p.add_argument("--sets", default=",".join(SETS), help="subfolders of --data")
    p.add_argument("--data", default=None, help="folder holding the sets (default: $PKN_DATA)")
    p.add_argument("--images", type=int, default=None, help="first N images of each set")
    p.add_argument(
        "--kernel",
        default=None,
        choices=task_kernels("upsample"),
        help="upsampling kernel of the 'pkn' and 'global' rows (default: the first, %(choices)s)",
    )
    p.add_argument("--model", default=None, help="model name or .safetensors (default: kernel)")
    p.add_argument("--cache", default=None, help="JSON file caching per-image results")
    p.add_argument(
        "--shave", type=_shave_arg, default="auto", help="border px left out ('auto': ceil(s))"
    )
    p.add_argument("--global-iters", type=int, default=40, help="Adam steps of 'global'")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    a = p.parse_args(argv)
    rows = parse_rows(a.rows, ROWS)
    scales = parse_floats(a.scales)
    if not scales or min(scales) <= 0:
        p.error("--scales must be positive numbers")
    try:
        tables, notes = run(
            rows,
            scales,
            parse_floats(a.noises) or [0.0],
            [s.strip() for s in a.sets.split(",") if s.strip()],
            data=a.data,
            n_images=a.images,
            kernel=a.kernel,
            model=a.model,
            cache=a.cache,
            shave=a.shave,
            global_iters=a.global_iters,
            threads=a.threads,
        )
    except (ModelUnavailable, FileNotFoundError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(markdown(tables, rows, notes, command_line(PROG, argv), a.shave))
    return 0
