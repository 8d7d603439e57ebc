"""Validation of a graph before lowering.

:func:`validate` checks structure, shapes, parameters, weights, constraints and
cycles, and raises the first problem as a :class:`~ntgraph.errors.ValidationError`
subclass whose message names the node, the attribute, the value and what was
expected.  It never uses ``assert``.  Options are checked by
:func:`check_options` (``dt`` against every time constant among them).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import networkx as nx
import numpy as np

from .constraints import find_violation, resolve
from .errors import ConstraintError, CycleError, ShapeError, ValidationError
from .graph import Graph
from .ir import Input, Node, Output, Population, Projection
from .models import NeuronModel

__all__ = ["validate", "check_options", "check_node", "check_inputs", "check_train_args", "find_instant_cycle",
           "DISCRETIZATIONS", "TIMINGS"]

DISCRETIZATIONS = ("euler", "exact")
TIMINGS = ("sync", "pipelined")


def validate(graph: Graph, *, dt: Optional[float] = None, timing: str = "sync") -> None:
    """Check ``graph`` and raise the first problem found.

    With ``dt`` given, every time constant must be at least ``dt``.  With
    ``timing="sync"`` every cycle needs a projection of delay >= 1;
    ``"pipelined"`` delays every projection by one step, so any cycle is fine.
    """
    if not isinstance(graph, Graph):
        raise ValidationError(f"graph: expected an ntgraph Graph, got {type(graph).__name__}")
    if len(graph) == 0:
        raise ValidationError(f"graph '{graph.name}': is empty; expected at least one Input, Population and Output")
    if not graph.outputs:
        raise ValidationError(f"graph '{graph.name}': has no Output; add one with graph.output(name, source)")
    for node_id, payload in graph.items():
        _check_structure(graph, node_id, payload)
        check_node(node_id, payload, dt=dt)
    for node_id in graph.projections:
        _check_projection(graph, node_id)
    if timing == "sync":
        cycle = find_instant_cycle(graph)
        if cycle is not None:
            path = " -> ".join([*cycle, cycle[0]])
            raise CycleError(
                f"cycle {path}: every projection in it has delay 0, so no step order exists; "
                f"expected at least one projection with delay >= 1 (e.g. delay=1 on a recurrent projection)"
            )


def check_options(dt: float, discretization: str, timing: str) -> None:
    """Check the compile options ``dt`` (seconds), ``discretization`` and ``timing``."""
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating, np.integer)) or not math.isfinite(dt) or dt <= 0:
        raise ValidationError(f"compile option dt: expected a positive finite time step in seconds, got {dt!r}")
    if discretization not in DISCRETIZATIONS:
        raise ValidationError(
            f"compile option discretization: expected one of {', '.join(map(repr, DISCRETIZATIONS))}, got {discretization!r}"
        )
    if timing not in TIMINGS:
        raise ValidationError(f"compile option timing: expected one of {', '.join(map(repr, TIMINGS))}, got {timing!r}")


def check_node(node_id: str, payload: Node, *, dt: Optional[float] = None) -> None:
    """Checks that need only the payload: finite arrays, parameter signs, dt against tau."""
    kind = payload.kind
    if isinstance(payload, Population):
        _check_model(node_id, payload.model, dt)
    if isinstance(payload, Projection):
        for name in payload.array_names():
            arr = getattr(payload, name)
            if arr is not None and not _all_finite(arr):
                k = int(np.argmax(~np.isfinite(np.ravel(arr))))
                raise ValidationError(
                    f"{kind} '{node_id}'.{name}: expected finite values, got {np.ravel(arr)[k]} at flat index {k}"
                )


_CHUNK = 1 << 22  # elements per slice when scanning large arrays (bounds the temporaries to a few MiB)


def _all_finite(arr: np.ndarray) -> bool:
    """``np.all(np.isfinite(arr))`` in slices, without a boolean temporary the size of ``arr``."""
    flat = np.ravel(arr)
    return all(bool(np.isfinite(flat[k:k + _CHUNK]).all()) for k in range(0, flat.size, _CHUNK))


def _check_model(node_id: str, model: NeuronModel, dt: Optional[float]) -> None:
    mname = type(model).__name__
    for name in model.param_names():
        arr = getattr(model, name)
        if arr is None:
            continue
        info = model.param_info(name)
        unit = f" (in {info['unit']})" if info["unit"] else ""
        where = f"Population '{node_id}'.model.{name} ({mname})"
        flat = np.ravel(arr)
        bad = ~np.isfinite(flat)
        if info["positive"]:
            bad |= ~(flat > 0)
            expected = f"positive finite values{unit}"
        elif info["nonnegative"]:
            bad |= ~(flat >= 0)
            expected = f"non-negative finite values{unit}"
        else:
            expected = "finite values"
        if np.any(bad):
            k = int(np.argmax(bad))
            raise ValidationError(f"{where}: expected {expected}, got {flat[k]:g} (neuron {k})")
        if dt is not None and info["unit"] == "s" and np.any(flat < dt):
            k = int(np.argmin(flat))
            raise ValidationError(
                f"{where}: dt={dt:g} s is larger than the time constant {flat[k]:g} s (neuron {k}); "
                f"expected dt <= {name} (make dt smaller or the time constant larger)"
            )


def _check_structure(graph: Graph, node_id: str, payload: Node) -> None:
    kind = payload.kind
    preds, succs = graph.predecessors(node_id), graph.successors(node_id)
    if isinstance(payload, Input) and preds:
        raise ValidationError(f"Input '{node_id}': expected no incoming edges, got {preds}")
    if isinstance(payload, Output):
        if succs:
            raise ValidationError(f"Output '{node_id}': expected no outgoing edges, got {succs}")
        src = graph.source(node_id)
        if not isinstance(graph[src], (Input, Population)):
            raise ValidationError(f"Output '{node_id}'.source: expected an Input or Population, got {graph[src].kind} '{src}'")
        if graph.node_size(src) != payload.size:
            raise ShapeError(f"Output '{node_id}'.size: expected {graph.node_size(src)} (the size of '{src}'), got {payload.size}")
    if isinstance(payload, Population):
        for p in preds:
            if not isinstance(graph[p], Projection):
                raise ValidationError(
                    f"Population '{node_id}': input from {graph[p].kind} '{p}'; expected only projections into a population"
                )
    if isinstance(payload, Projection):
        src, dst = graph.source(node_id), graph.target(node_id)
        if not isinstance(graph[src], (Input, Population)):
            raise ValidationError(f"{kind} '{node_id}'.source: expected an Input or Population, got {graph[src].kind} '{src}'")
        if not isinstance(graph[dst], Population):
            raise ValidationError(f"{kind} '{node_id}'.target: expected a Population, got {graph[dst].kind} '{dst}'")
    if not isinstance(payload, (Input, Output, Population, Projection)):
        raise ValidationError(
            f"node '{node_id}': unknown node type {kind}; expected an Input, Output, Population or Projection "
            f"(Dense, Sparse, OneToOne or a subclass)"
        )


def _check_projection(graph: Graph, node_id: str) -> None:
    payload = graph[node_id]
    src, dst = graph.source(node_id), graph.target(node_id)
    n_pre, n_post = graph.node_size(src), graph.node_size(dst)
    if (payload.n_post, payload.n_pre) != (n_post, n_pre):
        what = "weight" if payload.weight.ndim == 2 else "n_post, n_pre"
        raise ShapeError(
            f"{payload.kind} '{node_id}'.{what}: expected shape ({n_post}, {n_pre}) for '{src}' ({n_pre}) -> "
            f"'{dst}' ({n_post}), got ({payload.n_post}, {payload.n_pre})"
        )
    rc = resolve(node_id, payload, getattr(graph[src], "dale", None), src == dst)
    problem = find_violation(payload.weight, rc)
    if problem is not None:
        raise ConstraintError(f"{payload.kind} '{node_id}'.weight: {problem}")


def find_instant_cycle(graph: Graph) -> Optional[list[str]]:
    """A cycle whose projections all have delay 0, as a list of node ids, or None."""
    undelayed = graph.to_networkx()  # a plain copy without the delayed projections: a filtered view's
    # per-lookup filter made this ~10x slower on a 1000-population graph (benchmarks/compile_time.py)
    undelayed.remove_nodes_from(
        [n for n, p in undelayed.nodes(data="payload") if isinstance(p, Projection) and p.delay > 0]
    )
    try:
        edges = nx.find_cycle(undelayed)
    except nx.NetworkXNoCycle:
        return None
    return [u for u, _ in edges]


def check_inputs(graph: Graph, inputs: Mapping[str, Any]) -> None:
    """Check run-time inputs of :func:`ntgraph.simulate`: one real, finite ``[T, batch, size]`` array per Input.

    Arrays that numpy cannot read without a copy from a device (e.g. CUDA
    tensors) are checked for names and shape only.
    """
    if not isinstance(inputs, Mapping):
        raise ValidationError(f"inputs: expected a dict of arrays by Input name, got {type(inputs).__name__}")
    unknown = sorted(set(inputs) - set(graph.inputs))
    missing = [i for i in graph.inputs if i not in inputs]
    if unknown or missing:
        raise ValidationError(
            f"inputs: expected arrays for {graph.inputs}, got names {sorted(map(str, inputs))}"
            + (f" (unknown: {unknown})" if unknown else "") + (f" (missing: {missing})" if missing else "")
        )
    first: Optional[tuple] = None
    for name in graph.inputs:
        x = inputs[name]
        size = graph.node_size(name)
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError, RuntimeError):  # a device tensor: shape only
            arr = None
        shape = tuple(arr.shape if arr is not None else getattr(x, "shape", ()))
        if arr is not None and arr.dtype.kind not in "biuf":
            raise ValidationError(
                f"Input '{name}': expected real numbers (bool, int or float), got an array of dtype {arr.dtype}"
            )
        if len(shape) != 3 or shape[-1] != size or shape[0] < 1 or shape[1] < 1:
            raise ShapeError(
                f"Input '{name}': expected a tensor of shape [T, batch, {size}] (T >= 1, batch >= 1), got shape {shape}"
            )
        if first is None:
            first = shape[:2]
        elif shape[:2] != first:
            raise ShapeError(f"Input '{name}': has (T, batch) = {shape[:2]}, expected {first} like the other inputs")
        if arr is not None and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise ValidationError(
                f"Input '{name}': expected finite values, got {arr[tuple(bad)]} at [t, batch, channel] = {tuple(int(i) for i in bad)}"
            )


def _check_number(fn: str, name: str, value: Any, *, integer: bool, minimum: float, strict: bool = False) -> None:
    ok_type = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not math.isfinite(float(value)) \
            or (value <= minimum if strict else value < minimum):
        kind = "an integer" if integer else "a finite number"
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValidationError(f"{fn} {name}: expected {kind} {bound}, got {value!r}")


def check_train_args(*, epochs: Any, batch_size: Any, lr: Any, seed: Any, task: Any, algorithm: Any) -> None:
    """Check the arguments of :func:`ntgraph.train` that do not depend on the backend."""
    _check_number("train", "epochs", epochs, integer=True, minimum=1)
    _check_number("train", "batch_size", batch_size, integer=True, minimum=1)
    _check_number("train", "lr", lr, integer=False, minimum=0.0, strict=True)
    _check_number("train", "seed", seed, integer=True, minimum=0)
    if task not in ("classification", "regression"):
        raise ValidationError(f"train task: expected 'classification' or 'regression', got {task!r}")
    if not isinstance(algorithm, str):
        raise ValidationError(f"train algorithm: expected 'bptt', 'tbptt:K' or 'eprop', got {algorithm!r}")
