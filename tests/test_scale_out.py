"""Scale-out on Dask distributed: a real LocalCluster of 2 worker processes on loopback.

Items come from the loopback STAC API (rustac) over the Range server; the nets are real
DSen2 graphs (depth 6: the real 14 px halo) only 8 features wide, exported to ONNX, so the
workers run the same ONNX Runtime code as production at a fraction of the cost.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
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
    same_model,
    split_rows,
)
from s2sr_cloud.catalog.presets import resolve_catalog
from s2sr_cloud.catalog.search import SearchParams, parse_bbox, search_items
from s2sr_cloud.errors import MissingAsset, OutputExists, RasterReadError
from s2sr_cloud.io.env import HttpParams
from s2sr_cloud.bands import SR_BANDS
from s2sr_cloud.pipeline import RunParams

from ._fx_stac import SAMPLE, RangeServer, sample_items

VA_ID = "S2A_18SVG_20160112_0_L1C"
WORLD = (-180.0, -90.0, 180.0, 90.0)
FAST = HttpParams(max_retry=1, retry_delay_s=0.05, timeout_s=10)
S2SR = str(Path(sys.executable).parent / "s2sr")
BLOCK = 120  # small blocks, so the 540 x 540 Virginia item splits into row bands


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    """Random DSen2 nets 8 features wide, exported to ONNX with manifests."""
    torch = pytest.importorskip("torch")
    from s2sr_cloud.bands import SCALE, VariantSpec, net_spec
    from s2sr_cloud.infer.manifest import MANIFEST_FORMAT, sha256_file
    from s2sr_cloud.nets.model import DSen2

    d = tmp_path_factory.mktemp("narrow")
    paths = {}
    for i, n in enumerate(("net20", "net60")):
        torch.manual_seed(11 + i)
        m = DSen2(net_spec(n), VariantSpec("dsen2", 6, 8)).eval()
        p = d / f"{n}_narrow.onnx"
        axes = {0: "batch", 2: "height", 3: "width"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (torch.zeros(1, m.spec.in_channels, 64, 64),), str(p), input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": axes, "output": axes},
                              opset_version=17, dynamo=False)
        p.with_suffix(".json").write_text(json.dumps({
            "format": MANIFEST_FORMAT, "name": p.stem, "net": n, "variant": "dsen2", "inputs": list(m.spec.inputs),
            "outputs": list(m.spec.outputs), "halo": m.halo, "scale": SCALE, "onnx_sha256": sha256_file(p)}))
        paths[n] = p
    return ModelSpec.of(onnx=paths, device="cpu")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def api_items(stac_apis: dict[str, str]) -> tuple[object, list[pystac.Item]]:
    """The 4 sample items found through the loopback STAC API (hrefs on the Range server)."""
    prof = resolve_catalog(f"sample={stac_apis['sample']}")
    items = search_items(prof, SearchParams(bbox=WORLD))
    assert len(items) == 4 and VA_ID in [i.id for i in items]
    return prof, items


@pytest.fixture(scope="module")
def reference(api_items, narrow: ModelSpec, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The in-process run of the 4 items: the outputs a cluster run must equal."""
    prof, items = api_items
    out = tmp_path_factory.mktemp("in-process")
    outcomes = process_items(items, prof, RunParams(out_dir=out, block=BLOCK, http=FAST), models=narrow)
    assert [o.status for o in outcomes] == ["done"] * 4
    return {o.item_id: o.path for o in outcomes}


def _same_cog(a: Path, b: Path) -> None:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.profile == y.profile and x.tags() == y.tags() and x.descriptions == y.descriptions
        assert np.array_equal(x.read(), y.read())
        assert [x.tags(i) for i in range(1, x.count + 1)] == [y.tags(i) for i in range(1, y.count + 1)]


def _no_leftovers(out: Path) -> None:
    assert not (out / PARTS_DIR).exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


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

    def publish(result) -> None:  # runs in this process, after the record is written
        rec = result.path.with_name(result.path.stem + ".s2sr.json")
        published.append((os.getpid(), result.item.id, rec.is_file()))

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
        rec = json.loads(o.path.with_name(o.path.stem + ".s2sr.json").read_text())  # written by the client
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
    assert [o.status for o in outcomes] == ["done"] * 4, [o.error for o in outcomes]
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
    # a transient error (a read) is retried once by Dask: two attempts reached the server
    attempts = [r for r in cog_server.log if r.path.endswith(bad_path)]
    per_attempt = len(attempts) / 2
    assert per_attempt >= 1 and per_attempt == int(per_attempt)
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
    proc = subprocess.run([S2SR, "run", str(item), "--out", str(tmp_path), "--json", *onnx, "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"the Dask scheduler {client.scheduler.address}" in " ".join(proc.stderr.split())
    (line,) = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert line["status"] == "done" and line["workers"][0] in client.scheduler_info()["workers"]
    with rasterio.open(line["path"]) as a, rasterio.open(reference[item_id]) as b:
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
