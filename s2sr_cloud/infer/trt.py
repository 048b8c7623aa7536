"""Native TensorRT runtime: engines from the cache, run with pinned host buffers, and, where the
GPU image's PyTorch is present, a device-resident window path.

``tensorrt`` and ``cuda-python`` are imported when first needed (the ``gpu`` extra). The plain
call path (NumPy tiles in, NumPy tiles out) involves no PyTorch. With a CUDA build of torch
importable, :meth:`TrtRunner.run_window` runs the window path of
:mod:`~s2sr_cloud.infer.torch_window` (uint16 band groups over once per block, upsampling, tiling
and assembly on the device, reused pinned buffers, one CUDA stream per host worker, fixed tile
shapes) with the engine as the net: the batch tensors' device pointers are bound to the engine's
input and output (no copy), on the calling thread's stream, with one execution context per host
thread. The tiles fed are always ``(max_batch, C, tile + 2·halo, tile + 2·halo)``: the profile's
``opt`` shape, the one TensorRT tuned its kernels for. The selection hook (a cached engine, or one built now) is
:func:`~s2sr_cloud.infer.trt_select.native_runner_if_cached`, above this module and the
builder (:mod:`.trt_build`), so the two do not import each other.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailable, EngineMismatch, MissingDependency
from . import cuda
from .base import ModelInfo, RunnerBase, gpu_host_workers
from .engine_cache import (
    CacheEntry,
    EngineSpec,
    GpuInfo,
    verify_entry,
)

log = logging.getLogger(__name__)

_LOGGER: Any = None


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or None when it is not installed or cannot load."""
    try:
        import tensorrt
    except (ImportError, OSError) as err:  # OSError: libnvinfer missing
        log.debug("tensorrt unavailable: %s", err)
        return None
    return tensorrt


def require_tensorrt() -> Any:
    """The ``tensorrt`` module; raises :class:`MissingDependency` naming the extra."""
    trt = import_tensorrt()
    if trt is None:
        raise MissingDependency(
            "this needs NVIDIA TensorRT; install it with `pip install 's2sr-cloud[gpu]'` "
            "(or use the GPU container image)"
        )
    return trt


def trt_logger(trt: Any) -> Any:
    """A TensorRT logger that forwards to :mod:`logging` (one per process)."""
    global _LOGGER
    if _LOGGER is None:

        class _Forward(trt.ILogger):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                sev = trt.ILogger.Severity
                level = {
                    sev.INTERNAL_ERROR: logging.ERROR, sev.ERROR: logging.ERROR,
                    sev.WARNING: logging.WARNING, sev.INFO: logging.DEBUG,
                }.get(severity, logging.DEBUG)
                logging.getLogger("tensorrt").log(level, "%s", msg)

        _LOGGER = _Forward()
    return _LOGGER


def current_gpu(device: int = 0) -> GpuInfo | None:
    """Name and compute capability of CUDA device ``device``, or None without a GPU."""
    try:
        if cuda.device_count() <= device:
            return None
        name, cc = cuda.device_properties(device)
    except (MissingDependency, BackendUnavailable) as err:
        log.debug("no usable GPU: %s", err)
        return None
    return GpuInfo(name=name, compute_capability=cc)


def _torch_cuda() -> Any:
    """torch when it is a CUDA build that sees a GPU (the GPU image), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


class TrtRunner(RunnerBase):
    """A :class:`~s2sr_cloud.sr.Runner` over a serialized TensorRT engine.

    Host buffers are page-locked and sized for the engine's largest profile shape; a
    batch larger than the profile's is run in chunks. Inputs whose spatial size lies
    outside the profile raise :class:`EngineMismatch` naming the tile to build for.

    Args:
        entry: the cache entry (engine file + sidecar), verified by the caller.
    """

    def __init__(self, entry: CacheEntry) -> None:
        trt = require_tensorrt()
        self.entry = entry
        meta = entry.sidecar
        self.profile = entry.profile
        self.net: str = meta["net"]
        self.halo: int = self.profile.halo
        self.precision: str = meta["precision"]
        self.backend = f"tensorrt-{self.precision}"
        self.tile = self.profile.tile
        self.host_workers = gpu_host_workers()
        self.max_batch = self.profile.max_batch
        self.batch = self.max_batch
        self.inference_time = 0.0
        self.info = ModelInfo(
            name=meta["name"], net=self.net, backend=self.backend, precision=self.precision, variant=meta.get("variant"),
            onnx_sha256=meta["onnx_sha256"], checkpoint_sha256=meta.get("checkpoint_sha256"),
            extra={"engine": entry.engine.name, "tensorrt_version": meta["tensorrt_version"], "gpu": meta["gpu_name"]},
        )
        self._runtime = trt.Runtime(trt_logger(trt))
        try:
            self._engine = self._runtime.deserialize_cuda_engine(entry.engine.read_bytes())
        except (RuntimeError, TypeError) as err:  # some versions raise instead of returning None
            log.debug("deserialize failed: %s", err)
            self._engine = None
        if self._engine is None:
            raise EngineMismatch(
                f"TensorRT {trt.__version__} cannot load {entry.engine.name} (built with TensorRT "
                f"{meta['tensorrt_version']} for {meta['gpu_name']}); rebuild it with `s2sr engine build`"
            )
        self._context = self._engine.create_execution_context()
        self._in, self._out = self._io_names(trt)
        self.out_channels = int(self._engine.get_tensor_shape(self._out)[1])
        self._alloc()
        self._contexts: dict[int, Any] = {}
        self._lock = threading.Lock()
        torch = _torch_cuda()
        if torch is not None:  # the device-resident window path (see the module docstring)
            self._torch = torch
            self.device = torch.device("cuda", 0)
            self._fmt = torch.contiguous_format
            self.fixed_tiles = True
            self.array_namespace = "torch"
            self.run_window = self._run_window

    def _io_names(self, trt: Any) -> tuple[str, str]:
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        ins = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or len(outs) != 1:
            raise EngineMismatch(f"{self.entry.engine.name}: expected 1 input and 1 output, got {ins} / {outs}")
        for n in (ins[0], outs[0]):
            if self._engine.get_tensor_dtype(n) != trt.float32:
                raise EngineMismatch(f"{self.entry.engine.name}: tensor {n} is {self._engine.get_tensor_dtype(n)}, expected float32")
        return ins[0], outs[0]

    def _alloc(self) -> None:
        side, b = self.profile.max_side, self.max_batch
        n_in = b * self.profile.channels * side * side * 4
        n_out = b * self.out_channels * side * side * 4
        self._stream = cuda.Stream()
        self._h_in, self._h_out = cuda.PinnedBuffer(n_in), cuda.PinnedBuffer(n_out)
        self._d_in, self._d_out = cuda.DeviceBuffer(n_in), cuda.DeviceBuffer(n_out)
        self._context.set_tensor_address(self._in, self._d_in.ptr)
        self._context.set_tensor_address(self._out, self._d_out.ptr)

    def _run_chunk(self, x: np.ndarray) -> np.ndarray:
        n, _, h, w = x.shape
        self._h_in.view(x.shape)[...] = x
        if not self._context.set_input_shape(self._in, x.shape):
            raise EngineMismatch(f"{self.entry.engine.name} rejected input shape {x.shape}")
        out_shape = (n, self.out_channels, h, w)
        self._stream.h2d(self._d_in, self._h_in, x.nbytes)
        if not self._context.execute_async_v3(self._stream.ptr):
            raise BackendUnavailable(f"TensorRT failed to run {self.entry.engine.name}")
        nbytes = int(np.prod(out_shape)) * 4
        self._stream.d2h(self._h_out, self._d_out, nbytes)
        self._stream.synchronize()
        return self._h_out.view(out_shape).copy()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Scaled (N, C_in, h, w) float32 → scaled (N, C_out, h, w) float32."""
        if not self.profile.covers(x.shape):
            raise EngineMismatch(
                f"input {tuple(x.shape)} is outside engine {self.entry.engine.name}'s profile "
                f"({self.profile.channels} channels, sides {1 + 2 * self.halo}..{self.profile.max_side}); "
                f"use --tile {self.tile} or less, or build an engine with `s2sr engine build --tile N`"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        t0 = time.perf_counter()
        parts = [self._run_chunk(x[i : i + self.max_batch]) for i in range(0, x.shape[0], self.max_batch)]
        self.inference_time += time.perf_counter() - t0
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _thread_context(self) -> Any:
        """This host thread's execution context (tensor addresses and shapes are per context)."""
        key = threading.get_ident()
        ctx = self._contexts.get(key)
        if ctx is None:
            with self._lock:
                ctx = self._contexts[key] = self._engine.create_execution_context()
        return ctx

    def _net(self, x: Any) -> Any:
        """The engine on a torch CUDA batch ``x`` (N ≤ max_batch, C_in, S, S), float32 contiguous;
        returns a new torch tensor (N, C_out, S, S) computed on the current stream."""
        torch = self._torch
        if x.shape[0] > self.max_batch or not self.profile.covers(tuple(x.shape)):
            raise EngineMismatch(f"window batch {tuple(x.shape)} is outside engine {self.entry.engine.name}'s profile")
        x = x.contiguous()
        y = torch.empty((x.shape[0], self.out_channels, x.shape[2], x.shape[3]), dtype=torch.float32, device=x.device)
        ctx = self._thread_context()
        if not ctx.set_input_shape(self._in, tuple(x.shape)):
            raise EngineMismatch(f"{self.entry.engine.name} rejected input shape {tuple(x.shape)}")
        ctx.set_tensor_address(self._in, x.data_ptr())
        ctx.set_tensor_address(self._out, y.data_ptr())
        if not ctx.execute_async_v3(torch.cuda.current_stream(x.device).cuda_stream):
            raise BackendUnavailable(f"TensorRT failed to run {self.entry.engine.name}")
        return y

    def _run_window(self, groups: list[Any], starts: list[tuple[int, int]], th: int, tw: int, halo: int, batch: int,
                    on_tiles: Any = None, out: str = "host") -> Any:
        """The whole window on the device (:func:`~s2sr_cloud.infer.torch_window.run_window`), the
        engine as the net; ``batch`` is capped at the profile's ``max_batch``."""
        from .torch_window import run_window

        t0 = time.perf_counter()
        try:
            return run_window(self, groups, starts, th, tw, halo, min(batch, self.max_batch), on_tiles, out, fixed=True)
        finally:
            self.inference_time += time.perf_counter() - t0

    def close(self) -> None:
        """Free the CUDA buffers and the stream (also done when garbage collected)."""
        for name in ("_h_in", "_h_out", "_d_in", "_d_out"):
            buf = getattr(self, name, None)
            if buf is not None:
                buf.free()
                setattr(self, name, None)  # closing twice frees nothing twice
        stream = getattr(self, "_stream", None)
        if stream is not None:
            stream.destroy()
            self._stream = None
        getattr(self, "_contexts", {}).clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: CUDA may be gone
            log.debug("TrtRunner cleanup failed", exc_info=True)


def engine_spec_here(manifest: dict[str, Any], precision: str, **profile: int) -> EngineSpec | None:
    """The engine spec for ``manifest`` on this machine, or None without TensorRT or a GPU."""
    trt = import_tensorrt()
    if trt is None:
        return None
    gpu = current_gpu()
    if gpu is None:
        return None
    return EngineSpec.from_manifest(manifest, gpu, trt.__version__, precision, **profile)


def load_engine(path: str | os.PathLike[str]) -> TrtRunner:
    """Load an explicitly named engine file, refusing it if foreign or tampered with.

    Raises:
        EngineMismatch: the sidecar is missing, does not match the file, or names
            another GPU or TensorRT version.
        BackendUnavailable: no GPU / TensorRT here.
    """
    from .engine_cache import read_sidecar, spec_for_entry

    engine = Path(path)
    entry = CacheEntry(engine=engine, sidecar=read_sidecar(engine))
    trt = import_tensorrt()
    gpu = current_gpu() if trt is not None else None
    if gpu is None:
        raise BackendUnavailable("a TensorRT engine needs an NVIDIA GPU and the `gpu` extra here")
    verify_entry(entry, spec_for_entry(entry, gpu, trt.__version__))
    return TrtRunner(entry)
