"""Block scheduling of the core: read and upsample block k+1 while block k is inferred.

The one streaming loop of local scenes and STAC items (source → blocks → runner → writer);
backend-agnostic, so it lives outside :mod:`s2sr_cloud.infer` (which re-exports it as
``s2sr_cloud.infer.overlap`` for old imports).


:func:`run_blocks` is that loop: a source, runners and a :class:`BlockSink` (a COG, an
in-memory array, a part file of a split item); every block is super-resolved with the
post-steps (:func:`~s2sr_cloud.post.super_resolve_consistent`, one
:class:`~s2sr_cloud.post.PostSteps`) and measured into one
:class:`~s2sr_cloud.post.ConsistencyQA` per output.

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

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from .grid import Window
from .post import DEFAULT, NONE, ConsistencyQA, PostSteps, super_resolve_consistent
from .post.estimate import resolve
from .post.window import tiles_with_margin
from .sinks import ArraySink, BandsSink, BlockSink
from .sr import Runner, SceneSource, plan_blocks, runner_tiling
from .timing import stage

log = logging.getLogger(__name__)

__all__ = ["ArraySink", "BandsSink", "BlockSink", "LockedRunner", "PerThreadSource", "aligned_block",
           "block_workers", "iter_super_resolved", "run_blocks", "stream_blocks_overlapped"]

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

    def _locked(self, fn: Callable[..., np.ndarray], *args: Any, **kwargs: Any) -> np.ndarray:
        """``fn(*args, **kwargs)`` alone on the wrapped runner, its busy time recorded."""
        with self._lock:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                t1 = time.perf_counter()
                self.busy_s += t1 - t0
                self.calls.append((t0, t1))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._locked(self.inner, x)

    @property
    def run_window(self) -> Callable[..., np.ndarray] | None:
        """The wrapped runner's device-side window path, under the same lock (None if it has none)."""
        inner = getattr(self.inner, "run_window", None)
        return None if inner is None else functools.partial(self._locked, inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class PerThreadSource:
    """A :class:`~s2sr_cloud.sr.SceneSource` that opens one source per thread.

    GDAL dataset handles must not be shared between threads; ``factory()`` returns a
    context manager yielding a source (e.g. ``lambda: BandFilesSource(files)``), entered
    lazily in each thread that reads and closed by :meth:`close`.
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[Any] = []
        self._shape: tuple[int, int] | None = None

    def _source(self) -> Any:
        src = getattr(self._local, "source", None)
        if src is None:
            cm = self._factory()
            src = cm.__enter__()
            self._local.source = src
            self._local.cm = cm
            with self._lock:
                self._open.append(cm)
        return src

    def release_thread(self) -> None:
        """Close the calling thread's source (GDAL handles close in the thread that opened them)."""
        cm = getattr(self._local, "cm", None)
        if cm is not None:
            self._local.cm = self._local.source = None
            with self._lock:
                self._open.remove(cm)
            cm.__exit__(None, None, None)

    @property
    def shape10(self) -> tuple[int, int]:
        if self._shape is None:
            self._shape = tuple(self._source().shape10)  # type: ignore[assignment]
        return self._shape  # type: ignore[return-value]

    def read(self, res: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        return np.asarray(self._source().read(res, rows, cols))

    def close(self) -> None:
        """Close the calling thread's source; worker threads release theirs when they end."""
        self.release_thread()
        with self._lock:
            left, self._open = self._open, []
        for cm in left:  # a thread that never released its source: best effort
            try:
                cm.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - rasterio refuses cross-thread closes
                log.debug("could not close a per-thread source", exc_info=True)

    def __enter__(self) -> PerThreadSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Progress:
    """Tile counts of concurrently processed blocks, summed for one callback."""

    def __init__(self, total: int, callback: Callable[[int, int], None] | None) -> None:
        self.total, self.callback = total, callback
        self._done: dict[int, int] = {}
        self._lock = threading.Lock()

    def for_block(self, i: int) -> Callable[[int, int], None]:
        def tick(done: int, _total: int) -> None:
            with self._lock:
                self._done[i] = done
                n = sum(self._done.values())
            if self.callback is not None:
                self.callback(n, self.total)

        return tick


def iter_super_resolved(
    source: SceneSource,
    runners: Mapping[str, Runner],
    blocks: Iterable[Window],
    *,
    workers: int = 2,
    on_block: Callable[[Window], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    total_tiles: int = 0,
    post: PostSteps = NONE,
    qa: ConsistencyQA | None = None,
    **sr_kwargs: Any,
) -> Iterator[BlockResult]:
    """Super-resolve ``blocks`` of ``source`` in order, overlapping I/O with inference.

    Args:
        source: the scene; its ``read`` must be thread-safe (an in-memory source, or a
            :class:`PerThreadSource` over file-backed ones).
        runners: ``{net: runner}``; each is wrapped in a :class:`LockedRunner` unless
            it already is one.
        blocks: windows of the 10 m grid, consumed lazily.
        workers: blocks in flight; 1 disables the overlap.
        on_block: called with each window when its result is yielded.
        on_progress: called as ``on_progress(done, total_tiles)`` with the tiles done
            over all blocks and nets (from the worker threads).
        total_tiles: the total passed to ``on_progress``.
        post: the post-steps of each block (:func:`~s2sr_cloud.post.super_resolve_consistent`;
            none by default here, so this stays a drop-in for :func:`~s2sr_cloud.sr.stream_blocks`).
        qa: accumulates the real-scale consistency of every block, merged in block order
            in the consumer's thread (each block is measured into its own record first).
        **sr_kwargs: passed to :func:`~s2sr_cloud.sr.super_resolve` (``tile``,
            ``batch``, ``halo``).

    Yields:
        ``(window, {net: float32 (C, h, w) DN})`` in the order of ``blocks``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    locked = {n: r if isinstance(r, LockedRunner) else LockedRunner(r) for n, r in runners.items()}
    pool = _BlockPool(source, locked, workers, _Progress(total_tiles, on_progress),
                      {**sr_kwargs, "post": post}, qa is not None)
    try:
        for win, out, block_qa in pool.run(blocks, on_block):
            if qa is not None and block_qa is not None:
                qa.merge(block_qa)
            yield win, out
    finally:
        pool.shutdown()


_Measured = tuple[Window, dict[str, np.ndarray], ConsistencyQA | None]


class _BlockPool:
    """``workers`` long-lived threads; at most ``workers`` blocks queued or running."""

    def __init__(
        self, source: SceneSource, runners: Mapping[str, Runner], workers: int, progress: _Progress,
        sr_kwargs: dict[str, Any], measure: bool = False,
    ) -> None:
        self.source, self.runners, self.progress, self.sr_kwargs = source, runners, progress, sr_kwargs
        self.measure = measure
        self.todo: queue.Queue[tuple[int, Window] | None] = queue.Queue()
        self.done: dict[int, _Measured | BaseException] = {}
        self.cond = threading.Condition()
        self.slots = threading.Semaphore(workers)
        self.stop = threading.Event()
        self.queued = 0
        self.exhausted = False
        self.threads = [threading.Thread(target=self._work, name=f"s2sr-block-{k}", daemon=True) for k in range(workers)]
        for t in self.threads:
            t.start()

    def _work(self) -> None:
        try:
            while not self.stop.is_set():
                job = self.todo.get()
                if job is None:
                    return
                i, w = job
                res: _Measured | BaseException
                try:
                    qa = ConsistencyQA() if self.measure else None
                    out = super_resolve_consistent(self.source, self.runners, window=w, qa=qa,
                                                   on_tile=self.progress.for_block(i), **self.sr_kwargs)
                    res = (w, out, qa)
                except BaseException as err:  # noqa: BLE001 - re-raised in the consumer's thread
                    res = err
                with self.cond:
                    self.done[i] = res
                    self.cond.notify_all()
        finally:
            release = getattr(self.source, "release_thread", None)
            if release is not None:
                release()

    def _fill(self, it: Iterator[tuple[int, Window]]) -> None:
        """Queue blocks while a slot is free."""
        while not self.exhausted and self.slots.acquire(blocking=False):
            job = next(it, None)
            if job is None:
                self.exhausted = True
                self.slots.release()
            else:
                self.todo.put(job)
                self.queued += 1

    def run(self, blocks: Iterable[Window], on_block: Callable[[Window], None] | None) -> Iterator[_Measured]:
        it = enumerate(blocks)
        nxt = 0
        self._fill(it)
        while not (self.exhausted and nxt == self.queued):
            with self.cond:
                self.cond.wait_for(lambda i=nxt: i in self.done)
                res = self.done.pop(nxt)
            nxt += 1
            self.slots.release()
            if isinstance(res, BaseException):
                raise res
            self._fill(it)  # the next block starts before this one is handed over
            if on_block is not None:
                on_block(res[0])
            yield res

    def shutdown(self) -> None:
        self.stop.set()
        for _ in self.threads:
            self.todo.put(None)
        for t in self.threads:
            t.join()


def stream_blocks_overlapped(
    source: SceneSource,
    runners: Mapping[str, Runner],
    *,
    block: int = 1024,
    tile: int | None = None,
    batch: int | None = None,
    window: Window | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    workers: int = 2,
    post: PostSteps = NONE,
    qa: ConsistencyQA | None = None,
) -> Iterator[BlockResult]:
    """Drop-in for :func:`~s2sr_cloud.sr.stream_blocks` with I/O overlapped (``workers`` ≥ 2).

    ``source`` must be thread-safe (wrap file-backed sources in :class:`PerThreadSource`).
    With active ``post``-steps each block is post-stepped (then ``block`` and ``window`` must
    be on the 60 m grid: multiples of 6 px); ``qa`` measures the consistency of the output.
    """
    tile, batch = runner_tiling(runners, tile, batch)
    blocks, total = plan_blocks(window or Window(0, 0, *source.shape10), block, tile, len(runners))
    if post.active:
        total = tiles_with_margin(blocks, source.shape10, runners, tile, post)
    yield from iter_super_resolved(
        source, runners, blocks, workers=workers, on_progress=on_progress, total_tiles=total, tile=tile, batch=batch,
        post=post, qa=qa,
    )


# --------------------------------------------------------------------------- the one loop
def block_workers(runners: Mapping[str, Runner]) -> int:
    """Blocks in flight: the largest ``host_workers`` the runners ask for (2 by default:
    double buffering; GPU runners ask for more, see :func:`~s2sr_cloud.infer.base.gpu_host_workers`)."""
    return max([2, *(int(getattr(r, "host_workers", 2) or 2) for r in runners.values())])


def aligned_block(block: int) -> int:
    """``block`` rounded down to the 60 m grid (a multiple of 6 px, at least 6): blocks and the
    row bands made of them must sit on every net's low-resolution grid."""
    return max(6, int(block) - int(block) % 6)


def run_blocks(
    source: SceneSource,
    runners: Mapping[str, Runner],
    sink: BlockSink,
    *,
    window: Window | None = None,
    block: int = 1536,
    tile: int | None = None,
    batch: int | None = None,
    post: PostSteps = DEFAULT,
    qa: ConsistencyQA | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> None:
    """The one streaming loop: source → blocks → runners (+ post-steps) → sink.

    Local scenes (``.npz`` arrays, band folders) and STAC items all go through here; only
    the source and the sink differ. ``block`` is rounded to the 60 m grid
    (:func:`aligned_block`); ``window`` (default: the scene) must be on it. Memory is
    bounded by ``workers`` blocks. ``post``: the post-steps of every block (default: the
    product's, hybrid blend then back-projection; an ``auto`` operator not estimated yet is estimated
    here on ``window``, :func:`~s2sr_cloud.post.estimate.resolve`); ``qa`` accumulates the output's real-scale
    consistency block by block. ``workers`` (default:
    :func:`block_workers`) blocks are prepared on the host at once.
    """
    workers = block_workers(runners) if workers is None else workers
    post = resolve(post, source, window, runners)  # a no-op when resolved (callers that record the value do it first)
    for win, out in stream_blocks_overlapped(
        source, runners, block=aligned_block(block), tile=tile, batch=batch, window=window,
        on_progress=on_progress, workers=workers, post=post, qa=qa,
    ):
        with stage("write"):
            sink.write_block(win, out, source)
