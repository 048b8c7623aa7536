"""The lent-GPU scripts run on the CPU first (they are prepared and tested here, then run once
on a GPU): time-budgeted training, the compute-ceiling probe and the --adapt timing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SCENE = ROOT / "tests" / "data" / "T18SVG_crop240"  # real Virginia imagery, 240² band GeoTIFFs

pytest.importorskip("torch")


def _run(*args: str, timeout: int = 600) -> str:
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def test_gpu_train_sizes_steps_to_the_budget_and_records_the_s2sr_train_command(tmp_path):
    from s2sr_cloud.nets.checkpoint import load_checkpoint

    out = _run(str(SCRIPTS / "gpu_train.py"), "--net", "60", "--data", str(SCENE), "--budget-s", "4", "--batch", "2",
               "--patch", "12", "--device", "cpu", "--phases", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o"),
               "--tag", "T")
    probe = next(ln for ln in out.splitlines() if ln.startswith("gpu_train ") and "probe_s_per_step" in ln)
    steps = int(probe.split("steps=")[1].split()[0])
    assert steps >= 20 and "phases=True" in probe
    ck = load_checkpoint(tmp_path / "o" / "net60T.safetensors", net="net60")
    prov = ck.meta["provenance"]
    assert prov["steps_done"] == steps and prov["config"]["phases"] is True
    cmd = prov["command"]
    assert cmd.startswith("s2sr train --net 60 --variant dsen2") and f"--steps {steps}" in cmd and "--phases" in cmd
    assert "--from" in cmd and "  # run by scripts/gpu_train.py" in cmd  # fine-tuned from the shipped weights


def test_gpu_compute_and_adapt_timing_print_their_figures():
    out = _run(str(SCRIPTS / "gpu_compute.py"), "--device", "cpu", "--tile", "32", "--batch", "1", "--iters", "1", "--nets", "net60")
    assert "gpu_compute net=net60 mode=fp32 tile=32 batch=1 mpx_per_s=" in out
    out = _run(str(SCRIPTS / "gpu_adapt_timing.py"), str(SCENE),
               "--steps", "2", "--device", "cpu")
    lines = [ln for ln in out.splitlines() if ln.startswith("adapt_timing ")]
    assert [ln.split()[1] for ln in lines] == ["net=net20", "net=net60"] and all("device=cpu steps=2" in ln for ln in lines)


def test_gpu_fulltile_runs_the_default_path_and_writes_its_figures(tmp_path):
    """The lent-GPU full-tile script on the CPU at a tiny size: equality of the device and host
    paths, the nets' speed and the default output's per-stage timings, in one JSON."""
    import json

    out = tmp_path / "ft.json"
    _run(str(SCRIPTS / "gpu_fulltile.py"), "--device", "cpu", "--size", "144", "--nets-size", "60", "--workers", "2",
         "--block", "72", "--out", str(out))
    doc = json.loads(out.read_text())
    assert all(doc["equality"][n]["max_dn"] <= 1 for n in ("net20", "net60"))
    assert set(doc["nets"]["fp32"]) == {"net20", "net60"}
    (run,) = doc["fulltile"]
    assert run["workers"] == 2 and run["wall_s"] > 0 and {"nets", "hybrid", "backproject", "qa"} <= set(run["stages_s"])
