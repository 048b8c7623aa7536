"""PyTorch runner for any CUDA GPU (and the CPU fallback), no TensorRT needed.

``--device torch`` runs here on ``cuda:0`` when PyTorch sees a GPU, else on the CPU;
``--device cuda:N`` picks GPU N. On a GPU:

* ``fp16`` / ``bf16`` run the convolutions under ``torch.autocast``; the global residual
  (the upsampled LR bands added to the net's correction) stays float32, because the
  input slice is float32 and PyTorch promotes the sum;
* channels-last memory format and ``cudnn.benchmark`` (cuDNN autotunes each tile shape;
  :func:`~s2sr_cloud.sr.super_resolve` feeds equal tiles, so it tunes once);
* ``fp32`` is strict fp32 (TF32 off), the reference the low precisions are gated against;
* the window path (:mod:`~s2sr_cloud.infer.torch_window`) uploads each band group once per
  block as uint16 from reused pinned buffers, on one CUDA stream per host worker thread, runs
  fixed tile shapes, skips all-nodata tiles and leaves the result on the GPU for the post-steps,
  so host-side work of the other blocks runs while the GPU computes;
* ``compile=True`` (``S2SR_TORCH_COMPILE=1`` through :func:`~s2sr_cloud.infer.select.load_runners`)
  wraps the net in ``torch.compile`` (Triton kernels on CUDA; measured by ``scripts/gpu_fulltile.py``);
* the residual blocks' ×0.1 is folded into their second conv at load
  (:func:`~s2sr_cloud.nets.model.fold_residual_scale`).

Needs the ``train`` extra (torch); no CUDA is needed for the CPU path.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from .base import ModelInfo, RunnerBase, gpu_host_workers

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")


def cuda_devices() -> int:
    """CUDA devices PyTorch sees (0 without torch, a CUDA build or a GPU)."""
    try:
        import torch
    except ImportError:
        return 0
    try:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except (RuntimeError, AssertionError):
        return 0


def resolve_device(device: str) -> str:
    """``torch`` → ``cuda:0`` if PyTorch sees a GPU, else ``cpu``; ``cuda``/``cuda:N`` checked."""
    n = cuda_devices()
    if device == "torch":
        return "cuda:0" if n else "cpu"
    if device == "cuda":
        device = "cuda:0"
    if device.startswith("cuda:"):
        idx = int(device.split(":", 1)[1])
        if idx >= n:
            raise BackendUnavailable(
                f"--device {device}: PyTorch sees {n} CUDA GPU(s) here"
                + ("" if n else " (no CUDA build of torch, no driver or no GPU); use --device cpu")
            )
        return device
    if device == "cpu":
        return "cpu"
    raise BackendUnavailable(f"PyTorch cannot run on {device!r}")


class TorchGpuRunner(RunnerBase):
    """A :class:`~s2sr_cloud.sr.Runner` over a DSen2 module on a CUDA GPU or the CPU.

    Args:
        model: the DSen2 ``nn.Module`` (weights loaded).
        device: ``cpu`` or ``cuda:N``.
        precision: ``fp32``, ``fp16`` or ``bf16`` (low precisions on CUDA only).
        name / checkpoint_sha256: for :class:`ModelInfo`.
        compile: wrap the net in ``torch.compile``.
        device_window: build, tile and assemble each window on the device
            (:meth:`_run_window`; default: on CUDA).
        fixed_tiles: one tile shape for every window and batch (padded; default: on CUDA,
            where cuDNN would re-tune each new shape; see :func:`~s2sr_cloud.sr.tile_plan`).
    """

    array_namespace = "torch"
    """Where :meth:`_run_window` can leave its output (``out="device"``): torch tensors."""

    def __init__(self, model: Any, device: str = "cpu", precision: str = "fp32", *, name: str | None = None,
                 checkpoint_sha256: str | None = None, compile: bool = False, device_window: bool | None = None,
                 fixed_tiles: bool | None = None) -> None:
        import torch

        if precision not in PRECISIONS:
            raise BackendUnavailable(f"PyTorch runs fp32, fp16 or bf16, not {precision!r}")
        cuda = device.startswith("cuda")
        if precision != "fp32" and not cuda:
            raise BackendUnavailable(f"--precision {precision} with PyTorch needs a CUDA GPU; on CPU use fp32, or bf16/int8 (OpenVINO)")
        if cuda and precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise BackendUnavailable(f"{device} has no bf16 support; use --precision fp16")
        self._torch = torch
        self.device = torch.device(device)
        self._dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        from ..nets.model import fold_residual_scale

        fmt = torch.channels_last if cuda else torch.contiguous_format
        # a copy with the blocks' ×0.1 folded into their second conv: one elementwise pass less per block
        self.model = fold_residual_scale(model.eval()).to(self.device, memory_format=fmt)
        self._fmt = fmt
        if cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self._fn = torch.compile(self.model) if compile else self.model
        self.net: str = model.spec.name
        self.out_channels = int(model.spec.out_channels)
        self.fixed_tiles = cuda if fixed_tiles is None else bool(fixed_tiles)
        self.halo: int = int(model.halo)
        self.backend = f"torch-{'cuda' if cuda else 'cpu'}"
        self.precision = precision
        self.tile, self.batch = (1024, 2) if cuda else (544, 1)
        if cuda:
            self.host_workers = gpu_host_workers()
        if cuda if device_window is None else device_window:
            # super_resolve hands the runner the native band windows: upsampling, tiling and
            # assembly run on the device (on by default on CUDA; the CPU keeps the NumPy path)
            self.run_window = self._run_window
        self.inference_time = 0.0
        gpu_name = torch.cuda.get_device_name(self.device) if cuda else None
        self.info = ModelInfo(
            name=name or f"{self.net}_{model.variant.name}", net=self.net, backend=self.backend, precision=precision,
            variant=model.variant.name, checkpoint_sha256=checkpoint_sha256, device_name=gpu_name,
            extra={"torch": torch.__version__, "compiled": bool(compile)},
        )

    def _run_window(self, groups: list[Any], starts: list[tuple[int, int]], th: int, tw: int, halo: int, batch: int,
                    on_tiles: Any = None, out: str = "host") -> Any:
        """The whole window on the device (:func:`~s2sr_cloud.infer.torch_window.run_window`): the
        native-resolution band windows (:class:`~s2sr_cloud.sr.GroupWindow`) go over once per block
        (uint16 when exact), the bilinear upsampling, scaling, tiling and assembly happen on the
        device, and the result stays there (``out="device"``) or comes back as float32 or uint16.

        The same arithmetic as the host path (:func:`~s2sr_cloud.resample.upsample_at`, the
        tile loop of :func:`~s2sr_cloud.sr.super_resolve`), in float32; not yet clipped or masked.
        """
        from .torch_window import run_window

        t0 = time.perf_counter()
        try:
            return run_window(self, groups, starts, th, tw, halo, batch, on_tiles, out, fixed=self.fixed_tiles)
        finally:
            self.inference_time += time.perf_counter() - t0

    def _net(self, x: Any) -> Any:
        """The net on a device batch in this runner's precision (low precisions under autocast); float32 out."""
        if self._dtype is None:
            return self._fn(x).float()
        with self._torch.autocast("cuda", dtype=self._dtype):
            return self._fn(x).float()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        t0 = time.perf_counter()
        with torch.inference_mode():
            if self.device.type != "cuda":
                y = self._fn(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
                out = y.float().numpy()
            else:
                from .torch_window import host_buffers, thread_stream

                bufs, stream = host_buffers(torch, True), thread_stream(torch, self.device)
                host_in = bufs.get("call_in", tuple(x.shape), torch.float32)
                host_in.numpy()[...] = x
                with torch.cuda.stream(stream):
                    y = self._net(host_in.to(self.device, non_blocking=True).contiguous(memory_format=self._fmt))
                    host_out = bufs.get("call_out", tuple(y.shape), torch.float32)
                    host_out.copy_(y, non_blocking=True)
                stream.synchronize()
                out = host_out.numpy().copy()
        self.inference_time += time.perf_counter() - t0
        return out

    def close(self) -> None:
        from .torch_window import release_thread

        release_thread()
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()
