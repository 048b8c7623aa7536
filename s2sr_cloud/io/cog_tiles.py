"""Tiles of a COG compressed as the blocks arrive, and its overviews built row strip by row strip.

:class:`TileStore` compresses 512² tiles (pixel-interleaved, horizontal-differencing predictor,
DEFLATE: what GDAL writes for ``COMPRESS=DEFLATE PREDICTOR=2``) on a thread pool — :mod:`zlib`
releases the GIL, so the compression runs on every core it is given — and appends the bytes to
a staging file. :class:`LevelBuilder` holds one resolution: it gathers written windows into
512-row strips, hands each complete tile to the store, and passes each complete strip down to
the next (half-size) level through :func:`average_rows`, GDAL's ``average`` overview resampling
(nodata ignored, GDAL's fractional edge weights where a level's source size is odd), computed
from the previous level as GDAL's cascade does.
"""

from __future__ import annotations

import math
import os
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

#: zlib level of the tiles (GDAL's DEFLATE default ``ZLEVEL=6``).
ZLEVEL = 6
#: Destination rows of an overview computed at once (bounds the temporaries).
ROWS_AT_ONCE = 64


def overview_shapes(height: int, width: int, block: int) -> list[tuple[int, int]]:
    """The overview sizes GDAL's COG driver makes: halving (floor) until a level fits one tile."""
    shapes, f = [], 1
    while max(height // f, width // f) > block and min(height // f, width // f) > 1:
        f *= 2
        shapes.append((max(1, height // f), max(1, width // f)))
    return shapes


def axis_weights(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Per destination pixel the source indices ``(dst, k)`` and weights of GDAL's average resampling
    (ratio ``src / dst``; the first and last source pixel of a window weighted by their overlap)."""
    ratio = src / dst
    i = np.arange(dst, dtype=np.float64)
    lo_f, hi_f = i * ratio, (i + 1) * ratio
    lo = (lo_f + 1e-8).astype(np.int64)
    hi = np.ceil(hi_f - 1e-8).astype(np.int64)
    hi = np.maximum(hi, lo + 1)
    k = int((hi - lo).max())
    idx = lo[:, None] + np.arange(k)[None, :]
    inside = idx < hi[:, None]
    w = inside.astype(np.float64)
    span = hi - lo
    w[:, 0] = np.where(span == 1, 1.0, 1.0 - (lo_f - lo))
    multi = np.nonzero(span > 1)[0]
    w[multi, span[multi] - 1] = 1.0 - (hi[multi] - hi_f[multi])
    return np.where(inside, idx, lo[:, None]), w


def average_rows(x: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray],
                 nodata: float | None, dtype: np.dtype) -> np.ndarray:
    """GDAL ``average`` of ``x`` (C, h, w) onto the destination rows/columns given by
    :func:`axis_weights` (``rows`` relative to ``x``); nodata pixels left out."""
    ry, wy = rows
    rx, wx = cols
    exact = wy.shape[1] == 2 and wx.shape[1] == 2 and (wy == 1).all() and (wx == 1).all()
    y0, y1 = int(ry.min()), int(ry.max()) + 1
    x, ry = x[:, y0:y1], ry - y0
    valid = None if nodata is None else x != nodata
    if exact and np.array_equal(ry[:, 0], np.arange(len(ry)) * 2) and np.array_equal(rx[:, 0], np.arange(len(rx)) * 2):
        sub = x[:, : 2 * len(ry), : 2 * len(rx)]
        c, h, w = sub.shape
        if valid is None:
            s = sub.reshape(c, h // 2, 2, w // 2, 2).sum((2, 4), dtype=np.uint64)
            return ((s + 2) // 4).astype(dtype)
        m = valid[:, :h, :w]
        s = np.where(m, sub, 0).reshape(c, h // 2, 2, w // 2, 2).sum((2, 4), dtype=np.uint64)
        n = m.reshape(c, h // 2, 2, w // 2, 2).sum((2, 4), dtype=np.uint64)
        out = (2 * s + n) // np.maximum(2 * n, 1)
        return np.where(n > 0, out, nodata).astype(dtype)
    xv = x.astype(np.float64)
    m = np.ones(x.shape, np.float64) if valid is None else valid.astype(np.float64)
    xv *= m
    # columns first, then rows, each accumulated in source order (GDAL's order of summation)
    line_s = sum(xv[:, :, rx[:, k]] * wx[:, k] for k in range(rx.shape[1]))
    line_w = sum(m[:, :, rx[:, k]] * wx[:, k] for k in range(rx.shape[1]))
    tot_s = sum(line_s[:, ry[:, k], :] * wy[:, k, None] for k in range(ry.shape[1]))
    tot_w = sum(line_w[:, ry[:, k], :] * wy[:, k, None] for k in range(ry.shape[1]))
    out = np.floor(tot_s / np.where(tot_w > 0, tot_w, 1.0) + 0.5)
    info = np.iinfo(dtype)
    out = np.clip(out, info.min, info.max)
    fill = 0 if nodata is None else nodata
    return np.where(tot_w > 0, out, fill).astype(dtype)


def encode_tile(tile: np.ndarray, block: int) -> bytes:
    """(C, h, w) → the DEFLATE bytes of one ``block``² pixel-interleaved tile with horizontal
    differencing (edge tiles padded with zeros, as GDAL pads them)."""
    c, h, w = tile.shape
    px = np.zeros((block, block, c), tile.dtype)
    px[:h, :w] = tile.transpose(1, 2, 0)
    px[:, 1:] -= px[:, :-1].copy()  # unsigned wrap-around, as libtiff's predictor
    return zlib.compress(px.astype(px.dtype.newbyteorder("<"), copy=False).tobytes(), ZLEVEL)


class TileStore:
    """Compressed tiles appended to a staging file by a thread pool, at most ``2 × threads`` in flight."""

    def __init__(self, fd: int, threads: int, block: int) -> None:
        self.fd, self.block = fd, block
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s2sr-cog")
        self._slots = threading.BoundedSemaphore(2 * threads)
        self._lock = threading.Lock()
        self._end = 0
        self.index: dict[tuple[int, int], tuple[int, int]] = {}  # (level, tile) → (offset, size)
        self.error: BaseException | None = None
        self._pending: set[Future[None]] = set()

    def put(self, level: int, tile: int, data: np.ndarray) -> None:
        self.check()
        self._slots.acquire()
        fut = self.pool.submit(self._encode, level, tile, data)
        with self._lock:
            self._pending.add(fut)
        fut.add_done_callback(self._done)

    def _encode(self, level: int, tile: int, data: np.ndarray) -> None:
        blob = encode_tile(data, self.block)
        with self._lock:
            at = self._end
            self._end += len(blob)
        view = memoryview(blob)
        while view:
            n = os.pwrite(self.fd, view, at)
            view, at = view[n:], at + n
        with self._lock:
            self.index[(level, tile)] = (at - len(blob), len(blob))

    def _done(self, fut: Future[None]) -> None:
        self._slots.release()
        with self._lock:
            self._pending.discard(fut)
        err = None if fut.cancelled() else fut.exception()
        if err is not None and self.error is None:
            self.error = err

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def drain(self) -> None:
        """Wait for every tile; re-raise the first compression or write error."""
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                break
            for f in pending:
                f.exception()
        self.check()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class LevelBuilder:
    """One resolution: windows in, complete tiles to ``store``, complete strips to ``below``.

    ``chain`` runs work that must stay in row order (the strips going down) — one thread, so the
    writer's caller only copies pixels.
    """

    def __init__(self, level: int, shape: tuple[int, int], count: int, dtype: np.dtype, fill: float,
                 nodata: float | None, store: TileStore, chain: Callable[[Callable[[], None]], None]) -> None:
        self.level, (self.height, self.width), self.count = level, shape, count
        self.dtype, self.fill, self.nodata, self.store, self.chain = dtype, fill, nodata, store, chain
        b = store.block
        self.rows_t, self.cols_t = math.ceil(self.height / b), math.ceil(self.width / b)
        self._strips: dict[int, np.ndarray] = {}
        self._covered: dict[int, np.ndarray] = {}  # per strip, pixels written per tile column
        self._done_tiles: set[int] = set()
        self._ready: dict[int, np.ndarray] = {}  # complete strips waiting for their turn downwards
        self._next = 0
        self.below: LevelBuilder | None = None
        self._carry: np.ndarray | None = None  # source rows the next level still needs
        self._carry_at = 0
        self._dst_next = 0
        self._weights: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None

    def _strip(self, s: int) -> np.ndarray:
        if s not in self._strips:
            h = min(self.store.block, self.height - s * self.store.block)
            self._strips[s] = np.full((self.count, h, self.width), self.fill, self.dtype)
            self._covered[s] = np.zeros(self.cols_t, np.int64)
        return self._strips[s]

    def write(self, arr: np.ndarray, row: int, col: int) -> None:
        """``arr`` (C, h, w) at (row, col); windows must not overlap what was written before."""
        b = self.store.block
        h, w = arr.shape[1:]
        for s in range(row // b, (row + h - 1) // b + 1):
            if s in self._ready or s < self._next:
                raise RuntimeError("a COG window was written twice")
            buf = self._strip(s)
            r0, r1 = max(row, s * b), min(row + h, s * b + buf.shape[1])
            buf[:, r0 - s * b:r1 - s * b, col:col + w] = arr[:, r0 - row:r1 - row]
            for t in range(col // b, (col + w - 1) // b + 1):
                if s * self.cols_t + t in self._done_tiles:
                    raise RuntimeError("a COG window was written twice")
                c0, c1 = max(col, t * b), min(col + w, (t + 1) * b)
                self._covered[s][t] += (r1 - r0) * (c1 - c0)
                self._tile_check(s, t)

    def _tile_check(self, s: int, t: int, force: bool = False) -> None:
        b = self.store.block
        buf = self._strips[s]
        tw = min(b, self.width - t * b)
        key = s * self.cols_t + t
        if key in self._done_tiles or not (force or self._covered[s][t] >= buf.shape[1] * tw):
            return
        self._done_tiles.add(key)
        self.store.put(self.level, key, buf[:, :, t * b:t * b + tw])
        if all(s * self.cols_t + u in self._done_tiles for u in range(self.cols_t)):
            self._ready[s] = self._strips.pop(s)
            del self._covered[s]
            self._release()

    def _release(self) -> None:
        while self._next in self._ready:
            strip = self._ready.pop(self._next)
            self._next += 1
            if self.below is not None:
                self.chain(lambda a=strip: self._down(a))

    def finish(self) -> None:
        """Every tile not complete yet: as it is (unwritten pixels are ``fill``)."""
        for s in range(self.rows_t):
            if s < self._next or s in self._ready:
                continue
            self._strip(s)
            for t in range(self.cols_t):
                self._tile_check(s, t, force=True)

    def _down(self, strip: np.ndarray) -> None:
        """A complete strip of this level (in row order) → the rows of the next level it completes."""
        below = self.below
        assert below is not None
        if self._weights is None:
            self._weights = (axis_weights(self.height, below.height), axis_weights(self.width, below.width))
        (ry, wy), cols = self._weights
        self._carry = strip if self._carry is None else np.concatenate([self._carry, strip], axis=1)
        have = self._carry_at + self._carry.shape[1]
        need_hi = np.where(wy > 0, ry + 1, 0).max(axis=1)  # source rows each destination row needs
        last = below.height if have >= self.height else int(np.searchsorted(need_hi, have, "right"))
        for i0 in range(self._dst_next, last, ROWS_AT_ONCE):  # bounded temporaries
            sel = slice(i0, min(i0 + ROWS_AT_ONCE, last))
            out = average_rows(self._carry, (ry[sel] - self._carry_at, wy[sel]), cols, self.nodata, self.dtype)
            below.write(out, i0, 0)
        self._dst_next = max(self._dst_next, last)
        keep_from = int(ry[self._dst_next, 0]) if self._dst_next < below.height else have
        self._carry = self._carry[:, keep_from - self._carry_at:]
        self._carry_at = keep_from
        if self._dst_next >= below.height:
            self._carry = None
            below.finish()
