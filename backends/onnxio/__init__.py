"""The ONNX backend: export ntgraph networks as ONNX models that run in any ONNX runtime.

The model is emitted straight from the IR with :mod:`onnx.helper` (no tracing,
no unrolled loop), in one of two modes:

* ``mode="step"``: one time step as a pure function
  ``(inputs_t, state_t) -> (outputs_t, state_{t+1})``, every population
  variable and every delay line an explicit, named input and output;
* ``mode="sequence"``: the whole time loop inside the model (one ``Scan``),
  inputs ``[time, batch, n]`` with dynamic time and batch.

Usage::

    from backends.onnxio import to_onnx, run_onnx
    model = to_onnx(graph, "net.onnx", dt=1e-3, mode="sequence", record=["hid.v"])
    results = run_onnx("net.onnx", {"x": x})        # same keys as the torch backend

or ``ntgraph.compile(graph, "onnx", dt=1e-3, mode="step")`` and
``ntgraph export net.ntg --format onnx --dt 1e-3 --out net.onnx --set mode=sequence``.
See ``docs/onnx.md`` for the state interface, the metadata and the limitations.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Optional, Sequence, Union

import onnx

from ntgraph._atomic import atomic_write
from ntgraph._paths import check_write_path
from ntgraph.compiler import CompileOptions, prepare
from ntgraph.graph import Graph

from .lower import DEFAULT_OPSET, INTERFACE_KEY, LOWERINGS, MIN_OPSET, MODES, ExportOptions, lower_graph
from .runtime import OnnxRunner, run_onnx

__all__ = [
    "OnnxBackend",
    "to_onnx",
    "run_onnx",
    "OnnxRunner",
    "ExportOptions",
    "LOWERINGS",
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "MODES",
    "INTERFACE_KEY",
    "save_model",
]

PathLike = Union[str, pathlib.Path]


def save_model(model: onnx.ModelProto, path: PathLike) -> pathlib.Path:
    """Write ``model`` to ``path`` atomically (a crash never leaves a half-written file)."""
    path = check_write_path(path, "ONNX export")
    data = model.SerializeToString()
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return path


class OnnxBackend:
    """``ntgraph.compile(graph, "onnx", dt=..., mode=..., dtype=..., opset=..., record=..., state_io=..., sparse=...)``."""

    name = "onnx"

    def lower(self, graph: Graph, options: CompileOptions) -> onnx.ModelProto:
        """The ONNX model of a prepared graph (options in ``options.extra``, see :class:`ExportOptions`)."""
        return lower_graph(graph, options, ExportOptions.from_extra(options.extra))

    def export(self, graph: Graph, options: CompileOptions, path: PathLike, **kwargs: Any) -> pathlib.Path:
        """Lower and write the model to ``path`` atomically (``ntgraph export --format onnx``)."""
        extra = {**options.extra, **kwargs}
        model = lower_graph(graph, options, ExportOptions.from_extra(extra))
        return save_model(model, path)

    def simulate(self, graph: Graph, options: CompileOptions, inputs: Mapping[str, Any],
                 record: Sequence[str]) -> dict[str, Any]:
        """Export (sequence mode unless ``mode`` is given), run in onnxruntime, return float64 arrays by key."""
        extra = dict(options.extra)
        extra.setdefault("mode", "sequence")
        given = extra.get("record", ())
        extra["record"] = tuple([given] if isinstance(given, str) else given) + tuple(record)
        model = lower_graph(graph, options, ExportOptions.from_extra(extra))
        results = run_onnx(model, dict(inputs))
        return {k: v.astype("float64") for k, v in results.items()}


def to_onnx(
    graph: Graph,
    path: Optional[PathLike] = None,
    *,
    dt: float,
    mode: str = "step",
    discretization: str = "euler",
    timing: str = "sync",
    dtype: str = "float32",
    opset: int = DEFAULT_OPSET,
    record: Sequence[str] = (),
    state_io: bool = False,
    sparse: str = "dense",
) -> onnx.ModelProto:
    """Export ``graph`` as an ONNX model; write it atomically to ``path`` when given.

    ``dt`` (seconds), ``discretization`` (``"euler"``/``"exact"``) and
    ``timing`` (``"sync"``/``"pipelined"``) are the compile options of every
    backend; the graph is validated and prepared with
    :func:`ntgraph.compiler.prepare`.  ``mode``: ``"step"`` or ``"sequence"``;
    ``dtype``: ``"float32"`` or ``"float64"``; ``opset``: 13 or newer
    (default 17); ``record``: extra outputs ``"pop"``/``"pop.var"``;
    ``state_io`` (sequence mode): the state as inputs and outputs, for
    chunked runs; ``sparse``: ``"dense"`` or ``"scatter"`` lowering of Sparse
    projections.  Returns the ``onnx.ModelProto``.
    """
    options = CompileOptions(dt=dt, discretization=discretization, timing=timing,
                             extra={"mode": mode, "dtype": dtype, "opset": opset, "record": tuple(record),
                                    "state_io": state_io, "sparse": sparse})
    export = ExportOptions.from_extra(options.extra)  # check the options before the (slower) graph checks
    model = lower_graph(prepare(graph, options), options, export)
    if path is not None:
        save_model(model, path)
    return model
