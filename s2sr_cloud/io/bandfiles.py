"""A scene given as local per-band GeoTIFFs/COGs (``…_B01.tif`` … ``…_B12.tif``).

Band files are found by the band id in their file name. The 20 m and 60 m rasters must
share the CRS and origin of the 10 m rasters, with 2x and 6x the pixel size; reads are
windowed, so a scene of any size is never held whole.
"""

from __future__ import annotations

import logging
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ..bands import GROUPS, normalise_band
from ..errors import CRSMismatch, InputError, RasterReadError, ShapeMismatch
from ..sr import check_shapes

log = logging.getLogger(__name__)

_BAND_RE = re.compile(r"(?<![A-Za-z0-9])B(8A|1[0-2]|0?[1-9])(?![0-9A-Za-z])", re.IGNORECASE)


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
    needed = [b for g in GROUPS.values() for b in g]
    missing = [b for b in needed if b not in found]
    if missing:
        raise InputError(
            f"{folder} lacks files for bands {', '.join(missing)}; expected one GeoTIFF per "
            "band named like T18SVG_20160112_B05.tif (bands B01-B12, B8A)"
        )
    return found


class BandFilesSource:
    """A :class:`~s2sr_cloud.sr.SceneSource` over per-band raster files.

    Use as a context manager (it keeps the datasets open).
    """

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self._stack = ExitStack()
        self._ds: dict[str, Any] = {}

    def __enter__(self) -> BandFilesSource:
        import rasterio
        from rasterio.errors import RasterioIOError

        for band, path in self.files.items():
            try:
                self._ds[band] = self._stack.enter_context(rasterio.open(path))
            except RasterioIOError as err:
                self._stack.close()
                raise RasterReadError(f"cannot open {path}: {err}") from err
        self._check_grids()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _check_grids(self) -> None:
        ref = self._ds[GROUPS[10][0]]
        for res, bands in GROUPS.items():
            s = res // 10
            for b in bands:
                ds = self._ds[b]
                if ds.crs != ref.crs:
                    raise CRSMismatch(f"{self.files[b].name} is in {ds.crs}, the 10 m bands in {ref.crs}")
                t, r = ds.transform, ref.transform
                if not (np.isclose(t.a, r.a * s) and np.isclose(t.e, r.e * s) and np.isclose(t.c, r.c) and np.isclose(t.f, r.f)):
                    raise ShapeMismatch(
                        f"{self.files[b].name}: grid {tuple(t)[:6]} is not the {res} m grid aligned "
                        f"with the 10 m bands ({tuple(r)[:6]})"
                    )
        check_shapes(ref.shape, self._ds[GROUPS[20][0]].shape, self._ds[GROUPS[60][0]].shape)

    @property
    def shape10(self) -> tuple[int, int]:
        ds = self._ds[GROUPS[10][0]]
        return (int(ds.height), int(ds.width))

    @property
    def crs(self) -> Any:
        return self._ds[GROUPS[10][0]].crs

    @property
    def transform(self) -> Any:
        return self._ds[GROUPS[10][0]].transform

    def read(self, res: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        from rasterio.errors import RasterioIOError
        from rasterio.windows import Window

        win = Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
        out = np.empty((len(GROUPS[res]), rows[1] - rows[0], cols[1] - cols[0]), dtype=np.float32)
        for i, b in enumerate(GROUPS[res]):
            try:
                out[i] = self._ds[b].read(1, window=win)
            except RasterioIOError as err:
                raise RasterReadError(f"cannot read {self.files[b].name} (corrupt or truncated?): {err}") from err
        return out
