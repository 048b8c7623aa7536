"""Retries on every HTTP session: a real loopback server answers 503/429 before 200."""

from __future__ import annotations

import pytest

from s2sr_cloud.catalog.search import load_item
from s2sr_cloud.errors import CatalogHTTPError

from ._fx_stac import RangeServer

VA_ID = "S2A_18SVG_20160112_0_L1C"


def test_item_fetch_retries_429_and_5xx(cog_server: RangeServer) -> None:
    url = f"{cog_server.prefix()}/sentinel-2-l1c/{VA_ID}/{VA_ID}.json"
    cog_server.fault(url, 503, 429, 502)
    item = load_item(url)
    assert item.id == VA_ID
    hits = [r for r in cog_server.log if r.path.endswith(f"{VA_ID}.json") and url.rsplit("/", 4)[1] in r.path]
    assert [r.status for r in hits] == [503, 429, 502, 200]


def test_item_fetch_gives_up_with_the_status(cog_server: RangeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S2SR_HTTP_RETRIES", "2")
    url = f"{cog_server.prefix()}/sentinel-2-l1c/{VA_ID}/{VA_ID}.json"
    cog_server.fault(url, 500, 500, 500, 500)
    with pytest.raises(CatalogHTTPError, match="HTTP 500") as info:
        load_item(url)
    assert info.value.status_code == 500


def test_transactions_session_retries(cog_server: RangeServer) -> None:
    """The Transactions API session carries the same retry policy (GET of a served file)."""
    from s2sr_cloud.publish.stores import LocalStore
    from s2sr_cloud.publish.targets import TransactionsTarget

    base = cog_server.prefix()
    target = TransactionsTarget(base, assets=LocalStore(cog_server.root))
    path = f"/sentinel-2-l1c/{VA_ID}/{VA_ID}.json"
    cog_server.fault(f"{base}{path}", 503, 503)
    resp = target._req("GET", path, ok=(200,))
    assert resp.status_code == 200 and resp.json()["id"] == VA_ID
