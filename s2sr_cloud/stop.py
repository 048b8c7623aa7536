"""A stop request that long work honours within a second or two (Ctrl-C, SIGTERM, a caller).

The CLI turns SIGINT and SIGTERM into :func:`request` (then raises ``KeyboardInterrupt`` in
the main thread, so every ``finally`` cleans up); library code calls :func:`check` at its
safe points (between tile batches, blocks, items) and raises :class:`Stopped` there. Work
that cannot check in the middle (one inference call: seconds per tile on a CPU) registers
its ``cancel`` for the duration with :func:`cancelling`: a request calls it (ONNX Runtime's
``RunOptions.terminate``), so the call in flight ends early too.

A leaf: only the standard library.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Stopped(KeyboardInterrupt):
    """Raised by :func:`check` once a stop was requested (a ``KeyboardInterrupt``: not an error)."""


class StopToken:
    """A process-wide stop flag (a :class:`threading.Event`) and the cancel hooks of work in flight."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._hooks: dict[int, Callable[[], Any]] = {}
        self._keys = itertools.count()
        self.reason = "interrupted"

    def request(self, reason: str = "interrupted") -> None:
        """Ask everything to stop; safe in a signal handler (no lock is taken)."""
        self.reason = reason
        self._event.set()
        for hook in list(self._hooks.values()):
            with contextlib.suppress(Exception):  # a cancel hook must not hide the stop itself
                hook()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Stopped` if a stop was requested."""
        if self._event.is_set():
            raise Stopped(self.reason)

    def reset(self) -> None:
        """Forget a past request (a library caller that handled it and goes on)."""
        self._event.clear()
        self.reason = "interrupted"

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) when a stop is requested meanwhile."""
        return self._event.wait(seconds)

    @contextmanager
    def cancelling(self, work: Any) -> Iterator[None]:
        """Run the block with ``work.cancel()`` (if it has one) called on a stop request; an error
        the cancelled work raises becomes :class:`Stopped`."""
        self.check()
        cancel = getattr(work, "cancel", None)
        key = next(self._keys)
        if callable(cancel):
            self._hooks[key] = cancel
        try:
            yield
        except Exception as err:
            if self._event.is_set():
                raise Stopped(self.reason) from err
            raise
        finally:
            if callable(cancel):
                self._hooks.pop(key, None)
        self.check()


#: The process's token (signals are process-wide too).
TOKEN = StopToken()


def request(reason: str = "interrupted") -> None:
    TOKEN.request(reason)


def check() -> None:
    """Raise :class:`Stopped` if a stop was requested (call it between units of work)."""
    TOKEN.check()


def requested() -> bool:
    return TOKEN.is_set()


def reset() -> None:
    TOKEN.reset()


def cancelling(work: Any) -> Any:
    """:meth:`StopToken.cancelling` of the process's token."""
    return TOKEN.cancelling(work)


def on_signal(signum: int, frame: object) -> None:
    """A SIGINT handler: request the stop, then interrupt the main thread as Python's default does."""
    request("interrupted")
    raise KeyboardInterrupt
