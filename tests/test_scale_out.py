"""Scale-out on Dask distributed: a real cluster (``dask scheduler`` + ``dask worker`` processes on
loopback, :mod:`tests._fx_dask`) shared by the session, and LocalClusters where the CLI starts them.

Items come from the loopback STAC API (rustac) over the Range server; the nets are real
DSen2 graphs (depth 6: the real 14 px halo) only 8 features wide, exported to ONNX, so the
workers run the same ONNX Runtime code as production at a fraction of the cost. The faults are
real too: SIGKILLed workers, a SIGINTed client re-run to completion, a killed scheduler, a
scheduler without workers.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from s2sr_cloud.bands import SR_BANDS
from s2sr_cloud.batch import (
    BatchEvent,
    ItemsFailed,
    ModelSpec,
    process_items,
    raise_for_failures,
    same_model,
    split_rows,
)
from s2sr_cloud.catalog.presets import resolve_catalog
from s2sr_cloud.catalog.search import SearchParams, parse_bbox, search_items
from s2sr_cloud.errors import MissingAsset, OutputExists, RasterReadError
from s2sr_cloud.pipeline import RunParams

from ._fx_dask import BLOCK, FAST, S2SR, VA_ID, _no_leftovers, _same_cog
from ._fx_stac import SAMPLE, RangeServer, sample_items


def test_split_rows_are_whole_blocks() -> None:
    assert split_rows(540, 120, 240) == [(0, 240), (240, 480), (480, 540)]
    assert split_rows(540, 120, 200) == [(0, 240), (240, 480), (480, 540)]  # rounded up to whole blocks
    assert split_rows(10980, 1536, None) == [(0, 3072), (3072, 6144), (6144, 9216), (9216, 10980)]
    assert split_rows(100, 1536, None) == [(0, 100)]


def test_same_model_rule() -> None:
    a = {"net20": {"checkpoint_sha256": "c1", "onnx_sha256": "o1"}, "net60": {"onnx_sha256": "o2"}}
    trt = {"net20": {"checkpoint_sha256": "c1", "onnx_sha256": None, "backend": "tensorrt"}, "net60": {"onnx_sha256": "o2"}}
    assert same_model(a, trt)  # same weights on another backend
    assert not same_model(a, {**a, "net60": {"onnx_sha256": "other"}})
    assert not same_model(a, {**a, "net20": {**a["net20"], "precision": "fp16"}})
    assert not same_model(a, {"net20": a["net20"]})


def test_cluster_run_equals_in_process_and_reruns_skip(api_items, narrow, reference, client, tmp_path: Path) -> None:
    prof, items = api_items
    events: list[BatchEvent] = []
    published: list[tuple[int, str, bool]] = []

    inodes: dict[str, int] = {}

    def publish(result) -> None:  # runs in this process, after the worker wrote the record
        rec = result.path.with_name(result.path.stem + ".s2sr.json")
        published.append((os.getpid(), result.item.id, rec.is_file()))
        inodes[result.item.id] = rec.stat().st_ino

    params = RunParams(out_dir=tmp_path, block=BLOCK, http=FAST)
    outcomes = process_items(items, prof, params, models=narrow, client=client, unit_rows=2 * BLOCK,
                             on_event=events.append, publish=publish)
    assert [o.item_id for o in outcomes] == [i.id for i in items]
    assert [o.status for o in outcomes] == ["done"] * 4, [o.error for o in outcomes]
    by_id = {o.item_id: o for o in outcomes}
    assert by_id[VA_ID].units == 3  # 540 rows in bands of 240: the item spread over the workers
    assert all(o.units == 1 for o in outcomes if o.item_id != VA_ID)
    assert len({w for o in outcomes for w in o.workers}) == 2
    for o in outcomes:
        _same_cog(reference[o.item_id], o.path)  # pixels and tags, the consistency QA included
        rec_path = o.path.with_name(o.path.stem + ".s2sr.json")
        assert rec_path.stat().st_ino == inodes[o.item_id]  # written once (atomically: a new inode per write)
        rec = json.loads(rec_path.read_text())  # written by the worker, right after the COG
        # the split item's QA: its row bands' sums of squares and counts merged on assembly
        assert rec["backproject"] == 2 and set(rec["consistency_rmse"]) == set(SR_BANDS)
        with rasterio.open(reference[o.item_id]) as ref:
            assert rec["consistency_rmse"] == json.loads(ref.tags()["S2SR_CONSISTENCY_RMSE"])
        assert o.result is not None and o.result.item is next(i for i in items if i.id == o.item_id)
    _no_leftovers(tmp_path)
    assert sorted(published) == sorted((os.getpid(), i.id, True) for i in items)
    items_ev = [e for e in events if e.kind == "item"]
    assert [e.done for e in items_ev] == [1, 2, 3, 4] and items_ev[-1].units_done == items_ev[-1].units_total == 6
    assert items_ev[-1].pixels_done == 540 * 540 + 3 * 120 * 120
    # a re-run skips what is done with the same model, without submitting any unit
    again = process_items(items, prof, params, models=narrow, client=client, unit_rows=2 * BLOCK)
    assert [o.status for o in again] == ["skipped"] * 4 and all(o.units == 0 for o in again)


def test_killed_worker_loses_no_item(api_items, narrow, reference, client, cog_server: RangeServer, tmp_path: Path) -> None:
    prof, items = api_items
    # slow first reads keep every unit busy for a while, so a worker dies with work in hand
    for it in items:
        cog_server.fault(it.assets["red"].href, *[("slow", 0.4)] * 3)
    pids = client.run(os.getpid)
    killed: list[tuple[str, list[str]]] = []
    lock = threading.Lock()

    def on_event(ev: BatchEvent) -> None:
        with lock:
            if killed or ev.kind not in ("unit", "item") or ev.units_done == 0:
                return
            busy = {w: [str(k) for k in keys if str(k).startswith("s2sr-")] for w, keys in client.processing().items()}
            victim = next((w for w, keys in busy.items() if keys), None)
            if victim is not None:
                killed.append((victim, busy[victim]))
                os.kill(pids[victim], signal.SIGKILL)

    outcomes = process_items(items, prof, RunParams(out_dir=tmp_path, block=BLOCK, http=FAST), models=narrow,
                              client=client, unit_rows=2 * BLOCK, on_event=on_event, retries=1)
    assert killed, "no worker was busy when the first unit finished"
    # "skipped": a unit that had finished on the dead worker, its result not yet fetched, is run again
    # by Dask and finds its own output done (the CLI then publishes it from its record); every
    # output below was written by this run (a fresh folder) and equals the in-process one
    assert {o.status for o in outcomes} <= {"done", "skipped"}, [o.error for o in outcomes]
    victim, keys = killed[0]
    for o in outcomes:
        _same_cog(reference[o.item_id], o.path)
    # the units the dead worker held ran again elsewhere (keys: s2sr-<kind>-<batch>-<item index>[-<row>])
    for k in keys:
        kind, _batch, index = k.split("-")[1:4]
        if kind != "part":
            assert outcomes[int(index)].workers[-1] != victim, (k, outcomes[int(index)].workers)
    _no_leftovers(tmp_path)


def test_failing_unit_is_reported_and_the_rest_complete(api_items, narrow, reference, client, cog_server: RangeServer,
                                                       tmp_path: Path) -> None:
    prof, items = api_items
    small = [i for i in items if i.id != VA_ID]
    broken = copy.deepcopy(small[0].to_dict(transform_hrefs=False))
    broken["id"] = "broken-b09"
    broken["assets"]["nir09"]["href"] = f"{cog_server.prefix()}/no/such/B09.tif"
    bad_path = broken["assets"]["nir09"]["href"].split("/", 3)[3]
    no_band = copy.deepcopy(broken)
    no_band["id"] = "no-b09"
    del no_band["assets"]["nir09"]
    batch = [pystac.Item.from_dict(broken), *small, pystac.Item.from_dict(no_band)]
    outcomes = process_items(batch, prof, RunParams(out_dir=tmp_path, block=BLOCK, http=FAST), models=narrow,
                             client=client, retries=1)
    status = {o.item_id: o for o in outcomes}
    assert [status[i.id].status for i in small] == ["done"] * 3
    for i in small:
        _same_cog(reference[i.id], status[i.id].path)
    bad = status["broken-b09"]
    assert bad.status == "failed" and isinstance(bad.error, RasterReadError) and "B09" in str(bad.error)
    assert bad.exit_code == 6 and not bad.path.exists()
    # an HTTP 404 is not transient: one attempt (one request) and no Dask retry
    assert len([r for r in cog_server.log if r.path.endswith(bad_path)]) == 1
    # a deterministic one (no B09 asset) fails on the client before any unit is submitted
    nb = status["no-b09"]
    assert nb.status == "failed" and isinstance(nb.error, MissingAsset) and nb.units == 0
    with pytest.raises(ItemsFailed, match=r"2 of 5 items failed \(broken-b09, no-b09\)") as info:
        raise_for_failures(outcomes)
    assert info.value.exit_code == 6
    assert json.loads(json.dumps(bad.to_json()))["error_type"] == "RasterReadError"
    _no_leftovers(tmp_path)


def test_in_process_batch_skips_done_items_and_keeps_other_models_outputs(api_items, narrow, tmp_path: Path) -> None:
    prof, items = api_items
    small = [i for i in items if i.id != VA_ID][:2]
    params = RunParams(out_dir=tmp_path, block=BLOCK, http=FAST)
    runners = narrow.load()
    first = process_items(small, prof, params, models=runners)
    assert [o.status for o in first] == ["done", "done"]
    assert [o.status for o in process_items(small, prof, params, models=runners)] == ["skipped", "skipped"]
    rec = first[0].path.with_name(first[0].path.stem + ".s2sr.json")
    doc = json.loads(rec.read_text())
    doc["models"]["net20"]["onnx_sha256"] = "another-model"
    rec.write_text(json.dumps(doc))  # as if made by other weights: not done, and not silently replaced
    again = process_items(small, prof, params, models=runners)
    assert [o.status for o in again] == ["failed", "skipped"] and isinstance(again[0].error, OutputExists)


def test_cli_search_run_workers_writes_the_in_process_cogs(narrow, tmp_path: Path) -> None:
    """The issue's acceptance command on the bundled sample, as a real process, with --json."""
    bbox = "-75.71,37.725,-75.69,37.745"
    prof = resolve_catalog("sample")
    ref = process_items(search_items(prof, SearchParams(bbox=parse_bbox(bbox))), prof,
                        RunParams(out_dir=tmp_path / "ref", bbox=parse_bbox(bbox)), models=narrow)
    onnx = [a for _, p in narrow.onnx for a in ("--onnx", p)]
    out = tmp_path / "dask"
    proc = subprocess.run([S2SR, "search", "--catalog", "sample", "--bbox", bbox, "--run", "--workers", "2",
                           "--out", str(out), "--json", *onnx, "--device", "cpu"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "1 done, 0 failed" in proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert [(d["id"], d["status"]) for d in lines] == [(VA_ID, "done")]
    assert len(lines[0]["workers"]) == 1 and lines[0]["path"] == str(out / f"{VA_ID}-s2sr.tif")
    _same_cog(ref[0].path, Path(lines[0]["path"]))
    _no_leftovers(out)


def test_cli_run_on_a_running_scheduler_named_by_the_environment(narrow, client, reference, tmp_path: Path) -> None:
    """`s2sr run` as a real process submits to the running cluster named by DASK_SCHEDULER_ADDRESS."""
    item_id = next(i for i in reference if i != VA_ID)
    item = SAMPLE / "sentinel-2-l2a" / item_id / f"{item_id}.json"
    onnx = [a for _, p in narrow.onnx for a in ("--onnx", p)]
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": client.scheduler.address}
    proc = subprocess.run([S2SR, "run", str(item), "--out", "out", "--json", *onnx, "--device", "cpu"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"the Dask scheduler {client.scheduler.address}" in " ".join(proc.stderr.split())
    (line,) = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert line["status"] == "done" and line["workers"][0] in client.scheduler_info()["workers"]
    assert line["path"] == f"out/{item_id}-s2sr.tif"  # as named by --out, as in process (the workers got it absolute)
    with rasterio.open(tmp_path / line["path"]) as a, rasterio.open(reference[item_id]) as b:
        assert np.array_equal(a.read(), b.read())
    assert len(client.scheduler_info()["workers"]) == 2  # the cluster outlives the run


def test_ctrl_c_on_a_local_cluster_leaves_nothing_half_written(narrow, cog_server: RangeServer, tmp_path: Path) -> None:
    """SIGINT while a worker is writing: exit 130, the workers go, and so do their temporary files."""
    base = cog_server.prefix()
    for band in ("B09", "B01"):  # reads that hang for a while keep the unit mid-write
        cog_server.fault(f"{base}/sentinel-2-l1c/{VA_ID}/{band}.tif", *[("slow", 4.0)] * 4)
    catalog = tmp_path / "items.json"
    va = next(i for i in sample_items(base) if i["id"] == VA_ID)
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": [va]}))
    onnx = [a for _, p in narrow.onnx for a in ("--onnx", p)]
    out = tmp_path / "out"
    proc = subprocess.Popen([S2SR, "search", "--catalog", str(catalog), "--bbox", "-75.71,37.725,-75.69,37.745", "--run",
                             "--workers", "2", "--out", str(out), *onnx, "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert list(out.glob(".*")), "the worker never started writing"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Compute Failed" not in err
    assert not list(out.iterdir())


# --------------------------------------------------------------------------- retries and limits
def test_transient_errors_are_retried_and_deterministic_ones_are_not(tmp_path: Path) -> None:
    from s2sr_cloud.batch.units import is_transient
    from s2sr_cloud.errors import CatalogHTTPError
    from s2sr_cloud.io.read import read_error

    assert is_transient(read_error(OSError("HTTP response code: 503"), "B05", "http://x/B05.tif"))
    assert is_transient(read_error(OSError("CURL error: Failed to connect to x port 9"), "B05", "http://x/B05.tif"))
    assert not is_transient(read_error(OSError("HTTP response code: 404"), "B05", "http://x/B05.tif"))
    assert not is_transient(read_error(OSError("not recognized as a supported file format"), "B05", "/x/B05.tif"))
    assert is_transient(CatalogHTTPError("busy", 503)) and not is_transient(CatalogHTTPError("no", 400))
    assert is_transient(ConnectionResetError()) and not is_transient(KeyError("a bug"))
    assert not is_transient(OutputExists("x exists"))  # an OSError-free S2SR error: deterministic


def test_a_transient_read_error_is_retried_to_success(api_items, narrow, reference, client, cog_server: RangeServer,
                                                       tmp_path: Path) -> None:
    prof, _ = api_items
    item_id = next(i for i in reference if i != VA_ID)
    item = pystac.Item.from_dict(next(d for d in sample_items(cog_server.prefix()) if d["id"] == item_id))
    href = item.assets["nir09"].href  # a fresh prefix: no worker has this file in its GDAL cache
    cog_server.fault(href, 503, 503, 503)  # GDAL retries once (FAST): the first attempt fails, the second passes
    outcomes = process_items([item], prof, RunParams(out_dir=tmp_path, block=BLOCK, http=FAST), models=narrow,
                             client=client, retries=2)
    assert [o.status for o in outcomes] == ["done"], [o.error for o in outcomes]
    with rasterio.open(reference[item_id]) as a, rasterio.open(outcomes[0].path) as b:
        assert np.array_equal(a.read(), b.read())
    path = href.split("/", 3)[3]
    assert [r.status for r in cog_server.log if r.path.endswith(path)][:3] == [503, 503, 503]


def test_worker_threads_come_from_the_worker_and_idle_threads_warn(client, narrow) -> None:
    from distributed import Client, LocalCluster

    from s2sr_cloud.batch.cluster import warn_idle_threads
    from s2sr_cloud.batch.models import usable_cpus, worker_threads
    from s2sr_cloud.errors import IdleThreadsWarning

    got = client.run(lambda: (worker_threads(ModelSpec()), usable_cpus()))
    assert {t for t, _ in got.values()} == {max(1, cpus // 2) for _, cpus in got.values()}  # 2 workers on this host
    assert worker_threads(ModelSpec(threads=3)) == 3 and worker_threads(ModelSpec()) is None  # not on a worker
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as lc, \
            Client(lc) as c, pytest.warns(IdleThreadsWarning, match="--nthreads 1"):
        warn_idle_threads(c)


def test_cgroup_cpu_quota_bounds_the_threads(tmp_path: Path) -> None:
    from s2sr_cloud.settings import cgroup_cpu_quota

    (tmp_path / "cpu.max").write_text("150000 100000\n")  # the cgroup v2 file of a container with cpus=1.5
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None




def test_a_split_item_estimates_its_operators_once_for_its_parts(api_items, narrow, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A split item's `auto` operators come from one estimate unit: its parts and assembly use its
    result as it is (they do not estimate again), and a failed estimate fails them unrun."""
    from dataclasses import replace

    from s2sr_cloud.batch.cluster import item_doc
    from s2sr_cloud.batch.units import Unit, UnitResult, run_unit
    from s2sr_cloud.post import estimate

    prof, items = api_items
    doc, hrefs = item_doc(next(i for i in items if i.id == VA_ID))
    params = RunParams(out_dir=tmp_path, block=BLOCK, http=FAST)
    unit = Unit("estimate", doc, prof, params, narrow, hrefs)
    est = run_unit(unit)
    assert est.error is None and est.post is not None
    assert set(dict(est.post.resolved)) == {"net20", "net60"}  # both nets run auto post-steps by default

    calls: list[object] = []
    real = estimate.estimate_source
    monkeypatch.setattr(estimate, "estimate_source", lambda *a, **k: calls.append(a) or real(*a, **k))
    # given an estimate (here a deliberately different one), a part uses it and records it in its sidecar
    forced = params.post.with_resolved({"net20": "bicubic", "net60": 0.3})
    part = replace(unit, kind="part", rows=(0, BLOCK), part=str(tmp_path / "parts" / "rows-0.tif"), width=540)
    done = run_unit(part, UnitResult("w", 1.0, post=forced))
    assert done.error is None and done.part == part.part and calls == []
    side = json.loads(Path(part.part).with_suffix(".json").read_text())
    assert side["made_with"]["post"]["resolved"] == {"net20": "bicubic", "net60": "gaussian:0.3"}
    # without one it estimates itself (a unit from an older client), and gets the estimate unit's value
    alone = replace(part, rows=(BLOCK, 2 * BLOCK), part=str(tmp_path / "parts" / "rows-1.tif"))
    assert run_unit(alone).error is None and len(calls) == 1
    side = json.loads(Path(alone.part).with_suffix(".json").read_text())
    assert side["made_with"]["post"]["resolved"] == dict(est.post.resolved)
    # a failed estimate: the part fails with its error, and nothing is written
    failed = replace(part, rows=(2 * BLOCK, 3 * BLOCK), part=str(tmp_path / "parts" / "rows-2.tif"))
    bad = run_unit(failed, UnitResult("w", 0.0, error=RasterReadError("B05: HTTP 503")))
    assert isinstance(bad.error, RasterReadError) and bad.rows == failed.rows
    assert not Path(failed.part).exists() and len(calls) == 1
