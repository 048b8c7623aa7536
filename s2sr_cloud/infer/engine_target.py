"""The machine a TensorRT engine is checked against, and what a cached engine is worth there.

Used by ``s2sr engine list|check``: the target is given (GPU name, compute capability,
TensorRT version) or this machine's; an engine's sidecar says which one it was built for.
"""

from __future__ import annotations

from typing import Any

#: (GPU name, compute capability, TensorRT version)
Target = tuple[str, str, str]


def engine_target(gpu: str | None = None, cc: str | None = None, trt_version: str | None = None) -> Target | None:
    """The target: as given when all three are, else this machine's (filling in what is not
    given); None without a GPU or TensorRT here."""
    if gpu and cc and trt_version:
        return gpu, cc, trt_version
    from .trt import current_gpu, import_tensorrt

    trt = import_tensorrt()
    found = current_gpu() if trt is not None else None
    if found is None:
        return None
    return gpu or found.name, cc or found.compute_capability, trt_version or trt.__version__


def engine_status(sidecar: dict[str, Any], target: Target | None) -> str:
    """``usable here``, ``other GPU``, ``stale (TensorRT)``, or ``?`` without a target."""
    if target is None:
        return "? (no GPU/TensorRT here)"
    gpu, cc, ver = target
    if (sidecar.get("gpu_name"), sidecar.get("compute_capability")) != (gpu, cc):
        return "other GPU"
    if sidecar.get("tensorrt_version") != ver:
        return "stale (TensorRT)"
    return "usable here"
