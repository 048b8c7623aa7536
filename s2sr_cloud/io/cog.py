"""Atomic, block-by-block Cloud-Optimized GeoTIFF writing.

:class:`CogWriter` compresses 512² tiles on a thread pool as the windows arrive
(:mod:`~s2sr_cloud.io.cog_tiles`; ``S2SR_COG_THREADS``) into a staging file beside the target and
builds the ``average`` overviews strip by strip while the caller computes the next blocks. On a
clean exit only the last tiles remain to compress; the COG is then assembled by copying the
compressed bytes behind the IFDs (:mod:`~s2sr_cloud.io.cog_tiff`) into a second staging file,
which is renamed onto the target. On any error both staging files are removed: a COG at the
target path is always complete.

:class:`GdalCogWriter` is the previous path (a staging GeoTIFF, then GDAL's single-threaded COG
copy with overviews after the last block); :class:`CogWriter` falls back to it for what the
tiled path does not write (other data types than 8/16-bit unsigned, other compressions), and the
tests compare the two.
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
from ..settings import cog_threads
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


class GdalCogWriter:
    """Write a COG by windows, atomically: a staging GeoTIFF, then GDAL's COG copy after the last block.

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

    def __enter__(self) -> GdalCogWriter:
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
            raise RuntimeError("GdalCogWriter.write outside of a with-block")
        win = None if window is None else RioWindow(window.col, window.row, window.width, window.height)
        try:
            self._ds.write(array.astype(self.profile["dtype"], copy=False), window=win)
        except Exception as err:
            if isinstance(err, OSError) or "No space left" in str(err):
                raise _wrap_oserror(err if isinstance(err, OSError) else OSError(str(err)), self.path) from err
            raise

    def apply_metadata(self, ds: Any) -> None:
        """Band descriptions, tags and GDAL scale/offset onto an open rasterio dataset."""
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

    def _finish(self) -> None:
        import rasterio
        import rasterio.shutil

        ds = self._ds
        self.apply_metadata(ds)
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


#: Data types and compressions the tiled path writes; anything else goes through :class:`GdalCogWriter`.
TILED_DTYPES = ("uint8", "uint16")
TILED_COMPRESS = ("DEFLATE",)


def _call(fn: Any) -> None:
    fn()


def _is_disk_error(err: BaseException) -> bool:
    return isinstance(err, OSError) or (isinstance(err, Exception) and "No space left" in str(err))


class CogWriter(GdalCogWriter):
    """Write a COG by windows, atomically, compressing and building overviews as windows arrive.

    The arguments of :class:`GdalCogWriter` (which it is, for data types other than
    :data:`TILED_DTYPES` or a compression other than DEFLATE). ``threads``: compression threads
    (default :func:`~s2sr_cloud.settings.cog_threads`). The full resolution is pixel-identical to
    :class:`GdalCogWriter`'s; the overviews are GDAL's ``average`` from the previous level.
    Windows must not overlap.
    """

    def __new__(cls, path: str | os.PathLike[str], **kw: Any) -> Any:
        if str(kw.get("dtype", "uint16")) not in TILED_DTYPES or str(kw.get("compress", "DEFLATE")).upper() not in TILED_COMPRESS:
            return GdalCogWriter(path, **{k: v for k, v in kw.items() if k != "threads"})
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None, **kw: Any) -> None:
        super().__init__(path, **kw)
        self.threads = threads or cog_threads()
        self._fd: int | None = None
        self._store: Any = None
        self._levels: list[Any] = []
        self._chain: Any = None
        self._chain_slots: Any = None
        self._chain_futs: list[Any] = []

    def __enter__(self) -> CogWriter:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        from .cog_tiles import LevelBuilder, TileStore, overview_shapes

        p = self.profile
        self._tmp = tmp_beside(self.path.parent, self.path.name, ".stage.tif")
        try:
            self._fd = os.open(self._tmp, os.O_RDWR | getattr(os, "O_BINARY", 0))
        except OSError as err:
            self._cleanup()
            raise _wrap_oserror(err, self.path) from err
        self._store = TileStore(self._fd, self.threads, BLOCKSIZE)
        self._chain = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s2sr-cog-ovr")
        self._chain_slots = threading.BoundedSemaphore(3)  # complete strips waiting for the overviews
        nodata = p["nodata"]
        dtype = np.dtype(p["dtype"])
        fill = 0 if nodata is None else nodata
        shapes = [(p["height"], p["width"])] + overview_shapes(p["height"], p["width"], BLOCKSIZE)
        # level 0 hands its strips to the overview thread; the levels below run on that thread
        self._levels = [LevelBuilder(i, s, p["count"], dtype, fill, nodata, self._store,
                                     self._submit if i == 0 else _call) for i, s in enumerate(shapes)]
        for upper, lower in zip(self._levels, self._levels[1:]):
            upper.below = lower
        return self

    def _submit(self, fn: Any) -> None:
        """Run ``fn`` (a strip going down the overviews) on the one overview thread, in order."""
        self._check()
        self._chain_slots.acquire()

        def run() -> None:
            try:
                fn()
            finally:
                self._chain_slots.release()

        self._chain_futs = [f for f in self._chain_futs if not f.done() or f.exception() is not None]
        self._chain_futs.append(self._chain.submit(run))

    def _check(self) -> None:
        self._store.check()
        for f in self._chain_futs:
            if f.done() and f.exception() is not None:
                raise f.exception()

    def write(self, array: np.ndarray, window: Window | None = None) -> None:
        """Write (count, h, w) at ``window`` (default: the whole raster)."""
        if self._store is None:
            raise RuntimeError("CogWriter.write outside of a with-block")
        row, col = (0, 0) if window is None else (window.row, window.col)
        try:
            self._check()
            self._levels[0].write(np.asarray(array).astype(self.profile["dtype"], copy=False), row, col)
        except Exception as err:
            if _is_disk_error(err):
                raise _wrap_oserror(err if isinstance(err, OSError) else OSError(str(err)), self.path) from err
            raise

    def _finish(self) -> None:
        from .cog_tiff import Level, template_tags, write_cog

        out_tmp = tmp_beside(self.path.parent, self.path.name, ".cog.tif")
        try:
            self._levels[0].finish()
            self._chain.shutdown(wait=True)
            self._check()
            self._store.drain()
            index = self._store.index
            levels = []
            for lv in self._levels:
                n = lv.rows_t * lv.cols_t
                spots = [index[(lv.level, k)] for k in range(n)]
                levels.append(Level(lv.width, lv.height, [o for o, _ in spots], [s for _, s in spots]))
            tags = template_tags(self.profile, self.apply_metadata)
            with open(out_tmp, "wb", buffering=8 << 20) as f:
                write_cog(f, self._fd, levels, tags, block=BLOCKSIZE, spp=self.profile["count"])
            os.replace(out_tmp, self.path)
        except BaseException as err:  # Ctrl-C / SIGTERM during the assembly too: no staging file left
            out_tmp.unlink(missing_ok=True)
            if _is_disk_error(err):
                raise _wrap_oserror(err if isinstance(err, OSError) else OSError(str(err)), self.path) from err
            raise
        log.info("wrote %s", self.path)

    def _cleanup(self) -> None:
        if self._chain is not None:
            self._chain.shutdown(wait=True, cancel_futures=True)
            self._chain = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
