"""Thin CUDA runtime helpers for the native TensorRT runner (``cuda-python``, lazy).

TensorRT's Python API takes raw device pointers and a stream handle; this module gets
them from NVIDIA's ``cuda-python`` bindings (``cuda.bindings.runtime``, or the older
``cuda.cudart``), the package TensorRT's own samples use. No PyTorch.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

from ..errors import BackendUnavailable, MissingDependency

log = logging.getLogger(__name__)


def cudart() -> Any:
    """The CUDA runtime bindings module; raises :class:`MissingDependency` if absent."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python < 12.6
        except ImportError as err:
            raise MissingDependency(
                "the native TensorRT runtime needs 'cuda-python'; install it with "
                "`pip install 's2sr-cloud[gpu]'`"
            ) from err
    return runtime


def check(result: Any) -> Any:
    """Unpack a ``cuda-python`` call result ``(err, *values)``; raise on a CUDA error."""
    rt = cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        _, msg = rt.cudaGetErrorString(err)
        raise BackendUnavailable(f"CUDA error {err}: {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    """Number of CUDA devices (0 when there is no driver, no GPU or no ``cuda-python``)."""
    try:
        rt = cudart()
        err, n = rt.cudaGetDeviceCount()
    except (MissingDependency, RuntimeError, OSError) as err:  # no driver library
        log.debug("no CUDA: %s", err)
        return 0
    return int(n) if err == rt.cudaError_t.cudaSuccess else 0


def device_properties(device: int = 0) -> tuple[str, str]:
    """``(name, "major.minor")`` of a CUDA device."""
    props = check(cudart().cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}"


class PinnedBuffer:
    """A page-locked host buffer viewed as a float32 NumPy array (for async copies)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr = int(check(cudart().cudaMallocHost(nbytes)))
        raw = (ctypes.c_byte * nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=np.float32)

    def view(self, shape: tuple[int, ...]) -> np.ndarray:
        """The first ``prod(shape)`` floats as an array of ``shape``."""
        return self.array[: int(np.prod(shape))].reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.array = np.empty(0, np.float32)
            check(cudart().cudaFreeHost(self.ptr))
            self.ptr = 0


class DeviceBuffer:
    """A device allocation of ``nbytes``."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr = int(check(cudart().cudaMalloc(nbytes)))

    def free(self) -> None:
        if self.ptr:
            check(cudart().cudaFree(self.ptr))
            self.ptr = 0


class Stream:
    """A CUDA stream with the async copies the runner needs."""

    def __init__(self) -> None:
        self.handle = check(cudart().cudaStreamCreate())

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def h2d(self, dst: DeviceBuffer, src: PinnedBuffer, nbytes: int) -> None:
        rt = cudart()
        check(rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.handle))

    def d2h(self, dst: PinnedBuffer, src: DeviceBuffer, nbytes: int) -> None:
        rt = cudart()
        check(rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.handle))

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.handle))

    def destroy(self) -> None:
        if self.handle is not None:
            check(cudart().cudaStreamDestroy(self.handle))
            self.handle = None
