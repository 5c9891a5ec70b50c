"""``python -m pkn restore``: restore many images (TIFF, PNG, OME-Zarr) in one go.

Inputs are files, folders (their TIFF/PNG files and ``*.zarr`` stores, not recursive)
and glob patterns. Each input gives the restored image, float32, with the input's axes,
pixel sizes, units and translate (``--format auto``: OME-Zarr for OME-Zarr input, else
OME-TIFF; ``OUT/<stem>_pkn.ome.zarr`` or ``OUT/<stem>_pkn.ome.tif``), the provenance
(model, SHA-256, kernel, noise model, strength, version, input) in its metadata, and
``OUT/<stem>_pkn.json`` (the same provenance plus the input's path, size and SHA-256);
``--maps`` also writes ``OUT/<stem>_pkn_<map>.ome.(zarr|tif)`` with the geometry that
overlays them on the image. OME-Zarr input is read and written lazily, plane by plane
(a stack never sits whole in memory); ``--scheduler ADDRESS`` computes on a running
dask.distributed cluster. A file that fails is reported on stderr and the others go on;
existing outputs are skipped unless ``--overwrite``. Exit status: 0 when every input was
restored or skipped, 1 when any failed, 2 for bad arguments (nothing is processed).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main"]

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
    msg = (
        "--noise must be 'auto', a sigma >= 0 (e.g. 0.05) or 'a,b' (Poisson-Gaussian "
        f"variance a * x + b, a, b >= 0), got {v!r}"
    )
    try:
        if "," in v:
            a, b = (float(t) for t in v.split(","))
            if not (np.isfinite(a) and np.isfinite(b) and a >= 0 and b >= 0 and a + b > 0):
                raise ValueError
            return (a, b)
        s = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(msg) from None
    if not (np.isfinite(s) and s >= 0):
        raise argparse.ArgumentTypeError(msg)
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


def _positive(name: str):
    def check(v: str) -> float:
        try:
            s = float(v)
        except ValueError:
            s = float("nan")
        if not (np.isfinite(s) and s > 0):
            raise argparse.ArgumentTypeError(f"{name} must be a number > 0, got {v!r}")
        return s

    return check


def _axis(v: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--channel-axis must be an integer, got {v!r}") from None


def _parser() -> _Parser:
    from .models.procedural import network_kernels, tasks

    p = _Parser(prog="python -m pkn restore", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--task", default="denoise", choices=sorted(tasks()))
    p.add_argument(
        "--kernel", choices=network_kernels(), help="default: the --model's kernel, else the task's"
    )
    p.add_argument("--model", help="a shipped model name or a .safetensors file")
    p.add_argument("--noise", type=_noise, default=None, help="auto (default), sigma, or a,b")
    p.add_argument("--strength", type=_strength, default=1.0, help="a number >= 0 or auto")
    p.add_argument("--blur", type=_positive("--blur"), help="deblurring: the Gaussian sigma (px)")
    p.add_argument("--scale", type=_positive("--scale"), help="upsampling: the factor")
    p.add_argument(
        "--channel-axis",
        type=_axis,
        help="axis of the channels (default: the input's c/C/S axis, RGB PNGs -1, else none)",
    )
    p.add_argument("--per-plane", action="store_true", help="noise/normalisation per plane")
    p.add_argument("--maps", action="store_true", help="also write the parameter maps")
    p.add_argument(
        "--format",
        choices=("auto", "tif", "zarr"),
        default="auto",
        help="output format: OME-TIFF, OME-Zarr, or auto (default: OME-Zarr for OME-Zarr "
        "input, else OME-TIFF)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="compute on a running dask.distributed scheduler (e.g. tcp://host:8786); "
        "needs the 'cluster' extra and a folder the workers can read and write",
    )
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
        if q.is_dir() and not _is_zarr(q):
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


def _is_zarr(q: Path) -> bool:
    return q.suffix.lower() == ".zarr" or (q / "zarr.json").exists() or (q / ".zgroup").exists()


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


def _sha256(q: Path) -> str:
    """SHA-256 of a file; of a folder (a zarr store): of its files' relative paths and
    contents, in sorted order."""
    h = hashlib.sha256()
    files = [q] if q.is_file() else sorted(f for f in q.rglob("*") if f.is_file())
    for f in files:
        if f is not q:
            h.update(f.relative_to(q).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _size(q: Path) -> int:
    if q.is_file():
        return q.stat().st_size
    return sum(f.stat().st_size for f in q.rglob("*") if f.is_file())


def _outputs(out_dir: Path, q: Path, fmt: str) -> dict:
    st = stem(q)
    zarr_out = fmt == "zarr" or (fmt == "auto" and _is_zarr(q))
    ext = ".ome.zarr" if zarr_out else ".ome.tif"
    return {
        "image": out_dir / f"{st}_pkn{ext}",
        "json": out_dir / f"{st}_pkn.json",
        "maps": lambda n: out_dir / f"{st}_pkn_{n}{ext}",
    }


#: TIFF inputs over this many bytes are restored lazily, page by page (as OME-Zarr
#: inputs always are), unless the options need the whole stack (per plane, auto strength)
LAZY_TIFF_BYTES = 256 * 2**20


def _big_tiff(q: Path, a) -> bool:
    """A TIFF too big to hold at the in-memory restore's 4x plus its result."""
    return (
        q.suffix.lower() in (".tif", ".tiff")
        and q.is_file()
        and q.stat().st_size > LAZY_TIFF_BYTES
        and not a.per_plane
        and a.strength != "auto"
    )


def _one(q: Path, outs: dict, a, kw: dict, names: list[str]) -> None:
    from ._io import Output, map_geometry, read_image, write_images
    from .restoration import restore

    im = read_image(q, lazy=True if a.scheduler or _big_tiff(q, a) else None)
    data = im.data
    if a.scheduler and not _is_dask(data):
        from ._io import _lazy

        data = _lazy(data)
    ca = a.channel_axis if a.channel_axis is not None else im.channel_axis
    r = restore(data, a.task, channel_axis=ca, per_plane=a.per_plane, **kw)
    g = im.geometry
    if ca is not None and g.channel_axis != ca % len(g.axes):  # the user's channel axis
        axes = [n if n != "c" else "q" for n in g.axes]
        axes[ca % len(axes)] = "c"
        g = type(g)(tuple(axes), g.scale, g.translate, g.units)
    out = r.image.astype(np.float32) if r.image.dtype != np.float32 else r.image
    if out.shape != data.shape:  # upsampling: index i lands on n_in / n_out * (i + 0.5) - 0.5
        f = {
            ax: data.shape[k] / out.shape[k]
            for k, ax in enumerate(g.axes)
            if out.shape[k] != data.shape[k]
        }
        g_out = g.derived(f, {ax: 0.5 * v - 0.5 for ax, v in f.items()})
    else:
        g_out = g
    info = dict(r.info)
    info["input"] = {"path": str(q.resolve()), "size": _size(q), "sha256": _sha256(q)}
    info["input_shape"], info["input_dtype"] = list(data.shape), str(data.dtype)
    info["axes"], info["channel_axis"] = "".join(g.axes), ca
    info["geometry"] = g_out.as_dict()
    info["output"] = str(outs["image"].resolve())
    version = im.ngff_version if im.ngff_version in ("0.4", "0.5") else "0.4"
    items = [Output(outs["image"], out, g_out, info, rgb=im.rgb, ngff_version=version)]
    if a.maps:
        gm = map_geometry(g, r.map_scale)
        info["maps"] = {}
        for name, m in r.maps.items():
            p = outs["maps"](name)
            names.append(p.name)
            mi = {**info, "map": name, "map_scale": r.map_scale, "geometry": gm.as_dict()}
            items.append(Output(p, m, gm, mi, rgb=im.rgb, ngff_version=version))
            info["maps"][name] = str(p.resolve())
    there = [o.path.name for o in items if o.path.exists()]
    if there and not a.overwrite:  # a map of an earlier run
        raise FileExistsError(f"{there[0]} exists (--overwrite to replace)")
    write_images(items, overwrite=a.overwrite)
    outs["json"].write_text(json.dumps(info, indent=2, default=str))


def _is_dask(x) -> bool:
    return type(x).__module__.startswith("dask")


def _err(msg: str) -> int:
    print(f"pkn restore: error: {msg}", file=sys.stderr)
    return 2


def _check_channel_axis(files: list[Path], ca: int | None) -> str | None:
    """The first input ``--channel-axis`` is out of range for, as a message."""
    if ca is None:
        return None
    for q in files:
        try:
            n = _ndim(q)
        except Exception:  # unreadable: reported as a failed file later
            continue
        if not -n <= ca < n:
            return f"--channel-axis {ca} is out of range for {q} ({n}-D: {-n}..{n - 1})"
    return None


def _ndim(q: Path) -> int:
    """The input's number of dimensions, from its header where it has one."""
    from ._io import read_image

    if q.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(q) as tif:
            return len(tif.series[0].shape)
    return np.ndim(read_image(q, lazy=True).data)


class _Progress:
    """A tqdm bar over the tasks of each dask computation (local schedulers)."""

    def __init__(self, disable: bool):
        self.disable = disable

    def __enter__(self):
        if self.disable:
            return self
        from dask.callbacks import Callback
        from tqdm import tqdm

        bar = {}

        class _CB(Callback):
            def _start_state(self, dsk, state):
                n = sum(len(state[k]) for k in ("ready", "waiting", "running"))
                bar["b"] = tqdm(total=n, file=sys.stderr, unit="task", leave=False, desc="  tasks")

            def _posttask(self, key, result, dsk, state, worker_id):
                bar["b"].update(1)

            def _finish(self, dsk, state, errored):
                bar.pop("b").close()

        self._cb = _CB()
        self._cb.__enter__()
        return self

    def __exit__(self, *exc):
        if not self.disable:
            self._cb.__exit__(*exc)


def main(argv: list[str] | None = None) -> int:
    try:
        a = _parser().parse_intermixed_args(argv)
    except _ArgError as e:
        return _err(e)
    from .models.io import load_model
    from .models.procedural import get_spec, tasks
    from .restoration import _kernel_model, _model_kernel

    try:
        kernel = a.kernel or _model_kernel(a.model) or tasks()[a.task]
    except (ValueError, OSError) as e:
        return _err(str(e).splitlines()[0])
    spec_task = get_spec(kernel).task
    if spec_task != a.task:
        return _err(f"--kernel {kernel} does {spec_task}, not {a.task}")
    try:
        # a bad model name or file, or one for another kernel: exit 2 up front
        _kernel_model(a.model, kernel, load_model)
    except (ValueError, OSError) as e:
        return _err(str(e).splitlines()[0])
    if a.task == "deblur" and a.blur is None:
        return _err("--task deblur needs --blur SIGMA")
    if a.task == "upsample" and a.scale is None:
        return _err("--task upsample needs --scale FACTOR")
    files, bad = expand(a.inputs)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return _err(f"{bad[0][0]}: {bad[0][1]}{more}")
    why = _check_channel_axis(files, a.channel_axis)
    if why:
        return _err(why)
    kw = {"kernel": kernel, "model": a.model, "noise": a.noise, "strength": a.strength}
    kw.update({k: v for k, v in (("blur", a.blur), ("scale", a.scale)) if v is not None})
    out_dir = Path(a.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return _err(f"cannot create --out {a.out}: {e}")
    client = None
    if a.scheduler:
        try:
            from distributed import Client
        except ImportError:
            return _err("--scheduler needs dask.distributed: pip install 'napari-pkn[cluster]'")
        try:
            client = Client(a.scheduler, timeout="10s")
        except Exception as e:
            return _err(f"cannot connect to --scheduler {a.scheduler}: {str(e).splitlines()[0]}")
    try:
        return _run(a, files, kw, out_dir)
    finally:
        if client is not None:
            client.close()


def _run(a, files: list[Path], kw: dict, out_dir: Path) -> int:
    from tqdm import tqdm

    failed: list[str] = []
    done, skipped, taken = 0, 0, set()
    bar = tqdm(files, file=sys.stderr, disable=a.quiet, unit="image", desc="pkn restore")
    for q in bar:
        outs = _outputs(out_dir, q, a.format)
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
            with _Progress(a.quiet or bool(a.scheduler)):
                _one(q, outs, a, kw, [])
            done += 1
        except Exception as e:  # one bad file must not stop the rest
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            failed.append(f"{q}: {why}")
            tqdm.write(f"pkn restore: {q}: failed: {why}", file=sys.stderr)
    bar.close()
    summary = f"pkn restore: {done} restored, {skipped} skipped, {len(failed)} failed -> {out_dir}"
    print(summary, file=sys.stderr)
    return 1 if failed else 0
