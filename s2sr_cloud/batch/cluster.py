"""Items on a Dask distributed cluster: connection, a bounded window of units, failures in words.

* **Connection** (:class:`Connection`): a running scheduler (``--scheduler``), a
  ``LocalCluster`` of our own (``--workers``, on loopback, no dashboard) or a given client;
  the client waits for a first worker (``$S2SR_DASK_TIMEOUT`` s), then a probe unit loads the
  runners on a worker (their model info tells which items are done already).
* **Bounded submission**: items are planned a few at a time (metadata, in threads) and at most
  ``window`` units are in flight; results are taken as they complete (``as_completed``) and
  released, so the client's memory does not grow with the number of items.
* **Failures**: a lost scheduler, workers that die again and again (``KilledWorker``), a
  worker that cannot import s2sr-cloud or load the models — each becomes a
  :class:`~s2sr_cloud.errors.ClusterError` (exit 3) on the items it touched, with the item
  named; the other items' errors are their own.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import stop
from ..errors import ClusterError, IdleThreadsWarning, OutputExists, S2SRError, require
from ..io.parts import split_rows, staging_dir
from ..pipeline import ItemResult, RunParams, output_path, plan_item
from ..publish.record import done_before
from ..settings import DASK_TIMEOUT_VAR, SCHEDULER_VAR
from ..stream import aligned_block
from .models import ModelSpec, scheduler_workers
from .outcomes import BatchEvent, ItemOutcome, Tally
from .units import Unit, UnitResult, model_infos, run_unit

if TYPE_CHECKING:
    import pystac

    from ..catalog.presets import CatalogProfile

log = logging.getLogger(__name__)

#: Environment variable naming a running scheduler (as Dask itself reads it).
SCHEDULER_ENV = SCHEDULER_VAR


class Connection:
    """The client to use (a context manager that closes what it opened)."""

    def __init__(self, client: Any, workers: int | None, scheduler: str | None, timeout: float) -> None:
        self.client, self.workers, self.scheduler, self.timeout = client, workers, scheduler, timeout
        self._own: list[Any] = []
        self.where = scheduler or ("a local cluster" if workers else "the given client")

    @property
    def owns_workers(self) -> bool:
        return self.client is None and self.workers is not None

    def __enter__(self) -> Any:
        require("distributed", "dask")
        from distributed import Client, LocalCluster

        cl = self.client
        if cl is None and self.workers is not None:
            if self.workers < 1:
                raise ValueError(f"workers must be >= 1, got {self.workers}")
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, silence_logs=logging.ERROR)
            self._own.append(cluster)
            cl = Client(cluster)
            self._own.insert(0, cl)
            cl.register_plugin(_quiet_worker_logs())
            self.where = f"a local cluster of {self.workers} workers"
        elif cl is None:
            _probe_tcp(str(self.scheduler), self.timeout)
            try:
                cl = Client(self.scheduler, timeout=f"{self.timeout}s")
            except (OSError, TimeoutError, ValueError, TypeError) as err:
                raise ClusterError(f"cannot reach the Dask scheduler at {self.scheduler}: {err}") from None
            self._own.append(cl)
        return cl

    def __exit__(self, *exc: object) -> None:
        for obj in self._own:
            try:
                obj.close(timeout=5) if "timeout" in _params(obj.close) else obj.close()
            except Exception:  # noqa: BLE001 - closing while unwinding (a scheduler that is gone)
                log.debug("closing %r failed", obj, exc_info=True)


def _probe_tcp(address: str, timeout: float) -> None:
    """Fail at once (not after Dask's connect timeout) when nothing listens at a ``tcp://`` address."""
    import socket

    if not address.startswith("tcp://"):
        return
    host, _, port = address[len("tcp://"):].rpartition(":")
    if not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout, 10)).close()
    except OSError as err:
        why = "connection refused: is the scheduler running there?" if isinstance(err, ConnectionRefusedError) else err
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {why}") from None


def _params(fn: Callable[..., Any]) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _quiet_worker_logs() -> Any:
    """A worker plugin for our own LocalCluster: its workers share our stderr, and each failed
    attempt would print Dask's "Compute Failed" report there; the errors come back per item."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class QuietLogs(WorkerPlugin):
        name = "s2sr-quiet-logs"

        def setup(self, worker: Any) -> None:
            logging.getLogger("distributed").setLevel(logging.CRITICAL)

    return QuietLogs()


def cluster_failure(err: BaseException | None, where: str, client: Any = None) -> BaseException:
    """A Dask-side failure of a unit in words (:class:`ClusterError`); an s2sr error stays itself."""
    from distributed import KilledWorker

    if isinstance(err, S2SRError):
        return err
    if isinstance(err, KilledWorker):
        return ClusterError(f"the Dask workers running it died {getattr(err, 'allowed_failures', 'several')} times "
                            "in a row (killed, or out of memory?): see the workers' logs")
    if isinstance(err, ImportError):
        return ClusterError(f"a Dask worker of {where} cannot run s2sr units ({err}): install s2sr-cloud with the "
                            "[dask] extra, the same version as here, on every worker")
    lost = client is not None and getattr(client, "status", "running") != "running"
    if err is None or lost or type(err).__name__ in ("CancelledError", "FutureCancelledError", "CommClosedError"):
        return ClusterError(f"lost the Dask scheduler at {where} before this item finished; what finished is "
                            "recorded: run the same command again to resume")
    return ClusterError(f"the cluster failed this item: {type(err).__name__}: {err}")


def connect_and_probe(client: Any, spec: ModelSpec, where: str, timeout: float, retries: int) -> dict[str, Any]:
    """Wait for a first worker, warn about idle threads, load the runners on a worker: its model info."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError) as err:
        raise ClusterError(f"no Dask worker joined the scheduler at {where} within {timeout:g} s: start workers "
                           f"(`dask worker {where} --nthreads 1`) or raise {DASK_TIMEOUT_VAR}") from err
    warn_idle_threads(client)
    probe = client.submit(model_infos, spec, key=f"s2sr-models-{uuid.uuid4().hex[:8]}", pure=False, retries=retries)
    try:
        doc = _result(probe, where, client)
    finally:
        probe.release()
    if doc.get("error") is not None:
        raise ClusterError(f"a Dask worker ({doc.get('worker')}) cannot load the models: {doc['error']}")
    from .. import __version__

    if doc.get("version") != __version__:
        log.warning("the Dask worker %s runs s2sr-cloud %s, this process %s: install the same version everywhere",
                    doc.get("worker"), doc.get("version"), __version__)
    return dict(doc["models"])


def _result(fut: Any, where: str, client: Any) -> Any:
    try:
        return fut.result()
    except S2SRError:
        raise
    except Exception as err:  # noqa: BLE001 - Dask's errors, in words
        raise cluster_failure(err, where, client) from None


def _exception(fut: Any) -> BaseException | None:
    """A finished-badly future's error; a cancelled one's reason (``Future.exception`` says None)."""
    if fut.status == "cancelled":
        state = getattr(fut, "_state", None)
        return getattr(state, "exception", None)
    try:
        return fut.exception(timeout=5)
    except Exception as err:  # noqa: BLE001 - a lost future raises here
        return err


def warn_idle_threads(client: Any) -> None:
    """A warning when workers have more threads than s2sr uses (one unit at a time per process)."""
    many = {a: int(w.get("nthreads", 1)) for a, w in scheduler_workers(client).items() if int(w.get("nthreads", 1)) > 1}
    if many:
        shown = ", ".join(f"{a} ({n} threads)" for a, n in list(many.items())[:3])
        warnings.warn(f"{len(many)} Dask worker(s) have more than one thread: {shown}; s2sr runs one unit at a "
                      "time per worker process, so the others would sit idle: start workers with --nthreads 1 "
                      "(inference already uses the worker's share of the cores)", IdleThreadsWarning, stacklevel=2)


def window_size(client: Any) -> int:
    """Units in flight: two per worker thread (one running, one queued), at least 4."""
    return max(4, 2 * sum(int(w.get("nthreads", 1)) for w in scheduler_workers(client).values()))


@dataclass(slots=True)
class _Planned:
    key: str
    item: pystac.Item
    path: Path
    """The output as the caller named it (relative stays relative)."""
    outcome: ItemOutcome | None = None
    """Decided without a unit: skipped, or failed while planning."""
    rows: list[tuple[int, int]] | None = None
    width: int = 0


def _plan(key: str, item: pystac.Item, profile: CatalogProfile, params: RunParams, shown: RunParams,
          infos: dict[str, Any], unit_rows: int | None) -> _Planned:
    path = output_path(item, shown)
    if not params.overwrite and infos and done_before(item.id, output_path(item, params), infos, params.post):
        return _Planned(key, item, path, ItemOutcome(item.id, "skipped", path))
    try:
        plan = plan_item(item, profile, params)  # metadata only: bad items fail here, before any unit
        if output_path(item, params).exists() and not params.overwrite:
            raise OutputExists(f"{path} exists; pass --overwrite to replace it")
    except S2SRError as err:
        return _Planned(key, item, path, ItemOutcome(item.id, "failed", path, error=err))
    rows = split_rows(plan.out.shape[0], aligned_block(params.block), unit_rows)  # the blocks stream_item runs
    return _Planned(key, item, path, rows=rows, width=plan.out.shape[1])


def _planned(jobs: Iterator[Callable[[], _Planned]], ahead: int) -> Iterator[_Planned]:
    """The plans, in order, at most ``ahead`` computed ahead in threads (some read a raster header)."""
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="s2sr-plan") as pool:
        queue: deque[Future[_Planned]] = deque()
        for job in jobs:
            queue.append(pool.submit(job))
            if len(queue) >= ahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()


def item_doc(item: pystac.Item) -> tuple[dict[str, Any], dict[str, str]]:
    """The item as a dict for a worker, and its assets' absolute hrefs (a worker has no catalog to resolve against)."""
    doc = item.to_dict(transform_hrefs=False)
    hrefs = {}
    for key, asset in item.assets.items():
        href = asset.get_absolute_href()
        if href and key in doc.get("assets", {}) and href != doc["assets"][key].get("href"):
            hrefs[key] = href
    return doc, hrefs


def run_cluster(
    client: Any, items: list[pystac.Item], profile: CatalogProfile, params: RunParams, spec: ModelSpec, *,
    where: str, timeout: float, publish: Callable[[ItemResult], Any] | None,
    on_event: Callable[[BatchEvent], None] | None, unit_rows: int | None, retries: int,
    window: int | None, in_flight: dict[str, Path],
) -> list[ItemOutcome]:
    """Submit ``items`` as units (at most ``window`` in flight); one outcome per item, in order."""
    from distributed import as_completed

    from .local import outcome_of

    tally = Tally(len(items), on_event)
    keys = [f"{i}:{it.id}" for i, it in enumerate(items)]
    shown = params
    params = replace(params, out_dir=Path(params.out_dir).absolute())  # workers have their own working folder
    infos = connect_and_probe(client, spec, where, timeout, retries)
    limit = window or window_size(client)
    tag = uuid.uuid4().hex[:8]
    plans = _planned((lambda k=k, it=it: _plan(k, it, profile, params, shown, infos, unit_rows)  # type: ignore[misc]
                      for k, it in zip(keys, items, strict=True)), ahead=max(4, limit))
    ac = as_completed()
    futs: dict[Any, tuple[_Planned, str]] = {}  # future → (its item, "part"/"item")
    part_workers: dict[str, list[str]] = {}
    resumed: dict[str, int] = {}
    lost: BaseException | None = None

    def submit(p: _Planned) -> None:
        doc, hrefs = item_doc(p.item)
        unit = Unit("item", doc, profile, params, spec, hrefs)
        name = f"{tag}-{p.key.split(':', 1)[0]}"
        rows = p.rows or []
        if len(rows) <= 1:
            fut = client.submit(run_unit, unit, key=f"s2sr-item-{name}", retries=retries, pure=False)
            tally.units_total += 1
        else:
            staging = staging_dir(params.out_dir, output_path(p.item, params).stem)
            # the item's `auto` operators, estimated once for all its parts and its assembly
            first = ([client.submit(run_unit, replace(unit, kind="estimate"), key=f"s2sr-estimate-{name}",
                                    retries=retries, pure=False)] if params.post.wants_any_estimate(infos) else [])
            parts = []
            for r in rows:
                part = replace(unit, kind="part", rows=r, part=str(staging / f"rows-{r[0]:06d}-{r[1]:06d}.tif"),
                               width=p.width)
                parts.append(client.submit(run_unit, part, *first, key=f"s2sr-part-{name}-{r[0]}", retries=retries,
                                           pure=False))
            for f in parts:
                futs[f] = (p, "part")
                ac.add(f)
            fut = client.submit(run_unit, replace(unit, kind="assemble"), *first, *parts, key=f"s2sr-assemble-{name}",
                                retries=retries, pure=False)
            tally.units_total += len(rows)
        futs[fut] = (p, "item")
        ac.add(fut)
        in_flight[p.key] = output_path(p.item, params)

    def refill() -> None:
        while lost is None and len(futs) < limit:
            stop.check()
            p = next(plans, None)
            if p is None:
                return
            if p.outcome is not None:
                tally.finish(p.key, p.outcome)
                continue
            submit(p)
        tally.in_flight = len(futs)

    refill()
    if futs:
        tally.emit("unit")
    for fut in ac:
        p, kind = futs.pop(fut)
        if kind == "part":
            if fut.status == "finished":
                r: UnitResult = fut.result()
                part_workers.setdefault(p.key, []).append(r.worker)
                resumed[p.key] = resumed.get(p.key, 0) + int(r.resumed)
            tally.units_done += 1
            tally.in_flight = len(futs)
            tally.emit("unit")
            refill()
            continue
        units = len(p.rows or [()])
        tally.units_done += 1 if units == 1 else 0
        if fut.status == "finished":
            done: UnitResult = fut.result()
            for msg in done.warnings:
                log.warning("%s", msg)
            o = outcome_of(done, p.item, p.path, units, publish, shown_path=p.path)
        else:
            err = _exception(fut)
            err = cluster_failure(err, where, client)
            if client.status != "running" or fut.status in ("cancelled", "lost"):
                lost = lost or err
            o = ItemOutcome(p.item.id, "failed", p.path, error=err, units=units)
        if part_workers.get(p.key):
            o = replace(o, workers=tuple(dict.fromkeys([*part_workers.pop(p.key), *o.workers])),
                        resumed=resumed.pop(p.key, 0))
        fut.release()
        in_flight.pop(p.key, None)
        tally.finish(p.key, o)
        refill()
    plans.close()  # type: ignore[attr-defined]
    if lost is not None:  # every item not finished is named, with the same error
        for k, it in zip(keys, items, strict=True):
            if k not in tally.outcomes:
                tally.finish(k, ItemOutcome(it.id, "failed", output_path(it, shown), error=lost))
    return [tally.outcomes[k] for k in keys]
