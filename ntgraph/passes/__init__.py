"""Compiler passes: functions ``Graph -> Graph`` that never mutate their input.

Each pass returns an annotated copy: node ``meta`` and graph ``attrs`` gain
the pass's results, the payloads are shared (they are immutable).  The default
pipeline is printable::

    >>> print(default_pipeline())
    1. infer_shapes         sizes of every node and (n_post, n_pre) of every projection
    ...
"""

from __future__ import annotations

from .core import (
    Pass,
    Pipeline,
    default_pipeline,
    estimate_resources,
    infer_shapes,
    resolve_constraints,
    schedule,
)
from .quantize import QUANTIZE_LOIHI, quantize

__all__ = [
    "Pass",
    "Pipeline",
    "default_pipeline",
    "infer_shapes",
    "schedule",
    "resolve_constraints",
    "estimate_resources",
    "quantize",
    "QUANTIZE_LOIHI",
]
