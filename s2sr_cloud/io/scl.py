"""The L2A scene classification (SCL) carried to the 10 m output grid.

For an L2A item with an SCL asset, :func:`write_scl` writes ``<output>_SCL.tif`` beside the
super-resolved COG: the item's 20 m SCL resampled to the same 10 m grid by nearest neighbour
(each 20 m class covers its 2 x 2 block of 10 m pixels; nothing is interpolated), uint8,
nodata 0 (class 0 is "no data" in SCL too), one band described ``SCL``, with the class
names as band tags. Read window by window (rows of :data:`ROWS` 10 m pixels), so memory
stays bounded for a full item. The STAC item publishes it as the ``SCL`` asset (with
``classification:classes``); :func:`s2sr_cloud.cube.load` loads it and masks clouds with it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..grid import Window

if TYPE_CHECKING:
    import pystac

    from ..catalog.assets import AssetRef
    from ..catalog.presets import CatalogProfile
    from ..catalog.signing import Signer
    from ..grid import ItemGrid, OutputGrid
    from .env import HttpParams

log = logging.getLogger(__name__)

#: Asset key / band id of the scene classification.
SCL = "SCL"
#: SCL file of an output COG: ``x-s2sr.tif`` → ``x-s2sr_SCL.tif``.
SUFFIX = "_SCL.tif"
#: 10 m rows read and written at once.
ROWS = 1536
#: ESA's L2A scene classification classes (Sen2Cor; "dark area pixels" are topographic
#: shadows from baseline 04.00 on).
CLASSES: dict[int, tuple[str, str]] = {
    0: ("no_data", "No data"),
    1: ("saturated_or_defective", "Saturated or defective"),
    2: ("dark_area_pixels", "Dark area pixels / topographic shadows"),
    3: ("cloud_shadows", "Cloud shadows"),
    4: ("vegetation", "Vegetation"),
    5: ("not_vegetated", "Not vegetated"),
    6: ("water", "Water"),
    7: ("unclassified", "Unclassified"),
    8: ("cloud_medium_probability", "Cloud medium probability"),
    9: ("cloud_high_probability", "Cloud high probability"),
    10: ("thin_cirrus", "Thin cirrus"),
    11: ("snow", "Snow or ice"),
}
#: Classes masked by ``load(..., mask_clouds=True)``: cloud shadows, medium/high cloud, cirrus.
CLOUD_CLASSES: tuple[int, ...] = (3, 8, 9, 10)


def scl_path(cog: str | Path) -> Path:
    """The SCL file written beside the output COG ``cog``."""
    cog = Path(cog)
    return cog.with_name(cog.stem + SUFFIX)


def upsample_nearest(scl20: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """10 m pixels ``rows`` × ``cols`` (absolute, item grid) from the 20 m array whose first pixel
    is 20 m pixel (rows[0] // 2, cols[0] // 2)."""
    r = np.arange(rows[0], rows[1]) // 2 - rows[0] // 2
    c = np.arange(cols[0], cols[1]) // 2 - cols[0] // 2
    return scl20[np.ix_(r, c)]


def band_tags() -> dict[str, str]:
    """Band tags of the SCL band: what each class value means."""
    return {"band": SCL, **{f"class_{v}": name for v, (name, _) in CLASSES.items()}}


def write_scl(
    ref: AssetRef, item_grid: ItemGrid, window: Window, path: Path, *, crs: str,
    transform: tuple[float, ...], overwrite: bool = False, signer: Signer | None = None,
    http: HttpParams | None = None, tags: Mapping[str, str] | None = None,
) -> Path:
    """Write the SCL of ``window`` (10 m pixels of ``item_grid``) as a 10 m COG at ``path``.

    Args:
        ref: the item's SCL asset (resolution 20).
        item_grid: the item's 10 m grid.
        window: the output window in the item grid (``OutputGrid.window``).
        path: the file to write (:func:`scl_path` of the output COG), atomically.
        crs, transform: the output grid's georeference.
        overwrite: replace an existing file.
        signer, http: how to read the asset.
        tags: dataset tags (source item…).
    """
    from rasterio.transform import Affine

    from .cog import CogWriter
    from .read import ItemSource

    writer = CogWriter(path, width=window.width, height=window.height, count=1, crs=crs,
                       transform=Affine(*transform[:6]), nodata=0, dtype="uint8", overwrite=overwrite,
                       descriptions=[f"{SCL} (scene classification, 20 m -> 10 m nearest)"],
                       band_tags=[band_tags()], tags=dict(tags or {}))
    c0, c1 = window.col, window.col + window.width
    with ItemSource({SCL: ref}, item_grid, signer=signer, http=http) as src, writer:
        for r in range(0, window.height, ROWS):
            r0, r1 = window.row + r, window.row + min(r + ROWS, window.height)
            scl20 = src.read_band(SCL, (r0 // 2, (r1 + 1) // 2), (c0 // 2, (c1 + 1) // 2))
            block = upsample_nearest(np.asarray(scl20), (r0, r1), (c0, c1))
            writer.write(block[None].astype(np.uint8), Window(r, 0, r1 - r0, window.width))
    log.info("wrote the scene classification %s", path)
    return path


def write_item_scl(
    item: pystac.Item, profile: CatalogProfile, item_grid: ItemGrid, out: OutputGrid, cog: Path, *,
    http: HttpParams | None = None,
) -> Path | None:
    """The SCL beside the output COG ``cog`` of ``item`` (:func:`scl_path`), when the item has an
    SCL asset (L2A); None otherwise (L1C items, catalogs without it: nothing is written).

    The SCL follows its COG (just written): an older one is replaced. An unreadable SCL asset is a
    warning, not a failure of the item: the bands are kept, without a cloud mask."""
    from ..catalog.assets import scl_asset
    from ..catalog.signing import signer_for

    ref = scl_asset(item, profile)
    if ref is None:
        log.debug("[%s] no SCL asset: no scene classification beside the output", item.id)
        return None
    from ..errors import CRSMismatch, RasterReadError

    tags = {"S2SR_SOURCE_ITEM": item.id, "S2SR_SOURCE_COLLECTION": item.collection_id or "",
            "S2SR_SCL_RESAMPLING": "nearest (20 m -> 10 m)"}
    try:
        return write_scl(ref, item_grid, out.window, scl_path(cog), crs=out.crs, transform=out.transform,
                         overwrite=True, signer=signer_for(profile.signer), http=http, tags=tags)
    except (RasterReadError, CRSMismatch) as err:  # the bands are done: keep them, say what is missing
        log.warning("[%s] no scene classification beside the output (no cloud mask): %s", item.id, err)
        scl_path(cog).unlink(missing_ok=True)  # never a stale one from an earlier run
        return None
