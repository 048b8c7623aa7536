"""ONNX Runtime runner (TensorRT, CUDA or CPU execution provider)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..bands import NETS
from ..errors import BackendUnavailable, EngineMismatch, MissingDependency, ModelError
from .base import ModelInfo, RunnerBase, gpu_host_workers

log = logging.getLogger(__name__)

#: Our device names → ONNX Runtime execution providers.
PROVIDERS: dict[str, str] = {
    "ort-trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


#: What to install when ONNX Runtime is missing (the two builds exclude each other).
INSTALL_ORT = "install ONNX Runtime with `pip install 's2sr-cloud[cpu]'` (or `'s2sr-cloud[gpu]'` on an NVIDIA GPU machine, not both)"


def import_onnxruntime():  # type: ignore[no-untyped-def]
    """``onnxruntime``, or :class:`MissingDependency` saying which extra to install."""
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingDependency(f"ONNX Runtime is not installed; {INSTALL_ORT}") from err
    return onnxruntime


def ort_conflict() -> str | None:
    """A warning when both onnxruntime and onnxruntime-gpu are installed (one import name)."""
    from importlib import metadata

    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    if len(found) < 2:
        return None
    return (f"both {found[0]} and {found[1]} are installed; they share the `onnxruntime` module and overwrite "
            "each other's files: keep one (`pip uninstall -y onnxruntime onnxruntime-gpu` then "
            "`pip install 's2sr-cloud[gpu]'` or `'s2sr-cloud[cpu]'`)")


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers (empty if it is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


class OnnxRunner(RunnerBase):
    """A :class:`~s2sr_cloud.sr.Runner` over an ONNX Runtime session.

    Args:
        onnx_path: the ONNX file.
        manifest: its manifest (see :mod:`~s2sr_cloud.infer.manifest`).
        device: ``cpu``, ``cuda`` or ``ort-trt``.
        threads: intra-op threads for the CPU provider (default: all cores).
    """

    def __init__(self, onnx_path: str | os.PathLike[str], manifest: dict[str, Any], device: str = "cpu", threads: int | None = None) -> None:
        ort = import_onnxruntime()

        provider = PROVIDERS[device]
        if provider not in ort.get_available_providers():
            raise BackendUnavailable(
                f"ONNX Runtime provider {provider} is not available here "
                f"(available: {', '.join(ort.get_available_providers())}); on a CUDA machine "
                "`pip uninstall -y onnxruntime && pip install 's2sr-cloud[gpu]'`, or use --device cpu"
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Memory stays bounded whatever --tile/--batch: with the CPU arena on, every new
        # input shape grows a never-shrinking arena (8.4 GB peak RSS at --tile 512 on a
        # 1080² scene); without it, activations are freed after each run at no measurable
        # cost next to 3x3x128 convolutions. Memory patterns are per-shape caches too.
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.log_severity_level = 3
        providers: list[Any] = [provider]
        if device == "ort-trt":
            from ..settings import engine_dir

            cache = engine_dir() / "ort-trt"
            cache.mkdir(parents=True, exist_ok=True)
            providers = [
                (provider, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}),
                "CUDAExecutionProvider",
            ]
        if provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ModelError(f"ONNX Runtime cannot load {onnx_path}: {err}") from err
        self._check_io(onnx_path, manifest)
        self.manifest = manifest
        self.net: str = manifest["net"]
        self.halo: int = int(manifest["halo"])
        self.backend = self._actual_backend(device)
        self.precision = "fp32"
        # CPU: one big tile per call (batching only multiplies activation memory);
        # GPUs: big tiles in small batches keep the device busy.
        self.tile, self.batch = (544, 1) if device == "cpu" else (1024, 2)
        if device != "cpu":
            self.host_workers = gpu_host_workers()
        self.inference_time = 0.0
        self.info = ModelInfo(
            name=Path(onnx_path).stem, net=self.net, backend=self.backend, precision=self.precision,
            variant=manifest.get("variant"), onnx_sha256=manifest.get("onnx_sha256"),
            checkpoint_sha256=manifest.get("checkpoint_sha256"),
        )

    def _actual_backend(self, device: str) -> str:
        """The backend that really runs: ONNX Runtime falls back to the next provider
        (TensorRT → CUDA → CPU) without raising when one cannot take the graph."""
        active = list(self.session.get_providers())
        first = active[0] if active else "CPUExecutionProvider"
        actual = next((d for d, p in PROVIDERS.items() if p == first), device)
        if actual != device:
            log.warning("ONNX Runtime asked for %s but runs on %s (active providers: %s)", PROVIDERS[device], first, ", ".join(active))
        return f"onnxruntime-{actual}"

    def close(self) -> None:
        """Release the session (its memory is freed when the last reference goes)."""
        self.session = None  # type: ignore[assignment]

    def _check_io(self, onnx_path: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
        spec = NETS[manifest["net"]]
        (inp,) = self.session.get_inputs()
        (out,) = self.session.get_outputs()
        self._input_name = inp.name
        if inp.shape[1] != spec.in_channels or out.shape[1] != spec.out_channels:
            raise EngineMismatch(
                f"{onnx_path}: model has {inp.shape[1]} input / {out.shape[1]} output channels, "
                f"its manifest says {manifest['net']} ({spec.in_channels} / {spec.out_channels})"
            )

    def cancel(self) -> None:
        """End the run in flight (a stop request, :mod:`s2sr_cloud.stop`): ``RunOptions.terminate``."""
        ro = getattr(self, "_run_options", None)
        if ro is not None:
            ro.terminate = True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        self._run_options = ro = import_onnxruntime().RunOptions()  # one per call: cancel() ends only this one
        (y,) = self.session.run(None, {self._input_name: np.ascontiguousarray(x, dtype=np.float32)}, ro)
        self.inference_time += time.perf_counter() - t0
        return np.asarray(y)
