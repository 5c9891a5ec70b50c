"""The adversarial matrix (issue #13) for the command lines and TrainConfig.

Every bad option gives one argparse line naming the option, the value and what is
accepted, status 2 and no traceback; bad input found while running gives one
``error:`` line and status 2; an unexpected error one line with a hint to set
``PKN_DEBUG=1`` and status 1 (and the traceback with ``PKN_DEBUG=1``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from pkn.__main__ import guarded
from pkn.__main__ import main as pkn_main
from pkn.training._validate import check_config
from pkn.training.loop import TrainConfig


def _run(argv, capsys):
    """``python -m pkn *argv`` in-process: (status, stderr)."""
    try:
        code = pkn_main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1, err
    return lines[0]


TRAIN = {
    "iters-negative": (["--iters", "-5"], r"--iters: iters must be an integer >= 1, got '-5'"),
    "iters-zero": (["--iters", "0"], r"--iters: iters must be an integer >= 1, got '0'"),
    "iters-float": (["--iters", "2.5"], r"--iters: iters must be an integer >= 1, got '2.5'"),
    "iters-word": (["--iters", "many"], r"--iters: iters must be an integer >= 1, got 'many'"),
    "val-every-zero": (["--val-every", "0"], r"--val-every: val_every must be an integer >= 1"),
    "batch-zero": (["--batch", "0"], r"--batch: batch must be an integer >= 1, got '0'"),
    "crop-zero": (["--crop", "0"], r"--crop: crop must be an integer >= 16 \(pixels\), got '0'"),
    "val-crop-small": (["--val-crop", "8"], r"--val-crop: val_crop must be an integer >= 16"),
    "widths-zero": (["--widths", "0,0,0"], r"--widths: widths must be three integers in \[1"),
    "widths-two": (["--widths", "8,8"], r"--widths: widths must be three integers.*'8,8'"),
    "widths-float": (["--widths", "8,8,8.5"], r"--widths: widths must be three integers"),
    "scales-zero": (["--scales", "0"], r"--scales: scales must be factors in \[1, 8\].*'0'"),
    "scales-word": (["--scales", "2,x"], r"--scales: scales must be factors.*'2,x'"),
    "scales-inf": (["--scales", "inf"], r"--scales: scales must be factors"),
    "lr-zero": (["--lr", "0"], r"--lr: lr must be a finite number > 0, got '0'"),
    "lr-nan": (["--lr", "nan"], r"--lr: lr must be a finite number > 0, got 'nan'"),
    "clip-negative": (["--clip", "-1"], r"--clip: clip must be a finite number >= 0"),
    "levin-2": (["--levin", "2"], r"--levin: levin must be a probability in \[0, 1\], got '2'"),
    "p-gray-negative": (["--p-gray", "-0.1"], r"--p-gray: p_gray must be a fraction in \[0, 1\]"),
    "correlated-2": (["--correlated", "2"], r"--correlated: correlated must be a fraction"),
    "noise-power-nan": (["--noise-power", "nan"], r"--noise-power: noise_power must be"),
    "sigma-reversed": (["--sigma", "0.2,0.1"], r"--sigma: sigma must be LOW,HIGH.*'0.2,0.1'"),
    "sigma-negative": (["--sigma=-0.1,0.1"], r"--sigma: sigma must be LOW,HIGH with 0 <="),
    "sigma-three": (["--sigma", "0.1,0.2,0.3"], r"--sigma: sigma must be LOW,HIGH"),
    "blur-zero": (["--blur", "0,1"], r"--blur: blur must be LOW,HIGH with 0 < LOW"),
    "pg-a-word": (["--pg-a", "a,b"], r"--pg-a: pg_a must be LOW,HIGH"),
    "seed-negative": (["--seed", "-1"], r"--seed: seed must be an integer >= 0"),
    "threads-negative": (["--threads", "-2"], r"--threads: threads must be an integer >= 0"),
    "options-list": (["--options", "[1]"], r"--options: expected a JSON object.*'\[1\]'"),
    "options-bad-json": (["--options", "{bad"], r"--options: expected a JSON object.*'\{bad'"),
    "kernel-unknown": (["--kernel", "nope"], r"--kernel: invalid choice: 'nope'"),
    "loss-unknown": (["--loss", "l3"], r"--loss: invalid choice: 'l3'"),
}


@pytest.mark.parametrize("case", sorted(TRAIN))
def test_train_options(case, capsys, tmp_path):
    argv, pattern = TRAIN[case]
    code, err = _run(["train", *argv, "--out", str(tmp_path / "run")], capsys)
    assert code == 2
    assert __import__("re").search(pattern, _one_error_line(err)), err
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


DEMO = {
    "strength-negative": (["--strength", "-1"], r"--strength: strength must be a finite number"),
    "strength-nan": (["--strength", "nan"], r"--strength: strength must be.*'nan'"),
    "strength-word": (["--strength", "high"], r"--strength: strength must be.*'high'"),
    "sample-unknown": (["--sample", "x"], r"--sample: invalid choice: 'x'"),
    "kernel-unknown": (["--kernel", "x"], r"--kernel: invalid choice: 'x'"),
    "model-unknown": (["--model", "nosuch"], r"--model: .*nosuch"),
    "model-other-task": (["--model", "polyblur"], r"--model: kernel 'polyblur' does deblur"),
    "model-other-kernel": (
        ["--kernel", "nlm", "--model", "gaussian"],
        r"--model: model 'gaussian' drives kernel 'gaussian', not 'nlm'",
    ),
}


@pytest.mark.parametrize("case", sorted(DEMO))
def test_demo_options(case, capsys, tmp_path):
    argv, pattern = DEMO[case]
    code, err = _run(["demo", *argv, "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert __import__("re").search(pattern, _one_error_line(err)), err
    assert not (tmp_path / "out").exists()


def test_demo_with_a_model_uses_its_kernel(capsys, tmp_path):
    code, err = _run(["demo", "--model", "nlm-fluo", "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    files = {f.name for f in (tmp_path / "out").iterdir()}
    assert "fluorescence_nlm-fluo_restored.tif" in files
    info = __import__("json").loads(
        (tmp_path / "out" / "fluorescence_nlm-fluo_info.json").read_text()
    )
    assert info["model"] == "nlm-fluo" and info["kernel"] == "nlm"


@pytest.mark.parametrize(
    ("argv", "model", "kernel"),
    [
        ([], "nlm-fluo", "nlm"),  # the fluorescence sample: the model trained for it
        (["--sample", "natural"], "nlm", "nlm"),
        (["--kernel", "nlm"], "nlm", "nlm"),  # a kernel alone: its general shipped model
    ],
)
def test_demo_default_model_follows_the_sample(argv, model, kernel, capsys, tmp_path):
    code, err = _run(["demo", *argv, "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    info = next((tmp_path / "out").glob("*_info.json"))
    info = __import__("json").loads(info.read_text())
    assert (info["model"], info["kernel"]) == (model, kernel)


def test_demo_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "afile"
    f.write_text("keep")
    code, err = _run(["demo", "--out", str(f)], capsys)
    assert code == 2
    assert "--out" in _one_error_line(err) and "not a folder" in err
    assert f.read_text() == "keep"


ADAPT = {
    "steps-zero": (["--steps", "0"], r"--steps: steps must be an integer >= 1, got '0'"),
    "batch-negative": (["--batch", "-1"], r"--batch: batch must be an integer >= 1"),
    "crop-odd": (["--crop", "31"], r"--crop: crop must be an even integer >= 16, got '31'"),
    "crop-small": (["--crop", "8"], r"--crop: crop must be an even integer >= 16, got '8'"),
    "lr-zero": (["--lr", "0"], r"--lr: lr must be a finite number > 0, got '0'"),
    "lr-inf": (["--lr", "inf"], r"--lr: lr must be a finite number > 0, got 'inf'"),
    "noise-negative": (["--noise", "-1"], r"--noise: noise must be 'auto', a sigma >= 0"),
    "noise-three": (["--noise", "1,2,3"], r"--noise: noise must be.*'1,2,3'"),
    "noise-nan": (["--noise", "nan"], r"--noise: noise must be.*'nan'"),
    "blind-spot-negative": (["--blind-spot", "-1"], r"--blind-spot: blind_spot must be"),
    "threads-zero": (["--threads", "0"], r"--threads: threads must be an integer >= 1"),
    "mode-unknown": (["--mode", "x"], r"--mode: invalid choice: 'x'"),
}


@pytest.mark.parametrize("case", sorted(ADAPT))
def test_adapt_options(case, capsys, tmp_path):
    argv, pattern = ADAPT[case]
    out = tmp_path / "m.safetensors"
    code, err = _run(["adapt", "img.tif", "--out", str(out), *argv], capsys)
    assert code == 2
    assert __import__("re").search(pattern, _one_error_line(err)), err
    assert not out.exists()


def test_adapt_missing_image_is_one_line(capsys, tmp_path):
    out = tmp_path / "m.safetensors"
    code, err = _run(["adapt", str(tmp_path / "none.tif"), "--out", str(out), "--quiet"], capsys)
    assert code == 2
    assert "none.tif" in _one_error_line(err)
    assert not out.exists()


def test_train_missing_data_is_one_line(capsys, tmp_path):
    code, err = _run(["train", "--data", str(tmp_path / "nothing"), "--iters", "1"], capsys)
    assert code == 2
    assert "nothing" in _one_error_line(err)


# ----------------------------------------------------------- unexpected errors, PKN_DEBUG
def _boom():
    raise RuntimeError("deep inside\nwith two lines")


def test_unexpected_error_is_one_line_with_a_hint(capsys, monkeypatch):
    monkeypatch.delenv("PKN_DEBUG", raising=False)
    assert guarded("pkn x", _boom) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "RuntimeError: deep inside with two lines" in err and "PKN_DEBUG=1" in err


def test_bad_input_error_is_status_2(capsys, monkeypatch):
    monkeypatch.delenv("PKN_DEBUG", raising=False)

    def bad():
        raise ValueError("strength must be a finite number >= 0, got -1.")

    assert guarded("pkn x", bad) == 2
    assert (
        capsys.readouterr().err == "pkn x: error: strength must be a finite number >= 0, got -1.\n"
    )


def test_pkn_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("PKN_DEBUG", "1")
    with pytest.raises(RuntimeError, match="deep inside"):
        guarded("pkn x", _boom)


def test_keyboard_interrupt_is_130(capsys):
    def stop():
        raise KeyboardInterrupt

    assert guarded("pkn x", stop) == 130
    assert "cancelled" in capsys.readouterr().err


def test_dispatcher_guards_every_command(monkeypatch, capsys):
    import pkn.__main__ as m

    monkeypatch.delenv("PKN_DEBUG", raising=False)
    monkeypatch.setitem(m.COMMANDS, ("fake",), ("tests.test_adversarial_cli:_boom_main", "x"))
    assert m.main(["fake", "--x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pkn fake: unexpected error: RuntimeError") and "Traceback" not in err


def _boom_main(argv):
    _boom()


def test_real_process_exit_status_and_no_traceback(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pkn", "train", "--iters", "-5", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "argument --iters: iters must be an integer >= 1, got '-5'" in r.stderr
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------ TrainConfig (Python API)
CONFIGS = {
    "iters": (-5, ValueError, r"iters must be an integer >= 1, got -5"),
    "batch": (0, ValueError, r"batch must be an integer >= 1, got 0"),
    "crop": (True, TypeError, r"crop must be an integer >= 16 \(pixels\), got True"),
    "val_every": (0, ValueError, r"val_every must be an integer >= 1"),
    "scales": ((0.0,), ValueError, r"scales must be factors in \[1, 8\].*\(0.0,\)"),
    "widths": ((0, 0, 0), ValueError, r"widths must be three integers"),
    "lr": (float("nan"), ValueError, r"lr must be a finite number > 0, got nan"),
    "sigma": ((0.2, 0.1), ValueError, r"sigma must be LOW,HIGH"),
    "levin": ("0.5", TypeError, r"levin must be a probability in \[0, 1\], got '0.5'"),
    "options": ([1], TypeError, r"options must be a dict"),
    "guided": ("yes", TypeError, r"guided must be True or False, got 'yes'"),
    "loss": ("l3", ValueError, r"loss must be one of"),
    "noise": ("gauss", ValueError, r"noise must be one of"),
    "kernel": ("nope", ValueError, r"kernel must be one of"),
}


@pytest.mark.parametrize("field", sorted(CONFIGS))
def test_check_config(field):
    value, exc, pattern = CONFIGS[field]
    with pytest.raises(exc, match=pattern):
        check_config(TrainConfig(**{field: value}))


def test_check_config_accepts_the_defaults_and_numpy_numbers():
    import numpy as np

    check_config(TrainConfig())
    check_config(TrainConfig(iters=np.int64(10), lr=np.float32(1e-3), scales=(np.float64(2.0),)))
