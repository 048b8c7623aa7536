"""Files the project writes: safe names, output checks and atomic writes.

Every file s2sr writes (COGs, ``.npz``, records, catalogs, exports, engines) goes through
:func:`atomic_path` (or its shorthands :func:`write_bytes_atomic` / :func:`write_text_atomic`):
the bytes go to a hidden temporary file beside the target, which is renamed onto the
target only when complete, and removed on *any* exit otherwise (errors, Ctrl-C, SIGTERM
turned into an exception by the CLI). Its mode is the usual ``0666 & ~umask``.

Remote strings (item ids, collection ids) never choose paths: :func:`safe_name` turns
them into one plain file-name component.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DiskFull, OutputError, OutputExists

#: Characters kept in :func:`safe_name`; everything else becomes ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=@,-]+")
#: Longest name component produced (file systems allow 255 bytes; leave room for suffixes).
MAX_NAME = 160


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def safe_name(value: str, *, max_len: int = MAX_NAME) -> str:
    """``value`` as one safe file-name component.

    No path separators, no ``..`` or leading dot, no control or shell-special characters,
    never empty, never absolute. A name that had to change gets a short hash of the
    original appended, so two different ids never collide on the same file
    (``a/b`` and ``a_b`` give different names).
    """
    text = unicodedata.normalize("NFKC", str(value))
    clean = _UNSAFE.sub("_", text).strip("._-")
    clean = re.sub(r"\.{2,}", ".", clean)
    if clean == text and 0 < len(clean) <= max_len:
        return clean
    digest = hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{(clean or 'item')[: max_len - 9]}-{digest}"


def child_path(directory: str | os.PathLike[str], name: str) -> Path:
    """``directory / safe_name(name)``: a path that cannot leave ``directory``."""
    return Path(directory) / safe_name(name)


def output_error(err: OSError, path: str | os.PathLike[str]) -> OutputError:
    """An :class:`OutputError` a user can act on, for an ``OSError`` while writing ``path``."""
    p = Path(path)
    code = err.errno
    if code == errno.ENOSPC or "No space left" in str(err):
        return DiskFull(f"no space left on the device while writing {p}; free space or choose another --out")
    if code == errno.EROFS:
        return OutputError(f"cannot write {p}: the file system is read-only; choose another --out")
    if code in (errno.EACCES, errno.EPERM):
        return OutputError(f"cannot write {p}: permission denied; choose a folder you can write to")
    if code == errno.ENOTDIR:
        return OutputError(f"cannot write {p}: a part of its path is a file, not a folder")
    if code == errno.EISDIR:
        return OutputError(f"cannot write {p}: it is a folder; name a file")
    if code == errno.ENAMETOOLONG:
        return OutputError(f"cannot write {p}: the name is too long")
    return OutputError(f"cannot write {p}: {err.strerror or err}")


def ensure_dir(directory: str | os.PathLike[str]) -> Path:
    """Create ``directory`` (and parents) or raise a clean :class:`OutputError`."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise OutputError(f"cannot write into {d}: it is a file, not a folder")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise OutputError(f"cannot create the folder {d}: a part of its path is a file") from err
    except OSError as err:
        raise output_error(err, d) from err
    return d


def check_output(path: str | os.PathLike[str], *, overwrite: bool = False, file: bool = True) -> Path:
    """Refuse an output ``path`` early: an existing file without ``overwrite``, a folder
    where a file is wanted, a parent that is a file or cannot be created, a read-only place."""
    p = Path(path)
    if file and p.is_dir():
        raise OutputError(f"{p} is a folder; name the output file (e.g. {p / 'out.tif'})")
    if p.exists() and not overwrite:
        raise OutputExists(f"{p} exists; pass --overwrite to replace it")
    ensure_dir(p.parent)
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {p.parent}: permission denied or read-only")
    return p


def tmp_beside(directory: str | os.PathLike[str], name: str, suffix: str = ".tmp") -> Path:
    """An empty hidden temporary file ``.<name>.*<suffix>`` in ``directory``.

    It lives on the same file system as the target, so ``os.replace`` onto the target is
    atomic; its mode is the usual ``0666 & ~umask`` (``mkstemp`` alone gives 0600, which a
    web server running as another user could not read once the file is published).
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name[:MAX_NAME]}.", suffix=suffix, dir=directory)
    except OSError as err:
        raise output_error(err, Path(directory) / name) from err
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


@contextmanager
def atomic_path(
    target: str | os.PathLike[str], *, suffix: str = ".tmp", overwrite: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on a clean exit.

    On any exception (``KeyboardInterrupt`` and ``SystemExit`` included) the temporary
    file is removed and ``target`` is untouched. ``OSError`` while writing becomes a
    clean :class:`OutputError`.
    """
    final = Path(target)
    if final.is_dir():
        raise OutputError(f"{final} is a folder; name the output file")
    if not overwrite and final.exists():
        raise OutputExists(f"{final} exists; pass --overwrite to replace it")
    ensure_dir(final.parent)
    tmp = tmp_beside(final.parent, final.name, suffix)
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as err:
        raise output_error(err, final) from err
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (0666 & ~umask)."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically (0666 & ~umask)."""
    return write_bytes_atomic(target, text.encode("utf-8"))
