"""Per-stage wall time of the processing path, for benchmarks and ``-vv`` logs.

Code marks its stages with ``with stage("hybrid"):``; nothing is measured unless a
:func:`collect` block is active (then each stage's seconds are summed over all threads, so with
overlapped blocks the sum of stages can exceed the wall time). A leaf: no package imports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active: list[dict[str, float]] = []


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the block's wall time to ``name`` in every active :func:`collect`."""
    if not _active:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - t0)


def add(name: str, seconds: float) -> None:
    """Add ``seconds`` to stage ``name`` in every active :func:`collect`."""
    if _active:
        with _lock:
            for sums in _active:
                sums[name] = sums.get(name, 0.0) + seconds


@contextmanager
def collect() -> Iterator[dict[str, float]]:
    """Collect stage times while the block runs: yields ``{stage: seconds}`` (filled in place)."""
    sums: dict[str, float] = {}
    with _lock:
        _active.append(sums)
    try:
        yield sums
    finally:
        with _lock:
            _active.remove(sums)
