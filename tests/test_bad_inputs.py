"""Bad inputs and faults against the installed ``s2sr``, in real processes (not CliRunner).

Table-driven: every case runs ``.venv/bin/s2sr`` in a subprocess in its own empty working
folder, whose ``out/`` is the case's output folder, and asserts

* the documented exit code (2 usage / unusable input, 3 catalog, 4 asset, 5 geometry,
  6 raster read, 7 model, 9 output, 130 Ctrl-C, 143 SIGTERM, 0 ok),
* no ``Traceback`` on stdout or stderr, and the expected words in the message,
* nothing written in the working folder outside ``out/`` (and nothing at all in the shared
  inputs, or beside the working folder: remote ids cannot choose paths),
* nothing left under a final output name on failure, and no hidden staging files ever.

The cases run concurrently (threads, each waiting on its own process), once per session;
each case is then its own test, so a failure names the case.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

S2SR = str(Path(sys.executable).parent / "s2sr")
REPO = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data"
CROP = DATA / "T18SVG_crop240"
MALMO = DATA / "S2A_MSIL1C_20170527_T33UUB.npz"
SAMPLE_ITEM = REPO / "s2sr_cloud" / "sample" / "sentinel-2-l2a" / "S2A_MSIL2A_20170613T101031_87_48"
ONNX = REPO / "export"
WEIGHTS = REPO / "s2sr_cloud" / "weights"
SAMPLE = REPO / "s2sr_cloud" / "sample" / "sentinel-2-l2a"
STAGING_MARKERS = (".tmp", ".stage.tif", ".cog.tif", ".part", ".npz")
PARALLEL = max(2, min(6, (os.cpu_count() or 2) * 2))

Args = list[str] | Callable[["Ctx"], list[str]]


@dataclass
class Ctx:
    """Where a case runs: ``work`` (cwd), ``out`` (its output folder), ``a`` (shared inputs)."""

    work: Path
    out: Path
    a: Path


@dataclass
class Case:
    name: str
    args: Args
    code: int
    says: tuple[str, ...] = ()
    """Words (case-insensitive) the output must contain."""
    final: Callable[[Ctx], list[Path]] | None = None
    """Final outputs: must exist on success, must not on failure."""
    setup: Callable[[Ctx], None] | None = None
    signal: int | None = None
    """Send this signal once a staging file appears in ``out`` (or after ``signal_after`` seconds)."""
    signal_after: float | None = None
    within: float | None = None
    """The process must end this many seconds after the signal (a bound on the interrupt's latency,
    far above it: the work left when the signal comes takes many times longer)."""
    stdout_json: Callable[[object], bool] | None = None
    env: dict[str, str] = field(default_factory=dict)


# --- shared inputs ----------------------------------------------------------------------
def _scene(h: int = 60, dtype: str = "uint16", seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "b10": rng.integers(200, 3000, (4, h, h)).astype(dtype),
        "b20": rng.integers(200, 3000, (6, h // 2, h // 2)).astype(dtype),
        "b60": rng.integers(200, 3000, (2, h // 6, h // 6)).astype(dtype),
    }


def _write_band_folder(dest: Path, transform: Callable[[np.ndarray], np.ndarray] | None = None,
                       dtype: str | None = None, mosaic: int = 1, skip: str | None = None) -> None:
    import rasterio
    from rasterio.transform import Affine

    dest.mkdir(parents=True)
    for src in sorted(CROP.glob("*.tif")):
        if skip and src.stem.endswith(skip):
            continue
        with rasterio.open(src) as ds:
            arr = ds.read(1)
            prof = ds.profile
        arr = np.tile(arr, (mosaic, mosaic))
        if transform is not None:
            arr = transform(arr)
        t = prof["transform"]
        prof.update(width=arr.shape[1], height=arr.shape[0], dtype=dtype or str(arr.dtype),
                    transform=Affine(t.a, t.b, t.c, t.d, t.e, t.f))
        with rasterio.open(dest / src.name, "w", **prof) as out:
            out.write(arr.astype(prof["dtype"]), 1)


def _item_variant(a: Path, name: str, edit: Callable[[dict], dict]) -> Path:
    doc = json.loads((SAMPLE_ITEM / f"{SAMPLE_ITEM.name}.json").read_text())
    path = a / "item" / f"{name}.json"
    path.write_text(json.dumps(edit(doc)))
    return path


def _make_inputs(a: Path, root: Path) -> None:
    np.savez(a / "ok.npz", **_scene())
    s = _scene()
    np.savez(a / "reflectance.npz", **{k: (v / 10000.0).astype("float32") for k, v in s.items()})
    np.savez(a / "negative.npz", **{k: v.astype("int16") - 500 for k, v in s.items()})
    nan = {k: v.astype("float32") for k, v in _scene().items()}
    nan["b20"][0, 3, 3] = np.nan
    np.savez(a / "nan.npz", **nan)
    inf = {k: v.astype("float32") for k, v in _scene().items()}
    inf["b10"][1, 5, 5] = np.inf
    np.savez(a / "inf.npz", **inf)
    np.savez(a / "complex.npz", **{k: v.astype("complex64") for k, v in _scene().items()})
    np.savez(a / "missing.npz", b10=s["b10"], b20=s["b20"])
    np.savez(a / "shapes.npz", b10=s["b10"], b20=s["b20"][:, :20], b60=s["b60"])
    np.savez(a / "ndim.npz", b10=s["b10"][0], b20=s["b20"], b60=s["b60"])
    np.savez(a / "odd.npz", **_scene(h=64))
    np.savez(a / "allzero.npz", **{k: np.zeros_like(v) for k, v in s.items()})
    (a / "corrupt.npz").write_bytes(os.urandom(2048))
    (a / "text.npz").write_text("not a numpy archive\n")
    (a / "notes.txt").write_text("hello\n")
    (a / "garbage.onnx").write_bytes(b"\x00not onnx" * 50)
    (a / "garbage.safetensors").write_bytes(b"\xff" * 64)
    (a / "garbage.hdf5").write_bytes(b"not hdf5" * 20)
    (a / "garbage.engine").write_bytes(b"not an engine" * 20)
    (a / "not-json.json").write_text("{ this is not json")
    (a / "catalog.json").write_text(json.dumps({"type": "Catalog", "id": "x", "description": "x",
                                                "stac_version": "1.0.0", "links": []}))
    (a / "fc.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    (a / "empty-dir").mkdir()
    _write_band_folder(a / "float-refl", transform=lambda x: x / 10000.0, dtype="float32")
    def one_nan(x: np.ndarray) -> np.ndarray:
        x = x.astype("float32")
        x[3, 3] = np.nan
        return x

    _write_band_folder(a / "nan-tif", transform=one_nan, dtype="float32")
    _write_band_folder(a / "no-b05", skip="B05")
    _write_band_folder(a / "big", mosaic=4)  # 960 x 960 px: takes seconds, for the signal cases
    corrupt = a / "corrupt-tif"
    shutil.copytree(CROP, corrupt)
    (corrupt / "T18SVG_20160112_B05.tif").write_bytes(b"II*\x00" + os.urandom(4000))
    shutil.copytree(SAMPLE_ITEM, a / "item")
    _item_variant(a, "evil", lambda d: {**d, "id": "../../evil"})
    _item_variant(a, "abs", lambda d: {**d, "id": str(root / "ABSOLUTE")})
    _item_variant(a, "nothing-but-dots", lambda d: {**d, "id": ".."})
    _item_variant(a, "no-b05", lambda d: {**d, "assets": {k: v for k, v in d["assets"].items()
                                                          if "B05" not in json.dumps(v.get("eo:bands", ""))}})
    _item_variant(a, "bad-href", lambda d: {**d, "assets": {k: ({**v, "href": "./nope.tif"} if "B05" in
                                                                json.dumps(v.get("eo:bands", "")) else v)
                                                            for k, v in d["assets"].items()}})
    _item_variant(a, "corrupt-href", lambda d: {**d, "assets": {k: ({**v, "href": "./garbage.tif"} if "B05" in
                                                                    json.dumps(v.get("eo:bands", "")) else v)
                                                                for k, v in d["assets"].items()}})
    (a / "item" / "garbage.tif").write_bytes(b"II*\x00" + os.urandom(3000))
    doc = json.loads((SAMPLE_ITEM / f"{SAMPLE_ITEM.name}.json").read_text())
    (a / "item" / "two.json").write_text(json.dumps({"type": "FeatureCollection", "features": [doc, doc]}))
    (a / "item" / "catalog-not-item.json").write_text((a / "catalog.json").read_text())
    _item_variant(a, "empty-id", lambda d: {**d, "id": ""})
    _item_variant(a, "refused-href", lambda d: {**d, "assets": {k: ({**v, "href": "http://127.0.0.1:9/B05.tif"} if "B05" in
                                                                   json.dumps(v.get("eo:bands", "")) else v)
                                                               for k, v in d["assets"].items()}})
    _write_zero_item(a / "item")
    rec = a / "records"
    for name, body in (("truncated", b'{"s2sr_record": 1, "cog": "x-s2sr.tif", "sour'), ("empty", b"{}"),
                       ("wrong-types", json.dumps({"s2sr_record": 1, "cog": 5, "source_item": [], "models": "m",
                                                   "backend": 1, "version": 2}).encode()),
                       ("binary", os.urandom(512)), ("list", b"[1, 2]")):
        (rec / name).mkdir(parents=True)
        (rec / name / "x-s2sr.s2sr.json").write_bytes(body)
        shutil.copy(CROP / "T18SVG_20160112_B05.tif", rec / name / "x-s2sr.tif")
    (a / "cache-is-a-file").write_text("not a folder")
    with np.load(MALMO) as z:  # 1200 x 1200 px: one block of 16 + 16 tiles, many seconds of inference on any CPU
        np.savez(a / "malmo-1200.npz", **{k: np.tile(z[k], (1, 2, 2)) for k in ("b10", "b20", "b60")})


def _write_zero_item(folder: Path) -> None:
    """``zeros.json``: the sample item with every band an all-0 (nodata) raster on the same grid."""
    import rasterio

    doc = json.loads((SAMPLE_ITEM / f"{SAMPLE_ITEM.name}.json").read_text())
    zeros = folder / "zeros"
    zeros.mkdir()
    for asset in doc["assets"].values():
        href = asset["href"]
        if not href.endswith(".tif"):
            continue
        with rasterio.open(SAMPLE_ITEM / href.removeprefix("./")) as src:
            prof = src.profile
        prof.pop("nodata", None)
        name = Path(href).name
        with rasterio.open(zeros / name, "w", **prof) as dst:
            dst.write(np.zeros((prof["count"], prof["height"], prof["width"]), prof["dtype"]))
        asset["href"] = f"./zeros/{name}"
    (folder / "zeros.json").write_text(json.dumps({**doc, "id": "zeros"}))


# --- the table --------------------------------------------------------------------------
def _onnx() -> list[str]:
    return ["--onnx", str(ONNX / "net20_dsen2.onnx"), "--onnx", str(ONNX / "net60_dsen2.onnx"), "--device", "cpu"]


def sr(inp: str, out: str = "out/sr.npz", *more: str) -> Args:
    def build(c: Ctx) -> list[str]:
        src = inp if inp.startswith("/") else str(c.a / inp)
        return ["superres", src, "--out", out, *_onnx(), *more]
    return build


def run(item: str, *more: str) -> Args:
    return lambda c: ["run", str(c.a / "item" / item), "--out", "out", *_onnx(), *more]


def search(*more: str) -> Args:
    return ["search", "--catalog", "sample", *more]


BBOX = "13.715,48.219,13.725,48.226"
WORLD = "-180,-90,180,90"
EVIL_OUT = "S2A_MSIL2A_20170613T101031_87_48"


def _fc(n: int | None = None) -> Callable[[object], bool]:
    return lambda d: isinstance(d, dict) and d.get("type") == "FeatureCollection" and (
        n is None or len(d.get("features", [])) == n)


def _one_cog(c: Ctx) -> list[Path]:
    return list(c.out.glob("*-s2sr.tif"))


CASES: list[Case] = [
    # --- the root command ------------------------------------------------------------------
    Case("no-args-shows-help", [], 2, ("Usage",)),
    Case("unknown-command", ["nothere"], 2, ("No such command",)),
    Case("unknown-root-option", ["--bogus"], 2, ("No such option",)),
    Case("version", ["--version"], 0, ("s2sr-cloud",)),
    Case("help", ["--help"], 0, ("superres",)),
    Case("superres-help", ["superres", "--help"], 0, ("--out",)),
    Case("engine-no-subcommand", ["engine"], 2, ("Usage",)),
    Case("engine-unknown-subcommand", ["engine", "fly"], 2, ("No such command",)),
    Case("verbose-and-quiet-ok", ["-vv", "-q", "info", "--json"], 0, ("backends",)),
    # --- superres: usage errors -------------------------------------------------------------
    Case("superres-missing-input", ["superres", "nope.npz", "--out", "out/x.npz"], 2, ("does not exist",)),
    Case("superres-missing-out", lambda c: ["superres", str(c.a / "ok.npz")], 2, ("--out",)),
    Case("superres-tile-0", sr("ok.npz", "out/x.npz", "--tile", "0"), 2, ("--tile",)),
    Case("superres-tile-text", sr("ok.npz", "out/x.npz", "--tile", "big"), 2, ("--tile",)),
    Case("superres-block-small", sr("ok.npz", "out/x.npz", "--block", "10"), 2, ("--block",)),
    Case("superres-batch-0", sr("ok.npz", "out/x.npz", "--batch", "0"), 2, ("--batch",)),
    Case("superres-precision-fp64", sr("ok.npz", "out/x.npz", "--precision", "fp64"), 2, ("fp32", "fp16")),
    Case("superres-device-typo", sr("ok.npz", "out/x.npz", "--device", "gpu"), 2, ("cpu", "cuda")),
    Case("superres-device-cuda-x", sr("ok.npz", "out/x.npz", "--device", "cuda:x"), 2, ("cuda:N",)),
    Case("superres-unknown-option", sr("ok.npz", "out/x.npz", "--fast"), 2, ("No such option",)),
    Case("superres-onnx-missing", lambda c: ["superres", str(c.a / "ok.npz"), "-o", "out/x.npz", "--onnx", "no.onnx"],
         2, ("does not exist",)),
    # --- superres: inputs that are not DN / not a scene --------------------------------------
    Case("npz-to-tif-suffix", sr("ok.npz", "out/sr.tif"), 2, (".npz",), final=lambda c: [c.out / "sr.tif"]),
    Case("folder-to-npz-suffix", sr(str(CROP), "out/sr.npz"), 2, (".tif",), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-reflectance", sr("reflectance.npz"), 2, ("reflectance", "10000"), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-negative", sr("negative.npz"), 2, ("negative",), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-nan", sr("nan.npz"), 2, ("NaN",), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-inf", sr("inf.npz"), 2, ("Inf",), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-complex", sr("complex.npz"), 2, ("data type",), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-missing-array", sr("missing.npz"), 2, ("b60",), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-wrong-shapes", sr("shapes.npz"), 2, ("20 m",), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-wrong-ndim", sr("ndim.npz"), 2, ("b10",), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-not-multiple-of-6", sr("odd.npz"), 2, ("multiple of 60",), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-corrupt", sr("corrupt.npz"), 2, ("cannot read",), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-text", sr("text.npz"), 2, ("cannot read",), final=lambda c: [c.out / "sr.npz"]),
    Case("npz-is-a-txt", sr("notes.txt"), 2, ("cannot read",), final=lambda c: [c.out / "sr.npz"]),
    Case("folder-empty", sr("empty-dir", "out/sr.tif"), 2, ("lacks files",), final=lambda c: [c.out / "sr.tif"]),
    Case("folder-missing-band", sr("no-b05", "out/sr.tif"), 2, ("B05",), final=lambda c: [c.out / "sr.tif"]),
    Case("folder-corrupt-band", sr("corrupt-tif", "out/sr.tif"), 6, ("B05",), final=lambda c: [c.out / "sr.tif"]),
    Case("folder-float-reflectance", sr("float-refl", "out/sr.tif"), 2, ("reflectance",),
         final=lambda c: [c.out / "sr.tif"]),
    Case("folder-nan", sr("nan-tif", "out/sr.tif"), 2, ("NaN",), final=lambda c: [c.out / "sr.tif"]),
    # --- superres: outputs -----------------------------------------------------------------
    Case("out-is-a-folder", sr("ok.npz", "out/sr.npz"), 9, ("folder",),
         setup=lambda c: (c.out / "sr.npz").mkdir(parents=True)),
    Case("out-under-a-file", sr("ok.npz", "out/file/sr.npz"), 9, ("file",),
         setup=lambda c: (c.out.mkdir(), (c.out / "file").write_text("x"))),
    Case("out-exists", sr("ok.npz", "out/sr.npz"), 9, ("--overwrite",),
         setup=lambda c: (c.out.mkdir(), (c.out / "sr.npz").write_text("keep me"))),
    Case("out-in-proc", sr("ok.npz", "/proc/s2sr-test-out.npz"), 9, ("cannot",)),
    Case("out-tif-is-a-folder", sr(str(CROP), "out/sr.tif"), 9, ("folder",),
         setup=lambda c: (c.out / "sr.tif").mkdir(parents=True)),
    # --- superres: models ------------------------------------------------------------------
    Case("onnx-garbage", lambda c: ["superres", str(c.a / "ok.npz"), "-o", "out/x.npz", "--onnx",
                                    str(c.a / "garbage.onnx")], 7, ()),
    Case("checkpoint-garbage", lambda c: ["superres", str(c.a / "ok.npz"), "-o", "out/x.npz", "--checkpoint",
                                          str(c.a / "garbage.safetensors")], 7, ()),
    Case("onnx-is-npz", lambda c: ["superres", str(c.a / "ok.npz"), "-o", "out/x.npz", "--onnx",
                                   str(c.a / "ok.npz")], 7, ()),
    # --- superres: positive controls and signals ----------------------------------------------
    Case("superres-npz-ok", sr("ok.npz"), 0, (), final=lambda c: [c.out / "sr.npz"]),
    Case("superres-all-zero-is-nodata", sr("allzero.npz"), 0, (), final=lambda c: [c.out / "sr.npz"]),
    Case("superres-folder-ok", sr(str(CROP), "out/sr.tif"), 0, (), final=lambda c: [c.out / "sr.tif"]),
    Case("superres-sigint", sr("big", "out/sr.tif", "--block", "240"), 130, ("interrupted",),
         final=lambda c: [c.out / "sr.tif"], signal=signal.SIGINT),
    Case("superres-sigterm", sr("big", "out/sr.tif", "--block", "240"), 143, ("terminated",),
         final=lambda c: [c.out / "sr.tif"], signal=signal.SIGTERM),
    # --- export ----------------------------------------------------------------------------
    Case("export-opset-999", ["export", "--opset", "999", "--out", "out"], 7, ("opset",)),
    Case("export-opset-0", ["export", "--opset", "0", "--out", "out"], 7, ("opset",)),
    Case("export-opset-text", ["export", "--opset", "new", "--out", "out"], 2, ("--opset",)),
    Case("export-missing-checkpoint", ["export", "nope.safetensors", "--out", "out"], 2, ("does not exist",)),
    Case("export-garbage-checkpoint", lambda c: ["export", str(c.a / "garbage.safetensors"), "--out", "out"], 7, ()),
    Case("export-out-under-a-file", ["export", "--out", "out/file/exp"], 9, ("file",),
         setup=lambda c: (c.out.mkdir(), (c.out / "file").write_text("x"))),
    # --- info / import-keras -----------------------------------------------------------------
    Case("info-json", ["info", "--json"], 0, ("versions",)),
    Case("info-unknown-option", ["info", "--yaml"], 2, ("No such option",)),
    Case("import-keras-missing-file", ["import-keras", "nope.hdf5", "--net", "20"], 2, ("does not exist",)),
    Case("import-keras-bad-net", lambda c: ["import-keras", str(c.a / "garbage.hdf5"), "--net", "30"], 2, ("20", "60")),
    Case("import-keras-bad-variant", lambda c: ["import-keras", str(c.a / "garbage.hdf5"), "--net", "20",
                                                "--variant", "xl"], 2, ("dsen2",)),
    Case("import-keras-no-net", lambda c: ["import-keras", str(c.a / "garbage.hdf5")], 2, ("--net",)),
    Case("import-keras-garbage", lambda c: ["import-keras", str(c.a / "garbage.hdf5"), "--net", "20",
                                            "--out", "out/k.safetensors"], 7, (),
         final=lambda c: [c.out / "k.safetensors"]),
    # --- search ----------------------------------------------------------------------------
    Case("search-no-area", search(), 3, ("--bbox",)),
    Case("search-bbox-3-numbers", search("--bbox", "1,2,3"), 3, ("W,S,E,N",)),
    Case("search-bbox-inverted", search("--bbox", "10,0,5,1"), 3, ()),
    Case("search-bbox-words", search("--bbox", "a,b,c,d"), 3, ()),
    Case("search-datetime-word", search("--bbox", WORLD, "--datetime", "yesterday"), 3, ("2023-06",)),
    Case("search-datetime-reversed", search("--bbox", WORLD, "--datetime", "2024/2023"), 3, ("after",)),
    Case("search-datetime-month-13", search("--bbox", WORLD, "--datetime", "2023-13"), 3, ("datetime",)),
    Case("search-datetime-year", search("--bbox", WORLD, "--datetime", "2017", "--json"), 0, (),
         stdout_json=lambda d: _fc()(d) and len(d["features"]) >= 2),
    Case("search-datetime-month", search("--bbox", WORLD, "--datetime", "2017-06", "--json"), 0, (),
         stdout_json=_fc(2)),
    Case("search-datetime-open-start", search("--bbox", WORLD, "--datetime", "../2017-06-15", "--json"), 0, (),
         stdout_json=_fc(2)),
    Case("search-datetime-open-end", search("--bbox", WORLD, "--datetime", "2017-12-01/..", "--json"), 0, (),
         stdout_json=_fc(1)),
    Case("search-json-empty", search("--bbox", "10,10,10.1,10.1", "--json"), 0, (), stdout_json=_fc(0)),
    Case("search-table-empty", search("--bbox", "10,10,10.1,10.1"), 3, ("no item",)),
    Case("search-max-items", search("--bbox", WORLD, "--max-items", "1", "--json"), 0, (), stdout_json=_fc(1)),
    Case("search-max-items-0", search("--bbox", WORLD, "--max-items", "0"), 2, ("--max-items",)),
    Case("search-max-cloud-101", search("--bbox", WORLD, "--max-cloud", "101"), 2, ("--max-cloud",)),
    Case("search-unknown-catalog-file", ["search", "--catalog", "nowhere.json", "--bbox", WORLD], 3, ()),
    Case("search-catalog-not-json", lambda c: ["search", "--catalog", str(c.a / "not-json.json"), "--bbox", WORLD],
         3, ("JSON",)),
    Case("search-catalog-refused", ["search", "--catalog", "http://127.0.0.1:9/", "--bbox", WORLD], 3,
         ("cannot reach",)),
    Case("search-intersects-bad-json", search("--intersects", "{nope"), 3, ("GeoJSON",)),
    Case("search-intersects-fc", lambda c: search("--intersects", str(c.a / "fc.geojson")), 3, ("one geometry",)),
    Case("search-run-precision-fp64", search("--bbox", BBOX, "--run", "--precision", "fp64"), 2, ("fp32",)),
    Case("search-run-bad-device", search("--bbox", BBOX, "--run", "--device", "tpu"), 2, ("cpu",)),
    # --- run -------------------------------------------------------------------------------
    Case("run-missing-file", ["run", "nope.json", "--out", "out"], 3, ("not a file",)),
    Case("run-not-json", lambda c: ["run", str(c.a / "not-json.json"), "--out", "out"], 3, ("JSON",)),
    Case("run-not-an-item", lambda c: ["run", str(c.a / "item" / "catalog-not-item.json"), "--out", "out"], 3,
         ("not a STAC item",)),
    Case("run-two-items", run("two.json"), 3, ("2 items",)),
    Case("run-unreachable-url", ["run", "http://127.0.0.1:9/item.json", "--out", "out"], 3, ("cannot fetch",)),
    Case("run-bbox-outside", run(f"{EVIL_OUT}.json", "--bbox", "10,10,10.1,10.1"), 5, ("overlap",)),
    Case("run-bbox-bad", run(f"{EVIL_OUT}.json", "--bbox", "1,2"), 3, ("W,S,E,N",)),
    Case("run-missing-band-asset", run("no-b05.json"), 4, ("B05",), final=_one_cog),
    Case("run-asset-file-missing", run("bad-href.json"), 6, (), final=_one_cog),
    Case("run-asset-file-corrupt", run("corrupt-href.json"), 6, (), final=_one_cog),
    Case("run-out-is-a-file", run(f"{EVIL_OUT}.json"), 9, ("file",),
         setup=lambda c: c.out.write_text("not a folder")),
    Case("run-precision-fp64", run(f"{EVIL_OUT}.json", "--precision", "fp64"), 2, ("fp32",)),
    Case("run-tile-0", run(f"{EVIL_OUT}.json", "--tile", "0"), 2, ("--tile",)),
    Case("run-id-escapes-out", run("evil.json"), 0, (), final=_one_cog),
    Case("run-id-absolute", run("abs.json"), 0, (), final=_one_cog),
    Case("run-id-dots", run("nothing-but-dots.json"), 0, (), final=_one_cog),
    Case("run-ok", run(f"{EVIL_OUT}.json"), 0, (), final=lambda c: [c.out / f"{EVIL_OUT}-s2sr.tif"]),
    Case("run-exists", run(f"{EVIL_OUT}.json"), 9, ("--overwrite",),
         setup=lambda c: (c.out.mkdir(), (c.out / f"{EVIL_OUT}-s2sr.tif").write_text("keep"))),
    Case("run-id-empty", run("empty-id.json"), 0, (), final=_one_cog),
    Case("run-href-refused", run("refused-href.json"), 6, ("B05", "cannot connect", "refused"), final=_one_cog),
    Case("run-bbox-over-nodata-warns", run("zeros.json"), 0, ("no valid pixel",), final=_one_cog),
    Case("run-json-line-when-planning-fails", run("no-b05.json", "--json"), 4, ("B05",), final=_one_cog,
         stdout_json=lambda d: d["status"] == "failed" and d["exit_code"] == 4 and d["error_type"] == "MissingAsset"),
    Case("run-out-empty", lambda c: ["run", str(c.a / "item" / f"{EVIL_OUT}.json"), "--out", "", *_onnx()], 2,
         ("--out", "empty")),
    Case("run-workers-1000", run(f"{EVIL_OUT}.json", "--workers", "1000"), 2, ("--workers", "at most")),
    Case("run-scheduler-not-an-address", run(f"{EVIL_OUT}.json", "--scheduler", "not a url"), 2,
         ("--scheduler", "scheduler address")),
    Case("run-scheduler-env-garbage", run(f"{EVIL_OUT}.json"), 2, ("DASK_SCHEDULER_ADDRESS", "scheduler address"),
         env={"DASK_SCHEDULER_ADDRESS": "garbage!!"}),
    Case("run-scheduler-refused", run(f"{EVIL_OUT}.json", "--scheduler", "tcp://127.0.0.1:9"), 3,
         ("cannot reach", "refused"), final=_one_cog),
    Case("run-help-names-the-dask-extra", ["run", "--help"], 0, ("s2sr-cloud[dask]",)),
    Case("search-run-help-names-the-dask-extra", ["search", "--help"], 0, ("s2sr-cloud[dask]",)),
    # --- options and environment variables: bounded and parsed ---------------------------------
    Case("env-http-retries-lots", ["search", "--catalog", "http://127.0.0.1:9/", "--bbox", WORLD], 2,
         ("S2SR_HTTP_RETRIES", "lots"), env={"S2SR_HTTP_RETRIES": "lots"}),
    Case("env-http-retries-huge", ["search", "--catalog", "http://127.0.0.1:9/", "--bbox", WORLD], 2,
         ("S2SR_HTTP_RETRIES", "0 to 20"), env={"S2SR_HTTP_RETRIES": "100000"}),
    Case("env-cache-dir-is-a-file", lambda c: ["superres", str(c.a / "ok.npz"), "--out", "out/x.npz", "--device", "cpu",
                                               "--checkpoint", str(WEIGHTS / "net20_dsen2.safetensors")], 2,
         ("S2SR_CACHE_DIR", "file"), final=lambda c: [c.out / "x.npz"],
         env={"S2SR_CACHE_DIR": "@inputs/cache-is-a-file"}),
    Case("env-dask-timeout-text", run(f"{EVIL_OUT}.json", "--scheduler", "tcp://127.0.0.1:9"), 2,
         ("S2SR_DASK_TIMEOUT",), env={"S2SR_DASK_TIMEOUT": "soon"}),
    Case("superres-out-empty", sr("ok.npz", ""), 2, ("--out", "empty")),
    Case("superres-out-dot-overwrite", sr("ok.npz", ".", "--overwrite"), 2, ("--out", "folder")),
    Case("superres-out-trailing-slash", sr("ok.npz", "out/"), 2, ("--out", "folder")),
    Case("train-context-5000", lambda c: ["train", "--data", str(c.a / "empty-dir"), "--context", "5000", "--out",
                                          "out/t"], 2, ("--context",)),
    Case("evaluate-nan-scene", lambda c: ["evaluate", "--scene", str(c.a / "nan.npz"), "--onnx",
                                          str(ONNX / "net20_dsen2.onnx"), "--onnx", str(ONNX / "net60_dsen2.onnx"),
                                          "--device", "cpu"], 2, ("NaN",)),
    Case("publish-to-empty", ["publish", "out", "--to", ""], 2, ("--to", "empty"), setup=lambda c: c.out.mkdir()),
    *[Case(f"publish-record-{name}", lambda c, n=name: ["publish", str(c.a / "records" / n), "--to", "out/cat"], 2,
           ("record",)) for name in ("truncated", "empty", "wrong-types", "binary", "list")],
    # --- interrupts within a second or two ---------------------------------------------------
    Case("superres-sigint-mid-block", sr("malmo-1200.npz"), 130, ("interrupted",), final=lambda c: [c.out / "sr.npz"],
         signal=signal.SIGINT, signal_after=8.0, within=15.0),
    Case("superres-sigterm-mid-block", sr("malmo-1200.npz"), 143, ("terminated",), final=lambda c: [c.out / "sr.npz"],
         signal=signal.SIGTERM, signal_after=8.0, within=15.0),
    # --- engine ----------------------------------------------------------------------------
    Case("engine-build-fp64", ["engine", "build", "--precision", "fp64"], 2, ("fp32",)),
    Case("engine-build-int8", ["engine", "build", "--precision", "int8", "--engine-dir", "out"], 2, ("precision",)),
    Case("engine-check-missing", ["engine", "check", "nope.onnx"], 2, ("does not exist",)),
    Case("engine-check-none-cached", ["engine", "check", str(ONNX / "net20_dsen2.onnx"), "--gpu", "H100",
                                      "--cc", "9.0", "--trt", "10.0", "--engine-dir", "out/engines"], 1,
         ("no fp32 engine",)),
    Case("engine-check-garbage-engine", lambda c: ["engine", "check", str(c.a / "garbage.engine")], 7, ()),
    Case("engine-list-empty", ["engine", "list", "--engine-dir", "out/none"], 0, ("no engines",)),
    Case("engine-list-json", ["engine", "list", "--engine-dir", "out/none", "--json"], 0, (),
         stdout_json=lambda d: d == []),
    # --- publish / train / evaluate ------------------------------------------------------------
    Case("publish-missing-to", ["publish", "out"], 2, ("--to",), setup=lambda c: c.out.mkdir()),
    Case("publish-nothing-there", ["publish", "nope", "--to", "out/cat"], 2, ("does not exist",)),
    Case("publish-not-a-cog", lambda c: ["publish", str(c.a / "notes.txt"), "--to", "out/cat"], 2, ()),
    Case("train-bad-net", lambda c: ["train", "--data", str(c.a / "empty-dir"), "--net", "30", "--out", "out/t"], 2,
         ("20",)),
    Case("train-bad-variant", lambda c: ["train", "--data", str(c.a / "empty-dir"), "--variant", "big", "--out",
                                         "out/t"], 2, ("dsen2",)),
    Case("train-steps-0", lambda c: ["train", "--data", str(c.a / "empty-dir"), "--steps", "0", "--out", "out/t"], 2,
         ("--steps",)),
    Case("train-no-data", ["train", "--out", "out/t"], 2, ("--data",)),
    Case("evaluate-missing-data", ["evaluate", "nope"], 2, ()),
]


# --- running ----------------------------------------------------------------------------
@dataclass
class Outcome:
    rc: int
    out: str
    err: str
    work_before: dict[str, float]
    work_after: dict[str, float]
    everything: list[str]
    finals: list[Path]
    seconds: float
    after_signal: float | None = None


def _snapshot(d: Path, skip: Path | None = None) -> dict[str, float]:
    snap = {}
    for p in sorted(d.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        snap[str(p.relative_to(d))] = p.lstat().st_mtime
    return snap


def _staging_in(d: Path) -> list[Path]:
    return [p for p in d.rglob(".*") if p.is_file() and any(m in p.name for m in STAGING_MARKERS)]


def _run_case(case: Case, root: Path, a: Path) -> Outcome:
    work = root / case.name
    work.mkdir()
    ctx = Ctx(work=work, out=work / "out", a=a)
    if case.setup:
        case.setup(ctx)
    before = _snapshot(work, ctx.out)
    args = case.args(ctx) if callable(case.args) else list(case.args)
    extra = {k: v.replace("@inputs", str(a)) for k, v in case.env.items()}
    env = {**os.environ, "COLUMNS": "200", "S2SR_ENGINE_DIR": str(work / "out" / "engines"), **extra}
    t0 = time.monotonic()
    proc = subprocess.Popen([S2SR, *args], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    signalled: float | None = None
    if case.signal is not None:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            if case.signal_after is not None and time.monotonic() - t0 >= case.signal_after or (
                    case.signal_after is None and ctx.out.is_dir() and _staging_in(ctx.out)):
                time.sleep(0.5 if case.signal_after is None else 0)
                signalled = time.monotonic()
                proc.send_signal(case.signal)
                break
            time.sleep(0.1)
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    ended = time.monotonic()
    finals = case.final(ctx) if case.final else []
    return Outcome(proc.returncode, out, err, before, _snapshot(work, ctx.out),
                   sorted(str(p.relative_to(work)) for p in work.rglob("*")), finals, ended - t0,
                   None if signalled is None else ended - signalled)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Outcome], Path, Path, dict[str, float]]:
    if not Path(S2SR).exists():
        pytest.skip(f"{S2SR} is not installed")
    base = tmp_path_factory.mktemp("bad-inputs")
    a = base / "inputs"
    a.mkdir()
    root = base / "cases"
    root.mkdir()
    _make_inputs(a, root)
    inputs_before = _snapshot(a)
    # the slow signal cases first, so the pool's tail is short cases
    order = sorted(CASES, key=lambda c: c.signal is None)
    with ThreadPoolExecutor(PARALLEL) as pool:
        futs = {c.name: pool.submit(_run_case, c, root, a) for c in order}
        results = {name: f.result() for name, f in futs.items()}
    if os.environ.get("S2SR_BAD_INPUT_TIMES"):
        for name, o in sorted(results.items(), key=lambda kv: -kv[1].seconds):
            print(f"{o.seconds:6.1f} s  {name}", file=sys.stderr)
    return results, root, a, inputs_before


def test_table_is_big_and_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 80


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, outcomes) -> None:
    results, _root, _a, _ = outcomes
    o = results[case.name]
    text = o.out + o.err
    assert o.rc == case.code, f"exit {o.rc}, expected {case.code}\nstdout: {o.out[-2000:]}\nstderr: {o.err[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    for word in case.says:
        assert word.lower() in text.lower(), f"{word!r} not in the output:\n{text[-2000:]}"
    assert o.work_after == o.work_before, "something was written outside --out"
    staging = [p for p in o.everything if Path(p).name.startswith(".") and any(m in p for m in STAGING_MARKERS)]
    assert not staging, f"staging files left: {staging}"
    if case.code == 0 and case.final is not None:
        assert o.finals and all(p.is_file() for p in o.finals), f"missing outputs: {o.finals} in {o.everything}"
    else:
        assert not [p for p in o.finals if p.exists()], f"a final output exists after a failure: {o.finals}"
    if case.code == 2 and case.says and "Usage" not in case.says:
        assert len(o.err.strip().splitlines()) <= 3, f"not a short usage message:\n{o.err}"
    if case.stdout_json is not None:
        assert case.stdout_json(json.loads(o.out)), o.out[:2000]
    if case.within is not None:
        assert o.after_signal is not None and o.after_signal < case.within, (
            f"ended {o.after_signal} s after the signal")


def test_nothing_escapes_the_case_folders(outcomes) -> None:
    """Remote ids (``../../evil``, an absolute path, ``..``) never choose where files go."""
    results, root, a, inputs_before = outcomes
    assert sorted(p.name for p in root.iterdir()) == sorted(results)
    assert not (root / "ABSOLUTE").exists() and not (root / "ABSOLUTE-s2sr.tif").exists()
    assert not list(root.parent.glob("evil*")) and not list(root.glob("evil*"))
    assert _snapshot(a) == inputs_before, "an input folder was written to"
    for name in ("run-id-escapes-out", "run-id-absolute", "run-id-dots"):
        cogs = list((root / name / "out").glob("*-s2sr.tif"))
        assert len(cogs) == 1 and "/" not in cogs[0].name and not cogs[0].name.startswith(".")


def test_records_and_outputs_are_readable_by_others(outcomes) -> None:
    """Outputs get 0666 & ~umask, like any file a program writes (mkstemp alone gives 0600)."""
    results, root, _a, _ = outcomes
    mask = os.umask(0)
    os.umask(mask)
    for p in [root / "run-ok" / "out" / f"{EVIL_OUT}-s2sr.tif", root / "superres-npz-ok" / "out" / "sr.npz"]:
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask, p


# --- faults between runs: a second writer, a killed run -------------------------------------------
def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([S2SR, *args], cwd=cwd, env={**os.environ, "COLUMNS": "200"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait(cond: Callable[[], bool], proc: subprocess.Popen[str], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """960 x 960 px band files: a run that takes long enough to be caught mid-write."""
    d = tmp_path_factory.mktemp("big") / "big"
    _write_band_folder(d, mosaic=4)
    return d


def test_a_second_run_into_the_same_output_refuses_with_a_message(big_folder: Path, tmp_path: Path) -> None:
    if not Path(S2SR).exists():
        pytest.skip(f"{S2SR} is not installed")
    args = ["superres", str(big_folder), "--out", "out/sr.tif", "--block", "240", *_onnx()]
    first = _start(args, tmp_path)
    try:
        _wait(lambda: (tmp_path / "out" / ".sr.tif.lock").exists(), first, "the first run's lock")
        second = subprocess.run([S2SR, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert second.returncode == 9, second.stderr
        assert "being written by another s2sr run" in second.stderr and "Traceback" not in second.stderr
        assert f"pid {first.pid}" in " ".join(second.stderr.split())
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130
    assert not [p.name for p in (tmp_path / "out").iterdir()]  # neither left anything (the lock goes too)


def test_staging_files_of_a_killed_run_are_swept_by_the_next(big_folder: Path, tmp_path: Path) -> None:
    """SIGKILL (a container's stop grace period ran out) leaves a hidden staging file: the next run
    into the same output removes it."""
    if not Path(S2SR).exists():
        pytest.skip(f"{S2SR} is not installed")
    out = tmp_path / "out"
    first = _start(["superres", str(big_folder), "--out", "out/sr.tif", "--block", "240", *_onnx()], tmp_path)
    _wait(lambda: out.is_dir() and bool(_staging_in(out)), first, "a staging file")
    first.kill()
    first.communicate(timeout=60)
    assert _staging_in(out), "the killed run left no staging file to sweep"
    again = subprocess.run([S2SR, "superres", str(CROP), "--out", "out/sr.tif", *_onnx()], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["sr.tif"]  # no staging file, no lock
