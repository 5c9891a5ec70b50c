"""Saving and loading models (``pkn.models.io``): safetensors + JSON metadata, no pickle."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
import torch

from pkn.models import io as model_io
from pkn.models.io import file_sha256, list_models, load_model, model_path, save_model
from pkn.models.pkn_model import PKNModel


def _trained_like(kernel="nlm", seed=0, **kw) -> PKNModel:
    """A model whose weights are all non-trivial (the head is zero when untrained)."""
    torch.manual_seed(seed)
    model = PKNModel(kernel, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 1, 19, 22, generator=g), torch.tensor([0.05, 0.1]).view(2, 1, 1, 1)


@pytest.fixture(autouse=True)
def _fresh_cache():
    model_io._read.cache_clear()
    yield
    model_io._read.cache_clear()


@pytest.mark.parametrize(
    ("kernel", "widths", "guided", "options"),
    [
        ("nlm", (12, 16, 24), False, {}),
        ("bilateral", (8, 8, 16), True, {"search_size": 3}),
        ("nlm", (4, 6, 8), True, {"patch_size": 1, "search_size": 3}),
    ],
)
def test_round_trip(tmp_path, kernel, widths, guided, options):
    model = _trained_like(kernel, widths=widths, guided=guided, options=options)
    info = {"note": "unit test", "val_psnr": 31.5, "nested": {"a": [1, 2]}}
    path = save_model(model, tmp_path / "sub" / "m.safetensors", info)
    assert path.is_file() and path.suffix == ".safetensors"

    loaded, meta = load_model(path)
    assert isinstance(loaded, PKNModel)
    assert not loaded.training  # eval mode
    assert loaded.kernel == kernel and meta["kernel"] == kernel
    assert loaded.net.widths == widths
    assert loaded.guided is guided
    assert loaded.options == options
    assert meta["info"] == info
    assert meta["sha256"] == file_sha256(path)
    assert meta["name"] == "m"
    assert meta["n_parameters"] == sum(p.numel() for p in model.parameters())

    sd0, sd1 = model.state_dict(), loaded.state_dict()
    assert sd0.keys() == sd1.keys()
    for k in sd0:
        assert torch.equal(sd0[k], sd1[k]), k

    x, s = _inputs()
    guide = x.flip(-1) if guided else None
    with torch.no_grad():
        y0, m0 = model(x, s, guide)
        y1, m1 = loaded(x, s, guide)
    assert torch.equal(y0, y1)
    for k in m0:
        assert torch.equal(m0[k], m1[k])


def test_load_by_str_path(tmp_path):
    path = save_model(_trained_like(), tmp_path / "a.safetensors")
    loaded, meta = load_model(str(path))
    assert meta["kernel"] == "nlm"
    assert isinstance(loaded, PKNModel)


def test_model_kernel_reads_the_metadata_only(tmp_path, monkeypatch):
    io = model_io
    path = save_model(PKNModel("gaussian", widths=(4, 4, 4)), tmp_path / "g.safetensors")
    monkeypatch.setattr(io, "PKNModel", None)  # no network is built
    assert io.model_kernel(path) == "gaussian" and io.model_kernel("nlm") == "nlm"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"bad\.safetensors"):
        io.model_kernel(bad)


def test_file_sha256(tmp_path):
    f = tmp_path / "x.bin"
    data = bytes(range(256)) * 5000  # > 1 MiB: several chunks
    f.write_bytes(data)
    assert file_sha256(f) == hashlib.sha256(data).hexdigest()


def test_sha_changes_with_weights(tmp_path):
    a = save_model(_trained_like(seed=0), tmp_path / "a.safetensors")
    b = save_model(_trained_like(seed=1), tmp_path / "b.safetensors")
    assert load_model(a)[1]["sha256"] != load_model(b)[1]["sha256"]


def test_overwritten_file_is_reloaded(tmp_path):
    """The cache is keyed by content: a file rewritten in place gives the new weights."""
    path = tmp_path / "m.safetensors"
    save_model(_trained_like(seed=0), path)
    first = load_model(path)[0].net.head.weight.clone()
    save_model(_trained_like(seed=1), path)
    second = load_model(path)[0].net.head.weight
    assert not torch.equal(first, second)


def test_refuses_non_pkn_safetensors(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))  # no metadata at all
    with pytest.raises(ValueError, match="not a PKN model"):
        load_model(path)
    save_file({"w": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="not a PKN model"):
        load_model(path)


def test_refuses_other_format_version(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_model(_trained_like(), tmp_path / "m.safetensors")
    meta = {
        "format": model_io.FORMAT,
        "format_version": "999",
        "kernel": "nlm",
        "widths": json.dumps([12, 16, 24]),
    }
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(ValueError, match="version"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nothing.safetensors")


@pytest.mark.parametrize("name", ["no-such-model", "model.pt", "weights.ckpt"])
def test_unknown_name_lists_available(name):
    with pytest.raises(ValueError, match="available") as info:
        load_model(name)
    msg = str(info.value)
    assert repr(name) in msg
    assert str(list_models()) in msg
    assert ".safetensors" in msg  # says how to pass a file


def test_non_safetensors_file_refused(tmp_path):
    """An existing checkpoint with another suffix is never unpickled."""
    f = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, f)
    with pytest.raises(ValueError, match="available"):
        load_model(f)


def test_list_models_and_model_path_agree():
    names = list_models()
    assert names == sorted(names)
    for name in names:
        p = model_path(name)
        assert p.is_file() and p.name == f"{name}.safetensors"


def test_loading_never_unpickles(tmp_path, monkeypatch):
    path = save_model(_trained_like(seed=3), tmp_path / "m.safetensors", {"k": 1})

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading a model")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    model_io._read.cache_clear()
    loaded, meta = load_model(path)
    assert meta["info"] == {"k": 1}
    assert torch.equal(loaded.net.head.weight, _trained_like(seed=3).net.head.weight)


def test_loaded_models_are_independent(tmp_path):
    """Changing a loaded model (``.to(...)``, ``.double()``, fine-tuning) or its metadata
    must not change what the next ``load_model`` of the same file returns."""
    path = save_model(_trained_like(seed=4), tmp_path / "m.safetensors", {"k": 1})
    a, info_a = load_model(path)
    original = a.net.head.bias.detach().clone()
    with torch.no_grad():
        a.net.head.bias.add_(1.0)
    a.double()
    info_a["info"]["k"] = 2
    b, info_b = load_model(path)
    assert b.net.head.bias.dtype == torch.float32
    assert torch.equal(b.net.head.bias.detach(), original)
    assert info_b["info"] == {"k": 1}


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_damaged_file_is_named_in_a_value_error(tmp_path, content):
    bad = tmp_path / "damaged.safetensors"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=r"damaged\.safetensors"):
        load_model(bad)


def test_truncated_model_file_is_named(tmp_path):
    data = model_path("nlm").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.safetensors"):
        load_model(cut)


def test_catalogue_refuses_a_second_model_of_the_same_name(tmp_path, monkeypatch):
    import shutil

    import pkn._catalogue
    from pkn._catalogue import add_model, catalogue

    monkeypatch.setattr(pkn._catalogue, "_ADDED", {})  # this session's list, restored after

    copy = tmp_path / "nlm.safetensors"
    shutil.copy(model_path("nlm"), copy)
    with pytest.raises(ValueError, match="already listed"):
        add_model(copy)
    other = tmp_path / "my-nlm.safetensors"
    shutil.copy(model_path("nlm"), other)
    info = add_model(other)
    assert info.name == "my-nlm" and not info.shipped
    assert "my-nlm" in [m.name for m in catalogue().models_for("denoise")]
