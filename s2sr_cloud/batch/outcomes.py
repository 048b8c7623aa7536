"""What a batch reports: one :class:`ItemOutcome` per item, :class:`BatchEvent` progress, and
:func:`raise_for_failures` (:class:`~s2sr_cloud.errors.ItemsFailed`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ItemsFailed, S2SRError
from ..pipeline import ItemResult, ProgressEvent

log = logging.getLogger(__name__)

Status = Literal["done", "skipped", "failed"]


def post_json(result: ItemResult) -> dict[str, Any]:
    """The post-step fields of a result's ``--json`` line (one place for the post-step settings)."""
    return result.post.record()


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
    resumed: int = 0
    """Units taken from finished part files of an interrupted run (not computed again)."""

    @property
    def exit_code(self) -> int:
        """The error's exit code (0 unless failed; 1 for an unexpected error)."""
        if self.status != "failed":
            return 0
        return int(getattr(self.error, "exit_code", 1)) if isinstance(self.error, S2SRError) else 1

    @property
    def error_type(self) -> str:
        """The error's class name (for an unexpected error on a worker: the original class)."""
        return str(getattr(self.error, "type_name", "") or type(self.error).__name__)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of ``--json``)."""
        d: dict[str, Any] = {"id": self.item_id, "status": self.status, "path": str(self.path) if self.path else None,
                             "seconds": round(self.seconds, 3), "pixels_10m": self.pixels, "units": self.units,
                             "workers": list(self.workers), "units_resumed": self.resumed}
        if self.result is not None:
            r = self.result
            if r.grid is not None:
                d.update(shape=list(r.grid.shape), crs=r.grid.crs)
            d.update(bands=list(r.bands), backend=r.backend, models={k: v.get("name") for k, v in r.model.items()},
                     **post_json(r), consistency_rmse=dict(r.consistency_rmse),
                     consistency_rmse_max=r.consistency_rmse_max)
        if self.status == "failed":
            d.update(error=str(self.error), error_type=self.error_type, exit_code=self.exit_code)
        return d


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """Progress of a batch: ``kind`` is ``item`` (an item finished: ``outcome``), ``unit`` (a part
    of a split item finished, or units were submitted) or ``tiles`` (in process: tile progress of
    the current item)."""

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
    units_in_flight: int = 0
    """Units submitted and not finished yet (on a cluster: at most the submission window)."""


def raise_for_failures(outcomes: Sequence[ItemOutcome]) -> None:
    """Raise when items failed: the error itself for a batch of one, else :class:`ItemsFailed`."""
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return
    if len(outcomes) == 1 and isinstance(failed[0].error, S2SRError):
        raise failed[0].error
    shown = [o.item_id or "(no id)" for o in failed[:10]]
    ids = ", ".join(shown) + (f" and {len(failed) - len(shown)} more" if len(failed) > len(shown) else "")
    raise ItemsFailed(f"{len(failed)} of {len(outcomes)} items failed ({ids}); first: {failed[0].error}", outcomes)


class Tally:
    """Counts of a batch and its outcomes by key; sends :class:`BatchEvent` to ``on_event``."""

    def __init__(self, total: int, on_event: Callable[[BatchEvent], None] | None) -> None:
        self.total, self.on_event = total, on_event
        self.done = self.failed = self.skipped = self.units_done = self.units_total = self.pixels = 0
        self.in_flight = 0
        self.t0 = time.perf_counter()
        self.outcomes: dict[str, ItemOutcome] = {}

    def emit(self, kind: Literal["item", "unit", "tiles"], outcome: ItemOutcome | None = None,
             tiles: ProgressEvent | None = None) -> None:
        if self.on_event is not None:
            self.on_event(BatchEvent(kind, self.done, self.failed, self.skipped, self.total, self.units_done,
                                     self.units_total, self.pixels, time.perf_counter() - self.t0, outcome, tiles,
                                     self.in_flight))

    def finish(self, key: str, outcome: ItemOutcome) -> None:
        self.outcomes[key] = outcome
        if outcome.status == "done":
            self.done += 1
            self.pixels += outcome.pixels
        elif outcome.status == "failed":
            self.failed += 1
            log.error("%s: %s", outcome.item_id, outcome.error)
            tb = getattr(outcome.error, "traceback", "")
            if tb:
                log.debug("%s: the worker's traceback:\n%s", outcome.item_id, tb)
        else:
            self.skipped += 1
        self.emit("item", outcome)
