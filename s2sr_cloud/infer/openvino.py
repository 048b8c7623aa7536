"""OpenVINO runner: the same ONNX files on Intel/AMD CPUs in fp32, bf16 or int8.

* ``fp32``: OpenVINO's own fp32 kernels (``INFERENCE_PRECISION_HINT=f32``).
* ``bf16``: ``INFERENCE_PRECISION_HINT=bf16``; only offered where the CPU has native bf16
  (AVX512_BF16 or AMX), since OpenVINO would otherwise emulate it slowly.
* ``int8``: the Conv layers quantized once per machine (:mod:`~s2sr_cloud.infer.quant`)
  and run with VNNI/AMX int8 kernels.

Models are compiled for static input shapes (one per tile shape, a few kept), which lets
OpenVINO pick its fastest kernels; :func:`~s2sr_cloud.sr.super_resolve` feeds equal tiles,
so a window compiles once. Needs the ``openvino`` extra.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..bands import NETS
from ..errors import BackendUnavailable, EngineMismatch, MissingDependency, ModelError
from .base import ModelInfo, RunnerBase

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
INSTALL = "install it with `pip install 's2sr-cloud[openvino]'`"


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError as err:
        raise MissingDependency(f"--precision bf16/int8 on CPU runs on OpenVINO, which is not installed; {INSTALL}") from err
    return openvino


def available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_capabilities(core: Any = None) -> list[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (``BF16``, ``INT8``, ``FP16`` …), from
    ``core`` (an ``openvino.Core``) or a new one."""
    core = core or import_openvino().Core()
    return [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def supported_precisions() -> list[str]:
    """The precisions this CPU runs natively under OpenVINO (fp32 always)."""
    if not available():
        return []
    caps = cpu_capabilities()
    return ["fp32"] + [p for p, cap in (("bf16", "BF16"), ("int8", "INT8")) if cap in caps]


class OpenVinoRunner(RunnerBase):
    """A :class:`~s2sr_cloud.sr.Runner` over OpenVINO's CPU plugin.

    Args:
        onnx_path: the fp32 ONNX file (int8 is derived from it).
        manifest: its manifest.
        precision: ``fp32``, ``bf16`` or ``int8``.
        threads: inference threads (default: all cores).
    """

    def __init__(self, onnx_path: str | os.PathLike[str], manifest: dict[str, Any], precision: str = "fp32", threads: int | None = None) -> None:
        if precision not in PRECISIONS:
            raise BackendUnavailable(f"OpenVINO runs fp32, bf16 or int8, not {precision!r}")
        ov = import_openvino()
        self._core = ov.Core()
        if precision == "bf16" and "BF16" not in cpu_capabilities(self._core):
            raise BackendUnavailable("this CPU has no native bf16 (AVX512_BF16/AMX); use --precision fp32 or int8")
        path = Path(onnx_path)
        if precision == "int8":
            from .quant import quantized_model

            path = quantized_model(onnx_path, manifest)
        try:
            self._model = self._core.read_model(str(path))
        except Exception as err:  # openvino raises untyped RuntimeErrors
            raise ModelError(f"OpenVINO cannot read {path}: {err}") from err
        spec = NETS[manifest["net"]]
        shape = self._model.inputs[0].get_partial_shape()
        if shape[1].is_static and shape[1].get_length() != spec.in_channels:
            raise EngineMismatch(f"{path}: {shape[1]} input channels, its manifest says {manifest['net']} ({spec.in_channels})")
        self._config = {"INFERENCE_PRECISION_HINT": _HINT[precision], "PERFORMANCE_HINT": "LATENCY",
                        "INFERENCE_NUM_THREADS": int(threads or os.cpu_count() or 1)}
        self._compiled: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.net: str = manifest["net"]
        self.halo: int = int(manifest["halo"])
        self.backend = "openvino-cpu"
        self.precision = precision
        self.tile, self.batch = 544, 1
        self.inference_time = 0.0
        self.info = ModelInfo(
            name=Path(onnx_path).stem, net=self.net, backend=self.backend, precision=precision,
            variant=manifest.get("variant"), onnx_sha256=manifest.get("onnx_sha256"),
            checkpoint_sha256=manifest.get("checkpoint_sha256"),
            extra={"openvino": ov.__version__},
        )

    def _request(self, shape: tuple[int, ...]) -> Any:
        req = self._compiled.get(shape)
        if req is None:
            m = self._model.clone()
            m.reshape({m.inputs[0].get_any_name(): list(shape)})
            t0 = time.perf_counter()
            req = self._core.compile_model(m, "CPU", self._config).create_infer_request()
            log.debug("OpenVINO compiled %s %s for %s in %.1f s", self.net, self.precision, shape, time.perf_counter() - t0)
            self._compiled[shape] = req
            while len(self._compiled) > 3:  # edge windows give a few shapes; keep memory bounded
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(shape)
        return req

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        req = self._request(tuple(x.shape))
        t0 = time.perf_counter()
        req.infer({0: x})
        y = np.array(req.get_output_tensor(0).data)  # the request reuses its output buffer
        self.inference_time += time.perf_counter() - t0
        return y

    def close(self) -> None:
        self._compiled.clear()
