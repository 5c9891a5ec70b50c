"""Model cards: a Markdown description of a trained model, written next to it.

:func:`pkn.training.loop.train` writes ``RUN/KERNEL.md`` next to ``RUN/KERNEL.safetensors``;
the release script (``scripts/ship.py`` in the repository) renders the card again under
the shipped name when it copies a model into ``resources/``. Everything on the card comes
from the model file itself (its training record and its hash).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..models.io import file_sha256, load_model
from ..models.procedural import get_spec

__all__ = ["render_card", "write_card"]


def render_card(
    model_file: str | Path,
    name: str | None = None,
    metrics_md: str = "",
    *,
    extra_commands: Sequence[str] = (),
) -> str:
    """The model card of ``model_file`` in Markdown.

    Parameters
    ----------
    model_file : str or Path
        A ``.safetensors`` model written by :func:`pkn.training.loop.train`.
    name : str, optional
        The model's name on the card (default: the file's stem).
    metrics_md : str
        Extra Markdown (validation tables), appended under "Validation metrics".
    extra_commands : sequence of str
        Commands that follow the training command in "Reproduce" (e.g. the release step).
    """
    model_file = Path(model_file)
    name = name or model_file.stem
    model, info = load_model(model_file)
    train = info["info"].get("training", {})
    cfg = train.get("config", {})
    spec = get_spec(model.kernel)
    task = spec.task
    if task == "denoise":
        deg = {
            "awgn": f"AWGN, sigma uniform in {cfg.get('sigma')} (images in [0, 1])",
            "poisson-gaussian": f"Poisson-Gaussian, a in {cfg.get('pg_a')}, b in {cfg.get('pg_b')}",
            "mixed": f"half AWGN sigma in {cfg.get('sigma')}, half Poisson-Gaussian a in "
            f"{cfg.get('pg_a')}, b in {cfg.get('pg_b')}",
        }[cfg.get("noise", "awgn")]
        if cfg.get("correlated"):
            deg += (
                f"; a fraction {cfg['correlated']} of the images with spatially correlated "
                "noise (white noise filtered by a random small kernel: tilted Gaussian, 2x2 "
                "box or positive 3x3; same marginal std), its correlation given to the network"
            )
    elif task == "deblur":
        deg = (
            f"Gaussian blur sigma in {cfg.get('blur')} px (Levin kernels with probability "
            f"{cfg.get('levin')}{_levin_source(train)}), then AWGN sigma in {cfg.get('sigma')}"
        )
    else:
        deg = f"downscaling by {cfg.get('scales')} (antialiased), AWGN sigma {cfg.get('sigma')}"
    hist = train.get("history", [])
    guided = "guided (also sees the mean of the noisy channels), " if model.guided else ""
    if model.correlated:
        guided += "told the noise correlation (2x2 and 4x4 block-variance ratios), "
    size_kb = model_file.stat().st_size / 1024
    lines = [
        f"# Model card: `{name}`",
        "",
        f"- **Kernel**: `{model.kernel}` — {spec.description}",
        f"- **Task**: {task}",
        *([f"- **Kernel options**: {_options_text(model.options)}"] if model.options else []),
        "- **Parameter maps**: "
        + ", ".join(f"`{p.name}` ({p.doc})" if p.doc else f"`{p.name}`" for p in spec.params)
        + ", predicted at half resolution",
        f"- **Network**: PKNet widths {list(model.net.widths)}, {guided}"
        f"**{info['n_parameters']} parameters**",
        f"- **File**: `{name}.safetensors`, {size_kb:.1f} kB, safetensors (no pickle), "
        f"SHA-256 `{file_sha256(model_file)}`",
        f"- **Training data**: {_data_text(train)}",
        f"- **Degradation**: {deg}",
        f"- **Training**: {cfg.get('iters')} iterations, batch {cfg.get('batch')}, crop "
        f"{cfg.get('crop')}, Adam lr {cfg.get('lr')} (cosine), loss {cfg.get('loss')}"
        f"{_weighting(cfg)}, seed "
        f"{cfg.get('seed')}"
        + _init_text(cfg, train)
        + f"; {train.get('seconds', 0) / 60:.1f} min on this machine's CPU",
        f"- **Validation PSNR** (held-out crops): {train.get('val_psnr', float('nan')):.2f} dB"
        + (f" (first check {hist[0]['psnr']:.2f} dB at step {hist[0]['step']})" if hist else ""),
        "",
        "## Reproduce",
        "",
        "```bash",
        _command(cfg, train),
        *extra_commands,
        "```",
        "",
        "Training is seeded and deterministic on one machine; across machines and torch "
        "versions the weights may differ in the last bits, the metrics by a few hundredths "
        "of a dB.",
    ]
    if metrics_md:
        body = metrics_md.strip()
        # Markdown with its own sections goes in as it is (no empty heading above them)
        head = [] if body.startswith("## ") else ["## Validation metrics", ""]
        lines += ["", *head, body]
    return "\n".join(lines) + "\n"


def write_card(
    model_file: str | Path,
    out: str | Path | None = None,
    name: str | None = None,
    metrics_md: str = "",
    *,
    extra_commands: Sequence[str] = (),
) -> Path:
    """Write the card of ``model_file`` to ``out`` (default: next to it, ``MODEL.md``);
    returns its path. See :func:`render_card` for the other parameters."""
    model_file = Path(model_file)
    out = Path(out) if out else model_file.with_suffix(".md")
    out.write_text(render_card(model_file, name, metrics_md, extra_commands=extra_commands))
    return out


def _data_text(train: dict) -> str:
    """Where the training images came from, as recorded by the training run."""
    data = train.get("data")
    if not data:  # models trained before the run recorded its data
        given = train.get("config", {}).get("data")
        where = f"`{given}`" if given else "not recorded (the default folder of that version)"
        return f"{where}; every 20th image held out for validation."
    text = (
        f"`{data['dataset']}`, {data['images']} images from `{data['folder']}` "
        f"({data['source']}); {data['val']} of them (every {data['val_every']}th in name "
        f"order) held out for validation, the other {data['train']} used as random crops "
        "with flips and rotations."
    )
    if "kodak" in str(data["folder"]).lower():
        text += " **Note: Kodak24 is the benchmarks' test set.**"
    cfg = train.get("config", {})
    if cfg.get("synthetic"):
        text += (
            f" {cfg['synthetic']:.0%} of the batches were synthetic fluorescence images "
            "instead (`pkn.training.synthetic`: filaments, spots and cells through a "
            "Gaussian PSF; no real microscopy image)."
        )
    if cfg.get("band_limit"):
        lo, hi = cfg.get("band_sigma", (1.0, 3.0))
        text += (
            f" {cfg['band_limit']:.0%} of the clean crops were blurred by a Gaussian of "
            f"sigma {lo:g}-{hi:g} px first (band-limited content, as microscope optics give)."
        )
    return text


def _levin_source(train: dict) -> str:
    path = train.get("levin_file")
    return f" from `{path}`" if path else ""


def _command(cfg: dict, train: dict) -> str:
    """The training command; a data root taken from the environment is spelled out."""
    cmd = cfg.get("command") or "(command not recorded)"
    env = train.get("data", {}).get("env")
    return f"{env} {cmd}" if env and cfg.get("command") else cmd


def _init_text(cfg: dict, train: dict) -> str:
    """ ", starting from the model X (sha256 ...)" for fine-tuned runs."""
    if not cfg.get("init"):
        return ""
    sha = train.get("init", {}).get("sha256")
    if not sha:
        return f", starting from the model `{cfg['init']}`"
    where = (
        "a shipped model's earlier version is in the git history"
        if not str(cfg["init"]).endswith(".safetensors")
        else "an earlier training run's output: `python scripts/training_chain.py` lists the runs"
    )
    return f", starting from the model `{cfg['init']}` (SHA-256 `{sha}`; {where})"


def _weighting(cfg: dict) -> str:
    """How the per-sample losses were weighted, for the card."""
    if not cfg.get("noise_weighted"):
        return ""
    power = cfg.get("noise_power") or {"l2": 2.0, "l1": 1.0}.get(cfg.get("loss"), 0.0)
    if power == 0:
        return ""
    return " weighted by 1/noise variance" if power == 2 else f" weighted by 1/noise std^{power:g}"


def _options_text(options: dict) -> str:
    """The model's fixed kernel options, in words where they have a meaning to explain."""
    words = {"joint": "joint colour distances (NLM patch distances averaged over all channels)"}
    return "; ".join(
        words[k] if k in words and v is True else f"`{k}={v!r}`" for k, v in options.items()
    )
