"""The PyTorch runners' window path: a whole block window built, tiled and assembled on the device.

What a GPU needs to stay busy, on the CPU too (torch CPU is the "device" of the tests):

* each band group goes over **once per block**, as **uint16** when its values are whole DN in
  ``[0, 65535]`` (half the bytes of float32; converted to float32 on the device), else as float32;
  the group's 10 m stack (upsampled on the device) is kept for the block, so the 60 m net reuses
  what the 20 m net uploaded (:class:`_GroupCache`, per host thread);
* the host staging buffers are **reused** per host thread and **pinned** only where CUDA is
  available (:class:`_HostBuffers`), so copies are asynchronous DMA without a pin per call;
* **one CUDA stream per host worker thread** (:func:`thread_stream`, a ``threading.local``), so the
  block workers' uploads, nets and downloads overlap on the GPU;
* **fixed shapes**: with ``fixed`` (the CUDA default) a window smaller than the tile is zero-padded
  to the tile and the last batch is filled up to the batch size, so cuDNN tunes one shape per net;
  the padding lies beyond the halo of every kept pixel, so it changes no output value;
* the tiles :func:`~s2sr_cloud.sr.super_resolve` passes are only those not all nodata;
* the result stays on the device (``out="device"``), or comes back as float32 (``"host"``) or
  as clipped, rounded uint16 (``"uint16"``: half the bytes over the bus).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..bands import SCALE

OUTS = ("host", "device", "uint16")

_local = threading.local()


def thread_stream(torch: Any, device: Any) -> Any:
    """This host thread's CUDA stream on ``device`` (made on first use); None off CUDA."""
    if device.type != "cuda":
        return None
    streams = _local.__dict__.setdefault("streams", {})
    s = streams.get(str(device))
    if s is None:
        s = streams[str(device)] = torch.cuda.Stream(device)
    return s


class _HostBuffers:
    """Per-thread staging buffers, grown as needed and reused; pinned when ``pinned``."""

    def __init__(self, torch: Any, pinned: bool) -> None:
        self.torch, self.pinned = torch, pinned
        self.bufs: dict[str, Any] = {}

    def get(self, key: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """A tensor of ``shape``/``dtype`` viewing the buffer ``key`` (its old contents are garbage)."""
        n = int(np.prod(shape))
        nbytes = n * dtype.itemsize
        buf = self.bufs.get(key)
        if buf is None or buf.numel() < nbytes:
            buf = self.bufs[key] = self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, pin_memory=self.pinned)
        return buf[:nbytes].view(dtype).view(shape)


def host_buffers(torch: Any, cuda: bool) -> _HostBuffers:
    """This thread's staging buffers (pinned ones for CUDA, plain ones for the CPU)."""
    key = "pinned" if cuda else "plain"
    bufs = _local.__dict__.setdefault("host", {})
    if key not in bufs:
        bufs[key] = _HostBuffers(torch, cuda)
    return bufs[key]  # type: ignore[no-any-return]


class _GroupCache:
    """The 10 m stacks of the band groups of the block this thread works on, per device.

    Keyed by the :class:`~s2sr_cloud.sr.GroupWindow` objects themselves (held, so their ids stay
    theirs); a call with other groups drops the previous block's."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, int], tuple[Any, Any]] = {}

    def get(self, dev: Any, groups: Sequence[Any], make: Callable[[Any], Any]) -> list[Any]:
        keep = {(str(dev), id(g)) for g in groups}
        for k in [k for k in self.items if k[0] == str(dev) and k not in keep]:
            del self.items[k]
        out = []
        for g in groups:
            hit = self.items.get((str(dev), id(g)))
            if hit is None or hit[0] is not g:
                hit = self.items[(str(dev), id(g))] = (g, make(g))
            out.append(hit[1])
        return out


def group_cache() -> _GroupCache:
    if not hasattr(_local, "groups"):
        _local.groups = _GroupCache()
    return _local.groups  # type: ignore[no-any-return]


def release_thread() -> None:
    """Drop this thread's cached group stacks and staging buffers (streams are kept)."""
    _local.__dict__.pop("groups", None)
    _local.__dict__.pop("host", None)


def as_uint16(window: np.ndarray, into: np.ndarray) -> bool:
    """Write ``window`` (float DN) into the uint16 array ``into``; True if that was exact (whole
    values in ``[0, 65535]``: anything else reads back different), else ``into`` is garbage."""
    with np.errstate(invalid="ignore", over="ignore"):
        np.copyto(into, window, casting="unsafe")
    return bool(np.array_equal(into, window))


def upload(torch: Any, window: np.ndarray, dev: Any, bufs: _HostBuffers, key: str) -> Any:
    """``window`` (C, h, w) on ``dev`` as float32: over the bus as uint16 when exact, else float32."""
    shape = tuple(window.shape)
    u16 = bufs.get(key, shape, torch.int16)  # uint16 bits: torch's int16 converts and copies everywhere
    if as_uint16(window, u16.numpy().view(np.uint16)):
        t = u16.to(dev, non_blocking=True)
        return t.to(torch.int32).bitwise_and_(0xFFFF).to(torch.float32)
    f32 = bufs.get(key, shape, torch.float32)
    f32.numpy()[...] = window
    return f32.to(dev, non_blocking=True)


def group_stack(torch: Any, g: Any, dev: Any, bufs: _HostBuffers, key: str) -> Any:
    """Group ``g`` (:class:`~s2sr_cloud.sr.GroupWindow`) on its 10 m indices, float32 DN on ``dev``:
    the arithmetic of :func:`~s2sr_cloud.ops.upsample_at` (bilinear, half-pixel centres)."""
    from ..ops.resample import _axis

    def idx(a: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dev, non_blocking=True)

    w = upload(torch, g.window, dev, bufs, key)
    if g.factor == 1:
        return w.index_select(1, idx(g.rows10 - g.origin[0])).index_select(2, idx(g.cols10 - g.origin[1]))
    r0, r1, wr = _axis(g.rows10, g.factor, g.lr_shape[0])
    c0, c1, wc = _axis(g.cols10, g.factor, g.lr_shape[1])
    r0, r1 = idx(r0 - g.origin[0]), idx(r1 - g.origin[0])
    c0, c1 = idx(c0 - g.origin[1]), idx(c1 - g.origin[1])
    wr_, wc_ = idx(wr)[None, :, None], idx(wc)[None, None, :]
    tmp = w.index_select(1, r0) * (1.0 - wr_) + w.index_select(1, r1) * wr_
    return tmp.index_select(2, c0) * (1.0 - wc_) + tmp.index_select(2, c1) * wc_


def run_window(
    runner: Any, groups: Sequence[Any], starts: Sequence[tuple[int, int]], th: int, tw: int, halo: int, batch: int,
    on_tiles: Callable[[int], None] | None = None, out: str = "host", *, fixed: bool = False,
) -> Any:
    """The window of ``groups`` through ``runner``'s net (``runner._net``, ``runner._fmt``, ``runner.device``)
    at the tiles ``starts`` (``th`` × ``tw``, output pixels; the window's size is the groups' 10 m
    size less the halo), float32 DN (C_out, h, w), not clipped or masked (``out="uint16"``: clipped
    to [1, 65535] and rounded, half to even); pixels of tiles not in ``starts`` are 0."""
    if out not in OUTS:
        raise ValueError(f"out must be one of {OUTS}, not {out!r}")
    torch = runner._torch
    dev = runner.device
    stream = thread_stream(torch, dev)
    ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        res = _window(torch, runner, dev, groups, starts, th, tw, halo, batch, on_tiles, out, fixed)
        if stream is not None:
            stream.synchronize()  # the staging buffers are free again for this thread's next call
    if out == "device" and stream is not None:
        res.record_stream(torch.cuda.current_stream(dev))  # used on the caller's stream from here
    return res


def _window(torch: Any, runner: Any, dev: Any, groups: Sequence[Any], starts: Sequence[tuple[int, int]], th: int,
            tw: int, halo: int, batch: int, on_tiles: Callable[[int], None] | None, out: str, fixed: bool) -> Any:
    cuda = dev.type == "cuda"
    bufs = host_buffers(torch, cuda)
    # one staging buffer per group (factor): the asynchronous uploads of one call never share one
    stacks = group_cache().get(dev, groups, lambda g: group_stack(torch, g, dev, bufs, f"in{g.factor}"))
    x = torch.cat(stacks, 0) if len(stacks) > 1 else stacks[0].clone()
    x /= SCALE
    h, w = x.shape[1] - 2 * halo, x.shape[2] - 2 * halo
    ph, pw = max(0, th - h), max(0, tw - w)
    if ph or pw:  # one tile padded to the fixed shape; beyond every kept pixel's halo
        x = torch.nn.functional.pad(x, (0, pw, 0, ph))
    res = None
    xb = None
    n_b = min(batch, len(starts)) if not fixed else batch
    for i in range(0, len(starts), batch):
        chunk = list(starts[i : i + batch])
        if xb is None:
            xb = torch.zeros((n_b, x.shape[0], th + 2 * halo, tw + 2 * halo), dtype=torch.float32, device=dev)
            xb = xb.contiguous(memory_format=runner._fmt)
        for k, (r, c) in enumerate(chunk):
            xb[k].copy_(x[:, r : r + th + 2 * halo, c : c + tw + 2 * halo])
        y = runner._net(xb if fixed else xb[: len(chunk)])  # fixed: a short last batch keeps its shape
        if res is None:
            res = torch.zeros((y.shape[1], h + ph, w + pw), dtype=torch.float32, device=dev)
        for (r, c), yy in zip(chunk, y, strict=False):
            res[:, r : r + th, c : c + tw] = yy[:, halo : halo + th, halo : halo + tw]
        if on_tiles is not None:
            on_tiles(i + len(chunk))
    if res is None:  # no tile to run: all nodata
        c_out = int(getattr(runner, "out_channels", 0) or 0)
        res = torch.zeros((c_out, h, w), dtype=torch.float32, device=dev)
    res = res[:, :h, :w]
    res *= SCALE
    if out == "device":
        return res
    if out == "uint16":
        q = torch.round(torch.clamp(res, 1.0, 65535.0)).to(torch.int32).to(torch.int16)
        host = bufs.get("out16", tuple(q.shape), torch.int16)
        host.copy_(q, non_blocking=cuda)
        _sync(torch, dev)
        return host.numpy().view(np.uint16).copy()
    host = bufs.get("out32", tuple(res.shape), torch.float32)
    host.copy_(res, non_blocking=cuda)
    _sync(torch, dev)
    return host.numpy().copy()


def _sync(torch: Any, dev: Any) -> None:
    """Wait for this thread's stream before the host reads a buffer copied into asynchronously."""
    s = thread_stream(torch, dev)
    if s is not None:
        s.synchronize()
