"""The machine-independent half of the CPU precision gate, shipped with the weights.

The gate (:mod:`~s2sr_cloud.infer.gate`) measures two things per net and mode: accuracy
(``|Δ|`` in DN against fp32 on the gate scene, the Wald RMSE change) and speed. The accuracy
depends on the model, the int8 recipe and the gate scene, not on the machine; measuring it is
most of the gate's cost (two full runs per mode plus the Wald degradation). So the package ships
those figures (``s2sr_cloud/weights/precision-gate.json``, written by ``s2sr tune
--export-accuracy``) and a cold run with matching models only **measures speed**, briefly, on
the packaged 120² Malmö crop (:func:`measure_speed`). Anything that does not match (other
weights, another int8 recipe or gate scene, a mode the shipped file lacks) falls back to the
full measurement.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "s2sr-gate-accuracy/1"
#: The per-mode fields that do not depend on the machine.
ACCURACY_FIELDS = ("backend", "precision", "mean_abs_dn", "p999_abs_dn", "max_abs_dn", "wald_rmse", "wald_rmse_change",
                   "passed")


def shipped_path() -> Path:
    from ..weights import WEIGHTS_DIR

    return WEIGHTS_DIR / "precision-gate.json"


def accuracy_doc(result: Mapping[str, Any], manifests: Mapping[str, dict[str, Any]], recipe: int) -> dict[str, Any]:
    """The machine-independent part of a measured gate ``result`` (:func:`~s2sr_cloud.infer.gate.measure`)."""
    nets = {
        net: {mode: {k: v for k, v in entry.items() if k in ACCURACY_FIELDS}
              for mode, entry in modes.items() if "error" not in entry}
        for net, modes in result["nets"].items()
    }
    return {
        "format": FORMAT, "int8_recipe": recipe, "scene": Path(str(result["scene"])).name,
        "tolerance": result["tolerance"], "measured": result.get("measured"),
        "models": {n: manifests[n].get("onnx_sha256") for n in sorted(nets)}, "nets": nets,
    }


def shipped_accuracy(manifests: Mapping[str, dict[str, Any]], modes: list[str], *, recipe: int, scene: str,
                     tolerance: Mapping[str, float], path: Path | None = None) -> dict[str, Any] | None:
    """The shipped accuracy figures when they fit these models, int8 recipe, gate scene, tolerance
    and ``modes`` (OpenVINO precisions besides fp32), else None."""
    path = path or shipped_path()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("ignoring the shipped precision gate figures %s: %s", path, err)
        return None
    want = {n: m.get("onnx_sha256") for n, m in manifests.items()}
    fits = (doc.get("format") == FORMAT and doc.get("int8_recipe") == recipe and doc.get("scene") == scene
            and dict(doc.get("tolerance", {})) == dict(tolerance)
            and all(doc.get("models", {}).get(n) == sha for n, sha in want.items()))
    if not fits:
        log.info("the shipped precision gate figures do not fit these models/recipe/scene: measuring in full")
        return None
    for net in want:
        have = doc["nets"].get(net, {})
        if not all(k in have for k in ("fp32", "openvino-fp32", *(f"openvino-{m}" for m in modes))):
            return None
    return doc


def _crop() -> Any:
    from ..sr import ArraySource

    with np.load(Path(__file__).resolve().parent.parent / "data" / "verify_T33UUB_120.npz") as z:
        return ArraySource(z["b10"], z["b20"], z["b60"])


def _speed(src: Any, net: str, runner: Any, repeats: int = 2) -> float:
    """Best inference seconds per Mpx of ``repeats`` runs on ``src`` after a warm-up run."""
    from ..sr import super_resolve

    mpx = src.shape10[0] * src.shape10[1] / 1e6
    super_resolve(src, {net: runner})
    best = float("inf")
    for _ in range(repeats):
        runner.inference_time = 0.0
        t0 = time.perf_counter()
        super_resolve(src, {net: runner})
        best = min(best, runner.inference_time or (time.perf_counter() - t0))
    return best / mpx


def measure_speed(onnx: Mapping[str, Path], manifests: Mapping[str, dict[str, Any]], modes: list[str],
                  accuracy: Mapping[str, Any], *, gate_format: str, scene: str) -> dict[str, Any]:
    """A gate result (the format of :func:`~s2sr_cloud.infer.gate.measure`) from the shipped
    ``accuracy`` figures and speeds measured here; a mode whose runner cannot be made fails."""
    from .onnxrt import OnnxRunner
    from .openvino import OpenVinoRunner

    src = _crop()
    nets: dict[str, Any] = {}
    for net, path in onnx.items():
        man, acc = manifests[net], accuracy["nets"][net]
        t0 = time.perf_counter()
        makers = [("fp32", lambda path=path, man=man: OnnxRunner(path, man, "cpu"))]
        makers += [(f"openvino-{m}", lambda m=m, path=path, man=man: OpenVinoRunner(path, man, m)) for m in ["fp32", *modes]]
        res: dict[str, Any] = {}
        for key, make in makers:
            entry = dict(acc[key])
            try:
                runner = make()
            except Exception as err:  # noqa: BLE001 - a mode that cannot run here just fails the gate
                res[key] = {**entry, "passed": False, "error": str(err)}
                continue
            with runner:
                entry["s_per_mpx"] = round(_speed(src, net, runner), 3)
            res[key] = entry
        res["fp32"]["passed"] = True
        nets[net] = res
        log.info("precision gate for %s: shipped accuracy, speed measured in %.1f s", net, time.perf_counter() - t0)
    return {
        "format": gate_format, "measured": datetime.now(UTC).isoformat(timespec="seconds"), "scene": scene,
        "tolerance": accuracy["tolerance"], "accuracy": "shipped", "speed_on": "verify_T33UUB_120", "nets": nets,
    }
