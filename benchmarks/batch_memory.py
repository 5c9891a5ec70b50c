"""``python -m benchmarks batch_memory``: peak memory of ``python -m pkn restore`` on a
big uint16 stack, OME-Zarr in, OME-Zarr out (the lazy path).

The input, ``(planes, 2048, 2048)`` uint16 (``--size``), is generated plane by plane into
``runs/batch_memory/in_<planes>.ome.zarr`` (one zarr chunk per plane; never whole in
memory; kept and reused): a smooth seeded pattern with Poisson-Gaussian noise. Then the
batch command runs in a child process for each ``--planes`` count, and its resident set
is sampled every 0.2 s with psutil (peak = the larger of the samples and the child's
``ru_maxrss``). A lazy pipeline holds a few planes at a time whatever the stack's depth,
so the peak should not grow with the planes; the time per plane comes from the
difference between the runs. Prints a markdown table (and writes it with the raw numbers
to ``runs/batch_memory/results.{md,json}``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "batch_memory"


def _plane(block_id, shape, seed: int = 0):
    """One noisy uint16 plane (seeded by its index)."""
    import numpy as np

    z = block_id[0]
    h, w = shape
    rng = np.random.default_rng([seed, z])
    y, x = np.ogrid[:h, :w]
    clean = 800 + 600 * (np.sin(x / 37.0 + z / 5.0) * np.cos(y / 53.0) + 1)  # 800..2000
    clean = clean.astype(np.float32)
    noisy = rng.poisson(clean / 4.0).astype(np.float32) * 4.0 + rng.normal(100, 20, (h, w))
    return np.clip(noisy, 0, 65535).astype(np.uint16)[None]


def make_input(planes: int, h: int, w: int) -> Path:
    """``runs/batch_memory/in_<planes>x<h>x<w>.ome.zarr``, built chunk by chunk if absent."""
    import dask
    import dask.array as da
    import numpy as np

    from pkn._io import Geometry, Output, write_images

    path = RUNS / f"in_{planes}x{h}x{w}.ome.zarr"
    if path.exists():
        return path
    RUNS.mkdir(parents=True, exist_ok=True)
    lazy = da.map_blocks(
        lambda block_id=None: _plane(block_id, (h, w)),
        chunks=((1,) * planes, (h,), (w,)),
        dtype=np.uint16,
        meta=np.empty((0, 0, 0), np.uint16),
    )
    g = Geometry(("z", "y", "x"), (1.0, 0.1, 0.1), (0.0, 0.0, 0.0), ("micrometer",) * 3)
    with dask.config.set(scheduler="threads", num_workers=2):
        write_images([Output(path, lazy, g)])
    return path


def _sample(proc: subprocess.Popen, out: list) -> None:
    import psutil

    p = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(True))
        except psutil.Error:
            break
        out.append((time.perf_counter(), rss))
        time.sleep(0.2)


def run_batch(src: Path, out: Path, extra: list[str]) -> dict:
    """Run the batch command on ``src`` in a child; its wall time and peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "pkn", "restore", str(src), "--out", str(out), "--quiet"]
    cmd += extra
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    samples: list = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    th = threading.Thread(target=_sample, args=(proc, samples), daemon=True)
    th.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    th.join()
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    peak = max([r for _, r in samples] + ([maxrss] if maxrss > before * 1024 else []))
    return {
        "command": " ".join(cmd[1:]),
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "rss_samples_mib": [round(r / 2**20) for _, r in samples[:: max(1, len(samples) // 50)]],
        "output_mib": round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks batch_memory", description=__doc__)
    p.add_argument("--planes", default="4,16", help="plane counts to run, comma-separated")
    p.add_argument("--size", default="2048x2048", help="HxW of a plane")
    p.add_argument(
        "--args",
        default="--noise 4,400",
        help="extra batch-command arguments (default: the noise model given, as a lab would)",
    )
    a = p.parse_args(argv)
    h, w = (int(v) for v in a.size.lower().split("x"))
    counts = [int(v) for v in a.planes.split(",")]
    env = os.environ
    rows = []
    for n in counts:
        t = time.perf_counter()
        src = make_input(n, h, w)
        made = time.perf_counter() - t
        r = run_batch(src, RUNS / f"out_{n}", a.args.split())
        r.update(planes=n, input_mib=round(n * h * w * 2 / 2**20), input_build_s=round(made, 1))
        rows.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "rss_samples_mib"}), flush=True)
    lines = [
        f"`python -m benchmarks batch_memory --planes {a.planes} --size {a.size} "
        f'--args="{a.args}"` (PKN_THREADS={env.get("PKN_THREADS", "unset")}, '
        f"{os.cpu_count()} CPUs)",
        "",
        "| planes | input (uint16) | output | wall | per plane | peak RSS |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['planes']} | {r['input_mib']} MiB | {r['output_mib']} MiB | {r['wall_s']} s "
            f"| {r['wall_s'] / r['planes']:.1f} s | {r['peak_rss_mib']} MiB |"
        )
    if len(rows) > 1:
        d = (rows[-1]["wall_s"] - rows[0]["wall_s"]) / (rows[-1]["planes"] - rows[0]["planes"])
        growth = rows[-1]["peak_rss_mib"] - rows[0]["peak_rss_mib"]
        lines += [
            "",
            f"Marginal time per plane: {d:.1f} s; peak RSS change from {rows[0]['planes']} to "
            f"{rows[-1]['planes']} planes: {growth:+.0f} MiB.",
        ]
    md = "\n".join(lines)
    print(md)
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / "results.md").write_text(md + "\n")
    (RUNS / "results.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
