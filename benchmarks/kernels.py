"""``python -m benchmarks kernels``: time every kernel against scikit-image's NLM.

Each kernel of the registry (:func:`pkn.kernels.registry.names`, running its example
setting) and, in the same run, ``skimage.restoration.denoise_nl_means`` is measured in its
own fresh subprocess (:mod:`benchmarks._measure`) on a seeded synthetic 12-megapixel
image, and the results are printed as a table, optionally in Markdown, together with
the performance targets, stated for the reference kernel :data:`TARGET` (``nlm``):

- it takes at most half the time of scikit-image's fast NLM;
- its peak memory over its input is at most 4x the image's bytes + 200 MB;
- every other kernel costs at most as many seconds per output megapixel as it does.

MB are 10^6 bytes, MP 10^6 pixels.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from ._measure import SKIMAGE, kernel_names, parse_size, positive_int, settings

__all__ = ["TARGET", "combine_rounds", "evaluate", "format_table", "main", "run_one"]

#: The kernel the performance targets are stated for (the others are held to its speed).
TARGET = "nlm"
REPO = Path(__file__).resolve().parents[1]  # the subprocesses run from here

NLM_TIME_RATIO = 0.5  # nlm seconds <= this x skimage seconds
NLM_PEAK_IMAGES, NLM_PEAK_EXTRA = 4, 200e6  # nlm peak <= 4 x image bytes + 200 MB
_MB = 1e6


def run_one(
    name: str,
    size: tuple[int, int],
    *,
    repeat: int,
    threads: int | None,
    seed: int = 0,
    timeout: float = 3600.0,
) -> dict:
    """Measure one benchmark in a fresh ``python -m benchmarks._measure`` process.

    Parameters
    ----------
    name : str
        A kernel name (:func:`pkn.kernels.registry.names`) or ``"skimage_nlm"``.
    size : (int, int)
        Output size ``(H, W)``.
    repeat, threads, seed
        Passed on to :func:`benchmarks._measure.measure`.
    timeout : float
        Seconds after which the measurement counts as failed.

    Returns
    -------
    dict
        The subprocess's JSON result; on failure ``{"name", "ok": False, "error"}``.
    """
    cmd = [sys.executable, "-m", "benchmarks._measure", name]
    cmd += ["--size", f"{size[0]}x{size[1]}", "--repeat", str(repeat), "--seed", str(seed)]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
        )
    except subprocess.TimeoutExpired:
        return {"name": name, "ok": False, "error": f"timed out after {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"name": name, "ok": False, "error": f"exit status {proc.returncode}: {tail}"}


def _sec_per_mp(r: dict) -> float:
    return r["seconds"] / r["out_megapixels"]


def evaluate(results: list[dict]) -> list[dict]:
    """Add the comparison with scikit-image and the target checks to each result.

    Parameters
    ----------
    results : list of dict
        Results of :func:`run_one`, one of them for ``"skimage_nlm"``.

    Returns
    -------
    list of dict
        The same dicts with ``vs_skimage`` (time ratio, or None) and ``target`` (text
        starting with ``pass``, ``FAIL``, ``n/a`` or ``reference``) added.
    """
    by_name = {r["name"]: r for r in results if r.get("ok")}
    ref, nlm = by_name.get(SKIMAGE), by_name.get(TARGET)
    for r in results:
        if not r.get("ok"):
            r["vs_skimage"], r["target"] = None, "n/a (not measured)"
            continue
        r["vs_skimage"] = r["seconds"] / ref["seconds"] if ref and ref["seconds"] > 0 else None
        if r["name"] == SKIMAGE:
            r["target"] = "reference"
        elif r["name"] == TARGET:
            limit = NLM_PEAK_IMAGES * r["input_bytes"] + NLM_PEAK_EXTRA
            checks = [
                (
                    r["peak_bytes"] <= limit,
                    f"peak {r['peak_bytes'] / _MB:.0f} MB "
                    f"{'<=' if r['peak_bytes'] <= limit else '>'} {limit / _MB:.0f} MB",
                ),
            ]
            if r["vs_skimage"] is not None:
                ok = r["vs_skimage"] <= NLM_TIME_RATIO
                sign = "<=" if ok else ">"
                checks.insert(0, (ok, f"time {r['vs_skimage']:.2f}x {sign} {NLM_TIME_RATIO}x"))
            verdict = "pass" if all(ok for ok, _ in checks) else "FAIL"
            r["target"] = f"{verdict}: " + "; ".join(text for _, text in checks)
        elif nlm is None:
            r["target"] = f"n/a ({TARGET} not measured)"
        else:
            ok = _sec_per_mp(r) <= _sec_per_mp(nlm)
            r["target"] = (
                f"{'pass' if ok else 'FAIL'}: {_sec_per_mp(r):.3g} {'<=' if ok else '>'} "
                f"{_sec_per_mp(nlm):.3g} s/MP ({TARGET})"
            )
    return results


def combine_rounds(rounds: list[list[dict]]) -> list[dict]:
    """One result per benchmark from several rounds of the same sweep.

    Parameters
    ----------
    rounds : list of list of dict
        Results of :func:`run_one`, one list per round, the same names in each.

    Returns
    -------
    list of dict
        Per name (in the first round's order) the measured result with the median seconds
        (the lower middle one for an even count), with ``seconds_rounds`` (every round's
        seconds) added; a name never measured keeps the first round's failure.
    """
    out = []
    for first in rounds[0]:
        ok = [r for rnd in rounds for r in rnd if r["name"] == first["name"] and r.get("ok")]
        if not ok:
            out.append(first)
            continue
        ok.sort(key=lambda r: r["seconds"])
        best = dict(ok[(len(ok) - 1) // 2])
        best["seconds_rounds"] = [r["seconds"] for r in ok]
        out.append(best)
    return out


def format_table(results: list[dict], *, markdown: bool = False) -> str:
    """Render evaluated results as an aligned text table or a Markdown table."""
    head = ["kernel", "seconds", "MP/s (output)", "peak MB over input", "time vs skimage NLM"]
    head.append("target")
    rows = []
    for r in results:
        if not r.get("ok"):
            rows.append([r["name"], "-", "-", "-", "-", f"error: {r['error']}"])
            continue
        vs = "-" if r["vs_skimage"] is None else f"{r['vs_skimage']:.2f}x"
        rows.append(
            [
                r["name"],
                f"{r['seconds']:.3f}",
                f"{r['mp_per_s']:.2f}",
                f"{r['peak_bytes'] / _MB:.1f}",
                vs,
                r["target"],
            ]
        )
    if markdown:
        lines = [
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] + ["--:"] * 4 + ["---"]) + "|",
        ]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        cells = [
            c.ljust(w) if i in (0, 5) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(row) for row in rows)])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    """Run the kernel benchmark; return 0, or 1 if a measurement failed.

    Parameters
    ----------
    argv : list of str, optional
        Arguments after ``kernels`` (default ``sys.argv[1:]``); see ``--help``.

    Returns
    -------
    int
        0 when every benchmark ran (targets that fail are reported, not an error),
        1 when a measurement failed (e.g. a kernel module is missing).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    kernels = kernel_names()
    p = argparse.ArgumentParser(
        prog="python -m benchmarks kernels",
        description="Time every kernel at its default settings on a synthetic image, each in "
        "a fresh process, against skimage.restoration.denoise_nl_means in the same run.",
        epilog="Kernels: " + ", ".join(kernels),
    )
    p.add_argument(
        "--size",
        type=parse_size,
        default=(3000, 4000),
        metavar="HxW",
        help="output image size (default 3000x4000, 12 megapixels)",
    )
    p.add_argument(
        "--repeat",
        type=positive_int,
        default=3,
        metavar="N",
        help="timed runs per kernel; the median is reported (default 3)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="T",
        help="torch threads (default: torch's choice)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=kernels,
        metavar="NAME",
        help="measure only these kernels (skimage NLM is always measured)",
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        metavar="R",
        help="run the whole sweep R times, one kernel after the other, and report each "
        "kernel's median round (evens out a machine whose speed drifts; default 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    a = p.parse_args(argv)

    names = [SKIMAGE, *dict.fromkeys(a.only or kernels)]
    rounds = []
    for k in range(a.rounds):
        rounds.append([])
        for name in names:
            print(f"[bench] round {k + 1}/{a.rounds}: {name} ...", file=sys.stderr, flush=True)
            rounds[-1].append(
                run_one(name, a.size, repeat=a.repeat, threads=a.threads, seed=a.seed)
            )
    results = evaluate(combine_rounds(rounds))

    done = [r for r in results if r.get("ok")]
    info = done[0] if done else {}
    H, W = a.size
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    header = [
        f"command: python -m benchmarks kernels {shlex.join(argv)}".rstrip(),
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: {_cpu_model()}, {os.cpu_count()} CPUs ({usable} usable); "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"torch {info.get('torch', '?')}",
        f"torch threads: {info.get('threads', '?')}"
        + (" (--threads)" if a.threads else " (torch default)"),
        f"image: {H}x{W} ({H * W / 1e6:.3g} MP) synthetic float32, 1 channel, noise 0.05; "
        f"median of {a.repeat} run(s) after a warm-up on 64x64; under torch.no_grad()"
        + (f"; median of {a.rounds} rounds of the whole sweep" if a.rounds > 1 else ""),
        f"memory: {info.get('memory_method', '?')}; MB = 10^6 bytes",
        f"targets: {TARGET} <= {NLM_TIME_RATIO}x skimage time; {TARGET} peak <= "
        f"{NLM_PEAK_IMAGES}x image bytes + {NLM_PEAK_EXTRA / _MB:.0f} MB; others: s per "
        f"output MP <= {TARGET}'s",
    ]
    if any(not r.get("memory_exact", True) for r in done):
        header.append("WARNING: /proc/self/clear_refs unavailable; peak memory is approximate")
    lines = [f"- {r['name']}: {settings(r['name'])}" for r in results]
    if a.markdown:
        header[0] = f"command: `{header[0].removeprefix('command: ')}`"
        print("\n".join(f"{line}  " for line in header))
        print()
        print(format_table(results, markdown=True))
        print()
        print("Settings:\n\n" + "\n".join(lines))
    else:
        print("\n".join(header))
        print()
        print(format_table(results))
        print()
        print("settings:\n" + "\n".join(lines))
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
