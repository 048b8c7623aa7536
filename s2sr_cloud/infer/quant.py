"""int8 (VNNI) versions of the shipped ONNX files, quantized once per machine and cached.

Post-training quantization with NNCF (OpenVINO's quantizer) on the OpenVINO model read from
the same ONNX file: weights int8 per output channel, activations int8 with ranges
calibrated on real Sentinel-2 imagery (the packaged L1C sample scene, not the held-out
scenes the accuracy gate scores on), then NNCF's bias correction, which removes the
systematic shift that int8 rounding adds to each convolution's output. Only convolutions
are quantized, and not the first and the last (few channels, cheap; the first sees raw
reflectance, whose range no calibration set bounds, the last writes the correction): the
residual scaling, the residual additions and the global residual of the upsampled bands
stay float32, so only the net's correction carries int8 rounding.

Why this recipe (measured on the held-out Malmö scene, 20 m net, Wald RMSE vs fp32):
ONNX Runtime's static QDQ quantizer with the same exclusions +2.1 % (min/max), +2.6 %
(percentile), +1.7 % (two more convolutions left in fp32); NNCF quantizing every op incl.
the additions +10 %; NNCF convolutions only with bias correction **+0.4 %** (mean |Δ| 2 DN).
OpenVINO runs the result (IR ``.xml`` + ``.bin``) with int8 kernels; the accuracy gate
(:mod:`~s2sr_cloud.infer.gate`) decides whether ``--precision auto`` may use it.

Needs ``nncf`` (the ``openvino`` extra pulls it in).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
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
QUANT_VERSION = 6


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
    from ..scenes import load_scene

    root = Path(__file__).resolve().parent.parent / "sample" / "sentinel-2-l1c"
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    return load_scene(folders[0])


def _int8_stem(manifest: dict[str, Any]) -> str:
    """What names an int8 model: the ONNX file's name and sha256 (the recipe version follows)."""
    return f"{manifest['name']}-{str(manifest['onnx_sha256'])[:16]}"


def int8_path(manifest: dict[str, Any]) -> Path:
    """Where the int8 model (OpenVINO IR ``.xml``; its ``.bin`` beside it) of ``manifest`` is cached."""
    import openvino

    ver = openvino.__version__.split("-")[0]
    return cache_dir() / "int8" / f"{_int8_stem(manifest)}-ov{ver}-q{QUANT_VERSION}.xml"


#: int8 IRs shipped with the default weights (what does not depend on the machine): a cold run
#: uses them instead of quantizing; other ONNX files are quantized on first use and cached.
SHIPPED_INT8 = Path(__file__).parents[1] / "weights" / "int8"


def shipped_int8(manifest: dict[str, Any]) -> Path | None:
    """The shipped int8 IR of ``manifest``'s ONNX file (same name, sha256 and recipe), if any."""
    p = SHIPPED_INT8 / f"{_int8_stem(manifest)}-q{QUANT_VERSION}.xml"
    return p if p.exists() and p.with_suffix(".bin").exists() else None


def quantized_model(onnx_path: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    """The int8 OpenVINO IR of ``onnx_path``: the shipped one for the default weights, else built
    on first use and cached by the ONNX sha256."""
    out = int8_path(manifest)
    if out.exists() and out.with_suffix(".bin").exists():
        return out
    shipped = shipped_int8(manifest)
    if shipped is not None:
        log.debug("int8 model of %s: the shipped %s", onnx_path, shipped.name)
        return shipped
    require("nncf", "openvino")
    import logging as _logging

    import nncf
    import openvino as ov

    from ..fsutil import tmp_beside

    inputs = calibration_inputs(manifest["net"], int(manifest["halo"]))
    model = ov.Core().read_model(str(onnx_path))
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    keep_fp32 = nncf.IgnoredScope(
        names=[convs[0], convs[-1]], types=["Add", "Multiply", "Subtract", "Divide", "Concat", "Slice", "StridedSlice"],
        validate=False,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("quantizing %s to int8 with %d calibration tiles (cached in %s)", onnx_path, len(inputs), out)
    _logging.getLogger("nncf").setLevel(_logging.WARNING)
    # NNCF draws its own progress bars on stdout: keep stdout for the command's output (--json)
    with contextlib.redirect_stdout(sys.stderr):
        q = nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs), ignored_scope=keep_fp32, fast_bias_correction=True)
    # two files: write both under temporary names, then rename the .bin first and the
    # .xml (whose existence means "complete") last
    tmp = tmp_beside(out.parent, out.name, suffix=".xml")
    try:
        ov.save_model(q, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(tmp, out)
    finally:
        for leftover in (tmp, tmp.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)
    return out
