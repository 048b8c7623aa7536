"""The core CLI commands end to end: superres (npz and GeoTIFF), export, info, errors."""

from __future__ import annotations

import json
import os
import re
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


#: Imported by no `--help` (each one, or what it pulls, costs 0.1-2 s): the libraries of the commands.
#: rich.table is not listed: Typer's own help renders its panels as rich tables.
HEAVY = (
    "numpy", "scipy", "rasterio", "pyproj", "shapely", "affine", "torch", "safetensors", "h5py", "onnx",
    "onnxruntime", "openvino", "tensorrt", "pystac", "pystac_client", "requests", "urllib3", "boto3",
    "botocore", "obstore", "fsspec", "dask", "distributed", "xarray", "odc", "zarr", "PIL",
    "rich.progress", "rich.logging",
)
#: s2sr_cloud modules a `--help` may import: the CLI and the leaves its option types use.
LIGHT_OWN = {"s2sr_cloud", "s2sr_cloud.errors", "s2sr_cloud.options", "s2sr_cloud.settings", "s2sr_cloud.stop"}  # stop: the signal handler (stdlib only)
COMMANDS = [  # every command path, in the order of `s2sr --help`
    "search", "run", "superres", "publish", "mosaic", "task", "train", "evaluate", "export", "import-keras",
    "engine", "engine build", "engine list", "engine check", "tune", "info",
]
PANELS = {
    "Find and process": ["search", "run", "superres"],
    "Publish": ["publish", "mosaic", "task"],
    "Models": ["train", "evaluate", "export", "import-keras"],
    "Engines and system": ["engine", "tune", "info"],
}
_HELP_ALL = r"""
import contextlib, io, json, sys
from s2sr_cloud.cli import main
out = {}
for argv in json.loads(sys.argv[1]):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main([*argv, "--help"])
            rc = 0
        except SystemExit as e:
            rc = e.code
    out[" ".join(argv)] = [rc, buf.getvalue()]
print(json.dumps({"help": out, "modules": sorted(sys.modules)}))
"""


def _help_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TERMINAL_WIDTH", "FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "COLUMNS")}
    return {**env, "COLUMNS": "80", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}


@pytest.fixture(scope="module")
def help_pages() -> dict:  # type: ignore[type-arg]
    """Every command's `--help` at 80 columns, all in one fresh interpreter, and what it imported."""
    argvs = [[], *(c.split() for c in COMMANDS)]
    p = subprocess.run([sys.executable, "-c", _HELP_ALL, json.dumps(argvs)], capture_output=True, text=True,
                       env=_help_env(), check=True)
    return json.loads(p.stdout)


def test_help_imports_nothing_heavy(help_pages) -> None:
    mods = set(help_pages["modules"])
    heavy = sorted({m if m in HEAVY else m.split(".")[0] for m in mods if m.split(".")[0] in HEAVY or m in HEAVY})
    assert heavy == [], f"`--help` imported {heavy}"
    own = sorted(m for m in mods if m.startswith("s2sr_cloud") and not m.startswith("s2sr_cloud.cli")
                 and m not in LIGHT_OWN)
    assert own == [], f"`--help` imported library modules {own}: import them inside the commands"


def test_console_script_help_imports_nothing_heavy() -> None:
    """The installed `s2sr --help` itself, read with -X importtime."""
    script = shutil.which("s2sr", path=os.path.dirname(sys.executable)) or shutil.which("s2sr")
    assert script, "the s2sr console script is not installed"
    p = subprocess.run([sys.executable, "-X", "importtime", script, "--help"], capture_output=True, text=True,
                       env=_help_env(), check=True)
    imported = {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    assert "s2sr_cloud.cli._app" in imported and "Find and process" in p.stdout
    assert sorted(m for m in imported if m.split(".")[0] in HEAVY or m in HEAVY) == []


def test_every_command_is_reachable(help_pages) -> None:
    import typer

    def paths(cmd, prefix):  # type: ignore[no-untyped-def]
        for name, sub in getattr(cmd, "commands", {}).items():
            yield " ".join([*prefix, name])
            yield from paths(sub, [*prefix, name])

    assert sorted(paths(typer.main.get_command(app), [])) == sorted(COMMANDS)
    assert {k: v[0] for k, v in help_pages["help"].items()} == dict.fromkeys(["", *COMMANDS], 0)


def test_help_groups_commands_in_panels(help_pages) -> None:
    text = help_pages["help"][""][1]
    titles = [t for t in re.findall(r"╭─ (.+?) ─", text) if t != "Options"]
    assert titles == list(PANELS)  # find/process first; no catch-all "Commands" panel
    for title, chunk in zip(titles, re.split(r"╭─ .+? ─+╮", text)[2:], strict=True):
        assert re.findall(r"│ ([a-z][a-z-]*) ", chunk) == PANELS[title]


def _words(text: str) -> set[str]:
    """The words of a help page (box drawing removed), and their comma-separated parts
    (Typer joins an option's names with commas: ``--max-items,--limit``)."""
    raw = re.sub(r"\x1b\[[0-9;]*m", "", text).translate(str.maketrans(dict.fromkeys("│╭╮╰╯─", " "))).split()
    return {*raw, *(part for w in raw for part in w.split(","))}


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_is_readable_at_80_columns(help_pages, command: str) -> None:
    """No line over 80 characters, and nothing cut: every option name and variable in full, every
    word of every help text (none truncated with an ellipsis, none taken for rich markup)."""
    import typer

    text = help_pages["help"][command][1]
    assert max(map(len, text.splitlines())) <= 80
    cmd = typer.main.get_command(app)
    for name in command.split():
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    words = _words(text)
    missing = [w for w in (cmd.help or "").replace("\\[", "[").split() if w.strip(",") not in words]
    for p in cmd.params:
        names = [*p.opts, *getattr(p, "secondary_opts", [])] if p.param_type_name == "option" else []
        missing += [n for n in names if n not in words]
        missing += [w for w in (p.help or "").replace("\\[", "[").split() if w.strip(",") not in words]
        missing += [p.envvar] if isinstance(p.envvar, str) and f"{p.envvar}]" not in words else []
    assert missing == [], f"`s2sr {command} --help` at 80 columns lost: {missing}"
    if command == "":  # each command's summary on one line
        for sub in (c for cs in PANELS.values() for c in cs):
            summary = (cmd.commands[sub].help or "").split("\n\n")[0]  # type: ignore[attr-defined]
            assert re.search(rf"│ {sub} +{re.escape(summary)} +│", text), sub


def test_backproject_default_is_the_librarys() -> None:
    """No --backproject: each net's own iterations (the library's DEFAULT), which the help text writes
    out by hand (importing the post-steps imports NumPy, and `s2sr --help` must not)."""
    from typing import get_args

    from s2sr_cloud.cli._options import BACKPROJECT_DEFAULT, Backproject
    from s2sr_cloud.post import DEFAULT, product
    from s2sr_cloud.post.steps import DEFAULT_PER_NET

    assert BACKPROJECT_DEFAULT is None and product() == DEFAULT and DEFAULT.per_net == DEFAULT_PER_NET
    shown = get_args(Backproject)[1].show_default
    assert shown == f"20 m: {DEFAULT.iterations('net20')}, 60 m: {DEFAULT.iterations('net60')}"
    assert product(1).iterations("net60") == product(1).iterations("net20") == 1
    assert product(1).operator_of("net60") == DEFAULT.operator_of("net60")  # --backproject N keeps the operators


def test_shared_option_types_move_between_panels_as_copies() -> None:
    from typing import get_args

    from s2sr_cloud.cli._options import O_MODELS, Precision, in_panel

    moved = in_panel(Precision, "Elsewhere", metavar="P")
    assert get_args(moved)[1].rich_help_panel == "Elsewhere" and get_args(moved)[1].metavar == "P"
    assert get_args(Precision)[1].rich_help_panel == O_MODELS and get_args(Precision)[1].metavar == "PRECISION"
    assert get_args(moved)[1].callback is get_args(Precision)[1].callback


def test_model_files_sorts_by_the_net_in_the_metadata(random_models) -> None:
    from s2sr_cloud.cli._options import model_files

    r = random_models
    ckpts, onnxs = model_files([r["net60"]["checkpoint"]], [r["net60"]["onnx"], r["net20"]["onnx"]])
    assert ckpts == {"net60": r["net60"]["checkpoint"]}
    assert onnxs == {"net60": r["net60"]["onnx"], "net20": r["net20"]["onnx"]}
    assert model_files(None, None) == ({}, {})


@pytest.mark.parametrize(("sidecar", "target", "status"), [
    ({"gpu_name": "H200", "compute_capability": "9.0", "tensorrt_version": "10.1"}, ("H200", "9.0", "10.1"), "usable here"),
    ({"gpu_name": "H200", "compute_capability": "9.0", "tensorrt_version": "10.0"}, ("H200", "9.0", "10.1"), "stale (TensorRT)"),
    ({"gpu_name": "L4", "compute_capability": "8.9", "tensorrt_version": "10.1"}, ("H200", "9.0", "10.1"), "other GPU"),
    ({"gpu_name": "L4"}, None, "? (no GPU/TensorRT here)"),
])
def test_engine_status_of_a_sidecar(sidecar, target, status) -> None:
    from s2sr_cloud.infer.engine_target import engine_status, engine_target

    assert engine_status(sidecar, target) == status
    assert engine_target("H200", "9.0", "10.1") == ("H200", "9.0", "10.1")  # given: not probed


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
        ["superres", str(DATA / "T18SVG_crop240"), "--out", str(out), "--tile", "120", "--block", "120", *_models(random_models)],
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
        ["superres", str(DATA / "T18SVG_crop240"), "--out", str(out2), "--tile", "120", "--block", "240", *_models(random_models)],
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
    # which backend and where the post-steps would run, per net and --precision
    runs = {(r["net"], r["precision_option"]): r for r in d["will_run"]}
    assert set(runs) == {(n, p) for n in ("net20", "net60") for p in ("fp32", "auto")}
    for r in runs.values():
        assert r["backend"] and (r["post_steps"] == "host (NumPy)" or r["post_steps"].startswith("device (")), r


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
    """`--backproject N` (-1 = none) and `--no-hybrid` with the shipped nets on real imagery: the
    consistency QA lands in the COG tags, small with the back-projection, larger for the raw nets;
    the tags name the post-steps that ran."""
    import rasterio

    from s2sr_cloud.post import PostSteps

    figures = {}
    for n, extra in (("2", []), ("-1", ["--no-hybrid"])):
        out = tmp_path / f"bp{n}.tif"
        r = runner.invoke(app, ["superres", str(DATA / "T18SVG_crop240"), "--out", str(out), "--block", "120",
                                "--device", "cpu", "--backproject", n, *extra])
        assert r.exit_code == 0, r.output
        with rasterio.open(out) as d:
            tags = d.tags()
        assert tags["S2SR_BACKPROJECT"] == n and tags["S2SR_CATALOG"] == "local" and tags["S2SR_BACKENDS"]
        assert tags["S2SR_HYBRID"] == ("off" if extra else PostSteps().hybrid_tag(["net20", "net60"]))  # on by default
        figures[n] = json.loads(tags["S2SR_CONSISTENCY_RMSE"])
        # the operator the post-steps ran with: estimated from this scene (the 20 m bands relate to the
        # 10 m ones by a Gaussian of about 0.43 LR px here, wider than the Wald operator's 0.35)
        if not extra:
            ops = dict(kv.split("=", 1) for kv in tags["S2SR_POST_OPERATOR"].split(","))
            assert all(o.startswith("auto(gaussian:0.") for o in ops.values()), tags["S2SR_POST_OPERATOR"]
            assert 0.38 <= float(ops["net20"][len("auto(gaussian:"):-1]) <= 0.48
    # the QA degrades with the Wald operator; the default back-projection enforces the scene's own
    # (wider) operator: the 60 m figures drop, without vanishing; the 20 m ones need not (the narrower
    # Wald operator reads the sharper output as less consistent)
    assert all(figures["-1"][b] > figures["2"][b] > 0 for b in ("B01", "B09")), figures
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
