"""One item end to end over loopback services: STAC API → Range COGs → nets → 10 m COG."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pystac
import pytest
import rasterio

from s2sr_cloud.bands import SR_BANDS
from s2sr_cloud.catalog.presets import (
    EARTH_SEARCH,
    EARTH_SEARCH_KEYS,
    ESA_KEYS,
    PLANETARY_COMPUTER,
    resolve_catalog,
)
from s2sr_cloud.catalog.search import SearchParams, search_items
from s2sr_cloud.errors import (
    BBoxOutsideItem,
    BoaOffsetWarning,
    MissingAsset,
    OutputExists,
    RasterReadError,
)
from s2sr_cloud.io.env import HttpParams
from s2sr_cloud.io.read import ItemSource
from s2sr_cloud.pipeline import ItemResult, RunParams, plan_item, process_item
from s2sr_cloud.post import PostSteps
from s2sr_cloud.publish.record import scene_from_result

from ._fx_stac import SAMPLE, STAC_DATA, RangeServer, hybrid_item, sample_items

VA_ID = "S2A_18SVG_20160112_0_L1C"
VA = f"sentinel-2-l1c/{VA_ID}"
BBOX = (-75.7045, 37.7300, -75.6980, 37.7350)  # about 570 m x 560 m inside the Virginia crop
FAST = HttpParams(max_retry=1, retry_delay_s=0.05, timeout_s=5)


@pytest.fixture(scope="module")
def runners() -> dict[str, object]:
    """Real DSen2 nets (depth 6, so the real 14 px receptive field) only 8 features wide: fast."""
    torch = pytest.importorskip("torch")
    from s2sr_cloud.bands import VariantSpec, net_spec
    from s2sr_cloud.nets.model import DSen2, TorchRunner

    torch.manual_seed(0)
    narrow = VariantSpec("dsen2", 6, 8)
    return {n: TorchRunner(DSen2(net_spec(n), narrow)) for n in ("net20", "net60")}


def _va(base: str) -> dict:
    return next(i for i in sample_items(base) if i["id"] == VA_ID)


def _local(band: str, win: tuple[slice, slice]) -> np.ndarray:
    with rasterio.open(SAMPLE / VA / f"{band}.tif") as ds:
        return ds.read(1)[win]


def test_search_then_process_reads_little_and_writes_a_georeferenced_cog(
    stac_apis: dict[str, str], cog_server: RangeServer, runners: dict, tmp_path
) -> None:
    prof = resolve_catalog(f"sample={stac_apis['sample']}")
    items = search_items(prof, SearchParams(bbox=BBOX))
    assert [i.id for i in items] == [VA_ID]
    # fresh URLs for this test (GDAL caches per URL for the whole process)
    item = pystac.Item.from_dict(_va(cog_server.prefix()))
    prefix = item.assets["red"].href.split("/")[3]
    events = []
    # the nets and the back-projection only: the hybrid step's wider margin (54 px) would read most of
    # this small sample COG around the small bbox (its seamlessness is tested in test_guided)
    res = process_item(item, runners, prof, RunParams(out_dir=tmp_path, bbox=BBOX, block=60, http=FAST, post=PostSteps(hybrid=False)),
                       on_progress=events.append)
    assert isinstance(res, ItemResult) and res.path == tmp_path / f"{VA_ID}-s2sr.tif"
    assert res.bands == SR_BANDS and res.backend == "torch-cpu" and res.item.id == VA_ID
    assert set(res.model) == {"net20", "net60"}
    win = res.grid.window
    assert win.row % 6 == 0 and win.col % 6 == 0 and win.height % 6 == 0 and win.width % 6 == 0
    assert res.grid.bbox[0] <= BBOX[0] and res.grid.bbox[2] >= BBOX[2]
    assert events[-1].done == events[-1].total and len(events) > 1  # streamed in blocks
    with rasterio.open(res.path) as ds:
        assert ds.count == 8 and ds.crs.to_epsg() == 32618 and ds.nodata == 0
        assert ds.transform.c == 435780 + 10 * win.col and ds.transform.f == 4179420 - 10 * win.row
        assert ds.transform.c % 60 == 0 and ds.transform.f % 60 == 0
        assert ds.descriptions[0].startswith("B01") and ds.descriptions[-1].startswith("B12")
        assert ds.tags()["S2SR_SOURCE_ITEM"] == VA_ID and ds.tags()["S2SR_DN_OFFSET"] == "0"
        assert ds.profile["tiled"]
        data = ds.read()
    assert data.dtype == np.uint16 and (data > 0).all()
    fetched = cog_server.fetched(prefix)[0]
    total = sum(p.stat().st_size for p in (SAMPLE / VA).glob("*.tif"))
    # the back-projection's 30 px margin around the 60 px area reads a ring of neighbouring COG tiles
    assert fetched < 0.65 * total, (fetched, total)
    assert not list(tmp_path.glob(".*"))  # no temp files left


def test_blocks_are_seamless(cog_server: RangeServer, runners: dict, tmp_path) -> None:
    item = pystac.Item.from_dict(_va(cog_server.prefix()))
    prof = resolve_catalog("sample")
    one = process_item(item, runners, prof, RunParams(out_dir=tmp_path / "one", bbox=BBOX, http=FAST))
    many = process_item(item, runners, prof, RunParams(out_dir=tmp_path / "many", bbox=BBOX, block=30, tile=24, http=FAST))
    with rasterio.open(one.path) as a, rasterio.open(many.path) as b:
        assert a.transform == b.transform
        diff = np.abs(a.read().astype(np.int32) - b.read().astype(np.int32))
    assert diff.max() <= 1  # float rounding only


@pytest.mark.parametrize(
    ("doc", "profile", "keys", "offset"),
    [
        ("earth-search-v1/items/S2A_13TDE_20231008_0_L2A.json", EARTH_SEARCH, EARTH_SEARCH_KEYS, 0),
        ("planetary-computer/items/two-sentinel-2-items-13TDE-2024-08.json", PLANETARY_COMPUTER, ESA_KEYS, 1000),
    ],
)
def test_catalog_radiometry_reaches_the_output(
    doc: str, profile, keys: dict, offset: int, cog_server: RangeServer, runners: dict, tmp_path
) -> None:
    """A real Earth Search / Planetary Computer item (keys, baseline, flags) over the sample's
    imagery and georeference: the 10 m bands written with --include-10m show the offset rule."""
    d = json.loads((STAC_DATA / doc).read_text())
    d = d["features"][0] if d.get("type") == "FeatureCollection" else d
    item = pystac.Item.from_dict(hybrid_item(d, _va(cog_server.prefix()), keys))
    plan = plan_item(item, profile, RunParams(out_dir=tmp_path, bbox=BBOX))
    assert {a.offset_dn for a in plan.assets.values()} == {offset}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = process_item(item, runners, profile, RunParams(out_dir=tmp_path, bbox=BBOX, include_10m=True, http=FAST))
    # the sample's pixels carry no offset: removing one is flagged (B02 has DN < 1000)
    assert any(issubclass(w.category, BoaOffsetWarning) for w in caught) == bool(offset)
    w = res.grid.window
    with rasterio.open(res.path) as ds:
        assert ds.count == 12 and ds.descriptions[10].startswith("B04")
        b04 = ds.read(11)
    src = _local("B04", (slice(w.row, w.row + w.height), slice(w.col, w.col + w.width))).astype(np.int32)
    expect = np.where(src > 0, np.maximum(src - offset, 1), 0)
    assert np.array_equal(b04, expect)
    assert res.radiometry["offset_removed_dn"]["B04"] == offset


def test_bbox_outside_the_item_fails_before_reading(cog_server: RangeServer, runners: dict, tmp_path) -> None:
    item = pystac.Item.from_dict(_va(cog_server.prefix()))
    n = len(cog_server.log)
    with pytest.raises(BBoxOutsideItem, match="does not overlap"):
        process_item(item, runners, resolve_catalog("sample"), RunParams(out_dir=tmp_path, bbox=(10.0, 10.0, 10.1, 10.1)))
    assert len(cog_server.log) == n and not list(tmp_path.iterdir())


def test_missing_band_fails_clearly(cog_server: RangeServer, runners: dict, tmp_path) -> None:
    d = _va(cog_server.prefix())
    del d["assets"]["nir09"]
    with pytest.raises(MissingAsset, match=r"B09"):
        process_item(pystac.Item.from_dict(d), runners, resolve_catalog("sample"), RunParams(out_dir=tmp_path, bbox=BBOX))


def test_failure_mid_way_leaves_no_output(cog_server: RangeServer, runners: dict, tmp_path) -> None:
    base = cog_server.prefix()
    cog_server.fault(f"{base}/{VA}/B09.tif", 404, 404)
    item = pystac.Item.from_dict(_va(base))
    with pytest.raises(RasterReadError, match="B09"):
        process_item(item, runners, resolve_catalog("sample"), RunParams(out_dir=tmp_path, bbox=BBOX, http=FAST))
    assert not [p for p in tmp_path.iterdir() if p.is_file()]


def test_existing_output_needs_overwrite(runners: dict, tmp_path) -> None:
    item = pystac.Item.from_dict(_va(str(SAMPLE)))
    (tmp_path / f"{VA_ID}-s2sr.tif").write_bytes(b"x")
    with pytest.raises(OutputExists):
        process_item(item, runners, resolve_catalog("sample"), RunParams(out_dir=tmp_path, bbox=BBOX))


def test_whole_small_item_without_bbox(runners: dict, tmp_path) -> None:
    items = search_items(resolve_catalog("sample"), SearchParams(bbox=(13.70, 48.21, 13.73, 48.23)))
    res = process_item(items[0], runners, resolve_catalog("sample"), RunParams(out_dir=tmp_path))
    assert res.grid.shape == (120, 120) and res.grid.crs == "EPSG:32633"
    with ItemSource(plan_item(items[0], resolve_catalog("sample"), RunParams(out_dir=tmp_path)).assets,
                    plan_item(items[0], resolve_catalog("sample"), RunParams(out_dir=tmp_path)).item_grid) as src:
        assert src.shape10 == (120, 120)


def test_full_items_plan_to_bounded_blocks(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Full 10980 x 10980 items are planned from metadata alone and streamed in fixed blocks."""
    from s2sr_cloud.catalog.presets import CDSE
    from s2sr_cloud.catalog.signing import vsi_path
    from s2sr_cloud.errors import CatalogError
    from s2sr_cloud.sr import iter_blocks

    es = pystac.Item.from_dict(json.loads((STAC_DATA / "earth-search-v1/items/S2A_13TDE_20231008_0_L2A.json").read_text()))
    plan = plan_item(es, EARTH_SEARCH, RunParams(out_dir=tmp_path))
    assert plan.out.shape == (10980, 10980) and plan.out.crs == "EPSG:32613"
    blocks = list(iter_blocks(plan.out.shape, RunParams(out_dir=tmp_path).block))
    assert len(blocks) == 64 and max(b.height * b.width for b in blocks) == 1536 * 1536

    cdse = pystac.Item.from_dict(json.loads(next((STAC_DATA / "cdse/items").glob("*.json")).read_text()))
    for v in ("CDSE_S3_ACCESS_KEY", "CDSE_S3_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(CatalogError, match="CDSE_S3_ACCESS_KEY"):
        plan_item(cdse, CDSE, RunParams(out_dir=tmp_path))
    monkeypatch.setenv("CDSE_S3_ACCESS_KEY", "key")
    monkeypatch.setenv("CDSE_S3_SECRET_KEY", "secret")
    plan = plan_item(cdse, CDSE, RunParams(out_dir=tmp_path))
    assert plan.item_grid.shape == (10980, 10980) and plan.assets["B04"].key == "B04_10m"
    assert plan.http.extra and plan.http.extra["AWS_S3_ENDPOINT"] == "eodata.dataspace.copernicus.eu"
    assert vsi_path(plan.assets["B01"].href).startswith("/vsis3/eodata/Sentinel-2/") and plan.assets["B01"].key == "B01_60m"


class _ResidualRunner:
    """A Runner whose output is its residual input (the upsampled bands): no convolutions."""

    backend = "numpy-residual"

    def __init__(self, net: str) -> None:
        from s2sr_cloud.bands import NETS

        self.net, self.halo, self._slice = net, 14, NETS[net].residual_slice

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[:, self._slice])


def test_streaming_memory_is_bounded_by_the_block(tmp_path) -> None:
    """The whole sample item in 90 px blocks: NumPy's peak is a few block stacks, not the item.

    (The sample is small, so the margin is small; the bound does not grow with the item.)
    """
    import tracemalloc

    item = pystac.Item.from_dict(_va(str(SAMPLE)))
    runners = {n: _ResidualRunner(n) for n in ("net20", "net60")}
    peaks = {}
    # the raw nets, the back-projection post-step, then the default (hybrid + back-projection)
    for it, hybrid in ((-1, False), (2, False), (2, True)):
        tracemalloc.start()
        try:
            res = process_item(item, runners, resolve_catalog("sample"),
                               RunParams(out_dir=tmp_path / f"{it}{hybrid}", block=90, post=PostSteps(it, hybrid)))
            _, peaks[it, hybrid] = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert res.grid.shape == (540, 540)
    block_stack = 12 * (90 + 2 * 14) ** 2 * 4  # float32 inputs of one block and its halo
    # the COG writer gathers 512-row strips of each level (8 bands, uint16) and averages them into
    # the next overview in float64: bounded by the width, not by the item's area
    writer = 2 * 8 * 512 * 540 * 8
    whole = 12 * 540 * 540 * 4
    # two blocks in flight (reading block k+1 while block k is inferred)
    assert peaks[-1, False] < 16 * block_stack + writer, (peaks[-1, False], block_stack)
    # the post-step super-resolves each block with a 30 px margin (60 m bands, 2 iterations)
    margin_stack = 12 * (90 + 2 * 30 + 2 * 14) ** 2 * 4
    assert peaks[2, False] < 12 * margin_stack + writer, (peaks[2, False], margin_stack)
    # the hybrid step adds 24 px (60 m net, radius 1) and its float64 moments, still per block
    hybrid_stack = 12 * (90 + 2 * 54 + 2 * 14) ** 2 * 4
    assert peaks[2, True] < 12 * hybrid_stack + writer, (peaks[2, True], hybrid_stack)
    assert 12 * hybrid_stack < 3 * whole  # (at 540 px the writer's strips are the item's size)


def test_block_reads_retry_inside_worker_threads(cog_server: RangeServer, runners: dict, tmp_path) -> None:
    """A 500 on a block range (not the open) is retried in the overlapped pipeline's threads."""
    base = cog_server.prefix()
    url = f"{base}/{VA}/B05.tif"
    cog_server.fault(url, None, None, 500)  # HEAD and header served, the first block range fails once
    item = pystac.Item.from_dict(_va(base))
    process_item(item, runners, resolve_catalog("sample"), RunParams(out_dir=tmp_path, bbox=BBOX, http=FAST))
    log = [r for r in cog_server.log if r.path.endswith(url.split("/", 3)[3])]
    # GDAL may fetch several ranges at once (the post-step's margin spans more COG tiles): the
    # failed bytes are asked for again (in the same or a merged range) and served
    assert [r.status for r in log][:3] == [200, 206, 500]

    def span(r) -> tuple[int, int]:
        a, b = r.range.removeprefix("bytes=").split("-")
        return int(a), int(b)

    lo, hi = span(log[2])
    assert any(r.status == 206 and span(r)[0] <= lo and span(r)[1] >= hi for r in log[3:]), [(r.status, r.range) for r in log]


def test_cdse_jpeg2000_through_s3_with_credentials(cog_server: RangeServer, runners: dict, tmp_path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """CDSE's layout (JPEG 2000 on s3://eodata, `B04_10m` keys, baseline 05.10) read through GDAL's
    /vsis3/ with user credentials, against the loopback server as the S3 endpoint. The JP2 files are
    lossless encodings of the sample's pixels at the paths the real CDSE item names."""
    import rasterio.shutil
    from rasterio.io import MemoryFile

    from s2sr_cloud.catalog.presets import CDSE, CDSE_KEYS

    doc = json.loads(next((STAC_DATA / "cdse/items").glob("*.json")).read_text())
    item_d = hybrid_item(doc, _va(str(SAMPLE)), CDSE_KEYS, keep_hrefs=True)
    for band, key in CDSE_KEYS.items():
        if band == "SCL":
            continue
        dst = cog_server.root / item_d["assets"][key]["href"].removeprefix("s3://eodata/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(SAMPLE / VA / f"{band}.tif") as src, MemoryFile() as mem:
            with mem.open(**{**src.profile, "driver": "GTiff"}) as tmp:
                tmp.write(src.read())
            with mem.open() as tmp:
                rasterio.shutil.copy(tmp, dst, driver="JP2OpenJPEG", REVERSIBLE="YES", QUALITY="100",
                                     BLOCKXSIZE="128", BLOCKYSIZE="128")
    monkeypatch.setenv("CDSE_S3_ACCESS_KEY", "test-key")
    monkeypatch.setenv("CDSE_S3_SECRET_KEY", "test-secret")
    monkeypatch.setenv("CDSE_S3_ENDPOINT", cog_server.url.removeprefix("http://"))
    monkeypatch.setenv("CDSE_S3_HTTPS", "NO")
    n = len(cog_server.log)
    item = pystac.Item.from_dict(item_d)
    with pytest.warns(BoaOffsetWarning):  # the sample's pixels carry no offset; the 05.10 metadata say they do
        res = process_item(item, runners, CDSE, RunParams(out_dir=tmp_path, bbox=BBOX, include_10m=True, http=FAST))
    jp2 = [r for r in cog_server.log[n:] if r.path.endswith(".jp2")]
    assert jp2 and all(r.path.startswith("/eodata/Sentinel-2/") for r in jp2)
    assert any(r.range for r in jp2)  # windowed reads
    assert all((r.auth or "").startswith("AWS4-HMAC-SHA256 Credential=test-key/") for r in jp2)  # signed with the keys
    w = res.grid.window
    with rasterio.open(res.path) as ds:
        b04 = ds.read(11)
    src = _local("B04", (slice(w.row, w.row + w.height), slice(w.col, w.col + w.width))).astype(np.int32)
    assert np.array_equal(b04, np.where(src > 0, np.maximum(src - 1000, 1), 0))  # baseline 05.10: offset removed


def test_record_and_item_carry_the_consistency_qa(cog_server: RangeServer, tmp_path) -> None:
    """The shipped nets on real imagery: the post-step's per-output QA reaches the COG tags, the
    `.s2sr.json` record and the published STAC item; without it (-1) the figures are larger."""
    from s2sr_cloud.infer import load_runners
    from s2sr_cloud.publish.item import build_item, summaries_of
    from s2sr_cloud.publish.record import load_scene, save_record

    shipped = load_runners(("net20", "net60"), device="cpu")
    item = pystac.Item.from_dict(_va(cog_server.prefix()))
    item.add_link(pystac.Link("canonical", f"https://stac.example/items/{VA_ID}"))  # for derived_from
    prof = resolve_catalog("sample")
    res = {it: process_item(item, shipped, prof, RunParams(out_dir=tmp_path / str(it), bbox=BBOX,
                                                            post=PostSteps(it, it >= 0), http=FAST)) for it in (2, -1)}
    assert res[2].hybrid and not res[-1].hybrid
    on, off = res[2].consistency_rmse, res[-1].consistency_rmse
    assert set(on) == set(off) == set(SR_BANDS) and res[2].backproject == 2 and res[-1].backproject == -1
    assert on["B01"] < 1 and on["B09"] < 1, on
    assert max(on[b] for b in ("B05", "B06", "B07", "B8A", "B11", "B12")) < 10, on
    assert all(off[b] > on[b] for b in SR_BANDS) and res[-1].consistency_rmse_max > 2 * res[2].consistency_rmse_max
    with rasterio.open(res[2].path) as ds:
        tags = ds.tags()
    assert json.loads(tags["S2SR_CONSISTENCY_RMSE"]) == on and tags["S2SR_BACKPROJECT"] == "2"
    assert tags["S2SR_HYBRID"] == PostSteps(2, True).hybrid_tag(["net20", "net60"])
    assert float(tags["S2SR_CONSISTENCY_RMSE_MAX"]) == res[2].consistency_rmse_max
    docs = []
    for it, r in res.items():
        rec = json.loads(save_record(scene_from_result(r)).read_text())
        assert rec["consistency_rmse"] == r.consistency_rmse and rec["backproject"] == it and rec["hybrid"] == (it >= 0)
        back = load_scene(r.path)  # `s2sr publish` later: the figures come back from the record
        assert back.consistency_rmse == r.consistency_rmse and back.backproject == it
        props = build_item(back, [], "c").properties
        assert props["s2sr:consistency_rmse"] == r.consistency_rmse and props["s2sr:backproject"] == it
        assert props["s2sr:hybrid"] == (it >= 0) and back.hybrid == (it >= 0)
        assert props["s2sr:consistency_rmse_max"] == max(r.consistency_rmse.values())
        docs.append({"properties": props, "assets": {}})
    assert summaries_of(docs)["s2sr:consistency_rmse_max"] == {
        "minimum": res[2].consistency_rmse_max, "maximum": res[-1].consistency_rmse_max}
