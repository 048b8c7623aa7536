"""One item end to end: plan the 10 m grid → stream blocks (read → super-resolve) → COG.

The blocks go through the one streaming loop (:func:`s2sr_cloud.stream.run_blocks`) that
local scenes use too, with the back-projection post-step. Memory is bounded by one block
(plus its halo), never by the item: a full 10980 × 10980 item is processed block by block.
The result of every run, STAC item or local scene, is a :class:`SceneResult` holding
everything a publisher needs (source item, output path, grid, bands, models, consistency);
:meth:`SceneResult.scene` is its publishing view.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__, timing
from .bands import BANDS_10M, SR_BANDS
from .catalog.assets import NEEDED_BANDS, AssetRef, band_assets
from .grid import (
    ItemGrid,
    OutputGrid,
    Window,
    grid_from_metadata,
    iter_blocks,
    plan_output,
)
from .io.env import HttpParams
from .post import DEFAULT, ConsistencyQA, PostSteps
from .sr import Runner, model_info

if TYPE_CHECKING:
    import pystac

    from .catalog.presets import CatalogProfile

log = logging.getLogger(__name__)

#: Output DN convention, recorded in every COG.
DN_SCALE = 0.0001
DN_CONVENTION = "reflectance = DN * 0.0001; DN 0 = nodata; baseline-04.00 BOA offset removed"


@dataclass(frozen=True, kw_only=True, slots=True)
class RunParams:
    """How to process items."""

    out_dir: Path
    """Folder of the output COGs."""
    bbox: tuple[float, float, float, float] | None = None
    """Area (lon/lat W, S, E, N) to produce; None = the whole item."""
    include_10m: bool = False
    """Also write the 4 native 10 m bands (after the 8 super-resolved ones)."""
    block: int = 1536
    """Side of the streamed blocks in 10 m pixels (a multiple of 6 and of 512); bounds memory."""
    tile: int | None = None  # None: the backend's preferred tile (sr.runner_tiling)
    """Tile side for the runners."""
    batch: int | None = None
    """Tiles per runner call."""
    overwrite: bool = False
    """Replace existing outputs."""
    post: PostSteps = DEFAULT
    """The post-steps after the nets (hybrid blend, back-projection; :class:`~s2sr_cloud.post.PostSteps`)."""
    http: HttpParams = field(default_factory=HttpParams)
    """Network behaviour of the reads."""


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Progress of one item: ``done`` of ``total`` units (tiles × nets) of ``stage``."""

    stage: str
    item_id: str
    done: int
    total: int


ProgressFn = Callable[[ProgressEvent], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class SceneResult:
    """One output of ``s2sr superres``, ``s2sr run`` or ``s2sr search --run``; the hook for
    publishing (``--publish``), the ``.s2sr.json`` record and the ``--json`` lines."""

    item: pystac.Item | None
    """The source STAC item, as found (None for a local scene)."""
    path: Path
    """The written output: a 10 m COG (or a ``.npz`` for a ``.npz`` scene)."""
    grid: OutputGrid | None
    """Output CRS, transform, shape, window in the source grid, bounds and lon/lat bbox
    (None for a ``.npz`` scene, which has no georeference)."""
    bands: tuple[str, ...]
    """Band ids in output band order."""
    model: dict[str, dict[str, Any]]
    """Per net, the runner's ``model_info`` (name, variant, sha256, precision…)."""
    backend: str
    """Inference backend, e.g. ``onnxruntime-cpu``."""
    catalog: str
    """Catalog profile name (``local`` for a local scene)."""
    radiometry: dict[str, Any]
    """Offsets removed per band and the output DN convention."""
    seconds: float
    """Wall time of the output."""
    post: PostSteps = DEFAULT
    """The post-steps the output was made with."""
    consistency_rmse: dict[str, float] = field(default_factory=dict)
    """Per band, RMSE (DN) between the output degraded back (Wald operator) and the observed
    20 m / 60 m band: the per-output QA figure (:class:`~s2sr_cloud.post.ConsistencyQA`)."""
    source_href: str = ""
    """Where the input came from (the item's href or id, or the local file/folder)."""

    @property
    def consistency_rmse_max(self) -> float | None:
        """The worst band's consistency RMSE (DN); None when not measured."""
        return max(self.consistency_rmse.values()) if self.consistency_rmse else None

    @property
    def backproject(self) -> int:
        """Back-projection iterations of the output (the most any net got: ``post.max_iterations``;
        per net in ``post.record()``)."""
        return self.post.max_iterations

    @property
    def hybrid(self) -> bool:
        """Whether the hybrid blend ran (``post.hybrid``)."""
        return self.post.hybrid


#: The historical name of :class:`SceneResult` (``run`` / ``search --run`` results).
ItemResult = SceneResult


@dataclass(frozen=True, slots=True)
class ItemPlan:
    """What :func:`process_item` will read and write for one item."""

    assets: dict[str, AssetRef]
    item_grid: ItemGrid
    out: OutputGrid
    http: HttpParams


def _signer(profile: CatalogProfile) -> Any:
    from .catalog.signing import signer_for

    return signer_for(profile.signer)


def plan_item(item: pystac.Item, profile: CatalogProfile, params: RunParams) -> ItemPlan:
    """Resolve assets, radiometry and the output grid (reads at most one raster header)."""
    from dataclasses import replace

    from .io.read import probe_grid

    bands = NEEDED_BANDS
    assets = band_assets(item, profile, bands)
    http = params.http
    if profile.access == "cdse-s3" or any(a.href.startswith("s3://eodata/") for a in assets.values()):
        from .catalog.signing import cdse_s3_options

        http = replace(http, extra={**(http.extra or {}), **cdse_s3_options()})
    ref = assets["B04"]
    grid = grid_from_metadata(item.properties, item.assets[ref.key].to_dict())
    if grid is None:
        grid = probe_grid(ref, signer=_signer(profile), http=http)
    out = plan_output(grid, params.bbox, item.geometry, item.id)
    return ItemPlan(assets, grid, out, http)


def cog_tags(
    runners: Mapping[str, Runner], *, source_item: str = "", source_collection: str = "", source_href: str = "",
    catalog: str = "", dn_convention: str = DN_CONVENTION, offsets: Iterable[int] = (0,), post: PostSteps = DEFAULT,
) -> dict[str, str]:
    """The COG tags every output carries (STAC items and local scenes: same keys).

    The consistency figures (:func:`qa_tags`) are added once the last block is written.
    """
    return {
        "S2SR_VERSION": __version__,
        "S2SR_SOURCE_ITEM": source_item,
        "S2SR_SOURCE_COLLECTION": source_collection,
        "S2SR_SOURCE_HREF": source_href,
        "S2SR_CATALOG": catalog,
        "S2SR_DN_CONVENTION": dn_convention,
        "S2SR_DN_SCALE": str(DN_SCALE),
        "S2SR_DN_OFFSET": "0",
        "S2SR_BOA_OFFSET_REMOVED": ",".join(str(o) for o in sorted(set(offsets))),
        "S2SR_BACKEND": ",".join(sorted({r.backend for r in runners.values()})),
        "S2SR_BACKENDS": ",".join(f"{n}={r.backend}" for n, r in runners.items()),
        "S2SR_MODELS": ",".join(str(model_info(r).get("name", n)) for n, r in runners.items()),
        "S2SR_PRECISION": ",".join(f"{n}={model_info(r).get('precision', 'fp32')}" for n, r in runners.items()),
        **post.tags(runners),
    }


def qa_tags(consistency: Mapping[str, float]) -> dict[str, str]:
    """``S2SR_CONSISTENCY_RMSE`` (JSON ``{band: RMSE DN}``) and its maximum, ``S2SR_CONSISTENCY_RMSE_MAX``."""
    import json

    doc = {b: consistency[b] for b in SR_BANDS if b in consistency}
    return {"S2SR_CONSISTENCY_RMSE": json.dumps(doc),
            "S2SR_CONSISTENCY_RMSE_MAX": str(max(doc.values())) if doc else ""}


def _tags(item: pystac.Item, plan: ItemPlan, runners: Mapping[str, Runner], profile: CatalogProfile,
          params: RunParams) -> dict[str, str]:
    return cog_tags(runners, source_item=item.id, source_collection=item.collection_id or "",
                    source_href=item.get_self_href() or "", catalog=profile.name,
                    offsets=[a.offset_dn for a in plan.assets.values()], post=params.post)


def band_layout(bands: Iterable[str]) -> dict[str, Any]:
    """Band descriptions, per-band tags and GDAL scale/offset of an output COG (:func:`s2sr_cloud.io.cog.band_layout`)."""
    from .io.cog import band_layout as layout

    return layout(bands, scale=DN_SCALE, offset=0.0)


def output_path(item: pystac.Item, params: RunParams) -> Path:
    """The output COG of ``item`` under ``params.out_dir``."""
    from .fsutil import (
        safe_name,  # a remote id never chooses the folder (`../x`, `/abs`)
    )

    return Path(params.out_dir) / f"{safe_name(item.id)}-s2sr.tif"


def output_bands(params: RunParams) -> tuple[str, ...]:
    """Band ids of the output COG, in band order."""
    return SR_BANDS + (BANDS_10M if params.include_10m else ())


def cog_layout(
    item: pystac.Item, plan: ItemPlan, runners: Mapping[str, Runner], profile: CatalogProfile, params: RunParams,
) -> dict[str, Any]:
    """Keyword arguments of :class:`~s2sr_cloud.io.cog.CogWriter` (size, grid, bands, tags) for ``item``."""
    from rasterio.transform import Affine

    out = plan.out
    bands = output_bands(params)
    return {
        "width": out.shape[1], "height": out.shape[0], "count": len(bands), "crs": out.crs,
        "transform": Affine(*out.transform), "nodata": 0, "dtype": "uint16",
        "tags": _tags(item, plan, runners, profile, params), **band_layout(bands),
    }


def stream_item(
    plan: ItemPlan, runners: Mapping[str, Runner], profile: CatalogProfile, params: RunParams,
    write: Callable[[np.ndarray, Window], None], *, rows: tuple[int, int] | None = None,
    item_id: str = "", on_progress: ProgressFn | None = None, qa: ConsistencyQA | None = None,
) -> None:
    """Read → super-resolve (+ back-projection) → ``write(uint16 (count, h, w), window)`` block by block.

    The item's blocks go through the one streaming loop (:func:`~s2sr_cloud.stream.run_blocks`).
    Windows are relative to the output grid. ``rows`` (start, stop) limits the run to a band
    of output rows; with ``start`` a multiple of the (60 m aligned) ``params.block`` its blocks
    are exactly the blocks of the whole run, so the pixels are the same (how
    :mod:`s2sr_cloud.batch` splits a large item over workers). ``qa`` accumulates the
    consistency of what is written.
    """
    from .io.read import ItemSource
    from .post.estimate import resolve
    from .stream import BandsSink, PerThreadSource, run_blocks

    out = plan.out
    r0, r1 = rows if rows is not None else (0, out.shape[0])
    window = Window(out.window.row + r0, out.window.col, r1 - r0, out.window.width)

    def tick(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(ProgressEvent("tiles", item_id, done, total))

    # reading + upsampling of block k+1 overlaps inference of block k: one ItemSource (GDAL
    # handles) per thread; GDAL's process-wide caches serve the halo rows blocks share
    def factory() -> ItemSource:
        return ItemSource(plan.assets, plan.item_grid, signer=_signer(profile), http=plan.http)

    sink = BandsSink(write, origin=(out.window.row, out.window.col), include_10m=params.include_10m)
    with PerThreadSource(factory) as source:
        # the auto operator from the whole item's window, never from this band of rows
        post = resolve(params.post, source, out.window, runners)
        run_blocks(source, runners, sink, window=window, block=params.block, tile=params.tile, batch=params.batch,
                   post=post, qa=qa, on_progress=tick)


def item_result(
    item: pystac.Item, plan: ItemPlan, runners: Mapping[str, Runner], profile: CatalogProfile, params: RunParams,
    path: Path, seconds: float, *, consistency: Mapping[str, float] | None = None,
) -> SceneResult:
    """The :class:`SceneResult` of ``item`` written to ``path``."""
    first = next(iter(runners.values()))
    return SceneResult(
        item=item, path=path, grid=plan.out, bands=output_bands(params),
        model={n: model_info(r) for n, r in runners.items()}, backend=first.backend, catalog=profile.name,
        radiometry={
            "offset_removed_dn": {b: a.offset_dn for b, a in plan.assets.items()},
            "offset_reason": plan.assets["B05"].offset_reason,
            "dn_scale": DN_SCALE, "dn_offset": 0, "nodata": 0, "convention": DN_CONVENTION,
        },
        seconds=seconds, post=params.post, consistency_rmse=dict(consistency or {}),
        source_href=item.get_self_href() or item.id,
    )


def resolve_post(plan: ItemPlan, runners: Mapping[str, Runner], profile: CatalogProfile, params: RunParams) -> RunParams:
    """``params`` with the ``auto`` post-step operators estimated on the item's output window (its
    central crop, :mod:`s2sr_cloud.post.estimate`): the same value for every block and every worker
    of a split item, recorded in the tags."""
    from .io.read import ItemSource
    from .post.estimate import resolve

    if not params.post.wants_any_estimate(runners):
        return params
    with ItemSource(plan.assets, plan.item_grid, signer=_signer(profile), http=plan.http) as source:
        return replace(params, post=resolve(params.post, source, plan.out.window, runners))


def process_item(
    item: pystac.Item, runners: Mapping[str, Runner], profile: CatalogProfile, params: RunParams,
    *, on_progress: ProgressFn | None = None,
) -> SceneResult:
    """Super-resolve the requested area of one item into a 10 m COG, block by block."""
    from .io.cog import CogWriter
    from .stream import aligned_block

    t0 = time.perf_counter()
    plan = plan_item(item, profile, params)
    params = resolve_post(plan, runners, profile, params)
    out = plan.out
    path = output_path(item, params)
    nblocks = len(list(iter_blocks(out.shape, aligned_block(params.block))))
    log.info("[%s] %d x %d px at 10 m in %d blocks -> %s", item.id, out.shape[1], out.shape[0], nblocks, path)
    writer = CogWriter(path, overwrite=params.overwrite, **cog_layout(item, plan, runners, profile, params))
    qa = ConsistencyQA()
    with writer:
        stream_item(plan, runners, profile, params, writer.write, item_id=item.id, on_progress=on_progress, qa=qa)
        writer.tags.update(qa_tags(qa.result()))  # written when the COG is finished
        last_block = time.perf_counter()
    timing.add("cog", time.perf_counter() - last_block)  # the writer's tail after the last block
    # L2A: the scene classification at 10 m beside the COG
    from .io.scl import write_item_scl

    write_item_scl(item, profile, plan.item_grid, out, path, http=plan.http)
    return item_result(item, plan, runners, profile, params, path, time.perf_counter() - t0, consistency=qa.result())


def process_items(
    items: Iterable[pystac.Item], runners: Mapping[str, Runner], profile: CatalogProfile, params: RunParams,
    *, on_progress: ProgressFn | None = None,
) -> Iterator[SceneResult]:
    """:func:`process_item` over items, lazily (one item in memory at a time)."""
    for item in items:
        yield process_item(item, runners, profile, params, on_progress=on_progress)
