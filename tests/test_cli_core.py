"""The core CLI commands end to end: superres (npz and GeoTIFF), export, info, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from s2sr_cloud.cli import app
from s2sr_cloud.errors import InputError, OutputExists, ShapeMismatch
from tests.conftest import DATA

runner = CliRunner()


def _models(random_models) -> list[str]:
    return ["--onnx", str(random_models["net20"]["onnx"]), "--onnx", str(random_models["net60"]["onnx"])]


def test_help_is_light():
    """`s2sr --help` must not import torch, tensorrt or onnxruntime."""
    code = (
        "import sys; from s2sr_cloud.cli import app; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "bad = [m for m in ('torch', 'tensorrt', 'onnxruntime', 'rasterio') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_superres_npz(tmp_path, random_models, malmo_npz):
    small = tmp_path / "in.npz"
    with np.load(malmo_npz) as z:
        np.savez(small, b10=z["b10"][:, :120, :96], b20=z["b20"][:, :60, :48], b60=z["b60"][:, :20, :16])
    out = tmp_path / "out.npz"
    r = runner.invoke(app, ["superres", str(small), "--out", str(out), "--tile", "48", *_models(random_models)])
    assert r.exit_code == 0, r.output
    with np.load(out) as z:
        assert z["b20"].shape == (6, 120, 96) and z["b60"].shape == (2, 120, 96)
        assert z["b20"].dtype == np.uint16 and (z["b20"] > 0).all()
    r = runner.invoke(app, ["superres", str(small), "--out", str(out), *_models(random_models)])
    assert isinstance(r.exception, OutputExists)


def test_superres_geotiff_to_cog(tmp_path, random_models):
    import rasterio

    out = tmp_path / "sr.tif"
    r = runner.invoke(
        app,
        ["superres", str(DATA / "T18SVG_crop240"), "--out", str(out), "--tile", "64", "--block", "120", *_models(random_models)],
    )
    assert r.exit_code == 0, r.output
    with rasterio.open(out) as d, rasterio.open(DATA / "T18SVG_crop240" / "T18SVG_20160112_B02.tif") as ref:
        assert d.count == 8 and d.shape == (240, 240) and d.dtypes[0] == "uint16"
        assert d.crs == ref.crs and d.transform == ref.transform and d.nodata == 0
        assert d.descriptions[0].startswith("B01") and d.descriptions[4].startswith("B8A")
        assert d.profile["tiled"] and d.tags()["S2SR_VERSION"]
        data = d.read()
    assert (data > 0).all()
    # streamed by blocks of 120 px == one block over the whole scene
    out2 = tmp_path / "sr2.tif"
    r = runner.invoke(
        app,
        ["superres", str(DATA / "T18SVG_crop240"), "--out", str(out2), "--tile", "64", "--block", "240", *_models(random_models)],
    )
    assert r.exit_code == 0, r.output
    with rasterio.open(out2) as d:
        assert np.abs(d.read().astype(int) - data.astype(int)).max() <= 1
    assert not list(tmp_path.glob(".*tmp*")) and not list(tmp_path.glob(".*.tif"))


def test_superres_missing_band(tmp_path, random_models):
    folder = tmp_path / "scene"
    shutil.copytree(DATA / "T18SVG_crop240", folder)
    (folder / "T18SVG_20160112_B8A.tif").unlink()
    r = runner.invoke(app, ["superres", str(folder), "--out", str(tmp_path / "o.tif"), *_models(random_models)])
    assert isinstance(r.exception, InputError) and "B8A" in str(r.exception)


def test_superres_bad_shapes(tmp_path, random_models):
    bad = tmp_path / "bad.npz"
    np.savez(bad, b10=np.ones((4, 444, 456), np.uint16), b20=np.ones((6, 221, 227), np.uint16), b60=np.ones((2, 73, 75), np.uint16))
    r = runner.invoke(app, ["superres", str(bad), "--out", str(tmp_path / "o.npz"), *_models(random_models)])
    assert isinstance(r.exception, ShapeMismatch)


def test_main_prints_error_without_traceback(tmp_path, random_models):
    bad = tmp_path / "bad.npz"
    np.savez(bad, b10=np.ones((4, 12, 12), np.uint16))
    p = subprocess.run(
        [sys.executable, "-c", "from s2sr_cloud.cli import main; main()", "superres", str(bad), "--out", str(tmp_path / "o.npz"), *_models(random_models)],
        capture_output=True, text=True,
    )
    assert p.returncode == InputError.exit_code
    assert "lacks arrays b20, b60" in p.stderr and "Traceback" not in p.stderr


def test_export_cli(tmp_path, random_models):
    r = runner.invoke(app, ["export", str(random_models["net20"]["checkpoint"]), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "net20_dsen2.json").read_text())
    assert m["verification"]["passed"]


def test_info_json():
    r = runner.invoke(app, ["info", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert "CPUExecutionProvider" in d["onnxruntime_providers"]
    assert d["backends"]["onnxruntime CPU"] is True
    assert d["gpus"] == [] or all("name" in g for g in d["gpus"])


def test_outputs_are_world_readable(tmp_path, random_models):
    """Atomic writes must not leave mkstemp's 0600 mode on published files."""
    import os
    import stat

    out = tmp_path / "sr.tif"
    old = os.umask(0o022)
    try:
        r = runner.invoke(app, ["superres", str(DATA / "T18SVG_crop240"), "--out", str(out), *_models(random_models)])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_band_folder_reads_as_stored_and_checks_grids(tmp_path):
    """A band-file folder reads the stored DN; a 20 m raster of the wrong size is refused."""
    import rasterio

    from s2sr_cloud.io.bandfiles import BandFilesSource, find_band_files
    from s2sr_cloud.scenes import load_tif_folder

    folder = DATA / "T18SVG_crop240"
    scene = load_tif_folder(folder)
    for arr, band, i in ((scene.b10, "B02", 0), (scene.b20, "B8A", 3), (scene.b60, "B09", 1)):
        with rasterio.open(folder / f"T18SVG_20160112_{band}.tif") as d:
            np.testing.assert_array_equal(arr[i], d.read(1))
    bad = tmp_path / "scene"
    shutil.copytree(folder, bad)
    with rasterio.open(folder / "T18SVG_20160112_B05.tif") as d:
        prof, data = d.profile, d.read()
    prof.update(width=100, height=100)
    with rasterio.open(bad / "T18SVG_20160112_B05.tif", "w", **prof) as d:
        d.write(data[:, :100, :100])
    with pytest.raises(ShapeMismatch, match="2x the 20 m side"), BandFilesSource(find_band_files(bad)):
        pass


def test_superres_backproject_option_and_qa_tags(tmp_path):
    """`--backproject N` (default 2; -1 = the raw nets) with the shipped nets on real imagery: the
    consistency QA lands in the COG tags, small with the post-step, larger without."""
    import rasterio

    figures = {}
    for n in ("2", "-1"):
        out = tmp_path / f"bp{n}.tif"
        r = runner.invoke(app, ["superres", str(DATA / "T18SVG_crop240"), "--out", str(out), "--block", "120",
                                "--device", "cpu", "--backproject", n])
        assert r.exit_code == 0, r.output
        with rasterio.open(out) as d:
            tags = d.tags()
        assert tags["S2SR_BACKPROJECT"] == n and tags["S2SR_CATALOG"] == "local" and tags["S2SR_BACKENDS"]
        assert tags["S2SR_HYBRID"] == "net20=1/30/0.4,net60=1/300/0.6"  # on by default
        figures[n] = json.loads(tags["S2SR_CONSISTENCY_RMSE"])
    assert figures["2"]["B01"] < 1 and figures["2"]["B09"] < 1 and max(figures["2"].values()) < 10, figures
    assert all(figures["-1"][b] > figures["2"][b] for b in figures["2"])
    out = tmp_path / "nets.tif"  # --no-hybrid: the nets alone (then the back-projection)
    r = runner.invoke(app, ["superres", str(DATA / "T18SVG_crop240"), "--out", str(out), "--block", "120",
                            "--device", "cpu", "--no-hybrid"])
    assert r.exit_code == 0, r.output
    with rasterio.open(out) as d, rasterio.open(tmp_path / "bp2.tif") as h:
        assert d.tags()["S2SR_HYBRID"] == "off" and d.tags()["S2SR_BACKPROJECT"] == "2"
        assert np.abs(d.read().astype(int) - h.read().astype(int)).mean() > 1  # the hybrid step changes the output
    r = runner.invoke(app, ["superres", str(DATA / "T18SVG_crop240"), "--out", str(tmp_path / "x.tif"), "--backproject", "-2"])
    assert r.exit_code == 2 and not (tmp_path / "x.tif").exists()


def test_superres_npz_goes_through_the_same_loop(tmp_path, random_models, malmo_npz):
    """An .npz scene: blocks of the one loop equal one block, and the QA is stored beside the bands."""
    small = tmp_path / "in.npz"
    with np.load(malmo_npz) as z:
        np.savez(small, b10=z["b10"][:, :120, :96], b20=z["b20"][:, :60, :48], b60=z["b60"][:, :20, :16])
    outs = []
    for block in ("60", "1536"):
        out = tmp_path / f"out{block}.npz"
        r = runner.invoke(app, ["superres", str(small), "--out", str(out), "--block", block, *_models(random_models)])
        assert r.exit_code == 0, r.output
        outs.append(dict(np.load(out)))
    for k in ("b20", "b60"):
        assert np.abs(outs[0][k].astype(int) - outs[1][k].astype(int)).max() <= 1
    qa = json.loads(str(outs[1]["consistency_rmse"]))
    assert int(outs[1]["backproject"]) == 2 and bool(outs[1]["hybrid"]) and set(qa) == {"B01", "B05", "B06", "B07", "B8A", "B09", "B11", "B12"}
    assert all(v >= 0 for v in qa.values())  # random nets: the figures' size is the shipped nets' test above
