"""The lazy graph of pkn.restore on a dask.distributed cluster (LocalCluster, 2 worker
processes of one thread each) and ``python -m pkn restore --scheduler``."""

import json
import os

import dask.array as da
import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="the 'cluster' extra is not installed")

import pkn  # noqa: E402
from pkn._batch import main  # noqa: E402
from pkn._io import Geometry, Output, read_image, write_images  # noqa: E402
from pkn.samples import natural  # noqa: E402


def _stack(n=2, size=64):
    noisy, _ = natural(0.08, seed=3)
    return np.stack([noisy[200 + 7 * i : 200 + 7 * i + size, 200 : 200 + size] for i in range(n)])


@pytest.fixture(scope="module")
def cluster():
    env = {"PKN_THREADS": "1", "OMP_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the worker processes inherit it
    try:
        with distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as c:
            yield c
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_the_lazy_graph_computes_on_the_cluster_like_in_memory(cluster):
    x = _stack().astype(np.float32)
    want = pkn.restore(x, noise=0.08)
    r = pkn.restore(da.from_array(x, chunks=(1, 64, 64)), noise=0.08)
    assert isinstance(r.image, da.Array)
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as ts:
        image, maps = client.compute([r.image, r.maps], sync=True)
        workers = set(client.scheduler_info()["workers"])
    assert len(workers) == 2 and ts.data  # the tasks ran in the worker processes
    assert {t["worker"] for t in ts.data} <= workers
    np.testing.assert_allclose(image, want.image, rtol=1e-5, atol=1e-5)
    assert maps.keys() == want.maps.keys()
    for k in maps:
        np.testing.assert_allclose(maps[k], want.maps[k], rtol=1e-5, atol=1e-5)


def test_batch_command_sends_the_work_to_a_running_scheduler(cluster, tmp_path, capsys):
    u = (_stack(3) * 3000 + 200).clip(0, 65535).astype(np.uint16)
    g = Geometry(("z", "y", "x"), (2.0, 0.3, 0.3), (0.0, 0.0, 0.0), ("micrometer",) * 3)
    src = tmp_path / "s.ome.zarr"
    write_images([Output(src, u, g)])
    local, remote = tmp_path / "local", tmp_path / "remote"
    args = [str(src), "--quiet", "--maps", "--noise", "0.08,0"]
    assert main([*args, "--out", str(local)]) == 0
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as ts:
        assert main([*args, "--out", str(remote), "--scheduler", cluster.scheduler_address]) == 0
    assert any("store" in t["key"][0] for t in ts.data if isinstance(t["key"], tuple)), (
        "the chunks were not written by the cluster's workers"
    )
    a, b = read_image(local / "s_pkn.ome.zarr"), read_image(remote / "s_pkn.ome.zarr")
    assert b.geometry == g
    np.testing.assert_allclose(np.asarray(b.data), np.asarray(a.data), rtol=1e-5, atol=1e-5)
    info = json.loads((remote / "s_pkn.json").read_text())
    assert info["model"] == "nlm" and "restored" in capsys.readouterr().err


def test_a_bad_scheduler_address_exits_2_with_one_line(tmp_path, capsys):
    tif = tmp_path / "a.ome.tif"
    write_images([Output(tmp_path / "a.ome.tif", _stack(1)[0], Geometry.default(("y", "x")))])
    assert main([str(tif), "--out", str(tmp_path / "o"), "--scheduler", "nowhere:::"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pkn restore: error: cannot connect to --scheduler nowhere:::")
    assert len(err.splitlines()) == 1
