"""The default passes and the :class:`Pipeline` that runs them in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import networkx as nx

from ..constraints import resolve
from ..graph import Graph
from ..ir import Population, Projection

__all__ = ["Pass", "Pipeline", "default_pipeline", "infer_shapes", "schedule", "resolve_constraints", "estimate_resources"]


@dataclass(frozen=True)
class Pass:
    """A named graph transformation ``fn(graph, **options) -> graph``."""

    name: str
    fn: Callable[..., Graph]
    description: str

    def __call__(self, graph: Graph, **options: object) -> Graph:
        return self.fn(graph, **options)


class Pipeline:
    """An ordered list of passes; ``str()`` prints one numbered line per pass."""

    def __init__(self, passes: Sequence[Pass]) -> None:
        self.passes = list(passes)

    def __iter__(self) -> Iterator[Pass]:
        return iter(self.passes)

    def __len__(self) -> int:
        return len(self.passes)

    def run(self, graph: Graph, **options: object) -> Graph:
        """Apply every pass in order; the input graph is never mutated."""
        for p in self.passes:
            graph = p(graph, **options)
        return graph

    def __str__(self) -> str:
        width = max((len(p.name) for p in self.passes), default=0)
        return "\n".join(f"{k}. {p.name:<{width}}  {p.description}" for k, p in enumerate(self.passes, 1))


def infer_shapes(graph: Graph, **_: object) -> Graph:
    """Annotate ``meta['size']`` on every node and ``meta['shape'] = (n_post, n_pre)`` on projections."""
    out = graph.copy()
    for node_id, payload in out.items():
        meta = out.meta(node_id)
        if isinstance(payload, Projection):
            meta["shape"] = (payload.n_post, payload.n_pre)
            meta["size"] = payload.n_post
        else:
            meta["size"] = payload.size
    return out


def schedule(graph: Graph, *, timing: str = "sync", **_: object) -> Graph:
    """Order the populations for one time step and fix every projection's effective delay.

    ``meta['delay']`` of a projection is its delay, plus one step under
    ``timing="pipelined"``.  ``attrs['order']`` lists the populations so that
    every undelayed projection's source comes before its target (ties in
    insertion order).  ``attrs['max_delay']`` is the longest effective delay.

    The plan of one step, shared by every backend that runs a time loop:
    ``meta['incoming']`` of a population lists ``(projection, source, delay)``
    of its incoming projections in insertion order, and ``attrs['history']``
    maps each node with delayed outgoing projections to the number of past
    outputs it must keep (its longest outgoing delay), in graph order.
    """
    out = graph.copy()
    extra = 1 if timing == "pipelined" else 0
    deps = nx.DiGraph()
    deps.add_nodes_from(out.populations)
    max_delay = 0
    for proj in out.projections:
        delay = out[proj].delay + extra
        out.meta(proj)["delay"] = delay
        max_delay = max(max_delay, delay)
        src, dst = out.source(proj), out.target(proj)
        if delay == 0 and isinstance(out[src], Population):
            deps.add_edge(src, dst)
    rank = {n: k for k, n in enumerate(out)}
    order = list(nx.lexicographical_topological_sort(deps, key=rank.get))
    history: dict[str, int] = {}
    for k, pop in enumerate(order):
        out.meta(pop)["order"] = k
        incoming = [(proj, out.source(proj), out.meta(proj)["delay"]) for proj in out.incoming(pop)]
        out.meta(pop)["incoming"] = incoming
        for _, src, delay in incoming:
            if delay > 0:
                history[src] = max(history.get(src, 0), delay)
    out.attrs["order"] = order
    out.attrs["history"] = {n: history[n] for n in out if n in history}
    out.attrs["max_delay"] = max_delay
    out.attrs["timing"] = timing
    return out


def resolve_constraints(graph: Graph, **_: object) -> Graph:
    """Annotate ``meta['constraints']``: the :class:`~ntgraph.constraints.ResolvedConstraints` of each projection."""
    out = graph.copy()
    for proj in out.projections:
        src = out.source(proj)
        out.meta(proj)["constraints"] = resolve(proj, out[proj], getattr(out[src], "dale", None), src == out.target(proj))
    return out


def estimate_resources(graph: Graph, **_: object) -> Graph:
    """Annotate ``attrs['resources']``: neurons, synapses, state variables and parameters."""
    out = graph.copy()
    neurons = synapses = state = params = 0
    for node_id, payload in out.items():
        if isinstance(payload, Population):
            neurons += payload.size
            state += payload.size * len(payload.model.state_vars)
            params += payload.size * len(payload.model.param_names())
        elif isinstance(payload, Projection):
            synapses += payload.n_synapses
            params += sum(getattr(payload, n).size for n in payload.array_names() if getattr(payload, n) is not None)
            state += payload.n_pre * out.meta(node_id).get("delay", payload.delay)
    out.attrs["resources"] = {
        "neurons": neurons,
        "synapses": synapses,
        "state_values": state,
        "parameters": params,
        "inputs": sum(out[n].size for n in out.inputs),
        "outputs": sum(out[n].size for n in out.outputs),
    }
    return out


def default_pipeline() -> Pipeline:
    """The passes every target runs, in order."""
    return Pipeline(
        [
            Pass("infer_shapes", infer_shapes, "sizes of every node and (n_post, n_pre) of every projection"),
            Pass("schedule", schedule, "step order of populations; effective delays (timing)"),
            Pass("resolve_constraints", resolve_constraints, "per-weight signs, masks and bounds of each projection"),
            Pass("estimate_resources", estimate_resources, "neuron, synapse, state and parameter counts"),
        ]
    )
