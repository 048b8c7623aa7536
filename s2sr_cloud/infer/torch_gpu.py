"""PyTorch runner for any CUDA GPU (and the CPU fallback), no TensorRT needed.

``--device torch`` runs here on ``cuda:0`` when PyTorch sees a GPU, else on the CPU;
``--device cuda:N`` picks GPU N. On a GPU:

* ``fp16`` / ``bf16`` run the convolutions under ``torch.autocast``; the global residual
  (the upsampled LR bands added to the net's correction) stays float32, because the
  input slice is float32 and PyTorch promotes the sum;
* channels-last memory format and ``cudnn.benchmark`` (cuDNN autotunes each tile shape;
  :func:`~s2sr_cloud.sr.super_resolve` feeds equal tiles, so it tunes once);
* ``fp32`` is strict fp32 (TF32 off), the reference the low precisions are gated against;
* inputs are copied from a pinned host buffer with a non-blocking copy and outputs come
  back the same way, so host-side work of the next block (reads, upsampling, in the
  block-overlap threads of :mod:`~s2sr_cloud.infer.overlap`) runs while the GPU computes;
* ``compile=True`` wraps the net in ``torch.compile`` (Triton kernels; measured by
  ``scripts/gpu_bench.py`` — worth it only for long runs).

Needs the ``train`` extra (torch); no CUDA is needed for the CPU path.
"""

from __future__ import annotations

import contextlib
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
    """

    def __init__(self, model: Any, device: str = "cpu", precision: str = "fp32", *, name: str | None = None,
                 checkpoint_sha256: str | None = None, compile: bool = False, device_window: bool | None = None) -> None:
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
        fmt = torch.channels_last if cuda else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=fmt)
        self._fmt = fmt
        if cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            self._stream = torch.cuda.Stream(self.device)
        self._fn = torch.compile(self.model) if compile else self.model
        self._pinned: dict[str, Any] = {}
        self.net: str = model.spec.name
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
                    on_tiles: Any = None) -> np.ndarray:
        """The whole window on the device: the native-resolution band windows
        (:class:`~s2sr_cloud.sr.GroupWindow`) go over once, the bilinear upsampling, scaling,
        tiling and assembly happen on the device, and only the result comes back.

        The same arithmetic as the host path (:func:`~s2sr_cloud.resample.upsample_at`, the
        tile loop of :func:`~s2sr_cloud.sr.super_resolve`), in float32; returns float32
        (C_out, h, w) DN, not yet clipped or masked.
        """
        from ..bands import SCALE
        from ..ops.resample import _axis

        torch = self._torch
        dev = self.device
        cuda = dev.type == "cuda"
        t0 = time.perf_counter()

        def to_dev(a: np.ndarray, dtype: Any = None) -> Any:
            t = torch.from_numpy(np.ascontiguousarray(a))
            if dtype is not None:
                t = t.to(dtype)
            return t.pin_memory().to(dev, non_blocking=True) if cuda else t

        with torch.inference_mode(), torch.cuda.stream(self._stream) if cuda else contextlib.nullcontext():
            parts = []
            for g in groups:
                w = to_dev(g.window, torch.float32)
                if g.factor == 1:
                    rows = to_dev(g.rows10 - g.origin[0])
                    cols = to_dev(g.cols10 - g.origin[1])
                    parts.append(w.index_select(1, rows).index_select(2, cols))
                    continue
                r0, r1, wr = _axis(g.rows10, g.factor, g.lr_shape[0])
                c0, c1, wc = _axis(g.cols10, g.factor, g.lr_shape[1])
                r0, r1, c0, c1 = (to_dev(a - o) for a, o in ((r0, g.origin[0]), (r1, g.origin[0]), (c0, g.origin[1]), (c1, g.origin[1])))
                wr_, wc_ = to_dev(wr)[None, :, None], to_dev(wc)[None, None, :]
                tmp = w.index_select(1, r0) * (1.0 - wr_) + w.index_select(1, r1) * wr_
                parts.append(tmp.index_select(2, c0) * (1.0 - wc_) + tmp.index_select(2, c1) * wc_)
            x = torch.cat(parts, 0)
            x /= SCALE
            h, w_ = x.shape[1] - 2 * halo, x.shape[2] - 2 * halo
            res = None
            for i in range(0, len(starts), batch):
                chunk = starts[i : i + batch]
                xb = torch.stack([x[:, r : r + th + 2 * halo, c : c + tw + 2 * halo] for r, c in chunk])
                y = self._net(xb.contiguous(memory_format=self._fmt))
                if res is None:
                    res = torch.zeros((y.shape[1], h, w_), dtype=torch.float32, device=dev)
                for (r, c), yy in zip(chunk, y, strict=True):
                    res[:, r : r + th, c : c + tw] = yy[:, halo : halo + th, halo : halo + tw]
                if on_tiles is not None:
                    on_tiles(i + len(chunk))
            assert res is not None
            res *= SCALE
            out = res.cpu().numpy()
        if cuda:
            self._stream.synchronize()
        self.inference_time += time.perf_counter() - t0
        return out

    def _net(self, x: Any) -> Any:
        """The net on a device batch in this runner's precision (low precisions under autocast); float32 out."""
        if self._dtype is None:
            return self._fn(x).float()
        with self._torch.autocast("cuda", dtype=self._dtype):
            return self._fn(x).float()

    def _pin(self, key: str, shape: tuple[int, ...]) -> Any:
        buf = self._pinned.get(key)
        if buf is None or tuple(buf.shape) != shape:
            buf = self._torch.empty(shape, dtype=self._torch.float32, pin_memory=True)
            self._pinned[key] = buf
        return buf

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        t0 = time.perf_counter()
        with torch.inference_mode():
            if self.device.type != "cuda":
                y = self._fn(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
                out = y.float().numpy()
            else:
                host_in = self._pin("in", tuple(x.shape))
                host_in.numpy()[...] = x
                with torch.cuda.stream(self._stream):
                    y = self._net(host_in.to(self.device, non_blocking=True).contiguous(memory_format=self._fmt))
                    host_out = self._pin("out", tuple(y.shape))
                    host_out.copy_(y, non_blocking=True)
                self._stream.synchronize()
                out = host_out.numpy().copy()
        self.inference_time += time.perf_counter() - t0
        return out

    def close(self) -> None:
        self._pinned.clear()
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()
