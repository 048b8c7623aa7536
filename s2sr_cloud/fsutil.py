"""Atomic file writing: temporary files beside the target, then ``os.replace``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def tmp_beside(directory: str | os.PathLike[str], name: str, suffix: str = ".tmp") -> Path:
    """An empty hidden temporary file ``.<name>.*<suffix>`` in ``directory``.

    It lives on the same file system as the target, so ``os.replace`` onto the target is
    atomic; its mode is the usual ``0666 & ~umask`` (``mkstemp`` alone gives 0600, which a
    web server running as another user could not read once the file is published).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)
