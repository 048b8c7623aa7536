"""Consistency with the observation: which low-resolution pixels can be compared, and the
running real-scale QA figure of an output."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..bands import NODATA, net_spec
from ..ops import WALD, Degradation, degrade, dilate_by_blur, namespace


def comparable(sr_nodata: Any, lr: Any, factor: int, op: Degradation = WALD, bands: Sequence[str] | None = None) -> Any:
    """LR pixels (h, w) where ``D(sr)`` and ``lr`` can be compared: ``lr`` valid in every band and no
    ``sr`` nodata pixel within the degradation's reach of the block (the rule of
    :func:`s2sr_cloud.metrics.consistency`)."""
    xp = namespace(lr)
    ok = xp.all(lr != NODATA, axis=0)
    if bool(xp.any(sr_nodata)):
        h, w = ok.shape
        reach = None if op.kind == "wald" else op.reach(factor, bands)
        grown = dilate_by_blur(sr_nodata, factor, reach)[: h * factor, : w * factor]
        ok = ok & ~xp.any(xp.reshape(grown, (h, factor, w, factor)), axis=(1, 3))
    return ok


@dataclass
class ConsistencyQA:
    """Running real-scale consistency of an output: RMSE (DN) per band between the output
    degraded back (Wald operator) and the observed band, over valid LR pixels.

    Fed window by window (the post-steps' window entry point takes ``qa=``), so it costs no
    second pass over a streamed item. The 20 m blur reaches 2 px past a window edge and
    is mirrored there instead, so the streamed figure differs from a whole-image one by
    well under 1 %. This is the per-output QA figure recorded in the ``.s2sr.json`` record and
    the published STAC item (``s2sr:consistency_rmse``). Works on any array library; the sums
    are kept as Python floats.
    """

    sq: dict[str, float] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)

    def add(self, net: str, sr: Any, lr: Any, factor: int) -> None:
        xp = namespace(sr, lr)
        spec = net_spec(net)
        back = degrade(sr, factor)
        ok = comparable(xp.any(sr == NODATA, axis=0), lr, factor)
        count = int(xp.sum(xp.astype(ok, xp.int64)))
        for i, band in enumerate(spec.outputs):
            d = xp.astype((back[i] - xp.astype(lr[i], xp.float32))[ok], xp.float64)
            self.sq[band] = self.sq.get(band, 0.0) + float(xp.sum(d * d))
            self.n[band] = self.n.get(band, 0) + count

    def merge(self, other: ConsistencyQA | Mapping[str, Mapping[str, float]]) -> ConsistencyQA:
        """Add ``other``'s sums (another block, or a part's ``{"sq": …, "n": …}`` record); returns self."""
        sq = other.sq if isinstance(other, ConsistencyQA) else other["sq"]
        n = other.n if isinstance(other, ConsistencyQA) else other["n"]
        for band, v in sq.items():
            self.sq[band] = self.sq.get(band, 0.0) + float(v)
            self.n[band] = self.n.get(band, 0) + int(n[band])
        return self

    def result(self) -> dict[str, float]:
        """``{band: RMSE in DN}`` for the bands seen (rounded to 0.01 DN)."""
        return {b: round(math.sqrt(self.sq[b] / self.n[b]), 2) for b in self.sq if self.n[b]}


def merge_qa(into: ConsistencyQA, other: ConsistencyQA | Mapping[str, Mapping[str, float]]) -> ConsistencyQA:
    """``into.merge(other)``."""
    return into.merge(other)
