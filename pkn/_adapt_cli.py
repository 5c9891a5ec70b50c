"""``python -m pkn adapt``: adapt a denoising model to your images (no clean image)."""

from __future__ import annotations

import argparse
import math
import shlex
import sys

__all__ = ["main", "parser"]

PROG = "python -m pkn adapt"


def _noise(text: str):
    if text == "auto":
        return None
    bad = argparse.ArgumentTypeError(
        f"noise must be 'auto', a sigma >= 0 or A,B (Poisson-Gaussian, A >= 0, both "
        f"finite), got {text!r}"
    )
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        raise bad from None
    if len(parts) > 2 or not all(math.isfinite(v) for v in parts) or parts[0] < 0:
        raise bad
    return parts[0] if len(parts) == 1 else tuple(parts)


def _int(name: str, low: int, even: bool = False):
    """argparse type: an integer >= ``low`` (and even)."""
    accepted = f"an {'even ' if even else ''}integer >= {low}"

    def convert(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < low or (even and v % 2):
            raise argparse.ArgumentTypeError(f"{name} must be {accepted}, got {text!r}")
        return v

    return convert


def _lr(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"lr must be a finite number > 0, got {text!r}")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Fine-tune a shipped denoising model on your own noisy images, without "
        "a clean image: Noise2Noise on repeated captures of the same field, or a blind-spot "
        "(Noise2Self) loss on single images. Writes MODEL.safetensors and its model card "
        "MODEL.md next to it; use it with pkn.restore(image, model='MODEL.safetensors').",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="gray images (TIFF, PNG, ...)")
    p.add_argument("--out", required=True, metavar="MODEL.safetensors", help="the model file")
    p.add_argument("--kernel", default="nlm", help="denoising kernel (default nlm)")
    p.add_argument(
        "--mode",
        default="auto",
        choices=["auto", "n2n", "blindspot", "r2r"],
        help="n2n: repeated captures of one field; blindspot: single images; auto "
        "(default): n2n for several images of the same shape, blindspot for one",
    )
    p.add_argument(
        "--axis",
        type=int,
        default=None,
        help="frame axis of 3-D stacks (time, z or repeated captures)",
    )
    p.add_argument("--model", default=None, help="model to start from (default: the shipped)")
    p.add_argument(
        "--noise",
        type=_noise,
        default=None,
        metavar="auto|SIGMA|A,B",
        help="noise as for pkn.restore (default: estimated from each image)",
    )
    p.add_argument("--steps", type=_int("steps", 1), default=300)
    p.add_argument("--batch", type=_int("batch", 1), default=4)
    p.add_argument(
        "--crop",
        type=_int("crop", 16, even=True),
        default=None,
        help="crop side (even; default 128)",
    )
    p.add_argument("--lr", type=_lr, default=3e-4)
    p.add_argument(
        "--blind-spot",
        type=_int("blind_spot", 0),
        default=None,
        metavar="R",
        help="blind-spot radius in px (default: the noise's correlation length)",
    )
    p.add_argument("--seed", type=_int("seed", 0), default=0)
    p.add_argument(
        "--threads", type=_int("threads", 1), default=1, help="torch threads (default 1)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m pkn adapt`` with ``argv``; return the exit status (2 for bad options
    or input, 130 when cancelled, 1 for an unexpected error: one line, ``PKN_DEBUG=1`` for
    the traceback)."""
    from .__main__ import guarded

    return guarded(PROG, lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    import pkn.adapt as adapt_module

    bar = None
    if not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.steps, desc="adapt", dynamic_ncols=True, file=sys.stderr)

    def progress(step, total, loss):
        if bar is not None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.4g}")

    try:
        model = adapt_module.adapt(
            args.images,
            kernel=args.kernel,
            mode=args.mode,
            axis=args.axis,
            model=args.model,
            noise=args.noise,
            steps=args.steps,
            batch=args.batch,
            crop=args.crop,
            lr=args.lr,
            blind_spot=args.blind_spot,
            seed=args.seed,
            threads=args.threads,
            progress=progress,
        )
        out = adapt_module.save(model, args.out, command=shlex.join([*PROG.split(), *argv]))
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: cancelled; nothing written.", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    a = model.adaptation
    print(
        f"adapted {a['base_model']['name']} ({a['mode']}, {a['steps_done']} steps, "
        f"{a['seconds']:.1f} s) -> {out}\nmodel card: {out.with_suffix('.md')}"
    )
    return 0
