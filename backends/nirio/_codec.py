"""ntgraph's own entries in NIR ``metadata``: plain values as JSON, arrays as datasets.

NIR writes a node's ``metadata`` dict recursively into HDF5: strings, arrays
and nested dicts survive ``nir.write``/``nir.read`` exactly (dtype and shape
included), but lists, tuples, ``None`` and dataclasses do not.  ntgraph
therefore stores, under the key ``"ntgraph"`` of a node's (or the graph's)
metadata, a dict ``{"json": <text>, "arrays": {"0": array, "1": ...}}``:
``json`` holds the values with the same tags as ntgraph's ``.ntg`` manifest
(``__array__`` referring to an entry of ``arrays``, ``__tuple__``,
``__float__`` for non-finite floats, ``__type__`` for constraints and neuron
models), so every constraint definition, reset mode, learnable flag and delay
reads back bit for bit.  Only classes registered in
:data:`ntgraph.constraints.CONSTRAINT_TYPES` and :data:`ntgraph.models.MODEL_TYPES`
may be named, and they are rebuilt through their constructors (validation runs
again).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

import numpy as np

from ntgraph.constraints import CONSTRAINT_TYPES
from ntgraph.errors import FileFormatError
from ntgraph.models import MODEL_TYPES

__all__ = ["KEY", "encode", "decode"]

#: The metadata key under which ntgraph keeps its entries.
KEY = "ntgraph"

_REGISTRY: dict[str, type] = {**CONSTRAINT_TYPES, **MODEL_TYPES}
_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def value(self, v: Any) -> Any:
        if v is None or type(v) in (bool, int, str):
            return v
        if type(v) is float:
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(v, np.ndarray):
            key = str(len(self.arrays))
            self.arrays[key] = np.array(v)  # h5py needs a plain (writable) array
            return {"__array__": key}
        if isinstance(v, (np.integer, np.floating, np.bool_)):
            return self.value(v.item())
        if type(v) is tuple:
            return {"__tuple__": [self.value(x) for x in v]}
        if type(v) is list:
            return [self.value(x) for x in v]
        if type(v) is dict:
            return {"__dict__": {str(k): self.value(x) for k, x in v.items()}}
        if dataclasses.is_dataclass(v) and type(v).__name__ in _REGISTRY:
            fields = {f.name: self.value(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}
            return {"__type__": type(v).__name__, "fields": fields}
        raise TypeError(f"ntgraph NIR metadata: cannot encode a value of type {type(v).__name__} ({v!r:.60})")


def encode(entries: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata dict ``{"json": ..., "arrays": {...}}`` holding ``entries``."""
    enc = _Encoder()
    text = json.dumps({k: enc.value(v) for k, v in entries.items()}, allow_nan=False, sort_keys=True)
    return {"json": text, "arrays": enc.arrays}


class _Decoder:
    def __init__(self, arrays: Mapping[str, Any], where: str) -> None:
        self.arrays = arrays
        self.where = where

    def error(self, what: str) -> FileFormatError:
        return FileFormatError(f"{self.where}: ntgraph metadata {what}")

    def value(self, v: Any) -> Any:
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is list:
            return [self.value(x) for x in v]
        if type(v) is not dict or len(v) not in (1, 2):
            raise self.error(f"holds an unrecognised value {v!r:.80}")
        if "__array__" in v:
            key = v["__array__"]
            if key not in self.arrays:
                raise self.error(f"refers to a missing array {key!r}")
            return np.array(self.arrays[key])
        if "__tuple__" in v:
            return tuple(self.value(x) for x in v["__tuple__"])
        if "__dict__" in v:
            return {k: self.value(x) for k, x in v["__dict__"].items()}
        if "__float__" in v:
            if v["__float__"] not in _NONFINITE:
                raise self.error(f"holds a malformed float {v!r}")
            return _NONFINITE[v["__float__"]]
        if "__type__" in v:
            cls = _REGISTRY.get(v["__type__"])
            if cls is None or not isinstance(v.get("fields"), dict):
                raise self.error(f"names an unknown type {v.get('__type__')!r}")
            kwargs = {k: self.value(x) for k, x in v["fields"].items()}
            try:
                return cls(**kwargs)
            except (TypeError, ValueError) as exc:
                raise self.error(f"holds an invalid {v['__type__']}: {exc}") from exc
        raise self.error(f"holds an unrecognised value {v!r:.80}")


def decode(metadata: Any, where: str) -> dict[str, Any] | None:
    """The entries stored by :func:`encode` in ``metadata[KEY]``, or None when absent.

    ``where`` names the node for error messages.  Raises
    :class:`~ntgraph.errors.FileFormatError` for a damaged entry.
    """
    if not isinstance(metadata, Mapping) or KEY not in metadata:
        return None
    entry = metadata[KEY]
    if not isinstance(entry, Mapping) or not isinstance(entry.get("json"), (str, bytes)):
        raise FileFormatError(f"{where}: ntgraph metadata is malformed (expected a 'json' text entry)")
    text = entry["json"].decode("utf-8") if isinstance(entry["json"], bytes) else entry["json"]
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise FileFormatError(f"{where}: ntgraph metadata is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise FileFormatError(f"{where}: ntgraph metadata is malformed (expected a JSON object)")
    arrays = entry.get("arrays", {})
    if not isinstance(arrays, Mapping):
        raise FileFormatError(f"{where}: ntgraph metadata 'arrays' is malformed")
    dec = _Decoder(arrays, where)
    return {k: dec.value(v) for k, v in raw.items()}
