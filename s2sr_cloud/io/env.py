"""The one place that configures GDAL/rasterio for reading rasters over HTTP and S3.

:func:`gdal_env` builds a ``rasterio.Env`` from an :class:`HttpParams`: no directory
listing on open, merged range requests, retries with exponential backoff on 429/5xx
(GDAL multiplies the delay by 2–2.5 per retry), connect/total/low-speed timeouts, and
an in-memory cache of fetched ranges (``VSI_CACHE``) plus GDAL's block cache, so that
the halo rows re-read by neighbouring blocks cost no second request. No other module
creates a ``rasterio.Env``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: GDAL options for cloud reads; values here are the defaults of :class:`HttpParams`.
GDAL_CLOUD_DEFAULTS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",
    "GDAL_HTTP_RETRY_CODES": "429,500,502,503,504",
    "AWS_NO_SIGN_REQUEST": "YES",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpParams:
    """Network behaviour of raster reads."""

    max_retry: int = 5
    """Retries of a failed request (HTTP 429/5xx, connection errors)."""
    retry_delay_s: float = 1.0
    """First delay between retries; GDAL grows it about 2x per retry."""
    timeout_s: int = 60
    """Total time one request may take."""
    connect_timeout_s: int = 10
    """Time to open a connection."""
    low_speed_time_s: int = 30
    """Abort a transfer slower than ``low_speed_limit`` bytes/s for this long."""
    low_speed_limit: int = 1024
    """Bytes per second below which a transfer counts as stalled."""
    vsi_cache_mb: int = 64
    """Per-file cache of fetched ranges."""
    block_cache_mb: int = 512
    """GDAL raster block cache."""
    extra: Mapping[str, str] | None = None
    """More GDAL options (credentials of one catalog, e.g. CDSE S3)."""


def gdal_options(params: HttpParams | None = None) -> dict[str, Any]:
    """The GDAL configuration options for ``params`` as a dict."""
    p = params or HttpParams()
    opts: dict[str, Any] = dict(GDAL_CLOUD_DEFAULTS)
    opts.update({
        "GDAL_HTTP_MAX_RETRY": str(p.max_retry),
        "GDAL_HTTP_RETRY_DELAY": str(p.retry_delay_s),
        "GDAL_HTTP_TIMEOUT": str(p.timeout_s),
        "GDAL_HTTP_CONNECTTIMEOUT": str(p.connect_timeout_s),
        "GDAL_HTTP_LOW_SPEED_TIME": str(p.low_speed_time_s),
        "GDAL_HTTP_LOW_SPEED_LIMIT": str(p.low_speed_limit),
        "VSI_CACHE_SIZE": str(p.vsi_cache_mb * 1024 * 1024),
        "GDAL_CACHEMAX": p.block_cache_mb * 1024 * 1024,
    })
    from ..settings import aws_credentials_present

    if aws_credentials_present():  # sign S3 reads (requester-pays / private buckets)
        opts.pop("AWS_NO_SIGN_REQUEST", None)
    if p.extra:
        opts.update(p.extra)
        if "AWS_ACCESS_KEY_ID" in p.extra:
            opts.pop("AWS_NO_SIGN_REQUEST", None)
    return opts


_AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def gdal_env(params: HttpParams | None = None) -> Any:
    """A ``rasterio.Env`` with :func:`gdal_options`; use it around every raster open/read.

    S3 credentials in ``params.extra`` go through a rasterio ``AWSSession`` (rasterio refuses
    them as plain options); that needs boto3 (``pip install 's2sr-cloud[s3]'``).
    """
    import rasterio

    opts = gdal_options(params)
    creds = {k: str(opts.pop(k)) for k in _AWS_KEYS if k in opts}
    if not creds:
        return rasterio.Env(**opts)
    from ..errors import require

    require("boto3", "s3")
    from rasterio.session import AWSSession

    session = AWSSession(
        aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=creds.get("AWS_SESSION_TOKEN"), region_name=opts.pop("AWS_REGION", None),
        endpoint_url=opts.pop("AWS_S3_ENDPOINT", None), aws_unsigned=False,
    )
    return rasterio.Env(session=session, **opts)
