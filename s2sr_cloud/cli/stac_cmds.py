"""STAC commands: ``search`` (optionally ``--run``) and ``run`` (one item)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..options import ITERATIONS  # not ..backproject: `s2sr --help` must not import NumPy
from ._app import app
from ._options import (
    Backproject,
    Hybrid,
    Batch,
    Block,
    BuildEngine,
    Checkpoint,
    Device,
    Onnx,
    Overwrite,
    Precision,
    Tile,
)
from ._batch import JsonResults, Scheduler, Workers, run_batch
from .publish_cmds import AssetsTo, PublishTo, S3Endpoint

if TYPE_CHECKING:
    import pystac


_CATALOG_HELP = (
    "earth-search (default), planetary-computer, cdse, sample (offline), a STAC API URL, a local "
    "catalog/item JSON file, or NAME=URL (a profile's rules on another API root)."
)
_ASSET_MAP_HELP = "Band→asset keys for other catalogs: earth-search, esa, cdse, or B04=red,B08=nir,…"


Out = Annotated[Path, typer.Option("--out", "-o", help="Folder for the output COGs.")]
IncludeTen = Annotated[bool, typer.Option("--include-10m", help="Also write the 4 native 10 m bands.")]


def _table(items: Sequence[pystac.Item]) -> Any:
    from rich.table import Table

    from ..catalog.assets import processing_baseline

    t = Table(title=f"{len(items)} item(s)")
    for col in ("id", "date", "cloud %", "tile", "baseline"):
        t.add_column(col, justify="right" if col == "cloud %" else "left", no_wrap=True)
    t.add_column("collection", overflow="fold")
    for it in items:
        p = it.properties
        when = it.datetime or it.common_metadata.start_datetime
        cc = p.get("eo:cloud_cover")
        tile = p.get("grid:code") or p.get("s2:mgrs_tile") or p.get("mgrs:grid_square") or ""
        t.add_row(it.id, when.strftime("%Y-%m-%d") if when else "", "" if cc is None else f"{float(cc):.1f}",
                  str(tile).removeprefix("MGRS-"), processing_baseline(p) or "", it.collection_id or "")
    return t


def _intersects(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    from ..errors import CatalogError

    text = Path(value).read_text() if Path(value).is_file() else value
    try:
        geom = json.loads(text)
    except json.JSONDecodeError as err:
        raise CatalogError(f"--intersects takes a GeoJSON file or inline GeoJSON: {err}") from err
    if geom.get("type") == "Feature":
        geom = geom["geometry"]
    if geom.get("type") == "FeatureCollection":
        raise CatalogError("--intersects takes one geometry, not a FeatureCollection")
    return dict(geom)


@app.command()
def search(
    bbox: Annotated[str | None, typer.Option(help="Area W,S,E,N in degrees, e.g. -75.71,37.725,-75.69,37.745.")] = None,
    datetime: Annotated[str | None, typer.Option("--datetime", help="Date, month, year or interval, e.g. 2024-06-01/2024-06-30, 2024-06, 2024, ../2024-06-01.")] = None,
    max_cloud: Annotated[float | None, typer.Option(help="Largest eo:cloud_cover (percent).", min=0, max=100)] = None,
    limit: Annotated[int, typer.Option("--max-items", "--limit", help="Most items (as pystac-client's --max-items).", min=1)] = 10,
    collection: Annotated[list[str] | None, typer.Option(help="Collection id (repeatable); default: the catalog's L2A.")] = None,
    catalog: Annotated[str, typer.Option(help=_CATALOG_HELP, envvar="S2SR_CATALOG")] = "earth-search",
    intersects: Annotated[str | None, typer.Option(help="GeoJSON geometry (file or inline) instead of --bbox.")] = None,
    asset_map: Annotated[str | None, typer.Option(help=_ASSET_MAP_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Write an ItemCollection to stdout (table to stderr); "
                                          "with --run, one JSON result per item instead.")] = False,
    run: Annotated[bool, typer.Option("--run", help="Super-resolve the items found (the bbox only).")] = False,
    out: Out = Path("s2sr-output"),
    include_10m: IncludeTen = False,
    checkpoint: Checkpoint = None,
    onnx: Onnx = None,
    device: Device = "auto",
    precision: Precision = "fp32",
    build_engine: BuildEngine = False,
    tile: Tile = None,
    block: Block = 1536,
    batch: Batch = None,
    overwrite: Overwrite = False,
    backproject: Backproject = ITERATIONS,
    hybrid: Hybrid = True,
    publish: PublishTo = None,
    s3_endpoint: S3Endpoint = None,
    assets_to: AssetsTo = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
) -> None:
    """Find Sentinel-2 L2A items; with --run, super-resolve exactly the requested area."""
    from ..catalog.presets import resolve_catalog
    from ..catalog.search import (
        SearchParams,
        geometry_bbox,
        item_collection,
        parse_bbox,
        search_items,
    )
    from ..errors import CatalogError
    from ..pipeline import RunParams
    from ._console import err_console, out_console

    geom = _intersects(intersects)
    box = parse_bbox(bbox) if bbox else None
    if box is None and geom is None:
        raise CatalogError("give an area: --bbox W,S,E,N or --intersects GEOJSON")
    profile = resolve_catalog(catalog, asset_map=asset_map)
    params = SearchParams(bbox=box, intersects=geom, datetime=datetime, max_cloud=max_cloud,
                          limit=limit, collections=tuple(collection or ()))
    from ..errors import NoItemsFound

    try:
        with err_console.status(f"searching {profile.name} ({profile.url})"):
            items = search_items(profile, params)
    except NoItemsFound as err:
        if not as_json or run:
            raise
        err_console.print(f"no items: {err}", highlight=False, markup=False)  # as pystac-client: empty, exit 0
        typer.echo(json.dumps(item_collection([])))
        return
    (err_console if as_json or run else out_console).print(_table(items))
    if as_json and not run:
        typer.echo(json.dumps(item_collection(items)))
    if run:
        area = box or geometry_bbox(geom or {})
        run_batch(items, profile, RunParams(out_dir=out, bbox=area, include_10m=include_10m, tile=tile,
                                            block=block, batch=batch, overwrite=overwrite,
                                            backproject=backproject, hybrid=hybrid),
                  checkpoint=checkpoint, onnx=onnx, device=device, precision=precision, build_engine=build_engine,
                  workers=workers, scheduler=scheduler, as_json=as_json,
                  publish=publish, s3_endpoint=s3_endpoint, assets_to=assets_to)


@app.command("run")
def run_item(
    item: Annotated[str, typer.Argument(help="A STAC item: JSON file or http(s) URL.")],
    bbox: Annotated[str | None, typer.Option(help="Area W,S,E,N in degrees (default: the whole item).")] = None,
    catalog: Annotated[str | None, typer.Option(help="Catalog rules for the item (default: guessed from it).")] = None,
    asset_map: Annotated[str | None, typer.Option(help=_ASSET_MAP_HELP)] = None,
    out: Out = Path("s2sr-output"),
    include_10m: IncludeTen = False,
    checkpoint: Checkpoint = None,
    onnx: Onnx = None,
    device: Device = "auto",
    precision: Precision = "fp32",
    build_engine: BuildEngine = False,
    tile: Tile = None,
    block: Block = 1536,
    batch: Batch = None,
    overwrite: Overwrite = False,
    backproject: Backproject = ITERATIONS,
    hybrid: Hybrid = True,
    publish: PublishTo = None,
    s3_endpoint: S3Endpoint = None,
    assets_to: AssetsTo = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    as_json: JsonResults = False,
) -> None:
    """Super-resolve one STAC item (or the --bbox part of it) into a 10 m COG."""
    from dataclasses import replace

    from ..catalog.presets import parse_asset_map, profile_for_item, resolve_catalog
    from ..catalog.search import load_item, parse_bbox
    from ..pipeline import RunParams, plan_item

    it = load_item(item)
    if catalog:
        profile = resolve_catalog(catalog, asset_map=asset_map)
    else:
        profile = profile_for_item(it.to_dict(transform_hrefs=False))  # no link resolution (offline)
        if asset_map:
            profile = replace(profile, asset_keys=parse_asset_map(asset_map), collection_keys={})
    params = RunParams(out_dir=out, bbox=parse_bbox(bbox) if bbox else None, include_10m=include_10m,
                       tile=tile, block=block, batch=batch, overwrite=overwrite, backproject=backproject,
                       hybrid=hybrid)
    plan_item(it, profile, params)  # bbox, bands and credentials are checked before the models load
    run_batch([it], profile, params, checkpoint=checkpoint, onnx=onnx, device=device, precision=precision,
              build_engine=build_engine, workers=workers, scheduler=scheduler, as_json=as_json,
              publish=publish, s3_endpoint=s3_endpoint, assets_to=assets_to)
