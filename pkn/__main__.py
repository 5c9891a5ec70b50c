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
    ("train",): ("pkn.training.cli:main", "train a PKN model (writes the model and its card)"),
    ("adapt",): ("pkn._adapt_cli:main", "adapt a denoising model to your images, no clean image"),
    ("restore",): ("pkn._batch:main", "restore TIFF/PNG files, folders and globs"),
}

# commands that left the installed library for the repository: word -> where they are now
MOVED: dict[str, str] = {
    "bench": "the benchmarks live in the repository: run 'python -m benchmarks <name>' "
    "from its root (see docs/benchmarks.md)",
    "ship": "releasing a model is repository tooling: run 'python scripts/ship.py' from "
    "the repository's root",
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
    if args[0] in MOVED:
        print(f"pkn: '{args[0]}' moved: {MOVED[args[0]]}.", file=sys.stderr)
        return 2
    valid = ", ".join(repr(" ".join(w)) for w in COMMANDS)
    given = " ".join(args[:2]) if args[0] in {w[0] for w in COMMANDS} else args[0]
    print(f"pkn: unknown command {given!r}. Valid commands: {valid}.", file=sys.stderr)
    print("Run 'python -m pkn --help' for descriptions.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
