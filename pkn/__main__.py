"""Command line of napari-pkn: ``python -m pkn <command> ...`` (console script ``pkn``).

Every command is a ``main(argv: list[str] | None) -> int`` function, imported only when
it is run, so ``python -m pkn --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable

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


DEBUG_ENV = "PKN_DEBUG"  # set to 1 for the traceback of an unexpected error


def _one_line(e: BaseException, limit: int = 600) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def guarded(prog: str, run: Callable[[], int | None]) -> int:
    """Run a command's body and turn its exceptions into one line on stderr and a status.

    ``ValueError``/``TypeError``/``FileNotFoundError`` are bad input (the library's
    messages name the argument, the value and what is accepted): ``prog: error: ...``,
    status 2. ``KeyboardInterrupt``: status 130. Anything else is unexpected: one line with
    its type and a hint to set ``PKN_DEBUG=1``, status 1. With ``PKN_DEBUG=1`` exceptions
    propagate (full traceback). ``SystemExit`` (argparse) passes through.

    Examples
    --------
    >>> guarded("pkn demo", lambda: 0)
    0
    """
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return int(run() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: cancelled.", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError) as e:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if debug:
            raise
        print(
            f"{prog}: unexpected error: {type(e).__name__}: {_one_line(e)} "
            f"(set {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def _run(module: str, func: str, argv: list[str]) -> int:
    return getattr(importlib.import_module(module), func)(argv)


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
            run = functools.partial(_run, module, func, args[len(words) :])
            return guarded("pkn " + " ".join(words), run)
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
