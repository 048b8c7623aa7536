"""Catalog profiles, asset lookup, radiometry rules, signing and search on loopback APIs."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pystac
import pytest

from s2sr_cloud.catalog.assets import band_assets, boa_offset, find_asset_key
from s2sr_cloud.catalog.presets import (
    CDSE,
    EARTH_SEARCH,
    PLANETARY_COMPUTER,
    profile_for_item,
    resolve_catalog,
)
from s2sr_cloud.catalog.search import (
    SearchParams,
    parse_bbox,
    parse_interval,
    search,
    search_items,
)
from s2sr_cloud.catalog.signing import (
    cdse_s3_options,
    planetary_computer_signer,
    redact,
)
from s2sr_cloud.errors import CatalogError, MissingAsset, NoItemsFound

from ._fx_stac import STAC_DATA

ES = STAC_DATA / "earth-search-v1"
PC = STAC_DATA / "planetary-computer"


def _item(path: Path, i: int = 0) -> pystac.Item:
    d = json.loads(path.read_text())
    return pystac.Item.from_dict(d["features"][i] if d.get("type") == "FeatureCollection" else d)


@pytest.mark.parametrize(
    ("path", "profile", "b05_key", "offset", "why"),
    [
        (ES / "items" / "S2A_13TDE_20231008_0_L2A.json", EARTH_SEARCH, "rededge1", 0, "boa_offset_applied"),
        (ES / "items" / "S2B_20EPT_20250731_0_L2A.json", EARTH_SEARCH, "rededge1", 0, "boa_offset_applied"),
        (ES / "items" / "S2B_T20EPT_20250731T131905_L2A.json", EARTH_SEARCH, "rededge1", 1000, "baseline 05.11"),
        (PC / "items" / "two-sentinel-2-items-13TDE-2024-08.json", PLANETARY_COMPUTER, "B05", 1000, "baseline 05.11"),
        (PC / "items" / "S2A_MSIL2A_20190101T000001_R116_T60VUK_20201007T214652.json", PLANETARY_COMPUTER, "B05", 0, "baseline 02.12"),
        (STAC_DATA / "cdse" / "items" / "S2A_MSIL2A_20220217T183431_N0510_R027_T13VEK_20240516T022440.json", CDSE, "B05_20m", 1000, "baseline 05.10"),
    ],
)
def test_assets_and_offsets_of_real_items(path: Path, profile, b05_key: str, offset: int, why: str) -> None:
    refs = band_assets(_item(path), profile)
    assert len(refs) == 12
    assert refs["B05"].key == b05_key
    assert {r.offset_dn for r in refs.values()} == {offset}
    assert why in refs["B05"].offset_reason
    assert refs["B01"].resolution == 60 and refs["B8A"].resolution == 20


def test_generic_profile_finds_bands_by_common_name_and_wavelength() -> None:
    # An ES item read with ESA keys: no key matches, common names (+ wavelength for rededge) do.
    item = _item(ES / "items" / "S2A_13TDE_20231008_0_L2A.json")
    refs = band_assets(item, resolve_catalog("https://stac.example.invalid/v1", asset_map="esa"))
    assert refs["B06"].key == "rededge2" and refs["B07"].key == "rededge3"
    assert refs["B04"].key == "red"  # the COG, not its `red-jp2` twin
    # raster-bands rule still honours earthsearch:boa_offset_applied over raster:bands offset -0.1
    assert refs["B04"].offset_dn == 0


def test_offset_rules_edge_cases() -> None:
    props = {"earthsearch:boa_offset_applied": True, "s2:processing_baseline": "05.09"}
    assert boa_offset(props, {"href": "s3://sentinel-s2-l2a/x/B04.jp2"}, "earth-search")[0] == 1000
    assert boa_offset({"s2:processing_baseline": "03.01"}, {}, "baseline")[0] == 0
    rb = {"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}
    assert boa_offset({}, rb, "raster-bands")[0] == 1000
    assert boa_offset({}, {"raster:bands": [{"scale": 0.0001, "offset": 0}]}, "raster-bands")[0] == 0


def test_missing_band_names_what_is_missing() -> None:
    d = json.loads((ES / "items" / "S2A_13TDE_20231008_0_L2A.json").read_text())
    for k in ("nir09", "nir09-jp2"):
        d["assets"].pop(k)
    with pytest.raises(MissingAsset, match=r"B09 \(key 'nir09'\)"):
        band_assets(pystac.Item.from_dict(d), EARTH_SEARCH)


def test_find_asset_key_never_uses_band_name_alone() -> None:
    assets = {"x": {"eo:bands": [{"name": "B04"}]}}
    assert find_asset_key("B04", assets, {}) is None


def test_resolve_catalog_forms(tmp_path: Path) -> None:
    assert resolve_catalog(None).name == "earth-search"
    assert resolve_catalog("pc").signer == "planetary-computer"
    assert resolve_catalog("https://planetarycomputer.microsoft.com/api/stac/v1/").name == "planetary-computer"
    assert resolve_catalog("sample").static
    mirror = resolve_catalog("planetary-computer=http://127.0.0.1:9/stac")
    assert mirror.url == "http://127.0.0.1:9/stac" and mirror.offset_rule == "baseline"
    assert resolve_catalog("https://x.invalid/stac", asset_map="B04=red").asset_keys == {"B04": "red"}
    with pytest.raises(CatalogError, match="unknown catalog"):
        resolve_catalog("nosuch")
    with pytest.raises(CatalogError, match="BAND=KEY"):
        resolve_catalog("sample", asset_map="B04")


def test_profile_for_item() -> None:
    assert profile_for_item(json.loads((ES / "items" / "S2A_13TDE_20231008_0_L2A.json").read_text())).name == "earth-search"
    pc = json.loads((PC / "items" / "two-sentinel-2-items-13TDE-2024-08.json").read_text())["features"][0]
    assert profile_for_item(pc).name == "planetary-computer"
    cdse = json.loads(next((STAC_DATA / "cdse" / "items").glob("*.json")).read_text())
    assert profile_for_item(cdse).name == "cdse"


def test_parsers() -> None:
    assert parse_bbox("-75.7, 37.7,-75.6,37.8") == (-75.7, 37.7, -75.6, 37.8)
    with pytest.raises(CatalogError):
        parse_bbox("1,2,3")
    with pytest.raises(CatalogError):
        parse_bbox("10,0,5,1")
    start, end = parse_interval("2023-11-01/..")
    assert start == datetime(2023, 11, 1, tzinfo=UTC) and end is None
    with pytest.raises(CatalogError):
        parse_interval("yesterday")


def test_cdse_without_credentials_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("CDSE_S3_ACCESS_KEY", "CDSE_S3_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(CatalogError, match="CDSE_S3_ACCESS_KEY"):
        cdse_s3_options()
    monkeypatch.setenv("CDSE_S3_ACCESS_KEY", "k")
    monkeypatch.setenv("CDSE_S3_SECRET_KEY", "s")
    opts = cdse_s3_options()
    assert opts["AWS_S3_ENDPOINT"] == "eodata.dataspace.copernicus.eu" and opts["AWS_VIRTUAL_HOSTING"] == "FALSE"


# --- search on loopback STAC APIs (rustac) ------------------------------------------------
def test_search_pages_and_checks_cloud_client_side(stac_apis: dict[str, str]) -> None:
    prof = resolve_catalog(f"earth-search={stac_apis['earth-search']}")
    everywhere = (-180.0, -90.0, 180.0, 90.0)
    all_l2a = list(search(prof, SearchParams(bbox=everywhere, limit=100, page_size=3)))
    assert len(all_l2a) > 6  # more than two pages of 3: the client followed `next` links
    assert {i.collection_id for i in all_l2a} == {"sentinel-2-l2a"}
    assert len({i.id for i in all_l2a}) == len(all_l2a)
    # rustac has no query/filter extension: the cloud check is client-side
    clear = search_items(prof, SearchParams(bbox=everywhere, max_cloud=10, limit=100, page_size=3))
    assert clear and all(i.properties["eo:cloud_cover"] <= 10 for i in clear)
    assert len(clear) < len(all_l2a)
    c1 = search_items(prof, SearchParams(bbox=everywhere, collections=("sentinel-2-c1-l2a",)))
    assert [i.id for i in c1] == ["S2B_T20EPT_20250731T131905_L2A"]


def test_search_bbox_datetime_and_limit(stac_apis: dict[str, str]) -> None:
    prof = resolve_catalog(f"planetary-computer={stac_apis['planetary-computer']}")
    items = search_items(prof, SearchParams(bbox=(-106.0, 40.0, -105.0, 41.0), datetime="2024-08-01/2024-08-31"))
    assert sorted(i.id for i in items) == [
        "S2A_MSIL2A_20240823T174901_R141_T13TDE_20240824T013055",
        "S2B_MSIL2A_20240825T173909_R098_T13TDE_20240825T215747",
    ]
    assert len(search_items(prof, SearchParams(bbox=(-180, -90, 180, 90), limit=2, page_size=1))) == 2


def test_empty_search_raises(stac_apis: dict[str, str]) -> None:
    prof = resolve_catalog(f"earth-search={stac_apis['earth-search']}")
    with pytest.raises(NoItemsFound, match="widen"):
        search_items(prof, SearchParams(bbox=(10.0, 10.0, 10.1, 10.1)))


def test_unreachable_api_is_a_catalog_error() -> None:
    from ._fx_stac import free_port

    prof = resolve_catalog(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(CatalogError, match="cannot reach"):
        search_items(prof, SearchParams(bbox=(0.0, 0.0, 1.0, 1.0)))


def test_sample_catalog_offline() -> None:
    items = search_items(resolve_catalog("sample"), SearchParams(bbox=(-75.71, 37.725, -75.69, 37.745)))
    assert [i.id for i in items] == ["S2A_18SVG_20160112_0_L1C"]
    assert items[0].properties["processing:level"] == "L1C"
    assert Path(items[0].assets["red"].href).is_file()


# --- Planetary Computer signing against a loopback token endpoint ---------------------------
class _TokenHandler(BaseHTTPRequestHandler):
    def log_message(self, *a: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.calls.append(self.path)  # type: ignore[attr-defined]
        expiry = datetime.now(UTC) + timedelta(seconds=self.server.ttl)  # type: ignore[attr-defined]
        body = json.dumps({"msft:expiry": expiry.isoformat(), "token": f"st=x&se=y&sig=secret{len(self.server.calls)}"}).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_planetary_computer_signing_and_resigning(monkeypatch: pytest.MonkeyPatch) -> None:
    import planetary_computer.sas as sas
    from planetary_computer.settings import Settings

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    srv.calls, srv.ttl = [], 30  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("PC_SDK_SAS_URL", f"http://127.0.0.1:{srv.server_address[1]}/token")
    Settings.get.cache_clear()
    monkeypatch.setattr(sas, "TOKEN_CACHE", {})
    try:
        item = _item(PC / "items" / "two-sentinel-2-items-13TDE-2024-08.json")
        href = item.assets["B04"].href
        first = planetary_computer_signer(href)
        assert first.href.startswith(href + "?") and "sig=secret1" in first.href
        assert srv.calls == ["/token/sentinel2l2a01/sentinel2-l2"]  # type: ignore[attr-defined]
        assert first.expiring(300)  # a 30 s token is "about to expire" for a long run
        second = planetary_computer_signer(first.href)  # re-signing strips the old token
        assert "sig=secret2" in second.href and second.href.count("?") == 1
        assert "secret" not in redact(second.href)
        assert planetary_computer_signer("http://127.0.0.1:1/x.tif").href == "http://127.0.0.1:1/x.tif"
    finally:
        Settings.get.cache_clear()
        srv.shutdown()
        srv.server_close()


def test_query_extension_on_an_api_that_conforms(pgstac_api: str) -> None:
    """stac-fastapi-pgstac advertises `query`: the cloud filter runs server-side (and is re-checked)."""
    import uuid

    import requests

    from ._fx_stac import rewrite_hrefs

    cid = f"es-l2a-{uuid.uuid4().hex[:8]}"
    coll = json.loads((ES / "collections" / "sentinel-2-l2a.json").read_text())
    coll.update(id=cid, links=[])
    assert requests.post(f"{pgstac_api}/collections", json=coll, timeout=30).status_code in (200, 201)
    feats = [f for p in sorted((ES / "search").glob("*.json")) for f in json.loads(p.read_text())["features"]
             if f["collection"] == "sentinel-2-l2a"]
    feats = [dict(rewrite_hrefs(f, "http://127.0.0.1:9/none"), collection=cid, links=[]) for f in feats]
    r = requests.post(f"{pgstac_api}/collections/{cid}/items", json={"type": "FeatureCollection", "features": feats}, timeout=60)
    assert r.status_code in (200, 201), r.text
    prof = resolve_catalog(pgstac_api)
    everywhere = (-180.0, -90.0, 180.0, 90.0)
    params = SearchParams(bbox=everywhere, max_cloud=10, limit=100, collections=(cid,))
    got = search_items(prof, params)
    expect = sorted(f["id"] for f in feats if f["properties"]["eo:cloud_cover"] <= 10)
    assert sorted(i.id for i in got) == expect
    # what the server returns for the same `query` alone (no client-side check): already filtered
    body = {"collections": [cid], "query": {"eo:cloud_cover": {"lte": 10}}, "limit": 100}
    server = requests.post(f"{pgstac_api}/search", json=body, timeout=30).json()["features"]
    assert sorted(f["id"] for f in server) == expect
    requests.delete(f"{pgstac_api}/collections/{cid}", timeout=30)


@pytest.mark.parametrize(
    ("path", "profile", "key"),
    [
        (ES / "items" / "S2A_13TDE_20231008_0_L2A.json", EARTH_SEARCH, "scl"),
        (ES / "items" / "S2B_T20EPT_20250731T131905_L2A.json", EARTH_SEARCH, "scl"),
        (PC / "items" / "S2A_MSIL2A_20190101T000001_R116_T60VUK_20201007T214652.json", PLANETARY_COMPUTER, "SCL"),
        (STAC_DATA / "cdse" / "items" / "S2A_MSIL2A_20220217T183431_N0510_R027_T13VEK_20240516T022440.json", CDSE, "SCL_20m"),
    ],
)
def test_scl_asset_of_real_items(path: Path, profile, key: str) -> None:  # type: ignore[no-untyped-def]
    from s2sr_cloud.catalog.assets import scl_asset

    ref = scl_asset(_item(path), profile)
    assert ref is not None and ref.key == key and ref.resolution == 20 and ref.offset_dn == 0
    assert not ref.href.lower().endswith(".jp2") or profile is CDSE  # the COG, not Earth Search's scl-jp2


def test_no_scl_asset_on_l1c_items() -> None:
    from s2sr_cloud.catalog.assets import scl_asset
    from s2sr_cloud.catalog.presets import resolve_catalog, sample_catalog_path

    item = pystac.Item.from_file(str(sample_catalog_path().parent / "sentinel-2-l1c" / "S2A_18SVG_20160112_0_L1C"
                                     / "S2A_18SVG_20160112_0_L1C.json"))
    assert scl_asset(item, resolve_catalog("sample")) is None
