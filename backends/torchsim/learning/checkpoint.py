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
error while saving leaves the previous file intact and no temporary file.
"""

from __future__ import annotations

import os
import random
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ntgraph._atomic import atomic_write
from ntgraph.errors import FileFormatError

__all__ = ["FORMAT", "VERSION", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]

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
