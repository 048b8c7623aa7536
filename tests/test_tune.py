"""``s2sr tune`` fills one cache folder; the shipped gate accuracy makes the cold gate speed-only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("openvino")


def _s2sr(*args, env):
    return subprocess.run([sys.executable, "-c", "from s2sr_cloud.cli import main; main()", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **env}, timeout=900)


def test_tune_fills_the_cache_and_a_second_tune_measures_nothing(tmp_path):
    cache = tmp_path / "cache"
    first = _s2sr("tune", "--cache-dir", str(cache), "--json", env={})
    assert first.returncode == 0, first.stderr
    rows = json.loads(first.stdout)["steps"]
    assert all(r["status"] == "done" for r in rows), rows
    from s2sr_cloud.infer.quant import SHIPPED_INT8

    # the default weights' int8 models ship with the package; any other ONNX's would be cached here
    assert list(SHIPPED_INT8.glob("*.xml")) or list((cache / "int8").glob("*.xml"))
    assert list((cache / "precision-gate").glob("*.json"))
    gate = [json.loads(p.read_text()) for p in (cache / "precision-gate").glob("*.json")]
    assert any(g.get("accuracy") == "shipped" for g in gate)  # speed only: accuracy came with the weights
    second = _s2sr("-v", "tune", "--cache-dir", str(cache), "--json", env={})
    assert second.returncode == 0
    assert "measuring" not in second.stderr and "quantizing" not in second.stderr, second.stderr


def test_tune_refuses_an_unwritable_cache_dir(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    r = _s2sr("tune", "--cache-dir", str(f), env={})
    assert r.returncode != 0 and "cannot be used as the cache folder" in r.stderr
