"""The model card of an adapted model (:func:`pkn.adapt.save`): ``MODEL.md`` next to
``MODEL.safetensors``, from the adaptation record stored in the model file."""

from __future__ import annotations

from pathlib import Path

__all__ = ["render_card", "write_card"]

_LOSSES = {
    "n2n": "Noise2Noise: |f(capture i) - capture j|^2 over pairs i != j of repeated captures",
    "blindspot": "Noise2Self (J-invariant): the filter in its blind-spot form (blind radius "
    "{r} px: the output at p reads no pixel within {r} px of p, the maps come from the "
    "image with that region masked) on a sparse grid of pixels, the loss the error this "
    "implies for the ordinary filter (its centre weight added back)",
    "r2r": "Recorrupted-to-Recorrupted: |f(x + a n) - (x - n / a)|^2, n drawn from the "
    "noise model, a = {a}",
}


def _fmt(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(u) for u in v) + "]"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _noise_text(n: dict) -> str:
    """One line per noise model (the description :func:`pkn.restore` reports)."""
    names = ", ".join(n.get("images", []))
    keys = ("model", "sigma", "a", "b", "rho", "correlation_length")
    text = ", ".join(f"{k} {_fmt(n[k])}" for k in keys if k in n)
    how = n.get("estimated")
    text += f" (input units); estimated: {how}" if how else " (input units); given"
    return f"{text} — {names}"


def render_card(model_file: str | Path, record: dict, sha256: str) -> str:
    """Markdown card of an adapted model."""
    model_file = Path(model_file)
    base = record.get("base_model", {})
    mode = record.get("mode", "?")
    loss = _LOSSES.get(mode, mode).format(r=record.get("blind_spot"), a=record.get("recorrupt"))
    done, steps = record.get("steps_done"), record.get("steps")
    stopped = " (**cancelled early**)" if record.get("cancelled") else ""
    lines = [
        f"# Model card: `{model_file.stem}` (adapted, self-supervised)",
        "",
        f"- **Kernel**: `{record.get('kernel')}`",
        f"- **Base model**: `{base.get('name')}`, SHA-256 `{base.get('sha256')}`",
        f"- **File**: `{model_file.name}`, SHA-256 `{sha256}`",
        f"- **Mode**: `{mode}` — {loss}. No clean image was used.",
        f"- **Training**: {done} of {steps} Adam steps{stopped}, batch {record.get('batch')}, "
        f"crop {record.get('crop')}, lr {record.get('lr')} (cosine), seed {record.get('seed')}, "
        f"{record.get('threads')} torch threads, {record.get('seconds')} s",
        f"- **Loss**: {_num(record.get('loss_first'))} at the first step, "
        f"{_num(record.get('loss_last'))} at the end (self-supervised: includes the noise "
        "variance, so it never reaches 0)",
    ]
    if record.get("blind_spot") is not None:
        lines.append(
            f"- **Blind spot**: radius {record['blind_spot']} px ({record.get('blind_spot_from')})"
        )
    if record.get("axis") is not None:
        lines.append(f"- **Stack axis**: {record['axis']}")
    lines += ["- **Noise model**:"]
    lines += [f"  - {_noise_text(n)}" for n in record.get("noise", [])]
    lines += [
        f"- **Software**: pkn {record.get('pkn_version')}, torch {record.get('torch_version')}",
        "",
        "## Adaptation data",
        "",
        "| image | frame | shape | dtype | SHA-256 |",
        "|---|---|---|---|---|",
    ]
    for d in record.get("data", []):
        frame = "" if d.get("frame") is None else str(d["frame"])
        shape = "x".join(str(v) for v in d.get("shape", []))
        lines.append(f"| `{d['name']}` | {frame} | {shape} | {d['dtype']} | `{d['sha256']}` |")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import pkn",
        f'result = pkn.restore(image, kernel="{record.get("kernel")}", model="{model_file}")',
        "```",
        "",
        "Give `pkn.restore` the same `noise=` as the adaptation (default: estimated from "
        "each image). The adaptation fits these images' noise and content; quality on "
        "other data is not measured here.",
    ]
    if record.get("command"):
        lines += ["", "## Reproduce", "", "```bash", record["command"], "```"]
        lines += ["", "Seeded: the same command on the same machine gives the same model."]
    return "\n".join(lines) + "\n"


def _num(v) -> str:
    return "-" if v is None else f"{v:.6g}"


def write_card(model_file: str | Path, record: dict, sha256: str) -> Path:
    """Write the card next to ``model_file`` (same stem, ``.md``); returns its path."""
    model_file = Path(model_file)
    path = model_file.with_suffix(".md")
    path.write_text(render_card(model_file, record, sha256))
    return path
