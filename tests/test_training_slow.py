"""Slow: a real (short) training run on BSDS500 improves on the untrained network.

Run with ``scripts/test.sh -m slow``; deselected by default (minutes of CPU).
"""

import pytest

from pkn.training.data import default_data_dir
from pkn.training.loop import TrainConfig, train

pytestmark = pytest.mark.slow


def test_short_nlm_training_improves_validation_psnr(tmp_path):
    if not default_data_dir().is_dir():
        pytest.skip(f"training data not found at {default_data_dir()} (../shared/data)")
    cfg = TrainConfig(
        kernel="nlm",
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
