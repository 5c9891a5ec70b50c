"""``python -m pkn ship``: copy a trained model into ``resources/`` and write its model card."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..models.io import file_sha256, load_model
from ..models.procedural import get_spec

__all__ = ["main", "write_card"]


def _resources() -> Path:
    return Path(__file__).resolve().parents[2] / "resources"


def write_card(model_file: Path, name: str, metrics_md: str = "", source: str = "runs/...") -> Path:
    """Write ``resources/NAME.md`` for the shipped ``model_file``; returns its path."""
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
    elif task == "deblur":
        deg = (
            f"Gaussian blur sigma in {cfg.get('blur')} px (Levin kernels with probability "
            f"{cfg.get('levin')}), then AWGN sigma in {cfg.get('sigma')}"
        )
    else:
        deg = f"downscaling by {cfg.get('scales')} (antialiased), AWGN sigma {cfg.get('sigma')}"
    hist = train.get("history", [])
    guided = "guided (also sees the mean of the noisy channels), " if model.guided else ""
    size_kb = model_file.stat().st_size / 1024
    lines = [
        f"# Model card: `{name}`",
        "",
        f"- **Kernel**: `{model.kernel}` — {spec.description}",
        f"- **Task**: {task}",
        *(
            [f"- **Kernel options**: {_options_text(model.options)}"]
            if model.options
            else []
        ),
        "- **Parameter maps**: "
        + ", ".join(f"`{p}` ({spec.ranges.get(p, '')})" for p in spec.params)
        + ", predicted at half resolution",
        f"- **Network**: PKNet widths {list(model.net.widths)}, {guided}"
        f"**{info['n_parameters']} parameters**",
        f"- **File**: `{name}.safetensors`, {size_kb:.1f} kB, safetensors (no pickle), "
        f"SHA-256 `{file_sha256(model_file)}`",
        "- **Training data**: BSDS500 (400 images, `../shared/data/train/bsds500`), every 20th "
        "image held out for validation; random crops with flips/rotations. Never Kodak24.",
        f"- **Degradation**: {deg}",
        f"- **Training**: {cfg.get('iters')} iterations, batch {cfg.get('batch')}, crop "
        f"{cfg.get('crop')}, Adam lr {cfg.get('lr')} (cosine), loss {cfg.get('loss')}"
        f"{_weighting(cfg)}, seed "
        f"{cfg.get('seed')}; {train.get('seconds', 0) / 60:.1f} min on this machine's CPU",
        f"- **Validation PSNR** (BSDS held-out crops): {train.get('val_psnr', float('nan')):.2f} dB"
        + (f" (first check {hist[0]['psnr']:.2f} dB at step {hist[0]['step']})" if hist else ""),
        "",
        "## Reproduce",
        "",
        "```bash",
        cfg.get("command") or "(command not recorded)",
        f"python -m pkn ship {source} --name {name}",
        "```",
        "",
        "Training is seeded and deterministic on one machine; across machines and torch "
        "versions the weights may differ in the last bits, the metrics by a few hundredths "
        "of a dB.",
    ]
    if metrics_md:
        lines += ["", "## Validation metrics", "", metrics_md.strip()]
    out = _resources() / f"{name}.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pkn ship",
        description="Copy RUN/KERNEL.safetensors to resources/NAME.safetensors and write "
        "resources/NAME.md (the model card).",
    )
    p.add_argument("model", help="trained .safetensors file")
    p.add_argument("--name", required=True, help="shipped model name (e.g. nlm)")
    p.add_argument("--metrics", default=None, help="Markdown file with extra validation tables")
    a = p.parse_args(argv)
    src = Path(a.model)
    dst = _resources() / f"{a.name}.safetensors"
    shutil.copyfile(src, dst)
    md = Path(a.metrics).read_text() if a.metrics else ""
    card = write_card(dst, a.name, md, source=a.model)
    print(f"shipped {dst} ({dst.stat().st_size / 1024:.1f} kB) with card {card}")
    print(json.dumps({"sha256": file_sha256(dst)}))
    return 0


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

