"""How a NIR graph's cycles become delays, and the conversion of NIR ``Delay`` nodes.

NIR is continuous-time: a cycle such as ``lif -> w_rec -> lif`` (snnTorch's
RLeaky, Rockpool's recurrent LIF) has no Delay node, and every discrete-time
simulator reads it as "the recurrent input at step t is the output of step
t-1".  ntgraph makes that reading explicit (``docs/interop.md``):

**Implicit cycle delay.** Take the projections that carry no explicit delay.
Every one of them that lies on a cycle of such projections (its source and its
target are in the same strongly connected component, or it is a
self-projection) *and* goes backwards or sideways -- ``depth(target) <=
depth(source)``, where ``depth`` is the number of projections on the shortest
path from any Input (unreachable nodes have infinite depth) -- gets delay 1.
Around any cycle the depth cannot grow at every step, so every undelayed
cycle is cut; a feed-forward projection never is, and two populations at the
same depth that drive each other both see the other's previous step, whatever
order the file lists them in.  The rule depends on the graph's structure only,
never on node or edge order.

:func:`implicit_delays` applies the rule; the importer uses it for foreign
files and the exporter uses it to decide which delays it may leave implicit
(so that an ntgraph file means the same thing to ntgraph's importer with or
without ntgraph's metadata, and looks like a peer's recurrent layer to peers).

**Delay nodes** carry seconds (``y(t) = x(t - delay)``); ntgraph delays are
integer steps.  :func:`seconds_to_steps` converts with the time step ``dt``
and refuses delays that are not whole multiples of it.
"""

from __future__ import annotations

import math
from typing import Hashable, Iterable, Sequence

import networkx as nx
import numpy as np

from ntgraph.errors import ValidationError

__all__ = ["implicit_delays", "seconds_to_steps", "choose_explicit"]


def _depths(nodes: Iterable[Hashable], edges: Sequence[tuple[Hashable, Hashable]], roots: Iterable[Hashable]) -> dict:
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    depth = {n: math.inf for n in g}
    frontier = [r for r in roots if r in g]
    for r in frontier:
        depth[r] = 0
    level = 0
    while frontier:
        level += 1
        nxt = []
        for u in frontier:
            for v in g.successors(u):
                if depth[v] == math.inf:
                    depth[v] = level
                    nxt.append(v)
        frontier = nxt
    return depth


def implicit_delays(
    projections: Sequence[tuple[Hashable, Hashable, Hashable, int]], roots: Iterable[Hashable]
) -> set:
    """The projections that the implicit cycle rule gives delay 1.

    ``projections``: ``(id, source, target, explicit_delay)`` tuples, where
    ``explicit_delay`` is the delay in steps that Delay nodes give (0 when
    none).  ``roots``: the Input nodes.  Returns the set of projection ids
    whose delay becomes 1 (all have ``explicit_delay == 0``).
    """
    nodes = {n for _, s, t, _ in projections for n in (s, t)}
    depth = _depths(nodes, [(s, t) for _, s, t, _ in projections], roots)
    undelayed = nx.DiGraph()
    undelayed.add_nodes_from(nodes)
    undelayed.add_edges_from((s, t) for _, s, t, d in projections if d == 0)
    component = {}
    for k, comp in enumerate(nx.strongly_connected_components(undelayed)):
        for n in comp:
            component[n] = k
    chosen = set()
    for pid, s, t, d in projections:
        if d != 0:
            continue
        on_cycle = s == t or component[s] == component[t]
        if on_cycle and depth[t] <= depth[s]:
            chosen.add(pid)
    return chosen


def choose_explicit(
    projections: Sequence[tuple[Hashable, Hashable, Hashable, int]], roots: Iterable[Hashable]
) -> set:
    """The projections an exporter must give a Delay node so the implicit rule reads every delay back.

    ``projections``: ``(id, source, target, delay)`` with the delays (steps) to
    preserve.  A delay of 0 needs no node; a delay of 1 may stay implicit when
    :func:`implicit_delays` gives it back; every other delay is explicit.
    Returns the ids that need a Delay node.
    """
    roots = list(roots)
    explicit = {pid for pid, _, _, d in projections if d >= 2}
    candidates = {pid for pid, _, _, d in projections if d == 1}
    actual = {pid: d for pid, _, _, d in projections}
    while True:
        view = [(pid, s, t, actual[pid] if pid in explicit else 0) for pid, s, t, _ in projections]
        inferred = implicit_delays(view, roots)
        wrong = [pid for pid, _, _, d in view if d == 0 and ((pid in inferred) != (actual[pid] == 1))]
        if not wrong:
            return explicit
        for pid in wrong:
            if pid in candidates:
                explicit.add(pid)
        if all(pid not in candidates for pid in wrong):
            # An undelayed projection was chosen instead of a delay-1 one of its cycle:
            # make every delay-1 projection explicit (always consistent for a valid graph).
            if candidates <= explicit:
                raise ValidationError(
                    f"projections {sorted(map(str, wrong))}: lie on a cycle without any delay; "
                    "expected every cycle to hold a projection with delay >= 1"
                )
            explicit |= candidates


def seconds_to_steps(delay: np.ndarray, dt: float, where: str) -> np.ndarray:
    """Delays in seconds as integer steps of ``dt``; refuses a delay that is not a whole number of steps."""
    arr = np.asarray(delay, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValidationError(f"{where}.delay: expected finite non-negative delays in seconds, got {arr.ravel()[:5]}")
    steps = np.rint(arr / dt)
    bad = np.abs(steps * dt - arr) > 1e-9 * np.maximum(1.0, np.abs(arr)) + 1e-6 * dt
    if np.any(bad):
        k = int(np.argmax(bad.ravel()))
        raise ValidationError(
            f"{where}.delay: {arr.ravel()[k]:g} s is not a whole number of time steps of dt={dt:g} s; "
            f"expected multiples of dt (pass the dt the file was made for)"
        )
    return steps.astype(np.int64)
