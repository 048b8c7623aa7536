"""Files published with an item: one single-band COG per band, a preview PNG, checksums.

The pipeline writes one multi-band COG per scene; publishing splits it into one
single-band COG per band (see ``docs/publish.md`` for why), block by block through
:class:`~s2sr_cloud.io.cog.CogWriter`, so memory stays bounded by a block. File names
carry the first 8 hex digits of the content hash: a re-publish with new pixels never
overwrites a file that a published item points to.
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
from ..sr import Window, iter_blocks
from .item import COG_TYPE, PNG_TYPE, LocalAsset, ProcessedScene, item_id_for

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


def split_band(scene: ProcessedScene, index: int, out: Path) -> None:
    """Copy band ``index`` (1-based) of the scene COG into a single-band COG at ``out``."""
    import rasterio
    from rasterio.windows import Window as RioWindow

    from ..io.cog import BLOCKSIZE, CogWriter

    band = scene.bands[index - 1]
    with rasterio.open(scene.cog) as src:
        writer = CogWriter(
            out, width=src.width, height=src.height, count=1, crs=src.crs, transform=src.transform,
            nodata=scene.nodata, dtype=scene.dtype, descriptions=[band], overwrite=True,
            band_tags=[{"BAND": band, "SCALE": "0.0001", "OFFSET": str(-scene.dn_offset / 10000)}],
        )
        with writer:
            for win in iter_blocks((src.height, src.width), BLOCKSIZE):
                data = src.read(index, window=RioWindow(win.col, win.row, win.width, win.height))
                writer.write(data[None], Window(win.row, win.col, win.height, win.width))


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


def prepare_assets(scene: ProcessedScene, workdir: Path) -> list[LocalAsset]:
    """Split the scene COG per band and render its preview into ``workdir``.

    Args:
        scene: the processed scene.
        workdir: a directory for the prepared files (the caller owns and removes it).

    Returns:
        One data asset per band (key = ESA band id) and a ``preview`` asset.
    """
    item_id = item_id_for(scene.source.id)
    workdir.mkdir(parents=True, exist_ok=True)
    assets: list[LocalAsset] = []
    for i, band in enumerate(scene.bands, start=1):
        tmp = workdir / f"{item_id}_{band}.tif"
        split_band(scene, i, tmp)
        path, sha = _finalise(tmp, f"{item_id}_{band}", ".tif")
        b = BANDS[band]
        assets.append(LocalAsset(
            key=band, path=path, name=path.name, media_type=COG_TYPE, roles=("data", "reflectance"),
            size=path.stat().st_size, checksum=multihash(sha), band=band,
            title=f"{band} ({b.common_name}, {b.wavelength * 1000:.0f} nm) at 10 m",
        ))
    tmp = workdir / f"{item_id}_preview.png"
    render_preview(scene, tmp)
    path, sha = _finalise(tmp, f"{item_id}_preview", ".png")
    assets.append(LocalAsset(
        key="preview", path=path, name=path.name, media_type=PNG_TYPE, roles=("thumbnail", "overview"),
        size=path.stat().st_size, checksum=multihash(sha), title="Preview",
    ))
    log.debug("prepared %d assets for %s in %s", len(assets), item_id, workdir)
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
    fields.update(kw)
    return ProcessedScene(**fields)
