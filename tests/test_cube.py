"""The datacube round trip across two UTM zones, the COG band metadata, and the SCL layer.

Inputs are real: the Virginia L1C crop (``tests/data/T18SVG_crop240``, EPSG:32618, UTM 18N).
Item A is its east part as it is; item B is its west part **reprojected into the neighbouring
zone, EPSG:32617 (UTM 17N)**, with GDAL's warp (nearest neighbour, so every DN is a real one),
each band at its native resolution onto a 10/20/60 m grid whose transform is computed by
``rasterio.warp.calculate_default_transform`` from the crop's own georeference (origin snapped
to 60 m so the three grids nest). A and B overlap by 48 px (480 m) at 10 m. Both are
super-resolved on their own grids by the shipped nets, published as a static catalog, and
loaded back as one cube in EPSG:32618.

The scene classification (SCL) is **synthetic**: the crop is L1C and has none. A class pattern
(vegetation, water, cloud, cloud shadow) is painted on the crop's real 20 m grid and warped
with B like the bands; it only exercises the SCL path (writing, STAC, cube, masking).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DATA = Path(__file__).parent / "data" / "T18SVG_crop240"
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A")
RES = {"B01": 60, "B09": 60, "B02": 10, "B03": 10, "B04": 10, "B08": 10}
COLS_A = (96, 240)  # 10 m columns of the crop in item A (east part)
COLS_B = (0, 144)  # … and in item B (west part, warped into UTM 17N)
pytestmark = [pytest.mark.filterwarnings("ignore::pystac_client.warnings.FallbackToPystac")]


def _res(band: str) -> int:
    return RES.get(band, 20)


def _synthetic_scl() -> np.ndarray:
    """A class pattern on the crop's 20 m grid (120 x 120): vegetation, water, cloud, cloud shadow."""
    scl = np.full((120, 120), 4, np.uint8)  # vegetation
    scl[:, :20] = 6  # water along the west edge
    scl[30:50, 50:66] = 9  # cloud (high probability) across the overlap
    scl[50:60, 50:66] = 3  # its shadow
    scl[90:110, 90:110] = 8  # cloud (medium probability) in A only
    return scl


def _write(path: Path, data: np.ndarray, crs: Any, transform: Any) -> None:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=0) as ds:
        ds.write(data, 1)


def _east_part(folder: Path) -> dict[str, Path]:
    """Item A: columns COLS_A of the crop, every band cut without resampling."""
    import rasterio
    from rasterio.windows import Window

    files = {}
    for band in (*BANDS, "SCL"):
        f = _res(band)
        c0, c1 = COLS_A[0] * 10 // f, COLS_A[1] * 10 // f
        if band == "SCL":
            with rasterio.open(DATA / "T18SVG_20160112_B05.tif") as ref:
                crs, t = ref.crs, ref.transform
            data = _synthetic_scl()[:, c0:c1]
        else:
            with rasterio.open(DATA / f"T18SVG_20160112_{band}.tif") as src:
                crs, t = src.crs, src.transform
                data = src.read(1, window=Window(c0, 0, c1 - c0, src.height))
        files[band] = folder / f"A_{band}.tif"
        _write(files[band], data, crs, t @ t.translation(c0, 0))
    return files


def _warped_west_part(folder: Path) -> dict[str, Path]:
    """Item B: columns COLS_B of the crop, reprojected into EPSG:32617 (nearest), per native grid."""
    import rasterio
    from rasterio.transform import Affine
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    dst_crs = "EPSG:32617"
    with rasterio.open(DATA / "T18SVG_20160112_B01.tif") as ref60:
        src_crs, t60 = ref60.crs, ref60.transform
    w60 = (COLS_B[1] - COLS_B[0]) // 6
    left, top = t60 @ (COLS_B[0] // 6, 0)
    right, bottom = t60 @ (COLS_B[0] // 6 + w60, 40)
    t, w, h = calculate_default_transform(src_crs, dst_crs, w60, 40, left=left, bottom=bottom, right=right, top=top,
                                          resolution=60)
    x0, y0 = np.floor(t.c / 60) * 60, np.ceil(t.f / 60) * 60  # snap: the 10/20/60 m grids nest
    w60b, h60b = int(w) + 2, int(h) + 2
    files = {}
    for band in (*BANDS, "SCL"):
        f = _res(band)
        if band == "SCL":
            with rasterio.open(DATA / "T18SVG_20160112_B05.tif") as ref:
                st = ref.transform
            src, c0 = _synthetic_scl(), COLS_B[0] // 2
            src = src[:, c0 : COLS_B[1] // 2]
        else:
            with rasterio.open(DATA / f"T18SVG_20160112_{band}.tif") as ds:
                st = ds.transform
                c0, c1 = COLS_B[0] * 10 // f, COLS_B[1] * 10 // f
                src = ds.read(1)[:, c0:c1]
        n = 60 // f
        dst = np.zeros((h60b * n, w60b * n), src.dtype)
        dst_t = Affine(f, 0, x0, 0, -f, y0)
        reproject(src, dst, src_transform=st @ st.translation(c0, 0), src_crs=src_crs, dst_transform=dst_t,
                  dst_crs=dst_crs, src_nodata=0, dst_nodata=0, resampling=Resampling.nearest)
        files[band] = folder / f"B_{band}.tif"
        _write(files[band], dst, dst_crs, dst_t)
    return files


def _source_item(item_id: str, files: dict[str, Path]) -> Any:
    """A STAC item of the band files (ESA band ids as keys), its georeference read from them."""
    import pystac
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(files["B02"]) as ds:
        crs, bounds = ds.crs, ds.bounds
    w, s, e, n = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    item = pystac.Item(
        item_id, {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}, [w, s, e, n],
        None, {"start_datetime": "2016-01-12T00:00:00Z", "end_datetime": "2016-01-12T23:59:59Z",
               "proj:code": crs.to_string(), "platform": "sentinel-2a"}, collection="test-two-zones")
    for band, path in files.items():
        item.add_asset(band, pystac.Asset(str(path), media_type="image/tiff; application=geotiff",
                                          roles=["data"]))
    item.set_self_href(str(files["B02"].parent / f"{item_id}.json"))
    return item


@pytest.fixture(scope="module")
def two_zones(tmp_path_factory: pytest.TempPathFactory, shipped: Any) -> dict[str, Any]:
    """Items A (UTM 18N) and B (UTM 17N), super-resolved, published to a static catalog."""
    from s2sr_cloud.batch import process_items
    from s2sr_cloud.catalog.presets import ESA_KEYS, CatalogProfile
    from s2sr_cloud.pipeline import RunParams
    from s2sr_cloud.publish import open_target

    tmp = tmp_path_factory.mktemp("two-zones")
    (tmp / "in").mkdir()
    items = [_source_item("S2A_T18SVG_east", _east_part(tmp / "in")),
             _source_item("S2A_T17SVG_west_warped", _warped_west_part(tmp / "in"))]
    profile = CatalogProfile(name="file", url=None, static=True, asset_keys=ESA_KEYS, offset_rule="baseline")
    outcomes = process_items(items, profile, RunParams(out_dir=tmp / "out"), models=shipped)
    assert [o.status for o in outcomes] == ["done", "done"], [o.error for o in outcomes]
    results = [o.result for o in outcomes]
    target = open_target(str(tmp / "catalog"))
    from s2sr_cloud.publish.record import scene_from_result

    published = target.publish_many([scene_from_result(r) for r in results])
    assert [p.status for p in published] == ["created", "created"]
    return {"tmp": tmp, "outcomes": outcomes, "catalog": tmp / "catalog", "cogs": [o.path for o in outcomes]}


def _geobox(cogs: list[Path]) -> Any:
    """A 10 m grid in EPSG:32618 aligned with item A's pixels, covering both items."""
    import rasterio
    from odc.geo.geobox import GeoBox
    from rasterio.warp import transform_bounds

    boxes = []
    for cog in cogs:
        with rasterio.open(cog) as ds:
            boxes.append(transform_bounds(ds.crs, "EPSG:32618", *ds.bounds))
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    return GeoBox.from_bbox((x0, y0, x1, y1), "EPSG:32618", resolution=10)


def _on(geobox: Any, cog: Path, band: int, nearest: bool = True) -> np.ndarray:
    """Band ``band`` of ``cog`` on ``geobox`` (GDAL warp, nearest), 0 outside."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    out = np.zeros(geobox.shape, np.uint16)
    with rasterio.open(cog) as ds:
        reproject(rasterio.band(ds, band), out, dst_transform=geobox.transform, dst_crs="EPSG:32618",
                  dst_nodata=0, resampling=Resampling.nearest)
    return out


def _same_pixels(got: np.ndarray, want: np.ndarray, where: np.ndarray, band: str, geobox: Any, cog: Path) -> None:
    """``got == want`` where ``where``, except where the two nearest-neighbour warps (odc-stac's, chunk
    by chunk, and GDAL's over the whole grid) chose the neighbouring source pixel at a sub-pixel tie:
    those few (< 0.1 %) hold a value of the 3 x 3 source pixels around the target pixel's centre."""
    import rasterio
    from rasterio.warp import transform as warp_xy

    from s2sr_cloud.bands import SR_BANDS

    bad = where & (got != want)
    assert bad.sum() <= 0.001 * where.sum(), (band, int(bad.sum()), int(where.sum()))
    if not bad.any():
        return
    rows, cols = np.nonzero(bad)
    xs, ys = geobox.transform @ (cols + 0.5, rows + 0.5)
    with rasterio.open(cog) as ds:
        src = np.pad(ds.read(SR_BANDS.index(band) + 1), 1)
        sx, sy = warp_xy("EPSG:32618", ds.crs, list(xs), list(ys))
        for k, (x, y) in enumerate(zip(sx, sy, strict=True)):
            r, c = ds.index(x, y)
            assert got[rows[k], cols[k]] in src[r : r + 3, c : c + 3], (band, rows[k], cols[k])


def test_two_utm_zones_make_one_cube(two_zones: dict[str, Any]) -> None:
    import s2sr_cloud as s2sr
    from s2sr_cloud.bands import SR_BANDS

    cog_a, cog_b = two_zones["cogs"]
    geobox = _geobox([cog_a, cog_b])
    cube = s2sr.load(two_zones["catalog"], geobox=geobox)
    assert dict(cube.sizes) == {"time": 1, "y": geobox.shape[0], "x": geobox.shape[1]}  # one solar day
    assert set(cube.data_vars) == {*SR_BANDS, "SCL"} and cube["B05"].chunks is not None
    for band in ("B05", "B01", "B12"):
        got = cube[band].isel(time=0).values
        a, b = (_on(geobox, c, SR_BANDS.index(band) + 1) for c in (cog_a, cog_b))
        only_a, only_b, both = (a > 0) & (b == 0), (b > 0) & (a == 0), (a > 0) & (b > 0)
        assert only_a.sum() > 5000 and only_b.sum() > 5000 and both.sum() > 3000, band  # a real overlap
        np.testing.assert_array_equal(got[only_a], a[only_a], err_msg=band)  # A on its own grid: exact
        _same_pixels(got, b, only_b, band, geobox, cog_b)  # B, reprojected from UTM 17N
        assert (got[both] > 0).all(), band
        a_first = (got == a)[both].mean() > (got == b)[both].mean()  # the item the fuser put first
        _same_pixels(got, a if a_first else b, both, band, geobox, cog_a if a_first else cog_b)
        assert (got[(a == 0) & (b == 0)] == 0).all()


def test_cube_of_the_run_results_equals_the_published_cube(two_zones: dict[str, Any]) -> None:
    """The items a run just produced (not published) give the same cube."""
    import s2sr_cloud as s2sr

    geobox = _geobox(two_zones["cogs"])
    published = s2sr.load(two_zones["catalog"], geobox=geobox, bands=["B8A", "SCL"]).compute()
    from_run = s2sr.load(two_zones["outcomes"], geobox=geobox, bands=["B8A", "SCL"]).compute()
    for v in ("B8A", "SCL"):
        np.testing.assert_array_equal(published[v].values, from_run[v].values)


def test_scl_in_output_stac_and_cube_with_cloud_mask(two_zones: dict[str, Any], stac_validate: Any) -> None:
    import rasterio

    import s2sr_cloud as s2sr
    from s2sr_cloud.io.scl import scl_path

    cog_a, _ = two_zones["cogs"]
    with rasterio.open(scl_path(cog_a)) as ds, rasterio.open(cog_a) as ref:
        scl = ds.read(1)
        assert (ds.crs, ds.transform, ds.shape, ds.dtypes[0]) == (ref.crs, ref.transform, ref.shape, "uint8")
    # nearest 20 m -> 10 m: each class covers its 2 x 2 block, same classes as painted on the 20 m grid
    want = np.repeat(np.repeat(_synthetic_scl()[:, COLS_A[0] // 2 : COLS_A[1] // 2], 2, 0), 2, 1)
    np.testing.assert_array_equal(scl, want)
    item_id = "S2A_T18SVG_east-s2sr"
    doc = json.loads((two_zones["catalog"] / item_id / f"{item_id}.json").read_text())
    stac_validate(doc)
    a = doc["assets"]["SCL"]
    assert a["roles"][:2] == ["data", "classification"] and a["raster:bands"][0]["data_type"] == "uint8"
    assert {c["value"]: c["name"] for c in a["classification:classes"]}[9] == "cloud_high_probability"
    assert any("/classification/" in u for u in doc["stac_extensions"])
    geobox = _geobox(two_zones["cogs"])
    cube = s2sr.load(two_zones["catalog"], geobox=geobox, bands=["B05"], mask_clouds=True).isel(time=0).compute()
    plain = s2sr.load(two_zones["catalog"], geobox=geobox, bands=["B05"]).isel(time=0).compute()
    cloudy = cube["SCL"].isin([3, 8, 9, 10]).values
    assert cloudy.sum() > 1000
    assert (cube["B05"].values[cloudy] == 0).all() and (plain["B05"].values[cloudy] > 0).all()
    clear = ~cloudy & (plain["B05"].values > 0)
    np.testing.assert_array_equal(cube["B05"].values[clear], plain["B05"].values[clear])
    refl = s2sr.load(two_zones["catalog"], geobox=geobox, bands=["B05"], reflectance=True).isel(time=0).compute()
    r = refl["B05"].values
    assert r.dtype == np.float32 and np.isnan(r[plain["B05"].values == 0]).all()
    np.testing.assert_allclose(r[clear], plain["B05"].values[clear] * 0.0001, rtol=1e-6)


def test_rioxarray_reads_reflectance_with_nodata(two_zones: dict[str, Any]) -> None:
    """GDAL band scale/offset and nodata in the COG: rioxarray's mask_and_scale gives reflectance, NaN at nodata."""
    import rasterio
    import rioxarray

    _, cog_b = two_zones["cogs"]  # the warped item has nodata corners
    with rasterio.open(cog_b) as ds:
        dn = ds.read()
        assert ds.scales == (0.0001,) * ds.count and ds.offsets == (0.0,) * ds.count and ds.nodata == 0
        assert ds.descriptions[1].startswith("B05 (rededge")
    da = rioxarray.open_rasterio(cog_b, mask_and_scale=True)
    v = da.values
    assert v.dtype == np.float32 and (dn == 0).sum() > 1000
    assert np.isnan(v[dn == 0]).all() and not np.isnan(v[dn > 0]).any()
    np.testing.assert_allclose(v[dn > 0], dn[dn > 0] * 0.0001, rtol=1e-6)


def test_mosaic_cli_writes_tif_and_zarr(two_zones: dict[str, Any]) -> None:
    import rasterio
    import xarray as xr
    from typer.testing import CliRunner

    import s2sr_cloud as s2sr
    from s2sr_cloud.cli import app

    tmp = two_zones["tmp"]
    geobox = _geobox(two_zones["cogs"])
    x0, y0, x1, y1 = geobox.extent.boundingbox
    from rasterio.warp import transform_bounds

    bbox = ",".join(f"{v:.6f}" for v in transform_bounds("EPSG:32618", "EPSG:4326", x0, y0, x1, y1))
    cli = CliRunner()
    for out in ("cube.tif", "cube.zarr"):
        r = cli.invoke(app, ["mosaic", str(two_zones["catalog"]), "--out", str(tmp / out), "--crs", "EPSG:32618",
                             "--resolution", "20", "--bbox", bbox, "--bands", "B05,B12"])
        assert r.exit_code == 0, (r.output, r.exception)
    want = s2sr.load(two_zones["catalog"], crs="EPSG:32618", resolution=20, bands=["B05", "B12"],
                     bbox=tuple(float(v) for v in bbox.split(","))).isel(time=0).compute()
    with rasterio.open(tmp / "cube.tif") as ds:
        assert ds.count == 2 and ds.crs.to_string() == "EPSG:32618" and ds.res == (20.0, 20.0)
        assert ds.scales == (0.0001, 0.0001) and ds.nodata == 0
        np.testing.assert_array_equal(ds.read(1), want["B05"].values)
    z = xr.open_zarr(tmp / "cube.zarr")
    np.testing.assert_array_equal(z["B12"].isel(time=0).values, want["B12"].values)
    r = cli.invoke(app, ["mosaic", str(two_zones["catalog"]), "--out", str(tmp / "cube.tif")])
    assert r.exit_code != 0 and "exists" in str(r.exception or r.output)


def test_unreadable_scl_keeps_the_bands_and_says_so(tmp_path: Path, shipped: Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """An L2A item whose SCL asset cannot be read: the super-resolved COG is still written (the bands
    are the product), no SCL beside it, a warning naming what is missing."""
    import pystac

    from s2sr_cloud.catalog.presets import resolve_catalog
    from s2sr_cloud.io.scl import scl_path
    from s2sr_cloud.pipeline import RunParams, process_item

    stem = "S2A_MSIL2A_20170613T101031_87_48"
    root = Path(__file__).parents[1] / "s2sr_cloud" / "sample" / "sentinel-2-l2a" / stem
    item = pystac.Item.from_file(str(root / f"{stem}.json"))
    item.make_asset_hrefs_absolute()
    item.add_asset("scl", pystac.Asset(str(tmp_path / "missing" / "SCL.tif"), media_type="image/tiff"))
    res = process_item(item, shipped, resolve_catalog("sample"), RunParams(out_dir=tmp_path / "out"))
    assert res.path.is_file() and not scl_path(res.path).exists()
    assert "no scene classification" in caplog.text and "SCL" in caplog.text


def test_mosaic_of_a_missing_catalog_is_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    s2sr = str(Path(sys.executable).parent / "s2sr")
    for args, words in (([str(tmp_path / "nothing"), "--out", "cube.tif"], "cannot read a STAC catalog"),
                        ([str(tmp_path), "--out", "cube.png"], "*.tif or *.zarr")):
        r = subprocess.run([s2sr, "mosaic", *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_split_item_on_a_cluster_gets_its_scl_too(two_zones: dict[str, Any], narrow: Any, client: Any,
                                                     tmp_path: Path) -> None:
    """An item cut into row bands on a Dask cluster (parts, then assembly on a worker) gets the
    same 10 m scene classification beside its COG as the whole-item path."""
    import rasterio

    from s2sr_cloud.batch import process_items
    from s2sr_cloud.catalog.presets import ESA_KEYS, CatalogProfile
    from s2sr_cloud.io.scl import scl_path
    from s2sr_cloud.pipeline import RunParams

    (tmp_path / "in").mkdir()
    item = _source_item("S2A_T18SVG_east", _east_part(tmp_path / "in"))
    profile = CatalogProfile(name="file", url=None, static=True, asset_keys=ESA_KEYS, offset_rule="baseline")
    totals: list[int] = []
    [o] = process_items([item], profile, RunParams(out_dir=tmp_path / "out", block=60), models=narrow, client=client,
                        unit_rows=60, on_event=lambda ev: totals.append(ev.units_total))
    assert o.status == "done", o.error
    assert max(totals) > 2, totals  # it was split: parts and their assembly
    with rasterio.open(scl_path(o.path)) as got, rasterio.open(scl_path(two_zones["cogs"][0])) as want:
        assert (got.crs, got.transform, got.shape) == (want.crs, want.transform, want.shape)
        np.testing.assert_array_equal(got.read(1), want.read(1))
