"""Atomic, block-by-block Cloud-Optimized GeoTIFF writing.

:class:`CogWriter` takes windows one at a time into a temporary tiled GeoTIFF in the
target directory; on a clean exit GDAL's COG driver copies it (streaming, bounded
memory) into a second temporary file with overviews, which is then renamed onto the
target. On any error both temporary files are removed: a COG at the target path is
always complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..bands import BANDS, SR_BANDS
from ..fsutil import check_output, output_error, tmp_beside
from ..grid import Window

log = logging.getLogger(__name__)

BLOCKSIZE = 512
#: Output reflectance convention: reflectance = DN x REFLECTANCE_SCALE + offset (offset 0: the
#: baseline-04.00 BOA offset is removed before the nets); DN 0 = nodata.
REFLECTANCE_SCALE = 0.0001


def _description(band: str, sr: bool) -> str:
    b = BANDS[band]
    how = f"super-resolved {b.resolution} m -> 10 m" if sr else "native 10 m"
    return f"{band} ({b.common_name}, {b.wavelength * 1000:.0f} nm, {how})"


def band_layout(bands: Iterable[str], *, scale: float = REFLECTANCE_SCALE, offset: float = 0.0) -> dict[str, Any]:
    """Per-band metadata of an output COG: descriptions, tags and GDAL scale/offset.

    ``reflectance = DN x scale + offset`` (GDAL band scale/offset, read by rioxarray's
    ``mask_and_scale``, QGIS and ``gdalinfo``); the same values as plain band tags
    (``scale``/``offset``) for older readers. Keyword arguments of :class:`CogWriter`.
    """
    bands = tuple(bands)
    return {"descriptions": [_description(b, b in SR_BANDS) for b in bands],
            "band_tags": [{"band": b, "scale": str(scale), "offset": f"{offset:g}"} for b in bands],
            "scales": [scale] * len(bands), "offsets": [offset] * len(bands)}


def _wrap_oserror(err: OSError, path: Path) -> Exception:
    return output_error(err, path)


class CogWriter:
    """Write a COG by windows, atomically.

    Args:
        path: final COG path.
        width, height, count: raster size and band count.
        crs: CRS (anything rasterio accepts) or None for an ungeoreferenced raster.
        transform: affine transform (``rasterio.Affine``) or None.
        nodata: nodata value.
        dtype: data type name.
        descriptions: one description per band.
        tags: dataset-level metadata tags.
        band_tags: per-band tags (list of dicts).
        scales, offsets: GDAL band scale and offset per band (physical value = DN x scale +
            offset), what rioxarray's ``mask_and_scale``, QGIS and ``gdalinfo`` read.
        overwrite: replace an existing file.
        compress: COG compression.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        count: int,
        crs: Any = None,
        transform: Any = None,
        nodata: float | None = 0,
        dtype: str = "uint16",
        descriptions: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        band_tags: Sequence[Mapping[str, str]] | None = None,
        scales: Sequence[float] | None = None,
        offsets: Sequence[float] | None = None,
        overwrite: bool = False,
        compress: str = "DEFLATE",
    ) -> None:
        self.path = check_output(path, overwrite=overwrite)
        self.profile: dict[str, Any] = {
            "driver": "GTiff", "width": width, "height": height, "count": count, "dtype": dtype,
            "crs": crs, "transform": transform, "nodata": nodata, "tiled": True,
            "blockxsize": BLOCKSIZE, "blockysize": BLOCKSIZE, "compress": "LZW", "BIGTIFF": "IF_SAFER",
        }
        if transform is None:
            self.profile.pop("transform")
        self.descriptions = list(descriptions or [])
        self.tags = dict(tags or {})
        self.band_tags = list(band_tags or [])
        self.scales = None if scales is None else tuple(float(v) for v in scales)
        self.offsets = None if offsets is None else tuple(float(v) for v in offsets)
        for name, vals in (("scales", self.scales), ("offsets", self.offsets)):
            if vals is not None and len(vals) != count:
                raise ValueError(f"{name} has {len(vals)} values for {count} bands")
        self.compress = compress
        self._tmp: Path | None = None
        self._ds: Any = None

    def __enter__(self) -> CogWriter:
        import rasterio

        self._tmp = tmp_beside(self.path.parent, self.path.name, ".stage.tif")
        try:
            self._ds = rasterio.open(self._tmp, "w", **self.profile)
        except OSError as err:
            self._cleanup()
            raise _wrap_oserror(err, self.path) from err
        return self

    def write(self, array: np.ndarray, window: Window | None = None) -> None:
        """Write (count, h, w) at ``window`` (default: the whole raster)."""
        from rasterio.windows import Window as RioWindow

        if self._ds is None:
            raise RuntimeError("CogWriter.write outside of a with-block")
        win = None if window is None else RioWindow(window.col, window.row, window.width, window.height)
        try:
            self._ds.write(array.astype(self.profile["dtype"], copy=False), window=win)
        except Exception as err:
            if isinstance(err, OSError) or "No space left" in str(err):
                raise _wrap_oserror(err if isinstance(err, OSError) else OSError(str(err)), self.path) from err
            raise

    def _finish(self) -> None:
        import rasterio
        import rasterio.shutil

        ds = self._ds
        for i, d in enumerate(self.descriptions, start=1):
            ds.set_band_description(i, d)
        if self.tags:
            ds.update_tags(**self.tags)
        for i, t in enumerate(self.band_tags, start=1):
            ds.update_tags(i, **t)
        if self.scales is not None:
            ds.scales = self.scales
        if self.offsets is not None:
            ds.offsets = self.offsets
        ds.close()
        self._ds = None
        assert self._tmp is not None
        out_tmp = tmp_beside(self.path.parent, self.path.name, ".cog.tif")
        try:
            with rasterio.open(self._tmp) as src:
                rasterio.shutil.copy(
                    src, out_tmp, driver="COG", compress=self.compress, predictor=2,
                    blocksize=BLOCKSIZE, overview_resampling="average", BIGTIFF="IF_SAFER",
                )
            os.replace(out_tmp, self.path)
        except BaseException as err:  # Ctrl-C / SIGTERM during the copy too: no staging file left
            out_tmp.unlink(missing_ok=True)
            if isinstance(err, OSError) or (isinstance(err, Exception) and "No space left" in str(err)):
                raise _wrap_oserror(err if isinstance(err, OSError) else OSError(str(err)), self.path) from err
            raise
        log.info("wrote %s", self.path)

    def _cleanup(self) -> None:
        if self._ds is not None:
            try:
                self._ds.close()
            except Exception:  # noqa: BLE001 - best effort while unwinding
                log.debug("closing the staging file failed", exc_info=True)
            self._ds = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            self._cleanup()
