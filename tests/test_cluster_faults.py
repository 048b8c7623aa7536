"""Faults on a real Dask cluster: ``dask scheduler`` + ``dask worker`` processes on loopback
(:mod:`tests._fx_dask`): a SIGINTed client re-run to completion without --overwrite, a killed
scheduler, a scheduler without workers, 1000 trivial units with a bounded window, the sockets
the documented commands open. (SIGKILLed workers and transient errors: :mod:`tests.test_scale_out`.)
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from s2sr_cloud.batch import (
    PARTS_DIR,
    BatchEvent,
    ItemsFailed,
    ModelSpec,
    process_items,
    raise_for_failures,
)
from s2sr_cloud.catalog.presets import resolve_catalog
from s2sr_cloud.pipeline import RunParams

from ._fx_dask import BLOCK, S2SR, VA_ID, _no_leftovers
from ._fx_stac import SAMPLE, RangeServer, sample_items


# --------------------------------------------------------------------------- faults on a real cluster
def _va_items_file(cog_server: RangeServer, tmp_path: Path, slow: float, n: int) -> Path:
    """The Virginia item (540 x 540: three row bands at --block 120) on the Range server, its 60 m bands slow."""
    base = cog_server.prefix()
    for band in ("B09", "B01"):
        cog_server.fault(f"{base}/sentinel-2-l1c/{VA_ID}/{band}.tif", *[("slow", slow)] * n)
    catalog = tmp_path / "items.json"
    va = next(i for i in sample_items(base) if i["id"] == VA_ID)
    catalog.write_text(json.dumps(va))
    return catalog


def _cli(narrow: ModelSpec, *args: str) -> list[str]:
    return [S2SR, *args, *[a for _, p in narrow.onnx for a in ("--onnx", p)], "--device", "cpu"]


def _wait_for(cond, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_sigint_of_the_client_then_a_rerun_resumes_without_overwrite(narrow, reference, client, dask_cluster,
                                                                      cog_server: RangeServer, tmp_path: Path) -> None:
    """Ctrl-C against a shared cluster: the workers finish what they hold (COGs/parts and their
    records), the re-run without --overwrite resumes the split item from its finished parts."""
    item = _va_items_file(cog_server, tmp_path, 0.6, 8)
    out = tmp_path / "out"
    cmd = _cli(narrow, "run", str(item), "--out", str(out), "--block", str(BLOCK), "--scheduler", dask_cluster.address,
               "--json")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staging = out / PARTS_DIR / f"{VA_ID}-s2sr"
    try:
        _wait_for(lambda: proc.poll() is not None or list(staging.glob("rows-*.json")), what="a finished part")
    finally:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not (out / f"{VA_ID}-s2sr.tif").exists()
    # the workers finish the units they were running, each part under its lock (gone when done)
    _wait_for(lambda: not list(staging.glob(".*.lock")), what="the workers to finish their units")
    finished = sorted(p.name for p in staging.glob("rows-*.json"))
    assert finished and not list(staging.glob(".rows-*")), list(staging.iterdir())
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    (line,) = [json.loads(ln) for ln in again.stdout.splitlines()]
    assert line["status"] == "done" and line["units"] == 3 and line["units_resumed"] == len(finished)
    with rasterio.open(reference[VA_ID]) as a, rasterio.open(out / f"{VA_ID}-s2sr.tif") as b:  # other item href
        assert a.profile == b.profile and np.array_equal(a.read(), b.read())
        assert a.tags()["S2SR_CONSISTENCY_RMSE"] == b.tags()["S2SR_CONSISTENCY_RMSE"]
    rec = json.loads((out / f"{VA_ID}-s2sr.s2sr.json").read_text())
    with rasterio.open(reference[VA_ID]) as ref:  # the resumed parts' QA sums came back from their sidecars
        assert rec["consistency_rmse"] == json.loads(ref.tags()["S2SR_CONSISTENCY_RMSE"])
    _no_leftovers(out)
    # a third run skips it
    third = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and json.loads(third.stdout)["status"] == "skipped", third.stderr


def test_a_killed_scheduler_fails_the_items_in_words(narrow, cog_server: RangeServer, tmp_path: Path) -> None:
    from ._fx_dask import start_dask

    procs = start_dask(tmp_path / "dask", 1)
    try:
        item = _va_items_file(cog_server, tmp_path, 1.0, 8)
        out = tmp_path / "out"
        proc = subprocess.Popen(_cli(narrow, "run", str(item), "--out", str(out), "--block", str(BLOCK), "--scheduler",
                                     procs.address, "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: proc.poll() is not None or list(out.rglob(".*.lock")), what="a unit to start")
        finally:
            procs.scheduler.kill()
        stdout, err = proc.communicate(timeout=120)
    finally:
        procs.stop()
    assert proc.returncode == 3, err
    assert "Traceback" not in err and "None" not in err, err
    assert "lost the Dask scheduler" in err and VA_ID in " ".join(err.split())
    (line,) = [json.loads(ln) for ln in stdout.splitlines()]
    assert line["status"] == "failed" and line["error_type"] == "ClusterError" and line["exit_code"] == 3
    assert "lost the Dask scheduler" in line["error"]


def test_a_scheduler_without_workers_times_out_with_a_message(narrow, tmp_path: Path) -> None:
    from ._fx_dask import start_dask

    procs = start_dask(tmp_path / "dask", 0)
    item = SAMPLE / "sentinel-2-l2a" / "S2A_MSIL2A_20170613T101031_87_48" / "S2A_MSIL2A_20170613T101031_87_48.json"
    try:
        proc = subprocess.run(_cli(narrow, "run", str(item), "--out", str(tmp_path / "out"), "--scheduler", procs.address),
                              capture_output=True, text=True, timeout=120, env={**os.environ, "S2SR_DASK_TIMEOUT": "2"})
    finally:
        procs.stop()
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "no Dask worker joined" in proc.stderr and "S2SR_DASK_TIMEOUT" in proc.stderr


def test_a_thousand_trivial_items_keep_the_client_flat(narrow, client, tmp_path: Path) -> None:
    """1000 items whose units are trivial — the workers find --out to be a file (a cluster whose
    workers see another file system than the client): each unit fails in a millisecond on a
    worker — on the 2 workers: at most the window of units is in flight, every item is reported
    with its own error, and the client's memory does not grow with the items done."""
    psutil = pytest.importorskip("psutil")
    from s2sr_cloud.batch.cluster import window_size

    src = SAMPLE / "sentinel-2-l2a" / "S2A_MSIL2A_20170613T101031_87_48"
    doc = json.loads((src / f"{src.name}.json").read_text())
    for a in doc["assets"].values():
        a["href"] = str(src / a["href"].removeprefix("./"))
    doc["links"] = []
    items = [pystac.Item.from_dict({**copy.deepcopy(doc), "id": f"trivial-{i:04d}"}) for i in range(1000)]
    (tmp_path / "out").write_text("a file where the workers expect a folder")
    me = psutil.Process()
    rss: dict[int, int] = {}
    in_flight: list[int] = []

    def on_event(ev: BatchEvent) -> None:
        in_flight.append(ev.units_in_flight)
        if ev.kind == "item" and ev.done + ev.failed in (200, 1000):
            rss[ev.done + ev.failed] = me.memory_info().rss

    outcomes = process_items(items, resolve_catalog("sample"), RunParams(out_dir=tmp_path / "out", block=BLOCK),
                             models=narrow, client=client, on_event=on_event)
    assert [o.item_id for o in outcomes] == [i.id for i in items]
    assert {(o.status, o.error_type, o.exit_code, o.units) for o in outcomes} == {("failed", "OutputError", 9, 1)}
    assert all("is a file" in str(o.error) for o in outcomes)
    assert max(in_flight) <= window_size(client) == 4  # two per worker thread
    growth = rss[1000] - rss[200]
    assert growth < 25e6, f"the client grew by {growth / 1e6:.1f} MB over 800 items"
    with pytest.raises(ItemsFailed, match=r"1000 of 1000 items failed \(trivial-0000, .* and 990 more\)"):
        raise_for_failures(outcomes)


def test_the_documented_cluster_commands_listen_on_loopback_only(dask_cluster) -> None:
    """`dask scheduler --host 127.0.0.1 --dashboard-address 127.0.0.1:0` and `dask worker … --host
    127.0.0.1 --dashboard-address 127.0.0.1:0` (docs/scale-out.md): no socket on another address."""
    psutil = pytest.importorskip("psutil")
    procs = [psutil.Process(dask_cluster.scheduler.pid), psutil.Process(dask_cluster.workers.pid)]
    pids = {p.pid for proc in procs for p in [proc, *proc.children(recursive=True)]}
    listening = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert len(listening) >= 5  # scheduler + its HTTP server, 2 nannies, 2 workers + their HTTP servers
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening


def test_a_worker_that_cannot_load_the_models_stops_the_run_in_words(api_items, client, tmp_path: Path) -> None:
    """The probe unit loads the runners on a worker first: weights the workers do not have are one
    ClusterError (exit 3) naming the worker and the cause, before any item is submitted."""
    from s2sr_cloud.errors import ClusterError

    prof, items = api_items
    missing = ModelSpec(onnx=(("net20", str(tmp_path / "only-on-the-client.onnx")),), device="cpu")
    with pytest.raises(ClusterError, match=r"a Dask worker \(tcp://127\.0\.0\.1:\d+\) cannot load the models: .*"
                                           r"only-on-the-client\.onnx") as info:
        process_items(items, prof, RunParams(out_dir=tmp_path / "out"), models=missing, client=client)
    assert info.value.exit_code == 3 and not (tmp_path / "out").exists()


def test_dask_failures_in_words() -> None:
    """The Dask-side failures a unit can end with, as the ClusterError the user reads (exit 3)."""
    from distributed import KilledWorker

    from s2sr_cloud.batch.cluster import cluster_failure
    from s2sr_cloud.errors import ClusterError, RasterReadError

    killed = cluster_failure(KilledWorker("s2sr-item-x", None, 3), "tcp://127.0.0.1:8786")
    assert isinstance(killed, ClusterError) and killed.exit_code == 3 and "died 3 times in a row" in str(killed)
    assert "lost the Dask scheduler at tcp://127.0.0.1:8786" in str(cluster_failure(None, "tcp://127.0.0.1:8786"))
    missing = cluster_failure(ModuleNotFoundError("No module named 's2sr_cloud'"), "tcp://127.0.0.1:8786")
    assert "cannot run s2sr units" in str(missing) and "[dask] extra" in str(missing)
    own = RasterReadError("band B05: not found")
    assert cluster_failure(own, "x") is own  # an s2sr error stays itself (its own exit code)
