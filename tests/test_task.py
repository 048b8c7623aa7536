"""The stac-task step: a real payload (the offline sample's real L2A item) through ``s2sr task``
in a subprocess, as a Cirrus/Argo step would run it; the output payload holds the derived item,
valid STAC, pointing at the published files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).parents[1]
S2SR = str(Path(sys.executable).parent / "s2sr")
STEM = "S2A_MSIL2A_20170613T101031_87_48"  # BigEarthNet L2A patch, Austria (the sample catalog's)


def _payload(out: Path, to: Path) -> dict[str, Any]:
    import pystac

    item = pystac.Item.from_file(str(ROOT / "s2sr_cloud" / "sample" / "sentinel-2-l2a" / STEM / f"{STEM}.json"))
    item.make_asset_hrefs_absolute()
    feature = item.to_dict(include_self_link=False, transform_hrefs=False)
    feature["links"] = [{"rel": "self", "href": str(item.get_self_href())}]
    return {
        "type": "FeatureCollection", "id": "sentinel-2-l2a/workflow-s2sr/" + STEM, "features": [feature],
        "process": [{"workflow": "s2sr", "upload_options": {"collections": {"sentinel-2-l2a-s2sr": "$[?(@.id =~ '.*-s2sr')]"}},
                     "tasks": {"s2sr": {"device": "cpu", "out": str(out), "publish_to": str(to),
                                        "catalog": "sample"}}}],
    }


def test_stac_task_payload_in_items_out(tmp_path: Path, stac_validate: Any) -> None:
    import rasterio

    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(_payload(tmp_path / "out", tmp_path / "catalog")))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([S2SR, "task", str(payload), "--out", str(tmp_path / "result.json")], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["id"] == "sentinel-2-l2a/workflow-s2sr/" + STEM and result["process"]  # the payload, carried on
    (item,) = result["features"]
    assert item["id"] == f"{STEM}-s2sr" and item["collection"] == "sentinel-2-l2a-s2sr"
    stac_validate(item)
    assert item["properties"]["processing:software"]["s2sr-cloud"]
    href = item["assets"]["reflectance"]["href"]
    assert Path(href).is_absolute() and Path(href).parent == tmp_path / "catalog" / item["id"]
    with rasterio.open(href) as pub, rasterio.open(tmp_path / "out" / f"{STEM}-s2sr.tif") as run:
        np.testing.assert_array_equal(pub.read(), run.read())
    assert (tmp_path / "catalog" / "collection.json").is_file()
    # a second run of the same step: the item is done and published; the payload still carries it
    r = subprocess.run([S2SR, "task", str(payload)], cwd=tmp_path, capture_output=True, text=True, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [f["id"] for f in json.loads(r.stdout)["features"]] == [f"{STEM}-s2sr"]


def test_stac_task_bad_payload_is_an_input_error(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    bad = tmp_path / "empty.json"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [], "process": [{"tasks": {"s2sr": {}}}]}))
    r = subprocess.run([S2SR, "task", str(bad)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "no features" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.json"]  # nothing left behind
