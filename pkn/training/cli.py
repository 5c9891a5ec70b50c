"""``python -m pkn train``: train a PKN model from the command line."""

from __future__ import annotations

import argparse
import json

from ..models.procedural import get_spec, network_kernels
from .data import DATA_ENV, TRAIN_SUBDIR, training_dir
from .degrade import LEVIN_FILE, levin_path
from .loop import TrainConfig, train

__all__ = ["main"]


def _pair(text: str) -> tuple[float, float]:
    parts = [float(v) for v in text.replace(":", ",").split(",")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] > parts[1]:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with LOW <= HIGH, got {text!r}")
    return parts[0], parts[1]


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m pkn train",
        description="Train a Procedural Kernel Network on clean images with synthetic "
        "degradations. Never train on Kodak24: it is the benchmarks' test set. Writes "
        "OUT/KERNEL.safetensors and its model card OUT/KERNEL.md.",
    )
    p.add_argument(
        "--kernel",
        default=d.kernel,
        choices=network_kernels(),
    )
    p.add_argument("--out", default=None, help="run folder (default runs/KERNEL)")
    p.add_argument(
        "--data",
        default="",
        metavar="DIR",
        help=f"folder of clean training images (default: ${DATA_ENV}/{TRAIN_SUBDIR}, "
        f"where the environment variable {DATA_ENV} names the data root)",
    )
    p.add_argument("--iters", type=int, default=d.iters)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--crop", type=int, default=d.crop)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--clip", type=float, default=d.clip, help="gradient-norm clip (0: off)")
    p.add_argument("--loss", default=d.loss, choices=["l2", "l1", "ssim", "msssim"])
    p.add_argument("--noise", default=d.noise, choices=["awgn", "poisson-gaussian", "mixed"])
    p.add_argument(
        "--sigma",
        type=_pair,
        default=d.sigma,
        help="AWGN sigma range LOW,HIGH (default 0.05,0.1 as in the paper)",
    )
    p.add_argument("--pg-a", type=_pair, default=d.pg_a, help="Poisson gain range")
    p.add_argument("--pg-b", type=_pair, default=d.pg_b, help="Gaussian variance range")
    p.add_argument("--blur", type=_pair, default=d.blur, help="Gaussian blur sigma range (px)")
    p.add_argument(
        "--levin",
        type=float,
        default=d.levin,
        help="probability of a Levin camera-shake kernel instead of a Gaussian",
    )
    p.add_argument(
        "--levin-file",
        default="",
        metavar="FILE",
        help=f"the Levin kernels (.npz; default: ${DATA_ENV}/{LEVIN_FILE})",
    )
    p.add_argument("--scales", type=_floats, default=d.scales, help="upsampling factors")
    p.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")), default=d.widths)
    p.add_argument(
        "--no-noise-weighting",
        dest="noise_weighted",
        action="store_false",
        help="plain loss average (default: each sample's loss / its noise level)",
    )
    p.add_argument(
        "--noise-power",
        type=float,
        default=d.noise_power,
        help="noise weighting: divide each sample's loss by its noise std to this power "
        "(default 0: the loss's own, l2: 2 = 1/variance, l1: 1)",
    )
    p.add_argument(
        "--guided",
        action="store_true",
        help="denoising: the network also sees the mean of the noisy channels",
    )
    p.add_argument(
        "--p-gray",
        type=float,
        default=d.p_gray,
        help="guided: fraction of samples trained as gray images",
    )
    p.add_argument(
        "--options",
        type=json.loads,
        default={},
        help="kernel options as JSON, e.g. '{\"patch_size\": 3}'",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--val-every", type=int, default=d.val_every)
    p.add_argument(
        "--val-crop", type=int, default=d.val_crop, help="side of the validation centre crops"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:  # missing data: a clear message now, not a traceback after the model is built
        training_dir(args.data)
        if args.levin > 0 and get_spec(args.kernel).task == "deblur":
            levin_path(args.levin_file)
    except FileNotFoundError as e:
        p.error(str(e))
    kw = vars(args).copy()
    quiet = kw.pop("quiet")
    kw["pg_a"], kw["pg_b"] = kw.pop("pg_a"), kw.pop("pg_b")
    kw["val_every"] = kw.pop("val_every")
    kw["p_gray"] = kw.pop("p_gray")
    kw["levin_file"] = kw.pop("levin_file")
    kw["val_crop"] = kw.pop("val_crop")
    kw["out"] = kw["out"] or f"runs/{args.kernel}"
    import shlex
    import sys

    words = sys.argv[1:] if argv is None else ["train", *argv]
    if argv is None and words[:1] != ["train"]:
        words = ["train", *words]
    kw["command"] = "python -m pkn " + shlex.join(words)
    cfg = TrainConfig(**kw)
    summary = train(cfg, progress=not quiet)
    print(
        f"validation PSNR {summary['val_psnr']:.2f} dB, {summary['n_parameters']} parameters, "
        f"model written to {cfg.out}/{cfg.kernel}.safetensors, its card to "
        f"{cfg.out}/{cfg.kernel}.md"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
