"""Pure builders of the published STAC documents: the derived item and its collection.

Input is a :class:`ProcessedScene` (what the pipeline knows about one result) plus the
:class:`LocalAsset` files prepared for it (one single-band COG per band and a preview
PNG, see :mod:`s2sr_cloud.publish.assets`). Nothing here touches the network or the disk:
asset hrefs are relative file names (``./<file>``); each target decides where the files
go and rewrites nothing, because every target keeps items and their files side by side.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bands import BANDS, NODATA

if TYPE_CHECKING:
    import pystac

STAC_EXTENSIONS: dict[str, str] = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.0.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
}
#: Copernicus Sentinel data legal notice (the licence of the source pixels).
LICENSE_URL = "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice"
DEFAULT_COLLECTION = "sentinel-2-l2a-s2sr"
ITEM_SUFFIX = "-s2sr"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
PNG_TYPE = "image/png"
#: Item properties copied from the source item when present.
CARRIED = ("platform", "constellation", "instruments", "eo:cloud_cover", "start_datetime", "end_datetime")


@dataclass(frozen=True, kw_only=True, slots=True)
class ProcessedScene:
    """One super-resolved result, as the pipeline records it."""

    source: pystac.Item
    """The source L2A item (its datetime, platform and links are carried over)."""
    cog: Path
    """The output COG: one band per entry of :attr:`bands`, 10 m grid."""
    crs: str
    """CRS of the output grid, e.g. ``EPSG:32633``."""
    transform: tuple[float, float, float, float, float, float]
    """Affine transform of the 10 m grid (rasterio order a, b, c, d, e, f)."""
    shape: tuple[int, int]
    """Grid size (height, width) in pixels."""
    bbox: tuple[float, float, float, float]
    """Bounds in :attr:`crs` (minx, miny, maxx, maxy)."""
    bbox_wgs84: tuple[float, float, float, float]
    """Bounds in longitude/latitude."""
    bands: tuple[str, ...]
    """ESA band ids of the COG bands, in band order (e.g. ``SR_BANDS``)."""
    models: Mapping[str, Mapping[str, Any]]
    """Per net (``net20``/``net60``): name, variant, onnx_sha256, checkpoint_sha256, precision."""
    backend: str
    """Inference backend used, e.g. ``onnxruntime-cpu``."""
    version: str
    """s2sr-cloud version that made the result."""
    nodata: int = NODATA
    """Nodata DN."""
    dtype: str = "uint16"
    """Data type of the COG."""
    dn_offset: int = 0
    """DN offset of the output: reflectance = (DN - dn_offset) / 10000 (0 or 1000)."""
    footprint: Mapping[str, Any] | None = None
    """GeoJSON footprint in WGS84; the :attr:`bbox_wgs84` rectangle when None."""
    created: datetime | None = None
    """When the result was made (``created`` property); omitted when None."""
    backproject: int | None = None
    """Back-projection iterations of the consistency post-step (-1: none; None: unknown)."""
    hybrid: bool | None = None
    """Whether the nets were blended with the local guided regression (None: unknown)."""
    consistency_rmse: Mapping[str, float] = field(default_factory=dict)
    """Per band, RMSE (DN) of the output degraded back against the observed band (empty: not measured)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalAsset:
    """A file to publish with an item."""

    key: str
    """Asset key in the item."""
    path: Path
    """Local file."""
    name: str
    """File name next to the item document (unique per content)."""
    media_type: str
    roles: tuple[str, ...]
    size: int
    """``file:size`` in bytes."""
    checksum: str
    """``file:checksum``: sha2-256 multihash, hex."""
    band: str | None = None
    """ESA band id for a data asset."""
    title: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def item_id_for(source_id: str) -> str:
    """Output item id: ``<source id>-s2sr``, safe as a file name and a URL path segment."""
    from ..fsutil import safe_name

    return f"{safe_name(source_id)}{ITEM_SUFFIX}"


def model_fingerprint(models: Mapping[str, Mapping[str, Any]]) -> str:
    """Short stable id of the models used: equal fingerprints mean the same weights."""
    keys = ("name", "variant", "onnx_sha256", "checkpoint_sha256", "precision")
    doc = {net: {k: models[net].get(k) for k in keys} for net in sorted(models)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def source_href(source: pystac.Item) -> str:
    """The source item's canonical href: its absolute http(s) ``self``, else ``canonical``, else ``self``.

    Credentials (user-info, signing tokens) are stripped.
    """
    from .redact import strip_credentials

    hrefs = {ln.rel: ln.get_href(transform_href=False) or "" for ln in source.links if ln.rel in ("self", "canonical")}
    for rel in ("self", "canonical"):
        if hrefs.get(rel, "").startswith(("http://", "https://")):
            return strip_credentials(hrefs[rel])
    href = hrefs.get("canonical") or hrefs.get("self") or source.get_self_href()
    if not href:
        raise ValueError(f"source item {source.id!r} has no self or canonical link")
    return strip_credentials(str(href)) if "://" in str(href) else str(href)


def band_meta(band: str, scene: ProcessedScene) -> tuple[dict[str, Any], dict[str, Any]]:
    """``eo:bands`` and ``raster:bands`` entries of one band."""
    b = BANDS[band]
    eo = {"name": b.name, "common_name": b.common_name, "center_wavelength": b.wavelength}
    raster = {
        "nodata": scene.nodata, "data_type": scene.dtype, "spatial_resolution": 10.0,
        "scale": 0.0001, "offset": round(-scene.dn_offset / 10000, 6),
    }
    return eo, raster


def _asset_dict(asset: LocalAsset, scene: ProcessedScene) -> dict[str, Any]:
    d: dict[str, Any] = {"href": f"./{asset.name}", "type": asset.media_type, "roles": list(asset.roles)}
    if asset.title:
        d["title"] = asset.title
    if asset.band is not None:
        eo, raster = band_meta(asset.band, scene)
        d.update({"gsd": 10.0, "eo:bands": [eo], "raster:bands": [raster]})
    d.update({"file:size": asset.size, "file:checksum": asset.checksum, **asset.extra})
    return d


def _lineage(scene: ProcessedScene) -> str:
    def one(net: str, m: Mapping[str, Any]) -> str:
        sha = m.get("onnx_sha256") or m.get("checkpoint_sha256")
        return f"{net} {m.get('name')} ({m.get('variant')}, {m.get('precision')}, sha256 {sha})"

    nets = "; ".join(one(net, m) for net, m in sorted(scene.models.items()))
    bands = " ".join(scene.bands)
    return f"DSen2 super-resolution of {bands} to 10 m by s2sr-cloud {scene.version} on {scene.backend}: {nets}"


def _software(scene: ProcessedScene) -> dict[str, str]:
    """``processing:software``: s2sr-cloud's version and each model's weights (``sha256:<hex>``)."""
    out = {"s2sr-cloud": scene.version}
    for net, m in sorted(scene.models.items()):
        sha = m.get("onnx_sha256") or m.get("checkpoint_sha256")
        if sha:
            out[str(m.get("name") or net)] = f"sha256:{sha}"
    return out


def _geometry(scene: ProcessedScene) -> dict[str, Any]:
    if scene.footprint is not None:
        return dict(scene.footprint)
    w, s, e, n = scene.bbox_wgs84
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def build_item(scene: ProcessedScene, assets: Sequence[LocalAsset], collection_id: str) -> pystac.Item:
    """The derived item: per-band COG assets, preview, proj/raster/eo/processing/file fields.

    Args:
        scene: the processed scene.
        assets: files prepared for it (hrefs become ``./<name>``).
        collection_id: id of the collection the item belongs to.

    Returns:
        A pystac Item without self/root/parent links (the target adds those).
    """
    import pystac

    src = scene.source
    props: dict[str, Any] = {k: src.properties[k] for k in CARRIED if k in src.properties}
    props.update({
        "gsd": 10.0,
        "proj:code": scene.crs, "proj:bbox": list(scene.bbox),
        "proj:shape": list(scene.shape), "proj:transform": list(scene.transform),
        "processing:level": "L2A",
        "processing:lineage": _lineage(scene),
        "processing:software": _software(scene),
        "s2sr:models": {net: dict(m) for net, m in sorted(scene.models.items())},
        "s2sr:backend": scene.backend,
        "s2sr:model_fingerprint": model_fingerprint(scene.models),
        "s2sr:source_id": src.id,
        "s2sr:dn_offset": scene.dn_offset,
    })
    if scene.backproject is not None:
        props["s2sr:backproject"] = scene.backproject
    if scene.hybrid is not None:
        props["s2sr:hybrid"] = scene.hybrid
    if scene.consistency_rmse:  # the per-output QA figure users filter on
        props["s2sr:consistency_rmse"] = {b: float(v) for b, v in scene.consistency_rmse.items()}
        props["s2sr:consistency_rmse_max"] = float(max(scene.consistency_rmse.values()))
    if scene.created is not None:
        props["created"] = pystac.utils.datetime_to_str(scene.created)
    item = pystac.Item(
        id=item_id_for(src.id), geometry=_geometry(scene), bbox=list(scene.bbox_wgs84),
        datetime=src.datetime, properties=props, collection=collection_id,
        stac_extensions=list(STAC_EXTENSIONS.values()),
    )
    item.add_link(pystac.Link("derived_from", source_href(src), media_type="application/geo+json",
                              title=f"Source item {src.id}"))
    item.add_link(pystac.Link("license", LICENSE_URL, title="Copernicus Sentinel data legal notice"))
    for a in assets:
        item.add_asset(a.key, pystac.Asset.from_dict(_asset_dict(a, scene)))
    return item


def item_assets_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """The collection's ``item_assets``, taken from one item document: what every item's assets look like."""
    keep = ("type", "roles", "title", "gsd", "eo:bands", "raster:bands")
    return {k: {f: a[f] for f in keep if f in a} for k, a in item["assets"].items()}


def _union_bbox(boxes: Iterable[Sequence[float]]) -> list[float]:
    bs = [list(b) for b in boxes]
    return [min(b[0] for b in bs), min(b[1] for b in bs), max(b[2] for b in bs), max(b[3] for b in bs)]


def _interval(items: Sequence[Mapping[str, Any]]) -> list[str | None]:
    times = []
    for it in items:
        p = it["properties"]
        times += [t for t in (p.get("start_datetime"), p.get("datetime"), p.get("end_datetime")) if t]
    return [min(times), max(times)] if times else [None, None]


def summaries_of(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collection summaries from item documents (platforms, CRS, bands, models)."""
    def distinct(key: str) -> list[Any]:
        vals: list[Any] = []
        for it in items:
            v = it["properties"].get(key)
            for x in v if isinstance(v, list) else [v]:
                if x is not None and x not in vals:
                    vals.append(x)
        return sorted(vals, key=str)

    eo = [a["eo:bands"][0] for it in items[:1] for a in it["assets"].values() if "eo:bands" in a]
    out: dict[str, Any] = {
        "platform": distinct("platform"), "constellation": distinct("constellation"),
        "instruments": distinct("instruments"), "gsd": [10.0], "proj:code": distinct("proj:code"),
        "eo:bands": eo, "s2sr:model_fingerprint": distinct("s2sr:model_fingerprint"),
    }
    qa = [it["properties"]["s2sr:consistency_rmse_max"] for it in items
          if it["properties"].get("s2sr:consistency_rmse_max") is not None]
    if qa:  # a range users can filter on
        out["s2sr:consistency_rmse_max"] = {"minimum": min(qa), "maximum": max(qa)}
    return out


def build_collection(
    collection_id: str,
    items: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """The collection document with extents and summaries recomputed from ``items``.

    Args:
        collection_id: collection id.
        items: the item documents (dicts) the collection holds; at least one.
        title, description: override the defaults.

    Returns:
        A STAC 1.1 collection as a dict, without links (the target adds them).
    """
    import pystac
    from pystac.utils import str_to_datetime

    if not items:
        raise ValueError("a collection needs at least one item to compute its extent")
    start, end = _interval(items)
    extent = pystac.Extent(
        pystac.SpatialExtent([_union_bbox(it["bbox"] for it in items)]),
        pystac.TemporalExtent([[str_to_datetime(start) if start else None, str_to_datetime(end) if end else None]]),
    )
    coll = pystac.Collection(
        id=collection_id,
        title=title or "Sentinel-2 L2A super-resolved to 10 m (DSen2, s2sr-cloud)",
        description=description or (
            "Sentinel-2 Level-2A bands B01, B05, B06, B07, B8A, B09, B11 and B12 super-resolved to the 10 m "
            "grid with DSen2 by s2sr-cloud. One single-band Cloud-Optimized GeoTIFF per band; each item "
            "links to its source item (derived_from). Contains modified Copernicus Sentinel data."
        ),
        extent=extent,
        license="other",
        providers=[
            pystac.Provider("European Space Agency / Copernicus", roles=[pystac.ProviderRole.PRODUCER,
                            pystac.ProviderRole.LICENSOR], url="https://sentinels.copernicus.eu/"),
            pystac.Provider("s2sr-cloud", description="DSen2 super-resolution", roles=[pystac.ProviderRole.PROCESSOR]),
        ],
        summaries=pystac.Summaries(summaries_of(items)),
    )
    coll.item_assets = {k: pystac.ItemAssetDefinition.create(
        title=v.get("title"), description=None, media_type=v.get("type"), roles=v.get("roles"),
        extra_fields={f: x for f, x in v.items() if f not in ("title", "type", "roles")},
    ) for k, v in item_assets_of(items[0]).items()}
    doc = coll.to_dict(include_self_link=False, transform_hrefs=False)
    doc["links"] = []
    # the extent keeps the items' own timestamp strings (pystac would re-format them)
    doc["extent"]["temporal"]["interval"] = [[start, end]]
    return doc


def collection_links(coll: dict[str, Any], item_hrefs: Iterable[str]) -> dict[str, Any]:
    """Return ``coll`` with a static catalog's relative links: root/parent, license, items."""
    links = [
        {"rel": "root", "href": "./catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "./catalog.json", "type": "application/json"},
        {"rel": "license", "href": LICENSE_URL, "title": "Copernicus Sentinel data legal notice"},
    ]
    links += [{"rel": "item", "href": h, "type": "application/geo+json"} for h in sorted(set(item_hrefs))]
    return {**coll, "links": links}


def root_catalog(collection: Mapping[str, Any]) -> dict[str, Any]:
    """The static catalog's root ``catalog.json``: one child, the collection."""
    import pystac

    cat = pystac.Catalog(id=f"{collection['id']}-catalog", description=f"Static STAC catalog of {collection['id']}",
                         title=collection.get("title"))
    doc = cat.to_dict(include_self_link=False, transform_hrefs=False)
    doc["links"] = [
        {"rel": "root", "href": "./catalog.json", "type": "application/json"},
        {"rel": "child", "href": "./collection.json", "type": "application/json"},
    ]
    return doc


def _is_range(v: Any) -> bool:
    return isinstance(v, Mapping) and set(v) == {"minimum", "maximum"}


def merge_collection(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with its extent and summaries widened to cover ``new`` (one more item)."""
    out = dict(current)
    boxes = [*current["extent"]["spatial"]["bbox"][:1], *new["extent"]["spatial"]["bbox"][:1]]
    ivals = [*current["extent"]["temporal"]["interval"][:1], *new["extent"]["temporal"]["interval"][:1]]
    starts = [i[0] for i in ivals if i[0]]
    ends = [i[1] for i in ivals if i[1]]
    out["extent"] = {
        "spatial": {"bbox": [_union_bbox(boxes)]},
        "temporal": {"interval": [[min(starts) if starts else None, max(ends) if ends else None]]},
    }
    summaries = dict(current.get("summaries") or {})
    for key, vals in (new.get("summaries") or {}).items():
        old = summaries.get(key)
        if _is_range(old) and _is_range(vals):
            summaries[key] = {"minimum": min(old["minimum"], vals["minimum"]),
                              "maximum": max(old["maximum"], vals["maximum"])}
        elif key == "eo:bands" or not isinstance(old, list):
            summaries[key] = old or vals
        else:
            summaries[key] = sorted({json.dumps(v, sort_keys=True) for v in old + vals}, key=str)
            summaries[key] = [json.loads(v) for v in summaries[key]]
    out["summaries"] = summaries
    out["item_assets"] = dict(new.get("item_assets") or current.get("item_assets") or {})
    return out
