"""Pure builders of the published STAC documents: the derived item and its collection.

Input is a :class:`ProcessedScene` (what the pipeline knows about one result) plus the
:class:`LocalAsset` files prepared for it (the output COG as written, the scene
classification of L2A items and a preview PNG, see :mod:`s2sr_cloud.publish.assets`).
The documents are made through pystac's extension classes (eo, raster, projection, file,
classification); processing has no pystac class and is written by hand against its schema.
Nothing here touches the network or the disk: asset hrefs are relative file names
(``./<file>``) unless ``href_of`` says otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bands import BANDS, NODATA

# the collection builders live in .collection; re-exported here for older imports
from .collection import (
    LICENSE_URL,
    build_collection,
    collection_links,
    item_assets_of,
    merge_collection,
    root_catalog,
    summaries_of,
)

if TYPE_CHECKING:
    import pystac

STAC_EXTENSIONS: dict[str, str] = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.0.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
}
"""The extensions an item may declare (pystac's classes add the ones they use; processing by hand)."""
#: Asset key of the super-resolved bands (the output COG as written, one band per entry of
#: ``eo:bands`` / ``raster:bands``) and of the scene classification.
REFLECTANCE = "reflectance"
SCL = "SCL"
#: Output reflectance scale: reflectance = DN x 0.0001 + offset.
REFLECTANCE_SCALE = 0.0001
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
    post: Mapping[str, Any] | None = None
    """The whole post-step configuration (:meth:`s2sr_cloud.post.PostSteps.record`'s ``post``; None: unknown)."""
    consistency_rmse: Mapping[str, float] = field(default_factory=dict)
    """Per band, RMSE (DN) of the output degraded back against the observed band (empty: not measured)."""
    scl: Path | None = None
    """The scene classification at 10 m beside the COG (L2A items; :mod:`s2sr_cloud.io.scl`), or None."""


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
    bands: tuple[str, ...] = ()
    """ESA band ids of a reflectance asset, in band order (empty for other assets)."""
    kind: str = "reflectance"
    """``reflectance``, ``classification`` (SCL) or ``preview``."""
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


def band_meta(band: str, scene: ProcessedScene) -> tuple[Any, Any]:
    """pystac ``eo`` :class:`Band` and ``raster`` :class:`RasterBand` of one output band."""
    from pystac.extensions.eo import Band
    from pystac.extensions.raster import DataType, RasterBand

    b = BANDS[band]
    eo = Band.create(name=b.name, common_name=b.common_name, center_wavelength=b.wavelength)
    raster = RasterBand.create(nodata=scene.nodata, data_type=DataType(scene.dtype), spatial_resolution=10.0,
                               scale=REFLECTANCE_SCALE, offset=round(-scene.dn_offset / 10000, 6))
    return eo, raster


def _scl_classes() -> list[Any]:
    from pystac.extensions.classification import Classification

    from ..io.scl import CLASSES

    return [Classification.create(value=v, name=name, description=text, nodata=True if v == 0 else None)
            for v, (name, text) in CLASSES.items()]


def _extend_asset(asset: Any, a: LocalAsset, scene: ProcessedScene) -> None:
    """Set ``asset``'s extension fields (eo, raster, classification, file) through pystac's classes."""
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.eo import EOExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    if a.kind == "reflectance":
        meta = [band_meta(b, scene) for b in a.bands]
        asset.extra_fields["gsd"] = 10.0
        EOExtension.ext(asset, add_if_missing=True).bands = [eo for eo, _ in meta]
        RasterExtension.ext(asset, add_if_missing=True).bands = [r for _, r in meta]
    elif a.kind == "classification":
        asset.extra_fields["gsd"] = 10.0
        RasterExtension.ext(asset, add_if_missing=True).bands = [
            RasterBand.create(nodata=0, data_type=DataType.UINT8, spatial_resolution=10.0)]
        ClassificationExtension.ext(asset, add_if_missing=True).classes = _scl_classes()
    if a.size or a.checksum:
        fx = FileExtension.ext(asset, add_if_missing=True)
        if a.size:
            fx.size = a.size
        if a.checksum:
            fx.checksum = a.checksum


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


def build_item(scene: ProcessedScene, assets: Sequence[LocalAsset], collection_id: str, *,
               href_of: Callable[[LocalAsset], str] | None = None) -> pystac.Item:
    """The derived item: the reflectance COG and SCL assets, preview, proj/raster/eo/processing/file fields.

    Args:
        scene: the processed scene.
        assets: files prepared for it (hrefs become ``./<name>``, or ``href_of(asset)``).
        collection_id: id of the collection the item belongs to.
        href_of: the href of each asset (default: ``./<name>``, the file beside the item).

    Returns:
        A pystac Item without self/root/parent links (the target adds those).
    """
    import pystac
    from pystac.extensions.projection import ProjectionExtension

    src = scene.source
    props: dict[str, Any] = {k: src.properties[k] for k in CARRIED if k in src.properties}
    props.update({
        "gsd": 10.0,
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
        stac_extensions=[STAC_EXTENSIONS["processing"]],  # the other extensions: added by pystac's classes
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code, proj.bbox = scene.crs, list(scene.bbox)
    proj.shape, proj.transform = list(scene.shape), list(scene.transform)
    item.add_link(pystac.Link("derived_from", source_href(src), media_type="application/geo+json",
                              title=f"Source item {src.id}"))
    item.add_link(pystac.Link("license", LICENSE_URL, title="Copernicus Sentinel data legal notice"))
    for a in assets:
        asset = pystac.Asset(href=href_of(a) if href_of else f"./{a.name}", media_type=a.media_type,
                             roles=list(a.roles), title=a.title or None, extra_fields=dict(a.extra))
        item.add_asset(a.key, asset)  # owned by the item first: the extension classes declare on it
        _extend_asset(asset, a, scene)
    return item



__all__ = ["DEFAULT_COLLECTION", "LICENSE_URL", "LocalAsset", "ProcessedScene", "band_meta", "build_collection", "build_item",
           "collection_links", "item_assets_of", "item_id_for", "merge_collection", "model_fingerprint",
           "root_catalog", "source_href", "summaries_of"]
