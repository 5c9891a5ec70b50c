"""Write tests/data/golden_restore.npz: pkn.restore's outputs for every shipped model.

The golden file pins what users get: tests/test_golden.py re-runs the same calls and
compares (max difference <= 1e-6 of the output's range). Regenerate it only on purpose,
when a change of results is intended and documented:

    .venv/bin/python scripts/make_golden.py [--only PATTERN] [--into FILE]

``--only`` regenerates just the keys containing PATTERN and keeps the others from the
existing file (e.g. ``--only gray-given`` from an older checkout, to pin code paths
independently of a changed noise estimator).

History: written before the kernel-registry refactor (issue #10) and checked unchanged
after it; the automatic-noise cases were regenerated when ``pkn.noise.calibrate``
replaced the Haar estimate (issue #11, intended); the ``-given`` cases (noise given) come
from the code before the refactor (commit b62a097), except those of ``nlm`` and
``nlm-wide``, regenerated (``--only nlm/``, ``--only nlm-wide/``) when the correlation-aware
``nlm`` replaced the white-noise one and ``nlm-wide`` was added (issue #11, intended).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden_restore.npz"


def inputs() -> dict[str, np.ndarray]:
    """A gray image of odd height, a colour one (channels last) and a gray one of even
    size (where the kernels resample the maps themselves), with structure and noise."""
    rng = np.random.default_rng(20261203)
    yy, xx = np.mgrid[0:45, 0:52].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + 0.2 * (xx > 26)
    gray = (base + 0.05 * rng.standard_normal(base.shape)).astype(np.float32)
    rgb = np.stack([base, base[::-1], base[:, ::-1]], axis=-1)
    rgb = (rgb + 0.08 * rng.standard_normal(rgb.shape)).astype(np.float32)
    even = (base[:44, :52] + 0.05 * rng.standard_normal((44, 52))).astype(np.float32)
    return {"gray": gray, "rgb": rgb, "even": even}


def cases():
    """(key, kwargs for pkn.restore) for every shipped model, gray and colour."""
    from pkn.models.io import list_models, load_model

    for name in list_models():
        net, _ = load_model(name)
        task = net.spec.task
        extra = {"denoise": {}, "deblur": {"blur": 1.5}, "upsample": {"scale": 1.5}}[task]
        for kind in ("gray", "rgb", "even"):
            kw = {"task": task, "model": name, "kernel": net.kernel, **extra}
            if kind == "rgb":
                kw["channel_axis"] = -1
            yield f"{name}/{kind}", kind, kw
        # the noise given: independent of the noise estimator (these pin the kernels,
        # maps and filter path; the cases above also pin the automatic estimate)
        kw = {"task": task, "model": name, "kernel": net.kernel, "noise": 0.05, **extra}
        yield f"{name}/gray-given", "gray", kw
        if task == "deblur":  # a PSF array instead of a Gaussian sigma
            yy, xx = np.mgrid[-3:4, -3:4]
            psf = np.exp(-(xx**2 / 3.0 + yy**2 / 1.5)).astype(np.float32)
            kw = {"task": task, "model": name, "kernel": net.kernel, "blur": psf / psf.sum()}
            yield f"{name}/gray-psf", "gray", kw


def main(argv=None) -> int:
    import argparse

    import pkn

    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=None, help="regenerate only keys containing this")
    ap.add_argument("--into", default=str(OUT), help="golden file to write (and read)")
    a = ap.parse_args(argv)
    target = Path(a.into)
    data = inputs()
    out = {f"input/{k}": v for k, v in data.items()}
    if a.only and target.exists():
        old = np.load(target)
        out.update({k: old[k] for k in old.files if a.only not in k})
    for key, kind, kw in cases():
        if a.only and a.only not in key:
            continue
        r = pkn.restore(data[kind], strength=0.9, **kw)
        out[f"{key}/image"] = r.image
        for m, v in r.maps.items():
            out[f"{key}/map/{m}"] = v
        if kw["task"] != "upsample":  # the kernel probe at one pixel (last channel)
            c = 2 if kind == "rgb" else 0
            rr = pkn.Restorer(data[kind], **{k: v for k, v in kw.items() if k != "strength"})
            pr = rr.probe((20, 25), channel=c, strength=0.8)
            out[f"{key}/probe/weights"] = pr.weights
            out[f"{key}/probe/origin"] = np.asarray(pr.origin)
            out[f"{key}/probe/value"] = np.asarray(pr.value)
        print(key, r.image.shape, sorted(r.maps))
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target, **out)
    print(f"wrote {target} ({target.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
