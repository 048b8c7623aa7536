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


def boto3_credentials() -> dict[str, str] | None:
    """Frozen credentials from boto3's chain — environment, shared files and profiles, SSO, web
    identity, ECS/EKS container credentials, EC2 instance roles — or None (no boto3, none found).

    Asked only when an ``s3://`` href is read without credentials in the environment, so public
    HTTPS reads never wait on (or send traffic to) an instance metadata service. Not cached:
    boto3 refreshes temporary credentials itself; each item source asks once.
    """
    try:
        import boto3
    except ImportError:
        return None
    try:
        creds = boto3.Session().get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
    except Exception:  # noqa: BLE001 - a broken profile or an unreachable role endpoint: unsigned
        import logging

        logging.getLogger(__name__).debug("boto3 found no usable AWS credentials", exc_info=True)
        return None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        return None
    out = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        out["AWS_SESSION_TOKEN"] = frozen.token
    return out


def s3_read_credentials(params: HttpParams | None = None) -> dict[str, str] | None:
    """Credentials to sign ``s3://`` reads with when the environment has none: boto3's chain
    (:func:`boto3_credentials`), unless ``S2SR_S3_UNSIGNED`` or ``params`` bring their own.
    Call it once per source (it may ask a container or instance credential endpoint)."""
    from ..settings import aws_credentials_present, s3_unsigned

    if s3_unsigned() or aws_credentials_present() or any(k in (params.extra or {}) for k in _AWS_KEYS
                                                            if params is not None):
        return None
    return boto3_credentials()


def gdal_env(params: HttpParams | None = None, *, aws: Mapping[str, str] | None = None) -> Any:
    """A ``rasterio.Env`` with :func:`gdal_options`; use it around every raster open/read.

    S3 credentials in ``params.extra`` or ``aws`` (what :func:`s3_read_credentials` found: boto3's
    chain, container and instance roles included) go through a rasterio ``AWSSession`` (rasterio
    refuses them as plain options); that needs boto3 (``pip install '.[s3]'``).
    """
    import rasterio

    opts = gdal_options(params)
    creds = {k: str(opts.pop(k)) for k in _AWS_KEYS if k in opts}
    if not creds and aws:
        opts.pop("AWS_NO_SIGN_REQUEST", None)
        creds = dict(aws)
    if not creds:
        return rasterio.Env(**opts)
    from ..errors import require

    require("boto3", "s3")
    from rasterio.session import AWSSession

    from ..settings import aws_region

    session = AWSSession(
        aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=creds.get("AWS_SESSION_TOKEN"), region_name=opts.pop("AWS_REGION", None) or aws_region(),
        endpoint_url=opts.pop("AWS_S3_ENDPOINT", None), aws_unsigned=False,
    )
    return rasterio.Env(session=session, **opts)
