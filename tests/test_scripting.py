"""``napari_pkn.restore_layer``: synchronous restoration from scripts (no Qt needed)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from napari.components import ViewerModel

import napari_pkn
import napari_pkn._scripting as eng
from napari_pkn._layers import put_layers, result_specs
from pkn import catalogue
from pkn._catalogue import ModelInfo
from pkn.kernels.registry import Param, get, names
from pkn.models.io import save_model
from pkn.models.pkn_model import PKNModel
from pkn.samples import fluorescence


@pytest.fixture
def viewer():
    return ViewerModel()


@pytest.fixture(scope="module")
def cells():
    return fluorescence()[0][32:96, 40:104]


def test_restore_layer_adds_and_returns_layers(viewer, cells):
    layer = viewer.add_image(cells, name="cells", scale=(0.2, 0.2), units=("um", "um"))
    before = cells.copy()
    added = napari_pkn.restore_layer(viewer, layer, "denoise", "nlm", noise=6.0, strength=0.8)
    out, sigma, spatial, qc = added  # nlm: signal sigma and spatial sigma maps; QC map
    assert qc.metadata["pkn"]["units"] == "noise std"
    assert [ly.name for ly in viewer.layers] == [  # the maps' units in their names
        "cells",
        "cells [PKN nlm]",
        out.name + " sigma (intensity)",
        out.name + " spatial_sigma (px; 1 px = 0.2 µm)",
        out.name + " qc",
    ]
    assert spatial.metadata["pkn"]["units"] == "px; 1 px = 0.2 µm"
    assert all(ly.colorbar.visible for ly in (sigma, spatial, qc))
    assert spatial.data.shape == (32, 32)
    assert spatial.metadata["pkn"]["parameter"] == "spatial_sigma"
    np.testing.assert_array_equal(layer.data, before)
    assert out.data.shape == cells.shape and sigma.data.shape == (32, 32)
    np.testing.assert_allclose(sigma.scale, (0.4, 0.4))
    np.testing.assert_allclose(sigma.translate, (0.1, 0.1))
    meta = out.metadata["pkn"]
    assert meta["noise"] == {"model": "awgn", "sigma": 6.0, "estimated": False}
    assert meta["strength"] == 0.8 and meta["input_layer"] == "cells"
    assert sigma.metadata["pkn"]["parameter"] == "sigma"
    # by name, maps hidden; re-running replaces the layers in place instead of piling up
    again = napari_pkn.restore_layer(viewer, "cells", kernel="nlm", maps=False)
    assert len(viewer.layers) == 5 and viewer.layers[1] is again[0]
    assert not again[1].visible and again[0].metadata["pkn"]["noise"]["estimated"]
    assert not again[-1].visible  # the QC map follows maps= unless qc= says otherwise


def test_geometry_follows_rotation_and_shear(viewer, cells):
    layer = viewer.add_image(
        cells[:32, :32], scale=(0.5, 2.0), translate=(3, -4), rotate=25, shear=[0.2]
    )
    out, sigma, _, qc = napari_pkn.restore_layer(viewer, layer)
    for ij in [(0, 0), (5, 9), (15, 2)]:
        np.testing.assert_allclose(qc.data_to_world(ij), layer.data_to_world(ij), atol=1e-9)
        here = sigma.data_to_world(np.asarray(ij, float))
        there = layer.data_to_world(2 * np.asarray(ij, float) + 0.5)
        np.testing.assert_allclose(here, there, atol=1e-9)
        np.testing.assert_allclose(out.data_to_world(ij), layer.data_to_world(ij), atol=1e-9)


def test_clear_errors(viewer, cells):
    labels = viewer.add_labels(np.zeros((8, 8), int), name="mask")
    with pytest.raises(TypeError, match="'mask' is a Labels layer"):
        napari_pkn.restore_layer(viewer, labels)
    with pytest.raises(TypeError, match="'mask' is a Labels layer"):
        napari_pkn.restore_layer(viewer, "mask")
    viewer.add_image(cells, name="cells")
    with pytest.raises(ValueError, match="no layer named"):
        napari_pkn.restore_layer(viewer, "nope")
    with pytest.raises(ValueError, match="task must be one of"):
        napari_pkn.restore_layer(viewer, "cells", "sharpen")
    with pytest.raises(ValueError, match="no denoise model 'bm3d'"):
        napari_pkn.restore_layer(viewer, "cells", kernel="bm3d")
    with pytest.raises(TypeError, match="unknown options"):
        napari_pkn.restore_layer(viewer, "cells", sigma=3)
    with pytest.raises(ValueError, match="strength"):
        napari_pkn.restore_layer(viewer, "cells", strength=-1)
    with pytest.raises(ValueError, match="noise sigma must be a finite number >= 0"):
        napari_pkn.restore_layer(viewer, "cells", noise=-2.0)
    viewer.add_image(np.full((4, 4), np.nan, np.float32), name="nan")
    with pytest.raises(ValueError, match="layer 'nan': image contains NaN"):
        napari_pkn.restore_layer(viewer, "nan")
    assert [ly.name for ly in viewer.layers] == ["mask", "cells", "nan"]


def test_stacks_and_dtypes(viewer, cells):
    stack = np.stack([cells[:24, :24], cells[24:48, :24]]).astype(np.int16)
    out, sigma, _, qc = napari_pkn.restore_layer(viewer, viewer.add_image(stack, name="t"))
    assert out.data.shape == stack.shape and out.data.dtype == np.float32
    assert qc.data.shape == stack.shape and qc.data.dtype == np.float16  # half the bytes
    assert sigma.data.shape == (2, 12, 12) and out.metadata["pkn"]["planes"] == 2
    with pytest.raises(TypeError, match="bool pixels"):
        napari_pkn.restore_layer(viewer, viewer.add_image(np.ones((8, 8), bool)))


def test_package_exports_restore_layer_lazily():
    assert "restore_layer" in napari_pkn.__all__
    with pytest.raises(AttributeError):
        napari_pkn.not_there  # noqa: B018


# ------------------------------------------------------------ the kernel descriptors


def check_map_layer(m, kernel, name):
    """Colormap, contrast limits, label and units of a map layer are its descriptor's."""
    p = kernel.param(name)
    lo, hi = m.contrast_limits
    assert m.colormap.name == p.colormap, (kernel.name, name)
    values = np.asarray(m.data, float)
    if p.limits == "unit":
        assert (lo, hi) == (-1, 1)
    elif p.limits == "zero":
        assert lo == 0 and hi == pytest.approx(np.percentile(values, 99.5), rel=1e-5)
    elif p.limits == "symmetric":
        assert -lo == hi == pytest.approx(np.percentile(np.abs(values), 99.5), rel=1e-5)
    else:
        assert (lo, hi) == pytest.approx(tuple(np.percentile(values, [0.5, 99.5])), rel=1e-5)
    about = m.metadata["pkn"]
    assert about["parameter"] == name and about["label"] == p.title
    px = "px" if kernel.pixel_grid == "input" else "input px"
    units = {"intensity": "intensity units of the input", "px": px, "none": ""}[p.unit]
    assert about["units"] == units
    suffix = {"intensity": " (intensity)", "px": f" ({px})", "none": ""}[p.unit]
    assert m.name.endswith(f"] {name}{suffix}") and m.colorbar.visible


def _restore(viewer, layer, entry, **kw):
    task = entry.task
    blur = 1.2 if "blur" in get(entry.kernel).inputs else None
    factor = 1.5 if "size" in get(entry.kernel).inputs else None
    opts = {k: v for k, v in (("blur", blur), ("factor", factor)) if v is not None}
    return napari_pkn.restore_layer(viewer, layer, task, entry.name, **opts, **kw)


@pytest.mark.parametrize("model", [m.name for m in catalogue().models if m.shipped])
def test_map_layers_follow_the_descriptor(viewer, cells, model):
    """Every shipped model: each map's colormap, contrast, label and units come from
    ``pkn.kernels.registry.get(kernel).param(name)``; glyphs where it has ``glyphs``."""
    entry = next(m for m in catalogue().models if m.name == model)
    kernel = get(entry.kernel)
    layer = viewer.add_image(cells[:32, :32], name="cells")
    _, *rest = _restore(viewer, layer, entry, noise=6.0)
    maps = [ly for ly in rest if ly.metadata["pkn"].get("parameter") in kernel.param_names]
    assert [m.metadata["pkn"]["parameter"] for m in maps] == list(kernel.param_names)
    for m in maps:
        check_map_layer(m, kernel, m.metadata["pkn"]["parameter"])
    vectors = [ly for ly in rest if ly._type_string == "vectors"]
    assert len(vectors) == int(bool(kernel.glyphs))


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    """An untrained model for every network kernel of the registry, listed under a name the
    plugin has never seen (so nothing can key on it)."""
    root = tmp_path_factory.mktemp("unseen")
    torch.manual_seed(0)
    out = []
    for k in names(network=True):
        model = PKNModel(k, widths=(4, 4, 4))
        with torch.no_grad():
            model.net.head.weight.normal_(0.0, 0.5)
        path = save_model(model, root / f"never-seen-{k}.safetensors", {"stand_in": True})
        d = get(k)
        info = ModelInfo(f"never-seen-{k}", k, d.task, d.param_names, str(path), "", False)
        out.append(info)
    return out


@pytest.mark.parametrize("kernel", names(network=True))
def test_a_model_the_plugin_has_never_seen(viewer, cells, monkeypatch, unseen, kernel):
    """A new model in the catalogue (any registry kernel) is offered, runs and gets its
    layers from the descriptor alone: no code change in the plugin."""
    entry = next(m for m in unseen if m.kernel == kernel)
    base = catalogue()
    cat = replace(base, models=(*base.models, entry))
    monkeypatch.setattr(eng, "catalogue", lambda: cat)
    assert entry.name in [m.name for m in eng.catalogue().models_for(entry.task)]
    d = get(kernel)
    layer = viewer.add_image(cells[:32, :32], name="cells")
    out, *rest = _restore(viewer, layer, entry)
    assert out.name == f"cells [PKN {entry.name}]" and out.metadata["pkn"]["kernel"] == kernel
    images = [ly for ly in rest if ly._type_string == "image"]
    maps = {
        ly.metadata["pkn"]["parameter"]: ly for ly in images if "parameter" in ly.metadata["pkn"]
    }
    qc = [ly for ly in images if "qc" in ly.metadata["pkn"]]
    assert len(qc) == int(d.task == "denoise") and len(maps) + len(qc) == len(images)
    assert list(maps) == list(d.param_names)
    for name, m in maps.items():
        check_map_layer(m, d, name)
    assert any(ly._type_string == "vectors" for ly in rest) == bool(d.glyphs)


def _fake_job(kernel, maps: dict, shape=(16, 20)):
    """What :func:`result_specs` reads of a finished Job, for a kernel nobody wrote."""
    src = eng.Source("cells", np.zeros(shape, np.float32), False, ())
    entry = SimpleNamespace(name="made-up", kernel=kernel.name)
    meta = {"kernel": kernel.name, "map_scale": 2.0, "strength": 1.0}
    return SimpleNamespace(
        source=src,
        image=np.zeros(shape, np.float32),
        maps=maps,
        entry=entry,
        kernel=kernel,
        provenance=lambda: dict(meta),
    )


@pytest.mark.parametrize("grid", ["input", "output"])
def test_layers_of_an_invented_kernel(viewer, grid):
    """Invented parameter names, colormaps, limits and units: every layer property comes
    from the descriptor (a fake one, with names no code could branch on)."""
    params = (
        Param("alpha", unit="intensity", label="alpha (edges)", colormap="cividis"),
        Param("beta", unit="px", colormap="twilight", limits="symmetric"),
        Param("gamma", unit="none", colormap="turbo", limits="unit"),
        Param("delta", unit="none", colormap="gray", limits="percentile"),
    )
    kernel = replace(get(names(network=True)[0]), name="invented", params=params, glyphs=())
    kernel = replace(kernel, pixel_grid=grid)
    rng = np.random.default_rng(0)
    maps = {p.name: rng.normal(1.0, 2.0, (8, 10)).astype(np.float32) for p in params}
    layer = viewer.add_image(np.zeros((16, 20), np.float32), name="cells")
    added = put_layers(viewer, result_specs(layer, _fake_job(kernel, maps)))
    px = "px" if grid == "input" else "input px"
    assert [ly.name for ly in added] == [
        "cells [PKN made-up]",
        "cells [PKN made-up] alpha (intensity)",
        f"cells [PKN made-up] beta ({px})",
        "cells [PKN made-up] gamma",
        "cells [PKN made-up] delta",
    ]
    for m, p in zip(added[1:], params, strict=True):
        check_map_layer(m, kernel, p.name)
    assert added[1].metadata["pkn"]["label"] == "alpha (edges)"
    assert added[2].metadata["pkn"]["units"] == px


def test_glyphs_follow_the_descriptor_flag(viewer):
    """Covariance maps get orientation glyphs only where the descriptor says ``glyphs``."""
    rng = np.random.default_rng(1)
    cov = {  # invented names: the glyphs read the maps the descriptor names
        "wide": rng.uniform(0.5, 2, (8, 10)),
        "tall": rng.uniform(0.5, 2, (8, 10)),
        "corr": rng.uniform(-0.9, 0.9, (8, 10)),
        "extra": rng.uniform(0, 1, (8, 10)),
    }
    params = tuple(Param(n) for n in cov)
    base = replace(get(names(network=True)[0]), name="invented", params=params)
    layer = viewer.add_image(np.zeros((16, 20), np.float32), name="cells")
    for flag in ((), ("wide", "tall", "corr")):
        kinds = [t for *_, t in result_specs(layer, _fake_job(replace(base, glyphs=flag), cov))]
        assert kinds == ["image"] * 5 + ["vectors"] * bool(flag)


# ------------------------------------------------------------ QC map and auto strength


def test_qc_layer_is_the_residual_in_noise_std(viewer, cells):
    """Denoising adds "<name> qc": (input - result) / noise std on the input's pixel grid,
    a diverging colormap centred on 0, contrast (-4, 4), units "noise std"; the whiteness
    of the residual is in every layer's provenance."""
    layer = viewer.add_image(cells, name="cells", scale=(0.5, 0.25), translate=(3, -2))
    out, *_, qc = napari_pkn.restore_layer(viewer, layer, noise=6.0, qc=True, maps=False)
    assert qc.name == "cells [PKN nlm] qc" and qc.visible
    assert qc.data.shape == cells.shape == out.data.shape
    np.testing.assert_allclose(qc.scale, layer.scale)
    np.testing.assert_allclose(qc.translate, layer.translate)
    expected = (cells.astype(np.float64) - out.data) / 6.0  # known noise: sigma 6
    assert qc.data.dtype == np.float16  # 3 significant digits: plenty for a [-4, 4] display
    np.testing.assert_allclose(qc.data, expected, rtol=1e-3, atol=1e-3)
    assert qc.colormap.name == "coolwarm" and tuple(qc.contrast_limits) == (-4.0, 4.0)
    assert qc.metadata["pkn"]["units"] == "noise std"
    w = out.metadata["pkn"]["whiteness"]
    assert set(w) == {"lag1_y", "lag1_x", "score"} and abs(w["score"]) < 0.5
    assert qc.metadata["pkn"]["whiteness"] == w


def test_qc_is_for_denoising_only(viewer, cells):
    layer = viewer.add_image(cells[:32, :32], name="cells")
    added = napari_pkn.restore_layer(viewer, layer, "upsample", factor=2.0)
    assert not any(ly.name.endswith(" qc") for ly in added)
    assert "whiteness" not in added[0].metadata["pkn"]


def test_auto_strength_from_scripts(viewer, cells):
    """strength="auto": one SURE strength (on the first plane) for the whole stack, the
    one Restorer.auto_strength() gives, recorded as strength_auto."""
    from pkn.restoration import Restorer

    stack = np.stack([cells[:32, :32], cells[32:, 32:]])
    layer = viewer.add_image(stack, name="t")
    out, *_, qc = napari_pkn.restore_layer(viewer, layer, noise=6.0, strength="auto")
    expected, info = Restorer(stack[0], noise=6.0).auto_strength()
    meta = out.metadata["pkn"]
    assert meta["strength"] == pytest.approx(expected)
    assert meta["strength_auto"]["plane"] == [0]
    assert meta["strength_auto"]["candidates"] == info["candidates"]
    assert len(meta["whiteness_per_plane"]) == 2 and qc.data.shape == stack.shape
    fixed = Restorer(stack[1], noise=6.0).render(expected).image
    np.testing.assert_allclose(out.data[1], fixed, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="strength='auto' chooses the strength for denoise"):
        napari_pkn.restore_layer(viewer, layer, "upsample", factor=2.0, strength="auto")
    with pytest.raises(ValueError, match="or 'auto'"):
        napari_pkn.restore_layer(viewer, layer, strength="best")


def test_noise_text_is_one_readable_line():
    """The noise model as one formula for the std, with its sign and 3 digits."""
    from napari_pkn._qt._run import noise_text

    pg = {
        "model": "poisson-gaussian",
        "a": [np.float64(27.4321)],
        "b": [np.float64(-385.2)],
        "sigma": [np.float32(27.31)],
        "estimated": "pkn.noise.calibrate",
    }
    assert noise_text(pg) == (
        "noise: std = sqrt(27.4·I − 385) (Poisson-Gaussian, estimated; 27.3 at the mean)"
    )
    given = {"model": "poisson-gaussian", "a": 0.5, "b": 2.0, "estimated": False}
    assert noise_text(given) == "noise: std = sqrt(0.5·I + 2) (Poisson-Gaussian, given)"
    shot = {"model": "poisson-gaussian", "a": 0.5, "b": 0.0, "estimated": False}
    assert noise_text(shot) == "noise: std = sqrt(0.5·I) (Poisson-Gaussian, given)"
    awgn = {"model": "awgn", "sigma": [0.0512, 0.04], "estimated": "calibrate"}
    assert noise_text(awgn) == "noise: std = 0.0512, 0.04 (Gaussian, estimated)"


def test_units_of_maps_follow_the_layer_scale(viewer, cells):
    """Kernel widths in px, with the pixel size where the layer has physical units."""
    from napari_pkn._layers import pixel_size_text

    plain = viewer.add_image(cells, name="plain")
    aniso = viewer.add_image(cells, name="aniso", scale=(0.5, 0.25), units=("um", "um"))
    mixed = viewer.add_image(cells[None], name="z", scale=(2, 0.1, 0.1), units=("um", "nm", "nm"))
    assert pixel_size_text(plain) == ""
    assert pixel_size_text(aniso) == "1 px = 0.5 µm (y) x 0.25 µm (x)"
    assert pixel_size_text(mixed) == "1 px = 0.1 nm"
    added = napari_pkn.restore_layer(viewer, "plain", kernel="nlm", noise=6.0)
    assert added[2].name == "plain [PKN nlm] spatial_sigma (px)"


def test_messages_have_readable_numbers(viewer, cells):
    """No numpy scalar reprs (``np.int64(-50)``) in what the user reads."""
    from napari_pkn._layers import readable

    assert readable("got np.int64(-50) and np.float32(1.5)") == "got -50 and 1.5"
    layer = viewer.add_image(cells, name="cells")
    for bad in ({"strength": np.int64(-50)}, {"strength": np.float32(np.nan)}):
        with pytest.raises(ValueError) as err:
            napari_pkn.restore_layer(viewer, layer, **bad)
        assert "np." not in str(err.value) and "got" in str(err.value)
    with pytest.raises(ValueError, match=r"factor must be in \(1, 16\], got -50\."):
        napari_pkn.restore_layer(viewer, layer, "upsample", factor=np.int64(-50))
    out = napari_pkn.restore_layer(viewer, layer, strength=np.int64(1))[0]
    assert out.metadata["pkn"]["strength"] == 1.0


def test_psf_layer_is_imported_from_a_bead(viewer, cells):
    """A 2-D or 3-D bead layer becomes the PSF through pkn.psf.import_psf (its provenance
    in the result); a layer that is no PSF is refused with check_psf's message."""
    yy, xx = np.mgrid[-10:11, -12:13]
    planes = [np.exp(-(yy**2 + xx**2) / (2 * s * s)) / s**2 for s in (4.0, 1.3, 3.0)]
    bead = (np.stack(planes) * 900 + 100).astype(np.float32)  # in focus: plane 1
    stack = viewer.add_image(bead, name="bead3d")
    before = bead.copy()
    out = napari_pkn.restore_layer(viewer, cells_layer(viewer, cells), "deblur", blur=stack)[0]
    np.testing.assert_array_equal(stack.data, before)
    meta = out.metadata["pkn"]
    assert meta["psf_layer"] == "bead3d" and meta["blur"].startswith("psf array")
    assert meta["psf"]["plane"] == 1 and meta["psf"]["source_shape"] == [3, 21, 25]
    assert meta["psf"]["background"] == pytest.approx(100, abs=5)
    psf, _ = eng.psf_from_layer(stack)
    assert psf.dtype == np.float32 and psf.sum() == pytest.approx(1, abs=1e-5)
    assert psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
    assert np.unravel_index(np.argmax(psf), psf.shape) == (psf.shape[0] // 2,) * 2
    flat = viewer.add_image(np.random.default_rng(0).random((15, 15)), name="noise")
    with pytest.raises(ValueError, match="PSF layer 'noise'"):
        napari_pkn.restore_layer(viewer, "cells", "deblur", blur=flat)
    with pytest.raises(ValueError, match=r"PSF layer 'big'.*larger than"):
        eng.psf_from_layer(viewer.add_image(bead[1], name="big"), image_shape=(9, 9))


def cells_layer(viewer, cells):
    return (
        viewer.layers["cells"]
        if "cells" in viewer.layers
        else viewer.add_image(cells, name="cells")
    )


def test_isotropic_kernel_map_is_not_labelled_along_x(viewer, cells):
    """The isotropic Gaussian has one width: its map says "sigma" in px, no direction."""
    layer = viewer.add_image(cells[:32, :32], name="cells", scale=(0.1, 0.1), units=("um", "um"))
    sigma = napari_pkn.restore_layer(viewer, layer, "denoise", "gaussian")[1]
    about = sigma.metadata["pkn"]
    assert about["label"] == "sigma" and about["units"] == "px; 1 px = 0.1 µm"
    assert "along" not in sigma.name and sigma.name.endswith("(px; 1 px = 0.1 µm)")
