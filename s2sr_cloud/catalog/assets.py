"""Pure rules over STAC items: band → asset, and the DN offset of each asset.

Bands are found by the catalog profile's asset key first, then by ``eo`` common name
(``eo:bands[].common_name`` or STAC 1.1 ``bands[].eo:common_name``) with the centre
wavelength to tell the three red-edge bands apart; never by ``eo:bands[].name`` alone,
whose meaning changed inside Earth Search. See ``docs/stac.md`` for the offset rules.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..bands import BANDS, BOA_ADD_OFFSET, GROUPS, baseline_has_offset
from ..errors import BoaOffsetWarning, MissingAsset

if TYPE_CHECKING:
    import pystac

    from .presets import CatalogProfile

log = logging.getLogger(__name__)

#: First day of products with processing baseline 04.00 (used only when no baseline is given).
BASELINE_04_START = datetime(2022, 1, 25, tzinfo=UTC)
#: Bands the two nets read, in spectral order per resolution group.
NEEDED_BANDS: tuple[str, ...] = tuple(b for g in (10, 20, 60) for b in GROUPS[g])
_COG_HINT = "cloud-optimized"


@dataclass(frozen=True, slots=True)
class AssetRef:
    """One band's asset in one item, with its radiometry."""

    band: str
    """ESA band id."""
    key: str
    """Asset key in the item."""
    href: str
    """Asset href as published (unsigned)."""
    resolution: int
    """Native resolution of the band in metres."""
    offset_dn: int
    """DN to subtract to reach the pre-04.00 scale (0 or 1000)."""
    offset_reason: str
    """Which metadata decided :attr:`offset_dn`."""
    nodata: float
    """Nodata DN (0 for Sentinel-2 reflectance)."""


def processing_baseline(props: Mapping[str, Any]) -> str | None:
    """``s2:processing_baseline`` / ``processing:version`` / ``sentinel:processing_baseline``."""
    for k in ("s2:processing_baseline", "processing:version", "sentinel:processing_baseline"):
        v = props.get(k)
        if v:
            return str(v)
    return None


def common_names(asset: Mapping[str, Any]) -> list[tuple[str, float | None]]:
    """(common name, centre wavelength) of every band an asset dict declares."""
    out: list[tuple[str, float | None]] = []
    for b in asset.get("eo:bands") or []:
        if b.get("common_name"):
            out.append((b["common_name"], b.get("center_wavelength")))
    for b in asset.get("bands") or []:
        cn = b.get("eo:common_name")
        if cn:
            out.append((cn, b.get("eo:center_wavelength")))
    return out


def _by_common_name(band: str, assets: Mapping[str, Mapping[str, Any]]) -> str | None:
    spec = BANDS[band]
    cands: list[tuple[str, float | None]] = []
    for key, a in assets.items():
        for cn, wl in common_names(a):
            # CDSE spells the red-edge bands rededge071/075/078
            single = len(common_names(a)) == 1  # not `visual` (red, green, blue in one file)
            if single and (cn == spec.common_name or (spec.common_name == "rededge" and cn.startswith("rededge"))):
                cands.append((key, wl))
    if len(cands) > 1:  # same name: keep the centre wavelength that fits this band
        close = [(k, w) for k, w in cands if w is not None and abs(w - spec.wavelength) < 0.012]
        cands = close or cands
    if len(cands) > 1:  # COG before JPEG 2000 twins (Earth Search `red` vs `red-jp2`)
        cogs = [(k, w) for k, w in cands if _COG_HINT in str(assets[k].get("type", ""))]
        cands = cogs or cands
    keys = sorted({k for k, _ in cands})
    return keys[0] if len(keys) == 1 else None


def find_asset_key(band: str, assets: Mapping[str, Mapping[str, Any]], keys: Mapping[str, str]) -> str | None:
    """Asset key of ``band``: the profile's key if the item has it, else by common name."""
    key = keys.get(band)
    if key is not None and key in assets:
        return key
    return _by_common_name(band, assets)


def _raster_offset(asset: Mapping[str, Any]) -> tuple[float | None, float | None]:
    rb = (asset.get("raster:bands") or [{}])[0]
    scale = rb.get("scale", asset.get("raster:scale"))
    offset = rb.get("offset", asset.get("raster:offset"))
    return scale, offset


def _baseline_offset(props: Mapping[str, Any], item_id: str) -> tuple[int, str]:
    baseline = processing_baseline(props)
    if baseline is not None:
        if baseline_has_offset(baseline):
            return BOA_ADD_OFFSET, f"baseline {baseline} >= 04.00"
        return 0, f"baseline {baseline} < 04.00"
    dt = props.get("datetime")
    when = datetime.fromisoformat(str(dt).replace("Z", "+00:00")) if dt else None
    if when is not None and when >= BASELINE_04_START:
        warnings.warn(
            f"{item_id}: no processing baseline in the item; assuming the 04.00 BOA offset "
            f"(sensed {when.date()}, after 2022-01-25)", BoaOffsetWarning, stacklevel=3,
        )
        return BOA_ADD_OFFSET, "no baseline; sensed after 2022-01-25"
    return 0, "no baseline; sensed before 2022-01-25"


def boa_offset(props: Mapping[str, Any], asset: Mapping[str, Any], rule: str, item_id: str = "") -> tuple[int, str]:
    """DN offset (0 or 1000) of a reflectance asset, and why.

    ``earth-search``: ``earthsearch:boa_offset_applied`` (v1) or ``sentinel:boa_offset_applied``
    (v0) true → 0 for COG assets (the COGs were shifted when made; ``*-jp2`` assets keep ESA
    DNs); otherwise the baseline rule (c1 items). ``baseline``: 1000 from baseline 04.00 on
    (Planetary Computer, CDSE). ``raster-bands``: the asset's ``raster:bands`` offset over its
    scale (−0.1 / 0.0001 → 1000), after the Earth Search flag; the baseline rule if absent.
    """
    flag = props.get("earthsearch:boa_offset_applied", props.get("sentinel:boa_offset_applied"))
    is_jp2 = str(asset.get("href", "")).lower().endswith(".jp2")
    if rule in ("earth-search", "raster-bands") and flag is True and not is_jp2:
        return 0, "earthsearch:boa_offset_applied"
    if rule == "raster-bands":
        scale, offset = _raster_offset(asset)
        if offset is not None and scale:
            return int(round(-float(offset) / float(scale))), "raster:bands offset"
    return _baseline_offset(props, item_id)


def band_assets(
    item: pystac.Item, profile: CatalogProfile, bands: Iterable[str] = NEEDED_BANDS
) -> dict[str, AssetRef]:
    """Resolve the assets of ``bands`` in ``item``; raise :class:`MissingAsset` naming all gaps."""
    assets = {k: a.to_dict() for k, a in item.assets.items()}
    keys = profile.keys_for(item.collection_id)
    out: dict[str, AssetRef] = {}
    missing: list[str] = []
    for band in bands:
        key = find_asset_key(band, assets, keys)
        if key is None:
            missing.append(f"{band} (key {keys.get(band, '?')!r})")
            continue
        a = assets[key]
        off, why = boa_offset(item.properties, a, profile.offset_rule, item.id)
        rb = (a.get("raster:bands") or [{}])[0]
        nodata = rb.get("nodata", a.get("nodata", 0))
        out[band] = AssetRef(band, key, a["href"], BANDS[band].resolution, off, why, float(nodata or 0))
    if missing:
        raise MissingAsset(
            f"item {item.id} has no asset for {', '.join(missing)}; its assets are "
            f"{', '.join(sorted(assets)) or 'none'}. Pass --asset-map BAND=KEY,… if this "
            "catalog uses other keys"
        )
    offsets = {r.offset_dn for r in out.values()}
    log.debug("%s: offsets %s (%s)", item.id, offsets, next(iter(out.values())).offset_reason)
    return out


#: Asset keys the catalogs give the L2A scene classification (Earth Search, PC / v0, CDSE).
SCL_KEYS: tuple[str, ...] = ("scl", "SCL", "SCL_20m")


def scl_asset(item: pystac.Item, profile: CatalogProfile) -> AssetRef | None:
    """The item's 20 m scene classification (SCL) asset, or None (L1C items, catalogs without it).

    Found by the profile's ``SCL`` key, else by the usual keys (:data:`SCL_KEYS`); a JPEG 2000
    twin (Earth Search ``scl-jp2``) is never preferred over the COG.
    """
    keys = profile.keys_for(item.collection_id)
    for key in (keys.get("SCL"), *SCL_KEYS):
        if key and key in item.assets:
            asset = item.assets[key]
            href = asset.get_absolute_href() or asset.href
            return AssetRef("SCL", key, href, 20, 0, "classes, not scaled", 0.0)
    return None
