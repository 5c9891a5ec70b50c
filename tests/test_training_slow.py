"""Slow: a real (short) training run on BSDS500 improves on the untrained network.

Run with ``scripts/test.sh -m slow``; deselected by default (minutes of CPU). The data
root is ``$PKN_DATA``, else ``../shared/data`` next to the repository.
"""

import os
from pathlib import Path

import pytest

from pkn.training.data import DATA_ENV, TRAIN_SUBDIR
from pkn.training.loop import TrainConfig, train

pytestmark = pytest.mark.slow

ROOT = Path(os.environ.get(DATA_ENV) or Path(__file__).resolve().parents[2] / "shared" / "data")


def test_short_nlm_training_improves_validation_psnr(tmp_path):
    folder = ROOT / TRAIN_SUBDIR
    if not folder.is_dir():
        pytest.skip(f"training data not found at {folder} (set {DATA_ENV})")
    cfg = TrainConfig(
        kernel="nlm",
        data=str(folder),
        iters=300,
        val_every=100,
        out=str(tmp_path),
        guided=True,
        sigma=(0.01, 0.3),
        noise_weighted=False,
        threads=2,
    )
    s = train(cfg, progress=False)
    first, last = s["history"][0]["psnr"], s["history"][-1]["psnr"]
    assert last > first + 0.02, s["history"]
    assert (tmp_path / "nlm.md").is_file()
