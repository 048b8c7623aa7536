"""Windowed reads of an item's per-band rasters (COG over HTTP/S3, or local files).

:class:`ItemSource` is the :class:`~s2sr_cloud.sr.SceneSource` of one STAC item: each
band is read at its native resolution, only the window asked for (GDAL fetches only the
COG blocks under it), converted to the pre-04.00 DN scale, 0 kept as nodata. Datasets
stay open for the life of the source, so halo rows shared by neighbouring blocks come
from GDAL's caches. Signed hrefs are re-signed shortly before they expire. rasterio
errors become :class:`~s2sr_cloud.errors.RasterReadError` with the band, the (redacted)
href and what to do.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from contextlib import ExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..bands import GROUPS, harmonise
from ..errors import BoaOffsetWarning, CRSMismatch, RasterReadError
from .env import HttpParams, gdal_env, s3_read_credentials

if TYPE_CHECKING:
    from ..catalog.assets import AssetRef
    from ..catalog.signing import SignedHref, Signer
    from ..grid import ItemGrid

log = logging.getLogger(__name__)

#: Re-sign an href when its signature ends within this many seconds.
RESIGN_MARGIN_S = 300.0
#: Bands of one resolution group read at once (one thread per band).
READ_THREADS = 6
_HTTP_CODE = re.compile(r"HTTP (?:response )?code:? ?(\d{3})|HTTP error code ?: ?(\d{3})", re.I)
_HINTS = {
    "403": "access denied (HTTP 403): the href may need signing or credentials, or its signature expired",
    "404": "not found (HTTP 404): the item points at a file that does not exist",
    "429": "rate limited (HTTP 429) after retries: wait and run again",
}


def _http_code(msg: str) -> str | None:
    m = _HTTP_CODE.search(msg)
    return (m.group(1) or m.group(2)) if m else None


def read_error(err: Exception, band: str, href: str) -> RasterReadError:
    """A :class:`RasterReadError` for a failed open/read of ``band``."""
    from ..catalog.signing import redact

    msg = str(err)
    low = msg.lower()
    code = _http_code(msg)
    transient = True  # worth another attempt on a cluster (batch retries only these)
    if code in _HINTS:
        what = _HINTS[code]
        transient = code == "429"
    elif code and code.startswith("5"):
        what = f"server error (HTTP {code}) after retries: try again later"
    elif "timed out" in low or "timeout" in low:
        what = "the server was too slow (timeout) after retries: try again, or raise the timeouts"
    elif any(s in low for s in ("could not connect", "failed to connect", "connection refused")):
        what = "cannot connect to its server (connection refused): is the server up and the href right?"
    elif "could not resolve host" in low:
        what, transient = "its host name does not resolve: check the href (or the network's DNS)", False
    elif "no such file" in low or "does not exist" in low:
        what, transient = "the file does not exist: the item points at a missing file", False
    else:
        what, transient = f"unreadable ({msg.strip()[:200]}): the file may be truncated or corrupt", False
    out = RasterReadError(f"band {band} ({redact(href)}): {what}")
    out.transient = transient  # type: ignore[attr-defined]
    return out


#: Hosts (host, port) a TCP connection reached in this process: checked once each.
_REACHED: set[tuple[str, int]] = set()


def check_connect(href: str, band: str, http: HttpParams) -> None:
    """Fail fast on a refused connection to an ``http(s)`` href's server.

    GDAL retries a refused connection like a 5xx answer, with a growing delay (about 50 s with
    the default retries) before the error reaches the user; a refused TCP connection is usually
    a wrong port or a server that is down. A few quick attempts (``retry_delay_s``, doubling,
    at most 3) tell a restarting server from an absent one. Skipped behind a proxy, for other
    schemes and for hosts already reached; timeouts and DNS errors are left to GDAL."""
    import socket
    import time
    from urllib.parse import urlsplit

    from ..settings import http_proxy_configured

    parts = urlsplit(href)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    try:
        key = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except ValueError:  # a malformed port: GDAL's message says so
        return
    if key in _REACHED or http_proxy_configured():
        return
    delay = max(0.05, http.retry_delay_s)
    for attempt in range(min(3, http.max_retry + 1)):
        if attempt:
            time.sleep(delay)
            delay *= 2
        try:
            socket.create_connection(key, timeout=http.connect_timeout_s).close()
        except ConnectionRefusedError as err:
            last: Exception = err
            log.debug("connection to %s:%d refused (attempt %d)", *key, attempt + 1)
            continue
        except OSError:  # a timeout, an unreachable network, DNS: GDAL retries and words it
            return
        _REACHED.add(key)
        return
    raise read_error(OSError(f"connection refused: {last}"), band, href)


class ItemSource:
    """Per-band windowed reader of one item, on the item's 10 m grid.

    Args:
        assets: band → :class:`AssetRef` for at least the 12 bands the nets need.
        grid: the item's 10 m grid (shape, CRS, transform).
        signer: turns a published href into a readable one.
        http: network parameters (and credentials) for GDAL.
    """

    def __init__(
        self, assets: Mapping[str, AssetRef], grid: ItemGrid, *, signer: Signer | None = None,
        http: HttpParams | None = None,
    ) -> None:
        from ..catalog.signing import no_signer

        self.assets = dict(assets)
        self.grid = grid
        self.signer = signer or no_signer
        self.http = http or HttpParams()
        self._stack = ExitStack()
        self._ds: dict[str, Any] = {}
        self._signed: dict[str, SignedHref] = {}
        self._offsets: dict[str, tuple[int, int]] = {}
        self._pool: Any = None
        self._offset_checked = False
        self._aws: dict[str, str] | None = None

    @property
    def shape10(self) -> tuple[int, int]:
        return self.grid.shape

    def __enter__(self) -> ItemSource:
        if any(a.href.startswith("s3://") for a in self.assets.values()):
            self._aws = s3_read_credentials(self.http)  # once: may ask a container/instance role
        self._stack.enter_context(gdal_env(self.http, aws=self._aws))
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close every dataset and leave the GDAL environment."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for ds in self._ds.values():
            ds.close()
        self._ds.clear()
        self._stack.close()

    def _open(self, band: str) -> Any:
        import rasterio
        from rasterio.errors import RasterioError

        from ..catalog.signing import vsi_path

        ref = self.assets[band]
        signed = self.signer(ref.href)
        check_connect(signed.href, band, self.http)
        try:
            ds = rasterio.open(vsi_path(signed.href))
        except (RasterioError, OSError) as err:
            raise read_error(err, band, signed.href) from err
        self._signed[band] = signed
        self._offsets[band] = self._check_grid(band, ds)
        return ds

    def _check_grid(self, band: str, ds: Any) -> tuple[int, int]:
        """Row/col offset of the band's grid against the item grid (whole pixels), checked."""
        from rasterio.crs import CRS

        res = self.assets[band].resolution
        a, _, c, _, e, f = self.grid.transform
        px = a * res / 10
        if ds.crs is None or CRS.from_user_input(self.grid.crs) != ds.crs:
            raise CRSMismatch(f"band {band} is in {ds.crs}, the item says {self.grid.crs}")
        t = ds.transform
        if abs(t.a - px) > 1e-6 * px or abs(t.e + px) > 1e-6 * px:
            raise CRSMismatch(f"band {band} has {t.a} m pixels; expected {px} m for a {res} m band")
        col = (c - t.c) / px
        row = (t.f - f) / px
        if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
            raise CRSMismatch(f"band {band}'s pixel grid is shifted by a fraction of a pixel from the 10 m grid")
        return (int(round(row)), int(round(col)))

    def _dataset(self, band: str) -> Any:
        ds = self._ds.get(band)
        signed = self._signed.get(band)
        if ds is not None and signed is not None and signed.expiring(RESIGN_MARGIN_S):
            log.info("re-signing the href of band %s before its signature expires", band)
            ds.close()
            ds = None
        if ds is None:
            ds = self._ds[band] = self._open(band)
        return ds

    def read_band(self, band: str, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Raw DN (h, w) of ``band`` for rows/cols in the band's own pixels (item-grid aligned)."""
        return self._read_open(band, self._dataset(band), rows, cols)

    def _read_open(self, band: str, ds: Any, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        from rasterio.errors import RasterioError
        from rasterio.windows import Window as RioWindow

        dr, dc = self._offsets[band]
        win = RioWindow(cols[0] + dc, rows[0] + dr, cols[1] - cols[0], rows[1] - rows[0])
        inside = win.col_off >= 0 and win.row_off >= 0 and win.col_off + win.width <= ds.width and win.row_off + win.height <= ds.height
        try:
            if inside:
                return np.asarray(ds.read(1, window=win))
            return np.asarray(ds.read(1, window=win, boundless=True, fill_value=0))
        except (RasterioError, OSError) as err:
            raise read_error(err, band, self._signed[band].href) from err

    def _check_offset(self, blue: np.ndarray) -> None:
        """Warn when the metadata say "remove the 1000 DN offset" but the pixels look shifted already.

        With the offset in the data, a valid DN below 1000 means a negative reflectance, which is
        rare; many of them mean the offset was applied before (a wrong flag or baseline).
        """
        ref = self.assets["B02"]
        valid = blue[blue != 0]
        if ref.offset_dn and valid.size >= 100 and float(np.mean(valid < ref.offset_dn)) > 0.01:
            warnings.warn(
                f"{float(np.mean(valid < ref.offset_dn)):.0%} of the valid B02 pixels are below "
                f"{ref.offset_dn} DN although the metadata ({ref.offset_reason}) say the BOA offset is "
                "still in the data; the output may be too dark. Check the item's processing baseline "
                "and offset flags", BoaOffsetWarning, stacklevel=2,
            )

    def _read_in_env(self, band: str, ds: Any, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        # rasterio keeps GDAL options thread-local outside the main thread: pool threads need their own
        with gdal_env(self.http, aws=self._aws):
            return self._read_open(band, ds, rows, cols)

    def read(self, res: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Bands of group ``res`` as float32 (C, h, w) DN on the pre-04.00 scale, 0 = nodata.

        Datasets are opened (and re-signed) here, then the bands are read in parallel threads
        (GDAL releases the GIL; one dataset per band, so no dataset is shared between threads).
        """
        bands = GROUPS[res]
        opened = [self._dataset(b) for b in bands]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="s2sr-read")
        raw = list(self._pool.map(lambda bd: self._read_in_env(bd[0], bd[1], rows, cols), zip(bands, opened, strict=True)))
        out = np.empty((len(bands), rows[1] - rows[0], cols[1] - cols[0]), dtype=np.float32)
        if res == 10 and not self._offset_checked:
            self._offset_checked = True
            self._check_offset(raw[bands.index("B02")])
        for i, (band, dn) in enumerate(zip(bands, raw, strict=True)):
            nod = self.assets[band].nodata
            if nod:
                dn = np.where(dn == nod, 0, dn)
            out[i] = harmonise(dn, self.assets[band].offset_dn)
        return out


def probe_grid(ref: AssetRef, *, signer: Signer | None = None, http: HttpParams | None = None) -> ItemGrid:
    """The 10 m grid read from a 10 m band's raster header (items without proj metadata)."""
    import rasterio
    from rasterio.errors import RasterioError

    from ..catalog.signing import no_signer, vsi_path
    from ..grid import ItemGrid

    signed = (signer or no_signer)(ref.href)
    check_connect(signed.href, ref.band, http or HttpParams())
    with gdal_env(http, aws=s3_read_credentials(http) if ref.href.startswith("s3://") else None):
        try:
            with rasterio.open(vsi_path(signed.href)) as ds:
                crs = ds.crs.to_string() if ds.crs else None
                t = ds.transform
                shape = (ds.height, ds.width)
        except (RasterioError, OSError) as err:
            raise read_error(err, ref.band, signed.href) from err
    if crs is None:
        raise CRSMismatch(f"band {ref.band} ({ref.href}) has no CRS; s2sr needs georeferenced rasters")
    return ItemGrid(crs, (t.a, t.b, t.c, t.d, t.e, t.f), shape)
