"""The compute core: seamless tiled DSen2 super-resolution of a scene window.

Pure NumPy given a :class:`Runner` (ONNX Runtime, TensorRT or PyTorch behind the same
call) and a :class:`SceneSource` that reads band windows at native resolution.

How seamlessness is guaranteed. The *whole-image result* is defined as the net applied
once to the upsampled input stack symmetrically padded by ``halo`` pixels at the true
image border, then cropped. A tile of that result only depends on the input within
``receptive radius`` pixels of it, so each tile is computed from an extended window of
``tile + 2·halo`` pixels (``halo`` ≥ receptive radius) whose 10 m indices are mapped
into the image by symmetric reflection, and whose LR bands are upsampled at exactly
those indices (:func:`~s2sr_cloud.resample.upsample_at`). Tiles are equal-sized (the
last row/column of tiles is shifted back inside the window), so they batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from . import stop
from .bands import (
    BANDS_20M,
    BANDS_60M,
    NET_INDEX_10M,
    NETS,
    NODATA,
    SCALE,
    SR_BANDS,
    NetSpec,
)
from .errors import ShapeMismatch
from .grid import Window, check_shapes, iter_blocks
from .ops import lr_range, namespace, reflect_index, upsample_at
from .ops.xp import asarray_like, to_numpy
from .timing import stage

log = logging.getLogger(__name__)


@runtime_checkable
class Runner(Protocol):
    """One net behind an inference backend.

    ``__call__`` maps scaled input (N, C_in, h, w) float32 to scaled output
    (N, C_out, h, w) float32; the global residual is part of the net.
    """

    net: str
    """``net20`` or ``net60``."""
    halo: int
    """Receptive-field radius of the net in 10 m pixels."""
    backend: str
    """Backend name, e.g. ``onnxruntime-cpu``."""

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


def model_info(runner: Runner) -> dict[str, Any]:
    """A runner's ``model_info`` dict (name, variant, sha256s, precision …) plus its backend.

    Runners that carry no ``model_info`` (e.g. test doubles) are described by net and halo.
    """
    info = getattr(runner, "model_info", None)
    out = dict(info) if isinstance(info, Mapping) else {"name": f"{runner.net}_{type(runner).__name__}", "halo": runner.halo}
    out.setdefault("backend", runner.backend)
    return out


class SceneSource(Protocol):
    """Reads band windows of a scene at native resolution.

    ``read(res, rows, cols)`` returns float32 (C, len(rows), len(cols)) of the bands of the
    resolution group ``res`` (10, 20, 60; bands in spectral order, DN on the pre-04.00
    scale, 0 = nodata) for the half-open row/col ranges given in that group's pixels.
    """

    @property
    def shape10(self) -> tuple[int, int]: ...

    def read(self, res: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray: ...


@dataclass
class ArraySource:
    """A scene held in memory as ``b10`` (4, H, W), ``b20`` (6, H/2, W/2), ``b60`` (2, H/6, W/6).

    Arrays are DN on the pre-04.00 scale (harmonise first), any numeric dtype.
    """

    b10: np.ndarray
    b20: np.ndarray
    b60: np.ndarray

    def __post_init__(self) -> None:
        if self.b10.ndim != 3 or self.b10.shape[0] != 4:
            raise ShapeMismatch(f"b10 must be (4, H, W), got {self.b10.shape}")
        if self.b20.ndim != 3 or self.b20.shape[0] != 6:
            raise ShapeMismatch(f"b20 must be (6, H/2, W/2), got {self.b20.shape}")
        if self.b60.ndim != 3 or self.b60.shape[0] != 2:
            raise ShapeMismatch(f"b60 must be (2, H/6, W/6), got {self.b60.shape}")
        check_shapes(self.b10.shape[1:], self.b20.shape[1:], self.b60.shape[1:])

    @property
    def shape10(self) -> tuple[int, int]:
        return (int(self.b10.shape[1]), int(self.b10.shape[2]))

    def read(self, res: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        arr = {10: self.b10, 20: self.b20, 60: self.b60}[res]
        return arr[:, rows[0] : rows[1], cols[0] : cols[1]].astype(np.float32)


#: Tile side (10 m pixels, halo excluded) and tiles per call when neither the caller nor the
#: runner says: big enough that the recomputed halo stays small ((544 + 28)² / 544² ≈ 1.1).
DEFAULT_TILE = 544
DEFAULT_BATCH = 1


def runner_tiling(runners: Mapping[str, Runner], tile: int | None = None, batch: int | None = None) -> tuple[int, int]:
    """``(tile, batch)``: the given values, else the smallest the runners prefer.

    A runner may carry ``tile`` / ``batch`` attributes (its backend's sweet spot: big tiles
    with one per call on CPU, where batching only multiplies memory; batches on GPUs).
    """
    if tile is None:
        tile = min((int(getattr(r, "tile", DEFAULT_TILE) or DEFAULT_TILE) for r in runners.values()), default=DEFAULT_TILE)
    if batch is None:
        batch = min((int(getattr(r, "batch", DEFAULT_BATCH) or DEFAULT_BATCH) for r in runners.values()), default=DEFAULT_BATCH)
    if tile < 1 or batch < 1:
        raise ValueError(f"tile and batch must be >= 1, got {tile} and {batch}")
    return tile, batch


def balanced_tile(n: int, tile: int) -> int:
    """The tile side ≤ ``tile`` that covers ``n`` pixels with the fewest, equal tiles.

    ``ceil(n / ceil(n / tile))``: 1080 px with ``tile`` 512 → 3 tiles of 360 instead of
    512, 512 and a 512 shifted back over 456 already computed pixels.
    """
    if tile >= n:
        return n
    k = -(-n // tile)
    return -(-n // k)


def tile_starts(n: int, tile: int) -> list[int]:
    """Starts of equal tiles covering ``[0, n)``; the last one is shifted back to end at ``n``."""
    if tile >= n:
        return [0]
    starts = list(range(0, n - tile, tile))
    starts.append(n - tile)
    return starts


@dataclass(frozen=True, slots=True)
class GroupWindow:
    """What a band group contributes to a net input, before any resampling: the native-resolution
    window read from the source and where the 10 m indices fall in it.

    ``factor`` 1 (10 m bands): the input is ``window[:, rows10 - origin[0]][:, :, cols10 - origin[1]]``;
    ``factor`` 2 or 6: :func:`~s2sr_cloud.resample.upsample_at` of the window at ``rows10`` × ``cols10``.
    :meth:`stack` does this on the host; a runner with ``run_window`` does it on its device.
    """

    factor: int
    window: np.ndarray
    rows10: np.ndarray
    cols10: np.ndarray
    origin: tuple[int, int]
    lr_shape: tuple[int, int]

    def stack(self) -> np.ndarray:
        """The group on the 10 m indices (float32 DN), on the host."""
        if self.factor == 1:
            return self.window[:, self.rows10 - self.origin[0]][:, :, self.cols10 - self.origin[1]]
        return upsample_at(self.window, self.factor, self.rows10, self.cols10, origin=self.origin, lr_shape=self.lr_shape)


def _read_group(source: SceneSource, res: int, rows10: np.ndarray, cols10: np.ndarray, shape10: tuple[int, int]) -> GroupWindow:
    """Read the native window of group ``res`` that the 10 m indices ``rows10`` × ``cols10`` need."""
    if res == 10:
        r0, r1 = int(rows10.min()), int(rows10.max()) + 1
        c0, c1 = int(cols10.min()), int(cols10.max()) + 1
        return GroupWindow(1, source.read(10, (r0, r1), (c0, c1)), rows10, cols10, (r0, c0), shape10)
    s = res // 10
    lr_shape = (shape10[0] // s, shape10[1] // s)
    lr_rows = lr_range(rows10, s, lr_shape[0])
    lr_cols = lr_range(cols10, s, lr_shape[1])
    win = source.read(res, lr_rows, lr_cols)
    return GroupWindow(s, win, rows10, cols10, (lr_rows[0], lr_cols[0]), lr_shape)


def _mask_from_reads(reads: Mapping[int, GroupWindow], window: Window) -> np.ndarray:
    """True where the output is nodata: any input band is 0 at (or above) the pixel — from the group
    windows already read for the nets (they cover the window and its halo), so nothing is read twice."""
    rows = np.arange(window.row, window.row + window.height)
    cols = np.arange(window.col, window.col + window.width)
    mask = np.zeros((window.height, window.width), dtype=bool)
    for res in sorted(reads):
        g = reads[res]
        bad = np.any(g.window == NODATA, axis=0)
        mask |= bad[(rows // g.factor - g.origin[0])[:, None], (cols // g.factor - g.origin[1])[None, :]]
    return mask


def _live_tiles(starts: list[tuple[int, int]], th: int, tw: int, mask: np.ndarray) -> list[tuple[int, int]]:
    """The tiles whose output is not all nodata (the others stay 0, which masking gives them anyway)."""
    if not mask.any():
        return starts
    if mask.all():
        return []
    return [(r, c) for r, c in starts if not mask[r : r + th, c : c + tw].all()]


def tile_plan(n: int, tile: int, fixed: bool) -> tuple[int, list[int]]:
    """``(side, starts)`` of the tiles covering ``n`` pixels: balanced (:func:`balanced_tile`), or with
    ``fixed`` always ``tile`` — shifted back inside when ``n`` > ``tile``, one tile padded past the end
    (by the runner) when ``n`` < ``tile`` — so a GPU runner sees one shape (cuDNN/TensorRT tune once).
    The number of tiles is the same either way (:func:`count_tiles`)."""
    side = tile if fixed else balanced_tile(n, tile)
    return side, tile_starts(n, side)


ProgressFn = Callable[[int, int], None]


def super_resolve(
    source: SceneSource, runners: Mapping[str, Runner], *, window: Window | None = None, tile: int | None = None,
    batch: int | None = None, halo: int | None = None, on_tile: ProgressFn | None = None, device: bool = False,
) -> dict[str, Any]:
    """Super-resolve ``window`` of ``source`` with each runner.

    Args:
        source: the scene.
        runners: ``{"net20": runner, "net60": runner}`` (either may be absent).
        window: 10 m window to produce (default: the whole scene).
        tile: largest tile side in 10 m pixels (output pixels per tile, halo excluded);
            tiles are balanced (:func:`balanced_tile`), fixed for runners with ``fixed_tiles``
            (:func:`tile_plan`), skipped where all nodata. Default: :func:`runner_tiling`.
        batch: tiles per runner call (default: the runners' preference).
        halo: override of the halo (default: the largest receptive radius of the runners).
        on_tile: called as ``on_tile(done, total)`` after each batch.
        device: leave the output of a runner whose window path runs on a device (a GPU runner:
            ``array_namespace`` other than ``numpy``) there, for post-steps that run there too.

    Returns:
        ``{net: float32 (C_out, height, width)}`` in DN (pre-04.00 scale), 0 where nodata: NumPy
        arrays, or with ``device`` the runner's device arrays (torch, CuPy …).
    """
    shape10 = source.shape10
    if window is None:
        window = Window(0, 0, *shape10)
    if not runners:
        raise ValueError("no runner given")
    tile, batch = runner_tiling(runners, tile, batch)
    need = max(r.halo for r in runners.values())
    halo = need if halo is None else halo
    if halo < need:
        raise ValueError(f"halo {halo} is smaller than the receptive radius {need}")
    rows = reflect_index(np.arange(window.row - halo, window.row + window.height + halo), shape10[0])
    cols = reflect_index(np.arange(window.col - halo, window.col + window.width + halo), shape10[1])
    specs = {name: NETS[name] for name in runners}
    groups = {g for spec in specs.values() for g in spec.groups}
    with stage("read"):
        reads = {g: _read_group(source, g, rows, cols, shape10) for g in groups}
    reads[10] = replace(reads[10], window=reads[10].window[list(NET_INDEX_10M)])  # the nets' band order
    mask = _mask_from_reads(reads, window)
    stacks: dict[int, np.ndarray] = {}  # host-side inputs, made once for the runners that need them
    th, tw = balanced_tile(window.height, tile), balanced_tile(window.width, tile)
    starts = [(r, c) for r in tile_starts(window.height, th) for c in tile_starts(window.width, tw)]
    total = len(starts) * len(runners)
    done = 0
    out: dict[str, np.ndarray] = {}
    for name, runner in runners.items():
        spec: NetSpec = specs[name]
        run_window = getattr(runner, "run_window", None)
        if run_window is not None:  # the runner builds the input and tiles it on its device
            fixed = bool(getattr(runner, "fixed_tiles", False))
            (fh, rs), (fw, cs) = tile_plan(window.height, tile, fixed), tile_plan(window.width, tile, fixed)
            live = _live_tiles([(r, c) for r in rs for c in cs], fh, fw, mask)
            skipped = len(starts) - len(live)

            def tick(n: int, _done: int = done + skipped) -> None:
                if on_tile is not None:
                    on_tile(_done + n, total)

            kw = {"out": "device"} if device and getattr(runner, "array_namespace", "numpy") != "numpy" else {}
            with stage("nets"), stop.cancelling(runner):  # a stop request ends the call in flight (its cancel, if any)
                out[name] = run_window([reads[g] for g in spec.groups], live, fh, fw, halo, batch, on_tiles=tick, **kw)
            done += len(starts)
            if on_tile is not None and not live:
                on_tile(done, total)
            continue
        res = np.zeros((spec.out_channels, window.height, window.width), dtype=np.float32)
        live = _live_tiles(starts, th, tw, mask)
        done += len(starts) - len(live)
        if not live:  # all nodata: nothing to compute
            out[name] = res
            if on_tile is not None:
                on_tile(done, total)
            continue
        with stage("input"):
            for g in spec.groups:
                if g not in stacks:
                    stacks[g] = reads[g].stack()
        x = np.concatenate([stacks[g] for g in spec.groups], axis=0)
        x /= np.float32(SCALE)
        xb = np.empty((min(batch, len(live)), x.shape[0], th + 2 * halo, tw + 2 * halo), dtype=np.float32)
        for i in range(0, len(live), batch):
            chunk = live[i : i + batch]
            for k, (r, c) in enumerate(chunk):  # one reused input buffer, no per-batch np.stack
                xb[k] = x[:, r : r + th + 2 * halo, c : c + tw + 2 * halo]
            with stage("nets"), stop.cancelling(runner):  # checks for a stop request before and after each batch
                yb = runner(xb[: len(chunk)])
            for (r, c), y in zip(chunk, yb, strict=True):
                res[:, r : r + th, c : c + tw] = y[:, halo : halo + th, halo : halo + tw]
            done += len(chunk)
            if on_tile is not None:
                on_tile(done, total)
        res *= np.float32(SCALE)
        out[name] = res
    for name, res in out.items():
        if isinstance(res, np.ndarray):
            np.clip(res, 1.0, 65535.0, out=res)
            res[:, mask] = 0.0
        else:  # on the runner's device
            xp = namespace(res)
            out[name] = xp.where(asarray_like(mask, res), xp.zeros_like(res), xp.clip(res, 1.0, 65535.0))
    log.debug("super-resolved window %s with %d tiles of %dx%d", window, len(starts), th, tw)
    return out


def to_uint16(x: Any) -> np.ndarray:
    """Round float DN to uint16 (values are already clipped, 0 = nodata), on the host; a device
    array is rounded (half to even, as NumPy) and cast on its device, so only uint16 crosses the bus."""
    if isinstance(x, np.ndarray):
        return x if x.dtype == np.uint16 else np.rint(x).astype(np.uint16)
    xp = namespace(x)
    return to_numpy(xp.astype(xp.round(x), xp.uint16))


def assemble_sr_bands(out: Mapping[str, np.ndarray]) -> np.ndarray:
    """Stack net outputs in :data:`~s2sr_cloud.bands.SR_BANDS` order (B01, B05 … B12)."""
    b20 = out["net20"]
    b60 = out["net60"]
    order = {**{b: b20[i] for i, b in enumerate(BANDS_20M)}, **{b: b60[i] for i, b in enumerate(BANDS_60M)}}

    return np.stack([order[b] for b in SR_BANDS])


def count_tiles(window: Window, tile: int | None = None) -> int:
    """Tiles :func:`super_resolve` runs per net for ``window`` (``tile`` None: :data:`DEFAULT_TILE`)."""
    tile = DEFAULT_TILE if tile is None else tile
    return len(tile_starts(window.height, balanced_tile(window.height, tile))) * len(
        tile_starts(window.width, balanced_tile(window.width, tile))
    )


def plan_blocks(window: Window, block: int, tile: int | None, nets: int) -> tuple[list[Window], int]:
    """The blocks covering ``window`` and the number of tiles they need over ``nets`` nets."""
    blocks = [
        Window(window.row + b.row, window.col + b.col, b.height, b.width)
        for b in iter_blocks((window.height, window.width), block)
    ]
    return blocks, sum(count_tiles(b, tile) for b in blocks) * nets


def stream_blocks(
    source: SceneSource,
    runners: Mapping[str, Runner],
    *,
    block: int = 1024,
    tile: int | None = None,
    batch: int | None = None,
    window: Window | None = None,
    on_progress: ProgressFn | None = None,
) -> Iterator[tuple[Window, dict[str, np.ndarray]]]:
    """Super-resolve ``window`` (default: the scene) block by block, bounded memory.

    Yields ``(block_window, {net: (C, h, w)})``; ``on_progress(done, total)`` counts tiles
    over all blocks and nets.
    """
    tile, batch = runner_tiling(runners, tile, batch)
    blocks, total = plan_blocks(window or Window(0, 0, *source.shape10), block, tile, len(runners))
    base = 0
    for b in blocks:
        def tick(done: int, _total: int, _base: int = base) -> None:
            if on_progress is not None:
                on_progress(_base + done, total)

        out = super_resolve(source, runners, window=b, tile=tile, batch=batch, on_tile=tick)
        base += count_tiles(b, tile) * len(runners)
        yield b, out
