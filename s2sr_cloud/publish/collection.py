"""Pure builders of a collection document: extents, summaries and item assets from item documents."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Copernicus Sentinel data legal notice (the licence of the source pixels).
LICENSE_URL = "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice"


def item_assets_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """The collection's ``item_assets``, taken from one item document: what every item's assets look like."""
    keep = ("type", "roles", "title", "gsd", "eo:bands", "raster:bands", "classification:classes")
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

    eo = [b for it in items[:1] for a in it["assets"].values() for b in a.get("eo:bands", [])]
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
            "grid with DSen2 by s2sr-cloud. One Cloud-Optimized GeoTIFF per item with the bands in "
            "eo:bands order (asset `reflectance`), the scene classification at 10 m (asset `SCL`, L2A "
            "items); each item links to its source item (derived_from). Contains modified Copernicus "
            "Sentinel data."
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
