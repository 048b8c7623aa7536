"""Many items in one call: in this process, or spread over a Dask distributed cluster.

:func:`process_items` is the library behind ``s2sr run`` and ``s2sr search --run``:

* **in process** (no ``client``, ``workers`` or ``scheduler``): the runners load once and the
  items go through :func:`~s2sr_cloud.pipeline.process_item` one after the other, as
  the CLI always did;
* **on a cluster** (``workers=N`` starts a :class:`distributed.LocalCluster` of N worker
  processes, ``scheduler=ADDRESS`` or ``client=`` uses a running one): each item is one
  task, and an item taller than ``unit_rows`` output rows is split into row bands (whole
  blocks, so the 60 m grid and the COG block grid are respected) written by different
  workers into part files under ``<out>/.s2sr-parts/`` and assembled into the same single
  COG by a final task. Workers read their own COG windows; tasks return small results
  (paths, grids, model info), never pixels. Each worker process loads its runners once
  (:func:`worker_runners`) with its share of the cores as inference threads.

Either way, per-item failures are collected (the other items go on), items already done
with the same model (their ``.s2sr.json`` record says so) are skipped unless
``params.overwrite``, each finished item's record is written and ``publish`` is called
**in the calling process** as results arrive, so a collection is never written by two
workers at once. Transient errors (reads, HTTP, OS errors, lost workers) are retried by
Dask (``retries``); deterministic ones (a missing band, an existing output) are not.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import CatalogHTTPError, OutputExists, RasterReadError, S2SRError
from .pipeline import (
    ItemResult,
    ProgressEvent,
    RunParams,
    output_path,
    plan_item,
    process_item,
)
from .post import PostSteps
from .sr import Runner, model_info
from .stream import aligned_block

if TYPE_CHECKING:
    import pystac

    from .catalog.presets import CatalogProfile

log = logging.getLogger(__name__)

#: Staging folder of part files under ``--out`` (removed once an item is assembled).
PARTS_DIR = ".s2sr-parts"
#: Errors worth another attempt on a cluster (network, storage, a lost worker).
TRANSIENT: tuple[type[BaseException], ...] = (RasterReadError, CatalogHTTPError, OSError, TimeoutError, ConnectionError)
#: Environment variable naming a running scheduler (as Dask itself reads it).
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


# --------------------------------------------------------------------------- models
@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to load the runners: picklable, so each worker process loads its own.

    ``onnx`` / ``checkpoint`` are ``(net, path)`` pairs; nets not given use the default
    weights. ``threads``: inference threads per process (None: the process's share of
    the machine's cores on a cluster, all cores in process).
    """

    onnx: tuple[tuple[str, str], ...] = ()
    checkpoint: tuple[tuple[str, str], ...] = ()
    device: str = "auto"
    precision: str = "fp32"
    build_engine: bool = False
    threads: int | None = None

    @classmethod
    def of(
        cls, *, onnx: Mapping[str, Any] | None = None, checkpoint: Mapping[str, Any] | None = None,
        device: str = "auto", precision: str = "fp32", build_engine: bool = False, threads: int | None = None,
    ) -> ModelSpec:
        """From ``{net: path}`` mappings (absolute paths, so workers find them too)."""
        def pairs(m: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
            return tuple(sorted((str(k), str(Path(v).resolve())) for k, v in (m or {}).items()))

        return cls(pairs(onnx), pairs(checkpoint), str(device), str(precision), build_engine, threads)

    def load(self, threads: int | None = None) -> dict[str, Runner]:
        """Load the runners (``threads`` overrides :attr:`threads`)."""
        from .infer import load_runners

        return load_runners(onnx=dict(self.onnx), checkpoint=dict(self.checkpoint), device=self.device,
                            precision=self.precision, build_engine=self.build_engine,
                            threads=threads if threads is not None else self.threads)


_CACHE: dict[tuple[ModelSpec, int | None], dict[str, Runner]] = {}
_CACHE_LOCK = threading.Lock()
#: One unit at a time per process: the cached runners are not shared between task threads.
_UNIT_LOCK = threading.Lock()


def worker_runners(spec: ModelSpec, threads: int | None = None) -> dict[str, Runner]:
    """The runners of ``spec`` in this process, loaded on first use and kept (per-process cache)."""
    key = (spec, threads if threads is not None else spec.threads)
    with _CACHE_LOCK:
        runners = _CACHE.get(key)
        if runners is None:
            t0 = time.perf_counter()
            runners = spec.load(key[1])
            _CACHE[key] = runners
            log.info("loaded runners (%s) in %.1f s, %s inference threads",
                     ", ".join(f"{n}: {r.backend}" for n, r in runners.items()), time.perf_counter() - t0, key[1] or "all")
        return runners


def same_model(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether two ``{net: model_info}`` describe the same weights at the same precision.

    Weights are told by the checkpoint's sha256 where both know it (the same weights on ONNX
    Runtime, TensorRT or PyTorch count as the same), else the ONNX file's, else the name.
    """
    if set(a) != set(b):
        return False
    for net, x in a.items():
        y = b[net]
        if str(x.get("precision", "fp32")) != str(y.get("precision", "fp32")):
            return False
        for k in ("checkpoint_sha256", "onnx_sha256", "name"):
            if x.get(k) and y.get(k):
                if x[k] != y[k]:
                    return False
                break
        else:
            return False
    return True


# --------------------------------------------------------------------------- outcomes
Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """What happened to one item."""

    item_id: str
    status: Status
    path: Path | None = None
    """The output COG (also for skipped items; None when the item could not be planned)."""
    result: ItemResult | None = None
    """The result (done items), for publishing."""
    error: BaseException | None = None
    """Why it failed."""
    seconds: float = 0.0
    """Compute time of its units (summed over workers), 0 when skipped."""
    pixels: int = 0
    """Output pixels at 10 m."""
    units: int = 0
    """Work units it was split into (0: skipped or never submitted)."""
    workers: tuple[str, ...] = ()
    """Dask workers that ran its units (empty in process)."""

    @property
    def exit_code(self) -> int:
        """The error's exit code (0 unless failed; 1 for an unexpected error)."""
        if self.status != "failed":
            return 0
        return int(getattr(self.error, "exit_code", 1)) if isinstance(self.error, S2SRError) else 1

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of ``--json``)."""
        d: dict[str, Any] = {"id": self.item_id, "status": self.status, "path": str(self.path) if self.path else None,
                             "seconds": round(self.seconds, 3), "pixels_10m": self.pixels, "units": self.units,
                             "workers": list(self.workers)}
        if self.result is not None:
            r = self.result
            if r.grid is not None:
                d.update(shape=list(r.grid.shape), crs=r.grid.crs)
            d.update(bands=list(r.bands), backend=r.backend, models={k: v.get("name") for k, v in r.model.items()},
                     backproject=r.backproject, hybrid=r.hybrid, consistency_rmse=dict(r.consistency_rmse),
                     consistency_rmse_max=r.consistency_rmse_max)
        if self.status == "failed":
            d.update(error=str(self.error), error_type=type(self.error).__name__, exit_code=self.exit_code)
        return d


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """Progress of a batch: ``kind`` is ``item`` (an item finished: ``outcome``), ``unit`` (a part
    of a split item finished) or ``tiles`` (in process: tile progress of the current item)."""

    kind: Literal["item", "unit", "tiles"]
    done: int
    failed: int
    skipped: int
    total: int
    units_done: int = 0
    units_total: int = 0
    pixels_done: int = 0
    """10 m output pixels of the items done so far (skipped ones excluded)."""
    elapsed_s: float = 0.0
    outcome: ItemOutcome | None = None
    tiles: ProgressEvent | None = None


class ItemsFailed(S2SRError):
    """Some items of a batch failed; the exit code is the first failure's."""

    def __init__(self, message: str, outcomes: Sequence[ItemOutcome] = ()) -> None:
        super().__init__(message)
        self.outcomes = list(outcomes)
        failed = [o for o in self.outcomes if o.status == "failed"]
        self.exit_code = failed[0].exit_code if failed else 1  # type: ignore[misc]


def raise_for_failures(outcomes: Sequence[ItemOutcome]) -> None:
    """Raise when items failed: the error itself for a batch of one, else :class:`ItemsFailed`."""
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return
    if len(outcomes) == 1 and isinstance(failed[0].error, S2SRError):
        raise failed[0].error
    ids = ", ".join(o.item_id for o in failed)
    raise ItemsFailed(f"{len(failed)} of {len(outcomes)} items failed ({ids}); first: {failed[0].error}", outcomes)


# --------------------------------------------------------------------------- records
def done_before(item_id: str, path: Path, models: Mapping[str, Mapping[str, Any]], post: PostSteps | None = None) -> bool:
    """Whether ``path`` and its ``.s2sr.json`` record exist and were made from ``item_id`` with ``models``
    (and, when given, the same post-steps: :meth:`~s2sr_cloud.post.PostSteps.matches`)."""
    import json

    from .publish.record import record_path

    rec = record_path(path)
    if not (path.is_file() and rec.is_file()):
        return False
    try:
        doc = json.loads(rec.read_text())
    except (OSError, ValueError):
        return False
    if post is not None and not post.matches(doc):
        return False
    return doc.get("source_item", {}).get("id") == item_id and same_model(doc.get("models") or {}, models)


def _write_record(result: ItemResult) -> None:
    from .publish.record import save_record, scene_from_result

    save_record(scene_from_result(result))


# --------------------------------------------------------------------------- work units (run on workers)
@dataclass(frozen=True, slots=True, repr=False)
class _Unit:
    item: dict[str, Any]
    profile: CatalogProfile
    params: RunParams
    models: ModelSpec
    threads: Mapping[str, int] = field(default_factory=dict)
    """Inference threads per worker host."""
    rows: tuple[int, int] | None = None
    part: str | None = None

    def __repr__(self) -> str:  # short, for Dask's task names and error logs
        return f"<unit {self.item.get('id')}{'' if self.rows is None else f' rows {self.rows[0]}-{self.rows[1]}'}>"


@dataclass(frozen=True, slots=True)
class _Done:
    """A unit's small result: never pixels."""

    worker: str
    seconds: float
    result: ItemResult | None = None
    part: str | None = None
    rows: tuple[int, int] | None = None
    error: BaseException | None = None
    qa: dict[str, dict[str, float]] | None = None
    """A part's consistency sums (``{"sq": {band: Σd²}, "n": {band: count}}``), merged by the assembly."""


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return ""


def _runners(unit: _Unit) -> dict[str, Runner]:
    addr = _worker_name()
    host = addr.split("://")[-1].rsplit(":", 1)[0]
    return worker_runners(unit.models, unit.threads.get(host, unit.models.threads))


def _attempt(unit: _Unit, body: Callable[[], _Done]) -> _Done:
    """Run ``body``; a deterministic failure comes back as a result (not retried), others raise."""
    t0 = time.perf_counter()
    with _UNIT_LOCK:
        try:
            return body()
        except S2SRError as err:
            if not isinstance(err, TRANSIENT):
                return _Done(_worker_name(), time.perf_counter() - t0, rows=unit.rows, error=_portable(err))
            again = _portable(err)
    raise again  # outside the except block: no __context__ chain to pickle; Dask retries it


def _portable(err: S2SRError) -> S2SRError:
    """``err`` without its cause chain (GDAL's exceptions do not survive pickling), so the
    client gets the real class and its exit code rather than a generic ``Exception``."""
    try:
        copy = type(err)(*err.args)
        copy.__dict__.update(err.__dict__)
    except Exception:  # noqa: BLE001 - an unusual constructor: keep the original
        return err
    return copy


def run_item_unit(unit: _Unit) -> _Done:
    """Task: one whole item → its COG (the same code as in process)."""
    import pystac

    def body() -> _Done:
        t0 = time.perf_counter()
        item = pystac.Item.from_dict(unit.item)
        res = process_item(item, _runners(unit), unit.profile, unit.params)
        return _Done(_worker_name(), time.perf_counter() - t0, result=res)

    return _attempt(unit, body)


def run_part_unit(unit: _Unit) -> _Done:
    """Task: one row band of an item → a part GeoTIFF (written atomically)."""
    import pystac

    def body() -> _Done:
        import rasterio
        from rasterio.transform import Affine

        from .fsutil import tmp_beside
        from .pipeline import output_bands, stream_item
        from .post import ConsistencyQA
        from .sr import Window

        t0 = time.perf_counter()
        assert unit.rows is not None and unit.part is not None
        item = pystac.Item.from_dict(unit.item)
        plan = plan_item(item, unit.profile, unit.params)
        runners = _runners(unit)
        r0, r1 = unit.rows
        part = Path(unit.part)
        part.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_beside(part.parent, part.name, ".tif")
        t = plan.out.transform  # the part's own georeference: rows r0… of the output grid
        prof = {"driver": "GTiff", "width": plan.out.shape[1], "height": r1 - r0, "count": len(output_bands(unit.params)),
                "dtype": "uint16", "crs": plan.out.crs, "transform": Affine(t[0], t[1], t[2] + r0 * t[1], t[3], t[4], t[5] + r0 * t[4]),
                "nodata": 0, "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "LZW", "BIGTIFF": "IF_SAFER"}
        qa = ConsistencyQA()
        try:
            with rasterio.open(tmp, "w", **prof) as ds:
                def write(arr: Any, win: Window) -> None:
                    from rasterio.windows import Window as RioWindow

                    ds.write(arr, window=RioWindow(win.col, win.row - r0, win.width, win.height))

                stream_item(plan, runners, unit.profile, unit.params, write, rows=unit.rows, item_id=item.id, qa=qa)
            os.replace(tmp, part)
        finally:
            tmp.unlink(missing_ok=True)
        return _Done(_worker_name(), time.perf_counter() - t0, part=str(part), rows=unit.rows,
                     qa={"sq": dict(qa.sq), "n": dict(qa.n)})

    return _attempt(unit, body)


def assemble_unit(unit: _Unit, parts: Sequence[_Done]) -> _Done:
    """Task: the part files of an item → its COG (lossless copy of the rows), then the parts go."""
    import pystac

    def body() -> _Done:
        import rasterio
        from rasterio.windows import Window as RioWindow

        from .io.cog import CogWriter
        from .pipeline import cog_layout, item_result, qa_tags
        from .post import ConsistencyQA, merge_qa
        from .sr import Window

        t0 = time.perf_counter()
        bad = [p for p in parts if p.error is not None]
        if bad:
            return _Done(_worker_name(), 0.0, error=bad[0].error)
        item = pystac.Item.from_dict(unit.item)
        plan = plan_item(item, unit.profile, unit.params)
        runners = _runners(unit)
        path = output_path(item, unit.params)
        width = plan.out.shape[1]
        step = max(512, unit.params.block)
        qa = ConsistencyQA()  # the item's consistency: the parts' sums of squares and counts
        for p in parts:
            if p.qa is not None:
                merge_qa(qa, p.qa)
        layout = cog_layout(item, plan, runners, unit.profile, unit.params)
        layout["tags"].update(qa_tags(qa.result()))
        with CogWriter(path, overwrite=unit.params.overwrite, **layout) as w:
            for p in sorted(parts, key=lambda d: d.rows or (0, 0)):
                assert p.rows is not None and p.part is not None
                r0, r1 = p.rows
                with rasterio.open(p.part) as src:
                    for k in range(0, r1 - r0, step):
                        h = min(step, r1 - r0 - k)
                        w.write(src.read(window=RioWindow(0, k, width, h)), Window(r0 + k, 0, h, width))
        for p in parts:
            Path(p.part or "").unlink(missing_ok=True)
        _remove_empty(Path(parts[0].part or "").parent)
        seconds = time.perf_counter() - t0
        res = item_result(item, plan, runners, unit.profile, unit.params, path, seconds + sum(p.seconds for p in parts),
                          consistency=qa.result())
        return _Done(_worker_name(), seconds, result=res)

    return _attempt(unit, body)


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` and then its parent where they are empty."""
    for d in (folder, folder.parent):
        try:
            d.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return


# --------------------------------------------------------------------------- the batch
def split_rows(height: int, block: int, unit_rows: int | None) -> list[tuple[int, int]]:
    """Row bands of an output grid: whole blocks of ``block`` rows, at most ``unit_rows`` tall."""
    per = max(1, math.ceil((unit_rows or 2 * block) / block)) * block
    return [(r, min(r + per, height)) for r in range(0, height, per)]


class _Tally:
    def __init__(self, total: int, on_event: Callable[[BatchEvent], None] | None) -> None:
        self.total, self.on_event = total, on_event
        self.done = self.failed = self.skipped = self.units_done = self.units_total = self.pixels = 0
        self.t0 = time.perf_counter()
        self.outcomes: dict[str, ItemOutcome] = {}

    def emit(self, kind: Literal["item", "unit", "tiles"], outcome: ItemOutcome | None = None,
             tiles: ProgressEvent | None = None) -> None:
        if self.on_event is not None:
            self.on_event(BatchEvent(kind, self.done, self.failed, self.skipped, self.total, self.units_done,
                                     self.units_total, self.pixels, time.perf_counter() - self.t0, outcome, tiles))

    def finish(self, key: str, outcome: ItemOutcome) -> None:
        self.outcomes[key] = outcome
        if outcome.status == "done":
            self.done += 1
            self.pixels += outcome.pixels
        elif outcome.status == "failed":
            self.failed += 1
            log.error("%s: %s", outcome.item_id, outcome.error)
        else:
            self.skipped += 1
        self.emit("item", outcome)


def _deliver(result: ItemResult, publish: Callable[[ItemResult], Any] | None) -> BaseException | None:
    """Record, then publish (in this process); the error, if any."""
    try:
        _write_record(result)
        if publish is not None:
            publish(result)
    except Exception as err:  # noqa: BLE001 - reported per item, the others go on
        return err
    return None


def _pixels(result: ItemResult) -> int:
    h, w = result.grid.shape
    return int(h) * int(w)


def process_items(
    items: Iterable[pystac.Item],
    profile: CatalogProfile,
    params: RunParams,
    *,
    models: ModelSpec | Mapping[str, Runner] | None = None,
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    publish: Callable[[ItemResult], Any] | None = None,
    on_event: Callable[[BatchEvent], None] | None = None,
    unit_rows: int | None = None,
    retries: int = 2,
) -> list[ItemOutcome]:
    """Super-resolve ``items``; one :class:`ItemOutcome` per item, in the order given.

    Args:
        items: STAC items.
        profile: catalog rules of the items.
        params: output folder, area, blocks…; ``params.overwrite`` re-does finished items.
        models: a :class:`ModelSpec` (default: the default weights on ``auto``), or loaded
            runners (in process only).
        client: a ``distributed.Client`` to submit to.
        workers: start a ``LocalCluster`` of this many worker processes (closed at the end).
        scheduler: address of a running scheduler (``tcp://host:8786``).
        publish: called in this process with each new :class:`ItemResult` after its
            ``.s2sr.json`` record is written; an error fails that item only.
        on_event: progress callback (:class:`BatchEvent`), in this process.
        unit_rows: on a cluster, items taller than this (output rows at 10 m) are split into
            row bands of whole blocks (default: 2 blocks).
        retries: Dask retries of a unit after a transient error or a lost worker.

    Per-item failures never raise; see :func:`raise_for_failures`.
    """
    items = list(items)
    spec = models if isinstance(models, ModelSpec) else ModelSpec() if models is None else None
    if client is None and workers is None and scheduler is None:
        if spec is None:
            return _run_here(items, profile, params, dict(models), publish, on_event)  # type: ignore[arg-type]
        runners = spec.load()
        try:
            return _run_here(items, profile, params, runners, publish, on_event)
        finally:  # loaded here, released here (GPU memory, engine contexts)
            for r in runners.values():
                close = getattr(r, "close", None)
                if callable(close):
                    close()
    if spec is None:
        raise TypeError("a cluster run needs models=ModelSpec(...) (runners cannot be sent to workers)")
    pending: set[Path] = set()
    try:
        with _cluster(client, workers, scheduler) as (cl, threads):
            return _run_cluster(cl, items, profile, params, spec, threads, publish, on_event, unit_rows, retries, pending)
    finally:
        if pending and client is None and workers is not None:
            # interrupted (Ctrl-C, an error in a callback): our own workers are gone now,
            # so their half-written files can go too; a shared cluster's workers may still
            # be writing (atomically), so those are left to finish
            for path in pending:
                _clean_temps(path)


def _run_here(
    items: list[pystac.Item], profile: CatalogProfile, params: RunParams, runners: Mapping[str, Runner],
    publish: Callable[[ItemResult], Any] | None, on_event: Callable[[BatchEvent], None] | None,
) -> list[ItemOutcome]:
    tally = _Tally(len(items), on_event)
    infos = {n: model_info(r) for n, r in runners.items()}
    out: list[ItemOutcome] = []
    for item in items:
        path = output_path(item, params)
        if not params.overwrite and done_before(item.id, path, infos, params.post):
            o = ItemOutcome(item.id, "skipped", path)
        else:
            try:
                res = process_item(item, runners, profile, params, on_progress=lambda ev: tally.emit("tiles", tiles=ev))
            except S2SRError as err:
                o = ItemOutcome(item.id, "failed", path, error=err, units=1)
            else:
                err2 = _deliver(res, publish)
                o = ItemOutcome(item.id, "failed" if err2 else "done", path, res, err2, res.seconds, _pixels(res), 1)
        tally.finish(item.id, o)
        out.append(o)
    return out


class _cluster:  # noqa: N801 - a context manager used like a function
    """The client to use, and inference threads per worker host."""

    def __init__(self, client: Any, workers: int | None, scheduler: str | None) -> None:
        self.client, self.workers, self.scheduler = client, workers, scheduler
        self._own: list[Any] = []

    def __enter__(self) -> tuple[Any, dict[str, int]]:
        from .errors import require

        require("distributed", "dask")
        from distributed import Client, LocalCluster

        cl = self.client
        if cl is None and self.workers is not None:
            if self.workers < 1:
                raise ValueError(f"workers must be >= 1, got {self.workers}")
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            self._own.append(cluster)
            cl = Client(cluster)
            self._own.insert(0, cl)
            cl.register_plugin(_quiet_worker_logs())
        elif cl is None:
            try:
                cl = Client(self.scheduler, timeout="15s")
            except (OSError, TimeoutError) as err:
                raise _ClusterError(f"cannot reach the Dask scheduler at {self.scheduler}: {err}") from err
            self._own.append(cl)
        return cl, _threads_per_host(cl)

    def __exit__(self, *exc: object) -> None:
        for obj in self._own:
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - closing while unwinding
                log.debug("closing %r failed", obj, exc_info=True)


def _quiet_worker_logs() -> Any:
    """A worker plugin for our own LocalCluster: its workers share our stderr, and each failed
    attempt would print Dask's "Compute Failed" report there; the errors come back per item."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class QuietLogs(WorkerPlugin):
        name = "s2sr-quiet-logs"

        def setup(self, worker: Any) -> None:
            logging.getLogger("distributed").setLevel(logging.CRITICAL)

    return QuietLogs()


class _ClusterError(S2SRError):
    """The cluster could not be reached."""

    exit_code = 3


def _threads_per_host(client: Any) -> dict[str, int]:
    """Inference threads per worker on each host: the host's cores shared by its workers."""
    workers = client.scheduler_info(n_workers=-1)["workers"] if _takes_n_workers(client) else client.scheduler_info()["workers"]
    per_host: dict[str, int] = {}
    for addr in workers:
        host = addr.split("://")[-1].rsplit(":", 1)[0]
        per_host[host] = per_host.get(host, 0) + 1
    cores = client.run(_cores)
    out: dict[str, int] = {}
    for addr, n in cores.items():
        host = addr.split("://")[-1].rsplit(":", 1)[0]
        out[host] = max(1, int(n) // max(1, per_host.get(host, 1)))
    return out


def _takes_n_workers(client: Any) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _run_cluster(
    client: Any, items: list[pystac.Item], profile: CatalogProfile, params: RunParams, spec: ModelSpec,
    threads: Mapping[str, int], publish: Callable[[ItemResult], Any] | None,
    on_event: Callable[[BatchEvent], None] | None, unit_rows: int | None, retries: int, pending: set[Path],
) -> list[ItemOutcome]:
    from distributed import as_completed

    tally = _Tally(len(items), on_event)
    keys = [f"{i}:{it.id}" for i, it in enumerate(items)]
    # workers have their own working directory: a relative --out means this process's
    params = replace(params, out_dir=Path(params.out_dir).absolute())
    # the model's identity (for skipping) from a worker, which loads its runners on the way
    infos: dict[str, dict[str, Any]] = {}
    if not params.overwrite:
        probe = client.submit(_model_infos, spec, dict(threads), key=f"s2sr-models-{uuid.uuid4().hex[:8]}", pure=False)
        try:
            infos = probe.result()
        finally:
            probe.release()
    tag = uuid.uuid4().hex[:8]
    item_futs: dict[Any, tuple[str, pystac.Item, Path, int]] = {}
    part_futs: dict[Any, str] = {}
    part_workers: dict[str, list[str]] = {}
    for key, item in zip(keys, items, strict=True):
        path = output_path(item, params)
        if infos and done_before(item.id, path, infos, params.post):
            tally.finish(key, ItemOutcome(item.id, "skipped", path))
            continue
        try:
            plan = plan_item(item, profile, params)  # metadata only: bad items fail here, before any task
            if path.exists() and not params.overwrite:
                raise OutputExists(f"{path} exists; pass --overwrite to replace it")
        except S2SRError as err:
            tally.finish(key, ItemOutcome(item.id, "failed", path, error=err))
            continue
        doc = _item_doc(item)
        # the output was checked just now: a unit re-run after a lost worker (which may have
        # finished the COG before dying) replaces its own output instead of failing
        unit = _Unit(doc, profile, replace(params, overwrite=True), spec, dict(threads))
        bands = split_rows(plan.out.shape[0], aligned_block(params.block), unit_rows)  # the blocks stream_item runs
        name = f"{tag}-{key.split(':', 1)[0]}"
        if len(bands) == 1:
            fut = client.submit(run_item_unit, unit, key=f"s2sr-item-{name}", retries=retries, pure=False)
            units = 1
        else:
            staging = Path(params.out_dir) / PARTS_DIR / path.stem
            parts = [client.submit(run_part_unit, replace(unit, rows=rows, part=str(staging / f"rows-{rows[0]:06d}-{rows[1]:06d}.tif")),
                                   key=f"s2sr-part-{name}-{rows[0]}", retries=retries, pure=False) for rows in bands]
            part_futs.update(dict.fromkeys(parts, key))
            fut = client.submit(assemble_unit, unit, parts, key=f"s2sr-assemble-{name}", retries=retries, pure=False)
            units = len(bands)
        tally.units_total += units
        item_futs[fut] = (key, item, path, units)
        pending.add(path)
    if item_futs:
        tally.emit("unit")
    for fut in as_completed([*part_futs, *item_futs]):
        if fut in part_futs:
            if fut.status == "finished":
                part_workers.setdefault(part_futs[fut], []).append(fut.result().worker)
            tally.units_done += 1
            tally.emit("unit")
            continue
        key, item, path, units = item_futs[fut]
        tally.units_done += 1 if units == 1 else 0
        o = _outcome(fut, item, path, units, publish)
        if part_workers.get(key):
            o = replace(o, workers=tuple(dict.fromkeys([*part_workers.pop(key), *o.workers])))
        fut.release()
        _clean_temps(path)
        pending.discard(path)
        tally.finish(key, o)
    return [tally.outcomes[k] for k in keys]


def _item_doc(item: pystac.Item) -> dict[str, Any]:
    """The item as a dict for a worker, asset hrefs absolute (a worker has no catalog to resolve against)."""
    doc = item.to_dict(transform_hrefs=False)
    for key, asset in item.assets.items():
        href = asset.get_absolute_href()
        if href and key in doc.get("assets", {}):
            doc["assets"][key]["href"] = href
    return doc


def _model_infos(spec: ModelSpec, threads: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    unit = _Unit({}, None, None, spec, threads)  # type: ignore[arg-type]
    return {n: model_info(r) for n, r in _runners(unit).items()}


def _outcome(fut: Any, item: pystac.Item, path: Path, units: int, publish: Callable[[ItemResult], Any] | None) -> ItemOutcome:
    if fut.status != "finished":
        err = fut.exception()
        return ItemOutcome(item.id, "failed", path, error=err, units=units)
    done: _Done = fut.result()
    if done.error is not None or done.result is None:
        return ItemOutcome(item.id, "failed", path, error=done.error, seconds=done.seconds, units=units, workers=(done.worker,))
    res = replace(done.result, item=item)  # the caller's item object, not the worker's copy
    err = _deliver(res, publish)
    return ItemOutcome(item.id, "failed" if err else "done", path, res, err, res.seconds, _pixels(res), units, (done.worker,))


def _clean_temps(path: Path) -> None:
    """Remove temporary files of ``path`` a killed worker could not remove (the item is finished now)."""
    for tmp in path.parent.glob(f".{path.name}.*"):
        tmp.unlink(missing_ok=True)
    staging = path.parent / PARTS_DIR / path.stem
    if staging.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(staging.parent)
