"""The Python face: ``import s2sr_cloud as s2sr`` stays light, the docs' example runs as written
(offline, on the bundled sample) and returns an xarray cube holding the COG's pixels, and
in-memory arrays / xarray bands super-resolve like the streaming loop does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_import_and_help_do_not_import_numpy() -> None:
    code = (
        "import sys\n"
        "import s2sr_cloud\n"
        "assert 'numpy' not in sys.modules, 'import s2sr_cloud imported numpy'\n"
        "from s2sr_cloud.cli import main\n"
        "sys.argv = ['s2sr', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('NUMPY' if 'numpy' in sys.modules else 'LIGHT', file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "LIGHT"
    assert "Usage" in r.stdout


def test_lazy_attributes() -> None:
    import s2sr_cloud as s2sr
    assert {"search", "process", "load", "super_resolve", "process_items"} <= set(dir(s2sr))
    from s2sr_cloud.batch import process_items

    assert s2sr.process_items is process_items
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = s2sr.nope  # type: ignore[attr-defined]


def _docs_example() -> str:
    text = (ROOT / "docs" / "python.md").read_text()
    m = re.search(r"## Example \(runs offline on the bundled sample\)\s+```python\n(.*?)```", text, re.S)
    assert m, "docs/python.md lost its example"
    return m.group(1)


def test_docs_example_runs_offline_and_returns_a_cube(tmp_path: Path) -> None:
    """The example exactly as documented, in a fresh folder and process; then the cube's pixels are
    checked against the COG the run wrote."""
    check = (
        "\nimport rasterio, xarray\n"
        "assert isinstance(cube, xarray.Dataset) and cube['B05'].chunks is not None  # lazy, Dask-chunked\n"
        "(o,) = outcomes\n"
        "with rasterio.open(o.path) as ds:\n"
        "    want = ds.read(ds.descriptions.index(next(d for d in ds.descriptions if d.startswith('B05'))) + 1)\n"
        "assert b05.shape == want.shape, (b05.shape, want.shape)\n"
        "assert (b05.values == want).all()\n"
        "print('CUBE-OK', o.status)\n"
    )
    script = tmp_path / "example.py"
    script.write_text(_docs_example() + check)
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=_env(),
                       timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "CUBE-OK done" in r.stdout and "<xarray.Dataset>" in r.stdout
    assert (tmp_path / "s2sr-python-demo" / "S2A_18SVG_20160112_0_L1C-s2sr.tif").is_file()


@pytest.fixture(scope="module")
def crop() -> dict[str, np.ndarray]:
    """A 96 x 96 px window of the real Malmö L1C crop (b10, b20, b60)."""
    with np.load(Path(__file__).parent / "data" / "S2A_MSIL1C_20170527_T33UUB.npz") as z:
        return {"b10": z["b10"][:, 120:216, 240:336], "b20": z["b20"][:, 60:108, 120:168],
                "b60": z["b60"][:, 20:36, 40:56]}


def test_super_resolve_arrays_and_xarray(crop: dict[str, np.ndarray], shipped) -> None:  # type: ignore[no-untyped-def]
    import xarray as xr

    import s2sr_cloud as s2sr
    from s2sr_cloud.bands import GROUPS, SR_BANDS
    from s2sr_cloud.sr import ArraySource, Window
    from s2sr_cloud.stream import ArraySink, run_blocks

    out = s2sr.super_resolve(crop["b10"], crop["b20"], crop["b60"], runners=shipped)
    assert out["b20"].shape == (6, 96, 96) and out["b60"].shape == (2, 96, 96) and out["b20"].dtype == np.uint16
    sink = ArraySink(Window(0, 0, 96, 96), shipped)  # what `s2sr superres x.npz` runs
    run_blocks(ArraySource(crop["b10"], crop["b20"], crop["b60"]), shipped, sink)
    np.testing.assert_array_equal(out["b20"], sink.arrays["net20"])
    np.testing.assert_array_equal(out["b60"], sink.arrays["net60"])

    def band(a: np.ndarray, res: int) -> xr.DataArray:  # a band as rioxarray would give it (own x/y)
        h, w = a.shape
        return xr.DataArray(a, dims=("y", "x"), coords={"y": 6000 - res * (np.arange(h) + 0.5),
                                                        "x": 300 + res * (np.arange(w) + 0.5)})

    bands = {b: band(crop[f"b{res}"][i], res) for res in (10, 20, 60) for i, b in enumerate(GROUPS[res])}
    ds = s2sr.super_resolve(bands, runners=shipped)
    assert isinstance(ds, xr.Dataset) and list(ds.data_vars) == list(SR_BANDS)
    np.testing.assert_array_equal(ds["B05"].values, out["b20"][0])
    np.testing.assert_array_equal(ds["B01"].values, out["b60"][0])
    np.testing.assert_array_equal(ds["x"].values, bands["B02"]["x"].values)
    with pytest.raises(ValueError, match="lacks bands B01"):
        s2sr.super_resolve({k: v for k, v in bands.items() if k != "B01"}, runners=shipped)
    from s2sr_cloud.errors import InputError

    with pytest.raises(InputError, match="reflectance"):
        s2sr.super_resolve(crop["b10"] / 10000.0, crop["b20"], crop["b60"], runners=shipped)
