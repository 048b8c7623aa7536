"""A scene given as local per-band GeoTIFFs/COGs (``…_B01.tif`` … ``…_B12.tif``).

Band files are found by the band id in their file name and read through the same
windowed reader as STAC items (:class:`~s2sr_cloud.io.read.ItemSource`): the 20 m and
60 m rasters must share the CRS and origin of the 10 m rasters, with 2x and 6x the pixel
size, and a scene of any size is never held whole. Values are taken as stored (no DN
offset), 0 = nodata.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from ..bands import BANDS, GROUPS, baseline_has_offset, normalise_band
from ..errors import InputError
from ..grid import check_shapes
from .read import ItemSource, probe_grid

_BAND_RE = re.compile(r"(?<![A-Za-z0-9])B(8A|1[0-2]|0?[1-9])(?![0-9A-Za-z])", re.IGNORECASE)
_NEEDED = [b for g in GROUPS.values() for b in g]
_SAFE_BASELINE = re.compile(r"_N(\d{2})(\d{2})_")
_XML_BASELINE = re.compile(r"<PROCESSING_BASELINE>\s*(\d{2}\.\d{2})\s*</PROCESSING_BASELINE>")
_XML_OFFSET = re.compile(r"<(?:BOA|RADIO)_ADD_OFFSET[^>]*>\s*(-?\d+)\s*</")
_SENSED = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})(?:T\d{6})?(?!\d)")
_METADATA = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml", "MTD_TL.xml")
#: First day of products with processing baseline 04.00 (the +1000 DN offset).
BASELINE_04_START = date(2022, 1, 25)
#: Parent folders searched for a product's metadata file or SAFE name.
PARENTS = 4


def _metadata_offset(folder: Path) -> tuple[int, str] | None:
    for d in [folder, *list(folder.parents)[:PARENTS]]:
        for name in _METADATA:
            p = d / name
            if not p.is_file():
                continue
            text = p.read_text(errors="replace")
            offsets = {int(v) for v in _XML_OFFSET.findall(text)}
            if offsets:
                return -min(offsets), f"{'/'.join(sorted(map(str, offsets)))} DN ADD_OFFSET in {p.name}"
            m = _XML_BASELINE.search(text)
            if m:
                return (1000 if baseline_has_offset(m.group(1)) else 0), f"baseline {m.group(1)} in {p.name}"
    return None


def _safe_offset(folder: Path) -> tuple[int, str] | None:
    for part in reversed(folder.resolve().parts):
        m = _SAFE_BASELINE.search(part)
        if m:
            baseline = f"{m.group(1)}.{m.group(2)}"
            return (1000 if baseline_has_offset(baseline) else 0), f"baseline {baseline} in {part}"
    return None


def sensing_date(files: dict[str, Path]) -> date | None:
    """The date in the band files' names (``T33UUU_20170216T102101_B01.tif``), if any."""
    for p in files.values():
        m = _SENSED.search(p.stem)
        if m:
            try:
                return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            except ValueError:
                continue
    return None


def band_offset(folder: str | Path, files: dict[str, Path], boa_offset: int | None = None) -> tuple[int, str]:
    """DN offset (0 or 1000) to remove from a band folder's reflectance, and why.

    ``boa_offset`` (the ``--boa-offset`` flag) decides when given; else the product's metadata
    file, else a SAFE name on the path; else the sensing date in the file names: before
    2022-01-25 → 0 (pre-04.00), from then on → refused (:class:`InputError`) with the flag to pass.
    """
    if boa_offset is not None:
        if boa_offset not in (0, 1000):
            raise InputError(f"--boa-offset must be 0 or 1000, not {boa_offset}")
        return boa_offset, f"--boa-offset {boa_offset}"
    folder = Path(folder)
    found = _metadata_offset(folder) or _safe_offset(folder)
    if found is not None:
        return found
    sensed = sensing_date(files)
    if sensed is not None and sensed >= BASELINE_04_START:
        raise InputError(
            f"{folder}: sensed {sensed}, when processing baseline 04.00 or later adds 1000 DN to every "
            "reflectance, but no baseline was found (no MTD_MSIL2A.xml/MTD_MSIL1C.xml, no SAFE name "
            "with _N0400_ or later). Pass --boa-offset 1000 (baseline >= 04.00: harmonised like STAC "
            "items) or --boa-offset 0 (the values are already on the old scale)"
        )
    if sensed is not None:
        return 0, f"no baseline; sensed {sensed}, before 2022-01-25"
    return 0, "no baseline, no date: DN as stored"


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
    ``offset`` (:func:`band_offset`) is removed from every valid DN on reading.
    """

    def __init__(self, files: dict[str, Path], *, offset: int = 0, reason: str = "local files: DN as stored") -> None:
        from ..catalog.assets import AssetRef

        refs = {
            b: AssetRef(b, b, str(files[b]), BANDS[b].resolution, offset, reason, 0)
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
