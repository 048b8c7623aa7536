"""One writer per output: a lock beside each output file, and the sweep of a killed run's staging files.

:func:`output_lock` holds ``.<name>.lock`` beside the output with ``flock`` (released by the
kernel when the holder exits, even by SIGKILL), so two s2sr processes — two runs into one
``--out``, or two Dask workers given the same item — never write one output at once: the
second refuses (:class:`~s2sr_cloud.errors.OutputLocked`, with the holder's pid) or waits.
The lock file goes when the lock is released. Whoever holds the lock knows that no one else
writes that output, so hidden staging files of it (``.<name>.*``: a run killed mid-write) are
stale and :func:`sweep_staging` removes them.

On systems without ``fcntl`` (Windows) the lock is a no-op. Over NFS, ``flock`` works between
the machines only where the server supports it (NFSv4 does).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputLocked
from ..fsutil import ensure_dir, output_error

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{LOCK_SUFFIX}")


def _holder(lock: Path) -> str:
    try:
        text = lock.read_text().split()
    except OSError:
        return "another process"
    return f"pid {text[0]} on {text[1]}" if len(text) >= 2 else "another process"


@contextmanager
def output_lock(path: str | os.PathLike[str], *, wait: bool = False, poll_s: float = 0.2) -> Iterator[Path]:
    """Hold the lock of output ``path`` for the block.

    ``wait``: wait for another holder to finish (a stop request ends the wait); otherwise
    :class:`~s2sr_cloud.errors.OutputLocked` at once.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield Path(path)
        return
    from .. import stop

    final = Path(path)
    ensure_dir(final.parent)
    lock = lock_path(final)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise output_error(err, final) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not wait:
                raise OutputLocked(f"{final} is being written by another s2sr run ({_holder(lock)}); "
                                   "wait for it to finish, or choose another --out") from None
            stop.check()
            time.sleep(poll_s)
            continue
        # the file may have been removed (and re-created) by the holder we waited for: lock the one there now
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield final
    finally:
        try:
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)


def sweep_staging(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the hidden staging files of ``path`` (``.<name>.*`` beside it, its lock excepted):
    call it holding :func:`output_lock`, so none of them can be in use. Returns what went."""
    final = Path(path)
    gone = []
    try:
        found = list(final.parent.glob(f".{final.name[:160]}.*"))
    except OSError:
        return []
    for p in found:
        if p.name.endswith(LOCK_SUFFIX) or not p.is_file():
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            log.warning("cannot remove the stale staging file %s: %s", p, err)
            continue
        gone.append(p)
    if gone:
        log.info("removed %d staging file(s) of %s left by an interrupted run", len(gone), final)
    return gone
