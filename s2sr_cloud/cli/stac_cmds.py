"""STAC commands: ``search`` (optionally ``--run``) and ``run`` (one item)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..options import parse_path_arg
from ..settings import CATALOG_VAR
from . import _batch, _options
from ._batch import run_batch
from ._options import (
    BACKPROJECT_DEFAULT,
    FIND,
    O_OUTPUT,
    O_PUBLISH,
    O_SCALE,
    Backproject,
    Batch,
    Block,
    BuildEngine,
    Checkpoint,
    Device,
    Hybrid,
    Onnx,
    Overwrite,
    Precision,
    Tile,
    in_panel,
    parse_intersects,
)

if TYPE_CHECKING:
    import pystac

app = typer.Typer()

_CATALOG_HELP = (
    "earth-search (default), planetary-computer, cdse, sample (offline), a STAC API URL, a local "
    "catalog/item JSON file, or NAME=URL (a profile's rules on another API root)."
)
_ASSET_MAP_HELP = "Band→asset keys for other catalogs: earth-search, esa, cdse, or B04=red,B08=nir,…"

def _parse_out_dir(value: object) -> Path:
    return Path(parse_path_arg(value, "--out"))


Out = Annotated[Path, typer.Option("--out", "-o", metavar="DIR", rich_help_panel=O_OUTPUT, parser=_parse_out_dir,
                                   help="Folder for the output COGs.")]
IncludeTen = Annotated[bool, typer.Option("--include-10m", rich_help_panel=O_OUTPUT,
                                          help="Also write the 4 native 10 m bands.")]
AssetMap = Annotated[str | None, typer.Option(metavar="MAP", help=_ASSET_MAP_HELP)]
PublishTo = in_panel(_options.PublishTo, O_PUBLISH, metavar="TARGET")
S3Endpoint = in_panel(_options.S3Endpoint, O_PUBLISH, metavar="URL")
AssetsTo = in_panel(_options.AssetsTo, O_PUBLISH, metavar="TARGET")
Workers = in_panel(_batch.Workers, O_SCALE, metavar="N")
Scheduler = in_panel(_batch.Scheduler, O_SCALE, metavar="URL")
JsonResults = _batch.JsonResults


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


@app.command(rich_help_panel=FIND)
def search(
    bbox: Annotated[str | None, typer.Option(
        metavar="W,S,E,N", help="Area in degrees, e.g. -75.71,37.725,-75.69,37.745.")] = None,
    datetime: Annotated[str | None, typer.Option(
        "--datetime", metavar="WHEN",
        help="Date, month, year or interval, e.g. 2024-06-01/2024-06-30, 2024-06, 2024, ../2024-06-01.")] = None,
    max_cloud: Annotated[float | None, typer.Option(
        min=0, max=100, metavar="PCT", help="Largest eo:cloud_cover (percent).")] = None,
    limit: Annotated[int, typer.Option(
        "--max-items", "--limit", min=1, metavar="N", help="Most items (as pystac-client's --max-items).")] = 10,
    collection: Annotated[list[str] | None, typer.Option(
        metavar="ID", help="Collection id (repeatable); default: the catalog's L2A.")] = None,
    catalog: Annotated[str, typer.Option(metavar="CATALOG", help=_CATALOG_HELP, envvar=CATALOG_VAR)] = "earth-search",
    intersects: Annotated[str | None, typer.Option(
        metavar="GEOJSON", help="GeoJSON geometry (file or inline) instead of --bbox.")] = None,
    asset_map: AssetMap = None,
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
    backproject: Backproject = BACKPROJECT_DEFAULT,
    hybrid: Hybrid = True,
    publish: PublishTo = None,
    s3_endpoint: S3Endpoint = None,
    assets_to: AssetsTo = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
) -> None:
    """Find Sentinel-2 L2A items; with --run, super-resolve the area.

    With --run, exactly the requested area is read and written, not the whole items.
    """
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
    from ..post import product as post_product
    from ._console import err_console, out_console

    geom = parse_intersects(intersects)
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
                                            post=post_product(backproject, hybrid)),
                  checkpoint=checkpoint, onnx=onnx, device=device, precision=precision, build_engine=build_engine,
                  workers=workers, scheduler=scheduler, as_json=as_json,
                  publish=publish, s3_endpoint=s3_endpoint, assets_to=assets_to)


@app.command("run", rich_help_panel=FIND)
def run_item(
    item: Annotated[str, typer.Argument(help="A STAC item: JSON file or http(s) URL.")],
    bbox: Annotated[str | None, typer.Option(
        metavar="W,S,E,N", help="Area in degrees (default: the whole item).")] = None,
    catalog: Annotated[str | None, typer.Option(
        metavar="CATALOG", help="Catalog rules for the item (default: guessed from it).")] = None,
    asset_map: AssetMap = None,
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
    backproject: Backproject = BACKPROJECT_DEFAULT,
    hybrid: Hybrid = True,
    publish: PublishTo = None,
    s3_endpoint: S3Endpoint = None,
    assets_to: AssetsTo = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    as_json: JsonResults = False,
) -> None:
    """Super-resolve one STAC item (or its --bbox) to a 10 m COG."""
    from dataclasses import replace

    from ..catalog.presets import parse_asset_map, profile_for_item, resolve_catalog
    from ..catalog.search import load_item, parse_bbox
    from ..pipeline import RunParams
    from ..post import product as post_product

    it = load_item(item)
    if catalog:
        profile = resolve_catalog(catalog, asset_map=asset_map)
    else:
        profile = profile_for_item(it.to_dict(transform_hrefs=False))  # no link resolution (offline)
        if asset_map:
            profile = replace(profile, asset_keys=parse_asset_map(asset_map), collection_keys={})
    params = RunParams(out_dir=out, bbox=parse_bbox(bbox) if bbox else None, include_10m=include_10m,
                       tile=tile, block=block, batch=batch, overwrite=overwrite,
                       post=post_product(backproject, hybrid))
    run_batch([it], profile, params, checkpoint=checkpoint, onnx=onnx, device=device, precision=precision,
              build_engine=build_engine, workers=workers, scheduler=scheduler, as_json=as_json,
              publish=publish, s3_endpoint=s3_endpoint, assets_to=assets_to)
