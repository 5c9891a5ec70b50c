"""The training loop: seeded, resumable, with validation and a progress bar."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..models.io import load_model, save_model
from ..models.pkn_model import PKNModel
from . import degrade, synthetic
from .card import write_card
from .data import DATA_ENV, TRAIN_SUBDIR, ImageBank, data_root, load_folder, training_dir
from .losses import get_loss, psnr

__all__ = ["TrainConfig", "degrade_batch", "restore_batch", "train"]


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in the model card)."""

    kernel: str = "nlm"
    out: str = "runs/nlm"
    data: str = ""  # folder of clean training images ("": $PKN_DATA/train/bsds500)
    iters: int = 6000
    batch: int = 16
    crop: int = 96
    lr: float = 2e-3
    clip: float = 0.0  # gradient-norm clipping (0: off); 1.0 keeps saturating heads alive
    loss: str = "l2"
    noise: str = "awgn"  # awgn | poisson-gaussian | mixed
    sigma: tuple[float, float] = (0.05, 0.1)
    pg_a: tuple[float, float] = (0.001, 0.05)
    pg_b: tuple[float, float] = (1e-5, 4e-3)
    blur: tuple[float, float] = (1.0, 2.5)
    levin: float = 0.0  # probability of a Levin kernel instead of a Gaussian blur
    levin_file: str = ""  # Levin kernels .npz ("": $PKN_DATA/psf/levin09_blur_kernels.npz)
    scales: tuple[float, ...] = (1.5, 2.0, 3.0)
    widths: tuple[int, int, int] = (12, 16, 24)
    noise_weighted: bool = True  # divide each sample's loss by its noise level (l2: variance)
    noise_power: float = 0.0  # > 0: divide each sample's loss by noise std ** noise_power instead
    guided: bool = False  # denoising: the network also sees the mean of the noisy channels
    p_gray: float = 0.25  # guided: fraction of samples treated as gray (guide = the channel)
    correlated: float = 0.0  # denoising: fraction of samples with spatially correlated noise;
    # > 0: the network also takes the noise correlation as input
    band_limit: float = 0.0  # denoising: fraction of clean crops blurred (a microscope's optics)
    band_sigma: tuple[float, float] = (1.0, 3.0)  # ... by a Gaussian of this sigma range (px)
    synthetic: float = 0.0  # denoising: fraction of batches of synthetic fluorescence images
    # (gray, pkn.training.synthetic) instead of training-image crops
    init: str = ""  # start from this model (shipped name or .safetensors file) instead of scratch
    options: dict = field(default_factory=dict)
    seed: int = 0
    val_every: int = 500
    val_crop: int = 128
    threads: int = 0
    resume: bool = False
    command: str = ""  # the command line that started the run (for the model card)


def _one_channel(d: degrade.Degraded, rng: np.random.Generator, p_gray: float):
    """From a multi-channel noisy batch keep one random channel per sample, with the mean
    of the noisy channels as guide (or the channel itself for a fraction ``p_gray``,
    whose ``colour`` stack is then that channel repeated: joint distances = its own)."""
    B, C = d.x.shape[:2]
    idx = torch.from_numpy(rng.integers(C, size=B))
    take = torch.arange(B)
    x, t = d.x[take, idx][:, None], d.target[take, idx][:, None]
    ns = d.noise_std if d.noise_std.shape[1] == 1 else d.noise_std[take, idx][:, None]
    guide = d.x.mean(1, keepdim=True)
    gray = torch.from_numpy(rng.uniform(size=B) < p_gray).view(B, 1, 1, 1)
    colour = torch.where(gray, x.expand_as(d.x), d.x)  # (B, C, s, s)
    return degrade.Degraded(x, ns, t, d.options, torch.where(gray, x, guide), colour, d.correlation)


def _noisy(cfg: TrainConfig, clean: torch.Tensor, rng: np.random.Generator):
    kind = cfg.noise
    if kind == "mixed":
        kind = "awgn" if rng.uniform() < 0.5 else "poisson-gaussian"
    if kind == "awgn":
        return degrade.add_awgn(clean, rng, cfg.sigma, p_corr=cfg.correlated)
    if kind == "poisson-gaussian":
        return degrade.add_poisson_gaussian(clean, rng, cfg.pg_a, cfg.pg_b, p_corr=cfg.correlated)
    raise ValueError(f"unknown noise model {cfg.noise!r} (awgn, poisson-gaussian, mixed).")


def degrade_batch(cfg: TrainConfig, clean: torch.Tensor, rng: np.random.Generator, task: str):
    """Synthesize a degraded batch for ``task`` from clean crops ``(B, C, s, s)``; for
    denoising, one channel per sample is returned with its guide."""
    if task == "denoise":
        if cfg.band_limit > 0:
            clean = degrade.band_limit(clean, rng, cfg.band_limit, cfg.band_sigma)
        return _one_channel(_noisy(cfg, clean, rng), rng, cfg.p_gray)
    if task == "deblur":
        psfs = degrade.levin_kernels(cfg.levin_file or None) if cfg.levin > 0 else None
        return degrade.blur_and_noise(clean, rng, cfg.blur, cfg.sigma, psfs, cfg.levin)
    if task == "upsample":
        s = float(cfg.scales[rng.integers(len(cfg.scales))])
        H = clean.shape[-1]
        keep = max(6, round(int(H / s) * s))  # a size the factor maps to an integer grid
        noise = cfg.sigma if max(cfg.sigma) > 0 else 0.0
        return degrade.downscale(clean[..., :keep, :keep], rng, s, noise)
    raise ValueError(f"unknown task {task!r}.")


def _training_batch(cfg: TrainConfig, bank: ImageBank, rng: np.random.Generator, task: str):
    """One degraded training batch: crops of the training images or, for a fraction
    ``cfg.synthetic`` of denoising batches, synthetic fluorescence images (gray: each
    sample its own guide). With ``synthetic == 0`` the random stream is the old one."""
    if task == "denoise" and cfg.synthetic > 0 and rng.uniform() < cfg.synthetic:
        clean = synthetic.fluorescence(rng, cfg.batch, cfg.crop).expand(-1, 3, -1, -1)
        return degrade_batch(dataclasses.replace(cfg, p_gray=1.0), clean, rng, task)
    clean = bank.crops(rng, cfg.batch, cfg.crop, rgb=task == "denoise")
    return degrade_batch(cfg, clean, rng, task)


def restore_batch(model: PKNModel, d: degrade.Degraded):
    """Run ``model`` on a degraded batch (per-sample blur/size options handled)."""
    maps = model.predict_maps(d.x, d.noise_std, d.guide, d.correlation)
    if not d.options:
        kw = {"guide": d.colour} if model.joint and d.colour is not None else {}
        return model.filter(d.x, maps, **kw), maps
    outs = []
    for i, o in enumerate(d.options):
        mi = {k: v[i : i + 1] for k, v in maps.items()}
        outs.append(model.filter(d.x[i : i + 1], mi, **o))
    return torch.cat(outs), maps


def _validation_set(cfg, bank, task):
    """Fixed degraded validation batches (the same for every model with the same config).

    Denoising: every channel of every validation crop is a sample, guided by the mean
    of its image's noisy channels (unguided models ignore the guide).
    """
    rng = np.random.default_rng(12345)
    clean = bank.validation_crops(cfg.val_crop)  # (N, 3, s, s)
    if task != "denoise":
        clean = clean[:, 1:2]  # one channel per image
    batches = []
    for i in range(0, clean.shape[0], 8):
        c = clean[i : i + 8]
        if task != "denoise":
            batches.append(degrade_batch(cfg, c, rng, task))
            continue
        d = _noisy(cfg, c, rng)
        B, C, H, W = c.shape
        ns = d.noise_std
        ns = ns.repeat_interleave(C, 0) if ns.shape[1] == 1 else ns.reshape(B * C, 1, H, W)
        guide = d.x.mean(1, keepdim=True).repeat_interleave(C, 0)
        flat = d.x.reshape(B * C, 1, H, W)
        colour = d.x.repeat_interleave(C, 0)  # (B*C, C, H, W)
        corr = None if d.correlation is None else d.correlation.repeat_interleave(C, 0)
        batches.append(
            degrade.Degraded(flat, ns, c.reshape(B * C, 1, H, W), [], guide, colour, corr)
        )
    return batches


@torch.no_grad()
def evaluate(model: PKNModel, batches) -> float:
    """Mean PSNR (dB) over validation batches."""
    model.eval()
    vals = [psnr(restore_batch(model, d)[0], d.target) for d in batches]
    model.train()
    return float(torch.cat(vals).mean())


def train(cfg: TrainConfig, *, progress: bool = True) -> dict:
    """Train a PKN model; returns a summary (also written next to the model).

    Writes ``OUT/KERNEL.safetensors`` (the model, with the summary in its metadata),
    ``OUT/KERNEL.md`` (its model card: data, settings, command line, SHA-256),
    ``OUT/summary.json`` and ``OUT/checkpoint.pt`` (for ``resume``). The training images
    are ``cfg.data``, else ``$PKN_DATA/train/bsds500`` (see
    :func:`pkn.training.data.training_dir`).

    Process-wide torch settings changed for the run (threads, deterministic algorithms)
    are restored afterwards.
    """
    from ._validate import check_config

    check_config(cfg)  # clear errors before any data is read or model built
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        return _train(cfg, progress)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=det_warn)


def _train(cfg: TrainConfig, progress: bool) -> dict:
    from tqdm.auto import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model, init = _initial_model(cfg)
    task = model.spec.task
    folder = training_dir(cfg.data)
    bank = ImageBank(load_folder(folder))
    data = _data_record(cfg, folder, bank)
    levin_file = None
    if task == "deblur" and cfg.levin > 0:
        levin_file = str(degrade.levin_path(cfg.levin_file))  # missing: fails now, not later
    val = _validation_set(cfg, bank, task)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.iters) / cfg.iters)) * 0.99 + 0.01
    )
    rng = np.random.default_rng(cfg.seed)
    step, history = 0, []
    ckpt = out / "checkpoint.pt"
    if cfg.resume and ckpt.is_file():
        # our own checkpoint; weights_only=True refuses arbitrary pickled objects
        state = torch.load(ckpt, weights_only=True)
        if int(state.get("iters", cfg.iters)) != cfg.iters:
            raise ValueError(
                f"{ckpt} belongs to a run of {int(state['iters'])} iterations (its learning-rate "
                f"schedule depends on it); resume with --iters {int(state['iters'])}."
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        rng.bit_generator.state = json.loads(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        step, history = int(state["step"]), json.loads(state["history"])
    loss_fn = get_loss(cfg.loss)
    model.train()
    bar = tqdm(total=cfg.iters, initial=step, disable=not progress, dynamic_ncols=True)
    ema, last_val, t0, px = None, history[-1]["psnr"] if history else float("nan"), time.time(), 0
    while step < cfg.iters:
        d = _training_batch(cfg, bank, rng, task)
        y, _ = restore_batch(model, d)
        per = loss_fn(y, d.target)  # (B,)
        if cfg.noise_weighted:
            # every noise level counts alike: otherwise the loss (and the gradient) is
            # dominated by the noisiest samples, and low noise is barely learned
            var = d.noise_std.square().flatten(1).mean(1).clamp_min(1e-8)  # (B,)
            power = cfg.noise_power or {"l2": 2.0, "l1": 1.0}.get(cfg.loss, 0.0)
            # powers 2 and 1 as before (the shipped models' cards reproduce bit for bit)
            per = per / (var if power == 2 else var.sqrt() if power == 1 else var.pow(power / 2))
        loss = per.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        sched.step()
        step += 1
        px += d.target.numel()
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if step % cfg.val_every == 0 or step == cfg.iters:
            last_val = evaluate(model, val)
            history.append({"step": step, "psnr": last_val, "loss": ema})
            state = {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "step": step,
                "iters": cfg.iters,
                "rng": json.dumps(rng.bit_generator.state),
                "torch_rng": torch.get_rng_state(),
                "history": json.dumps(history),
            }
            torch.save(state, ckpt)
        mpx = px / max(time.time() - t0, 1e-9) / 1e6
        bar.set_postfix(loss=f"{ema:.3g}", val_psnr=f"{last_val:.2f}", mpx_s=f"{mpx:.2f}")
        bar.update(1)
    bar.close()
    summary = {
        "config": dataclasses.asdict(cfg),
        "val_psnr": last_val,
        "history": history,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "seconds": time.time() - t0,
        "data": data,
        **({"levin_file": levin_file} if levin_file else {}),
        **({"init": init} if init else {}),
    }
    model_file = out / f"{cfg.kernel}.safetensors"
    save_model(model, model_file, {"training": summary})
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_card(model_file)
    return summary


def _initial_model(cfg: TrainConfig) -> tuple[PKNModel, dict]:
    """A fresh model for ``cfg``, or the ``cfg.init`` model (its architecture and options
    kept, options given in ``cfg.options`` override its own; widened to take the noise
    correlation when ``cfg.correlated > 0``). Also returns what the run started from
    (``{"model", "sha256"}``; empty for a fresh model), for the summary and the card."""
    if not cfg.init:
        fresh = PKNModel(
            cfg.kernel, cfg.widths, cfg.options, guided=cfg.guided, correlated=cfg.correlated > 0
        )
        return fresh, {}
    model, meta = load_model(cfg.init)
    if model.kernel != cfg.kernel:
        raise ValueError(
            f"init={cfg.init!r} is a {model.kernel!r} model; this run trains {cfg.kernel!r}."
        )
    if cfg.correlated > 0 and not model.correlated:
        model = model.with_correlation()
    if cfg.options:  # e.g. a wider search window than the model was trained with
        model.options = {**model.options, **cfg.options}
    cfg.widths, cfg.options, cfg.guided = tuple(model.net.widths), dict(model.options), model.guided
    return model.requires_grad_(True).train(), {"model": cfg.init, "sha256": meta["sha256"]}


def _data_record(cfg: TrainConfig, folder: Path, bank: ImageBank) -> dict:
    """What the run trained on, for the summary and the model card."""
    n_val, n_train = len(bank.val), len(bank.train)
    record = {
        "folder": str(folder),
        "resolved": str(folder.resolve()),
        "dataset": folder.name,
        "images": n_train + n_val,
        "train": n_train,
        "val": n_val,
        "val_every": bank.val_every,
    }
    if cfg.data:
        record["source"] = "--data"
    else:
        record["source"] = f"${DATA_ENV}/{TRAIN_SUBDIR}"
        record["env"] = f"{DATA_ENV}={shlex.quote(str(data_root()))}"
    return record
