"""`s2sr search` / `s2sr run` end to end: offline sample, loopback STAC APIs, real ONNX Runtime."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
from typer.testing import CliRunner

from s2sr_cloud.cli import app

from ._fx_stac import SAMPLE, RangeServer, sample_items

runner = CliRunner()
BBOX = "-75.7045,37.7300,-75.6980,37.7350"
VA_ID = "S2A_18SVG_20160112_0_L1C"
S2SR = str(Path(sys.executable).parent / "s2sr")


def _models(random_models) -> list[str]:
    return ["--onnx", str(random_models["net20"]["onnx"]), "--onnx", str(random_models["net60"]["onnx"])]


def test_search_sample_table_offline() -> None:
    r = runner.invoke(app, ["search", "--catalog", "sample", "--bbox", BBOX])
    assert r.exit_code == 0, r.output
    assert VA_ID in r.stdout and "18SVG" in r.stdout and "2016-01-12" in r.stdout


def test_catalog_comes_from_its_variable() -> None:
    r = runner.invoke(app, ["search", "--bbox", BBOX], env={"S2SR_CATALOG": "sample"})
    assert r.exit_code == 0, r.output
    assert VA_ID in r.stdout


@pytest.mark.parametrize("command", ["search", "run"])
def test_options_of_search_and_run_are_grouped_in_panels(command: str) -> None:
    r = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    titles = re.findall(r"╭─ (.+?) ─", r.stdout)
    assert titles[-7:] == ["Options", "Output", "Models and backend", "Tiling and memory", "Post-steps",
                           "Publish", "Scale-out"]
    scale_out = r.stdout.split("╭─ Scale-out")[1]
    assert "--workers" in scale_out and "DASK_SCHEDULER_ADDRESS" in scale_out
    assert "s2sr-cloud[dask]" in scale_out  # not taken for rich markup


def test_search_json_is_a_pipeable_item_collection() -> None:
    proc = subprocess.run([S2SR, "search", "--catalog", "sample", "--bbox", "-180,-90,180,90", "--json"],
                          capture_output=True, text=True, check=True)
    doc = json.loads(proc.stdout)  # stdout holds only the JSON; the table went to stderr
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 4
    assert VA_ID in proc.stderr


def test_search_api_with_filters(stac_apis: dict[str, str]) -> None:
    r = runner.invoke(app, ["search", "--catalog", f"earth-search={stac_apis['earth-search']}",
                            "--bbox", "-180,-90,180,90", "--max-cloud", "10", "--limit", "2", "--json"])
    assert r.exit_code == 0, r.output
    feats = json.loads(r.stdout.strip().splitlines()[-1])["features"]
    assert len(feats) == 2 and all(f["properties"]["eo:cloud_cover"] <= 10 for f in feats)


def test_search_intersects(tmp_path: Path) -> None:
    geom = tmp_path / "aoi.geojson"
    geom.write_text(json.dumps({"type": "Polygon", "coordinates": [[
        [-75.70, 37.73], [-75.69, 37.73], [-75.69, 37.74], [-75.70, 37.74], [-75.70, 37.73]]]}))
    r = runner.invoke(app, ["search", "--catalog", "sample", "--intersects", str(geom)])
    assert r.exit_code == 0, r.output
    assert VA_ID in r.stdout


def test_empty_search_and_bad_input_exit_with_a_message() -> None:
    proc = subprocess.run([S2SR, "search", "--catalog", "sample", "--bbox", "10,10,10.1,10.1"],
                          capture_output=True, text=True)
    assert proc.returncode == 3 and "no item" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([S2SR, "search", "--catalog", "sample", "--bbox", "1,2,3"], capture_output=True, text=True)
    assert proc.returncode == 3 and "W,S,E,N" in proc.stderr


def test_search_run_writes_cogs(random_models, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = runner.invoke(app, ["search", "--catalog", "sample", "--bbox", BBOX, "--run", "--out", str(out),
                            *_models(random_models), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    cog = out / f"{VA_ID}-s2sr.tif"
    with rasterio.open(cog) as ds:
        assert ds.count == 8 and ds.crs.to_epsg() == 32618 and ds.nodata == 0
        assert ds.transform.a == 10 and ds.tags()["S2SR_BACKEND"].startswith("onnxruntime")
        assert ds.read(1).min() > 0


def test_run_one_item_from_url(cog_server: RangeServer, random_models, tmp_path: Path) -> None:
    """The sample's item JSON served over HTTP: its relative asset hrefs resolve against the URL."""
    base = cog_server.prefix()
    url = f"{base}/sentinel-2-l1c/{VA_ID}/{VA_ID}.json"
    r = runner.invoke(app, ["run", url, "--bbox", BBOX, "--out", str(tmp_path), "--include-10m",
                            *_models(random_models), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    with rasterio.open(tmp_path / f"{VA_ID}-s2sr.tif") as ds:
        assert ds.count == 12 and ds.descriptions[8].startswith("B02")
        assert ds.tags()["S2SR_SOURCE_HREF"] == url
    prefix = base.rsplit("/", 1)[1]
    assert any(r.path.endswith("B8A.tif") and prefix in r.path and r.range for r in cog_server.log)


def test_run_local_item_file_outside_bbox(tmp_path: Path) -> None:
    item = SAMPLE / "sentinel-2-l1c" / VA_ID / f"{VA_ID}.json"
    proc = subprocess.run([S2SR, "run", str(item), "--bbox", "10,10,10.1,10.1", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "does not overlap" in proc.stderr and "Traceback" not in proc.stderr


def test_search_run_goes_on_after_a_failed_item(cog_server: RangeServer, random_models, tmp_path: Path) -> None:
    good = next(i for i in sample_items(cog_server.prefix()) if i["id"] == VA_ID)
    bad = json.loads(json.dumps(good))
    bad["id"] = "broken-copy"
    bad["assets"]["nir09"]["href"] = f"{cog_server.prefix()}/no/such/B09.tif"
    catalog = tmp_path / "items.json"
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": [bad, good]}))
    proc = subprocess.run([S2SR, "search", "--catalog", str(catalog), "--bbox", BBOX, "--run", "--out", str(tmp_path / "o"),
                           *_models(random_models), "--device", "cpu"], capture_output=True, text=True)
    assert proc.returncode == 6, proc.stderr  # RasterReadError
    assert "1 of 2 items failed (broken-copy)" in " ".join(proc.stderr.split()) and "B09" in proc.stderr
    assert [p.name for p in (tmp_path / "o").glob("*.tif")] == [f"{VA_ID}-s2sr.tif"]


def test_makefile_demo_command(random_models, tmp_path: Path) -> None:
    """The README's `make demo` command, as written in the Makefile, on the bundled sample."""
    import shlex

    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    line = next(ln.strip() for ln in makefile.splitlines() if "s2sr search --catalog sample" in ln)
    args = shlex.split(line)[1:]  # drop $(BIN)/s2sr
    args[args.index("--out") + 1] = str(tmp_path / "demo-output")
    r = runner.invoke(app, [*args, *_models(random_models), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    cogs = list((tmp_path / "demo-output").glob("*.tif"))
    assert [c.name for c in cogs] == [f"{VA_ID}-s2sr.tif"]
    with rasterio.open(cogs[0]) as ds:
        assert ds.count == 8 and ds.crs.to_epsg() == 32618 and ds.res == (10.0, 10.0)
        assert ds.width >= 150 and ds.height >= 150


@pytest.mark.network
def test_live_earth_search_small_bbox(random_models, tmp_path: Path) -> None:
    """Live Earth Search v1 (run with --network): search, then a 600 m bbox of one item."""
    bbox = "11.570,48.135,11.577,48.140"
    r = runner.invoke(app, ["search", "--bbox", bbox, "--datetime", "2024-06-01/2024-08-31", "--max-cloud", "10",
                            "--limit", "1", "--run", "--out", str(tmp_path), *_models(random_models), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(list(tmp_path.glob("*.tif"))) == 1


def test_search_static_catalog_over_http(cog_server: RangeServer) -> None:
    """The sample catalog served by a plain web server: searched client-side, hrefs absolute URLs."""
    base = cog_server.prefix()
    r = runner.invoke(app, ["search", "--catalog", f"{base}/catalog.json", "--bbox", BBOX, "--json"])
    assert r.exit_code == 0, r.output
    feats = json.loads(r.stdout.strip().splitlines()[-1])["features"]
    assert [f["id"] for f in feats] == [VA_ID]
    assert feats[0]["assets"]["red"]["href"] == f"{base}/sentinel-2-l1c/{VA_ID}/B04.tif"
