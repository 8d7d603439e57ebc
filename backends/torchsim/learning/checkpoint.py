"""Trainer checkpoints: one ``torch.save`` file written atomically, and random-number states.

A checkpoint is a dict tagged ``format = "ntgraph.trainer-checkpoint"`` and
``version``, holding everything a bit-identical resume needs: the model's
``state_dict``, the optimiser's and scheduler's, the trainer's counters and
history, the callbacks' and algorithm's states, and the random-number states
of torch (CPU and CUDA), numpy, Python's :mod:`random` and the trainer's
data-order generator.  Every value is a tensor, a number, a string or a
container of those, so it loads with ``torch.load(weights_only=True)``: no
pickled code is executed when reading a checkpoint.

Files are written with :func:`ntgraph._atomic.atomic_write`: a crash or an
error while saving leaves the previous file intact and no temporary file.  A
process killed outright (SIGKILL, power loss) in the middle of a write leaves
its half-written temporary file (``.<name>.<random>.tmp``) next to the intact
previous checkpoint; :func:`latest_checkpoint` never reads such files and
:func:`remove_stale_temp_files` deletes them.
"""

from __future__ import annotations

import logging
import os
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ntgraph._atomic import atomic_write
from ntgraph.errors import FileFormatError, ValidationError

__all__ = ["FORMAT", "VERSION", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "remove_stale_temp_files",
           "rng_state", "set_rng_state"]

log = logging.getLogger("ntgraph.training")

#: Temporary files of :func:`ntgraph._atomic.atomic_write` for a ``.pt`` destination.
_TEMP_NAME = re.compile(r"\..+\.pt\..+\.tmp")

FORMAT = "ntgraph.trainer-checkpoint"
VERSION = 1

PathLike = Union[str, os.PathLike]


# ----------------------------------------------------------------------------- random-number states
def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def _python_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _set_python_state(state: dict[str, Any]) -> None:
    internal = tuple(int(v) for v in state["internal"].tolist())
    random.setstate((state["version"], internal, state["gauss"]))


def rng_state(generators: Optional[dict[str, torch.Generator]] = None) -> dict[str, Any]:
    """The global random states (torch CPU and CUDA, numpy, Python) plus named torch generators."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": _python_state(),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generators: Optional[dict[str, torch.Generator]] = None) -> None:
    """Restore what :func:`rng_state` returned (generators by name; unknown names are an error)."""
    torch.set_rng_state(state["torch"])
    _set_numpy_state(state["numpy"])
    _set_python_state(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    gens = generators or {}
    for name, gen_state in state["generators"].items():
        if name not in gens:
            raise FileFormatError(f"checkpoint: random state for generator {name!r}, which this trainer does not have")
        gens[name].set_state(gen_state)


# ----------------------------------------------------------------------------- files
def save_checkpoint(path: PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tagged with the format and version) atomically with ``torch.save``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, **payload}
    with atomic_write(path, "wb") as fh:
        torch.save(data, fh)
    return path


def load_checkpoint(path: PathLike, map_location: Any = "cpu", weights_only: bool = True) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises :class:`~ntgraph.errors.FileFormatError` for a missing, truncated or
    foreign file or an unsupported version.  ``weights_only=True`` (default)
    refuses pickled code; pass ``False`` only for files you trust whose
    scheduler or callback states hold custom objects.
    """
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise ValidationError(f"load_checkpoint path: expected a str or os.PathLike file path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"checkpoint {path}: no such file")
    # save_checkpoint always writes torch's zip format; anything else is foreign (and would reach
    # torch's legacy pickle reader, whose errors on garbage are arbitrary: IndexError, struct.error, ...).
    if not zipfile.is_zipfile(path):
        raise FileFormatError(f"checkpoint {path}: not a torch checkpoint (not a zip archive, or truncated)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=weights_only)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt archive makes torch's reader fail in arbitrary ways
        raise FileFormatError(f"checkpoint {path}: cannot be read as a torch checkpoint (truncated or corrupt?): "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FileFormatError(f"checkpoint {path}: not an ntgraph trainer checkpoint (expected format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise FileFormatError(f"checkpoint {path}: unsupported version {data.get('version')!r}; expected {VERSION}")
    return data


def remove_stale_temp_files(directory: PathLike) -> list[Path]:
    """Delete the temporary files that writes of ``*.pt`` files killed mid-way left in ``directory``.

    Only names of the form ``.<name>.pt.<random>.tmp`` (those
    :func:`ntgraph._atomic.atomic_write` creates) are touched; returns the
    paths removed.  Call it only when no other process is writing checkpoints
    into ``directory`` (the trainer calls it when a fit starts and on resume).
    """
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for path in sorted(directory.iterdir()):
        if _TEMP_NAME.fullmatch(path.name) and path.is_file():
            try:
                path.unlink()
            except OSError:
                continue
            log.info("removed %s, the temporary file of a checkpoint write that did not finish", path)
            removed.append(path)
    return removed


def latest_checkpoint(directory: PathLike, map_location: Any = "cpu",
                      weights_only: bool = True) -> tuple[Path, dict[str, Any]]:
    """The newest readable checkpoint in ``directory`` and its contents.

    Every ``*.pt`` file directly in ``directory`` (not hidden, so never a
    temporary file) is read with :func:`load_checkpoint`; unreadable ones
    (truncated, corrupt, foreign) are skipped with a :class:`RuntimeWarning`
    naming the file and the reason.  The newest is the one with the most
    training iterations, then epochs; on a tie ``last.pt`` wins, then the most
    recently modified file.  Raises :class:`~ntgraph.errors.FileFormatError`
    when the directory does not exist or holds no readable checkpoint.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileFormatError(f"checkpoint directory {directory}: no such directory")
    best: Optional[tuple[tuple[int, int, int, float], Path, dict[str, Any]]] = None
    skipped = []
    for path in sorted(directory.glob("*.pt")):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            data = load_checkpoint(path, map_location=map_location, weights_only=weights_only)
            counters = data["counters"]
            key = (int(counters["iteration"]), int(counters["epoch"]), int(path.name == "last.pt"),
                   path.stat().st_mtime)
        except (FileFormatError, KeyError, TypeError, ValueError, OSError) as exc:
            reason = str(exc) if isinstance(exc, FileFormatError) else f"{type(exc).__name__}: {exc}"
            warnings.warn(f"skipping checkpoint {path}: {reason}", RuntimeWarning, stacklevel=2)
            skipped.append(path.name)
            continue
        if best is None or key > best[0]:
            best = (key, path, data)
    if best is None:
        detail = f" (unreadable: {', '.join(skipped)})" if skipped else ""
        raise FileFormatError(f"checkpoint directory {directory}: no readable *.pt checkpoint{detail}")
    return best[1], best[2]
