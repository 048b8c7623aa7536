"""int8 (VNNI) versions of the shipped ONNX files, quantized once per machine and cached.

Static QDQ quantization with ONNX Runtime's quantizer: weights int8 per output channel,
activations uint8 with min/max ranges calibrated on real Sentinel-2 imagery (the packaged
L1C sample scene, not the held-out scenes the accuracy gate scores on). Only ``Conv`` nodes
are quantized, and not the first and the last (few channels, cheap; the first sees raw
reflectance, whose range no calibration set bounds, the last writes the correction): the
input slice, the residual scaling and the global residual ``Add`` of the
upsampled bands stay float32, so only the net's correction carries int8 rounding.
OpenVINO runs the resulting graph with int8 kernels; the accuracy gate
(:mod:`~s2sr_cloud.infer.gate`) decides whether ``--precision auto`` may use it.

Needs ``onnx`` (the ``openvino`` extra pulls it in).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..bands import NETS
from ..errors import require
from ..settings import cache_dir

log = logging.getLogger(__name__)

#: Calibration tiles per net (side in 10 m pixels, halo excluded).
CALIB_TILE = 96
CALIB_TILES = 12
#: Bumped when the quantization recipe changes (the cache key).
QUANT_VERSION = 5


def calibration_inputs(net: str, halo: int, scene: Any | None = None, *, tile: int = CALIB_TILE, count: int = CALIB_TILES) -> list[np.ndarray]:
    """Net inputs (1, C, t, t) float32, scaled, exactly as :func:`~s2sr_cloud.sr.super_resolve` feeds them."""
    from ..sr import ArraySource, super_resolve

    if scene is None:
        scene = _sample_scene()
    src = ArraySource(scene.b10, scene.b20, scene.b60)
    spec = NETS[net]
    got: list[np.ndarray] = []

    class _Capture:
        backend = "capture"

        def __init__(self) -> None:
            self.net, self.halo = net, halo

        def __call__(self, x: np.ndarray) -> np.ndarray:
            got.extend(np.array(x[i : i + 1]) for i in range(x.shape[0]))
            return np.zeros((x.shape[0], spec.out_channels, *x.shape[2:]), np.float32)

    super_resolve(src, {net: _Capture()}, tile=tile, batch=1)
    step = max(1, len(got) // count)
    return got[::step][:count]


def _sample_scene() -> Any:
    """The packaged L1C sample scene (Virginia, real DN) as a training :class:`Scene`."""
    from ..train.data import load_scene

    root = Path(__file__).resolve().parent.parent / "sample" / "sentinel-2-l1c"
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    return load_scene(folders[0])


def int8_path(manifest: dict[str, Any]) -> Path:
    import onnxruntime

    return cache_dir() / "int8" / f"{manifest['name']}-{str(manifest['onnx_sha256'])[:16]}-ort{onnxruntime.__version__}-q{QUANT_VERSION}.onnx"


def quantized_onnx(onnx_path: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    """The int8 QDQ version of ``onnx_path`` (built on first use, cached by its sha256)."""
    out = int8_path(manifest)
    if out.exists():
        return out
    require("onnx", "openvino")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from ..fsutil import atomic_path

    inputs = calibration_inputs(manifest["net"], int(manifest["halo"]))
    name = manifest.get("input_name", "input")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {name: x}

    import onnx

    convs = [n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type == "Conv"]
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("quantizing %s to int8 with %d calibration tiles (cached in %s)", onnx_path, len(inputs), out)
    with atomic_path(out, suffix=".onnx") as tmp:
        quantize_static(
            str(onnx_path), str(tmp), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
            nodes_to_exclude=[convs[0], convs[-1]],
        )
    return out
