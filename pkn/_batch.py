"""``python -m pkn restore``: restore many images (TIFF, PNG) in one go.

Inputs are files, folders (their TIFF/PNG files and ``*.zarr`` stores, not recursive)
and glob patterns. Each input gives ``OUT/<stem>_pkn.tif`` (float32, with the input's
TIFF resolution and ImageJ/OME axes metadata where tifffile reads them) and
``OUT/<stem>_pkn.json`` (``pkn.restore``'s provenance plus the input's path, size and
SHA-256); ``--maps`` also writes ``OUT/<stem>_pkn_<map>.tif``. A file that fails is
reported on stderr and the others go on; existing outputs are skipped unless
``--overwrite``. Exit status: 0 when every input was restored or skipped, 1 when any
failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "read_image"]

SUFFIXES = (".tif", ".tiff", ".png")


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise _ArgError(message)


def _noise(v: str):
    v = v.strip()
    if v.lower() == "auto":
        return None
    try:
        if "," in v:
            a, b = (float(t) for t in v.split(","))
            if not (np.isfinite(a) and np.isfinite(b)):
                raise ValueError
            return (a, b)
        s = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--noise must be 'auto', a sigma (e.g. 0.05) or 'a,b' (Poisson-Gaussian), got {v!r}"
        ) from None
    if not (np.isfinite(s) and s >= 0):
        raise argparse.ArgumentTypeError(f"--noise sigma must be a finite number >= 0, got {v!r}")
    return s


def _strength(v: str):
    if v.strip().lower() == "auto":
        return "auto"
    try:
        s = float(v)
    except ValueError:
        s = float("nan")
    if not (np.isfinite(s) and s >= 0):
        raise argparse.ArgumentTypeError(f"--strength must be a number >= 0 or 'auto', got {v!r}")
    return s


def _parser() -> _Parser:
    from .models.procedural import network_kernels, tasks

    p = _Parser(prog="python -m pkn restore", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--task", default="denoise", choices=sorted(tasks()))
    p.add_argument("--kernel", choices=network_kernels(), help="default: the task's")
    p.add_argument("--model", help="a shipped model name or a .safetensors file")
    p.add_argument("--noise", type=_noise, default=None, help="auto (default), sigma, or a,b")
    p.add_argument("--strength", type=_strength, default=1.0, help="a number >= 0 or auto")
    p.add_argument("--blur", type=float, help="deblurring: the Gaussian blur sigma (pixels)")
    p.add_argument("--scale", type=float, help="upsampling: the factor")
    p.add_argument(
        "--channel-axis",
        type=int,
        help="axis of the channels (default: the TIFF's C/S axis, RGB PNGs -1, else none)",
    )
    p.add_argument("--per-plane", action="store_true", help="noise/normalisation per plane")
    p.add_argument("--maps", action="store_true", help="also write the parameter maps")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def expand(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to process, and ``(input, why)`` for inputs that name none."""
    files, bad = [], []
    for s in inputs:
        if any(c in s for c in "*?["):
            hits = sorted(glob.glob(s))
            if not hits:
                bad.append((s, "the pattern matches no file"))
            files += [Path(h) for h in hits if _usable(Path(h))]
            continue
        q = Path(s)
        if q.is_dir() and q.suffix.lower() != ".zarr":
            hits = sorted(c for c in q.iterdir() if _usable(c))
            if not hits:
                bad.append((s, "the folder holds no TIFF, PNG or .zarr input"))
            files += hits
        elif q.exists():
            files.append(q)
        else:
            bad.append((s, "no such file or folder"))
    seen, out = set(), []
    for f in files:
        k = f.resolve()
        if k not in seen:
            seen.add(k)
            out.append(f)
    return out, bad


def _usable(q: Path) -> bool:
    if q.suffix.lower() == ".zarr":
        return q.is_dir()
    return q.is_file() and q.suffix.lower() in SUFFIXES


def stem(q: Path) -> str:
    name = q.name
    for suf in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return q.stem


def read_image(q: Path) -> tuple[np.ndarray, dict]:
    """``(array, meta)``: meta has ``axes`` (tifffile's letters, if known), the default
    ``channel_axis`` and what to write back (``tiff``: tifffile keyword arguments)."""
    low = q.name.lower()
    if low.endswith(".zarr"):
        return _read_zarr(q)
    if low.endswith(".png"):
        from skimage import io

        a = np.asarray(io.imread(q))
        ca = -1 if a.ndim == 3 and a.shape[-1] in (3, 4) else None
        return a, {"axes": "YXS" if ca is not None else "YX", "channel_axis": ca, "tiff": {}}
    import tifffile

    with tifffile.TiffFile(q) as tif:
        series = tif.series[0]
        a = series.asarray()
        axes = series.axes
        ca = next((axes.index(c) for c in "CS" if c in axes), None)
        tiff: dict = {}
        page = tif.pages[0]
        tags = page.tags
        if "XResolution" in tags and "YResolution" in tags:
            tiff["resolution"] = (tags["XResolution"].value, tags["YResolution"].value)
            if "ResolutionUnit" in tags:
                tiff["resolutionunit"] = tags["ResolutionUnit"].value
        if tif.is_imagej and set(axes) <= set("TZCYX"):
            md = {"axes": axes}
            for k in ("spacing", "unit", "finterval"):
                if k in (tif.imagej_metadata or {}):
                    md[k] = tif.imagej_metadata[k]
            tiff.update(imagej=True, metadata=md)
        elif tif.is_ome:
            md = {"axes": axes}
            try:
                px = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
                px = (px[0] if isinstance(px, list) else px)["Pixels"]
                for k, v in px.items():
                    if k.startswith("PhysicalSize") or k in ("TimeIncrement", "TimeIncrementUnit"):
                        md[k] = v
            except Exception:  # metadata is best effort
                pass
            tiff.update(ome=True, metadata=md)
        else:
            tiff["metadata"] = {"axes": axes}
    return a, {"axes": axes, "channel_axis": ca, "tiff": tiff}


def _read_zarr(q: Path) -> tuple[np.ndarray, dict]:
    """OME-Zarr input is recognised but not read yet (issue #12 leaves it open): a clear
    per-file error instead of a guess."""
    raise RuntimeError(
        f"OME-Zarr input ({q.name}) is not supported yet; convert it to TIFF (e.g. with "
        "ome-zarr or napari) and pass the TIFF"
    )


def _sha256(q: Path) -> str | None:
    if not q.is_file():
        return None
    h = hashlib.sha256()
    with open(q, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _size(q: Path) -> int:
    if q.is_file():
        return q.stat().st_size
    return sum(f.stat().st_size for f in q.rglob("*") if f.is_file())


def _one(q: Path, outs: dict, a, kw: dict) -> None:
    import tifffile

    from .restoration import restore

    image, meta = read_image(q)
    ca = a.channel_axis if a.channel_axis is not None else meta["channel_axis"]
    r = restore(image, a.task, channel_axis=ca, per_plane=a.per_plane, **kw)
    tiff = dict(meta["tiff"])
    if a.task == "upsample":  # the pixel size changed: drop resolution metadata
        tiff.pop("resolution", None)
    out = r.image.astype(np.float32, copy=False)
    if tiff.get("imagej") and out.ndim != len(meta["axes"]):
        tiff.pop("imagej")
    rgb = ca is not None and ca % image.ndim == image.ndim - 1 and image.shape[-1] == 3
    photometric = "rgb" if rgb else "minisblack"
    _write(tifffile, outs["image"], out, dict(tiff, photometric=photometric))
    if a.maps:
        for name, m in r.maps.items():
            tifffile.imwrite(
                outs["maps"](name),
                m,
                photometric=photometric,
                metadata={"map_scale": r.map_scale},
            )
    info = dict(r.info)
    info["input"] = {"path": str(q.resolve()), "size": _size(q), "sha256": _sha256(q)}
    info["input_shape"], info["input_dtype"] = list(image.shape), str(image.dtype)
    info["axes"], info["channel_axis"] = meta["axes"], ca
    info["output"] = str(outs["image"].resolve())
    outs["json"].write_text(json.dumps(info, indent=2, default=str))


def _write(tifffile, path: Path, out: np.ndarray, tiff: dict) -> None:
    tmp = path.with_name(path.name + ".part")
    try:
        try:
            tifffile.imwrite(tmp, out, **tiff)
        except Exception:  # metadata that does not fit the output: write without it
            tifffile.imwrite(tmp, out)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def main(argv: list[str] | None = None) -> int:
    try:
        a = _parser().parse_args(argv)
    except _ArgError as e:
        print(f"pkn restore: error: {e}", file=sys.stderr)
        return 2
    from .models.io import load_model
    from .models.procedural import get_spec, tasks
    from .restoration import _model

    kernel = a.kernel or tasks()[a.task]
    spec_task = get_spec(kernel).task
    if spec_task != a.task:
        print(
            f"pkn restore: error: --kernel {kernel} does {spec_task}, not {a.task}", file=sys.stderr
        )
        return 2
    try:
        _model(a.model, kernel, load_model)  # a bad model name or file: exit 2 up front
    except (ValueError, OSError) as e:
        print(f"pkn restore: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    if a.task == "deblur" and a.blur is None:
        print("pkn restore: error: --task deblur needs --blur SIGMA", file=sys.stderr)
        return 2
    if a.task == "upsample" and a.scale is None:
        print("pkn restore: error: --task upsample needs --scale FACTOR", file=sys.stderr)
        return 2
    kw = {"kernel": a.kernel, "model": a.model, "noise": a.noise, "strength": a.strength}
    kw.update({k: v for k, v in (("blur", a.blur), ("scale", a.scale)) if v is not None})
    out_dir = Path(a.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"pkn restore: error: cannot create --out {a.out}: {e}", file=sys.stderr)
        return 2
    files, bad = expand(a.inputs)
    from tqdm import tqdm

    failed = [f"{s}: {why}" for s, why in bad]
    for line in failed:
        print(f"pkn restore: {line}", file=sys.stderr)
    done, skipped, taken = 0, 0, set()
    bar = tqdm(files, file=sys.stderr, disable=a.quiet, unit="image", desc="pkn restore")
    for q in bar:
        st = stem(q)
        outs = {
            "image": out_dir / f"{st}_pkn.tif",
            "json": out_dir / f"{st}_pkn.json",
            "maps": lambda n, st=st: out_dir / f"{st}_pkn_{n}.tif",
        }
        if outs["image"] in taken:
            msg = f"{q}: its output {outs['image'].name} is another input's (same name)"
            failed.append(msg)
            tqdm.write(f"pkn restore: {msg}", file=sys.stderr)
            continue
        taken.add(outs["image"])
        if not a.overwrite and (outs["image"].exists() or outs["json"].exists()):
            skipped += 1
            tqdm.write(
                f"pkn restore: {q}: skipped, {outs['image'].name} exists (--overwrite to replace)",
                file=sys.stderr,
            )
            continue
        try:
            _one(q, outs, a, kw)
            done += 1
        except Exception as e:  # one bad file must not stop the rest
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            failed.append(f"{q}: {why}")
            tqdm.write(f"pkn restore: {q}: failed: {why}", file=sys.stderr)
    bar.close()
    summary = f"pkn restore: {done} restored, {skipped} skipped, {len(failed)} failed -> {out_dir}"
    print(summary, file=sys.stderr)
    return 1 if failed else 0
