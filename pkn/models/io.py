"""Saving and loading PKN models without pickle (safetensors + JSON metadata)."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .pkn_model import PKNModel

__all__ = ["file_sha256", "list_models", "load_model", "model_kernel", "model_path", "save_model"]

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
        "correlated": json.dumps(model.correlated),
        "info": json.dumps(info or {}),
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)
    return path


def model_path(name: str) -> Path:
    """Path of a shipped model by name (``"nlm"``) or of a ``.safetensors`` file."""
    if not isinstance(name, str | Path):
        raise TypeError(
            f"model must be a shipped model name or a path to a .safetensors file, got "
            f"{type(name).__name__}."
        )
    p = Path(name)
    if p.suffix == ".safetensors":
        if p.is_dir():
            raise ValueError(f"model file {p} is a folder; pass the .safetensors file in it.")
        if not p.is_file():
            raise FileNotFoundError(f"model file {p} does not exist.")
        return p
    if p.exists():
        what = "a folder" if p.is_dir() else "not a .safetensors file"
        raise ValueError(
            f"model {str(p)!r} is {what}; pass a .safetensors model file or a shipped model "
            f"name (available: {list_models()})."
        )
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

    Parameters
    ----------
    name : str or Path
        A shipped model's name (:func:`list_models`) or a ``.safetensors`` file.

    Returns
    -------
    (PKNModel, dict)
        The model in eval mode, its parameters frozen, and its metadata (``kernel``,
        ``info``, ``sha256``, ``path``, ``n_parameters``).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        Naming the file and what is wrong: empty or truncated, not a safetensors file,
        not a PKN model (metadata missing or invalid), an unknown kernel, missing,
        unexpected or misshapen tensors, or NaN/Inf weights.

    Examples
    --------
    >>> model, info = load_model("nlm")
    >>> info["kernel"]
    'nlm'
    """
    path = model_path(name)
    meta, state, sha = _read(str(path), file_sha256(path))
    arch = _architecture(str(path), meta)
    extra = arch.pop("info")
    model = PKNModel(meta["kernel"], **arch)
    _check_state(str(path), model, state, meta["kernel"], arch["widths"])
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    info = {
        "kernel": meta["kernel"],
        "info": extra,
        "sha256": sha,
        "path": str(path),
        "name": Path(path).stem,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, info


def model_kernel(name: str | Path) -> str:
    """The kernel a model (shipped name or ``.safetensors`` file) drives, from its metadata
    (read once, cached like :func:`load_model`; no network is built). Errors as
    :func:`load_model`'s for missing, damaged or foreign files."""
    path = model_path(name)
    meta = _read(str(path), file_sha256(path))[0]
    _architecture(str(path), meta)  # validated: a known kernel and a sane architecture
    return meta["kernel"]


_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header (bytes)


def _header(path: str) -> None:
    """A clear ValueError unless ``path`` is a complete safetensors file: an 8-byte
    little-endian header length, that many bytes of a JSON header, then every tensor's
    bytes (the largest ``data_offsets`` end)."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if size < 8:
            raise ValueError(
                f"{path} is {'empty' if size == 0 else f'only {size} bytes'}: not a complete "
                "PKN model file (a .safetensors file starts with an 8-byte header length); "
                "it was truncated or never written."
            )
        n = int.from_bytes(head, "little")
        first = f.read(1)
        if n == 0 or n > _MAX_HEADER or first != b"{":
            raise ValueError(
                f"{path} is not a safetensors file (its first bytes {head[:8]!r} are not a "
                "header length followed by a JSON header); is it a PKN model file?"
            )
        if 8 + n > size:
            raise ValueError(
                f"{path} is truncated: its header needs {8 + n} bytes, the file has {size}."
            )
        raw = first + f.read(n - 1)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{path} is damaged: its safetensors header is not valid JSON.") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is damaged: its safetensors header is not a JSON object.")
    ends = [
        v["data_offsets"][1]
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and len(v.get("data_offsets", ())) == 2
    ]
    need = 8 + n + max(ends, default=0)
    if need > size:
        raise ValueError(
            f"{path} is truncated: its tensors need {need} bytes, the file has {size}."
        )


@lru_cache(maxsize=16)
def _read(path: str, sha: str) -> tuple[dict, dict, str]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    _header(path)
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error type for damaged files
        raise ValueError(
            f"{path} is not a readable PKN model file (a .safetensors file written by pkn): {e}"
        ) from None
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a PKN model file: its metadata 'format' is "
            f"{meta.get('format')!r}, not {FORMAT!r} (write models with pkn.save_model or "
            "python -m pkn train)."
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


def _json_field(path: str, meta: dict, key: str, default: str | None, kind, accepted: str):
    """Metadata ``key`` parsed as JSON and checked to be ``kind``; a clear ValueError."""
    text = meta.get(key, default)
    if text is None:
        raise ValueError(f"{path} is not a complete PKN model file: its metadata lacks {key!r}.")
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(
            f"{path}: metadata {key!r} is not valid JSON ({text[:80]!r}); expected {accepted}."
        ) from None
    if not kind(value):
        raise ValueError(f"{path}: metadata {key!r} is {value!r}; expected {accepted}.")
    return value


def _architecture(path: str, meta: dict) -> dict:
    """The constructor arguments of the model in ``meta`` (validated), plus its ``info``."""
    import inspect

    from .procedural import get_spec, network_kernels

    kernel = meta.get("kernel")
    if kernel is None:
        raise ValueError(f"{path} is not a complete PKN model file: its metadata lacks 'kernel'.")
    if kernel not in network_kernels():
        raise ValueError(
            f"{path} is a model of kernel {kernel!r}, which this napari-pkn does not know; "
            f"known kernels: {network_kernels()}."
        )

    def widths_ok(v):
        ints = all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in v)
        return isinstance(v, list) and len(v) == 3 and ints

    widths = _json_field(path, meta, "widths", None, widths_ok, "three integers >= 1")
    options = _json_field(
        path, meta, "options", "{}", lambda v: isinstance(v, dict), "a JSON object"
    )
    flags = {
        k: _json_field(path, meta, k, "false", lambda v: isinstance(v, bool), "true or false")
        for k in ("guided", "correlated")
    }
    info = _json_field(path, meta, "info", "{}", lambda v: isinstance(v, dict), "a JSON object")
    accepted = {
        n
        for n, prm in inspect.signature(get_spec(kernel).function).parameters.items()
        if prm.kind == inspect.Parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"{path}: metadata 'options' has {unknown}, which kernel {kernel!r} does not "
            f"take (its options: {sorted(accepted)})."
        )
    return {"widths": tuple(widths), "options": options, **flags, "info": info}


def _check_state(path: str, model: PKNModel, state: dict, kernel: str, widths) -> None:
    """A clear ValueError unless ``state`` has exactly ``model``'s tensors, with their
    shapes, floating and finite."""
    want = model.state_dict()
    what = f"a {kernel!r} model with widths {list(widths)}"
    missing = sorted(set(want) - set(state))
    if missing:
        raise ValueError(
            f"{path} lacks {len(missing)} tensor(s) of {what}: {missing[:5]}"
            + (" ..." if len(missing) > 5 else "")
            + "; the file is damaged or was made by another program."
        )
    extra = sorted(set(state) - set(want))
    if extra:
        raise ValueError(
            f"{path} holds {len(extra)} tensor(s) that {what} does not have: {extra[:5]}"
            + (" ..." if len(extra) > 5 else "")
            + "."
        )
    for k, t in state.items():
        if tuple(t.shape) != tuple(want[k].shape):
            raise ValueError(
                f"{path}: tensor {k!r} has shape {tuple(t.shape)}, but {what} needs "
                f"{tuple(want[k].shape)}."
            )
        if not t.is_floating_point():
            raise ValueError(f"{path}: tensor {k!r} has dtype {t.dtype}; weights are floating.")
        bad = int((~t.isfinite()).sum())
        if bad:
            raise ValueError(
                f"{path}: tensor {k!r} has {bad} NaN/Inf value(s): the file is damaged or "
                "its training diverged."
            )
