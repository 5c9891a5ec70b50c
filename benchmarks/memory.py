"""Peak memory of ``pkn.restore`` on big images: in memory and lazily (dask, zarr).

Every case runs in a fresh Python process and reports that process's peak resident set
size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so cases do not inherit each
other's peaks. Cases:

* ``baseline``: ``import pkn`` and the NLM model loaded, nothing restored;
* ``numpy-4k`` / ``numpy-8k``: ``pkn.restore`` of a 4000 x 4000 / 8000 x 8000 float32
  image (noise estimated), result kept in memory;
* ``dask-8k``: the 8000 x 8000 image as a zarr array on disk (1024 x 1024 chunks,
  written by another process), restored lazily and the image and maps written to zarr
  arrays (``dask.array.to_zarr``, computed together, 2 threads), so neither input nor
  result is ever whole in memory;
* ``diff-4k``: the 4000 x 4000 image in memory and as a dask array (1024 x 1024 chunks):
  the largest difference of the dask image and maps from the in-memory ones, relative to
  the image's range (the image is under ``pkn._lazy.SAMPLE_BYTES``, so both are
  calibrated on all of it);
* ``diff-8k``: the same for the 8000 x 8000 image (over ``SAMPLE_BYTES``: the lazy
  restore reads only the calibration crops an in-memory restore of a big image uses).

The image: a smooth pattern in [0.2, 0.8] plus Gaussian noise of sigma 0.08, seeded.
Run ``python -m benchmarks memory`` (``--cases numpy-4k,diff-4k`` for some; ``--threads``
for the torch threads, default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CASES = ("baseline", "numpy-4k", "numpy-8k", "dask-8k", "diff-4k", "diff-8k")


def _image(n: int):
    """The ``n x n`` float32 test image, written band by band (no full-size temporaries)."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = np.empty((n, n), np.float32)
    xs = np.linspace(0, 12 * np.pi, n, dtype=np.float32)
    ys = np.linspace(0, 12 * np.pi, n, dtype=np.float32)
    for y in range(0, n, 128):
        band = 0.5 + 0.3 * np.sin(ys[y : y + 128, None]) * np.cos(xs[None, :] * 0.7)
        band += 0.08 * rng.standard_normal(band.shape, dtype=np.float32)
        out[y : y + 128] = band
    return out


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _child(case: str, tmp: str) -> dict:
    """Run one case in this process; return its numbers."""
    import numpy as np

    import pkn
    from pkn.models.io import load_model

    load_model("nlm")
    out: dict = {"case": case}
    t0 = time.perf_counter()
    if case == "baseline":
        pass
    elif case in ("numpy-4k", "numpy-8k"):
        n = 4000 if case == "numpy-4k" else 8000
        x = _image(n)
        out["input_mb"] = x.nbytes / 2**20
        t0 = time.perf_counter()
        r = pkn.restore(x)
        out["result_mb"] = (
            r.image.nbytes + r.qc.nbytes + sum(m.nbytes for m in r.maps.values())
        ) / 2**20
    elif case == "write-8k-zarr":  # the input of dask-8k, written in its own process
        import zarr

        src = zarr.open_array(
            os.path.join(tmp, "in.zarr"),
            mode="w",
            shape=(8000, 8000),
            chunks=(1024, 1024),
            dtype="f4",
        )
        src[:] = _image(8000)
    elif case == "dask-8k":
        import dask
        import dask.array as da
        import zarr

        out["input_mb"] = 8000 * 8000 * 4 / 2**20
        t0 = time.perf_counter()
        r = pkn.restore(zarr.open_array(os.path.join(tmp, "in.zarr"), mode="r"))
        out["built_s"] = round(time.perf_counter() - t0, 2)  # calibration and whiteness
        stores = [da.to_zarr(r.image, os.path.join(tmp, "out.zarr"), compute=False)]
        for k, m in r.maps.items():
            stores.append(da.to_zarr(m, os.path.join(tmp, f"{k}.zarr"), compute=False))
        with dask.config.set(scheduler="threads", num_workers=2):
            dask.compute(*stores)
        out["calibrated_on"] = r.info["lazy"]["calibrated_on"]
    elif case in ("diff-4k", "diff-8k"):
        import dask
        import dask.array as da

        x = _image(4000 if case == "diff-4k" else 8000)
        a = pkn.restore(x)
        r = pkn.restore(da.from_array(x, chunks=1024))
        im, *ms = dask.compute(r.image, *r.maps.values())
        span = float(np.ptp(a.image))
        out["max_diff_image"] = float(np.abs(im.astype(np.float64) - a.image).max() / span)
        out["max_diff_maps"] = max(
            float(np.abs(m - a.maps[k]).max() / max(1e-12, float(np.abs(a.maps[k]).max())))
            for k, m in zip(r.maps, ms, strict=True)
        )
    else:
        raise ValueError(f"unknown case {case!r}; choose from {CASES}.")
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["peak_rss_mb"] = round(_peak_mb(), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks memory", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {CASES}")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (PKN_THREADS)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child, a.tmp)))
        return 0
    import tempfile

    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad:
        ap.error(f"unknown case(s) {bad}; choose from {CASES}.")
    env = dict(os.environ, PKN_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    rows = []
    for c in cases:
        with tempfile.TemporaryDirectory() as tmp:
            for run in (["write-8k-zarr"] if c == "dask-8k" else []) + [c]:
                p = subprocess.run(
                    [sys.executable, "-m", "benchmarks.memory", "--child", run, "--tmp", tmp],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if p.returncode:
                    print(p.stderr, file=sys.stderr)
                    return p.returncode
        rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = next((r["peak_rss_mb"] for r in rows if r["case"] == "baseline"), None)
    print("\n| case | input MB | peak RSS MB | peak / input | seconds | notes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        inp = r.get("input_mb")
        ratio = f"{r['peak_rss_mb'] / inp:.2f}" if inp else ""
        notes = {
            k: v for k, v in r.items() if k in ("max_diff_image", "max_diff_maps", "calibrated_on")
        }
        if base and r["case"] != "baseline":
            notes["over baseline MB"] = round(r["peak_rss_mb"] - base, 1)
        print(
            f"| {r['case']} | {inp or ''} | {r['peak_rss_mb']} | {ratio} | {r['seconds']} | "
            f"{notes or ''} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
