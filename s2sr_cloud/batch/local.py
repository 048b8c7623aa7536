"""Items in this process, one after the other, through the same units the workers run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import stop
from ..errors import S2SRError
from ..pipeline import ItemResult, RunParams, output_path
from ..publish.record import done_before
from ..sr import Runner, model_info
from .outcomes import BatchEvent, ItemOutcome, Tally
from .units import UnitResult, produce_item, release_frames

if TYPE_CHECKING:
    import pystac

    from ..catalog.presets import CatalogProfile

log = logging.getLogger(__name__)


def _pixels(result: ItemResult) -> int:
    h, w = result.grid.shape if result.grid is not None else (0, 0)
    return int(h) * int(w)


def outcome_of(done: UnitResult, item: pystac.Item, path: Path, units: int,
               publish: Callable[[ItemResult], Any] | None, *, shown_path: Path | None = None) -> ItemOutcome:
    """The outcome of an item's last unit: its result published here (in the calling process)."""
    path = shown_path or path
    workers = (done.worker,) if done.worker else ()
    if done.error is not None:
        return ItemOutcome(item.id, "failed", path, error=done.error, seconds=done.seconds, units=units, workers=workers)
    if done.skipped or done.result is None:
        return ItemOutcome(item.id, "skipped", path, units=units, workers=workers)
    res = replace(done.result, item=item)  # the caller's item object, not a worker's copy
    try:
        if publish is not None:
            publish(res)
    except Exception as err:  # noqa: BLE001 - reported per item, the others go on
        return ItemOutcome(item.id, "failed", path, res, err, res.seconds, _pixels(res), units, workers)
    return ItemOutcome(item.id, "done", path, res, None, res.seconds, _pixels(res), units, workers)


def run_here(
    items: list[pystac.Item], profile: CatalogProfile, params: RunParams, runners: Mapping[str, Runner],
    publish: Callable[[ItemResult], Any] | None, on_event: Callable[[BatchEvent], None] | None,
) -> list[ItemOutcome]:
    """Process ``items`` one after the other with loaded ``runners``; one outcome per item, in order.

    A second process writing the same output makes that item fail at once
    (:class:`~s2sr_cloud.errors.OutputLocked`); a stop request ends the run between tile batches.
    """
    tally = Tally(len(items), on_event)
    infos = {n: model_info(r) for n, r in runners.items()}
    out: list[ItemOutcome] = []
    for item in items:
        stop.check()
        path = output_path(item, params)
        if not params.overwrite and done_before(item.id, path, infos, params.post):
            o = ItemOutcome(item.id, "skipped", path)
        else:
            try:
                done = produce_item(item, runners, profile, params, overwrite=params.overwrite, wait_lock=False,
                                    on_progress=lambda ev: tally.emit("tiles", tiles=ev))
            except S2SRError as err:
                o = ItemOutcome(item.id, "failed", path, error=release_frames(err), units=1)
            else:
                o = outcome_of(replace(done, worker=""), item, path, 1, publish)
        tally.finish(item.id, o)
        out.append(o)
    return out
