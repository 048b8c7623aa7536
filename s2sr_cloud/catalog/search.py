"""Search a catalog (STAC API or local static catalog) for Sentinel-2 items.

Results are checked client-side whatever the server did: APIs may ignore a filter
(Earth Search ignores CQL2 ``filter``; it honours the ``query`` extension, used here for
cloud cover) or may not page the way they advertise.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CatalogError, CatalogHTTPError, NoItemsFound

if TYPE_CHECKING:
    import pystac

    from .presets import CatalogProfile

log = logging.getLogger(__name__)

BBox = tuple[float, float, float, float]
#: Most items scanned for one search when client-side checks drop many.
SCAN_FACTOR = 20
HTTP_TIMEOUT_S = 30


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchParams:
    """What to search for."""

    bbox: BBox | None = None
    """West, south, east, north in degrees (EPSG:4326)."""
    intersects: dict[str, Any] | None = None
    """A GeoJSON geometry (EPSG:4326) instead of ``bbox``."""
    datetime: str | None = None
    """RFC 3339 instant or interval ``A/B`` (either end may be ``..``)."""
    max_cloud: float | None = None
    """Largest ``eo:cloud_cover`` in percent; items without it are dropped."""
    limit: int = 10
    """Most items returned."""
    collections: tuple[str, ...] = ()
    """Collections to search (empty: the profile's default)."""
    page_size: int | None = None
    """Items per API page (default: ``min(limit, 100)``)."""


def parse_bbox(text: str) -> BBox:
    """``"W,S,E,N"`` → tuple, checked."""
    try:
        w, s, e, n = (float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise CatalogError(f"bad bbox {text!r}; expected W,S,E,N in degrees, e.g. -75.70,37.73,-75.68,37.75") from None
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise CatalogError(f"bad bbox {text!r}: need west < east within ±180 and south < north within ±90")
    return (w, s, e, n)


def geometry_bbox(geom: dict[str, Any]) -> BBox:
    """Bounding box of a GeoJSON geometry (or Feature)."""
    from ..grid import geometry_bounds

    if geom.get("type") == "Feature":
        geom = geom["geometry"]
    return geometry_bounds(geom)


def _parse_instant(text: str, end: bool) -> datetime | None:
    """One end of an interval; a year, month or day stands for all of it (as in pystac-client)."""
    text = text.strip()
    if text in ("", ".."):
        return None
    if re.fullmatch(r"\d{4}", text):
        y = int(text)
        return datetime(y, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) if end else datetime(y, 1, 1, tzinfo=UTC)
    if re.fullmatch(r"\d{4}-\d{2}", text):
        y, m = (int(v) for v in text.split("-"))
        first = datetime(y, m, 1, tzinfo=UTC)
        if not end:
            return first
        nxt = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
        return nxt - timedelta(microseconds=1)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):  # a date: the whole day
        d = datetime.fromisoformat(text)
        return datetime.combine(d.date(), time.max if end else time.min, tzinfo=UTC)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_interval(text: str | None) -> tuple[datetime | None, datetime | None]:
    """``A/B``, ``A/..``, ``../B`` or one instant/date/month/year → (start, end), UTC.

    The forms pystac-client accepts: ``2023``, ``2023-06``, ``2023-06-01``,
    ``2023-06-01T10:00:00Z``, and intervals of them with ``/`` (``..`` or nothing = open).
    """
    if not text or not text.strip():
        return (None, None)
    hint = "expected e.g. 2023, 2023-06, 2023-06-01/2023-06-30, ../2023-06-01 or 2023-06-01T00:00:00Z/.."
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            if "/" in b:
                raise ValueError(text)
            start, end = _parse_instant(a, False), _parse_instant(b, True)
        else:
            start, end = _parse_instant(text, False), _parse_instant(text, True)
    except ValueError:
        raise CatalogError(f"bad datetime {text!r}; {hint}") from None
    if start is not None and end is not None and start > end:
        raise CatalogError(f"bad datetime {text!r}: the start is after the end")
    return (start, end)


def rfc3339_interval(text: str | None) -> str | None:
    """``text`` as the RFC 3339 interval a STAC API takes (``..`` for an open end)."""
    start, end = parse_interval(text)
    if start is None and end is None:
        return None

    def fmt(d: datetime | None) -> str:
        return ".." if d is None else d.astimezone(UTC).isoformat().replace("+00:00", "Z")

    return fmt(start) if start == end else f"{fmt(start)}/{fmt(end)}"


def _intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def accept(item: pystac.Item, params: SearchParams, collections: Sequence[str]) -> bool:
    """Client-side check of one item against the search (bbox, time, cloud, collection)."""
    if collections and item.collection_id not in collections:
        return False
    area = params.bbox or (geometry_bbox(params.intersects) if params.intersects else None)
    if area is not None and item.bbox is not None and not _intersects(area, item.bbox):
        return False
    start, end = parse_interval(params.datetime)
    when = item.datetime or item.common_metadata.start_datetime
    if when is not None and ((start and when < start) or (end and when > end)):
        return False
    if params.max_cloud is not None:
        cc = item.properties.get("eo:cloud_cover")
        if cc is None or float(cc) > params.max_cloud:
            return False
    return True


def _api_items(profile: CatalogProfile, params: SearchParams, collections: Sequence[str]) -> Iterator[pystac.Item]:
    from pystac_client import Client
    from pystac_client.conformance import ConformanceClasses
    from pystac_client.exceptions import APIError

    kw: dict[str, Any] = {"bbox": params.bbox, "intersects": params.intersects,
                          "datetime": rfc3339_interval(params.datetime),
                          "collections": list(collections) or None,
                          "limit": params.page_size or min(max(params.limit, 1), 100)}
    try:
        from ..http import stac_api_io

        client = Client.open(str(profile.url), timeout=HTTP_TIMEOUT_S, stac_io=stac_api_io(HTTP_TIMEOUT_S))
        if params.max_cloud is not None:
            if client.conforms_to(ConformanceClasses.QUERY):
                kw["query"] = {"eo:cloud_cover": {"lte": params.max_cloud}}
            elif client.conforms_to(ConformanceClasses.FILTER):
                kw["filter"] = {"op": "<=", "args": [{"property": "eo:cloud_cover"}, params.max_cloud]}
                kw["filter_lang"] = "cql2-json"
        yield from client.search(**kw).items()
    except APIError as err:
        status = getattr(err, "status_code", None)
        if status is None:
            raise CatalogError(f"cannot reach the STAC API {profile.url}: {str(err)[:300]}") from err
        raise CatalogHTTPError(f"{profile.url} answered HTTP {status}: {str(err)[:300]}", status) from err
    except OSError as err:  # requests' ConnectionError/Timeout are OSErrors
        raise CatalogError(f"cannot reach the STAC API {profile.url}: {err}") from err


def read_json(ref: str) -> dict[str, Any]:
    """A JSON document from a local path or an http(s) URL."""
    if ref.startswith(("http://", "https://")):
        import requests

        from ..http import session

        try:
            with session() as s:
                r = s.get(ref, timeout=HTTP_TIMEOUT_S)
        except requests.RequestException as err:
            raise CatalogError(f"cannot fetch {ref}: {err}") from err
        if r.status_code != 200:
            raise CatalogHTTPError(f"{ref} answered HTTP {r.status_code}", r.status_code)
        try:
            return dict(r.json())
        except ValueError as err:
            raise CatalogError(f"{ref} is not a JSON document: {err}") from err
    path = Path(ref).expanduser()
    if not path.is_file():
        raise CatalogError(f"{ref} is not a file or an http(s) URL")
    try:
        return dict(json.loads(path.read_text()))
    except json.JSONDecodeError as err:
        raise CatalogError(f"{ref} is not valid JSON: {err}") from err


def _static_items(path: str) -> Iterator[pystac.Item]:
    import pystac

    doc = read_json(path)
    kind = doc.get("type")
    where = path if path.startswith(("http://", "https://")) else str(Path(path).resolve())
    if kind == "Feature":
        item = pystac.Item.from_dict(doc)
        item.set_self_href(where)
        item.make_asset_hrefs_absolute()
        yield item
    elif kind == "FeatureCollection":
        for f in doc.get("features", []):
            yield pystac.Item.from_dict(f)
    elif kind in ("Catalog", "Collection"):
        cat = pystac.read_file(where)
        for item in cat.get_items(recursive=True):
            item.make_asset_hrefs_absolute()
            yield item
    else:
        raise CatalogError(f"{path} is not a STAC catalog, collection, item or item collection")


def search(profile: CatalogProfile, params: SearchParams) -> Iterator[pystac.Item]:
    """Yield up to ``params.limit`` items that pass :func:`accept`, lazily."""
    collections = params.collections or profile.collections
    source = _static_items(str(profile.url)) if profile.static else _api_items(profile, params, collections)
    found = 0
    for scanned, item in enumerate(source, start=1):
        if accept(item, params, collections):
            found += 1
            yield item
            if found >= params.limit:
                return
        elif not profile.static and scanned >= SCAN_FACTOR * params.limit:
            log.warning("stopped after %d items of which %d passed the checks", scanned, found)
            return


def search_items(profile: CatalogProfile, params: SearchParams) -> list[pystac.Item]:
    """All results of :func:`search`; raise :class:`NoItemsFound` when there are none."""
    items = list(search(profile, params))
    if not items:
        raise NoItemsFound(
            f"no item in {profile.name} ({profile.url}) matches bbox={params.bbox} "
            f"datetime={params.datetime} max_cloud={params.max_cloud} "
            f"collections={list(params.collections or profile.collections) or 'all'}; "
            "widen the area, the dates or --max-cloud"
        )
    return items


def load_item(ref: str) -> pystac.Item:
    """One item from a JSON file or URL (an item, or an item collection of one item)."""
    import pystac

    doc = read_json(ref)
    if doc.get("type") == "FeatureCollection":
        feats = doc.get("features", [])
        if len(feats) != 1:
            raise CatalogError(f"{ref} holds {len(feats)} items; `s2sr run` takes one (use `s2sr search --run`)")
        doc = feats[0]
    if doc.get("type") != "Feature":
        raise CatalogError(f"{ref} is not a STAC item")
    item = pystac.Item.from_dict(doc)
    remote = ref.startswith(("http://", "https://"))
    item.set_self_href(ref if remote else str(Path(ref).resolve()))
    item.make_asset_hrefs_absolute()  # relative asset hrefs resolve against the item's location
    return item


def item_collection(items: Sequence[pystac.Item]) -> dict[str, Any]:
    """An ItemCollection (GeoJSON FeatureCollection) of ``items`` for ``--json``."""
    return {"type": "FeatureCollection", "features": [i.to_dict(transform_hrefs=False) for i in items],
            "numberReturned": len(items)}
