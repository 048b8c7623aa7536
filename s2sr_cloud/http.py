"""HTTP sessions with retries: every request the project makes goes through :func:`session`.

Retries follow urllib3's :class:`~urllib3.util.retry.Retry`: HTTP 429 and 5xx answers and
connection errors are retried with exponential backoff (``backoff * 2**n`` seconds,
honouring ``Retry-After``), then the last answer is returned as is, so callers still see
the status and report it. Raster reads go through GDAL, which has its own retry options
(:mod:`s2sr_cloud.io.env`).
"""

from __future__ import annotations

from typing import Any

#: Statuses worth another try.
RETRY_STATUSES = (429, 500, 502, 503, 504)
#: Retries of one request, and the first backoff delay in seconds.
RETRIES = 4
BACKOFF_S = 0.25


def retry_policy(retries: int | None = None, backoff_s: float | None = None) -> Any:
    """The :class:`urllib3.util.retry.Retry` used by every session (all methods: the
    Transactions API's POST of an existing item answers 409, which callers handle)."""
    from urllib3.util.retry import Retry

    from . import settings

    n = retries if retries is not None else settings.http_retries(RETRIES)
    return Retry(
        total=n, connect=n, read=n, status=n, other=0,
        backoff_factor=BACKOFF_S if backoff_s is None else backoff_s, backoff_max=30,
        status_forcelist=RETRY_STATUSES, allowed_methods=None, respect_retry_after_header=True,
        raise_on_status=False, raise_on_redirect=False,
    )


def mount_retries(sess: Any, retries: int | None = None, backoff_s: float | None = None) -> Any:
    """Mount a retrying adapter for ``http://`` and ``https://`` on a ``requests`` session."""
    from requests.adapters import HTTPAdapter

    adapter = HTTPAdapter(max_retries=retry_policy(retries, backoff_s))
    sess.mount("http://", adapter)
    sess.mount("https://", adapter)
    return sess


def session(retries: int | None = None, backoff_s: float | None = None) -> Any:
    """A new ``requests.Session`` with :func:`retry_policy` on http and https."""
    import requests

    return mount_retries(requests.Session(), retries, backoff_s)


def stac_api_io(timeout: float | None = None) -> Any:
    """A pystac-client ``StacApiIO`` with the same retry policy (searches and item pages)."""
    from pystac_client.stac_api_io import StacApiIO

    return StacApiIO(timeout=timeout, max_retries=retry_policy())
