"""``python -m benchmarks microscopy``: real fluorescence noise against honest baselines.

Data (``--data``, default ``$PKN_DATA/microscopy``):

* ``w2s/{noisy,clean}``: 40 widefield fields of view, three channels each
  (``input_avg1_NNN_C.tif`` single exposure / ``target_avg400_NNN_C.tif`` average of 400,
  C = 0, 1, 2; ``--channels``), 512x512 uint8;
* ``srdtrans/{noisy,clean}``: 10 pairs, 490x490 uint8, paired by file name;
* ``bacteria16``: one 16-bit pair (``noisy_*`` / ``target_*``, camera offset included).

Images are read as float (uint8 / 255, uint16 / 65535); nothing is known about the noise.
Input and target of these data sets were rescaled separately, so every output ``y`` is
mapped by the least-squares fit ``clean ~ alpha * y + beta`` (one alpha, beta per image and
method) before PSNR and SSIM (:func:`pkn.metrics.affine_metrics`: skimage's metrics, 7x7
window, data range of the clean image).

Methods (``--methods``; † = knows the clean image, an upper bound rather than a rival):

* ``noisy``: the input itself;
* ``pkn``: ``pkn.restore(x, kernel=--kernel, model=--model)``, automatic noise estimation;
* ``gaussian-best`` †: per image the Gaussian blur (skimage, mirrored borders) whose sigma
  in [0.3, 4] px maximises the affine-fit PSNR (log grid of 12, then golden section to
  0.01 px);
* ``gat-bm3d``: generalized Anscombe transform with the calibrated Poisson-Gaussian model
  (:func:`benchmarks._baselines.noise_model`), ``bm3d.bm3d(f, sigma_psd=1)``, then the
  closed-form approximation of the exact unbiased inverse (Makitalo & Foi 2011, 2013);
* ``gat-nlm``: the same transform around ``skimage.restoration.denoise_nl_means(f,
  patch_size=5, patch_distance=6, h=0.8, sigma=1, fast_mode=True)`` (scikit-image's
  recommendation h = 0.8 sigma for fast mode with known sigma; sigma is 1 after the GAT);
* ``global`` † and ``oracle`` †: :func:`pkn.oracle.global_optimum` and
  :func:`pkn.oracle.local_oracle` of the ``pkn`` row's kernel with the model's options,
  on the noisy image normalised as ``pkn.restore`` does (0.1 / 99.9 percentiles) against
  the clean image mapped into the noisy image's units (least squares ``noisy ~ g * clean
  + o``), with the calibrated model's noise std map (floored at half its median, so the
  kernel's intensity range never vanishes where the fitted variance does). They are
  expensive: only every ``--oracle-subset``-th image of each set; the oracle's seconds
  include its global start;
* ``skimage``: what a user did before, ``denoise_nl_means(x, patch_size=3,
  patch_distance=2, h=0.8 * s, sigma=s, fast_mode=True)``, ``s = estimate_sigma(x)``
  (not run unless asked).

Seconds are wall time per image of the method alone (noise estimation included), in the
same process and thread setting (``--threads``); "x pkn" divides by pkn's mean seconds on
the same images, and "dB vs pkn" is the mean per-image PSNR difference to pkn on the same
images (the only fair comparison for subset rows). Per-image results are cached in a JSON
file (``--cache``); a rerun only computes what is missing, cheap methods first. The keys
hold what a result depends on: the model's hash and a fingerprint of the pkn sources
(``pkn``), the image's calibrated ``a, b`` (GAT, ``global``, ``oracle``), the oracle's
steps; so a changed library or noise estimator is measured afresh.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _baselines as bl
from ._common import (
    Cache,
    ModelUnavailable,
    affine_metrics,
    command_line,
    data_root,
    image_files,
    markdown_table,
    read_image,
    require_model,
    set_threads,
    task_kernels,
    timed,
)

__all__ = [
    "DATASETS",
    "KNOWS_CLEAN",
    "METHODS",
    "Pair",
    "find_pairs",
    "load_pairs",
    "main",
    "markdown",
    "run",
    "skimage_nlm",
]

PROG = "python -m benchmarks microscopy"
DATASETS = ("w2s", "srdtrans", "bacteria16")
CHANNELS = (0, 1, 2)
#: default methods, in table order
METHODS = ("noisy", "pkn", "gaussian-best", "gat-bm3d", "gat-nlm", "global", "oracle")
ALL_METHODS = (*METHODS, "skimage")
KNOWS_CLEAN = frozenset({"gaussian-best", "global", "oracle"})
#: methods run only on every --oracle-subset-th image
SUBSET_METHODS = frozenset({"global", "oracle"})
#: computation order: cheap first, so an interrupted run leaves whole rows
_COST = {
    "noisy": 0,
    "pkn": 0,
    "skimage": 0,
    "gaussian-best": 1,
    "gat-nlm": 1,
    "gat-bm3d": 2,
    "global": 3,
    "oracle": 3,
}
CACHE_PREFIX = "microscopy2"


# --------------------------------------------------------------------------- data
@dataclass(eq=False)
class Pair:
    """One noisy / clean pair on disk; ``group`` is its table (``w2s ch0``, ``srdtrans``)."""

    dataset: str
    group: str
    name: str
    noisy: Path
    clean: Path
    _images: tuple | None = field(default=None, repr=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """``(noisy, clean)`` float32, read once."""
        if self._images is None:
            x, c = read_image(self.noisy), read_image(self.clean)
            if x.shape != c.shape or x.ndim != 2:
                raise ValueError(
                    f"{self.dataset} {self.name}: need gray images of one shape, got noisy "
                    f"{x.shape} and clean {c.shape}."
                )
            self._images = (x, c)
        return self._images

    def forget(self) -> None:
        self._images = None


def _pair_key(path: Path) -> str:
    """W2S ``input_avg1_001_0`` / ``target_avg400_001_0`` -> ``001_0``; else the stem."""
    m = re.match(r"(?:input|target)_avg\d+_(.+)$", path.stem)
    return m.group(1) if m else path.stem


def _folder_pairs(folder: Path) -> list[tuple[str, Path, Path]]:
    """``(key, noisy, clean)`` from ``folder/noisy`` + ``folder/clean`` (paired by key),
    or from files ``noisy*`` + ``target*``/``clean*`` in ``folder`` (one pair)."""
    if (folder / "noisy").is_dir() or (folder / "clean").is_dir():
        for sub in ("noisy", "clean"):
            if not (folder / sub).is_dir():
                raise FileNotFoundError(f"{folder / sub} does not exist (--data, --datasets).")
        noisy = {_pair_key(p): p for p in image_files(folder / "noisy")}
        clean = {_pair_key(p): p for p in image_files(folder / "clean")}
        if not noisy:
            raise FileNotFoundError(f"no images in {folder / 'noisy'}.")
        missing = sorted(set(noisy) - set(clean))
        if missing:
            raise FileNotFoundError(f"no clean image for {missing[:5]} in {folder / 'clean'}.")
        return [(k, noisy[k], clean[k]) for k in sorted(noisy)]
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist (--data, --datasets).")
    files = image_files(folder)
    noisy = [p for p in files if p.stem.lower().startswith("noisy")]
    clean = [p for p in files if p.stem.lower().startswith(("target", "clean"))]
    if len(noisy) != 1 or len(clean) != 1:
        raise FileNotFoundError(
            f"{folder}: expected noisy/ and clean/ folders, or one noisy* and one "
            f"target*/clean* image; found {[p.name for p in files]}."
        )
    return [("0", noisy[0], clean[0])]


def find_pairs(
    root: str | Path, dataset: str, channels=CHANNELS, subset: int = 1
) -> dict[str, list[Pair]]:
    """The pairs of ``dataset`` under ``root`` by table group, every ``subset``-th of each.

    W2S is split by channel (the key's last ``_C``) into groups ``w2s chC``; other data
    sets are one group named after them.

    Raises
    ------
    FileNotFoundError
        When a folder is missing, empty, or a noisy image has no clean partner.
    """
    found = _folder_pairs(Path(root) / dataset)
    groups: dict[str, list[Pair]] = {}
    for key, n, c in found:
        group = dataset
        if dataset == "w2s":
            ch = key.rsplit("_", 1)[-1]
            if not ch.isdigit() or int(ch) not in channels:
                continue
            group = f"w2s ch{int(ch)}"
        groups.setdefault(group, []).append(Pair(dataset, group, key, n, c))
    if not groups:
        raise FileNotFoundError(f"no {dataset} pairs of channels {list(channels)} in {root}.")
    return {g: ps[:: max(1, subset)] for g, ps in sorted(groups.items())}


def load_pairs(folder: str | Path, n: int | None = None) -> list[tuple[str, tuple]]:
    """``(name, (noisy, clean))`` float32 pairs of one folder (the first ``n``)."""
    out = []
    for k, noisy, clean in _folder_pairs(Path(folder))[:n]:
        x, c = read_image(noisy), read_image(clean)
        if x.shape != c.shape:
            raise ValueError(f"{Path(folder).name} {k}: noisy {x.shape} vs clean {c.shape}.")
        out.append((k, (x, c)))
    return out


# --------------------------------------------------------------------------- methods
def skimage_nlm(x: np.ndarray) -> np.ndarray:
    """scikit-image NLM with its own noise estimate (the ``skimage`` method)."""
    from skimage.restoration import denoise_nl_means, estimate_sigma

    s = float(estimate_sigma(x))
    return denoise_nl_means(
        x, patch_size=3, patch_distance=2, h=0.8 * s, sigma=s, fast_mode=True
    ).astype(np.float32)


def _oracle_inputs(noisy: np.ndarray, clean: np.ndarray, model: bl.NoiseParams):
    """Noisy, target and noise std as ``(1, 1, H, W)`` tensors in normalised units, and
    ``(lo, scale)`` to undo the normalisation."""
    import torch

    from pkn.noise import noise_std_map

    lo, hi = (float(v) for v in np.percentile(noisy, [0.1, 99.9]))
    scale = hi - lo if hi > lo else 1.0
    A = np.stack([clean.ravel().astype(np.float64), np.ones(clean.size)], 1)
    g, o = np.linalg.lstsq(A, noisy.ravel().astype(np.float64), rcond=None)[0]
    x = torch.from_numpy(((noisy - lo) / scale).astype(np.float32))[None, None]
    target = torch.from_numpy(((g * clean + o - lo) / scale).astype(np.float32))[None, None]
    a, b = model.a / scale, (model.b + model.a * lo) / scale**2  # var in normalised units
    std = noise_std_map(x, (max(a, 0.0), b))
    return x, target, std.clamp_min(0.5 * float(std.median())), (lo, scale)


class _Methods:
    """The methods' implementations, sharing the loaded model and the global optimum."""

    def __init__(self, kernel: str, model, oracle_iters: int, threads: int = 0):
        self.kernel, self.model, self.oracle_iters = kernel, model, oracle_iters
        self.threads = threads  # BM3D's threads too (its library uses every core by default)
        self.options: dict | None = None
        self.glob: dict = {}  # image -> (global OracleResult, seconds)

    def _kernel_options(self) -> dict:
        if self.options is None:
            from pkn.models.io import load_model

            self.options = dict(load_model(self.model)[0].options)
        return self.options

    def __call__(self, method: str, pair: Pair) -> dict:
        """Run ``method`` on ``pair``; the per-image cache entry."""
        x, clean = pair.load()
        extra: dict = {}
        if method == "noisy":
            out, dt = x, 0.0
        elif method == "pkn":
            from pkn import restore

            r, dt = timed(restore, x, "denoise", kernel=self.kernel, model=self.model)
            out, extra = r.image, {"noise": r.info["noise"]}
        elif method == "skimage":
            out, dt = timed(skimage_nlm, x)
        elif method == "gaussian-best":
            (out, sigma), dt = timed(bl.gaussian_best, x, clean)
            extra = {"sigma": sigma}
        elif method in ("gat-bm3d", "gat-nlm"):
            fn = bl.gat_bm3d if method == "gat-bm3d" else bl.gat_nlm

            def run(img):
                m = bl.noise_model(img)
                if method == "gat-bm3d":
                    return fn(img, m, threads=self.threads), m
                return fn(img, m), m

            (out, m), dt = timed(run, x)
            extra = {"noise": {"a": m.a, "b": m.b, "source": m.source}}
        elif method in ("global", "oracle"):
            out, dt, extra = self._oracle(method, pair)
        else:
            raise ValueError(f"unknown method {method!r}")
        return {**affine_metrics(out, clean), "seconds": float(dt), **extra}

    def _oracle(self, method: str, pair: Pair):
        from pkn.oracle import global_optimum, local_oracle

        x, clean = pair.load()
        opts = self._kernel_options()
        key = (pair.group, pair.name)

        def start():
            inputs = _oracle_inputs(x, clean, bl.noise_model(x))
            return inputs, global_optimum(self.kernel, *inputs[:3], options=opts)

        if key not in self.glob:
            (inputs, glob), dt = timed(start)
            self.glob = {key: (glob, dt, inputs)}  # the latest image only
        glob, dt_glob, (xt, ct, std, (lo, scale)) = self.glob[key]
        if method == "global":
            res, dt = glob, dt_glob
        else:
            kw = {"iters": self.oracle_iters, "init": glob, "options": opts}
            res, dt = timed(local_oracle, self.kernel, xt, ct, std, **kw)
            dt += dt_glob
        out = res.output[0, 0].numpy() * scale + lo
        params = {k: float(v.mean()) for k, v in res.maps.items()}
        return out, dt, {"maps_mean": params}


# --------------------------------------------------------------------------- runner
def _library_fingerprint() -> str:
    """Short hash of the installed pkn sources: pkn results are recomputed when the
    library changes (they are cheap)."""
    import pkn

    h = hashlib.sha256()
    for f in sorted(Path(pkn.__file__).parent.rglob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:8]


#: methods whose result depends on the calibrated noise model (its a, b go into the key)
NOISE_METHODS = frozenset({"gat-bm3d", "gat-nlm", "global", "oracle"})


def _tags(methods, kernel: str, model_sha: str, oracle_iters: int) -> dict[str, str]:
    """Cache-key suffix per method: what its result depends on besides the image (and,
    for :data:`NOISE_METHODS`, the image's noise model, added per image)."""
    tags = {m: "" for m in methods}
    for m in methods:
        if m == "pkn":
            tags[m] = f"[{kernel}]@{model_sha[:12]}+lib{_library_fingerprint()}"
        elif m == "global":
            tags[m] = f"[{kernel}@{model_sha[:12]}]"
        elif m == "oracle":
            tags[m] = f"[{kernel}@{model_sha[:12]},{oracle_iters}it]"
    return tags


def _noise_tag(m: bl.NoiseParams) -> str:
    """The noise model in a cache key: results are reused only for the same a, b."""
    return f"[{m.source} a={m.a:.6g} b={m.b:.6g}]"


def run(
    methods=METHODS,
    datasets=DATASETS,
    *,
    channels=CHANNELS,
    data=None,
    subset: int = 1,
    oracle_subset: int = 4,
    oracle_iters: int = 150,
    kernel: str | None = None,
    model=None,
    cache=None,
    threads: int = 0,
    log=None,
) -> tuple[dict, dict]:
    """Compute (or read from the cache) every method on every pair.

    Returns
    -------
    (dict, dict)
        ``{group: {method: [per-image entries with "image"]}}`` (groups: ``w2s ch0``...,
        ``srdtrans``, ``bacteria16``) and notes (model, data, subsets).

    Raises
    ------
    ModelUnavailable
        When a method needs the PKN model and it cannot be loaded.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    set_threads(threads)
    root = Path(data) if data else data_root() / "microscopy"
    if kernel is None and model is not None:  # the kernel the model drives
        from pkn.restoration import _model_kernel

        try:
            kernel = _model_kernel(model)
        except (ValueError, FileNotFoundError, OSError):
            pass  # require_model below says what is missing
    kernel = kernel or task_kernels("denoise")[0]
    model = model or kernel
    notes: dict = {
        "data": str(root),
        "kernel": kernel,
        "subset": subset,
        "oracle_subset": oracle_subset,
        "oracle_iters": oracle_iters,
        "noise_source": bl.noise_source(),
    }
    sha = ""
    if {"pkn", "global", "oracle"} & set(methods):
        info = require_model(model, kernel)
        sha = info["sha256"]
        notes["model"] = f"{info['name']} (sha256 {sha[:12]})"
    groups: dict[str, list[Pair]] = {}
    for ds in datasets:
        groups.update(find_pairs(root, ds, channels, subset))
    tags = _tags(methods, kernel, sha, oracle_iters)
    impl = _Methods(kernel, model, oracle_iters, threads)
    cache = Cache(cache)

    noise: dict[int, str] = {}  # id(pair) -> _noise_tag of its calibrated model

    def key(method, pair):
        tag = tags[method]
        if method in NOISE_METHODS:
            if id(pair) not in noise:
                noise[id(pair)] = _noise_tag(bl.noise_model(pair.load()[0]))
            tag += noise[id(pair)]
        return f"{CACHE_PREFIX}|{pair.dataset}|{method}{tag}|{pair.name}"

    def pairs_of(method, ps):
        return ps[:: max(1, oracle_subset)] if method in SUBSET_METHODS else ps

    warmed = False
    for cost in sorted({_COST[m] for m in methods}):
        tier = [m for m in methods if _COST[m] == cost]
        for group, ps in groups.items():
            for i, pair in enumerate(ps):
                todo = [m for m in tier if pair in pairs_of(m, ps) and key(m, pair) not in cache]
                for m in todo:
                    if m == "pkn" and not warmed:  # first call loads the model: not timed
                        from pkn import restore

                        restore(pair.load()[0][:64, :64], kernel=kernel, model=model)
                        warmed = True
                    res = impl(m, pair)
                    cache.put(key(m, pair), res)
                    log(
                        f"  [{group} {i + 1}/{len(ps)}] {pair.name} {m}: {res['psnr']:.2f} dB, "
                        f"SSIM {res['ssim']:.4f}, {res['seconds']:.2f} s"
                    )
                pair.forget()
    results = {
        group: {
            m: [{"image": p.name, **cache[key(m, p)]} for p in pairs_of(m, ps)] for m in methods
        }
        for group, ps in groups.items()
    }
    notes["n_images"] = {g: len(ps) for g, ps in groups.items()}
    return results, notes


# --------------------------------------------------------------------------- tables
def _with_w2s_all(results: dict) -> dict:
    """Add the group ``w2s all`` (every W2S channel together) when there are several."""
    w2s = [g for g in results if g.startswith("w2s ch")]
    if len(w2s) < 2:
        return results
    out = {}
    for g, rows in results.items():
        out[g] = rows
        if g == w2s[-1]:
            out["w2s all"] = {
                m: [{**e, "image": f"{gg}/{e['image']}"} for gg in w2s for e in results[gg][m]]
                for m in rows
            }
    return out


@dataclass
class Row:
    """Summary of one method in one group."""

    method: str
    n: int
    psnr: float
    ssim: float
    seconds: float
    x_pkn: float | None  # seconds / pkn's seconds on the same images
    vs_pkn: float | None  # mean PSNR difference to pkn on the same images
    entries: list


def summarise(rows: dict) -> dict[str, Row]:
    """``{method: Row}`` for one group's ``{method: entries}``."""
    pkn = {e["image"]: e for e in rows.get("pkn", [])}
    out = {}
    for m, ents in rows.items():
        if not ents:
            continue
        same = [e for e in ents if e["image"] in pkn]
        x_pkn = vs = None
        if same and m != "pkn":
            t_pkn = float(np.mean([pkn[e["image"]]["seconds"] for e in same]))
            t = float(np.mean([e["seconds"] for e in same]))
            x_pkn = t / t_pkn if t_pkn > 0 and m != "noisy" else None
            vs = float(np.mean([e["psnr"] - pkn[e["image"]]["psnr"] for e in same]))
        out[m] = Row(
            m,
            len(ents),
            float(np.mean([e["psnr"] for e in ents])),
            float(np.mean([e["ssim"] for e in ents])),
            float(np.mean([e["seconds"] for e in ents])),
            x_pkn,
            vs,
            ents,
        )
    return out


def _label(m: str) -> str:
    return m + (" †" if m in KNOWS_CLEAN else "")


def strongest_baseline(summary: dict[str, Row]) -> Row | None:
    """The best automatic (blind) method other than pkn, by PSNR over all images."""
    n = max((r.n for r in summary.values()), default=0)
    blind = [r for m, r in summary.items() if m not in KNOWS_CLEAN | {"pkn", "noisy"}]
    blind = [r for r in blind if r.n == n]
    return max(blind, key=lambda r: r.psnr, default=None)


def group_table(summary: dict[str, Row], bold: bool = True) -> str:
    """One group's table: methods as rows; best PSNR / SSIM over full rows in bold."""
    n = max(r.n for r in summary.values())
    full = [r for m, r in summary.items() if r.n == n and m != "noisy"]
    best_p = max((r.psnr for r in full), default=None)
    best_s = max((r.ssim for r in full), default=None)

    def b(text, on):
        return f"**{text}**" if bold and on else text

    body = []
    for m, r in summary.items():
        body.append(
            [
                _label(m),
                str(r.n) if r.n == n else f"{r.n} of {n}",
                b(f"{r.psnr:.2f}", r.n == n and m != "noisy" and r.psnr == best_p),
                b(f"{r.ssim:.4f}", r.n == n and m != "noisy" and r.ssim == best_s),
                "-" if m == "noisy" else f"{r.seconds:.2f}",
                "-" if r.x_pkn is None else f"{r.x_pkn:.1f}x",
                "-" if r.vs_pkn is None else f"{r.vs_pkn:+.2f}",
            ]
        )
    header = ["method", "images", "PSNR dB", "SSIM", "s / image", "time / pkn", "dB vs pkn"]
    return markdown_table(header, body)


def _noise_note(summary: dict[str, Row]) -> str:
    parts = []
    gat = [m for m in ("gat-bm3d", "gat-nlm") if m in summary][:1]  # the same model
    for m in (*gat, "pkn"):
        if m in summary:
            es = [e["noise"] for e in summary[m].entries if "noise" in e]
            pg = [e for e in es if "a" in e]
            if pg:
                a, b = np.median([e["a"] for e in pg]), np.median([e["b"] for e in pg])
                src = "pkn.restore's estimate" if m == "pkn" else f"pkn.noise.{pg[0]['source']}"
                parts.append(f"{src}: median a {a:.2e}, b {b:.2e}")
            if m == "pkn" and len(pg) < len(es):
                parts.append(f"pkn.restore chose AWGN on {len(es) - len(pg)} of {len(es)}")
    if "gaussian-best" in summary:
        s = np.median([e["sigma"] for e in summary["gaussian-best"].entries])
        parts.append(f"gaussian-best: median sigma {s:.2f} px")
    return "; ".join(parts)


def overview(summaries: dict[str, dict[str, Row]], methods) -> str:
    """One row per group, one PSNR / SSIM column per method."""
    header = ["data set", "images", *(_label(m) for m in methods)]
    body = []
    for g, summary in summaries.items():
        n = max(r.n for r in summary.values())
        cells = []
        for m in methods:
            r = summary.get(m)
            if r is None:
                cells.append("-")
                continue
            vs = "" if r.vs_pkn is None else f", {r.vs_pkn:+.2f} vs pkn"
            sub = "" if r.n == n else f" ({r.n} img{vs})"
            cells.append(f"{r.psnr:.2f} / {r.ssim:.3f}{sub}")
        body.append([g, str(n), *cells])
    return markdown_table(header, body)


def markdown(results: dict, methods, notes: dict, command: str) -> str:
    """The tables (overview, then one per group) with the command and protocol notes."""
    results = _with_w2s_all(results)
    summaries = {g: summarise(rows) for g, rows in results.items()}
    sub = notes["subset"]
    lines = [
        f"Command: `{command}`",
        "",
        f"Real fluorescence noise, {notes['data']}"
        + (f" (--subset {sub}: one pair in {sub} of each set / channel)" if sub > 1 else "")
        + ". PSNR dB / SSIM after the least-squares fit clean ~ alpha * output + beta per "
        "image (input and target were rescaled separately), data range of the clean "
        "image; mean over images. † knows the clean image (an upper bound, not a rival). "
        f"global / oracle: one image in {notes['oracle_subset']} of those only "
        f"({notes['oracle_iters']} oracle Adam steps); compare them by 'dB vs pkn', the "
        "mean difference to pkn on the same images. Seconds: wall time per image, same "
        "run and threads. Noise model of the GAT methods: "
        f"pkn.noise.{notes['noise_source']}."
        + (f" PKN: kernel {notes['kernel']}, model {notes['model']}." if "model" in notes else ""),
        "",
        overview(summaries, methods),
    ]
    for g, summary in summaries.items():
        lines += ["", f"**{g}** ({_noise_note(summary) or 'no noise model used'})", ""]
        lines.append(group_table(summary))
        best = strongest_baseline(summary)
        if best is not None and best.vs_pkn is not None and best.x_pkn is not None:
            lines += [
                "",
                f"Strongest blind baseline: {best.method}, {best.vs_pkn:+.2f} dB vs "
                f"pkn at {best.x_pkn:.0f}x its time.",
            ]
    return "\n".join(lines)


def text(results: dict, methods) -> str:
    """Plain tables for the terminal (no bold, aligned)."""
    out = []
    for g, rows in _with_w2s_all(results).items():
        t = group_table(summarise(rows), bold=False).splitlines()
        cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in t if "---" not in ln]
        w = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
        out.append(g)
        out += ["  " + "  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in cells]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line; returns the exit status."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument(
        "--channels",
        nargs="+",
        type=int,
        default=list(CHANNELS),
        help="W2S channels (default: %(default)s)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=ALL_METHODS,
        metavar="METHOD",
        help=f"from {', '.join(ALL_METHODS)} (default: all but skimage)",
    )
    p.add_argument(
        "--data", default=None, help="folder of the data sets (default: $PKN_DATA/microscopy)"
    )
    p.add_argument(
        "--subset",
        type=int,
        default=1,
        help="every Nth pair of each data set / W2S channel (default: all)",
    )
    p.add_argument(
        "--oracle-subset",
        type=int,
        default=4,
        help="global / oracle on every Nth of those pairs (default: %(default)s)",
    )
    p.add_argument("--oracle-iters", type=int, default=150, help="local oracle Adam steps")
    p.add_argument(
        "--kernel",
        default=None,
        choices=task_kernels("denoise"),
        help="kernel of pkn / global / oracle (default: the model's, else the first of "
        "%(choices)s)",
    )
    p.add_argument("--model", default=None, help="model name or .safetensors (default: kernel)")
    p.add_argument("--cache", default=None, help="JSON file caching per-image results")
    p.add_argument(
        "--threads", type=int, default=0, help="threads of torch and of BM3D (0: their defaults)"
    )
    p.add_argument("--markdown", action="store_true", help="markdown tables with notes")
    a = p.parse_args(argv)
    methods = list(dict.fromkeys(a.methods))
    if a.subset < 1 or a.oracle_subset < 1:
        p.error("--subset and --oracle-subset must be >= 1")
    try:
        results, notes = run(
            methods,
            list(dict.fromkeys(a.datasets)),
            channels=a.channels,
            data=a.data,
            subset=a.subset,
            oracle_subset=a.oracle_subset,
            oracle_iters=a.oracle_iters,
            kernel=a.kernel,
            model=a.model,
            cache=a.cache,
            threads=a.threads,
        )
    except (ModelUnavailable, FileNotFoundError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(
            f"{PROG}: error: {e}; install the bench extra: pip install -e '.[bench]'",
            file=sys.stderr,
        )
        return 2
    if a.markdown:
        print(markdown(results, methods, notes, command_line(PROG, argv)))
    else:
        print(text(results, methods))
    return 0
