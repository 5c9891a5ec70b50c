"""``python -m benchmarks contention``: ``pkn.restore`` alone vs N processes at once.

Each worker process makes the same seeded synthetic float32 image (``--size``, default
2048x2048, AWGN 0.05), warms up on a small image, waits until every worker is ready and
then times ``pkn.restore(image, noise=0.05)`` (network pass plus NLM filter) ``--repeat``
times. Run once with one worker (solo) and once with ``--procs`` workers started
together; the ratio concurrent/solo is the cliff the thread policy
(:mod:`pkn._threads`) prevents: <= 2.5 for 2 processes on 2 cores is the target.
``--env VAR=VALUE`` sets variables for the workers (e.g. ``PKN_THREADS=2`` to see the
cliff: the filter on two threads), ``--hint`` gives the concurrent workers
``PKN_CONCURRENCY=--procs`` (the solo run keeps the default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

__all__ = ["main"]


def _worker(size: str, repeat: int) -> int:
    import numpy as np

    import pkn
    from pkn._threads import n_threads

    from ._measure import synthetic_image

    h, w = (int(v) for v in size.lower().split("x"))
    img = synthetic_image(h, w, seed=0).astype(np.float32)
    pkn.restore(img[:256, :256], noise=0.05)  # warm-up
    print("ready", flush=True)
    sys.stdin.readline()  # go
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        pkn.restore(img, noise=0.05)
        ts.append(time.perf_counter() - t)
    print(json.dumps({"times": ts, "threads": n_threads()}), flush=True)
    return 0


def _run(n: int, a, env: dict) -> list[dict]:
    cmd = [sys.executable, "-m", "benchmarks", "contention", "--worker", "--size", a.size]
    cmd += ["--repeat", str(a.repeat)]
    procs = [
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(n)
    ]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("a worker failed to start")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    out = []
    for p in procs:
        line, _ = p.communicate()
        if p.returncode:
            raise RuntimeError(f"a worker exited with {p.returncode}")
        out.append(json.loads(line.strip().splitlines()[-1]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks contention", description=__doc__)
    p.add_argument("--size", default="2048x2048", help="HxW (default 2048x2048)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--procs", type=int, default=2, help="concurrent processes (default 2)")
    p.add_argument("--env", action="append", default=[], help="VAR=VALUE for the workers")
    p.add_argument(
        "--hint",
        action="store_true",
        help="tell the concurrent workers PKN_CONCURRENCY=--procs (the solo run: no hint)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return _worker(a.size, a.repeat)
    env = dict(os.environ)
    for kv in a.env:
        k, sep, v = kv.partition("=")
        if not sep:
            p.error(f"--env takes VAR=VALUE, got {kv!r}")
        env[k] = v
    solo = _run(1, a, env)[0]
    many = _run(a.procs, a, dict(env, PKN_CONCURRENCY=str(a.procs)) if a.hint else env)
    ts = statistics.median(solo["times"])
    tm = statistics.median(t for r in many for t in r["times"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"pkn.restore {a.size}, noise given, {os.cpu_count()} CPUs, load before {load:.1f}")
    print(f"  solo:                 {ts:7.3f} s  ({solo['threads']} threads)")
    print(f"  {a.procs} at once (each):    {tm:7.3f} s  ({many[0]['threads']} threads)")
    print(f"  ratio concurrent/solo: {tm / ts:6.2f}  (target <= 2.5 for 2 on 2 cores)")
    return 0
