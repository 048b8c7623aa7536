"""The accuracy gate behind ``--precision auto`` on CPU, measured once per machine.

For every reduced-precision CPU mode (OpenVINO ``bf16`` where the CPU has it natively,
``int8``) and each net, against the fp32 reference (ONNX Runtime, which equals PyTorch
within the export gate):

* **DN difference on real imagery**: both run :func:`~s2sr_cloud.sr.super_resolve` on a
  real scene at its own scale (:data:`GATE_SCENE`, validation data); mean and 99.9th percentile of ``|Δ|`` in DN, and the max.
* **Wald protocol**: the RMSE of the net on the scene degraded by its factor
  (:func:`~s2sr_cloud.train.evaluate.wald_metrics`, what ``s2sr evaluate`` reports), fp32
  vs the mode; the relative change.
* **Speed**: inference seconds per megapixel of that real-scale run, fp32 (ORT and
  OpenVINO) and the mode, so ``auto`` picks by measurement on this CPU, not by label.

A mode passes when the Wald RMSE worsens by at most :data:`MAX_RMSE_WORSENING` (1 %),
the mean ``|Δ|`` is at most :data:`MAX_MEAN_DN` and the 99.9th percentile at most
:data:`MAX_P999_DN`. ``auto`` is the fastest passing mode (fp32 always passes). The result
is cached as JSON under the cache folder, keyed by CPU, library versions and the ONNX
sha256s, so it is measured once per machine and model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import cache_dir

log = logging.getLogger(__name__)

MAX_RMSE_WORSENING = 0.01
MAX_MEAN_DN = 5.0
MAX_P999_DN = 60.0
GATE_FORMAT = "s2sr-precision-gate/1"


#: The gate's scene, inside the package (so a wheel or container measures against what the shipped
#: accuracy figures name): a crop of the validation half of Havel (``data/README.md``).
GATE_SCENE = Path(__file__).resolve().parent.parent / "data" / "gate_T33UUU_396x792.npz"


def gate_scene_path() -> Path:
    """``$S2SR_GATE_SCENE``, else the packaged validation crop :data:`GATE_SCENE` (never a test set:
    the gate decides which precision runs)."""
    from ..settings import env as _env

    env = _env("S2SR_GATE_SCENE")
    return Path(env) if env else GATE_SCENE


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return sorted(x for x in line.split(":", 1)[1].split() if x.startswith(("avx512", "amx", "avx2", "avx_vnni", "fma")))
    except OSError:
        pass
    return []


def machine_key(manifests: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """What the gate result depends on: CPU, core count, library versions, the models."""
    import onnxruntime

    from .openvino import import_openvino
    from .quant import QUANT_VERSION

    return {
        "cpu": _cpu_name(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "onnxruntime": onnxruntime.__version__,
        "openvino": import_openvino().__version__,
        "int8_recipe": QUANT_VERSION,
        "models": {n: m.get("onnx_sha256") for n, m in sorted(manifests.items())},
    }


def gate_path(key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "precision-gate" / f"{digest}.json"


def _read_cached(key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The document cached under ``key`` (None if absent, unreadable or for another key)."""
    path = gate_path(key)
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("ignoring an unreadable precision gate cache %s", path)
        return None
    return doc if doc.get("key") == key else None


def _write_cached(key: Mapping[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """Cache ``doc`` (with its ``key``) atomically under ``key``; returns it."""
    from ..fsutil import atomic_path

    doc["key"] = key
    path = gate_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=1))
    return doc


def _tolerance() -> dict[str, float]:
    return {"max_wald_rmse_worsening": MAX_RMSE_WORSENING, "max_mean_abs_dn": MAX_MEAN_DN, "max_p999_abs_dn": MAX_P999_DN}


def _score_modes(scene: Any, net: str, ref: Any, ref_backend: str, candidates: list[tuple[str, str, str, Any]]) -> dict[str, Any]:
    """The fp32 reference ``ref`` and each candidate ``(key, backend, precision, make_runner)``
    scored against it (:func:`score`); a candidate whose runner cannot be made fails."""
    with ref:
        ref_out, ref_s = _real_run(scene, net, ref)
        ref_rmse = _wald_rmse(scene, net, ref)
    res: dict[str, Any] = {"fp32": {"backend": ref_backend, "s_per_mpx": round(ref_s, 3), "wald_rmse": round(ref_rmse, 3), "passed": True}}
    for key, backend, precision, make in candidates:
        try:
            runner = make()
        except Exception as err:  # noqa: BLE001 - a mode that cannot run here just fails the gate
            res[key] = {"backend": backend, "precision": precision, "passed": False, "error": str(err)}
            continue
        with runner:
            res[key] = {"backend": backend, "precision": precision, **score(scene, net, runner, ref_out, ref_rmse)}
    return res


def _wald_rmse(scene: Any, net: str, runner: Any) -> float:
    """The Wald RMSE of ``runner`` on ``scene`` (what ``s2sr evaluate`` reports as the model's)."""
    from ..evaluation import wald_metrics

    return float(wald_metrics(scene, net, runner)["model"]["rmse"])


#: CPU flags with int8 dot-product instructions (VNNI) and native bf16: where OpenVINO's int8 and
#: bf16 kernels beat fp32 (every gate measured so far, e.g. on Zen 4 per net: int8 5.8-7.5, bf16
#: 9.9-10.8, fp32 14.8-16.8 s/Mpx).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def feature_pick(modes: Mapping[str, Any], flags: list[str] | None = None) -> str:
    """The mode ``auto`` takes when no speed was measured on this machine: the first that passed the
    (shipped) accuracy gate of int8 (CPUs with VNNI), bf16 (CPUs with native bf16), fp32."""
    flags = _cpu_flags() if flags is None else flags
    order = [key for key, want in (("openvino-int8", VNNI_FLAGS), ("openvino-bf16", BF16_FLAGS)) if any(f in flags for f in want)]
    return next((k for k in [*order, "fp32"] if modes.get(k, {}).get("passed")), "fp32")


def _fastest_passing(modes: Mapping[str, Any]) -> str:
    """The key of the fastest mode that passed (the fp32 reference always does)."""
    return min((v["s_per_mpx"], k) for k, v in modes.items() if v.get("passed") and "s_per_mpx" in v)[1]


def _real_run(scene: Any, net: str, runner: Any) -> tuple[np.ndarray, float]:
    from ..sr import ArraySource, super_resolve

    src = ArraySource(scene.b10, scene.b20, scene.b60)
    runner.inference_time = 0.0
    out = super_resolve(src, {net: runner})[net]
    mpx = scene.b10.shape[1] * scene.b10.shape[2] / 1e6
    return out, runner.inference_time / mpx


def measure(onnx: Mapping[str, Path], manifests: Mapping[str, dict[str, Any]], modes: list[str], scene_path: Path | None = None) -> dict[str, Any]:
    """Run the gate for ``modes`` (OpenVINO precisions) on every net; see the module docstring."""
    from ..scenes import load_scene
    from .onnxrt import OnnxRunner
    from .openvino import OpenVinoRunner

    scene_path = scene_path or gate_scene_path()
    scene = load_scene(scene_path)
    nets: dict[str, Any] = {}
    for net, path in onnx.items():
        man = manifests[net]
        t0 = time.perf_counter()
        candidates = [(f"openvino-{m}", "openvino-cpu", m, lambda m=m, path=path, man=man: OpenVinoRunner(path, man, m)) for m in ["fp32", *modes]]
        nets[net] = _score_modes(scene, net, OnnxRunner(path, man, "cpu"), "onnxruntime-cpu", candidates)
        log.info("precision gate for %s measured in %.0f s", net, time.perf_counter() - t0)
    return {
        "format": GATE_FORMAT,
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "scene": str(scene_path),
        "tolerance": _tolerance(),
        "nets": nets,
    }


def score(scene: Any, net: str, runner: Any, ref_out: np.ndarray, ref_rmse: float) -> dict[str, Any]:
    """One mode against the fp32 reference on the gate scene: speed, |Δ| in DN at real scale,
    Wald RMSE and its change, and whether it passes the tolerance."""
    out, s = _real_run(scene, net, runner)
    rmse = _wald_rmse(scene, net, runner)
    d = np.abs(out - ref_out)
    change = (rmse - ref_rmse) / ref_rmse if ref_rmse else 0.0
    entry = {
        "s_per_mpx": round(s, 3), "mean_abs_dn": round(float(d.mean()), 3), "p999_abs_dn": round(float(np.percentile(d, 99.9)), 2),
        "max_abs_dn": round(float(d.max()), 1), "wald_rmse": round(rmse, 3), "wald_rmse_change": round(change, 5),
    }
    entry["passed"] = bool(change <= MAX_RMSE_WORSENING and entry["mean_abs_dn"] <= MAX_MEAN_DN and entry["p999_abs_dn"] <= MAX_P999_DN)
    return entry


def torch_gate(net: str, checkpoint_sha256: str | None, device: str, runner_factory: Any,
               modes: tuple[str, ...] = ("fp16", "bf16"), *, remeasure: bool = False) -> dict[str, Any]:
    """The accuracy gate for PyTorch low precisions on a GPU, cached per GPU, torch and weights.

    Same scene and tolerance as the CPU gate: each mode is scored against the strict-fp32
    run of the same net on the same device (:func:`score`). ``runner_factory(precision)``
    makes a runner; a mode whose runner cannot be made fails. :func:`torch_best` picks.
    """
    import torch

    from ..scenes import load_scene

    dev_name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else _cpu_name()
    key = {"format": GATE_FORMAT, "backend": "torch", "device": dev_name, "torch": torch.__version__,
           "cuda": torch.version.cuda, "net": net, "checkpoint_sha256": checkpoint_sha256, "modes": list(modes)}
    cached = None if remeasure else _read_cached(key)
    if cached is not None:
        return cached
    scene_path = gate_scene_path()
    log.warning("measuring the %s precision gate for %s on %s (once, cached in %s)", "/".join(modes), net, dev_name, gate_path(key))
    scene = load_scene(scene_path)
    candidates = [(m, "torch", m, lambda m=m: runner_factory(m)) for m in modes]
    res = _score_modes(scene, net, runner_factory("fp32"), "torch", candidates)
    return _write_cached(key, {
        "format": GATE_FORMAT, "measured": datetime.now(UTC).isoformat(timespec="seconds"), "scene": str(scene_path),
        "tolerance": _tolerance(), "modes": res,
    })


def torch_best(result: Mapping[str, Any]) -> str:
    """The fastest passing precision of a :func:`torch_gate` result (``fp32`` always passes)."""
    return _fastest_passing(result["modes"])


def best_mode(result: Mapping[str, Any], net: str) -> tuple[str, str]:
    """``(backend, precision)`` of the fastest passing mode for ``net``: ``("onnxruntime", "fp32")``
    or ``("openvino", mode)``."""
    best = result["pick"][net] if "pick" in result else _fastest_passing(result["nets"][net])
    if best == "fp32":
        return "onnxruntime", "fp32"
    return "openvino", best.removeprefix("openvino-")


def load_cached(onnx: Mapping[str, Path], manifests: Mapping[str, dict[str, Any]], key: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The gate already measured for these models on this machine, or None (never measures).
    ``key``: :func:`machine_key` of ``manifests``, when the caller has it."""
    cached = _read_cached(key or machine_key(manifests))
    if cached is not None and set(onnx) <= set(cached.get("nets", {})):
        return cached
    return None


def fastest_fp32(result: Mapping[str, Any], net: str) -> str:
    """``onnxruntime`` or ``openvino``: whichever ran fp32 faster in the gate (both are exact fp32;
    the gate checks OpenVINO's against ONNX Runtime's output)."""
    modes = result["nets"][net]
    ov, ort = modes.get("openvino-fp32", {}), modes.get("fp32", {})
    if ov.get("passed") and "s_per_mpx" in ov and ov["s_per_mpx"] < ort.get("s_per_mpx", float("inf")):
        return "openvino"
    return "onnxruntime"


def fp32_kernels(onnx: Path, manifest: dict[str, Any], *, probe: bool = False) -> str:
    """``onnxruntime`` or ``openvino``: the faster exact-fp32 kernels for this net on this machine.

    From the cached gate or probe if there is one; else, with ``probe`` (``s2sr tune``), a short probe
    (the packaged 120² crop, best of three runs per backend, a few seconds once), cached beside the
    gate; else ONNX Runtime, unmeasured (a first run costs what later runs cost). Both backends run
    the same ONNX file in fp32; the gate and the tests check that their outputs agree (≤ 0.05 DN).
    """
    from ..sr import ArraySource, super_resolve
    from .onnxrt import OnnxRunner
    from .openvino import OpenVinoRunner

    net = manifest["net"]
    gate_key = machine_key({net: manifest})
    cached = load_cached({net: onnx}, {net: manifest}, gate_key)
    if cached is not None:
        return fastest_fp32(cached, net)
    key = {**gate_key, "probe": "fp32-kernels"}
    cached_probe = _read_cached(key)
    if cached_probe is not None and cached_probe.get("fastest") in ("onnxruntime", "openvino"):
        return str(cached_probe["fastest"])
    if not probe:
        log.info("fp32 kernels for %s: ONNX Runtime (not compared on this machine; `s2sr tune` measures it)", net)
        return "onnxruntime"
    with np.load(Path(__file__).resolve().parent.parent / "data" / "verify_T33UUB_120.npz") as z:
        src = ArraySource(z["b10"], z["b20"], z["b60"])
    times: dict[str, float] = {}
    for name, make in (("onnxruntime", lambda: OnnxRunner(onnx, manifest, "cpu")), ("openvino", lambda: OpenVinoRunner(onnx, manifest, "fp32"))):
        with make() as runner:
            best = float("inf")
            for _ in range(3):  # the first run compiles; the best of three is the kernels' speed
                t0 = time.perf_counter()
                super_resolve(src, {net: runner})
                best = min(best, time.perf_counter() - t0)
            times[name] = best
    fastest = min(times, key=lambda k: times[k])
    log.info("fp32 kernels for %s on this machine: %s (probe: %s s per 120² crop; cached in %s)", net, fastest,
             ", ".join(f"{k} {v:.3f}" for k, v in times.items()), gate_path(key))
    _write_cached(key, {"seconds": times, "fastest": fastest})
    return fastest


def load_or_measure(onnx: Mapping[str, Path], manifests: Mapping[str, dict[str, Any]], *, remeasure: bool = False,
                    measure_speed: bool = False) -> dict[str, Any]:
    """The cached gate for these models on this machine; else, when the shipped accuracy figures fit
    these models, those figures with the mode picked by CPU features (:func:`feature_pick`: nothing
    measured, nothing cached, so a first run costs what later runs cost) or, with ``measure_speed``
    (``s2sr tune``), with every passing mode's speed measured here and cached; else the full gate,
    measured now and cached."""
    from .openvino import supported_precisions

    key = machine_key(manifests)
    cached = None if remeasure else load_cached(onnx, manifests, key)
    if cached is not None:
        return cached
    modes = [m for m in supported_precisions() if m != "fp32"]
    from .gate_shipped import measure_speed as speed_here
    from .gate_shipped import shipped_accuracy
    from .quant import QUANT_VERSION

    scene = gate_scene_path()
    acc = None if remeasure else shipped_accuracy(manifests, modes, recipe=QUANT_VERSION, scene=scene.name, tolerance=_tolerance())
    if acc is not None and not measure_speed:
        flags = _cpu_flags()
        pick = {net: feature_pick(acc["nets"][net], flags) for net in onnx}
        log.info("precision gate: shipped accuracy figures; picked by CPU features: %s (`s2sr tune` measures the speeds here)",
                 ", ".join(f"{n} {k}" for n, k in pick.items()))
        return {"format": GATE_FORMAT, "scene": str(scene), "tolerance": acc["tolerance"], "accuracy": "shipped",
                "speed": "cpu-features", "cpu_flags": flags, "nets": {n: acc["nets"][n] for n in onnx}, "pick": pick}
    if acc is not None:
        log.warning("precision gate: the shipped accuracy figures fit; measuring the speed of %s here (once, cached in %s)",
                    ", ".join(["fp32", *modes]), gate_path(key))
        return _write_cached(key, speed_here(onnx, manifests, modes, acc, gate_format=GATE_FORMAT, scene=str(scene)))
    log.warning("measuring the precision gate on this machine (%s; once, cached in %s)", ", ".join(modes) or "fp32 only", gate_path(key))
    return _write_cached(key, measure(onnx, manifests, modes))
