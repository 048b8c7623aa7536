"""Catalog profiles: where a catalog lives, how its assets are keyed, how it is read.

One :class:`CatalogProfile` per known catalog, plus :func:`resolve_catalog` that turns
what a user types after ``--catalog`` (a profile name, a STAC API URL, or a local JSON
file) into a profile. Asset keys per band are fixed per profile (see
``docs/stac.md``); radiometric rules live in :mod:`s2sr_cloud.catalog.assets`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ..bands import BANDS
from ..errors import CatalogError

#: Earth Search v1 (``sentinel-2-l2a``, ``sentinel-2-c1-l2a``): common-name keys.
EARTH_SEARCH_KEYS: dict[str, str] = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red",
    "B05": "rededge1", "B06": "rededge2", "B07": "rededge3", "B08": "nir",
    "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22", "SCL": "scl",
}
#: Planetary Computer and Earth Search v0: ESA band ids as keys.
ESA_KEYS: dict[str, str] = {b: b for b in BANDS if b != "B10"} | {"SCL": "SCL"}
#: CDSE: ``<band>_<native res>m`` (the SAFE's native-resolution files).
CDSE_KEYS: dict[str, str] = {
    b: f"{b}_{BANDS[b].resolution}m" for b in BANDS if b != "B10"
} | {"SCL": "SCL_20m"}

ASSET_MAPS: dict[str, dict[str, str]] = {
    "earth-search": EARTH_SEARCH_KEYS,
    "esa": ESA_KEYS,
    "cdse": CDSE_KEYS,
}

OffsetRule = Literal["earth-search", "baseline", "raster-bands"]
Access = Literal["https", "cdse-s3"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CatalogProfile:
    """How to search one catalog and read its Sentinel-2 items."""

    name: str
    """Profile name (``earth-search``, ``planetary-computer``, ``cdse``, ``sample``, ``url``, ``file``)."""
    url: str | None
    """STAC API root URL, or a local catalog/collection/item JSON path for static catalogs."""
    static: bool = False
    """True for a local static catalog or JSON file searched client-side."""
    collections: tuple[str, ...] = ()
    """Collections searched by default (empty: all)."""
    asset_keys: Mapping[str, str] = field(default_factory=lambda: EARTH_SEARCH_KEYS)
    """Band id → asset key. Bands not found by key are looked up by common name."""
    collection_keys: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per-collection overrides of :attr:`asset_keys`."""
    signer: Literal["planetary-computer"] | None = None
    """Href signer applied at read time (and again before a signature expires)."""
    offset_rule: OffsetRule = "raster-bands"
    """How the baseline-04.00 BOA offset is found (see :func:`assets.boa_offset`)."""
    access: Access = "https"
    """``cdse-s3``: hrefs are ``s3://eodata`` JPEG 2000 that need CDSE S3 credentials."""

    def keys_for(self, collection: str | None) -> Mapping[str, str]:
        """Asset-key map for a collection of this catalog."""
        if collection and collection in self.collection_keys:
            return self.collection_keys[collection]
        return self.asset_keys


EARTH_SEARCH = CatalogProfile(
    name="earth-search",
    url="https://earth-search.aws.element84.com/v1",
    collections=("sentinel-2-l2a",),
    asset_keys=EARTH_SEARCH_KEYS,
    offset_rule="earth-search",
)
PLANETARY_COMPUTER = CatalogProfile(
    name="planetary-computer",
    url="https://planetarycomputer.microsoft.com/api/stac/v1",
    collections=("sentinel-2-l2a",),
    asset_keys=ESA_KEYS,
    signer="planetary-computer",
    offset_rule="baseline",
)
CDSE = CatalogProfile(
    name="cdse",
    url="https://stac.dataspace.copernicus.eu/v1",
    collections=("sentinel-2-l2a",),
    asset_keys=CDSE_KEYS,
    offset_rule="baseline",
    access="cdse-s3",
)
EARTH_SEARCH_V0 = CatalogProfile(
    name="earth-search-v0",
    url="https://earth-search.aws.element84.com/v0",
    collections=("sentinel-s2-l2a-cogs",),
    asset_keys=ESA_KEYS,
    offset_rule="earth-search",
)


def sample_catalog_path() -> Path:
    """The bundled offline sample catalog (``s2sr_cloud/sample/catalog.json``)."""
    return Path(__file__).parents[1] / "sample" / "catalog.json"


def _sample() -> CatalogProfile:
    return CatalogProfile(
        name="sample", url=str(sample_catalog_path()), static=True,
        asset_keys=EARTH_SEARCH_KEYS, offset_rule="raster-bands",
    )


PROFILES: dict[str, CatalogProfile] = {
    p.name: p for p in (EARTH_SEARCH, PLANETARY_COMPUTER, CDSE, EARTH_SEARCH_V0)
}
ALIASES: dict[str, str] = {"es": "earth-search", "pc": "planetary-computer", "mpc": "planetary-computer"}
PROFILE_NAMES: tuple[str, ...] = (*PROFILES, "sample")


def parse_asset_map(text: str) -> dict[str, str]:
    """``"earth-search"``/``"esa"``/``"cdse"`` or ``"B04=red,B08=nir,…"`` → band→key map."""
    text = text.strip()
    if text in ASSET_MAPS:
        return dict(ASSET_MAPS[text])
    from ..bands import normalise_band

    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        band, sep, key = part.partition("=")
        if not sep or not key:
            raise CatalogError(
                f"bad asset map entry {part!r}; expected BAND=KEY pairs like "
                f"'B04=red,B08=nir' or one of {', '.join(ASSET_MAPS)}"
            )
        b = band.strip().upper()
        out[b if b == "SCL" else normalise_band(b)] = key.strip()
    return out


def resolve_catalog(spec: str | None, *, asset_map: str | None = None) -> CatalogProfile:
    """Turn ``--catalog NAME|URL|PATH|NAME=URL`` (default ``earth-search``) into a profile.

    A URL that is the root of a known catalog gets that catalog's profile. Any other URL
    is a generic STAC API whose assets are found through ``asset_map`` (default: Earth
    Search keys, then common names). A local path is a static catalog, collection,
    item or item collection searched client-side. ``NAME=URL`` uses a known profile's
    rules with another API root (a mirror or proxy).
    """
    spec = (spec or "earth-search").strip()
    head, eq, tail = spec.partition("=")
    if eq and tail.startswith(("http://", "https://")):
        base = resolve_catalog(head, asset_map=asset_map)
        return replace(base, url=tail.rstrip("/"), static=False)
    name = ALIASES.get(spec.lower(), spec.lower())
    if name == "sample":
        prof = _sample()
    elif name in PROFILES:
        prof = PROFILES[name]
    elif spec.startswith(("http://", "https://")):
        root = spec.rstrip("/")
        known = [p for p in PROFILES.values() if p.url == root]
        static = root.split("?", 1)[0].endswith(".json")  # a static catalog/item on a web server
        prof = known[0] if known else CatalogProfile(name="url", url=root, static=static)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise CatalogError(
                f"unknown catalog {spec!r}; expected one of {', '.join(PROFILE_NAMES)}, "
                "a STAC API URL (https://…), or a local catalog/item JSON file"
            )
        if path.is_dir():
            path = path / "catalog.json"
        prof = CatalogProfile(name="file", url=str(path), static=True)
    if asset_map:
        prof = replace(prof, asset_keys=parse_asset_map(asset_map), collection_keys={})
    return prof


def profile_for_item(item_dict: Mapping[str, object]) -> CatalogProfile:
    """Guess the catalog profile of a lone item (``s2sr run ITEM``) from its content."""
    props = item_dict.get("properties") or {}
    assets = item_dict.get("assets") or {}
    hrefs = [str(a.get("href", "")) for a in assets.values() if isinstance(a, Mapping)]  # type: ignore[union-attr]
    if any(h.startswith("s3://eodata/") for h in hrefs):
        return CDSE
    if any(".blob.core.windows.net" in h for h in hrefs):
        return PLANETARY_COMPUTER
    if isinstance(props, Mapping) and any(str(k).startswith(("earthsearch:", "sentinel:")) for k in props):
        return EARTH_SEARCH
    return CatalogProfile(name="file", url=None, static=True)
