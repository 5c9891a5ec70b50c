"""``python -m pkn demo``: the headless main job.

Denoises a bundled sample with the shipped NLM model trained for its kind of image
(``nlm-fluo`` for the fluorescence sample, ``nlm`` for the photograph), writes the result, the noisy
input and the parameter map (float32 TIFF for analysis, PNG for a quick look) and prints
the PSNR before/after against the clean reference and the provenance.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_MODELS", "main"]

#: The model each sample is restored with when neither --kernel nor --model is given.
SAMPLE_MODELS = {"fluorescence": "nlm-fluo", "natural": "nlm"}


def _png(path: Path, a: np.ndarray, lo: float, hi: float, cmap: str | None = None) -> None:
    from skimage import io

    u = np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    if cmap == "magma":
        # small built-in ramp so no plotting library is needed
        stops = np.array(
            [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]]
        )
        t = u * (len(stops) - 1)
        i = np.minimum(t.astype(int), len(stops) - 2)
        f = (t - i)[..., None]
        rgb = stops[i] * (1 - f) + stops[i + 1] * f
        io.imsave(path, rgb.astype(np.uint8), check_contrast=False)
    else:
        io.imsave(path, (u * 255).round().astype(np.uint8), check_contrast=False)


def _strength(text: str) -> float:
    """argparse type of ``--strength``: a finite number >= 0."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(
            f"strength must be a finite number >= 0 (1 = as trained, 0 = identity), got {text!r}"
        )
    return v


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m pkn demo`` with ``argv``; return the exit status (2 for bad options
    or input, 1 for an unexpected error: one line, ``PKN_DEBUG=1`` for the traceback)."""
    from .__main__ import guarded

    return guarded("python -m pkn demo", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(prog="python -m pkn demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--sample", choices=["fluorescence", "natural"], default="fluorescence")
    from .models.procedural import network_kernels

    p.add_argument("--kernel", default=None, choices=network_kernels("denoise"))
    p.add_argument(
        "--model",
        default=None,
        help="a shipped denoising model or .safetensors file, e.g. nlm-fluo for fluorescence "
        "(its kernel is used; default: the kernel's shipped model, or with no --kernel "
        "the sample's: nlm-fluo for fluorescence, nlm for natural)",
    )
    p.add_argument("--strength", type=_strength, default=1.0, help="1 = as trained, 0 = identity")
    p.add_argument("--out", default="out", help="output folder (default ./out)")
    a = p.parse_args(argv)
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        p.error(f"argument --out: {str(out)!r} exists and is not a folder")

    import tifffile

    from . import samples
    from .models.io import load_model
    from .restoration import _kernel_model, _task_kernel, restore

    if a.kernel is None and a.model is None:
        a.model = SAMPLE_MODELS[a.sample]
    try:  # the kernel follows the model; a model of another kernel or task: one line
        kernel, _ = _task_kernel("denoise", a.kernel, a.model)
        if a.model is not None:
            _kernel_model(a.model, kernel, load_model)
    except (ValueError, OSError) as e:
        p.error(f"argument --model: {str(e).splitlines()[0]}")
    noisy, clean = getattr(samples, a.sample)()
    r = restore(noisy, "denoise", kernel=kernel, model=a.model, strength=a.strength)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{a.sample}_{Path(a.model).stem if a.model else kernel}"
    tifffile.imwrite(out / f"{stem}_restored.tif", r.image)
    lo, hi = np.percentile(noisy, [0.5, 99.5])
    _png(out / f"{a.sample}_noisy.png", noisy, lo, hi)
    _png(out / f"{stem}_restored.png", r.image, lo, hi)
    for name, m in r.maps.items():
        tifffile.imwrite(out / f"{stem}_{name}.tif", m, metadata={"map_scale": r.map_scale})
        _png(out / f"{stem}_{name}.png", m, float(m.min()), float(m.max()), cmap="magma")
    (out / f"{stem}_info.json").write_text(json.dumps(r.info, indent=2, default=str))
    from .metrics import affine_metrics  # PSNR after clean ~ alpha * y + beta

    before = affine_metrics(noisy, clean)["psnr"]
    after = affine_metrics(r.image, clean)["psnr"]
    print(
        f"sample {a.sample}: PSNR vs clean reference (after affine fit) "
        f"{before:.2f} dB -> {after:.2f} dB with {kernel} (model {r.info['model']}, "
        f"{r.info['n_parameters']} parameters)"
    )
    noise = {k: v for k, v in r.info["noise"].items() if k != "correlation"}  # 5x5 each
    print(f"noise used: {noise} (full record in the info JSON)")
    for name, m in r.maps.items():
        print(
            f"map {name}: {m.shape[-2]}x{m.shape[-1]} (x{r.map_scale:g}), "
            f"range {m.min():.4g} .. {m.max():.4g}"
        )
    print(f"wrote {out}/{stem}_restored.tif/.png, the parameter maps and {stem}_info.json")
    return 0
