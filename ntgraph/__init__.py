"""ntgraph: a graph-based neuromorphic compiler and simulator.

Build a network as a :class:`Graph` of populations and projections with
constraints attached, then ``compile(graph, target, dt=...)`` it for a backend.
The core imports numpy and networkx only; backends (torch, ...) are found by
name through entry points and import their heavy dependencies themselves.
"""

from __future__ import annotations

from ._atomic import atomic_write
from .compiler import CompileOptions, compile, simulate, train
from .constraints import (
    BalancedInit,
    ConnectivityMask,
    DalesLaw,
    NoSelfConnections,
    SignMask,
    WeightBounds,
)
from .errors import (
    BackendNotFoundError,
    ConstraintError,
    CycleError,
    FileFormatError,
    NtgraphError,
    ShapeError,
    TrainingInterrupted,
    UnsupportedNodeError,
    ValidationError,
)
from .graph import Graph
from .memory import MemoryReport, estimate_memory
from .ir import Dense, Input, OneToOne, Output, Population, Projection, Sparse
from .models import ALIF, IF, LI, LIF, CubaLIF, NeuronModel, RateUnit, WilsonCowan
from .validate import validate

__version__ = "0.1.0"


def save(graph: Graph, path):  # type: ignore[no-untyped-def]
    """Save ``graph`` to ``path`` in ntgraph's own format (see :func:`ntgraph.io.save`)."""
    from .io import save as _save

    return _save(graph, path)


def load(path):  # type: ignore[no-untyped-def]
    """Load a graph saved by :func:`save` (see :func:`ntgraph.io.load`)."""
    from .io import load as _load

    return _load(path)


__all__ = [
    "Graph",
    "compile",
    "simulate",
    "train",
    "estimate_memory",
    "MemoryReport",
    "CompileOptions",
    "validate",
    "save",
    "load",
    "atomic_write",
    "Input",
    "Output",
    "Population",
    "Projection",
    "Dense",
    "Sparse",
    "OneToOne",
    "NeuronModel",
    "LIF",
    "CubaLIF",
    "ALIF",
    "IF",
    "LI",
    "WilsonCowan",
    "RateUnit",
    "DalesLaw",
    "SignMask",
    "ConnectivityMask",
    "NoSelfConnections",
    "WeightBounds",
    "BalancedInit",
    "NtgraphError",
    "ValidationError",
    "ShapeError",
    "CycleError",
    "ConstraintError",
    "FileFormatError",
    "UnsupportedNodeError",
    "BackendNotFoundError",
    "TrainingInterrupted",
    "__version__",
]
