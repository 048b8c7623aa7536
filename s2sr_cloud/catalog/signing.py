"""Href signers and credential checks: the only module that handles credentials.

A signer turns a published asset href into a readable one and says until when it stays
readable. Readers call it again when that time comes close, so long runs re-sign.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

from ..errors import CatalogError, require

log = logging.getLogger(__name__)

_SECRET_QS = re.compile(r"([?&](?:sig|se|st|sp|sv|sr|skoid|sktid|skt|ske|sks|skv|X-Amz-[A-Za-z-]+|token)=)[^&]*", re.I)


@dataclass(frozen=True, slots=True)
class SignedHref:
    """A readable href and its expiry (None: does not expire)."""

    href: str
    expires: datetime | None = None

    def expiring(self, margin_s: float) -> bool:
        """True when the signature ends within ``margin_s`` seconds."""
        if self.expires is None:
            return False
        return (self.expires - datetime.now(UTC)).total_seconds() < margin_s


Signer = Callable[[str], SignedHref]


def redact(href: str) -> str:
    """Hide signature query parameters before logging or showing an href."""
    return _SECRET_QS.sub(r"\1***", href)


def no_signer(href: str) -> SignedHref:
    """Identity signer for public hrefs."""
    return SignedHref(href)


def planetary_computer_signer(href: str) -> SignedHref:
    """Sign an Azure Blob href with the ``planetary-computer`` package (SAS token).

    Tokens come from ``PC_SDK_SAS_URL`` (default: the Planetary Computer token endpoint),
    with ``PC_SDK_SUBSCRIPTION_KEY`` when set; the package caches them per container.
    """
    require("planetary_computer", "pc")
    from planetary_computer import sas

    parsed = urlparse(href)
    if not parsed.netloc.endswith(".blob.core.windows.net"):
        return SignedHref(href)
    account, container = sas.parse_blob_url(parsed)
    try:
        token = sas.get_token(account, container)
    except Exception as err:  # requests / pydantic errors from the SDK
        raise CatalogError(
            f"could not get a Planetary Computer SAS token for {account}/{container}: {err}. "
            "Check the network, or set PC_SDK_SUBSCRIPTION_KEY"
        ) from err
    signed = token.sign(href.split("?", 1)[0])
    return SignedHref(signed.href, signed.expiry)


#: Environment variables that give CDSE S3 access (see docs/stac.md).
from ..settings import CDSE_ENDPOINT, CDSE_KEY_VARS  # noqa: E402,F401 - re-exported


def cdse_s3_options() -> dict[str, str]:
    """GDAL options for ``/vsis3/`` reads from CDSE's ``eodata`` bucket, from user credentials.

    Raises:
        CatalogError: no credentials are set; the message says what is needed.
    """
    from .. import settings

    creds = settings.cdse_credentials()
    if creds is not None:
        key, secret = creds
        return {
            "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_S3_ENDPOINT": settings.cdse_s3_endpoint(),
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_HTTPS": settings.cdse_s3_https(),
            "AWS_REGION": "default",
        }
    raise CatalogError(
        "CDSE serves Sentinel-2 as JPEG 2000 on s3://eodata, which needs credentials: create "
        "S3 keys at https://eodata-s3keysmanager.dataspace.copernicus.eu and set "
        "CDSE_S3_ACCESS_KEY and CDSE_S3_SECRET_KEY (reads then go through GDAL's JP2 driver, "
        "much slower than COG). Or use --catalog earth-search, which needs no credentials"
    )


#: Object store URL schemes and their GDAL virtual file systems.
VSI_PREFIXES = {"s3://": "/vsis3/", "gs://": "/vsigs/", "az://": "/vsiaz/"}


def vsi_path(href: str) -> str:
    """GDAL path of an href: ``https://`` → ``/vsicurl/``, ``s3://`` → ``/vsis3/``, ``gs://`` →
    ``/vsigs/``, ``az://`` → ``/vsiaz/``; local as is."""
    if href.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    for scheme, prefix in VSI_PREFIXES.items():
        if href.startswith(scheme):
            return prefix + href[len(scheme):]
    if href.startswith("file://"):
        return href[7:]
    return href


def signer_for(name: str | None) -> Signer:
    """The signer of a profile's ``signer`` field."""
    if name == "planetary-computer":
        return planetary_computer_signer
    return no_signer
