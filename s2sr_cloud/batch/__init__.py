"""Many items in one call: in this process, or spread over a Dask distributed cluster.

:func:`process_items` is the library behind ``s2sr run`` and ``s2sr search --run``:

* **in process** (no ``client``, ``workers`` or ``scheduler``): the runners load once and the
  items go through the same units the workers run, one after the other;
* **on a cluster** (``workers=N`` starts a :class:`distributed.LocalCluster` of N worker
  processes on loopback, ``scheduler=ADDRESS`` or ``client=`` uses a running one): each item
  is one unit, and an item taller than ``unit_rows`` output rows is split into row bands
  (whole blocks, so the 60 m grid and the COG block grid are respected) written by different
  workers into part files under ``<out>/.s2sr-parts/`` (:mod:`s2sr_cloud.io.parts`) and
  assembled into the same single COG by a final unit. A split item whose post-steps use the
  ``auto`` operator first gets an estimate unit, whose result all its parts and its assembly
  use (the operator is estimated once per item). At most ``window`` units are in flight.
  Workers read their own COG windows; units return small results (paths, grids, model info),
  never pixels. Each worker process loads its runners once (:func:`worker_runners`), with its
  share of its host's usable cores as inference threads.

Either way, the process that writes a COG writes its ``.s2sr.json`` record right after it
(:mod:`s2sr_cloud.batch.units`), holding the output's lock; per-item failures are collected
(the other items go on); items already done with the same model and post-steps are skipped
unless ``params.overwrite``, and a split item resumes from its finished parts; ``publish`` is
called **in the calling process** as results arrive, so a collection is never written by two
workers at once. Transient errors (reads that may pass, HTTP 5xx, OS errors, lost workers) are
retried by Dask (``retries``); deterministic ones (a missing band, an existing output, a bug)
are not.

Modules: :mod:`.models` (what to load, the per-process cache, CPU limits), :mod:`.outcomes`
(what is reported), :mod:`.units` (the work), :mod:`.local` (the in-process loop),
:mod:`.cluster` (the Dask side).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ItemsFailed, OutputLocked
from ..io.parts import PARTS_DIR, split_rows
from ..pipeline import ItemResult, RunParams
from ..publish.record import done_before, same_model
from ..sr import Runner
from .cluster import SCHEDULER_ENV, Connection, run_cluster
from .local import run_here
from .models import ModelSpec, close_runners, usable_cpus, worker_runners
from .outcomes import BatchEvent, ItemOutcome, raise_for_failures
from .units import TRANSIENT, UnitResult

if TYPE_CHECKING:
    import pystac

    from ..catalog.presets import CatalogProfile

__all__ = [
    "PARTS_DIR", "SCHEDULER_ENV", "TRANSIENT", "BatchEvent", "ItemOutcome", "ItemsFailed", "ModelSpec", "UnitResult",
    "close_runners", "done_before", "process_items", "raise_for_failures", "same_model", "split_rows",
    "usable_cpus", "worker_runners",
]

log = logging.getLogger(__name__)


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
    window: int | None = None,
) -> list[ItemOutcome]:
    """Super-resolve ``items``; one :class:`ItemOutcome` per item, in the order given.

    Args:
        items: STAC items.
        profile: catalog rules of the items.
        params: output folder, area, blocks…; ``params.overwrite`` re-does finished items.
        models: a :class:`ModelSpec` (default: the default weights on ``auto``), or loaded
            runners (in process only; the caller closes them).
        client: a ``distributed.Client`` to submit to.
        workers: start a ``LocalCluster`` of this many worker processes (closed at the end).
        scheduler: address of a running scheduler (``tcp://host:8786``).
        publish: called in this process with each new :class:`ItemResult` (its ``.s2sr.json``
            record is written already); an error fails that item only.
        on_event: progress callback (:class:`BatchEvent`), in this process.
        unit_rows: on a cluster, items taller than this (output rows at 10 m) are split into
            row bands of whole blocks (default: 2 blocks).
        retries: Dask retries of a unit after a transient error or a lost worker.
        window: on a cluster, the most units in flight (default: two per worker thread).

    Per-item failures never raise; see :func:`raise_for_failures`. A lost scheduler, no
    worker within ``$S2SR_DASK_TIMEOUT`` s, or workers that cannot load the models raise
    :class:`~s2sr_cloud.errors.ClusterError` (before any item) or fail the items they touched.
    """
    from ..settings import dask_timeout

    items = list(items)
    spec = models if isinstance(models, ModelSpec) else ModelSpec() if models is None else None
    if client is None and workers is None and scheduler is None:
        if spec is None:
            return run_here(items, profile, params, dict(models), publish, on_event)  # type: ignore[arg-type]
        runners = spec.load()
        try:
            return run_here(items, profile, params, runners, publish, on_event)
        finally:  # loaded here, released here (GPU memory, engine contexts)
            close_runners(runners)
    if spec is None:
        raise TypeError("a cluster run needs models=ModelSpec(...) (runners cannot be sent to workers)")
    in_flight: dict[str, Path] = {}
    conn = Connection(client, workers, scheduler, dask_timeout())
    try:
        with conn as cl:
            return run_cluster(cl, items, profile, params, spec, where=conn.where, timeout=conn.timeout,
                               publish=publish, on_event=on_event, unit_rows=unit_rows, retries=retries,
                               window=window, in_flight=in_flight)
    finally:
        if in_flight and conn.owns_workers:
            # interrupted (Ctrl-C, an error in a callback): our own workers are gone now, so the
            # staging files they left can go too (finished parts stay: a re-run resumes from them);
            # a shared cluster's workers go on writing, atomically, each under its output's lock
            _sweep(in_flight.values())


def _sweep(paths: Iterable[Path]) -> None:
    from ..io.lock import output_lock, sweep_staging
    from ..io.parts import remove_empty, staging_dir, sweep_parts

    for path in paths:
        try:
            with output_lock(path):
                sweep_staging(path)
            staging = staging_dir(path.parent, path.stem)
            sweep_parts(staging)
            remove_empty(staging)
        except (OutputLocked, OSError) as err:
            log.debug("left the staging files of %s: %s", path, err)
