"""Shared machinery of the IR's frozen dataclasses that hold numpy arrays.

The IR payloads are plain frozen dataclasses.  numpy arrays are neither hashable
nor comparable with ``==`` as a whole, so the dataclasses here compare field by
field with :func:`numpy.array_equal` (dtype and shape included) and store every
array as a read-only copy, so a payload can never be changed behind the graph's
back.  Passes and training build new payloads with :meth:`IRData.replace`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T", bound="IRData")

__all__ = ["IRData", "frozen_array", "values_equal", "param"]


def frozen_array(value: Any, dtype: Any = np.float64) -> np.ndarray:
    """Return a read-only, C-contiguous copy of ``value`` as an array of ``dtype``."""
    try:
        arr = np.array(value, dtype=dtype, copy=True, order="C")
    except (TypeError, ValueError) as exc:
        from .errors import ValidationError

        raise ValidationError(f"expected an array of numbers ({np.dtype(dtype).name}), got {value!r:.60} ({exc})") from None
    arr.setflags(write=False)
    return arr


def values_equal(a: Any, b: Any) -> bool:
    """Structural equality that understands numpy arrays, tuples, lists and dicts."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
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
