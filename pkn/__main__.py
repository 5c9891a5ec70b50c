"""Command line of napari-pkn: ``python -m pkn <command> ...`` (console script ``pkn``).

Every command is a ``main(argv: list[str] | None) -> int`` function, imported only when
it is run, so ``python -m pkn --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import importlib
import sys

# command words -> ("module:function", one-line description). Add a command in one line.
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("demo",): ("pkn.demo:main", "denoise a bundled sample headless; results go to out/"),
    ("train",): ("pkn.training.cli:main", "train a PKN model"),
    ("bench", "kernels"): (
        "pkn.benchmarks.kernels:main",
        "time every kernel against skimage NLM on a 12-megapixel image",
    ),
    ("ship",): ("pkn.training.card:main", "copy a trained model to resources/ with its card"),
    ("bench", "deblur"): (
        "pkn.benchmarks.deblur:main",
        "non-blind deblurring on Kodak24: PKN / global / Richardson-Lucy / Wiener",
    ),
    ("bench", "upsample"): (
        "pkn.benchmarks.upsample:main",
        "upsampling x1.5/2/3 on Kodak24 and Set12: PKN / bicubic / Lanczos",
    ),
    ("bench", "microscopy"): (
        "pkn.benchmarks.microscopy:main",
        "real fluorescence noise (W2S, SRDTrans): PKN vs skimage NLM, affine-fit PSNR",
    ),
    ("bench", "restore"): (
        "pkn.benchmarks.restore_speed:main",
        "pkn.restore (network + NLM) vs skimage NLM on a 12-megapixel image",
    ),
    ("bench", "table1"): (
        "pkn.benchmarks.denoise:main",
        "the paper's Table 1 on Kodak24: global optimum / network / oracle",
    ),
}


def _usage() -> str:
    width = max(len(" ".join(words)) for words in COMMANDS)
    lines = [
        "usage: python -m pkn <command> [options]   (or: pkn <command> [options])",
        "",
        "Procedural Kernel Networks. Commands (use '<command> --help' for their options):",
    ]
    lines += [f"  {' '.join(w):<{width}}  {desc}" for w, (_, desc) in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help  show this message", "  --version   print the version"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to a command; return its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from pkn import __version__

        print(f"pkn {__version__}")
        return 0
    # the longest command path that prefixes the arguments wins
    for words in sorted(COMMANDS, key=len, reverse=True):
        if tuple(args[: len(words)]) == words:
            module, _, func = COMMANDS[words][0].partition(":")
            return int(getattr(importlib.import_module(module), func)(args[len(words) :]) or 0)
    valid = ", ".join(repr(" ".join(w)) for w in COMMANDS)
    given = " ".join(args[:2]) if args[0] in {w[0] for w in COMMANDS} else args[0]
    print(f"pkn: unknown command {given!r}. Valid commands: {valid}.", file=sys.stderr)
    print("Run 'python -m pkn --help' for descriptions.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
