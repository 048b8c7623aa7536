"""A scene given as local per-band GeoTIFFs/COGs (``…_B01.tif`` … ``…_B12.tif``).

Band files are found by the band id in their file name and read through the same
windowed reader as STAC items (:class:`~s2sr_cloud.io.read.ItemSource`): the 20 m and
60 m rasters must share the CRS and origin of the 10 m rasters, with 2x and 6x the pixel
size, and a scene of any size is never held whole. Values are taken as stored (no DN
offset), 0 = nodata.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..bands import BANDS, GROUPS, normalise_band
from ..errors import InputError
from ..grid import check_shapes
from .read import ItemSource, probe_grid

_BAND_RE = re.compile(r"(?<![A-Za-z0-9])B(8A|1[0-2]|0?[1-9])(?![0-9A-Za-z])", re.IGNORECASE)
_NEEDED = [b for g in GROUPS.values() for b in g]


def find_band_files(folder: str | Path) -> dict[str, Path]:
    """Map band ids to files in ``folder`` (``*.tif``/``*.tiff``/``*.jp2``) by name."""
    folder = Path(folder)
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in {".tif", ".tiff", ".jp2"}:
            continue
        m = _BAND_RE.search(p.stem)
        if m:
            band = normalise_band("B" + m.group(1))
            if band in found:
                raise InputError(f"two files for band {band} in {folder}: {found[band].name}, {p.name}")
            found[band] = p
    missing = [b for b in _NEEDED if b not in found]
    if missing:
        raise InputError(
            f"{folder} lacks files for bands {', '.join(missing)}; expected one GeoTIFF per "
            "band named like T18SVG_20160112_B05.tif (bands B01-B12, B8A)"
        )
    return found


def is_band_folder(folder: Path) -> bool:
    """True when ``folder`` holds one raster for each band the nets need."""
    try:
        find_band_files(folder)
    except (InputError, OSError):
        return False
    return True


class BandFilesSource(ItemSource):
    """A :class:`~s2sr_cloud.sr.SceneSource` over per-band raster files.

    Use as a context manager (it keeps the datasets open). The grid is that of the B02
    file; opening checks that the 20 m and 60 m grids are exactly 2x and 6x coarser.
    """

    def __init__(self, files: dict[str, Path]) -> None:
        from ..catalog.assets import AssetRef

        refs = {
            b: AssetRef(b, b, str(files[b]), BANDS[b].resolution, 0, "local files: DN as stored", 0)
            for b in _NEEDED
        }
        super().__init__(refs, probe_grid(refs["B02"]))
        self.files = files

    def __enter__(self) -> BandFilesSource:
        super().__enter__()
        try:
            shapes = [tuple(self._dataset(GROUPS[r][0]).shape) for r in (10, 20, 60)]
            check_shapes(*shapes)  # type: ignore[arg-type]
        except BaseException:
            self.close()
            raise
        return self

    @property
    def crs(self) -> Any:
        return self.grid.crs

    @property
    def transform(self) -> Any:
        from rasterio import Affine

        return Affine(*self.grid.transform)
