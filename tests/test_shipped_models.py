"""Every shipped model loads safely, is small, and has a truthful model card."""

import re
from importlib import resources

import pytest
import torch

from pkn.models.io import file_sha256, list_models, load_model, model_path
from pkn.models.network import count_parameters

EXPECTED = {"nlm", "bilateral", "gaussian", "anisotropic", "polyblur", "rbf"}


def test_the_six_models_ship():
    assert EXPECTED <= set(list_models())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_loads_and_matches_its_card(name):
    path = model_path(name)
    assert path.stat().st_size < 200 * 1024
    model, info = load_model(name)
    assert count_parameters(model.net) == 0  # frozen after loading
    assert info["n_parameters"] < 20_000
    card = (resources.files("pkn._resources") / f"{name}.md").read_text()
    assert file_sha256(path) in card
    assert f"**{info['n_parameters']} parameters**" in card
    assert re.search(r"python -m pkn train .*--kernel " + model.kernel, card)
    # a forward pass gives finite parameter maps of the documented shape
    x = torch.rand(1, 1, 21, 30)
    maps = model.predict_maps(x, torch.full((1, 1, 1, 1), 0.05))
    assert set(maps) == set(model.spec.param_names)
    for m in maps.values():
        assert m.shape == (1, 1, 11, 15) and torch.isfinite(m).all()


@pytest.mark.parametrize("name", ["anisotropic-fluo", "nlm-fluo"])
def test_fluorescence_models_say_how_they_were_made(name):
    """The fluorescence models are fine-tuned in a chain of runs: the card lists every
    command in order, says what content they saw (synthetic fluorescence, never a real
    microscopy image) and the model drives its kernel without being told."""
    model, info = load_model(name)
    assert model.correlated and info["n_parameters"] < 20_000
    card = (resources.files("pkn._resources") / f"{name}.md").read_text()
    assert "## Training chain" in card and "synthetic fluorescence" in card
    commands = re.findall(r"python -m pkn train .*", card.split("## Training chain")[1])
    assert len(commands) >= 2 and all("--synthetic" in c for c in commands)
    assert all("--init" in c for c in commands)
    import numpy as np

    import pkn

    x = np.random.default_rng(0).poisson(40 * np.full((40, 40), 0.3)).astype(np.float32) / 40
    r = pkn.restore(x, model=name)
    assert r.info["kernel"] == model.kernel and r.info["model"] == name
