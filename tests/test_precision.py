"""Reduced-precision CPU inference (OpenVINO fp32/bf16/int8), the accuracy gate behind
``--precision auto``, backend selection, and the PyTorch GPU runner's CPU path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from s2sr_cloud.errors import BackendUnavailable
from s2sr_cloud.infer.manifest import load_manifest
from s2sr_cloud.sr import ArraySource, model_info, super_resolve
from s2sr_cloud.weights import default_onnx

ROOT = Path(__file__).resolve().parents[1]
CROP = ROOT / "s2sr_cloud" / "data" / "verify_T33UUB_120.npz"  # real Malmö imagery, 120²

ov = pytest.importorskip("openvino")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("S2SR_CACHE_DIR", str(d))
    monkeypatch.setenv("S2SR_GATE_SCENE", str(CROP))
    from s2sr_cloud.infer import quant

    # a smaller calibration set keeps the test quick; the recipe is the same
    monkeypatch.setattr(quant, "CALIB_TILES", 4)
    monkeypatch.setattr(quant, "CALIB_TILE", 64)
    # quantize here (the path of any ONNX that ships no int8 model): hide the shipped ones
    monkeypatch.setattr(quant, "SHIPPED_INT8", tmp_path / "no-shipped-int8")
    return d


def _crop() -> ArraySource:
    with np.load(CROP) as z:
        return ArraySource(z["b10"], z["b20"], z["b60"])


def _onnx(net: str) -> tuple[Path, dict]:
    p = default_onnx(net)
    assert p is not None
    return p, load_manifest(p)


def test_openvino_fp32_equals_onnxruntime_on_real_imagery():
    from s2sr_cloud.infer.onnxrt import OnnxRunner
    from s2sr_cloud.infer.openvino import OpenVinoRunner

    path, man = _onnx("net60")
    src = _crop()
    with OnnxRunner(path, man, "cpu") as ref, OpenVinoRunner(path, man, "fp32") as run:
        a = super_resolve(src, {"net60": ref})["net60"]
        b = super_resolve(src, {"net60": run})["net60"]
        info = model_info(run)
    assert np.abs(a - b).max() < 0.05  # DN: the same fp32 arithmetic, other kernels
    # and within the export gate of PyTorch (1e-4 scaled = 0.2 DN), as ONNX Runtime is: --device auto
    # may run fp32 on OpenVINO
    pytest.importorskip("torch")
    from s2sr_cloud.infer import load_runner

    with load_runner("net60", device="torch") as torch_ref:
        t = super_resolve(src, {"net60": torch_ref})["net60"]
    assert np.abs(b - t).max() <= 0.2
    assert info["backend"] == "openvino-cpu" and info["precision"] == "fp32"
    assert info["onnx_sha256"] == man["onnx_sha256"]


def test_int8_quantized_once_cached_and_close_to_fp32(cache):
    from s2sr_cloud.infer.onnxrt import OnnxRunner
    from s2sr_cloud.infer.openvino import OpenVinoRunner
    from s2sr_cloud.infer.quant import int8_path

    path, man = _onnx("net20")
    src = _crop()
    with OpenVinoRunner(path, man, "int8") as q:
        y = super_resolve(src, {"net20": q})["net20"]
    cached = int8_path(man)
    assert cached.exists() and cached.is_relative_to(cache)
    mtime = cached.stat().st_mtime_ns
    with OpenVinoRunner(path, man, "int8"), OnnxRunner(path, man, "cpu") as ref:
        x = super_resolve(src, {"net20": ref})["net20"]
    assert cached.stat().st_mtime_ns == mtime  # reused, not re-quantized
    d = np.abs(x - y)
    # int8 is an approximation: close on average, not equal
    assert 0 < d.mean() < 25, d.mean()


def test_default_weights_use_the_shipped_int8_models_without_quantizing(tmp_path, monkeypatch):
    """A cold cache: the default weights' int8 IR comes with the package (nothing quantized, nothing
    written to the cache), and it is close to fp32 like one quantized here."""
    import s2sr_cloud.infer.quant as quant
    from s2sr_cloud.infer.onnxrt import OnnxRunner
    from s2sr_cloud.infer.openvino import OpenVinoRunner

    monkeypatch.setenv("S2SR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(quant, "calibration_inputs", lambda *a, **k: pytest.fail("quantized although shipped"))
    path, man = _onnx("net60")
    assert quant.shipped_int8(man) is not None
    src = _crop()
    with OpenVinoRunner(path, man, "int8") as q, OnnxRunner(path, man, "cpu") as ref:
        d = np.abs(super_resolve(src, {"net60": q})["net60"] - super_resolve(src, {"net60": ref})["net60"])
    assert 0 < d.mean() < 25, d.mean()
    assert not (tmp_path / "cache" / "int8").exists()


def test_gate_measures_states_tolerance_and_caches(cache, monkeypatch):
    from s2sr_cloud.infer import gate

    path, man = _onnx("net60")
    result = gate.load_or_measure({"net60": path}, {"net60": man})
    modes = result["nets"]["net60"]
    assert result["scene"] == str(CROP)
    assert result["tolerance"]["max_wald_rmse_worsening"] == 0.01
    assert modes["fp32"]["passed"] and modes["fp32"]["backend"] == "onnxruntime-cpu"
    assert modes["openvino-fp32"]["mean_abs_dn"] < 0.05 and modes["openvino-fp32"]["passed"]
    for k, v in modes.items():
        if k != "fp32" and "error" not in v:
            assert {"mean_abs_dn", "p999_abs_dn", "wald_rmse", "wald_rmse_change", "s_per_mpx"} <= set(v)
            assert v["passed"] == (v["wald_rmse_change"] <= 0.01 and v["mean_abs_dn"] <= gate.MAX_MEAN_DN
                                   and v["p999_abs_dn"] <= gate.MAX_P999_DN)
    backend, prec = gate.best_mode(result, "net60")
    chosen = modes["fp32" if backend == "onnxruntime" else f"openvino-{prec}"]
    assert chosen["passed"]
    assert chosen["s_per_mpx"] == min(v["s_per_mpx"] for v in modes.values() if v.get("passed") and "s_per_mpx" in v)
    files = list((cache / "precision-gate").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["key"]["models"]["net60"] == man["onnx_sha256"]

    def boom(*a, **k):
        raise AssertionError("re-measured although cached")

    monkeypatch.setattr(gate, "measure", boom)
    assert gate.load_or_measure({"net60": path}, {"net60": man})["nets"] == result["nets"]
    # --precision auto picks the cached choice
    from s2sr_cloud.infer import load_runner

    r = load_runner("net60", device="cpu", precision="auto")
    assert (r.backend, r.precision) == (("onnxruntime-cpu", "fp32") if backend == "onnxruntime" else ("openvino-cpu", prec))


def test_auto_gate_failure_falls_back_to_fp32_with_reason(cache, monkeypatch, caplog):
    from s2sr_cloud.infer import gate, load_runner

    def broken(*a, **k):
        raise RuntimeError("no gate scene")

    monkeypatch.setattr(gate, "measure", broken)
    with caplog.at_level("WARNING"):
        r = load_runner("net20", device="auto", precision="auto")
    assert r.backend == "onnxruntime-cpu" and r.precision == "fp32"
    assert "precision gate failed (no gate scene)" in caplog.text


def test_selection_by_device_and_precision():
    from s2sr_cloud.infer import load_runner

    r = load_runner("net60", device="cpu", precision="fp32")
    assert (r.backend, r.precision) == ("onnxruntime-cpu", "fp32")
    r = load_runner("net60", device="openvino", precision="fp32")
    assert (r.backend, r.precision) == ("openvino-cpu", "fp32")
    with pytest.raises(BackendUnavailable, match="fp16 is for GPUs"):
        load_runner("net60", device="cpu", precision="fp16")
    with pytest.raises(BackendUnavailable, match="fp32 only"):
        load_runner("net60", device="cuda", precision="int8")
    with pytest.raises(BackendUnavailable, match="unknown device"):
        load_runner("net60", device="gpu7")


def test_torch_runner_cpu_fallback_and_cuda_refusal():
    pytest.importorskip("torch")
    from s2sr_cloud.infer import load_runner
    from s2sr_cloud.infer.torch_gpu import cuda_devices

    if cuda_devices():
        pytest.skip("this test covers the machine without CUDA")
    r = load_runner("net60", device="torch")
    assert r.backend == "torch-cpu" and model_info(r)["precision"] == "fp32"
    y = r(np.zeros((1, 12, 48, 48), np.float32))
    assert y.shape == (1, 2, 48, 48)
    with pytest.raises(BackendUnavailable, match="sees 0 CUDA GPU"):
        load_runner("net60", device="cuda:1")
    with pytest.raises(BackendUnavailable, match="needs a CUDA GPU"):
        load_runner("net60", device="torch", precision="fp16")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_torch_cuda_low_precision_close_to_fp32(precision):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    from s2sr_cloud.infer import load_runner

    src = _crop()
    ref = load_runner("net20", device="cuda:0", precision="fp32")
    low = load_runner("net20", device="cuda:0", precision=precision)
    assert low.backend == "torch-cuda" and low.precision == precision
    a = super_resolve(src, {"net20": ref})["net20"]
    b = super_resolve(src, {"net20": low})["net20"]
    assert np.abs(a - b).mean() < 10


def test_superres_cli_records_precision(tmp_path):
    exe = Path(sys.executable).with_name("s2sr")
    out = tmp_path / "sr.npz"
    env = {**os.environ, "S2SR_CACHE_DIR": str(tmp_path / "c")}
    r = subprocess.run([str(exe), "superres", str(CROP), "-o", str(out), "--device", "cpu", "--precision", "bf16"],
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0 and "no native bf16" in r.stderr + r.stdout:
        pytest.skip("this CPU has no native bf16")
    assert r.returncode == 0, r.stdout + r.stderr
    with np.load(out) as z:
        assert list(z["backends"]) == ["openvino-cpu", "openvino-cpu"]
        assert list(z["precisions"]) == ["bf16", "bf16"]


def test_gpu_bench_runs_small_on_cpu():
    pytest.importorskip("torch")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_bench.py"), "--size", "small", "--device", "cpu",
                        "--nets", "net60", "--no-tile"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("gpu_bench ")]
    assert any("net=net60 precision=fp32 what=image size=120" in ln for ln in lines), r.stdout
    rate = float(next(ln for ln in lines if "what=image" in ln).split("mpx_per_s=")[1].split()[0])
    assert rate > 0


def test_missing_onnxruntime_names_the_extra_that_provides_it():
    import tomllib

    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from s2sr_cloud.infer import load_runner\n"
        "try:\n    load_runner('net60', device='auto')\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("MissingDependency"), r.stdout + r.stderr
    assert "pip install 's2sr-cloud[cpu]'" in r.stdout and "'s2sr-cloud[gpu]'" in r.stdout
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    # the advice works as written: [cpu] brings onnxruntime, [gpu] onnxruntime-gpu, never both
    assert any(d.startswith("onnxruntime>") for d in extras["cpu"])
    assert any(d.startswith("onnxruntime-gpu") for d in extras["gpu"])
    assert not any(d.startswith("onnxruntime") for d in deps + extras["gpu"] if not d.startswith("onnxruntime-gpu"))
    trt = next(d for d in extras["gpu"] if d.startswith("tensorrt"))
    assert "<11" in trt  # onnxruntime-gpu's TensorRT provider links TensorRT 10


def test_torch_gate_scores_modes_against_fp32_and_caches(cache, monkeypatch):
    """The GPU precision gate (PyTorch fp16/bf16) on the CPU: a mode that cannot run fails with
    its reason, a mode that moves the output too much fails on the stated tolerance, fp32 wins,
    and the result is cached per device, torch and weights (a second call measures nothing)."""
    from s2sr_cloud.bands import SCALE
    from s2sr_cloud.infer import gate
    from s2sr_cloud.infer.torch_gpu import TorchGpuRunner
    from s2sr_cloud.nets.checkpoint import load_checkpoint
    from s2sr_cloud.weights import default_checkpoint

    ck = load_checkpoint(default_checkpoint("net60"), net="net60")
    calls: list[str] = []

    class Noisy(TorchGpuRunner):
        """fp32 plus a 40 DN shift: the kind of error a broken low-precision path makes."""

        def __call__(self, x):
            return super().__call__(x) + np.float32(40 / SCALE)

    def make(prec):
        calls.append(prec)
        if prec == "noisy":
            return Noisy(ck.model, "cpu", "fp32")
        return TorchGpuRunner(ck.model, "cpu", prec)

    result = gate.torch_gate("net60", ck.sha256, "cpu", make, modes=("fp16", "noisy"))
    modes = result["modes"]
    assert modes["fp32"]["passed"] and result["tolerance"]["max_mean_abs_dn"] == gate.MAX_MEAN_DN
    assert not modes["fp16"]["passed"] and "CUDA" in modes["fp16"]["error"]
    noisy = modes["noisy"]
    # fails on |Δ| at real scale (the Wald RMSE is of the product, whose back-projection step
    # removes a constant shift: that is why the gate checks both)
    assert not noisy["passed"] and noisy["mean_abs_dn"] == pytest.approx(40, abs=1.5) and noisy["mean_abs_dn"] > gate.MAX_MEAN_DN
    assert gate.torch_best(result) == "fp32"
    assert result["key"]["checkpoint_sha256"] == ck.sha256 and result["key"]["net"] == "net60"
    n = len(calls)
    again = gate.torch_gate("net60", ck.sha256, "cpu", make, modes=("fp16", "noisy"))
    assert len(calls) == n and again["modes"] == modes  # cached


def test_auto_device_runs_fp32_on_the_faster_fp32_kernels(cache, monkeypatch):
    """--device auto --precision fp32 on a CPU runs on whichever exact-fp32 kernels are faster here:
    from the cached gate if there is one, else from the probe ``s2sr tune`` ran (cached; never the
    full gate); with neither, ONNX Runtime, unmeasured (a first run costs what a later one does);
    --device cpu stays ONNX Runtime."""
    from s2sr_cloud.infer import gate, load_runner

    def no_measuring(*a, **k):
        raise AssertionError("fp32 must not trigger the full gate")

    monkeypatch.setattr(gate, "measure", no_measuring)
    monkeypatch.setenv("S2SR_FP32_BACKEND", "auto")  # the default (the test session pins onnxruntime)
    path, man = _onnx("net60")
    r = load_runner("net60", device="auto", precision="fp32")  # nothing cached: no probe on a first run
    assert (r.backend, r.precision) == ("onnxruntime-cpu", "fp32")
    assert not (cache / "precision-gate").exists()
    gate.fp32_kernels(path, man, probe=True)  # what `s2sr tune` runs
    r = load_runner("net60", device="auto", precision="fp32")
    probes = [json.loads(p.read_text()) for p in (cache / "precision-gate").glob("*.json")]
    assert len(probes) == 1 and set(probes[0]["seconds"]) == {"onnxruntime", "openvino"}
    want = {"onnxruntime": "onnxruntime-cpu", "openvino": "openvino-cpu"}[probes[0]["fastest"]]
    assert (r.backend, r.precision) == (want, "fp32")

    def no_probing(*a, **k):
        raise AssertionError("probed again although cached")

    import s2sr_cloud.sr

    monkeypatch.setattr(s2sr_cloud.sr, "super_resolve", no_probing)  # what the probe runs
    assert load_runner("net60", device="auto", precision="fp32").backend == want
    key = gate.machine_key({"net60": man})
    for ov_speed, backend in ((1.0, "openvino-cpu"), (3.0, "onnxruntime-cpu")):  # a cached gate wins over the probe
        doc = {"key": key, "nets": {"net60": {"fp32": {"s_per_mpx": 2.0, "passed": True},
                                              "openvino-fp32": {"s_per_mpx": ov_speed, "passed": True, "mean_abs_dn": 0.0}}}}
        gate.gate_path(key).write_text(json.dumps(doc))
        r = load_runner("net60", device="auto", precision="fp32")
        assert (r.backend, r.precision) == (backend, "fp32")
    assert load_runner("net60", device="cpu", precision="fp32").backend == "onnxruntime-cpu"
    monkeypatch.setenv("S2SR_FP32_BACKEND", "onnxruntime")  # pinned by the user
    assert load_runner("net60", device="auto", precision="fp32").backend == "onnxruntime-cpu"
    monkeypatch.setenv("S2SR_FP32_BACKEND", "openvino")
    assert load_runner("net60", device="auto", precision="fp32").backend == "openvino-cpu"


def test_feature_pick_takes_the_first_passing_mode_the_cpu_runs_natively():
    from s2sr_cloud.infer.gate import feature_pick

    ok = {"passed": True}
    modes = {"fp32": ok, "openvino-fp32": ok, "openvino-bf16": ok, "openvino-int8": ok}
    assert feature_pick(modes, ["avx2", "avx512_vnni", "avx512_bf16"]) == "openvino-int8"
    assert feature_pick(modes, ["avx2", "avx_vnni"]) == "openvino-int8"
    assert feature_pick(modes, ["avx2", "avx512_bf16"]) == "openvino-bf16"
    assert feature_pick(modes, ["avx2", "fma"]) == "fp32"
    assert feature_pick({**modes, "openvino-int8": {"passed": False}}, ["avx512_vnni", "amx_bf16"]) == "openvino-bf16"
    assert feature_pick({**modes, "openvino-int8": {"passed": False}}, ["avx512_vnni"]) == "fp32"


def test_cold_auto_with_the_shipped_accuracy_measures_and_caches_nothing(tmp_path, monkeypatch):
    """A first ``--precision auto`` run with the default weights: the shipped accuracy figures and
    the CPU's features decide, so it runs nothing extra (a later run costs the same) and leaves the
    cache empty; ``measure_speed`` (``s2sr tune``) measures the speeds and caches them."""
    from s2sr_cloud.infer import gate, gate_shipped, load_runner

    monkeypatch.setenv("S2SR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("S2SR_GATE_SCENE", raising=False)

    def boom(*a, **k):
        raise AssertionError("measured on a first run")

    monkeypatch.setattr(gate, "measure", boom)
    monkeypatch.setattr(gate_shipped, "_speed", boom)
    path, man = _onnx("net60")
    result = gate.load_or_measure({"net60": path}, {"net60": man})
    assert result["speed"] == "cpu-features" and result["accuracy"] == "shipped"
    key = result["pick"]["net60"]
    assert key == gate.feature_pick(result["nets"]["net60"]) and result["nets"]["net60"][key]["passed"]
    r = load_runner("net60", device="cpu", precision="auto")
    assert r.backend == ("onnxruntime-cpu" if key == "fp32" else "openvino-cpu")
    assert r.precision == ("fp32" if key == "fp32" else key.removeprefix("openvino-"))
    assert not (tmp_path / "cache" / "precision-gate").exists()
    monkeypatch.undo()
    monkeypatch.setenv("S2SR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("S2SR_GATE_SCENE", raising=False)
    tuned = gate.load_or_measure({"net60": path}, {"net60": man}, measure_speed=True)
    assert "pick" not in tuned and all("s_per_mpx" in v for v in tuned["nets"]["net60"].values() if "error" not in v)
    assert gate.load_or_measure({"net60": path}, {"net60": man})["nets"] == tuned["nets"]  # now cached: measured wins
