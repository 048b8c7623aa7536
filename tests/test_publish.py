"""Publishing: derived items + collection, to a folder, to S3 (moto) and to a STAC API (pgstac).

Inputs are real: the source item is an Earth Search v1 item (tests/data/stac), the COG is
made from a real BigEarthNet L2A patch with its own georeference (tests/data/bigearthnet;
its 20/60 m bands upsampled bilinearly to 10 m stand in for the super-resolved output).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from s2sr_cloud import __version__
from s2sr_cloud.bands import SR_BANDS
from s2sr_cloud.errors import PublishError
from s2sr_cloud.publish import (
    ProcessedScene,
    StaticTarget,
    TransactionsTarget,
    open_store,
    open_target,
)
from s2sr_cloud.publish.redact import redact, redact_text, strip_credentials
from s2sr_cloud.publish.stores import LocalStore, S3Store

DATA = Path(__file__).parent / "data"
PATCH = DATA / "bigearthnet"
SOURCE = DATA / "stac" / "earth-search-v1" / "items" / "S2A_13TDE_20231008_0_L2A.json"
ITEM_ID = "S2A_13TDE_20231008_0_L2A-s2sr"
Validate = Callable[[dict[str, Any]], None]
# A static catalog has no /search: pystac-client walks it and says so.
pytestmark = [pytest.mark.filterwarnings("ignore::pystac_client.warnings.FallbackToPystac"),
              pytest.mark.filterwarnings("ignore::pystac_client.warnings.NoConformsTo")]


def _models(tag: str = "v1") -> dict[str, dict[str, Any]]:
    def sha(s: str) -> str:
        return hashlib.sha256(s.encode()).hexdigest()

    return {net: {"name": f"dsen2_{net}_{tag}", "variant": "dsen2", "onnx_sha256": sha(f"{net}{tag}onnx"),
                  "checkpoint_sha256": sha(f"{net}{tag}ckpt"), "precision": "fp32"} for net in ("net20", "net60")}


@pytest.fixture(scope="session")
def sr_cog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8-band 10 m COG (SR_BANDS order) from a real L2A patch; georeference from its B02 file."""
    import rasterio

    from s2sr_cloud.io.cog import CogWriter
    from s2sr_cloud.ops import upsample

    stem = "S2A_MSIL2A_20170613T101031_87_48"
    with rasterio.open(PATCH / f"{stem}_B02.tif") as ref:
        crs, transform, shape = ref.crs, ref.transform, ref.shape
    arrays = []
    for band in SR_BANDS:
        with rasterio.open(PATCH / f"{stem}_{band}.tif") as src:
            lr = src.read(1).astype(np.float32)
        arrays.append(upsample(lr[None], shape[0] // lr.shape[0], shape)[0])
    out = tmp_path_factory.mktemp("run") / f"{stem}_sr10m.tif"
    with CogWriter(out, width=shape[1], height=shape[0], count=len(SR_BANDS), crs=crs, transform=transform,
                   descriptions=list(SR_BANDS)) as w:
        w.write(np.clip(np.rint(np.stack(arrays)), 1, 65535))
    return out


@pytest.fixture(scope="session")
def sr_cog_v2(sr_cog: Path) -> Path:
    """The same grid with other pixels (DN + 7): what another model would produce."""
    import rasterio

    from s2sr_cloud.io.cog import CogWriter

    with rasterio.open(sr_cog) as src:
        data, profile, desc = src.read(), src.profile, src.descriptions
    out = sr_cog.with_name("v2_" + sr_cog.name)
    with CogWriter(out, width=profile["width"], height=profile["height"], count=profile["count"],
                   crs=profile["crs"], transform=profile["transform"], descriptions=list(desc)) as w:
        w.write(data + 7)
    return out


@pytest.fixture
def scene(sr_cog: Path) -> ProcessedScene:
    import pystac

    from s2sr_cloud.publish.assets import scene_from_cog

    source = pystac.Item.from_dict(json.loads(SOURCE.read_text()))  # keeps its API self link
    return scene_from_cog(sr_cog, source, models=_models(), backend="onnxruntime-cpu", version=__version__)


def _read_band(href: str, band_index: int = 1) -> np.ndarray:
    import rasterio

    with rasterio.open(href) as ds:
        return ds.read(band_index)


def _check_pixels(scene: Any, band: str, item: Any) -> None:
    """The published ``reflectance`` asset holds ``band`` where its ``eo:bands`` say, as the COG does."""
    asset = item.assets["reflectance"]
    names = [b["name"] for b in asset.extra_fields["eo:bands"]]
    href = asset.get_absolute_href() or asset.href
    np.testing.assert_array_equal(_read_band(href, names.index(band) + 1),
                                  _read_band(str(scene.cog), scene.bands.index(band) + 1))


# --- the documents ------------------------------------------------------------------------
def test_item_and_collection_documents(scene: ProcessedScene, tmp_path: Path, stac_validate: Validate) -> None:
    from s2sr_cloud.publish.assets import prepare_assets
    from s2sr_cloud.publish.item import build_collection, build_item

    assets = prepare_assets(scene, tmp_path)
    item = build_item(scene, assets, "s2sr-test").to_dict(include_self_link=False, transform_hrefs=False)
    item["links"].append({"rel": "collection", "href": "../collection.json"})  # what a target adds
    stac_validate(item)
    p = item["properties"]
    assert item["id"] == ITEM_ID
    assert p["datetime"] == "2023-10-08T18:02:55.276000Z" and p["platform"] == "sentinel-2a"
    assert p["gsd"] == 10.0 and p["proj:code"] == "EPSG:32633" and p["proj:shape"] == [120, 120]
    assert p["proj:transform"] == [10.0, 0.0, 404400.0, 0.0, -10.0, 5342400.0]
    assert p["processing:software"] == {"s2sr-cloud": __version__,
                                        "dsen2_net20_v1": "sha256:" + _models()["net20"]["onnx_sha256"],
                                        "dsen2_net60_v1": "sha256:" + _models()["net60"]["onnx_sha256"]}
    assert _models()["net60"]["onnx_sha256"] in p["processing:lineage"]
    assert p["s2sr:models"]["net20"]["onnx_sha256"] == _models()["net20"]["onnx_sha256"]
    assert p["s2sr:backend"] == "onnxruntime-cpu" and "fp32" in p["processing:lineage"]
    derived = [ln["href"] for ln in item["links"] if ln["rel"] == "derived_from"]
    assert derived == ["https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items/S2A_13TDE_20231008_0_L2A"]
    assert set(item["assets"]) == {"reflectance", "preview"}  # the COG as written: no per-band rewrite
    refl = item["assets"]["reflectance"]
    assert refl["roles"] == ["data", "reflectance"] and [b["name"] for b in refl["eo:bands"]] == list(SR_BANDS)
    assert refl["eo:bands"][SR_BANDS.index("B05")]["common_name"] == "rededge"
    assert refl["raster:bands"] == [{"nodata": 0, "data_type": "uint16", "spatial_resolution": 10.0,
                                     "scale": 0.0001, "offset": 0.0}] * len(SR_BANDS)
    assert refl["file:size"] == scene.cog.stat().st_size
    for ext in ("eo", "raster", "projection", "file", "processing"):
        assert any(f"/{ext}/" in u for u in item["stac_extensions"]), ext
    assert item["assets"]["preview"]["type"] == "image/png"
    assert 13.6 < item["bbox"][0] < 13.8 and 48.1 < item["bbox"][1] < 48.3  # Austria, from the COG itself
    for a in assets:  # checksums are of the files
        assert a.checksum == "1220" + hashlib.sha256(a.path.read_bytes()).hexdigest()
    coll = build_collection("s2sr-test", [item])
    coll["links"] = []
    stac_validate(coll)
    assert coll["license"] == "other" and coll["extent"]["spatial"]["bbox"] == [item["bbox"]]
    assert set(coll["item_assets"]) == set(item["assets"])


def test_preview_png(scene: ProcessedScene, tmp_path: Path) -> None:
    import rasterio

    from s2sr_cloud.publish.assets import render_preview

    out = tmp_path / "p.png"
    render_preview(scene, out, size=64)
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):  # a PNG has no georeference, on purpose
        ds = rasterio.open(out)
    with ds:
        assert (ds.driver, ds.count, ds.dtypes[0], ds.shape) == ("PNG", 4, "uint8", (64, 64))
        rgba = ds.read()
    assert rgba[3].min() == 255 and rgba[:3].std() > 10  # all valid, real contrast
    assert not list(tmp_path.glob("*.aux.xml"))


@pytest.mark.parametrize(("url", "logged", "stored"), [
    ("https://user:s3cr3t@stac.example/api", "https://user:***@stac.example/api", "https://stac.example/api"),
    ("https://acct.blob.core.windows.net/c/x.tif?st=1&se=2&sig=abc%2Fdef&foo=1",
     "https://acct.blob.core.windows.net/c/x.tif?st=***&se=***&sig=***&foo=1",
     "https://acct.blob.core.windows.net/c/x.tif?foo=1"),
    ("https://h/x?X-Amz-Credential=AKIA&X-Amz-Signature=f00", "https://h/x?X-Amz-Credential=***&X-Amz-Signature=***",
     "https://h/x"),
    ("s3://bucket/prefix", "s3://bucket/prefix", "s3://bucket/prefix"),
])
def test_redaction(url: str, logged: str, stored: str) -> None:
    assert redact(url) == logged
    assert strip_credentials(url) == stored
    assert redact_text(f"Could not connect to '{url}': refused") == f"Could not connect to '{logged}': refused"


# --- local folder -------------------------------------------------------------------------
def test_local_catalog(scene: ProcessedScene, tmp_path: Path, stac_validate: Validate) -> None:
    import pystac
    import pystac_client

    root = tmp_path / "catalog"
    res = open_target(str(root)).publish(scene)
    assert res.status == "created"
    coll = pystac.Collection.from_file(str(root / "collection.json"))
    items = list(coll.get_items())
    assert [i.id for i in items] == [ITEM_ID]
    docs = [json.loads((root / name).read_text()) for name in ("catalog.json", "collection.json", f"{ITEM_ID}/{ITEM_ID}.json")]
    for doc in docs:
        stac_validate(doc)
        hrefs = [ln["href"] for ln in doc["links"] if ln["rel"] not in ("derived_from", "license")]
        hrefs += [a["href"] for a in doc.get("assets", {}).values()]
        assert all(h.startswith("./") or h.startswith("../") for h in hrefs), hrefs  # self-contained
    client = pystac_client.Client.open(str(root / "catalog.json"))  # a static catalog: walked, not queried
    found = list(client.get_items(ITEM_ID, recursive=True))
    assert [i.id for i in found] == [ITEM_ID]
    _check_pixels(scene, "B8A", found[0])
    # linked as written: the published COG is the output file itself (same inode), not a copy
    published = root / ITEM_ID / Path(found[0].assets["reflectance"].href).name
    assert published.stat().st_ino == scene.cog.stat().st_ino

    # same model again: skipped, one item; --overwrite: replaced, still one item, no stale files
    assert open_target(str(root)).publish(scene).status == "skipped"
    before = sorted(p.name for p in (root / ITEM_ID).iterdir())
    assert open_target(str(root)).publish(scene, overwrite=True).status == "updated"
    assert sorted(p.name for p in (root / ITEM_ID).iterdir()) == before
    assert len(list(pystac.Collection.from_file(str(root / "collection.json")).get_items())) == 1


# --- S3 (moto server) ---------------------------------------------------------------------
def test_s3_catalog(scene: ProcessedScene, s3_server: str, s3_bucket: str, stac_validate: Validate) -> None:
    import pystac_client

    from s2sr_cloud.publish.stores import s3_stac_io

    target = open_target(f"s3://{s3_bucket}/stac/s2sr", s3_endpoint=s3_server)
    assert target.publish(scene).status == "created"
    store = S3Store(f"s3://{s3_bucket}/stac/s2sr", endpoint=s3_server)
    keys = sorted(store.list_keys())
    assert "collection.json" in keys and f"{ITEM_ID}/{ITEM_ID}.json" in keys and len(keys) == 3 + 1 + 1
    # read back with pystac-client (s3:// hrefs read through boto3), then the COG through GDAL's /vsis3/
    client = pystac_client.Client.from_file(f"s3://{s3_bucket}/stac/s2sr/catalog.json", stac_io=s3_stac_io(s3_server))
    (item,) = list(client.get_items(ITEM_ID, recursive=True))
    coll = item.get_collection()
    assert coll is not None and coll.id == "sentinel-2-l2a-s2sr"
    stac_validate(coll.to_dict(transform_hrefs=False))
    stac_validate(store.get_json(f"{ITEM_ID}/{ITEM_ID}.json"))
    href = item.assets["reflectance"].get_absolute_href()
    assert href.startswith(f"s3://{s3_bucket}/stac/s2sr/{ITEM_ID}/")
    _check_pixels(scene, "B11", item)
    assert open_target(f"s3://{s3_bucket}/stac/s2sr", s3_endpoint=s3_server).publish(scene).status == "skipped"
    assert sorted(store.list_keys()) == keys


class _FailingStore(S3Store):
    """A real S3 store whose connection dies after ``n`` uploads (injected fault)."""

    def __init__(self, *a: Any, n: int = 1, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.left = n

    def put_file(self, key: str, path: Path, media_type: str) -> None:
        if self.left == 0:
            raise PublishError("injected fault: connection lost during upload")
        self.left -= 1
        super().put_file(key, path, media_type)


def test_s3_fault_midway_leaves_no_dangling_item(
    scene: ProcessedScene, sr_cog_v2: Path, s3_server: str, s3_bucket: str
) -> None:
    import dataclasses

    url = f"s3://{s3_bucket}/cat"
    # first publish fails after one COG: nothing at all is left
    with pytest.raises(PublishError, match="injected"):
        StaticTarget(_FailingStore(url, endpoint=s3_server, n=1)).publish(scene)
    store = S3Store(url, endpoint=s3_server)
    assert list(store.list_keys()) == []
    # a good item, then a re-publish with another model that dies midway: the old item stays whole
    StaticTarget(store).publish(scene)
    before = sorted(store.list_keys())
    other = dataclasses.replace(scene, models=_models("v2"), cog=sr_cog_v2)
    with pytest.raises(PublishError, match="injected"):  # the new COG never arrives
        StaticTarget(_FailingStore(url, endpoint=s3_server, n=0)).publish(other)
    assert sorted(store.list_keys()) == before
    item = store.get_json(f"{ITEM_ID}/{ITEM_ID}.json")
    assert item is not None and item["properties"]["s2sr:models"] == scene.models
    for a in item["assets"].values():
        assert store.exists(f"{ITEM_ID}/{a['href'][2:]}")


def test_s3_server_killed_mid_upload_leaves_no_item(
    scene: ProcessedScene, s3_env: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its own S3 server dies right after the first COG arrives: no item is written; a re-run repairs.

    (``s3_env`` only provides the AWS credentials environment.)
    """
    import boto3
    from moto.server import ThreadedMotoServer

    from tests._fx_services import free_port

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="dying-server")
    puts: list[str] = []

    class KilledAfterFirstPut(S3Store):
        def put_file(self, key: str, path: Path, media_type: str) -> None:
            super().put_file(key, path, media_type)
            puts.append(key)
            if len(puts) == 1:
                server.stop()

    quick = {"max_retries": 1, "retry_timeout": timedelta(seconds=2), "backoff": {"init_backoff": timedelta(milliseconds=50)}}
    with pytest.raises(PublishError, match="s3 upload failed"):
        StaticTarget(KilledAfterFirstPut("s3://dying-server/cat", endpoint=endpoint, retry=quick)).publish(scene)
    assert "could not remove" in caplog.text  # the rollback could not reach the dead server either
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()  # same process: moto keeps what the first server stored
    try:
        store = S3Store("s3://dying-server/cat", endpoint=endpoint)
        left = list(store.list_keys())
        assert len(puts) == 1 and len(left) == 1 and left[0].endswith(".tif")  # one orphan COG, no item
        assert StaticTarget(store).publish(scene).status == "created"  # same content-hashed name: reused
        keys = sorted(store.list_keys())
        assert len(keys) == 3 + 1 + 1 and left[0] in keys
    finally:
        server.stop()


# --- STAC API (stac-fastapi-pgstac) ------------------------------------------------------
def test_stac_api(scene: ProcessedScene, pgstac_api: str, s3_server: str, s3_bucket: str,
                  stac_validate: Validate) -> None:
    import pystac_client
    import requests

    cid = "s2sr-api-test"
    assets_to = f"s3://{s3_bucket}/cogs"
    target = open_target(pgstac_api, assets_to=assets_to, s3_endpoint=s3_server, collection_id=cid)
    assert isinstance(target, TransactionsTarget)
    assert target.publish(scene).status == "created"
    client = pystac_client.Client.open(pgstac_api)
    found = list(client.search(collections=[cid], bbox=scene.bbox_wgs84, datetime="2023-10-08").items())
    assert [i.id for i in found] == [ITEM_ID]
    item = found[0]
    assert item.properties["s2sr:model_fingerprint"] and item.assets["reflectance"].href.startswith(f"{assets_to}/")
    _check_pixels(scene, "B12", item)
    coll = requests.get(f"{pgstac_api}/collections/{cid}", timeout=10).json()
    for doc in (coll, item.to_dict(transform_hrefs=False)):
        stac_validate(doc)
    # twice: one item; a new model replaces it (and its old files); --overwrite replaces too
    assert target.publish(scene).status == "skipped"
    store = open_store(assets_to, s3_endpoint=s3_server)
    n_files = len(list(store.list_keys()))
    import dataclasses

    assert target.publish(dataclasses.replace(scene, models=_models("v2"))).status == "updated"
    hits = list(client.search(collections=[cid]).items())
    assert [i.id for i in hits] == [ITEM_ID] and hits[0].properties["s2sr:models"]["net20"]["name"].endswith("v2")
    assert len(list(store.list_keys())) == n_files


def test_stac_api_fault_leaves_no_item(scene: ProcessedScene, pgstac_api: str, s3_server: str,
                                       s3_bucket: str) -> None:
    import requests

    cid = "s2sr-api-fault"
    store = _FailingStore(f"s3://{s3_bucket}/cogs", endpoint=s3_server, n=1)
    with pytest.raises(PublishError, match="injected"):
        TransactionsTarget(pgstac_api, assets=store, collection_id=cid).publish(scene)
    r = requests.get(f"{pgstac_api}/collections/{cid}/items/{ITEM_ID}", timeout=10)
    assert r.status_code == 404
    assert requests.get(f"{pgstac_api}/collections/{cid}", timeout=10).status_code == 404  # nothing at all
    assert list(S3Store(f"s3://{s3_bucket}/cogs", endpoint=s3_server).list_keys()) == []


def test_credentials_stay_out_of_logs_and_documents(
    scene: ProcessedScene, pgstac_api: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import requests

    secret = "Sup3r-s3cr3t"
    url = pgstac_api.replace("http://", f"http://publisher:{secret}@")
    caplog.set_level(logging.DEBUG)
    target = open_target(url, assets_to=str(tmp_path / "files"), collection_id="s2sr-creds")
    res = target.publish(scene)
    docs = [requests.get(f"{pgstac_api}/collections/s2sr-creds{p}", timeout=10).text
            for p in ("", f"/items/{ITEM_ID}")]
    assert secret not in caplog.text and secret not in res.href and "***" in res.href
    assert all(secret not in d and "testing-secret-key" not in d for d in docs)
    # an unreachable API: the error message is redacted too
    bad = open_target(url.rsplit(":", 1)[0] + ":9", assets_to=str(tmp_path / "f2"), collection_id="x")
    with pytest.raises(PublishError) as err:
        bad.publish(scene)
    assert secret not in str(err.value) and "127.0.0.1:9" in str(err.value)


def test_api_needs_an_asset_store() -> None:
    with pytest.raises(PublishError, match="--assets-to"):
        open_target("http://127.0.0.1:9/stac")
    with pytest.raises(PublishError, match="credentials"):
        S3Store("s3://KEY:SECRET@bucket/x")


def test_local_store_is_atomic(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_json("a/a.json", {"x": 1})
    assert store.get_json("a/a.json") == {"x": 1} and list(store.list_keys()) == ["a/a.json"]
    with pytest.raises(ValueError, match="escapes"):
        store.put_json("../evil.json", {})


# --- records and the CLI ------------------------------------------------------------------
def test_record_roundtrip_and_cli_publish(scene: ProcessedScene, tmp_path: Path, stac_validate: Validate) -> None:
    import dataclasses
    import shutil

    from typer.testing import CliRunner

    from s2sr_cloud.cli import app
    from s2sr_cloud.publish.record import load_scene, record_path, save_record

    out = tmp_path / "run"
    out.mkdir()
    cog = Path(shutil.copy(scene.cog, out / scene.cog.name))
    signed = scene.source.clone()
    signed.assets["red"].href += "?st=2026&se=2027&sig=SECRETSAS"  # as a Planetary Computer signer leaves it
    rec = save_record(dataclasses.replace(scene, cog=cog, source=signed))
    assert rec == record_path(cog) and rec.name.endswith(".s2sr.json")
    assert "SECRETSAS" not in rec.read_text()
    back = load_scene(cog)
    for f in ("crs", "transform", "shape", "bands", "models", "backend", "version", "dn_offset", "nodata"):
        assert getattr(back, f) == getattr(scene, f), f
    assert back.source.id == scene.source.id and back.bbox_wgs84 == pytest.approx(scene.bbox_wgs84)

    cat = tmp_path / "cat"
    runner = CliRunner()
    res = runner.invoke(app, ["publish", str(out), "--to", str(cat)])
    assert res.exit_code == 0, res.output
    stac_validate(json.loads((cat / ITEM_ID / f"{ITEM_ID}.json").read_text()))
    res = runner.invoke(app, ["publish", str(cog), "--to", str(cat)])
    assert res.exit_code == 0 and "skipped" in res.output


def test_cli_publish_without_record_is_an_input_error(sr_cog: Path, tmp_path: Path) -> None:
    import shutil

    from typer.testing import CliRunner

    from s2sr_cloud.cli import app
    from s2sr_cloud.errors import InputError

    lone = Path(shutil.copy(sr_cog, tmp_path / "lone.tif"))
    res = CliRunner().invoke(app, ["publish", str(lone), "--to", str(tmp_path / "cat")])
    assert isinstance(res.exception, InputError) and "s2sr.json" in str(res.exception)


def test_publish_hook_from_pipeline_result(scene: ProcessedScene, tmp_path: Path) -> None:
    import shutil

    from s2sr_cloud.grid import OutputGrid
    from s2sr_cloud.pipeline import ItemResult
    from s2sr_cloud.sr import Window

    cog = Path(shutil.copy(scene.cog, tmp_path / scene.cog.name))
    grid = OutputGrid(crs=scene.crs, transform=scene.transform, shape=scene.shape,
                      window=Window(0, 0, *scene.shape), bounds=scene.bbox, bbox=scene.bbox_wgs84)
    result = ItemResult(item=scene.source, path=cog, grid=grid, bands=scene.bands, model=dict(scene.models),
                        backend=scene.backend, catalog="earth-search",
                        radiometry={"dn_offset": 0, "nodata": 0}, seconds=1.0)
    from s2sr_cloud.publish.hook import publish_hook

    published = []
    hook = publish_hook(str(tmp_path / "cat"), on_published=published.append)
    assert hook is not None and publish_hook(None) is None
    hook(result)
    assert (tmp_path / "cat" / ITEM_ID / f"{ITEM_ID}.json").exists()
    assert [r.item_id for r in published] == [ITEM_ID]
    # the record is written once, by whoever wrote the COG (s2sr_cloud.batch.units), not by the hook
    assert not (tmp_path / cog.name.replace(".tif", ".s2sr.json")).exists()


# --- end to end: `s2sr run --publish` and `s2sr publish` on real ONNX Runtime, three targets --
def test_processed_scene_published_to_all_three_targets(
    tmp_path: Path, random_models: dict[str, dict[str, Path]], pgstac_api: str, s3_server: str, s3_bucket: str,
    stac_validate: Validate,
) -> None:
    import pystac_client
    from typer.testing import CliRunner

    from s2sr_cloud.cli import app
    from s2sr_cloud.publish.assets import sha256_file
    from s2sr_cloud.publish.stores import s3_stac_io

    stem = "S2A_MSIL2A_20170613T101031_87_48"  # the real Austrian L2A patch of the offline sample catalog
    item_json = Path(__file__).parents[1] / "s2sr_cloud" / "sample" / "sentinel-2-l2a" / stem / f"{stem}.json"
    out, cat, s3_url = tmp_path / "out", tmp_path / "cat", f"s3://{s3_bucket}/static"
    models = [a for net in ("net20", "net60") for a in ("--onnx", str(random_models[net]["onnx"]))]
    runs = [
        ["run", str(item_json), "--out", str(out), *models, "--device", "cpu", "--publish", str(cat)],
        ["publish", str(out), "--to", str(cat)],
        ["publish", str(out), "--to", s3_url, "--s3-endpoint", s3_server],
        ["publish", str(out), "--to", pgstac_api, "--assets-to", f"s3://{s3_bucket}/api-cogs",
         "--s3-endpoint", s3_server, "--collection-id", "s2sr-e2e"],
    ]
    cli = CliRunner()
    for i, args in enumerate(runs):
        for _ in range(1 if i == 0 else 2):  # each target twice (run, then publish): still one item
            r = cli.invoke(app, args)
            assert r.exit_code == 0, (args[0], r.output, r.exception)
        assert i == 0 or "skipped" in r.output
    found = {
        "folder": list(pystac_client.Client.open(str(cat / "catalog.json")).get_items(recursive=True)),
        "s3": list(pystac_client.Client.from_file(f"{s3_url}/catalog.json", stac_io=s3_stac_io(s3_server))
                   .get_items(recursive=True)),
        "api": list(pystac_client.Client.open(pgstac_api).search(collections=["s2sr-e2e"],
                                                                 bbox=[13.70, 48.21, 13.73, 48.23]).items()),
    }
    onnx_sha = sha256_file(random_models["net20"]["onnx"])
    run_scene = SimpleNamespace(cog=out / f"{stem}-s2sr.tif", bands=SR_BANDS)  # what the run wrote
    for name, items in found.items():
        assert [i.id for i in items] == [f"{stem}-s2sr"], name
        stac_validate(items[0].to_dict(transform_hrefs=False))
        assert items[0].properties["s2sr:models"]["net20"]["onnx_sha256"] == onnx_sha, name
        _check_pixels(run_scene, "B05", items[0])


def test_a_rerun_publishes_an_item_done_but_never_published(tmp_path: Path,
                                                            random_models: dict[str, dict[str, Path]]) -> None:
    """A run that ended between an item's record and its publish (a killed client, a worker lost after
    writing): the re-run skips the processing but publishes the item from its record; a third run
    finds it published (the target skips it), and processes nothing either time."""
    import shutil

    from typer.testing import CliRunner

    from s2sr_cloud.cli import app

    stem = "S2A_MSIL2A_20170613T101031_87_48"
    item_json = Path(__file__).parents[1] / "s2sr_cloud" / "sample" / "sentinel-2-l2a" / stem / f"{stem}.json"
    out, cat = tmp_path / "out", tmp_path / "cat"
    models = [a for net in ("net20", "net60") for a in ("--onnx", str(random_models[net]["onnx"]))]
    args = ["run", str(item_json), "--out", str(out), *models, "--device", "cpu", "--publish", str(cat)]
    cli = CliRunner()
    assert cli.invoke(app, args).exit_code == 0
    cog = out / f"{stem}-s2sr.tif"
    made = cog.stat().st_mtime_ns
    shutil.rmtree(cat)  # as if the run had died before publishing
    r = cli.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "1 skipped" in r.output and f"{stem}-s2sr: created" in r.output
    assert (cat / f"{stem}-s2sr" / f"{stem}-s2sr.json").is_file() and cog.stat().st_mtime_ns == made
    r = cli.invoke(app, args)
    assert r.exit_code == 0 and f"{stem}-s2sr: skipped" in r.output, r.output
    # a target that cannot take it fails that item, with the publishing error and its exit code
    shutil.rmtree(cat / f"{stem}-s2sr")
    (cat / f"{stem}-s2sr").write_text("a file where the item's folder goes")
    r = cli.invoke(app, args)
    assert r.exit_code != 0 and "failed" in r.output, r.output
    r = cli.invoke(app, [*args, "--json"])  # a second line for the item says it failed after all
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [x["status"] for x in lines] == ["skipped", "failed"] and r.exit_code != 0, r.output


def test_consistency_qa_in_item_and_collection_summaries(scene: ProcessedScene) -> None:
    """The per-output QA figure: item properties, and a range in the collection summaries that
    widens as items are added (merge_collection)."""
    import dataclasses

    from s2sr_cloud.publish.item import build_collection, build_item, merge_collection

    docs = []
    for worst in (0.4, 7.5):
        sc = dataclasses.replace(scene, backproject=2, consistency_rmse={"B01": 0.1, "B05": worst})
        props = build_item(sc, [], "c").properties
        assert props["s2sr:consistency_rmse"] == {"B01": 0.1, "B05": worst}
        assert props["s2sr:consistency_rmse_max"] == worst and props["s2sr:backproject"] == 2
        docs.append(build_item(sc, [], "c").to_dict(transform_hrefs=False))
    assert "s2sr:consistency_rmse" not in build_item(scene, [], "c").properties  # not measured: no figure
    one = build_collection("c", docs[:1])
    assert one["summaries"]["s2sr:consistency_rmse_max"] == {"minimum": 0.4, "maximum": 0.4}
    both = merge_collection(one, build_collection("c", docs[1:]))
    assert both["summaries"]["s2sr:consistency_rmse_max"] == {"minimum": 0.4, "maximum": 7.5}


# --- every object store: folder, S3 (moto), Azure (Azurite) -------------------------------
@pytest.mark.parametrize("kind", ["folder", "s3", "az"])
def test_publish_to_every_store(kind: str, scene: ProcessedScene, tmp_path: Path, request: pytest.FixtureRequest,
                                stac_validate: Validate) -> None:
    """The same static catalog through obstore to each store, read back with pystac and GDAL.

    Google Cloud Storage (``gs://``) goes through the same class but is not tested against a live
    server here (see docs/publish.md)."""
    import pystac

    from s2sr_cloud.catalog.signing import vsi_path
    from s2sr_cloud.publish.stores import object_stac_io

    if kind == "folder":
        url, endpoint = str(tmp_path / "cat"), None
    elif kind == "s3":
        endpoint = request.getfixturevalue("s3_server")
        url = f"s3://{request.getfixturevalue('s3_bucket')}/stac"
    else:
        endpoint = request.getfixturevalue("azurite")
        url = f"az://{request.getfixturevalue('azure_container')}/stac"
    target = open_target(url, endpoint=endpoint)
    assert [r.status for r in target.publish_many([scene])] == ["created"]
    assert target.publish(scene).status == "skipped"
    keys = sorted(target.store.list_keys())  # type: ignore[attr-defined]
    assert {"catalog.json", "collection.json"} <= set(keys) and len(keys) == 5, keys
    stac_io = object_stac_io(endpoint) if kind != "folder" else None
    root = f"{url}/catalog.json"
    cat = pystac.read_file(root, stac_io=stac_io) if stac_io else pystac.read_file(root)
    (item,) = list(cat.get_items(recursive=True))
    stac_validate(item.to_dict(transform_hrefs=False))
    href = item.assets["reflectance"].get_absolute_href()
    assert href.startswith(url)
    import rasterio

    with rasterio.open(vsi_path(href)) as pub, rasterio.open(scene.cog) as src:  # GDAL /vsis3/, /vsiaz/
        np.testing.assert_array_equal(pub.read(2), src.read(2))
        assert pub.scales == src.scales
