"""The command line: ``python -m pkn`` dispatch (the benchmarks' ``python -m benchmarks``
is tested in ``test_benchmarks.py``)."""

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
    assert "train" in proc.stdout and "bench" not in proc.stdout


def test_version():
    from pkn import __version__

    proc = run_pkn("--version")
    assert proc.returncode == 0, proc.stderr
    assert __version__ in proc.stdout


@pytest.mark.parametrize("args", [["frobnicate"], ["demo2", "x"]])
def test_unknown_command_exits_2_with_clear_message(args):
    proc = run_pkn(*args)
    assert proc.returncode == 2
    assert "unknown command" in proc.stderr
    assert "'train'" in proc.stderr  # lists the valid commands


@pytest.mark.parametrize(
    ("args", "pointer"),
    [
        (["bench", "kernels", "--threads", "1"], "python -m benchmarks"),
        (["bench"], "python -m benchmarks"),
        (["ship", "runs/nlm/nlm.safetensors", "--name", "nlm"], "python scripts/ship.py"),
    ],
)
def test_moved_commands_point_to_the_repository(args, pointer, capsys):
    """The benchmarks and the release step left the installed library: one line says
    where they are now, exit status 2."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert pointer in err and len(err.strip().splitlines()) == 1
    assert not any(target.startswith("pkn.benchmarks") for target, _ in COMMANDS.values())


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
    monkeypatch.setitem(COMMANDS, ("fake", "sub"), ("pkn_fake_command:main", "a fake"))
    assert main(["fake", "sub", "--x", "1"]) == 7
    assert seen == [["--x", "1"]]
