"""A real Dask cluster for the tests: ``dask scheduler`` and ``dask worker`` processes on loopback.

Both are started as separate processes (as a user would: the documented commands), every
listening socket on 127.0.0.1 (``--host 127.0.0.1``, dashboards on ``127.0.0.1:0``), and torn
down reliably (their process groups are killed, also when a test fails). The session fixture
:func:`dask_cluster` is shared by every test that does not break its cluster; tests that kill a
scheduler start their own with :func:`start_dask`. Also shared by the scale-out tests: narrow
DSen2 nets (:func:`narrow`), the sample items through the loopback STAC API and their in-process
outputs (:func:`reference`), a client of the session's cluster (:func:`client`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from s2sr_cloud.batch import PARTS_DIR, ModelSpec, process_items
from s2sr_cloud.catalog.presets import resolve_catalog
from s2sr_cloud.catalog.search import SearchParams, search_items
from s2sr_cloud.io.env import HttpParams
from s2sr_cloud.pipeline import RunParams

DASK = str(Path(sys.executable).parent / "dask")


@dataclass
class DaskProcs:
    """A scheduler process, optionally one ``dask worker`` process (its nanny starts ``nworkers``)."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def stop(self) -> None:
        for proc in (self.workers, self.scheduler):
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the nanny's worker processes too
            proc.wait(timeout=30)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs if p.exists())


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    env["DASK_TEMPORARY_DIRECTORY"] = str(tmp / "scratch")  # the workers' spill folders: not /tmp/dask-scratch-space
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")] if p)
    return env


def start_dask(tmp: Path, nworkers: int = 2, *, timeout: float = 120) -> DaskProcs:
    """Start a scheduler (and ``nworkers`` worker processes of 1 thread, unless 0) on loopback."""
    tmp.mkdir(parents=True, exist_ok=True)
    info = tmp / "scheduler.json"
    info.unlink(missing_ok=True)
    slog, wlog = tmp / "scheduler.log", tmp / "workers.log"
    sched = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
         "--scheduler-file", str(info)], stdout=slog.open("wb"), stderr=subprocess.STDOUT, env=_env(tmp),
        start_new_session=True)
    procs = DaskProcs("", sched, logs=[slog, wlog])
    deadline = time.monotonic() + timeout
    try:
        while not info.exists() or not info.read_text().strip():
            if sched.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the scheduler did not start:\n{procs.log_text()}")
            time.sleep(0.1)
        time.sleep(0.2)
        procs.address = json.loads(info.read_text())["address"]
        if nworkers:
            procs.workers = subprocess.Popen(
                [DASK, "worker", procs.address, "--nworkers", str(nworkers), "--nthreads", "1", "--host", "127.0.0.1",
                 "--dashboard-address", "127.0.0.1:0", "--death-timeout", "30"],
                stdout=wlog.open("wb"), stderr=subprocess.STDOUT, env=_env(tmp), start_new_session=True)
            from distributed import Client

            with Client(procs.address, timeout="30s") as c:
                c.wait_for_workers(nworkers, timeout=max(1.0, deadline - time.monotonic()))
    except BaseException:
        procs.stop()
        raise
    return procs


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskProcs]:
    """One scheduler and two single-threaded worker processes for the session (a killed worker is
    restarted by its nanny)."""
    pytest.importorskip("distributed")
    procs = start_dask(tmp_path_factory.mktemp("dask"), 2)
    try:
        yield procs
    finally:
        procs.stop()


# --------------------------------------------------------------------------- shared by the scale-out tests
VA_ID = "S2A_18SVG_20160112_0_L1C"
WORLD = (-180.0, -90.0, 180.0, 90.0)
FAST = HttpParams(max_retry=1, retry_delay_s=0.05, timeout_s=10)
S2SR = str(Path(sys.executable).parent / "s2sr")
BLOCK = 120  # small blocks, so the 540 x 540 Virginia item splits into row bands


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def client(dask_cluster):
    """A client of the session's real cluster (two worker processes; a killed one comes back)."""
    from distributed import Client

    with Client(dask_cluster.address, timeout="30s") as c:
        c.wait_for_workers(2, timeout=120)
        yield c


@pytest.fixture(scope="session")
def api_items(stac_apis: dict[str, str]) -> tuple[object, list[pystac.Item]]:
    """The 4 sample items found through the loopback STAC API (hrefs on the Range server)."""
    prof = resolve_catalog(f"sample={stac_apis['sample']}")
    items = search_items(prof, SearchParams(bbox=WORLD))
    assert len(items) == 4 and VA_ID in [i.id for i in items]
    return prof, items


@pytest.fixture(scope="session")
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


