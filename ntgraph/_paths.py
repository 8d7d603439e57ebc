"""Checks on the file paths that ntgraph's readers and writers are given.

A writer must fail before it starts, with a :class:`~ntgraph.errors.ValidationError`
naming the path and what is wrong, rather than with an ``OSError`` from deep
inside an atomic write (``FileNotFoundError`` for a missing folder,
``IsADirectoryError`` when the path is a folder).  Readers of a missing file
raise :class:`~ntgraph.errors.FileFormatError` themselves (``io.load``,
``from_nir``); here they only check the argument's type.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from .errors import ValidationError

__all__ = ["as_path", "check_write_path"]


def as_path(path: Any, what: str) -> pathlib.Path:
    """``path`` as a :class:`pathlib.Path`; a ValidationError naming ``what`` if it is not a str or PathLike."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise ValidationError(f"{what} path: expected a str or os.PathLike file path, got {type(path).__name__} {path!r:.60}")
    p = pathlib.Path(path)
    if str(path) == "" or str(p) in ("", "."):
        raise ValidationError(f"{what} path: expected a file path, got {str(path)!r}")
    return p


def check_write_path(path: Any, what: str) -> pathlib.Path:
    """The path a writer ``what`` may write to: its folder exists and it is not itself a folder."""
    p = as_path(path, what)
    if p.is_dir():
        raise ValidationError(f"{what} path '{p}': is a folder; expected a file path such as '{p / 'model'}'")
    parent = p.parent if str(p.parent) else pathlib.Path(".")
    if not parent.exists():
        raise ValidationError(f"{what} path '{p}': the folder '{parent}' does not exist; create it first")
    if not parent.is_dir():
        raise ValidationError(f"{what} path '{p}': '{parent}' is not a folder")
    return p
