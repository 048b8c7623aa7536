"""``s2sr mosaic``: a datacube of super-resolved items (odc-stac) written as a COG or Zarr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._options import PUBLISH

app = typer.Typer()


@app.command("mosaic", rich_help_panel=PUBLISH)
def mosaic_cmd(
    source: Annotated[str, typer.Argument(help="The published collection: a folder, catalog.json / collection.json "
                                               "(also s3://, gs://, az://), a STAC API root, or output COGs of a run.")],
    out: Annotated[Path, typer.Option("--out", help="cube.tif (one day: a COG, one band per variable) or cube.zarr.")],
    crs: Annotated[str | None, typer.Option(help="Target CRS, e.g. EPSG:32633 (default: the first item's).")] = None,
    resolution: Annotated[float, typer.Option(help="Target pixel size in CRS units.", min=0.0)] = 10.0,
    bbox: Annotated[str | None, typer.Option(help="Area W,S,E,N in degrees (default: all items).")] = None,
    bands: Annotated[str | None, typer.Option(help="Bands, e.g. B05,B8A,SCL (default: all).")] = None,
    groupby: Annotated[str, typer.Option(help="solar_day (one mosaic per day across tiles and UTM zones), time or none.")] = "solar_day",
    resampling: Annotated[str, typer.Option(help="Reflectance resampling: nearest, bilinear, cubic… (SCL: nearest).")] = "nearest",
    mask_clouds: Annotated[bool, typer.Option(help="Blank cloud and cloud-shadow pixels (SCL 3, 8, 9, 10).")] = False,
    time: Annotated[str | None, typer.Option(help="The day (YYYY-MM-DD) a .tif gets when the cube has several.")] = None,
    collection: Annotated[str | None, typer.Option("--collection-id", help="Collection of a STAC API source.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Object store endpoint of an s3://, gs://, az:// catalog.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Mosaic outputs across tiles and UTM zones into one cube.

    Super-resolved items (each on its own native grid) are reprojected onto one target grid
    with odc-stac, grouped by solar day, and written as a COG or a Zarr store.
    """
    from ..catalog.search import parse_bbox
    from ..cube import load, write
    from ..errors import InputError
    from ..fsutil import check_output
    from ._console import success

    if out.suffix.lower() not in (".tif", ".tiff", ".zarr"):
        raise InputError(f"cannot write a cube to {out.name}: name it *.tif or *.zarr")
    if out.suffix.lower() != ".zarr":
        check_output(out, overwrite=overwrite)
    elif out.exists() and not overwrite:
        from ..errors import OutputExists

        raise OutputExists(f"{out} exists; pass --overwrite to replace it")
    src: object = source
    if source.lower().endswith((".tif", ".tiff")) or "," in source:
        src = [Path(p) for p in source.split(",")]
    ds = load(src, crs=crs, resolution=resolution, bbox=parse_bbox(bbox) if bbox else None,
              bands=[b.strip() for b in bands.split(",")] if bands else None,
              groupby=None if groupby.lower() == "none" else groupby, resampling=resampling,
              mask_clouds=mask_clouds, collection=collection, endpoint=endpoint)
    path = write(ds, out, time=time, overwrite=overwrite)
    sizes = " x ".join(f"{ds.sizes[d]} {d}" for d in ("time", "y", "x") if d in ds.sizes)
    success(f"{path}: {len(ds.data_vars)} bands, {sizes}")
