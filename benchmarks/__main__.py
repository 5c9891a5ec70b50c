"""``python -m benchmarks <name> [options]``: run one benchmark (from the repository root)."""

from __future__ import annotations

import importlib
import sys

# name -> ("module:function", one-line description)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "kernels": (
        "benchmarks.kernels:main",
        "time every kernel against skimage NLM on a 12-megapixel image",
    ),
    "restore": (
        "benchmarks.restore_speed:main",
        "pkn.restore (network + filter) vs skimage NLM on a 12-megapixel image",
    ),
    "table1": (
        "benchmarks.denoise:main",
        "the paper's Table 1 on Kodak24: global optimum / network / oracle",
    ),
    "deblur": (
        "benchmarks.deblur:main",
        "non-blind deblurring on Kodak24: PKN / global / Richardson-Lucy / Wiener",
    ),
    "upsample": (
        "benchmarks.upsample:main",
        "upsampling x1.5/2/3 on Kodak24 and Set12: PKN / bicubic / Lanczos",
    ),
    "microscopy": (
        "benchmarks.microscopy:main",
        "real fluorescence noise (W2S, SRDTrans, bacteria16): PKN vs best Gaussian, "
        "GAT + BM3D, GAT + NLM and the kernel's oracles, affine-fit PSNR",
    ),
    "adapt": ("benchmarks.adapt:main", "pkn.adapt: blind-spot on W2S, n2n vs clean target, time"),
    "noise": ("benchmarks.noise:main", "noise calibration vs the truth: synthetic and real pairs"),
    "contention": ("benchmarks.contention:main", "pkn.restore solo vs 2 processes at once"),
    "correlated": (
        "benchmarks.correlated:main",
        "spatially correlated noise on Kodak24: white-noise vs correlation-aware models",
    ),
    "batch_memory": (
        "benchmarks.batch_memory:main",
        "peak RSS of python -m pkn restore on a big uint16 stack, OME-Zarr to OME-Zarr (lazy)",
    ),
    "memory": (
        "benchmarks.memory:main",
        "peak RSS of pkn.restore on 4k/8k images in memory and as dask/zarr; dask vs numpy",
    ),
}


def _usage() -> str:
    width = max(map(len, BENCHMARKS))
    lines = [
        "usage: python -m benchmarks <name> [options]   (from the repository root)",
        "",
        "Benchmarks of napari-pkn ('<name> --help' for their options). Data: --data DIR or "
        "$PKN_DATA (default ../shared/data).",
    ]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in BENCHMARKS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to a benchmark; return its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] not in BENCHMARKS:
        print(
            f"benchmarks: unknown benchmark {args[0]!r}. Valid: {', '.join(BENCHMARKS)}.",
            file=sys.stderr,
        )
        return 2
    module, _, func = BENCHMARKS[args[0]][0].partition(":")
    return int(getattr(importlib.import_module(module), func)(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
