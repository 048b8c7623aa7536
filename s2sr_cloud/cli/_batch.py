"""The CLI face of :func:`s2sr_cloud.batch.process_items`: options, progress, summary, ``--json``."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..settings import SCHEDULER_VAR

if TYPE_CHECKING:
    import pystac

    from ..batch import BatchEvent, ItemOutcome
    from ..catalog.presets import CatalogProfile
    from ..pipeline import RunParams

def _workers(value: int | None) -> int | None:
    """At most two worker processes per usable core (each runs one unit at a time)."""
    if value is None:
        return None
    from ..batch.models import usable_cpus

    cores = usable_cpus()
    if value > 2 * cores:
        raise typer.BadParameter(f"{value} worker processes on {cores} usable core(s) would only fight for them; "
                                 f"use at most {2 * cores} (one per core is best: each worker uses its share of the "
                                 "cores), or --scheduler for a cluster of several machines")
    return value


def _scheduler(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    from ..options import parse_scheduler_address

    try:
        return parse_scheduler_address(value)
    except ValueError as err:
        from_env = str(getattr(ctx.get_parameter_source(param.name), "name", "")) == "ENVIRONMENT"
        raise typer.BadParameter(str(err), param_hint=SCHEDULER_VAR if from_env else "'--scheduler'") from None


Workers = Annotated[int | None, typer.Option(
    "--workers", min=1, callback=_workers, help="Spread the items over a local Dask cluster of N worker processes "
    "(`pip install 's2sr-cloud\\[dask]'`); default: this process only.")]
Scheduler = Annotated[str | None, typer.Option(
    "--scheduler", envvar=SCHEDULER_VAR, callback=_scheduler, help="Submit to a running Dask scheduler, "
    "e.g. tcp://10.0.0.5:8786 (--out must be a folder every worker and this machine see).")]
JsonResults = Annotated[bool, typer.Option(
    "--json", help="One JSON result per item on stdout (JSON Lines, as items finish); the rest goes to stderr.")]


class _View:
    """Progress on stderr: items done/failed/skipped of total, throughput; per-item tiles in process."""

    def __init__(self, total: int, *, as_json: bool, cluster: bool) -> None:
        from ._console import make_progress

        self.as_json, self.cluster = as_json, cluster
        self.progress = make_progress()
        self.items = self.progress.add_task("items", total=total)
        self.tiles: Any = None
        self.current: str | None = None  # an item id may be "" (a catalog's bug): not a sentinel

    def __enter__(self) -> _View:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, ev: BatchEvent) -> None:
        p = self.progress
        if ev.kind == "tiles" and ev.tiles is not None:
            t = ev.tiles
            if t.item_id != self.current:
                self.current = t.item_id
                if self.tiles is not None:
                    p.remove_task(self.tiles)
                self.tiles = p.add_task(t.item_id or "(no id)", total=None)
            p.update(self.tiles, completed=t.done, total=t.total)
            return
        minutes = max(ev.elapsed_s, 1e-6) / 60
        desc = f"items: {ev.done} done, {ev.failed} failed"
        if ev.skipped:
            desc += f", {ev.skipped} skipped"
        if ev.done:
            desc += f" · {ev.done / minutes:.1f} items/min · {ev.pixels_done / 1e6 / max(ev.elapsed_s, 1e-6):.3f} Mpx/s"
        if self.cluster and ev.units_total:
            desc += f" · units {ev.units_done}/{ev.units_total}"
        p.update(self.items, completed=ev.done + ev.failed + ev.skipped, description=desc)
        if ev.kind == "item" and ev.outcome is not None and self.as_json:
            typer.echo(json.dumps(ev.outcome.to_json()))


def _summary(outcomes: Sequence[ItemOutcome], seconds: float) -> Any:
    from rich.markup import escape
    from rich.table import Table

    n = sum(o.status == "done" for o in outcomes)
    px = sum(o.pixels for o in outcomes if o.status == "done")
    t = Table(title=f"{n} done, {sum(o.status == 'failed' for o in outcomes)} failed, "
                    f"{sum(o.status == 'skipped' for o in outcomes)} skipped of {len(outcomes)} in {seconds:.1f} s"
                    + (f" ({px / 1e6 / max(seconds, 1e-6):.3f} Mpx/s at 10 m)" if n else ""))
    for col in ("item", "status", "10 m px", "s", "units", "output / error"):
        t.add_column(col, overflow="fold", justify="right" if col in ("s", "units") else "left")
    style = {"done": "green", "failed": "bold red", "skipped": "dim"}
    for o in outcomes:
        size = f"{o.result.grid.shape[1]} x {o.result.grid.shape[0]}" if o.result is not None else ""
        what = escape(f"{o.error_type}: {o.error}" if o.status == "failed" else str(o.path or ""))
        t.add_row(escape(o.item_id or "(no id)"), f"[{style[o.status]}]{o.status}[/]", size, f"{o.seconds:.1f}" if o.seconds else "",
                  str(o.units or ""), what)
    return t


def run_batch(
    items: Sequence[pystac.Item], profile: CatalogProfile, params: RunParams, *,
    checkpoint: list[Path] | None, onnx: list[Path] | None, device: str, precision: str = "fp32",
    build_engine: bool = False, workers: int | None = None, scheduler: str | None = None, as_json: bool = False,
    publish: str | None = None, s3_endpoint: str | None = None, assets_to: str | None = None,
) -> None:
    """Process ``items`` (in process, or on Dask with ``workers``/``scheduler``), show progress and
    a summary; raise when items failed (the first failure's exit code)."""
    import logging

    from ..batch import (
        ModelSpec,
        close_runners,
        process_items,
        raise_for_failures,
    )
    from ..publish.hook import publish_hook
    from . import _console
    from ._console import err_console, success
    from ._options import model_files

    quiet = bool(getattr(_console, "QUIET", False))  # -q: errors only
    cluster = workers is not None or bool(scheduler)
    if len(items) == 1 and not cluster:
        _precheck(items[0], profile, params, as_json)  # bbox, bands, credentials: before the models load
    ckpts, onnxs = model_files(checkpoint, onnx)
    spec = ModelSpec.of(onnx=onnxs, checkpoint=ckpts, device=str(getattr(device, "value", device)),
                        precision=str(getattr(precision, "value", precision)), build_engine=build_engine)
    hook = publish_hook(publish, s3_endpoint=s3_endpoint, assets_to=assets_to, overwrite=params.overwrite,
                        on_published=lambda r: success(f"{r.item_id}: {r.status} -> {r.href}"))
    models: Any = spec
    if cluster:
        with contextlib.suppress(ImportError):  # process_items says which extra to install
            import distributed  # noqa: F401 - importing it sets its loggers' levels: quieten them afterwards
        level = logging.WARNING if logging.getLogger().level <= logging.DEBUG else logging.CRITICAL
        for name in ["distributed", "tornado", "bokeh", *logging.root.manager.loggerDict]:  # children set their own
            if name.split(".")[0] in ("distributed", "tornado", "bokeh"):
                logging.getLogger(name).setLevel(level)
        where = f"a local Dask cluster of {workers} workers" if workers is not None else f"the Dask scheduler {scheduler}"
        if not quiet:
            err_console.print(f"{len(items)} item(s) on {where}", highlight=False, markup=False)
    else:
        models = spec.load()
        if not quiet:
            err_console.print("backends: " + ", ".join(f"{k}: {r.backend}" for k, r in models.items()), highlight=False)
    t0 = time.perf_counter()
    try:
        with _View(len(items), as_json=as_json, cluster=cluster) as view:
            outcomes = process_items(items, profile, params, models=models, workers=workers,
                                     scheduler=scheduler or None, publish=hook, on_event=view)
    finally:
        if not cluster:  # loaded here, released here (TensorRT device memory, engine contexts)
            close_runners(models)
    if hook is not None:
        outcomes = [_publish_skipped(o, hook, as_json) if o.status == "skipped" else o for o in outcomes]
    if not quiet:
        err_console.print(_summary(outcomes, time.perf_counter() - t0))
    raise_for_failures(outcomes)


def _publish_skipped(outcome: Any, hook: Any, as_json: bool) -> Any:
    """A skipped item (done before, by an earlier run or an earlier attempt of a unit) published
    from its record: the target skips it when it holds it already with the same model, and an
    item whose run ended between writing its record and publishing it is published now. A
    failure fails that item (as for a new one; with ``--json``, a second line for it says so)."""
    from dataclasses import replace

    from ..publish.record import load_scene

    try:
        hook(load_scene(Path(outcome.path)))
    except Exception as err:  # noqa: BLE001 - reported per item, as for new items
        failed = replace(outcome, status="failed", error=err)
        if as_json:
            typer.echo(json.dumps(failed.to_json()))
        return failed
    return outcome


def _precheck(item: pystac.Item, profile: CatalogProfile, params: RunParams, as_json: bool) -> None:
    """Plan ``item`` (metadata only); on failure its ``--json`` line first, then the error."""
    from ..batch import ItemOutcome
    from ..errors import S2SRError
    from ..pipeline import output_path, plan_item

    try:
        plan_item(item, profile, params)
    except S2SRError as err:
        if as_json:
            typer.echo(json.dumps(ItemOutcome(item.id, "failed", output_path(item, params), error=err).to_json()))
        raise
