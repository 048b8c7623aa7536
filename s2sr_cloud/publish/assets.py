"""Files published with an item: the output COG as written, its SCL, a preview PNG, checksums.

Nothing is rewritten: the pipeline's multi-band COG (one band per entry of the asset's
``eo:bands``/``raster:bands``) and the L2A scene classification beside it are published as
the files the workers wrote (a local catalog hard-links them; an object store receives them
as they are). Only the preview is made here, from the COG's overviews (a few hundred KB
read). File names carry the first 8 hex digits of the content hash: a re-publish with new
pixels never overwrites a file that a published item points to. See ``docs/publish.md``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..bands import BANDS
from .item import (
    COG_TYPE,
    PNG_TYPE,
    REFLECTANCE,
    SCL,
    LocalAsset,
    ProcessedScene,
    item_id_for,
)

log = logging.getLogger(__name__)

PREVIEW_SIZE = 512
#: Preview band choices, best first: true colour, then SWIR/NIR/red-edge false colour.
PREVIEW_BANDS = (("B04", "B03", "B02"), ("B12", "B8A", "B05"), ("B11", "B07", "B05"))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def multihash(sha_hex: str) -> str:
    """``file:checksum`` value: sha2-256 multihash (code 0x12, length 0x20) in hex."""
    return "1220" + sha_hex


def _finalise(tmp: Path, stem: str, suffix: str) -> tuple[Path, str]:
    sha = sha256_file(tmp)
    final = tmp.with_name(f"{stem}_{sha[:8]}{suffix}")
    os.replace(tmp, final)
    return final, sha


def _preview_bands(bands: tuple[str, ...]) -> list[int]:
    for combo in PREVIEW_BANDS:
        if all(b in bands for b in combo):
            return [bands.index(b) + 1 for b in combo]
    return [1]


def _stretch(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    vals = a[valid]
    lo, hi = (np.percentile(vals, (2, 98)) if vals.size else (0.0, 1.0))
    scaled = (a.astype(np.float32) - lo) / max(float(hi - lo), 1e-6)
    return np.where(valid, np.clip(scaled * 254 + 1, 1, 255), 0).astype(np.uint8)


def render_preview(scene: ProcessedScene, out: Path, size: int = PREVIEW_SIZE) -> None:
    """Render an RGBA PNG preview (at most ``size`` px on the long side, nodata transparent)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    idx = _preview_bands(scene.bands)
    with rasterio.open(scene.cog) as src:
        f = max(src.height, src.width) / size
        shape = (max(1, round(src.height / f)), max(1, round(src.width / f))) if f > 1 else (src.height, src.width)
        data = src.read(idx, out_shape=(len(idx), *shape), resampling=rasterio.enums.Resampling.average)
    valid = np.all(data != scene.nodata, axis=0)
    rgb = [_stretch(b, valid) for b in data]
    if len(rgb) == 1:
        rgb = rgb * 3
    rgba = np.stack([*rgb, np.where(valid, 255, 0).astype(np.uint8)])
    profile: dict[str, Any] = {"driver": "PNG", "width": shape[1], "height": shape[0], "count": 4, "dtype": "uint8"}
    # PAM off: no .aux.xml side file next to the PNG.
    with warnings.catch_warnings(), rasterio.Env(GDAL_PAM_ENABLED="NO"):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(rgba)


def _as_written(path: Path, key: str, stem: str, checksum: bool, **kw: Any) -> LocalAsset:
    """A file published under a content-hashed name, from where it was written (not copied)."""
    if not checksum:
        return LocalAsset(key=key, path=path, name=path.name, size=path.stat().st_size, checksum="", **kw)
    sha = sha256_file(path)
    return LocalAsset(key=key, path=path, name=f"{stem}_{sha[:8]}{path.suffix}", size=path.stat().st_size,
                      checksum=multihash(sha), **kw)


def prepare_assets(scene: ProcessedScene, workdir: Path, *, preview: bool = True,
                   checksums: bool = True) -> list[LocalAsset]:
    """The files of one published item: the COG and its SCL as written, and a preview in ``workdir``.

    Args:
        scene: the processed scene.
        workdir: a directory for the preview (the caller owns and removes it).
        preview: render the preview PNG (False: an in-memory item for :func:`s2sr_cloud.cube.load`).
        checksums: hash the files (``file:checksum`` and content-hashed names; False: names as written).

    Returns:
        The ``reflectance`` asset (the output COG, all its bands), ``SCL`` when the scene has a
        scene classification, and ``preview``.
    """
    item_id = item_id_for(scene.source.id)
    names = " ".join(scene.bands)
    assets = [_as_written(
        Path(scene.cog), REFLECTANCE, f"{item_id}_{REFLECTANCE}", checksums, media_type=COG_TYPE, roles=("data", "reflectance"),
        bands=tuple(scene.bands), kind="reflectance",
        title=f"Super-resolved reflectance at 10 m ({names}); reflectance = DN x 0.0001",
    )]
    if scene.scl is not None and Path(scene.scl).is_file():
        assets.append(_as_written(
            Path(scene.scl), SCL, f"{item_id}_{SCL}", checksums, media_type=COG_TYPE, roles=("data", "classification", "cloud"),
            kind="classification", title="Scene classification (L2A SCL) at 10 m, nearest neighbour from 20 m",
        ))
    if preview:
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = workdir / f"{item_id}_preview.png"
        render_preview(scene, tmp)
        path, sha = _finalise(tmp, f"{item_id}_preview", ".png")
        assets.append(LocalAsset(
            key="preview", path=path, name=path.name, media_type=PNG_TYPE, roles=("thumbnail", "overview"),
            size=path.stat().st_size, checksum=multihash(sha), kind="preview", title="Preview",
        ))
    log.debug("prepared %d assets for %s", len(assets), item_id)
    return assets


def _band_id(text: str) -> str:
    """``B05`` from ``B05`` or ``B05 (rededge, 704 nm, …)``."""
    return text.split(" ", 1)[0].strip()


def scene_from_cog(cog: Path, source: Any, **kw: Any) -> ProcessedScene:
    """Build a :class:`ProcessedScene` from a written COG's own georeference and tags.

    Args:
        cog: the multi-band output COG (band descriptions are the band ids).
        source: the source ``pystac.Item``.
        **kw: the remaining fields (``models``, ``backend``, ``version``, ``dn_offset``…),
            overriding what the COG tags say.
    """
    import rasterio
    from rasterio.warp import transform_bounds, transform_geom

    with rasterio.open(cog) as src:
        bands = tuple(_band_id(src.tags(i).get("band") or src.tags(i).get("BAND") or d or "")
                      for i, d in enumerate(src.descriptions, start=1))
        if not all(b in BANDS for b in bands):
            raise ValueError(f"{cog}: band descriptions {bands} are not Sentinel-2 band ids")
        if src.crs is None:
            raise ValueError(f"{cog} has no CRS")
        crs = src.crs.to_string()
        b = tuple(src.bounds)
        poly = {"type": "Polygon", "coordinates": [[
            (b[0], b[1]), (b[2], b[1]), (b[2], b[3]), (b[0], b[3]), (b[0], b[1])]]}
        fields: dict[str, Any] = {
            "source": source, "cog": Path(cog), "crs": crs, "transform": tuple(src.transform)[:6],
            "shape": (src.height, src.width), "bbox": b,
            "bbox_wgs84": tuple(round(v, 7) for v in transform_bounds(src.crs, "EPSG:4326", *b, densify_pts=21)),
            "footprint": transform_geom(src.crs, "EPSG:4326", poly, precision=7),
            "bands": bands, "nodata": int(src.nodata if src.nodata is not None else 0),
            "dtype": src.dtypes[0],
        }
    from ..io.scl import scl_path

    scl = scl_path(cog)
    fields["scl"] = scl if scl.is_file() else None
    fields.update(kw)
    return ProcessedScene(**fields)
