"""Keep the accelerator busy: read and upsample block k+1 while block k is inferred.

:func:`iter_super_resolved` runs :func:`~s2sr_cloud.sr.super_resolve` on a sequence of
blocks with ``workers`` threads (2 = double buffering). Each runner is wrapped in a
lock, so at any time one thread feeds the GPU while the other reads COG windows and
upsamples the LR bands of the next block; NumPy, GDAL, ONNX Runtime and the CUDA calls
release the GIL, so the two really overlap. Blocks come back in order and at most
``workers`` blocks are in memory, so memory stays bounded by the block size.

Generic over any :class:`~s2sr_cloud.sr.SceneSource` and any iterable of
:class:`~s2sr_cloud.sr.Window` (e.g. :func:`~s2sr_cloud.sr.iter_blocks`), so the STAC
pipeline and the benchmark use the same code.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..sr import Runner, SceneSource, Window, super_resolve

log = logging.getLogger(__name__)

BlockResult = tuple[Window, dict[str, np.ndarray]]


class LockedRunner:
    """A runner shared by threads: one call at a time; busy time is recorded.

    Keeps the wrapped runner's ``net``, ``halo`` and ``backend``; other attributes
    (``model_info``, ``tile`` …) are forwarded.
    """

    def __init__(self, runner: Runner) -> None:
        self.inner = runner
        self.net = runner.net
        self.halo = runner.halo
        self.backend = runner.backend
        self._lock = threading.Lock()
        self.busy_s = 0.0
        """Seconds spent inside the wrapped runner."""
        self.calls: list[tuple[float, float]] = []
        """``(start, end)`` ``perf_counter`` times of every call."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            t0 = time.perf_counter()
            try:
                return self.inner(x)
            finally:
                t1 = time.perf_counter()
                self.busy_s += t1 - t0
                self.calls.append((t0, t1))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def iter_super_resolved(
    source: SceneSource,
    runners: Mapping[str, Runner],
    blocks: Iterable[Window],
    *,
    workers: int = 2,
    on_block: Callable[[Window], None] | None = None,
    **sr_kwargs: Any,
) -> Iterator[BlockResult]:
    """Super-resolve ``blocks`` of ``source`` in order, overlapping I/O with inference.

    Args:
        source: the scene (its ``read`` must be thread-safe: rasterio datasets opened
            per thread, or an in-memory source).
        runners: ``{net: runner}``; each is wrapped in a :class:`LockedRunner` unless
            it already is one.
        blocks: windows of the 10 m grid, consumed lazily.
        workers: blocks in flight; 1 disables the overlap.
        on_block: called with each window when its result is yielded.
        **sr_kwargs: passed to :func:`~s2sr_cloud.sr.super_resolve` (``tile``,
            ``batch``, ``halo``).

    Yields:
        ``(window, {net: float32 (C, h, w) DN})`` in the order of ``blocks``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    locked = {n: r if isinstance(r, LockedRunner) else LockedRunner(r) for n, r in runners.items()}

    def work(w: Window) -> BlockResult:
        return w, super_resolve(source, locked, window=w, **sr_kwargs)

    pending: deque[Future[BlockResult]] = deque()
    it = iter(blocks)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s2sr-block") as pool:
        try:
            for w in it:
                pending.append(pool.submit(work, w))
                if len(pending) >= workers:
                    yield _finish(pending.popleft(), on_block)
            while pending:
                yield _finish(pending.popleft(), on_block)
        finally:
            for f in pending:
                f.cancel()


def _finish(fut: Future[BlockResult], on_block: Callable[[Window], None] | None) -> BlockResult:
    res = fut.result()
    if on_block is not None:
        on_block(res[0])
    return res
