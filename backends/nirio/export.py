"""ntgraph -> NIR: lower a prepared graph to a ``nir.NIRGraph`` and write ``.nir`` files.

Mapping (see ``docs/interop.md`` for the full table):

* ``Input``/``Output`` -> ``nir.Input``/``nir.Output`` of shape ``(size,)`` (no batch dimension);
* a ``Population`` -> the NIR neuron node of its model (:mod:`backends.nirio.mapping`),
  every parameter written as a float64 array of one value per neuron;
* a ``Dense`` projection -> ``nir.Affine`` (with a bias) or ``nir.Linear``;
  ``Sparse`` -> ``nir.Linear`` of its dense matrix (duplicates summed);
  ``OneToOne`` -> ``nir.Scale`` (option ``one_to_one="scale"``, the default) or a
  diagonal ``nir.Linear`` (``one_to_one="linear"``, for peers that lack Scale);
  the weights written are the *effective* weights (constraints applied);
* a projection's delay of ``d`` steps (the effective delay: ``+1`` under
  ``timing="pipelined"``) -> a ``nir.Delay`` of ``d*dt`` seconds placed *before*
  the weights (so a bias is never delayed), except a delay of 1 that closes a
  cycle, which NIR leaves implicit (:mod:`backends.nirio.delays`).

Everything NIR has no field for -- constraint definitions, reset mode,
learnable flags, delays in steps, the projection kind, sparse indices, ALIF's
adaptation -- goes into each node's ``metadata["ntgraph"]`` (:mod:`backends.nirio._codec`),
and the graph's own metadata records the name, seed, node order, ``dt``,
``discretization`` and ``timing``, so :func:`backends.nirio.from_nir` rebuilds an
identical :class:`~ntgraph.graph.Graph`.

Models a peer would read differently from ntgraph (ALIF as LIF, subtract reset)
are exported with one :class:`NirExportWarning` naming them, or refused with
:class:`~ntgraph.errors.UnsupportedNodeError` under ``strict=True``.
Rate models are always refused: NIR has no node for them.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import warnings
from typing import Any, Union

import nir
import numpy as np

from ntgraph.compiler import CompileOptions
from ntgraph.constraints import project_weights
from ntgraph.errors import UnsupportedNodeError, ValidationError
from ntgraph.graph import Graph
from ntgraph.ir import Dense, Input, OneToOne, Output, Population, Projection, Sparse

from . import _codec
from .delays import choose_explicit
from .mapping import NIR_NODE, PARAM_FIELDS, UNSUPPORTED, lossy_fields

__all__ = ["lower", "write", "NirExportWarning", "OPTIONS", "FORMAT_VERSION", "nir_key"]

#: Version of ntgraph's metadata layout inside NIR files.
FORMAT_VERSION = 1
#: Backend options (``CompileOptions.extra``) with their defaults.
OPTIONS: dict[str, Any] = {"strict": False, "one_to_one": "scale"}
ONE_TO_ONE = ("scale", "linear")


class NirExportWarning(UserWarning):
    """A node was exported, but a peer reading only NIR's fields will simulate it differently."""


def nir_key(node_id: str) -> str:
    """The NIR node name of an ntgraph id: ``/`` (an HDF5 path separator) and ``%`` percent-encoded."""
    key = node_id.replace("%", "%25").replace("/", "%2F")
    return "%2E" * len(key) if key in (".", "..") else key


def _array(value: Any) -> np.ndarray:
    return np.array(value, dtype=np.float64)


def _check_options(options: CompileOptions) -> dict[str, Any]:
    unknown = set(options.extra) - set(OPTIONS)
    if unknown:
        raise ValidationError(f"nir backend: unknown option(s) {sorted(unknown)}; expected some of {sorted(OPTIONS)}")
    extra = {**OPTIONS, **options.extra}
    if not isinstance(extra["strict"], (bool, np.bool_)):
        raise ValidationError(f"nir backend option strict: expected True or False, got {extra['strict']!r}")
    if extra["one_to_one"] not in ONE_TO_ONE:
        raise ValidationError(
            f"nir backend option one_to_one: expected one of {', '.join(map(repr, ONE_TO_ONE))}, got {extra['one_to_one']!r}"
        )
    return extra


def _population(node_id: str, pop: Population) -> tuple[nir.NIRNode, dict[str, Any]]:
    model = pop.model
    cls = type(model)
    fields = next((PARAM_FIELDS[c] for c in cls.__mro__ if c in PARAM_FIELDS), None)
    if fields is None:
        why = next((UNSUPPORTED[c] for c in cls.__mro__ if c in UNSUPPORTED), "it has no counterpart in NIR 1.0")
        supported = ", ".join(sorted(c.__name__ for c in PARAM_FIELDS))
        raise UnsupportedNodeError(
            f"backend 'nir': Population '{node_id}' has model {cls.__name__}, which NIR cannot express: {why}; "
            f"exportable models: {supported}"
        )
    nir_cls = getattr(nir, NIR_NODE[next(c for c in cls.__mro__ if c in NIR_NODE)])
    kwargs = {nir_name: _array(getattr(model, name)) for name, nir_name in fields.items() if nir_name is not None}
    params = {name: _array(getattr(model, name)) for name, nir_name in fields.items() if nir_name is None}
    plain = {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if not f.metadata.get("per_neuron")}
    meta = {
        "kind": "Population", "id": node_id, "model": cls.__name__, "size": pop.size, "params": params,
        "fields": plain, "constraints": pop.constraints, "learnable": pop.learnable,
    }
    return nir_cls(**kwargs), meta


def _projection(graph: Graph, node_id: str, proj: Projection, one_to_one: str) -> tuple[nir.NIRNode, dict[str, Any]]:
    rc = graph.meta(node_id).get("constraints")
    weight = proj.weight if rc is None else project_weights(proj.weight, rc)
    meta: dict[str, Any] = {
        "kind": type(proj).__name__, "id": node_id, "delay": proj.delay,
        "constraints": proj.constraints, "learnable": proj.learnable,
    }
    if isinstance(proj, Dense):
        meta["bias"] = proj.bias is not None
        if proj.bias is not None:
            return nir.Affine(weight=_array(weight), bias=_array(proj.bias)), meta
        return nir.Linear(weight=_array(weight)), meta
    if isinstance(proj, OneToOne):
        if one_to_one == "scale":
            return nir.Scale(scale=_array(weight)), meta
        return nir.Linear(weight=np.diag(_array(weight))), meta
    if isinstance(proj, Sparse):
        pairs = proj.post_index.astype(np.int64) * proj.n_pre + proj.pre_index
        meta.update(n_post=proj.n_post, n_pre=proj.n_pre, post_index=np.array(proj.post_index),
                    pre_index=np.array(proj.pre_index))
        if np.unique(pairs).size != pairs.size:  # duplicates add up: the dense matrix cannot give them back
            meta["weight"] = np.array(proj.weight)
        return nir.Linear(weight=proj.replace(weight=weight).dense_weight()), meta
    raise UnsupportedNodeError(
        f"backend 'nir': Projection '{node_id}' has type {type(proj).__name__}, which this backend cannot lower; "
        f"supported: Dense, Sparse, OneToOne"
    )


def _unique(base: str, taken: set[str]) -> str:
    key, k = base, 2
    while key in taken:
        key, k = f"{base}_{k}", k + 1
    taken.add(key)
    return key


def lower(graph: Graph, options: CompileOptions) -> nir.NIRGraph:
    """The NIR graph of a prepared (validated, annotated) ``graph``; see the module docstring."""
    extra = _check_options(options)
    keys = {node_id: nir_key(node_id) for node_id in graph}
    if len(set(keys.values())) != len(keys):
        raise ValidationError(f"graph '{graph.name}': two node ids map to the same NIR name after escaping '/' and '%'")
    taken = set(keys.values())
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    lossy: list[str] = []

    delays = {p: int(graph.meta(p).get("delay", graph[p].delay)) for p in graph.projections}
    structure = [(p, graph.source(p), graph.target(p), delays[p]) for p in graph.projections]
    # NIR's type inference gives every node without inputs an Input of its own when the file is
    # read, so the importer measures depths from those too.
    roots = graph.inputs + [p for p in graph.populations if not graph.predecessors(p)]
    explicit = choose_explicit(structure, roots)

    for node_id, payload in graph.items():
        key = keys[node_id]
        if isinstance(payload, Input):
            node: nir.NIRNode = nir.Input(input_type=np.array([payload.size]))
            meta = {"kind": "Input", "id": node_id, "size": payload.size, "constraints": payload.constraints}
        elif isinstance(payload, Output):
            node = nir.Output(output_type=np.array([payload.size]))
            meta = {"kind": "Output", "id": node_id, "size": payload.size}
            edges.append((keys[graph.source(node_id)], key))
        elif isinstance(payload, Population):
            node, meta = _population(node_id, payload)
            notes = lossy_fields(payload.model)
            if notes:
                lossy.append(f"'{node_id}' ({type(payload.model).__name__}): {'; '.join(notes)}")
        elif isinstance(payload, Projection):
            node, meta = _projection(graph, node_id, payload, extra["one_to_one"])
            src = keys[graph.source(node_id)]
            if node_id in explicit:
                dkey = _unique(f"{key}.delay", taken)
                n_pre = graph.node_size(graph.source(node_id))
                nodes[dkey] = nir.Delay(
                    delay=np.full(n_pre, delays[node_id] * options.dt),
                    metadata={_codec.KEY: _codec.encode({"kind": "Delay", "projection": node_id,
                                                         "steps": delays[node_id]})},
                )
                edges.append((src, dkey))
                src = dkey
            edges.append((src, key))
            edges.append((key, keys[graph.target(node_id)]))
        else:
            raise UnsupportedNodeError(
                f"backend 'nir': node '{node_id}' has type {payload.kind}, which this backend cannot lower; "
                f"supported: Input, Output, Population, Dense, Sparse, OneToOne"
            )
        node.metadata = {_codec.KEY: _codec.encode(meta)}
        nodes[key] = node

    if lossy:
        text = "; ".join(lossy)
        if extra["strict"]:
            raise UnsupportedNodeError(
                f"backend 'nir' (strict): NIR cannot express {text}. Export without strict=True to keep these "
                f"in ntgraph's metadata (ntgraph reads them back; peers do not)"
            )
        warnings.warn(
            f"NIR export of graph '{graph.name}': peers reading this file will not see {text}; ntgraph keeps "
            f"them in the file's metadata and reads them back exactly",
            NirExportWarning,
            stacklevel=3,
        )

    if not any(graph.successors(i) for i in graph.inputs):
        raise ValidationError(
            f"graph '{graph.name}': NIR needs an Input connected to the network (its type inference starts at the "
            f"Inputs, and nir.read would reject the file); expected at least one projection or Output from an Input"
        )
    from ntgraph import __version__

    graph_meta = {
        "format": "ntgraph", "version": FORMAT_VERSION, "ntgraph_version": __version__,
        "name": graph.name, "seed": graph.seed, "order": [n for n in graph],
        "dt": options.dt, "discretization": options.discretization, "timing": options.timing,
    }
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata={_codec.KEY: _codec.encode(graph_meta)})
    except (ValueError, AssertionError) as exc:
        raise ValidationError(f"graph '{graph.name}': NIR rejects the exported graph ({exc})") from exc


def write(nir_graph: nir.NIRGraph, path: Union[str, pathlib.Path]) -> pathlib.Path:
    """Write ``nir_graph`` to ``path`` with ``nir.write``, atomically (all or nothing)."""
    from ntgraph._atomic import atomic_write
    from ntgraph._paths import check_write_path

    dest = check_write_path(path, "NIR export")
    buffer = io.BytesIO()
    nir.write(buffer, nir_graph)
    with atomic_write(dest, "wb") as fh:
        fh.write(buffer.getvalue())
    return dest

