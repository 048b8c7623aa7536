"""Work units: one item → its COG, one row band → a part file, the parts → the COG.

The same code runs in this process and on Dask workers. Whoever writes an output holds its
lock (:func:`~s2sr_cloud.io.lock.output_lock`), sweeps the staging files a killed run left
(:func:`~s2sr_cloud.io.lock.sweep_staging`), writes the COG, then — right after it, on the
same machine — its ``.s2sr.json`` record: an interrupted client loses nothing that finished.
A part whose part file and sidecar exist is taken as it is (a re-run resumes a split item).

Units return a small :class:`UnitResult` (never pixels). On a worker (:func:`run_unit`),
errors are told apart before Dask sees them: transient ones (reads that may pass, HTTP 5xx,
OS and network errors) are raised, so Dask retries the unit; deterministic ones (a missing
band, an existing output, a bug) come back inside the result and are not retried.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    CatalogHTTPError,
    NodataWarning,
    OutputExists,
    RasterReadError,
    S2SRError,
    WorkerError,
)
from ..io.lock import output_lock, sweep_staging
from ..pipeline import (
    ItemResult,
    ProgressFn,
    RunParams,
    output_path,
    plan_item,
    process_item,
)
from ..publish.record import done_before, same_model, save_record, scene_from_result
from ..sr import Runner, model_info
from .models import ModelSpec, worker_runners, worker_threads

if TYPE_CHECKING:
    import pystac

    from ..catalog.presets import CatalogProfile
    from ..post import PostSteps

log = logging.getLogger(__name__)

#: Errors worth another attempt on a cluster (network, storage, a lost worker), unless the
#: error itself says it is not transient (``transient = False``: an HTTP 404, a corrupt file).
TRANSIENT: tuple[type[BaseException], ...] = (RasterReadError, CatalogHTTPError, OSError, TimeoutError, ConnectionError)
#: One unit at a time per process: the cached runners are not shared between task threads.
_UNIT_LOCK = threading.Lock()


def post_record(params: RunParams) -> dict[str, Any]:
    """The post-step settings as a record stores them (what a part's sidecar compares)."""
    return params.post.record()


def made_with(item_id: str, params: RunParams, rows: tuple[int, int], width: int) -> dict[str, Any]:
    """What a part file depends on besides the models (its sidecar holds it; a re-run resumes only
    from parts made the same way)."""
    from .. import __version__

    return {"item": item_id, "rows": list(rows), "width": width, **post_record(params), "block": params.block,
            "tile": params.tile, "batch": params.batch, "include_10m": params.include_10m,
            "bbox": list(params.bbox) if params.bbox else None, "version": __version__}


@dataclass(frozen=True, slots=True)
class UnitResult:
    """A unit's small result: never pixels. The one result type of every path (in process and on workers)."""

    worker: str
    seconds: float
    result: ItemResult | None = None
    part: str | None = None
    rows: tuple[int, int] | None = None
    error: BaseException | None = None
    qa: dict[str, dict[str, float]] | None = None
    """A part's consistency sums (``{"sq": {band: Σd²}, "n": {band: count}}``), merged by the assembly."""
    skipped: bool = False
    """The item was found done (by an earlier attempt or a concurrent run) once its lock was held."""
    resumed: bool = False
    """A part taken from its finished part file."""
    warnings: tuple[str, ...] = ()
    post: PostSteps | None = None
    """An estimate unit's result: the item's post-step settings with its ``auto`` operators resolved,
    which its parts and its assembly then use as they are (estimated once per item, not once per part)."""


@dataclass(frozen=True, slots=True, repr=False)
class Unit:
    """A unit as sent to a worker: the item's JSON, the catalog rules and the parameters."""

    kind: str
    """``item``, ``estimate``, ``part`` or ``assemble``."""
    item: dict[str, Any]
    profile: CatalogProfile
    params: RunParams
    models: ModelSpec
    hrefs: Mapping[str, str] = field(default_factory=dict)
    """Absolute asset hrefs by asset key (a worker has no catalog to resolve relative ones against)."""
    rows: tuple[int, int] | None = None
    part: str | None = None
    width: int = 0

    def __repr__(self) -> str:  # short, for Dask's task names and error logs
        return f"<{self.kind} unit {self.item.get('id')}{'' if self.rows is None else f' rows {self.rows[0]}-{self.rows[1]}'}>"

    def pystac_item(self) -> pystac.Item:
        import pystac

        item = pystac.Item.from_dict(self.item)
        for key, href in self.hrefs.items():
            if key in item.assets:
                item.assets[key].href = href
        return item


def worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return ""


def _infos(runners: Mapping[str, Runner]) -> dict[str, dict[str, Any]]:
    return {n: model_info(r) for n, r in runners.items()}


def _nodata(res: ItemResult) -> tuple[str, ...]:
    if res.consistency_rmse:
        return ()
    msg = (f"{res.item.id if res.item is not None else res.path}: the area holds no valid pixel (nodata in the "
           f"source): {res.path} is all nodata (0); check --bbox against the item's footprint")
    import warnings

    warnings.warn(msg, NodataWarning, stacklevel=2)
    return (msg,)


def _exists(item_id: str, path: Path, runners: Mapping[str, Runner], params: RunParams) -> UnitResult:
    """The output appeared while this unit waited for its lock: done (skipped) or an error."""
    if done_before(item_id, path, _infos(runners), params.post):
        log.info("%s: done meanwhile (an earlier attempt or another run); skipped", item_id)
        return UnitResult(worker_name(), 0.0, skipped=True)
    raise OutputExists(f"{path} exists; pass --overwrite to replace it")


def produce_item(
    item: pystac.Item, runners: Mapping[str, Runner], profile: CatalogProfile, params: RunParams, *,
    overwrite: bool, wait_lock: bool, on_progress: ProgressFn | None = None,
) -> UnitResult:
    """One whole item → its COG, then its record (holding the output's lock)."""
    t0 = time.perf_counter()
    path = output_path(item, params)
    with output_lock(path, wait=wait_lock):
        if path.exists() and not overwrite:
            return _exists(item.id, path, runners, params)
        sweep_staging(path)
        res = process_item(item, runners, profile, replace(params, overwrite=True), on_progress=on_progress)
        save_record(scene_from_result(res))
    return UnitResult(worker_name(), time.perf_counter() - t0, result=res, warnings=_nodata(res))


def produce_estimate(item: pystac.Item, runners: Mapping[str, Runner], profile: CatalogProfile,
                     params: RunParams) -> UnitResult:
    """A split item's ``auto`` post-step operators, estimated once (on its central crop) for all its
    parts and its assembly: they get the result as an input (:func:`run_unit`)."""
    from ..pipeline import resolve_post

    t0 = time.perf_counter()
    post = resolve_post(plan_item(item, profile, params), runners, profile, params).post
    log.info("%s: post-step operators %s", item.id, dict(post.resolved))
    return UnitResult(worker_name(), time.perf_counter() - t0, post=post)


def produce_part(item: pystac.Item, runners: Mapping[str, Runner], profile: CatalogProfile, params: RunParams,
                 rows: tuple[int, int], part: Path) -> UnitResult:
    """Rows ``rows`` of an item → ``part`` and its sidecar (or the finished part, as it is)."""
    from .. import stop
    from ..io.parts import PartWriter, finished_part, sidecar_path, write_sidecar
    from ..pipeline import output_bands, resolve_post, stream_item
    from ..post import ConsistencyQA

    t0 = time.perf_counter()
    plan = plan_item(item, profile, params)
    params = resolve_post(plan, runners, profile, params)  # a no-op after the item's estimate unit
    want = {**made_with(item.id, params, rows, plan.out.shape[1]), "models": _infos(runners)}
    with output_lock(part, wait=True):
        qa_done = finished_part(part, want, same_model)
        if qa_done is not None:
            log.info("%s rows %d-%d: resumed from %s", item.id, *rows, part)
            return UnitResult(worker_name(), 0.0, part=str(part), rows=rows, qa=qa_done, resumed=True)
        sweep_staging(part)
        sweep_staging(sidecar_path(part))
        qa = ConsistencyQA()
        with PartWriter(part, width=plan.out.shape[1], rows=rows, count=len(output_bands(params)), crs=plan.out.crs,
                        transform=plan.out.transform) as w:
            def write(arr: Any, win: Any) -> None:
                w.write(arr, win)
                stop.check()

            stream_item(plan, runners, profile, params, write, rows=rows, item_id=item.id, qa=qa)
        sums = {"sq": dict(qa.sq), "n": dict(qa.n)}
        write_sidecar(part, want, sums)
    return UnitResult(worker_name(), time.perf_counter() - t0, part=str(part), rows=rows, qa=sums)


def produce_assembly(item: pystac.Item, runners: Mapping[str, Runner], profile: CatalogProfile, params: RunParams,
                     parts: Sequence[UnitResult], *, overwrite: bool) -> UnitResult:
    """The parts of an item → its COG (a lossless copy of their rows) and its record; the parts go.
    ``parts`` all finished (:func:`run_unit` fails the assembly, unrun, when one did not)."""
    from ..io.cog import CogWriter
    from ..io.parts import assemble, remove_parts
    from ..io.scl import write_item_scl
    from ..pipeline import cog_layout, item_result, qa_tags, resolve_post
    from ..post import ConsistencyQA, merge_qa

    t0 = time.perf_counter()
    path = output_path(item, params)
    with output_lock(path, wait=True):
        if path.exists() and not overwrite:
            return _exists(item.id, path, runners, params)
        sweep_staging(path)
        plan = plan_item(item, profile, params)
        params = resolve_post(plan, runners, profile, params)  # no-op when the estimate unit resolved it
        qa = ConsistencyQA()  # the item's consistency: the parts' sums of squares and counts
        for p in parts:
            if p.qa is not None:
                merge_qa(qa, p.qa)
        layout = cog_layout(item, plan, runners, profile, params)
        layout["tags"].update(qa_tags(qa.result()))
        with CogWriter(path, overwrite=True, **layout) as w:
            assemble([(p.rows or (0, 0), Path(p.part or "")) for p in parts], w.write, plan.out.shape[1],
                     step=max(512, params.block))
        write_item_scl(item, profile, plan.item_grid, plan.out, path, http=plan.http)  # L2A: as the whole-item path
        seconds = time.perf_counter() - t0
        res = item_result(item, plan, runners, profile, params, path, seconds + sum(p.seconds for p in parts),
                          consistency=qa.result())
        save_record(scene_from_result(res))
    remove_parts(Path(parts[0].part or "").parent)
    return UnitResult(worker_name(), seconds, result=res, warnings=_nodata(res))


# --------------------------------------------------------------------------- on a worker
def is_transient(err: BaseException) -> bool:
    """Worth another attempt: a :data:`TRANSIENT` error that does not say otherwise."""
    flag = getattr(err, "transient", None)
    if flag is not None:
        return bool(flag)
    if isinstance(err, CatalogHTTPError) and err.status_code is not None:
        return err.status_code in (408, 429) or err.status_code >= 500
    return isinstance(err, TRANSIENT) and not isinstance(err, OutputExists)


def _portable(err: BaseException) -> BaseException:
    """``err`` without its cause chain (GDAL's exceptions do not survive pickling), so the
    client gets the real class and its exit code rather than a generic ``Exception``."""
    try:
        copy = type(err)(*err.args)
        copy.__dict__.update(getattr(err, "__dict__", {}))
    except Exception:  # noqa: BLE001 - an unusual constructor: keep the original
        return err
    return copy


def _bug(err: BaseException) -> WorkerError:
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return WorkerError(f"unexpected {type(err).__name__} on {worker_name() or 'a worker'}: {err} (a bug in "
                       "s2sr-cloud: please report it; -vv shows the worker's traceback)", type(err).__name__, text)


def release_frames(err: BaseException) -> BaseException:
    """Clear the locals of the frames in ``err``'s traceback (its text is kept where needed):
    the streaming loop's threads, sources and blocks are freed now, by reference counting,
    instead of by a later garbage collection that may run in any thread (CPython 3.11 can
    deadlock freeing a ``threading.local`` there while other threads start or stop)."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)
        e = e.__cause__ or e.__context__
    return err


def attempt(unit_rows: tuple[int, int] | None, body: Callable[[], UnitResult]) -> UnitResult:
    """Run ``body``; a deterministic failure comes back as a result (not retried), a transient one raises."""
    t0 = time.perf_counter()
    with _UNIT_LOCK:
        try:
            return body()
        except Exception as err:  # noqa: BLE001 - every error is classified here, none is lost
            kept_bug = _bug(err) if not isinstance(err, S2SRError) and not is_transient(err) else None
            release_frames(err)
            if not is_transient(err):
                kept = _portable(err) if kept_bug is None else kept_bug
                return UnitResult(worker_name(), time.perf_counter() - t0, rows=unit_rows, error=kept)
            again = _portable(err)
    raise again  # outside the except block: no __context__ chain to pickle; Dask retries it


def run_unit(unit: Unit, *inputs: UnitResult) -> UnitResult:
    """The task Dask runs: ``unit`` with this worker's cached runners. ``inputs``: the results it
    waits for, the item's estimate unit (a part, an assembly) and the parts (an assembly). An
    estimate's resolved post-steps replace ``unit.params.post``; a failed estimate fails the unit."""
    failed = next((r for r in inputs if r.error is not None), None)
    if failed is not None:  # the estimate or a part failed: this unit fails with its error, unrun
        return UnitResult(worker_name(), 0.0, rows=unit.rows, error=failed.error)
    params = unit.params
    resolved = next((r.post for r in inputs if r.post is not None), None)
    if resolved is not None:
        params = replace(params, post=resolved)
    parts = [r for r in inputs if r.part is not None]

    def body() -> UnitResult:
        runners = worker_runners(unit.models, worker_threads(unit.models))
        item = unit.pystac_item()
        if unit.kind == "item":
            return produce_item(item, runners, unit.profile, params, overwrite=params.overwrite, wait_lock=True)
        if unit.kind == "estimate":
            return produce_estimate(item, runners, unit.profile, params)
        if unit.kind == "part":
            assert unit.rows is not None and unit.part is not None
            return produce_part(item, runners, unit.profile, params, unit.rows, Path(unit.part))
        return produce_assembly(item, runners, unit.profile, params, parts, overwrite=params.overwrite)

    return attempt(unit.rows, body)


def model_infos(spec: ModelSpec) -> dict[str, Any]:
    """The probe task: this worker loads its runners; their model info, its version and threads."""
    from .. import __version__

    try:
        runners = worker_runners(spec, worker_threads(spec))
    except S2SRError as err:
        return {"error": _portable(err), "worker": worker_name()}
    return {"models": _infos(runners), "version": __version__, "worker": worker_name(),
            "threads": worker_threads(spec)}
