"""The Python face of s2sr-cloud: the few calls a notebook needs.

``import s2sr_cloud as s2sr`` gives (loaded lazily, so ``import s2sr_cloud`` stays light):

* :func:`search` — Sentinel-2 items of a catalog (Earth Search, Planetary Computer, CDSE, any
  STAC API, a local catalog, the bundled offline ``sample``);
* :func:`process` — super-resolve items into 10 m COGs, in this process or on a Dask cluster
  (``client=``, ``workers=``, ``scheduler=``), optionally publishing them as STAC;
* :func:`load` — the results (or the published collection) as a lazy xarray datacube
  (:func:`s2sr_cloud.cube.load`, odc-stac);
* :func:`super_resolve` — NumPy arrays or xarray bands in memory → the 10 m bands.

See ``docs/python.md`` for a runnable example.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cube import load

if TYPE_CHECKING:
    import numpy as np
    import pystac
    import xarray

    from .batch import ItemOutcome, ModelSpec
    from .post import PostSteps
    from .sr import Runner

log = logging.getLogger(__name__)

BBox = tuple[float, float, float, float]

__all__ = ["load", "process", "search", "super_resolve"]


def search(
    bbox: BBox | None = None, *, catalog: str = "earth-search", datetime: str | None = None,
    max_cloud: float | None = None, limit: int = 10, collections: Sequence[str] = (),
    intersects: Mapping[str, Any] | None = None,
) -> list[pystac.Item]:
    """Sentinel-2 L2A items of ``catalog`` over ``bbox`` (lon/lat W, S, E, N).

    Args:
        bbox: area of interest (or ``intersects``, a GeoJSON geometry).
        catalog: ``earth-search`` (default), ``planetary-computer``, ``cdse``, ``sample`` (offline),
            a STAC API URL, or a local catalog/item JSON file.
        datetime: RFC 3339 instant or interval ``A/B``.
        max_cloud: largest ``eo:cloud_cover`` in percent.
        limit: most items returned.
        collections: collections to search (default: the catalog's L2A collection).

    Raises:
        NoItemsFound: nothing matches.
    """
    from .catalog.presets import resolve_catalog
    from .catalog.search import SearchParams, search_items

    params = SearchParams(bbox=bbox, intersects=dict(intersects) if intersects else None, datetime=datetime,
                          max_cloud=max_cloud, limit=limit, collections=tuple(collections))
    return search_items(resolve_catalog(catalog), params)


def process(
    items: Iterable[pystac.Item], *, out: str | Path, catalog: str | None = None, bbox: BBox | None = None,
    models: ModelSpec | None = None, device: str = "auto", precision: str = "fp32",
    client: Any = None, workers: int | None = None, scheduler: str | None = None,
    publish: str | None = None, publish_endpoint: str | None = None, assets_to: str | None = None,
    overwrite: bool = False, include_10m: bool = False, raise_errors: bool = True,
) -> list[ItemOutcome]:
    """Super-resolve ``items`` into 10 m COGs under ``out`` (:func:`s2sr_cloud.batch.process_items`).

    Args:
        items: STAC items (from :func:`search`).
        out: output folder (one ``<id>-s2sr.tif`` per item, its ``.s2sr.json`` record and, for
            L2A items, ``<id>-s2sr_SCL.tif``).
        catalog: the catalog the items come from (its asset and radiometry rules; default: guessed
            from the first item).
        bbox: produce only this lon/lat area of each item.
        models: which weights and backend (default: the shipped weights on ``device``/``precision``).
        client, workers, scheduler: run on a Dask cluster (a ``distributed.Client``, a new local
            cluster of N worker processes, or a scheduler address); default: in this process.
        publish: publish the results as STAC (folder, ``s3://``/``gs://``/``az://`` prefix, or a STAC
            API root with ``assets_to``); the collection is updated once, at the end.
        publish_endpoint: object store endpoint (MinIO, Azurite, a GCS emulator).
        overwrite: re-do finished items.
        include_10m: also write the four native 10 m bands.
        raise_errors: raise when an item failed (else read each outcome's ``status``/``error``).

    Returns:
        One :class:`~s2sr_cloud.batch.ItemOutcome` per item (``path``, ``status``, ``result``).
    """
    from .batch import ModelSpec, process_items, raise_for_failures
    from .catalog.presets import profile_for_item, resolve_catalog
    from .pipeline import RunParams

    items = list(items)
    if catalog is not None:
        profile = resolve_catalog(catalog)
    else:
        profile = profile_for_item(items[0].to_dict()) if items else resolve_catalog("sample")
    params = RunParams(out_dir=Path(out), bbox=bbox, overwrite=overwrite, include_10m=include_10m)
    spec = models or ModelSpec.of(device=device, precision=precision)
    target = None
    if publish:
        from .publish import open_target

        target = open_target(publish, endpoint=publish_endpoint, assets_to=assets_to)
    finished: list[Any] = []
    outcomes = process_items(items, profile, params, models=spec, client=client, workers=workers,
                             scheduler=scheduler, publish=finished.append if target is not None else None)
    if target is not None and finished:
        from .publish.record import scene_from_result

        target.publish_many([scene_from_result(r) for r in finished], overwrite=overwrite)
    if raise_errors:
        raise_for_failures(outcomes)
    return outcomes


def _runners(runners: Mapping[str, Runner] | None, device: str, precision: str) -> Mapping[str, Runner]:
    if runners is not None:
        return runners
    from .infer import load_runners

    return load_runners(("net20", "net60"), device=device, precision=precision)


def super_resolve(
    scene: Any, b20: np.ndarray | None = None, b60: np.ndarray | None = None, *,
    runners: Mapping[str, Runner] | None = None, device: str = "auto", precision: str = "fp32",
    post: PostSteps | None = None,
) -> Any:
    """Super-resolve a scene held in memory.

    Args:
        scene: either ``b10`` — a NumPy array (4, H, W) of B02 B03 B04 B08 — with ``b20``
            (6, H/2, W/2: B05 B06 B07 B8A B11 B12) and ``b60`` (2, H/6, W/6: B01 B09); or a mapping
            ``{band id: xarray.DataArray}`` of the 12 bands at their native resolutions (2-D, e.g.
            from ``rioxarray.open_rasterio(...).squeeze()``), or an ``xarray.Dataset`` of the 10 m
            bands where the others are variables on their own ``x``/``y``. Values: DN =
            reflectance × 10000 on the pre-04.00 scale, 0 = nodata.
        b20, b60: the other two groups when ``scene`` is ``b10``.
        runners: loaded runners (default: the shipped weights on ``device``/``precision``).
        post: the post-steps (default: the product's, as ``s2sr superres``; e.g.
            ``PostSteps(hybrid=False)``, or ``s2sr_cloud.post.NONE`` for the raw nets).

    Returns:
        For arrays: ``{"b20": (6, H, W), "b60": (2, H, W)}`` uint16 DN on the 10 m grid. For xarray:
        an ``xarray.Dataset`` of the 8 super-resolved bands (B01 B05 B06 B07 B8A B09 B11 B12) on the
        10 m bands' coordinates (and their ``spatial_ref``, if any).
    """
    from .post import DEFAULT

    post = DEFAULT if post is None else post
    if b20 is not None or b60 is not None:
        return _arrays(scene, b20, b60, _runners(runners, device, precision), post)
    return _xarray(scene, _runners(runners, device, precision), post)


def _arrays(b10: Any, b20: Any, b60: Any, runners: Mapping[str, Runner], post: PostSteps) -> dict[str, np.ndarray]:
    import numpy as np

    from .dn import check_dn
    from .grid import Window
    from .sinks import ArraySink
    from .sr import ArraySource
    from .stream import run_blocks

    arrays = {"b10": np.asarray(b10), "b20": np.asarray(b20), "b60": np.asarray(b60)}
    for k, a in arrays.items():
        check_dn(a, k)
    src = ArraySource(arrays["b10"], arrays["b20"], arrays["b60"])
    sink = ArraySink(Window(0, 0, *src.shape10), runners)
    run_blocks(src, runners, sink, post=post)
    return {{"net20": "b20", "net60": "b60"}[n]: a for n, a in sink.arrays.items()}


def _xarray(scene: Any, runners: Mapping[str, Runner], post: PostSteps) -> xarray.Dataset:
    import numpy as np
    import xarray as xr

    from .bands import GROUPS, SR_BANDS, net_spec

    bands = {str(k): v for k, v in (scene.data_vars.items() if isinstance(scene, xr.Dataset) else scene.items())}
    missing = [b for g in GROUPS.values() for b in g if b not in bands]
    if missing:
        raise ValueError(f"the scene lacks bands {', '.join(missing)}; expected variables B01-B12 and B8A")
    stack = {res: np.stack([np.asarray(bands[b]).squeeze() for b in GROUPS[res]]) for res in (10, 20, 60)}
    out = _arrays(stack[10], stack[20], stack[60], runners, post)
    ref = bands["B02"].squeeze()
    per_band = {b: a for n, key in (("net20", "b20"), ("net60", "b60")) for b, a in zip(net_spec(n).outputs, out[key], strict=True)}
    coords = {k: v for k, v in ref.coords.items() if set(v.dims) <= set(ref.dims)}
    ds = xr.Dataset({b: (ref.dims, per_band[b]) for b in SR_BANDS}, coords=coords)
    for b in SR_BANDS:
        ds[b].attrs.update(nodata=0, scale_factor=0.0001, add_offset=0.0, long_name=f"{b} super-resolved to 10 m")
    return ds
