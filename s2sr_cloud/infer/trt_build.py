"""Build TensorRT engines from the exported ONNX files, with an accuracy gate.

Every engine is checked before it enters the cache: the engine and ONNX Runtime (fp32,
the exported graph, itself verified against PyTorch at export) super-resolve the
packaged real Sentinel-2 crop through :func:`~s2sr_cloud.sr.super_resolve`, and the
differences in DN (reflectance × 10000) are recorded in the sidecar. An engine whose
difference exceeds the tolerance of its precision is refused and not written:

* fp32 (TF32 disabled): max |engine − ONNX Runtime| ≤ :data:`FP32_MAX_SCALED` scaled
  units (2 DN);
* fp16 / bf16: mean |engine − ONNX Runtime| ≤ :data:`LOWP_MAX_MEAN_DN` DN by default.
  The nets work on reflectance: 5 DN is 0.0005 reflectance, half of Sentinel-2's
  noise-equivalent reflectance in its noisier bands; more is a visible bias.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..bands import SCALE
from ..errors import BackendUnavailable, EngineAccuracyError, ModelError, require
from ..fsutil import tmp_beside
from .engine_cache import (
    DEFAULT_MAX_BATCH,
    DEFAULT_TILE,
    CacheEntry,
    EngineSpec,
    check_precision,
    engine_dir,
    find_engine,
    make_sidecar,
)
from .trt import TrtRunner, current_gpu, require_tensorrt, trt_logger

log = logging.getLogger(__name__)

#: fp32 engines: max |engine − ONNX Runtime| in scaled units (DN / 2000).
FP32_MAX_SCALED = 1e-3
#: fp16/bf16 engines: default limit on the mean |engine − ONNX Runtime| in DN.
LOWP_MAX_MEAN_DN = 5.0
CHECK_SCENE = Path(__file__).parents[1] / "data" / "verify_T33UUB_120.npz"


def onnx_bytes_for(onnx_path: Path, precision: str) -> bytes:
    """The ONNX graph to build from: as exported for fp32, converted for fp16/bf16."""
    if precision == "fp32":
        return onnx_path.read_bytes()
    require("onnx", "gpu")
    import onnx

    from .lowp import convert

    return bytes(convert(onnx.load(str(onnx_path)), precision).SerializeToString())


def serialize_engine(spec: EngineSpec, graph: bytes, input_name: str, *, workspace_gib: float | None = None) -> bytes:
    """Parse ``graph`` and build a serialized engine for ``spec`` (needs a GPU)."""
    trt = require_tensorrt()
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(graph):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse the ONNX graph of {spec.name}: {errors}")
    config = builder.create_builder_config()
    if spec.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 rounds to 10-bit mantissas
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    shapes = spec.profile.shapes()
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"TensorRT failed to build an engine for {spec.key}; run with -vv for its log")
    return bytes(plan)


def _reference_runner(onnx_path: Path, manifest: dict[str, Any]) -> Any:
    """ONNX Runtime on the CPU: exact fp32 (the CUDA provider may use TF32), and the
    runtime the export itself was verified with against PyTorch."""
    from .onnxrt import OnnxRunner

    return OnnxRunner(onnx_path, manifest, "cpu")


def accuracy(engine_runner: Any, onnx_path: Path, manifest: dict[str, Any], scene: Path = CHECK_SCENE) -> dict[str, Any]:
    """Differences engine vs ONNX Runtime fp32 on a real scene, in DN and scaled units."""
    from ..sr import ArraySource, Window, super_resolve

    with np.load(scene) as z:
        src = ArraySource(z["b10"], z["b20"], z["b60"])
    net = manifest["net"]
    side = min(src.shape10[0], 60 if int(manifest["halo"]) > 30 else src.shape10[0])
    window = Window(0, 0, side, side)  # a smaller window keeps the CPU reference quick for VDSen2
    tile = min(engine_runner.tile, side)
    ref = super_resolve(src, {net: _reference_runner(onnx_path, manifest)}, window=window, tile=tile)[net]
    got = super_resolve(src, {net: engine_runner}, window=window, tile=tile)[net]
    valid = ref > 0
    diff = np.abs(got - ref)[valid]
    return {
        "scene": scene.name,
        "window": [window.row, window.col, window.height, window.width],
        "reference": "onnxruntime fp32",
        "mean_abs_dn": float(diff.mean()),
        "max_abs_dn": float(diff.max()),
        "max_abs_scaled": float(diff.max() / SCALE),
    }


def gate(precision: str, acc: dict[str, Any], max_mean_dn: float | None = None) -> dict[str, Any]:
    """Add the tolerance and verdict to ``acc``; raise :class:`EngineAccuracyError` on failure."""
    if precision == "fp32":
        tol, value, what = FP32_MAX_SCALED, acc["max_abs_scaled"], "max |diff| (scaled units)"
    else:
        tol = LOWP_MAX_MEAN_DN if max_mean_dn is None else max_mean_dn
        value, what = acc["mean_abs_dn"], "mean |diff| (DN)"
    acc = {**acc, "criterion": what, "tolerance": tol, "passed": bool(value <= tol)}
    if not acc["passed"]:
        raise EngineAccuracyError(
            f"the {precision} engine differs from the fp32 model by {what} = {value:.4g} > {tol:g} "
            f"(mean {acc['mean_abs_dn']:.3g} DN, max {acc['max_abs_dn']:.3g} DN on {acc['scene']}); "
            "it was not cached. Use --precision fp32"
            + ("" if precision == "fp32" else ", or raise the limit with --max-mean-dn if this bias is acceptable")
        )
    return acc


@contextlib.contextmanager
def _build_lock(directory: Path, key: str) -> Iterator[None]:
    """Serialise builders of one key (several pods on one cache volume)."""
    import fcntl

    with open(directory / f".{key}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_engine(
    onnx_path: str | os.PathLike[str],
    manifest: dict[str, Any],
    *,
    precision: str = "fp32",
    tile: int = DEFAULT_TILE,
    max_batch: int = DEFAULT_MAX_BATCH,
    directory: str | os.PathLike[str] | None = None,
    max_mean_dn: float | None = None,
    workspace_gib: float | None = None,
    force: bool = False,
) -> CacheEntry:
    """Build, check and cache the engine of ``onnx_path`` for this GPU.

    Returns the existing entry when a matching engine (same identity, tile ≥ ``tile``)
    is already cached, unless ``force``.

    Raises:
        BackendUnavailable: no GPU.
        MissingDependency: no tensorrt / cuda-python.
        EngineAccuracyError: the engine failed its accuracy gate (nothing is written).
    """
    import json

    trt = require_tensorrt()
    gpu = current_gpu()
    if gpu is None:
        raise BackendUnavailable("building a TensorRT engine needs an NVIDIA GPU; none was found")
    precision = check_precision(precision)
    spec = EngineSpec.from_manifest(manifest, gpu, trt.__version__, precision, tile=tile, max_batch=max_batch)
    where = engine_dir(directory)
    where.mkdir(parents=True, exist_ok=True)
    onnx_path = Path(onnx_path)
    with _build_lock(where, spec.key):
        if not force:
            with contextlib.suppress(ModelError):
                found = find_engine(where, spec)
                if found is not None:
                    log.info("engine %s is already cached", found.engine.name)
                    return found
        t0 = time.perf_counter()
        plan = serialize_engine(spec, onnx_bytes_for(onnx_path, precision), manifest.get("input_name", "input"), workspace_gib=workspace_gib)
        build_s = time.perf_counter() - t0
        tmp = tmp_beside(where, f"{spec.key}.engine")
        stmp = tmp_beside(where, f"{spec.key}.json")
        try:
            tmp.write_bytes(plan)
            side = make_sidecar(spec, tmp, build_seconds=round(build_s, 1), onnx_file=onnx_path.name,
                                checkpoint_sha256=manifest.get("checkpoint_sha256"))
            runner = TrtRunner(CacheEntry(engine=tmp, sidecar=side))
            try:
                side["accuracy"] = gate(precision, accuracy(runner, onnx_path, manifest), max_mean_dn)
            finally:
                runner.close()
            stmp.write_text(json.dumps(side, indent=2) + "\n")
            engine = where / f"{spec.key}.engine"
            os.replace(tmp, engine)
            os.replace(stmp, engine.with_suffix(".json"))
        finally:
            tmp.unlink(missing_ok=True)
            stmp.unlink(missing_ok=True)
    log.info("built %s in %.0f s (mean |diff| %.3f DN)", engine.name, build_s, side["accuracy"]["mean_abs_dn"])
    return CacheEntry(engine=engine, sidecar=side)
