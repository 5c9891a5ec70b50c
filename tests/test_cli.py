"""The command line: ``python -m pkn`` dispatch and ``python -m pkn bench kernels``."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

import pytest

from pkn.__main__ import COMMANDS, main


def run_pkn(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pkn", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_help_lists_every_command():
    proc = run_pkn("--help")
    assert proc.returncode == 0, proc.stderr
    for words, (_, description) in COMMANDS.items():
        assert " ".join(words) in proc.stdout
        assert description in proc.stdout
    assert "bench kernels" in proc.stdout


def test_version():
    from pkn import __version__

    proc = run_pkn("--version")
    assert proc.returncode == 0, proc.stderr
    assert __version__ in proc.stdout


@pytest.mark.parametrize("args", [["frobnicate"], ["bench", "nosuchbench"], ["bench"]])
def test_unknown_command_exits_2_with_clear_message(args):
    proc = run_pkn(*args)
    assert proc.returncode == 2
    assert "unknown command" in proc.stderr
    assert "bench kernels" in proc.stderr  # lists the valid commands


def test_no_arguments_prints_usage_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_dispatch_targets_are_well_formed():
    for words, (target, description) in COMMANDS.items():
        module, sep, func = target.partition(":")
        assert sep and module and func.isidentifier(), target
        assert words and description
        if importlib.util.find_spec(module) is not None:  # some commands are added later
            assert callable(getattr(importlib.import_module(module), func))


def test_dispatch_passes_the_remaining_arguments(monkeypatch):
    seen = []
    fake = type(sys)("pkn_fake_command")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "pkn_fake_command", fake)
    monkeypatch.setitem(COMMANDS, ("bench", "fake"), ("pkn_fake_command:main", "a fake"))
    assert main(["bench", "fake", "--x", "1"]) == 7
    assert seen == [["--x", "1"]]


def _second_kernel() -> str:
    """A kernel besides nlm whose module exists (others are written concurrently)."""
    for name, module in [("gaussian", "pkn.kernels.gaussian"), ("kpn", "pkn.kernels.kpn")]:
        if importlib.util.find_spec(module) is not None:
            return name
    return "bilateral"  # lives in nlm.py


def test_bench_kernels_small_markdown():
    second = _second_kernel()
    args = ["--size", "64x96", "--repeat", "1", "--threads", "1", "--only", "nlm", second]
    proc = run_pkn("bench", "kernels", *args, "--markdown", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "python -m pkn bench kernels --size 64x96" in out  # the command line on top
    assert "date:" in out and "torch threads: 1" in out
    header = "| kernel | seconds | MP/s (output) | peak MB over input | time vs skimage NLM |"
    assert header in out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"skimage_nlm", "nlm", second} <= set(rows)
    assert "reference" in rows["skimage_nlm"]
    assert "error" not in rows["nlm"] and "error" not in rows[second]
    for name in ("nlm", second):
        cells = [c.strip() for c in rows[name].split("|")[1:-1]]
        assert float(cells[1]) >= 0 and float(cells[2]) > 0  # seconds, MP/s
        assert cells[5].startswith(("pass", "FAIL"))  # the target was checked


def test_bench_rejects_unknown_kernel():
    proc = run_pkn("bench", "kernels", "--only", "nosuchkernel")
    assert proc.returncode == 2
    assert "nosuchkernel" in proc.stderr


def test_synthetic_image_is_seeded_noisy_and_in_range():
    from pkn.benchmarks._measure import synthetic_image

    a, b = synthetic_image(120, 160, seed=3), synthetic_image(120, 160, seed=3)
    assert a.dtype == "float32" and a.shape == (120, 160)
    assert (a == b).all() and not (a == synthetic_image(120, 160, seed=4)).all()
    assert a.std() > 0.1 and -0.3 < a.min() and a.max() < 1.3
    assert 0.2 < float(a.mean()) < 0.8


def test_peak_meter_sees_a_large_allocation():
    import numpy as np

    from pkn.benchmarks._measure import PeakMeter

    with PeakMeter() as meter:
        block = np.ones(50_000_000, dtype=np.uint8)  # 50 MB, touched
        del block
    assert meter.increase >= 40e6, meter.method


def test_evaluate_marks_targets():
    from pkn.benchmarks.kernels import evaluate, format_table

    def r(name, seconds, peak=0.0, mp=12.0):
        return {
            "name": name,
            "ok": True,
            "seconds": seconds,
            "out_megapixels": mp,
            "mp_per_s": mp / seconds,
            "peak_bytes": peak,
            "input_bytes": 48e6,
        }

    results = evaluate(
        [
            r("skimage_nlm", 10.0),
            r("nlm", 4.0, peak=300e6),
            r("gaussian", 1.0),
            r("kpn", 5.0),
            {"name": "affine", "ok": False, "error": "ImportError: nope"},
        ]
    )
    target = {x["name"]: x["target"] for x in results}
    assert target["skimage_nlm"] == "reference"
    assert target["nlm"].startswith("pass")  # 0.4x <= 0.5x; 300 MB <= 4 * 48 + 200 MB
    assert target["gaussian"].startswith("pass") and target["kpn"].startswith("FAIL")
    assert "not measured" in target["affine"]
    slow = evaluate([r("skimage_nlm", 10.0), r("nlm", 6.0, peak=500e6)])[1]["target"]
    assert slow.startswith("FAIL") and "time" in slow and "peak" in slow
    text = format_table(results)
    assert "error: ImportError: nope" in text and "0.40x" in text


def test_combine_rounds_takes_each_kernels_median_round():
    from pkn.benchmarks.kernels import combine_rounds

    def r(name, seconds, ok=True):
        return {"name": name, "ok": ok, "seconds": seconds, "round_tag": seconds}

    rounds = [
        [r("skimage_nlm", 2.5), r("nlm", 1.2), {"name": "kpn", "ok": False, "error": "x"}],
        [r("skimage_nlm", 2.3), r("nlm", 0.9), r("kpn", 0.7)],
        [r("skimage_nlm", 2.4), r("nlm", 1.0), {"name": "kpn", "ok": False, "error": "y"}],
    ]
    out = {x["name"]: x for x in combine_rounds(rounds)}
    assert [x["name"] for x in combine_rounds(rounds)] == ["skimage_nlm", "nlm", "kpn"]
    assert out["skimage_nlm"]["seconds"] == 2.4 and out["nlm"]["seconds"] == 1.0
    assert out["nlm"]["seconds_rounds"] == [0.9, 1.0, 1.2]
    assert out["kpn"]["seconds"] == 0.7  # the only round that measured it
    two = combine_rounds([[r("nlm", 1.0)], [r("nlm", 2.0)]])[0]
    assert two["seconds"] == 1.0  # even count: the lower middle round
    failed = combine_rounds([[{"name": "affine", "ok": False, "error": "e"}]])[0]
    assert failed == {"name": "affine", "ok": False, "error": "e"}
