"""Atomic file writes: a file at its final path is either the old one or complete.

:func:`atomic_write` writes to a temporary file in the destination's directory,
flushes and ``fsync``\\ s it, then renames it onto the destination with
:func:`os.replace` (atomic on POSIX and Windows).  If anything fails, the
temporary file is removed and an existing destination is left untouched, so a
crash or an error never leaves a half-written graph, checkpoint or output.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import stat
import tempfile
from typing import IO, Any, Iterator, Optional, Union

__all__ = ["atomic_write"]

PathLike = Union[str, os.PathLike]

_WRITE_MODES = ("w", "wb", "wt")


def _current_umask() -> int:
    """The process umask (read once, at import, as reading it means setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _final_mode(dest: pathlib.Path) -> int:
    """Permission bits for the new file: those of the file it replaces, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(os.stat(dest).st_mode)
    except OSError:
        return 0o666 & ~_UMASK


def _fsync_directory(directory: pathlib.Path) -> None:
    """Make the rename durable where the platform allows fsync on a directory."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb", *, encoding: Optional[str] = None) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the ``with`` block succeeds.

    ``mode`` is ``"wb"`` (binary, the default) or ``"w"``/``"wt"`` (text,
    ``encoding`` defaulting to UTF-8).  The temporary file lives next to
    ``path`` (same file system, so the final rename is atomic) and is named
    ``.<name>.<random>.tmp``.  On success it is flushed, fsync'ed and renamed
    onto ``path``, keeping the permission bits of a file it replaces.  On any
    exception it is deleted and ``path`` is untouched; the exception propagates.
    """
    if mode not in _WRITE_MODES:
        raise ValueError(f"atomic_write: expected mode one of {', '.join(map(repr, _WRITE_MODES))}, got {mode!r}")
    binary = "b" in mode
    if binary and encoding is not None:
        raise ValueError("atomic_write: binary mode takes no encoding")
    dest = pathlib.Path(path)
    tmp = tempfile.NamedTemporaryFile(
        mode=mode,
        dir=dest.parent,
        prefix=f".{dest.name}.",
        suffix=".tmp",
        delete=False,
        encoding=None if binary else (encoding or "utf-8"),
    )
    try:
        with tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, _final_mode(dest))
        os.replace(tmp.name, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    _fsync_directory(dest.parent)
