"""``python -m pkn train``: train a PKN model from the command line."""

from __future__ import annotations

import argparse
import json

from ..models.procedural import get_spec, network_kernels
from ._validate import _RULES, check_config, rule
from .data import DATA_ENV, TRAIN_SUBDIR, training_dir
from .degrade import LEVIN_FILE, levin_path
from .loop import TrainConfig, train

__all__ = ["main"]


def _checked(name: str, parse):
    """An argparse ``type=``: ``parse(text)`` checked by the TrainConfig rule of ``name``
    (:func:`~pkn.training._validate.rule`); any failure is one clear argparse error."""

    def convert(text: str):
        try:
            return rule(name, parse(text))
        except (ValueError, TypeError) as e:
            msg = str(e) if str(e).startswith(name) else f"{name} must be {_RULES[name][3]}"
            raise argparse.ArgumentTypeError(
                f"{msg.rstrip('.').split(', got ')[0]}, got {text!r}"
            ) from None

    convert.__name__ = name  # argparse names the type in some messages
    return convert


def _int(text: str) -> int:
    return int(text.strip())


def _float(text: str) -> float:
    return float(text.strip())


def _pair(text: str) -> tuple[float, ...]:
    parts = [float(v) for v in text.replace(":", ",").split(",")]
    return tuple(parts * 2 if len(parts) == 1 else parts)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"patch_size\": 3}}', got {text!r}"
        )
    return value


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
    p.add_argument("--iters", type=_checked("iters", _int), default=d.iters)
    p.add_argument("--batch", type=_checked("batch", _int), default=d.batch)
    p.add_argument("--crop", type=_checked("crop", _int), default=d.crop)
    p.add_argument("--lr", type=_checked("lr", _float), default=d.lr)
    p.add_argument(
        "--clip", type=_checked("clip", _float), default=d.clip, help="gradient-norm clip (0: off)"
    )
    p.add_argument("--loss", default=d.loss, choices=["l2", "l1", "ssim", "msssim"])
    p.add_argument("--noise", default=d.noise, choices=["awgn", "poisson-gaussian", "mixed"])
    p.add_argument(
        "--sigma",
        type=_checked("sigma", _pair),
        default=d.sigma,
        help="AWGN sigma range LOW,HIGH (default 0.05,0.1 as in the paper)",
    )
    p.add_argument(
        "--pg-a", type=_checked("pg_a", _pair), default=d.pg_a, help="Poisson gain range"
    )
    p.add_argument(
        "--pg-b", type=_checked("pg_b", _pair), default=d.pg_b, help="Gaussian variance range"
    )
    p.add_argument(
        "--blur",
        type=_checked("blur", _pair),
        default=d.blur,
        help="Gaussian blur sigma range (px)",
    )
    p.add_argument(
        "--levin",
        type=_checked("levin", _float),
        default=d.levin,
        help="probability of a Levin camera-shake kernel instead of a Gaussian",
    )
    p.add_argument(
        "--levin-file",
        default="",
        metavar="FILE",
        help=f"the Levin kernels (.npz; default: ${DATA_ENV}/{LEVIN_FILE})",
    )
    p.add_argument(
        "--scales", type=_checked("scales", _floats), default=d.scales, help="upsampling factors"
    )
    p.add_argument("--widths", type=_checked("widths", _ints), default=d.widths)
    p.add_argument(
        "--no-noise-weighting",
        dest="noise_weighted",
        action="store_false",
        help="plain loss average (default: each sample's loss / its noise level)",
    )
    p.add_argument(
        "--noise-power",
        type=_checked("noise_power", _float),
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
        type=_checked("p_gray", _float),
        default=d.p_gray,
        help="guided: fraction of samples trained as gray images",
    )
    p.add_argument(
        "--correlated",
        type=_checked("correlated", _float),
        default=d.correlated,
        help="denoising: fraction of samples with spatially correlated noise (random small "
        "kernels); > 0 also gives the network the noise correlation as input",
    )
    p.add_argument(
        "--band-limit",
        type=_checked("band_limit", _float),
        default=d.band_limit,
        help="denoising: fraction of clean crops blurred by a Gaussian first (band-limited "
        "content, as microscope optics give; the blurred crop is the target)",
    )
    p.add_argument(
        "--band-sigma",
        type=_checked("band_sigma", _pair),
        default=d.band_sigma,
        help="--band-limit's Gaussian sigma range LOW,HIGH (px)",
    )
    p.add_argument(
        "--synthetic",
        type=_checked("synthetic", _float),
        default=d.synthetic,
        help="denoising: fraction of batches of synthetic fluorescence images (filaments, "
        "spots, cells through a Gaussian PSF) instead of training-image crops",
    )
    p.add_argument(
        "--init",
        default=d.init,
        help="start from this model (shipped name or .safetensors) instead of from scratch",
    )
    p.add_argument(
        "--options",
        type=_json_object,
        default={},
        help="kernel options as JSON, e.g. '{\"patch_size\": 3}'",
    )
    p.add_argument("--seed", type=_checked("seed", _int), default=d.seed)
    p.add_argument("--val-every", type=_checked("val_every", _int), default=d.val_every)
    p.add_argument(
        "--val-crop",
        type=_checked("val_crop", _int),
        default=d.val_crop,
        help="side of the validation centre crops",
    )
    p.add_argument(
        "--threads", type=_checked("threads", _int), default=0, help="torch threads (0: default)"
    )
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m pkn train`` with ``argv``; return the exit status.

    Invalid options: one argparse line naming the option and what is accepted, status 2;
    invalid combinations or data found while running: ``error: ...``, status 2; anything
    unexpected: one line with a hint to set ``PKN_DEBUG=1``, status 1.
    """
    from ..__main__ import guarded

    return guarded("python -m pkn train", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
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
    kw["out"] = kw["out"] or f"runs/{args.kernel}"
    import shlex
    import sys

    words = sys.argv[1:] if argv is None else ["train", *argv]
    if argv is None and words[:1] != ["train"]:
        words = ["train", *words]
    kw["command"] = "python -m pkn " + shlex.join(words)
    cfg = TrainConfig(**kw)
    check_config(cfg)
    summary = train(cfg, progress=not quiet)
    print(
        f"validation PSNR {summary['val_psnr']:.2f} dB, {summary['n_parameters']} parameters, "
        f"model written to {cfg.out}/{cfg.kernel}.safetensors, its card to "
        f"{cfg.out}/{cfg.kernel}.md"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
