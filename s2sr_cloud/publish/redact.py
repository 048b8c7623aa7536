"""Keep credentials out of logs and published documents.

URLs may carry secrets in their user-info (``https://user:password@host``) or query
(SAS tokens ``sig=…``, presigned ``X-Amz-Signature=…``, ``token=…``). :func:`redact`
masks them for logs and error messages; :func:`strip_credentials` removes them for
anything that is written into a STAC document or used as an href.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Query parameters that carry a secret (compared lower-case).
SECRET_PARAMS = frozenset({
    "sig", "signature", "se", "st", "sp", "sv", "sr", "skoid", "sktid", "skt", "ske", "sks", "skv",
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "awsaccesskeyid",
    "token", "access_token", "api_key", "apikey", "key", "password", "secret", "subscription-key",
})
MASK = "***"


def _netloc(host: str | None, port: int | None) -> str:
    return f"{host or ''}:{port}" if port else host or ""


def redact(url: str) -> str:
    """``url`` with any password and secret query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    netloc = _netloc(parts.hostname, port)
    if parts.username or parts.password:
        netloc = f"{parts.username or ''}:{MASK}@{netloc}" if parts.password else f"{MASK}@{netloc}"
    query = [(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), parts.fragment))


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """``text`` (an error message…) with every URL in it passed through :func:`redact`."""
    return _URL.sub(lambda m: redact(m.group(0)), text)


def strip_credentials(url: str) -> str:
    """``url`` without user-info and without secret query parameters."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in SECRET_PARAMS]
    return urlunsplit((parts.scheme, _netloc(parts.hostname, parts.port), parts.path, urlencode(query), parts.fragment))


def credentials(url: str) -> tuple[str, str] | None:
    """(user, password) from the URL's user-info, or None."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    from urllib.parse import unquote

    return unquote(parts.username), unquote(parts.password or "")
