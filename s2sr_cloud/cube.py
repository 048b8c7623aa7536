"""Datacubes of super-resolved items with odc-stac: across MGRS tiles and UTM zones.

Each item is super-resolved on its own native grid (its UTM zone, its MGRS tile); only the
10 m results are reprojected and mosaicked here, by odc-stac, into one lazy, Dask-chunked
:class:`xarray.Dataset` on one target grid (CRS, resolution, bbox), one time step per solar
day (``groupby="solar_day"``: the items of one pass over several tiles or zones become one
mosaic, the first valid pixel winning where they overlap).

:func:`load` takes what a user has: the published collection (a static catalog folder or
``catalog.json``/``collection.json``, one in an object store, or a STAC API root plus the
collection id), pystac items, or the results of a run that was not published
(:class:`~s2sr_cloud.pipeline.SceneResult`, :class:`~s2sr_cloud.batch.ItemOutcome`, output
COG paths with their ``.s2sr.json`` records), for which the items are built in memory.
Data variables are named by ESA band id (``B05`` …) plus ``SCL`` where the items carry the
scene classification; values are the stored DN (reflectance = DN × 0.0001, nodata 0)
unless ``reflectance=True``; ``mask_clouds=True`` blanks cloud and cloud-shadow pixels by SCL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .io.scl import CLOUD_CLASSES, SCL
from .publish.item import DEFAULT_COLLECTION, REFLECTANCE, REFLECTANCE_SCALE

if TYPE_CHECKING:
    import pystac
    import xarray

log = logging.getLogger(__name__)

#: Default Dask chunk of the cube (10 m pixels per side).
CHUNK = 2048

BBox = tuple[float, float, float, float]


def _from_catalog(path: str, endpoint: str | None) -> list[pystac.Item]:
    import pystac
    from pystac.errors import STACError

    from .errors import InputError, S2SRError
    from .publish.stores import OBJECT_SCHEMES, object_stac_io

    try:
        if path.split("://", 1)[0] in OBJECT_SCHEMES:
            cat = pystac.read_file(path, stac_io=object_stac_io(endpoint))
        else:
            p = Path(path).expanduser()
            if p.is_dir():
                p = p / ("catalog.json" if (p / "catalog.json").exists() else "collection.json")
            cat = pystac.read_file(str(p))
    except S2SRError:
        raise
    except (OSError, ValueError, STACError, KeyError, TypeError) as err:
        raise InputError(
            f"cannot read a STAC catalog at {path} ({type(err).__name__}: {str(err)[:200]}); expected a folder "
            "with catalog.json or collection.json, such a file, a STAC API root, or output COGs of a run"
        ) from err
    if isinstance(cat, pystac.Item):
        return [cat]
    items = list(cat.get_items(recursive=True)) if isinstance(cat, pystac.Catalog) else []
    for it in items:
        it.make_asset_hrefs_absolute()
    return items


def _from_api(url: str, collection: str | None, bbox: BBox | None, datetime: str | None) -> list[pystac.Item]:
    from pystac_client import Client

    search = Client.open(url).search(collections=[collection or DEFAULT_COLLECTION], bbox=bbox, datetime=datetime)
    return list(search.items())


def _result_item(result: Any) -> pystac.Item:
    """An in-memory item for a run's result (COG and SCL by absolute path; no preview, no hashing)."""
    from .publish.assets import prepare_assets
    from .publish.item import build_item
    from .publish.record import load_scene, scene_from_result

    if hasattr(result, "result") and hasattr(result, "status"):  # a batch ItemOutcome
        if result.result is not None:
            result = result.result
        elif result.path is not None and Path(result.path).is_file():  # skipped: done before, read its record
            result = Path(result.path)
        else:
            raise ValueError(f"item {result.item_id} has no output ({result.status}: {result.error})")
    scene = scene_from_result(result) if hasattr(result, "consistency_rmse") else load_scene(Path(result))
    assets = prepare_assets(scene, Path("."), preview=False, checksums=False)
    return build_item(scene, assets, "s2sr-run", href_of=lambda a: str(Path(a.path).resolve()))


def items_of(
    source: Any, *, collection: str | None = None, bbox: BBox | None = None, datetime: str | None = None,
    endpoint: str | None = None,
) -> list[pystac.Item]:
    """The super-resolved items of ``source`` (see :func:`load`)."""
    import pystac

    if isinstance(source, (str, Path)):
        s = str(source)
        if s.startswith(("http://", "https://")) and not s.split("?", 1)[0].endswith(".json"):
            return _from_api(s, collection, bbox, datetime)
        if s.endswith(".tif"):
            return [_result_item(Path(s))]
        return _from_catalog(s, endpoint)
    out: list[pystac.Item] = []
    for x in source:
        if isinstance(x, pystac.Item):
            out.append(x)
        elif isinstance(x, Mapping):
            out.append(pystac.Item.from_dict(dict(x)))
        else:
            out.append(_result_item(x))
    return out


def _bands_of(items: Sequence[pystac.Item]) -> list[str]:
    names: list[str] = []
    for it in items:
        a = it.assets.get(REFLECTANCE)
        for b in (a.extra_fields.get("eo:bands", []) if a is not None else []):
            if b.get("name") and b["name"] not in names:
                names.append(b["name"])
    if any(SCL in it.assets for it in items):
        names.append(SCL)
    return names


def load(
    source: Any,
    *,
    bands: Sequence[str] | None = None,
    crs: str | None = None,
    resolution: float = 10.0,
    bbox: BBox | None = None,
    geobox: Any = None,
    groupby: str | None = "solar_day",
    chunks: Mapping[str, int] | None = None,
    resampling: str = "nearest",
    mask_clouds: bool = False,
    cloud_classes: Iterable[int] = CLOUD_CLASSES,
    reflectance: bool = False,
    collection: str | None = None,
    datetime: str | None = None,
    endpoint: str | None = None,
) -> xarray.Dataset:
    """A lazy, Dask-chunked datacube of super-resolved items (odc-stac).

    Args:
        source: the published collection (folder / ``catalog.json`` / ``collection.json``, the same
            in ``s3://``/``gs://``/``az://``, or a STAC API root with ``collection``), pystac items or
            item dicts, or a run's results (``SceneResult``, ``ItemOutcome``, output COG paths).
        bands: band ids to load (default: every band of the items, and ``SCL`` when present).
        crs: target CRS (default: the first item's, e.g. its UTM zone); items in other CRSs are
            reprojected into it.
        resolution: target pixel size in ``crs`` units (10 m by default).
        bbox: lon/lat W, S, E, N to load (also filters a STAC API search); default: all items.
        geobox: an ``odc.geo.GeoBox`` instead of ``crs``/``resolution``/``bbox`` (exact pixel grid).
        groupby: ``solar_day`` (default: one mosaic per day across tiles and zones), ``time``, or
            None (one time step per item).
        chunks: Dask chunks, default ``{"x": 2048, "y": 2048}`` (lazy; nothing is read before ``.compute()``).
        resampling: reflectance resampling when reprojecting (``nearest`` keeps the DN; ``bilinear``,
            ``cubic`` …); SCL is always nearest.
        mask_clouds: blank pixels whose SCL is in ``cloud_classes`` (0 in DN, NaN with ``reflectance``).
        cloud_classes: SCL classes to mask (default: cloud shadows 3, cloud medium/high probability
            8/9, thin cirrus 10).
        reflectance: float32 reflectance (DN × 0.0001 + offset, NaN at nodata) instead of DN.
        collection, datetime: STAC API search of ``source`` (collection id, RFC 3339 interval).
        endpoint: object store endpoint of an ``s3://``/``gs://``/``az://`` catalog.

    Returns:
        ``xarray.Dataset`` with dims ``(time, y, x)``, one variable per band.
    """
    from .errors import require

    require("odc.stac", "cube")
    import odc.stac

    items = items_of(source, collection=collection, bbox=bbox, datetime=datetime, endpoint=endpoint)
    if not items:
        from .errors import NoItemsFound

        raise NoItemsFound(f"no super-resolved items in {source!r}")
    names = list(bands) if bands is not None else _bands_of(items)
    if mask_clouds and SCL not in names:
        names.append(SCL)
    kw: dict[str, Any] = {"geobox": geobox} if geobox is not None else {
        "crs": crs or _crs_of(items[0]), "resolution": resolution, **({"bbox": bbox} if bbox else {})}
    ds = odc.stac.load(
        items, bands=names, groupby=groupby, chunks=dict(chunks or {"x": CHUNK, "y": CHUNK}),
        resampling={SCL: "nearest", "*": resampling}, **kw,
    )
    if mask_clouds:
        ds = _mask(ds, tuple(cloud_classes))
    if reflectance:
        ds = _to_reflectance(ds, items)
    return ds


def _crs_of(item: pystac.Item) -> str:
    code = item.properties.get("proj:code") or (f"EPSG:{item.properties['proj:epsg']}"
                                                 if item.properties.get("proj:epsg") else None)
    if not code:
        raise ValueError(f"item {item.id} has no proj:code: pass crs=")
    return str(code)


def _mask(ds: xarray.Dataset, classes: tuple[int, ...]) -> xarray.Dataset:
    """Reflectance bands set to nodata (0) where SCL is one of ``classes``; SCL kept."""
    cloudy = ds[SCL].isin(list(classes))
    for name in ds.data_vars:
        if name != SCL:
            ds[name] = ds[name].where(~cloudy, 0).astype(ds[name].dtype)
    return ds


def _to_reflectance(ds: xarray.Dataset, items: Sequence[pystac.Item]) -> xarray.Dataset:
    """DN → float32 reflectance (NaN at nodata); the offset from the items' ``s2sr:dn_offset``."""
    import numpy as np

    offsets = {int(it.properties.get("s2sr:dn_offset", 0) or 0) for it in items}
    if len(offsets) != 1:
        raise ValueError(f"items with different DN offsets {sorted(offsets)}: load them separately")
    offset = -offsets.pop() * REFLECTANCE_SCALE
    for name in ds.data_vars:
        if name != SCL:
            v = ds[name]
            ds[name] = (v.where(v != 0) * REFLECTANCE_SCALE + offset).astype(np.float32)
            ds[name].attrs.update(units="1", long_name=f"{name} reflectance", nodata=np.nan)
    return ds


def write(ds: xarray.Dataset, path: str | Path, *, time: str | None = None, overwrite: bool = False) -> Path:
    """Write a cube: ``.zarr`` (every time step, chunk by chunk through Dask) or ``.tif`` (one time
    step: a COG with one band per variable, GDAL scale/offset and nodata), atomically.

    ``time`` picks the day of a ``.tif`` (``YYYY-MM-DD``) when the cube has several.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        return _write_zarr(ds, path, overwrite)
    if suffix in (".tif", ".tiff"):
        return _write_tif(_one_time(ds, time), path, overwrite)
    from .errors import InputError

    raise InputError(f"cannot write a cube to {path.name}: name it *.zarr or *.tif")


def _one_time(ds: xarray.Dataset, time: str | None) -> xarray.Dataset:
    from .errors import InputError

    if "time" not in ds.dims:
        return ds
    if time is not None:
        sel = ds.sel(time=time)
        if "time" in sel.dims:
            if sel.sizes["time"] != 1:
                raise InputError(f"{sel.sizes['time']} time steps on {time}: pass a single day")
            sel = sel.isel(time=0)
        return sel
    if ds.sizes["time"] != 1:
        days = ", ".join(str(t)[:10] for t in ds["time"].values)
        raise InputError(f"the cube has {ds.sizes['time']} days ({days}): pass --time DAY, or write a .zarr")
    return ds.isel(time=0)


def _write_tif(ds: xarray.Dataset, path: Path, overwrite: bool) -> Path:
    import numpy as np
    from rasterio.transform import Affine

    from .io.cog import CogWriter

    names = [str(n) for n in ds.data_vars]
    geobox = ds.odc.geobox
    dtype = "float32" if any(ds[n].dtype.kind == "f" for n in names) else "uint16"
    scales = [1.0 if n == SCL or dtype == "float32" else REFLECTANCE_SCALE for n in names]
    h, w = geobox.shape
    writer = CogWriter(path, width=w, height=h, count=len(names), crs=str(geobox.crs), dtype=dtype,
                       transform=Affine(*tuple(geobox.transform)[:6]), nodata=float("nan") if dtype == "float32" else 0,
                       descriptions=names, scales=scales, offsets=[0.0] * len(names), overwrite=overwrite,
                       band_tags=[{"band": n} for n in names], tags={"S2SR_MOSAIC": "odc-stac"})
    from .grid import Window

    with writer:
        for r in range(0, h, CHUNK):
            rows = slice(r, min(r + CHUNK, h))
            block = np.stack([np.asarray(ds[n].isel(y=rows).values) for n in names])
            writer.write(block, Window(r, 0, block.shape[1], w))
    return path


def _write_zarr(ds: xarray.Dataset, path: Path, overwrite: bool) -> Path:
    import os
    import shutil
    import tempfile

    from .errors import OutputExists

    if path.exists() and not overwrite:
        raise OutputExists(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        out = ds.copy()
        for name in out.variables:
            out[name].encoding = {}
        out.to_zarr(tmp, mode="w", consolidated=True)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
