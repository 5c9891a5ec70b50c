"""Saving and loading PKN models without pickle (safetensors + JSON metadata)."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .pkn_model import PKNModel

__all__ = ["file_sha256", "list_models", "load_model", "model_path", "save_model"]

FORMAT = "pkn-model"
FORMAT_VERSION = "1"


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(model: PKNModel, path: str | Path, info: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``) with its architecture and ``info``."""
    from safetensors.torch import save_file

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kernel": model.kernel,
        "widths": json.dumps(list(model.net.widths)),
        "options": json.dumps(model.options),
        "guided": json.dumps(model.guided),
        "info": json.dumps(info or {}),
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)
    return path


def model_path(name: str) -> Path:
    """Path of a shipped model by name (``"nlm"``) or of a ``.safetensors`` file."""
    p = Path(name)
    if p.suffix == ".safetensors":
        if not p.is_file():
            raise FileNotFoundError(f"model file {p} does not exist.")
        return p
    res = resources.files("pkn._resources") / f"{name}.safetensors"
    if not res.is_file():
        raise ValueError(
            f"no shipped model named {name!r}; available: {list_models()} (or pass a "
            "path to a .safetensors file)."
        )
    return Path(str(res))


def list_models() -> list[str]:
    """Names of the models shipped in ``resources/``."""
    root = resources.files("pkn._resources")
    return sorted(
        p.name[: -len(".safetensors")] for p in root.iterdir() if p.name.endswith(".safetensors")
    )


def load_model(name: str | Path) -> tuple[PKNModel, dict]:
    """Load a model safely (no pickle) by shipped name or path.

    The file is read once (cached by path and content hash); every call returns a new,
    independent model, so moving or fine-tuning one never affects another.

    Returns
    -------
    (PKNModel, dict)
        The model in eval mode, its parameters frozen, and its metadata (``kernel``,
        ``info``, ``sha256``, ``path``, ``n_parameters``).
    """
    path = model_path(str(name))
    meta, state, sha = _read(str(path), file_sha256(path))
    model = PKNModel(
        meta["kernel"],
        widths=tuple(json.loads(meta["widths"])),
        options=json.loads(meta.get("options", "{}")),
        guided=json.loads(meta.get("guided", "false")),
    )
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    info = {
        "kernel": meta["kernel"],
        "info": json.loads(meta.get("info", "{}")),
        "sha256": sha,
        "path": str(path),
        "name": Path(path).stem,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, info


@lru_cache(maxsize=16)
def _read(path: str, sha: str) -> tuple[dict, dict, str]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error type for damaged files
        raise ValueError(
            f"{path} is not a readable PKN model file (a .safetensors file written by "
            f"pkn): {e}"
        ) from None
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a PKN model file (metadata format={meta.get('format')!r})."
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has PKN format version {meta.get('format_version')!r}; this napari-pkn "
            f"reads version {FORMAT_VERSION}."
        )
    try:
        state = load_file(path)
    except Exception as e:
        raise ValueError(f"{path}: the model's weights cannot be read: {e}") from None
    return meta, state, sha  # load_state_dict copies: the cache stays pristine
