"""Shared machinery of the IR's frozen dataclasses that hold numpy arrays.

The IR payloads are plain frozen dataclasses.  numpy arrays are neither hashable
nor comparable with ``==`` as a whole, so the dataclasses here compare field by
field with :func:`numpy.array_equal` (dtype and shape included; integer arrays of
different integer dtypes, e.g. int32 and int64 synapse indices, compare by value) and store every
array as a read-only copy, so a payload can never be changed behind the graph's
back.  Passes and training build new payloads with :meth:`IRData.replace`.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Optional, TypeVar

import numpy as np

T = TypeVar("T", bound="IRData")

__all__ = ["IRData", "frozen_array", "values_equal", "param", "uniform_value"]

#: Arrays made by :func:`frozen_array` (id -> weak reference): read-only copies nobody else can write to, so
#: passing one back to :func:`frozen_array` (``payload.replace(...)``, a pass rebuilding a payload) needs no
#: second copy.  Saves one full copy of every synapse array per rebuilt payload (issue 10, large networks).
_FROZEN: dict[int, "weakref.ref[np.ndarray]"] = {}


def _forget(key: int) -> Any:
    def callback(_ref: Any) -> None:
        if _FROZEN.get(key) is _ref:
            del _FROZEN[key]
    return callback


def frozen_array(value: Any, dtype: Any = np.float64) -> np.ndarray:
    """Return a read-only, C-contiguous copy of ``value`` as an array of ``dtype``.

    An array this function made before (still read-only, of ``dtype``) is returned as it is: it
    already is such a copy, and no one holds a writable view of it.
    """
    if isinstance(value, np.ndarray) and not value.flags.writeable and value.dtype == np.dtype(dtype):
        ref = _FROZEN.get(id(value))
        if ref is not None and ref() is value:
            return value
    try:
        arr = np.array(value, dtype=dtype, copy=True, order="C")
    except (TypeError, ValueError) as exc:
        from .errors import ValidationError

        raise ValidationError(f"expected an array of numbers ({np.dtype(dtype).name}), got {value!r:.60} ({exc})") from None
    arr.setflags(write=False)
    key = id(arr)
    _FROZEN[key] = weakref.ref(arr, _forget(key))
    return arr


def uniform_value(arr: np.ndarray) -> Optional[Any]:
    """The one value of ``arr`` if it is a broadcast view of a single value (all strides 0), else None.

    Such read-only views (``np.broadcast_to(value, shape)``) stand for per-element arrays whose elements
    are all equal without storing them, e.g. the resolved constraints of an unconstrained projection.
    Size-0 and size-1 arrays count as uniform too (None for size 0).
    """
    if arr.size == 0:
        return None
    if arr.size == 1 or all(s == 0 for s, n in zip(arr.strides, arr.shape) if n > 1):
        return arr.reshape(-1)[0] if arr.size == 1 else arr[(0,) * arr.ndim]
    return None


def values_equal(a: Any, b: Any) -> bool:
    """Structural equality that understands numpy arrays, tuples, lists and dicts."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        same_kind = a.dtype == b.dtype or (a.dtype.kind in "iu" and b.dtype.kind in "iu")  # int32/int64 indices
        return same_kind and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    return bool(a == b) if type(a) is type(b) else False


def param(default: Any = dataclasses.MISSING, *, unit: str = "", positive: bool = False,
          nonnegative: bool = False, doc: str = "") -> Any:
    """Declare a per-neuron float parameter of a neuron model.

    ``unit`` is printed in summaries and docs; ``positive``/``nonnegative`` are
    checked by validation with an error naming the node and the attribute.
    """
    meta = {"per_neuron": True, "unit": unit, "positive": positive, "nonnegative": nonnegative, "doc": doc}
    return dataclasses.field(default=default, metadata=meta)


class IRData:
    """Mixin for the IR's frozen dataclasses: array-aware equality and ``replace``."""

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        return all(
            values_equal(getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        )

    __hash__ = None  # type: ignore[assignment]  # arrays make payloads unhashable

    def replace(self: T, **changes: Any) -> T:
        """Return a copy with ``changes`` applied (the original is never mutated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def _set(self, name: str, value: Any) -> None:
        """Assign a field from ``__post_init__`` of a frozen dataclass."""
        object.__setattr__(self, name, value)
