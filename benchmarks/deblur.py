"""``python -m benchmarks deblur``: non-blind deblurring on Kodak24 against classical methods.

Protocol. Each Kodak24 image (``--data``, float in [0, 1]) is blurred by a true
convolution with mirrored borders (:func:`pkn.training.degrade.convolve`) with an
isotropic Gaussian PSF (``--blurs``, sigma in pixels, radius ``ceil(3 sigma)``) or one of
the 8 Levin et al. (2009) camera-shake kernels (``--levin``), then AWGN of std ``noise``
(``--noises``) is added i.i.d. per pixel and channel, seeded by (image, blur, noise),
unclipped. Every method knows the true PSF and noise std. Even-sized PSFs are padded to
odd size with a zero row/column at the end, so every method uses the same centre.

Rows (methods):

* ``pkn``: the polyblur PKN, ``pkn.restore(y, "deblur", blur=psf, noise=sigma,
  channel_axis=-1, model=--model)`` (channels as a batch of gray images);
* ``global``: the same polynomial filter with one best (b, c, d) per image, shared by
  its channels, fitted against the clean image
  (:func:`pkn.oracle.global_optimum` with ``blur=psf``; an upper bound for constant
  coefficients);
* ``rl``: :func:`skimage.restoration.richardson_lucy` with the true PSF, ``num_iter``
  ``--rl-iters`` (30), ``clip=False``, per channel on the image mirror-padded by the PSF
  size; Richardson-Lucy needs positive data, so a channel whose minimum is below 1e-3 is
  shifted up by ``1e-3 - min`` and shifted back afterwards;
* ``wiener``: :func:`skimage.restoration.wiener` with the true PSF, skimage's default
  Laplacian regulariser, ``clip=False`` and ``balance`` = the noise-to-signal variance
  ratio ``sigma^2 / max(var(y) - sigma^2, 1e-8)`` per channel (``--wiener-balance`` to
  fix a number), per channel on the image mirror-padded by the PSF size;
* ``blurred``: the degraded input itself.

**Measured PSF** (``--psf bead``, see :func:`run_psf`): the real bead PSF
(``psf/bead_psf_3d.tif``, 61x128x128 uint16, ~0.1 um voxels) is imported by
:func:`pkn.psf.import_psf` (in-focus plane, border-median offset subtracted, centred on
the peak, cropped where it exceeds 1% of the peak, sum 1) and used as is, in pixels (the
test images' pixel sizes are not known: this is the blur of a system sampled like the
bead). Gray clean images (``--datasets``: Set12, W2S clean frames, SRDTrans clean
frames, the first ``--images`` of each) are blurred with it and get Poisson-Gaussian
noise: ``Poisson(photons * b) / photons + N(0, read^2)`` for each ``--photons`` (the
photon count at value 1) and ``--read-noise``. Rows: ``pkn`` (given ``noise=(1 /
photons, read^2)``), ``global`` (as above), ``wiener-tuned`` (balance chosen per image
against the clean image among 25 values 1e-5..1, the strongest honest Wiener),
``wiener`` (balance = noise-to-signal ratio from the known noise model, no clean
image), ``rl-tuned`` (iterations chosen per image against the clean image among 5, 10,
20, 40, 80), ``rl`` (``--rl-iters``), ``blurred``. Seconds of the tuned rows are those
of the search (every candidate), with the time of the one chosen run in brackets of the
JSON cache (``seconds_best``).

PSNR and SSIM (:mod:`skimage.metrics`, ``data_range=1``, 7x7 window, mean over
channels) are computed on the unclipped RGB output against the clean image and averaged
over images; seconds are the wall time per image of the method alone. Per-image results
are cached in a JSON file (``--cache``) so rows can be computed in separate runs.
"""

from __future__ import annotations

import argparse
import sys
import zlib
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

__all__ = ["BLURS", "NOISES", "PSF_ROWS", "ROWS", "main", "run", "run_psf"]

PROG = "python -m benchmarks deblur"
BLURS = (1.0, 1.5, 2.0, 2.5)
NOISES = (0.01, 0.05)
ROWS = ("pkn", "global", "rl", "wiener", "blurred")
LEVIN_FILE = "psf/levin09_blur_kernels.npz"  # under the data root
BEAD_FILE = "psf/bead_psf_3d.tif"  # under the data root
PSF_ROWS = ("pkn", "global", "wiener-tuned", "wiener", "rl-tuned", "rl", "blurred")
PSF_DATASETS = {
    "set12": "set12",
    "w2s": "microscopy/w2s/clean",
    "srdtrans": "microscopy/srdtrans/clean",
}
PHOTONS = (1000.0, 100.0)
WIENER_GRID = tuple(float(b) for b in np.logspace(-5, 0, 25))
RL_GRID = (5, 10, 20, 40, 80)


def odd_psf(psf: np.ndarray) -> np.ndarray:
    """Normalise ``psf`` to sum 1 and pad even sizes to odd with zeros at the end.

    The centre ``(kh // 2, kw // 2)`` (polyblur's convention) becomes the unambiguous
    centre of the odd kernel, which every method (convolution, FFT, skimage) agrees on.
    """
    k = np.asarray(psf, np.float64)
    k = np.pad(k, ((0, 1 - k.shape[0] % 2), (0, 1 - k.shape[1] % 2)))
    return (k / k.sum()).astype(np.float32)


def blur_kernels(
    sigmas, levin: bool = False, levin_file: str | Path | None = None
) -> list[tuple[str, np.ndarray]]:
    """``(label, psf)`` pairs: ``g<sigma>`` Gaussians, then ``levin-k00``... if ``levin``."""
    from pkn.training.degrade import gaussian_psf

    out = [(f"g{s:g}", odd_psf(gaussian_psf(float(s)).numpy())) for s in sigmas]
    if levin:
        path = Path(levin_file) if levin_file else data_root() / LEVIN_FILE
        if not path.is_file():
            raise FileNotFoundError(f"Levin kernels not found at {path} (--levin-file).")
        z = np.load(path)
        out += [(f"levin-{k}", centred(odd_psf(z[k]))) for k in sorted(z.files)]
    return out


def centred(psf: np.ndarray) -> np.ndarray:
    """``psf`` zero-padded so that its centre of mass is within half a pixel of the centre
    pixel (camera-shake kernels such as Levin's are stored off centre; a deblurring method
    told an off-centre kernel shifts its output, and :func:`pkn.psf.check_psf` refuses
    one). The blur is the same up to that integer shift of the image."""
    h, w = psf.shape
    yy, xx = np.mgrid[:h, :w]
    m = psf.sum()
    dy = round(float((yy * psf).sum() / m) - h // 2)
    dx = round(float((xx * psf).sum() / m) - w // 2)
    out = np.zeros((h + 2 * abs(dy), w + 2 * abs(dx)), psf.dtype)
    y0, x0 = abs(dy) - dy, abs(dx) - dx
    out[y0 : y0 + h, x0 : x0 + w] = psf
    return out


def degrade(img: np.ndarray, psf: np.ndarray, noise: float, rng_seed: int):
    """Blur ``img`` (``(H, W[, C])``) with ``psf`` and add AWGN: ``(C, 1, H, W)`` tensor."""
    import torch

    from pkn.training.degrade import convolve

    x = to_batch(img)
    with torch.no_grad():
        b = convolve(x, torch.from_numpy(psf))
    rng = np.random.default_rng(rng_seed)
    n = rng.standard_normal(tuple(b.shape), dtype=np.float32)
    return b + float(noise) * torch.from_numpy(n)


def _pad(y: np.ndarray, psf: np.ndarray) -> tuple[np.ndarray, int]:
    p = max(psf.shape)
    return np.pad(y, p, mode="reflect"), p


def richardson_lucy(y: np.ndarray, psf: np.ndarray, num_iter: int = 30) -> np.ndarray:
    """Per-channel Richardson-Lucy as benchmarked (see the module docstring)."""
    from skimage.restoration import richardson_lucy as rl

    chans = y[..., None] if y.ndim == 2 else y
    out = np.empty_like(chans)
    for c in range(chans.shape[-1]):
        yp, p = _pad(chans[..., c].astype(np.float64), psf)
        shift = max(0.0, 1e-3 - float(yp.min()))
        d = rl(yp + shift, psf.astype(np.float64), num_iter=num_iter, clip=False) - shift
        out[..., c] = d[p:-p, p:-p]
    return out[..., 0] if y.ndim == 2 else out


def wiener(y: np.ndarray, psf: np.ndarray, noise: float, balance=None) -> np.ndarray:
    """Per-channel Wiener as benchmarked; ``balance`` None: the noise-to-signal ratio."""
    from skimage.restoration import wiener as skw

    chans = y[..., None] if y.ndim == 2 else y
    out = np.empty_like(chans)
    for c in range(chans.shape[-1]):
        ch = chans[..., c].astype(np.float64)
        bal = balance
        if bal is None:
            bal = noise**2 / max(float(ch.var()) - noise**2, 1e-8)
        yp, p = _pad(ch, psf)
        out[..., c] = skw(yp, psf.astype(np.float64), bal, clip=False)[p:-p, p:-p]
    return out[..., 0] if y.ndim == 2 else out


def _pkn_row(model, kernel: str, tags: dict, notes: dict, blur, warm_side: int) -> None:
    """Load the PKN row's model (a clear error if missing), tag its cache keys and notes
    with its hash, and warm it up on a small image (so its first timing is not a load)."""
    from pkn import restore

    info = require_model(model, kernel)
    tags["pkn"] = f"@{info['sha256'][:12]}"
    notes["model"] = f"{info['name']} (sha256 {info['sha256'][:12]})"
    warm = np.random.default_rng(0).random((warm_side, warm_side), np.float32)
    restore(warm, "deblur", blur=blur, noise=0.01, model=model)


def run(
    rows=ROWS,
    blurs=BLURS,
    noises=NOISES,
    *,
    levin: bool = False,
    levin_file=None,
    data=None,
    n_images: int | None = None,
    kernel=None,
    model=None,
    cache=None,
    rl_iters: int = 30,
    wiener_balance=None,
    global_iters: int = 40,
    threads: int = 0,
    log=None,
) -> tuple[dict, dict]:
    """Compute the table.

    Returns
    -------
    (dict, dict)
        ``{"<blur> n<noise>": {row: Cell}}`` and a dict of notes (model hash, counts).

    Raises
    ------
    ModelUnavailable
        When ``pkn`` is among the rows and the model cannot be loaded.
    """
    import torch

    from pkn import restore
    from pkn.oracle import global_optimum

    set_threads(threads)
    data = Path(data) if data else data_root() / "kodak24"
    images = load_images(data, n_images)
    kernels = blur_kernels(blurs, levin, levin_file)
    default = task_kernels("deblur")[0]
    kernel = kernel or default
    model = model or kernel
    notes = {"data": str(data), "n_images": len(images)}
    tags = {
        "global": f"@iters{global_iters}" + ("" if kernel == default else f"@{kernel}"),
        "rl": f"@iters{rl_iters}",
        "wiener": "" if wiener_balance is None else f"@balance{wiener_balance:g}",
    }
    if "pkn" in rows:
        _pkn_row(model, kernel, tags, notes, kernels[0][1] if kernels else 1.0, 32)
    conditions = [
        (f"{label} n{noise:g}", (label, psf, float(noise)))
        for label, psf in kernels
        for noise in noises
    ]

    def prepare(params, index, name, img):
        label, psf, noise = params
        yb = degrade(img, psf, noise, seed("deblur", name, label, noise))
        return {"yb": yb, "y": from_batch(yb, img.ndim), "clean": img, "psf": psf, "noise": noise}

    def compute(row, ctx):
        y, psf, noise, clean = ctx["y"], ctx["psf"], ctx["noise"], ctx["clean"]
        extra = {}
        if row == "pkn":
            axis = -1 if y.ndim == 3 else None
            r, dt = timed(
                restore, y, "deblur", blur=psf, noise=noise, channel_axis=axis, model=model
            )
            out = r.image
        elif row == "global":
            yb = ctx["yb"]
            s = torch.full((yb.shape[0], 1, 1, 1), noise)
            res, dt = timed(
                global_optimum,
                kernel,
                yb,
                to_batch(clean),
                s,
                iters=global_iters,
                blur=torch.from_numpy(psf),
            )
            out = from_batch(res.output, clean.ndim)
            extra = {k: float(v.mean()) for k, v in res.maps.items()}
        elif row == "rl":
            out, dt = timed(richardson_lucy, y, psf, rl_iters)
        elif row == "wiener":
            out, dt = timed(wiener, y, psf, noise, wiener_balance)
        elif row == "blurred":
            out, dt = y, 0.0
        else:
            raise ValueError(f"unknown row {row!r}")
        return {**metrics(out, clean), "seconds": dt, **extra}

    table = run_grid(
        Cache(cache),
        f"deblur|{data.name}",
        conditions,
        images,
        rows,
        prepare,
        compute,
        row_tag=lambda row: tags.get(row, ""),
        log=log,
    )
    return table, notes


# --------------------------------------------------------------------------- measured PSF
def bead_psf(path: str | Path | None = None):
    """The bead PSF imported by :func:`pkn.psf.import_psf` (a :class:`pkn.psf.PSF`)."""
    import tifffile

    from pkn.psf import check_psf, import_psf

    path = Path(path) if path else data_root() / BEAD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"bead PSF not found at {path} (--psf-file).")
    psf = import_psf(tifffile.imread(path))
    check_psf(psf.array)
    return psf


def degrade_pg(img: np.ndarray, psf: np.ndarray, photons: float, read: float, rng_seed: int):
    """Blur a gray ``img`` with ``psf``, then Poisson (``photons`` at 1) + Gaussian noise."""
    import torch

    from pkn.training.degrade import convolve

    with torch.no_grad():
        b = from_batch(convolve(to_batch(img), torch.from_numpy(psf)), 2).astype(np.float64)
    rng = np.random.default_rng(rng_seed)
    y = rng.poisson(np.clip(b, 0, None) * photons) / photons
    y = y + read * rng.standard_normal(b.shape)
    return y.astype(np.float32)


def wiener_tuned(y, psf, clean, grid=WIENER_GRID):
    """Wiener with the balance of ``grid`` that gives the best PSNR against ``clean``."""
    best = None
    for bal in grid:
        out = wiener(y, psf, 0.0, bal)
        m = metrics(out, clean)
        if best is None or m["psnr"] > best[1]["psnr"]:
            best = (out, m, bal)
    return best[0], {"balance": best[2]}


def rl_tuned(y, psf, clean, grid=RL_GRID):
    """Richardson-Lucy with the iteration count of ``grid`` best against ``clean``."""
    best = None
    for it in grid:
        out = richardson_lucy(y, psf, it)
        m = metrics(out, clean)
        if best is None or m["psnr"] > best[1]["psnr"]:
            best = (out, m, it)
    return best[0], {"iterations": best[2]}


def run_psf(
    rows=PSF_ROWS,
    photons=PHOTONS,
    *,
    read_noise: float = 0.005,
    datasets=tuple(PSF_DATASETS),
    n_images: int | None = 4,
    psf_file=None,
    model=None,
    cache=None,
    rl_iters: int = 30,
    global_iters: int = 40,
    threads: int = 0,
    log=None,
) -> tuple[dict, dict]:
    """The measured-PSF table (``--psf bead``): ``{"<dataset> p<photons>": {row: Cell}}``.

    Raises
    ------
    ModelUnavailable
        When ``pkn`` is among the rows and the model cannot be loaded.
    FileNotFoundError
        When the bead PSF or a data set is missing.
    """
    import torch

    from pkn import restore
    from pkn.oracle import global_optimum

    set_threads(threads)
    psf_obj = bead_psf(psf_file)
    psf = psf_obj.array
    kernel = task_kernels("deblur")[0]
    model = model or kernel
    notes = {
        "psf": f"{psf.shape[0]}x{psf.shape[1]} from plane {psf_obj.plane}, background "
        f"{psf_obj.background:g}, peak shifted by {psf_obj.shift}",
        "read_noise": read_noise,
    }
    tags = {
        "global": f"@iters{global_iters}",
        "rl": f"@iters{rl_iters}",
        "pkn": "",
        "psf": f"|psf{zlib.crc32(psf.tobytes()):08x}|r{read_noise:g}",
    }
    if "pkn" in rows:
        _pkn_row(model, kernel, tags, notes, psf, 64)
    table: dict = {}
    for ds in datasets:
        if ds not in PSF_DATASETS:
            raise FileNotFoundError(f"unknown data set {ds!r}; choose from {list(PSF_DATASETS)}.")
        images = [
            (name, img if img.ndim == 2 else img.mean(-1))
            for name, img in load_images(data_root() / PSF_DATASETS[ds], n_images)
        ]
        notes[ds] = len(images)
        conditions = [(f"{ds} p{ph:g}", float(ph)) for ph in photons]

        def prepare(ph, index, name, img):
            y = degrade_pg(img, psf, ph, read_noise, seed("deblur-psf", name, ph, read_noise))
            return {"y": y, "clean": img, "noise": (1.0 / ph, read_noise**2)}

        def compute(row, ctx):
            y, clean, (a, b) = ctx["y"], ctx["clean"], ctx["noise"]
            extra = {}
            if row == "pkn":
                r, dt = timed(restore, y, "deblur", blur=psf, noise=(a, b), model=model)
                out = r.image
            elif row == "global":
                var = float(a * max(float(y.mean()), 0.0) + b)
                res, dt = timed(
                    global_optimum,
                    kernel,
                    to_batch(y),
                    to_batch(clean),
                    torch.full((1, 1, 1, 1), var**0.5),
                    iters=global_iters,
                    blur=torch.from_numpy(psf),
                )
                out = from_batch(res.output, 2)
                extra = {k: float(v.mean()) for k, v in res.maps.items()}
            elif row == "wiener-tuned":
                (out, extra), dt = timed(wiener_tuned, y, psf, clean)
            elif row == "wiener":
                var = float(a * max(float(y.mean()), 0.0) + b)
                out, dt = timed(wiener, y, psf, var**0.5)
            elif row == "rl-tuned":
                (out, extra), dt = timed(rl_tuned, y, psf, clean)
            elif row == "rl":
                out, dt = timed(richardson_lucy, y, psf, rl_iters)
            elif row == "blurred":
                out, dt = y, 0.0
            else:
                raise ValueError(f"unknown row {row!r}")
            return {**metrics(out, clean), "seconds": dt, **extra}

        table.update(
            run_grid(
                Cache(cache),
                f"deblur-psf{tags['psf']}|{ds}",
                conditions,
                images,
                rows,
                prepare,
                compute,
                row_tag=lambda row: tags.get(row, ""),
                log=log,
            )
        )
    return table, notes


def markdown_psf(table: dict, rows, notes: dict, command: str) -> str:
    """The measured-PSF results as a markdown table with the command line."""
    body = []
    for label, cells in table.items():
        ds, _, ph = label.rpartition(" p")
        best = max(cells[r].psnr for r in rows if r != "blurred")
        row_cells = []
        for r in rows:
            text = fmt_cell(cells[r])
            if r != "blurred" and cells[r].psnr == best:
                text = f"**{text}**"
            row_cells.append(text)
        body.append([f"{ds} ({notes[ds]})", ph, *row_cells])
    sets = ", ".join(f"{k}: {v}" for k, v in notes.items() if isinstance(v, int))
    lines = [
        f"Command: `{command}`",
        "",
        f"Non-blind deblurring with the measured bead PSF ({notes['psf']}; "
        f"pkn.psf.import_psf), gray images ({sets}), Poisson noise at the given photon "
        f"count for value 1 plus Gaussian read noise {notes['read_noise']:g}: PSNR dB / "
        "SSIM (seconds per image), unclipped outputs, mean over images; best PSNR in bold."
        + (f" PKN model: {notes['model']}." if "model" in notes else ""),
        "",
        markdown_table(["data (images)", "photons", *rows], body),
    ]
    return "\n".join(lines)


def markdown(table: dict, rows, notes: dict, command: str, settings: str) -> str:
    """The results as a markdown table with the command line and protocol notes."""
    body = []
    for label, cells in table.items():
        blur, _, noise = label.rpartition(" n")
        blur = f"Gaussian {blur[1:]} px" if blur.startswith("g") else blur.replace("-", " ")
        body.append([blur, noise, *(fmt_cell(cells[r]) for r in rows)])
    lines = [
        f"Command: `{command}`",
        "",
        f"Non-blind deblurring, {notes['data']} ({notes['n_images']} images, RGB, channels "
        "as a batch): PSNR dB / SSIM (seconds per image), unclipped outputs, mean over "
        f"images. {settings}" + (f" PKN model: {notes['model']}." if "model" in notes else ""),
        "",
        markdown_table(["blur", "noise", *rows], body),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line; returns the exit status."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help="methods (default: %(default)s)")
    p.add_argument(
        "--blurs",
        default=",".join(f"{b:g}" for b in BLURS),
        help="Gaussian blur sigmas in px ('none' for no Gaussian; default: %(default)s)",
    )
    p.add_argument("--levin", action="store_true", help="add the 8 Levin et al. 2009 kernels")
    p.add_argument("--levin-file", default=None, help=f"default: $PKN_DATA/{LEVIN_FILE}")
    p.add_argument(
        "--noises",
        default=",".join(f"{n:g}" for n in NOISES),
        help="AWGN stds added after the blur (default: %(default)s)",
    )
    p.add_argument("--data", default=None, help="image folder (default: $PKN_DATA/kodak24)")
    p.add_argument("--images", type=int, default=None, help="first N images only")
    p.add_argument(
        "--kernel",
        default=None,
        choices=task_kernels("deblur"),
        help="deblurring kernel of the 'pkn' and 'global' rows (default: the first, %(choices)s)",
    )
    p.add_argument("--model", default=None, help="model name or .safetensors (default: kernel)")
    p.add_argument("--cache", default=None, help="JSON file caching per-image results")
    p.add_argument("--rl-iters", type=int, default=30, help="Richardson-Lucy iterations")
    p.add_argument(
        "--wiener-balance", type=float, default=None, help="fixed balance (default: NSR)"
    )
    p.add_argument("--global-iters", type=int, default=40, help="Adam steps of 'global'")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument(
        "--psf",
        choices=("bead",),
        default=None,
        help="measured-PSF table instead: the bead PSF (pkn.psf.import_psf) on gray images",
    )
    p.add_argument("--psf-file", default=None, help=f"default: $PKN_DATA/{BEAD_FILE}")
    p.add_argument(
        "--datasets",
        default=",".join(PSF_DATASETS),
        help="--psf only: data sets (default: %(default)s)",
    )
    p.add_argument(
        "--photons",
        default=",".join(f"{x:g}" for x in PHOTONS),
        help="--psf only: photons at value 1 (Poisson noise; default: %(default)s)",
    )
    p.add_argument(
        "--read-noise", type=float, default=0.005, help="--psf only: Gaussian read noise std"
    )
    a = p.parse_args(argv)
    if a.psf:
        rows = parse_rows(a.rows if a.rows != ",".join(ROWS) else ",".join(PSF_ROWS), PSF_ROWS)
        try:
            table, notes = run_psf(
                rows,
                parse_floats(a.photons),
                read_noise=a.read_noise,
                datasets=[d.strip() for d in a.datasets.split(",") if d.strip()],
                n_images=a.images if a.images is not None else 4,
                psf_file=a.psf_file,
                model=a.model,
                cache=a.cache,
                rl_iters=a.rl_iters,
                global_iters=a.global_iters,
                threads=a.threads,
            )
        except (ModelUnavailable, FileNotFoundError) as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return 2
        print(markdown_psf(table, rows, notes, command_line(PROG, argv)))
        return 0
    rows = parse_rows(a.rows, ROWS)
    try:
        table, notes = run(
            rows,
            parse_floats(a.blurs),
            parse_floats(a.noises),
            levin=a.levin,
            levin_file=a.levin_file,
            data=a.data,
            n_images=a.images,
            kernel=a.kernel,
            model=a.model,
            cache=a.cache,
            rl_iters=a.rl_iters,
            wiener_balance=a.wiener_balance,
            global_iters=a.global_iters,
            threads=a.threads,
        )
    except (ModelUnavailable, FileNotFoundError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    bal = "NSR per channel" if a.wiener_balance is None else f"{a.wiener_balance:g}"
    settings = (
        f"rl: {a.rl_iters} iterations; wiener: Laplacian regulariser, balance {bal}; "
        f"global: {a.global_iters} Adam steps."
    )
    print(markdown(table, rows, notes, command_line(PROG, argv), settings))
    return 0
