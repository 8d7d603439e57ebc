r"""Connection ablation: remove a fraction of a trained network's synapses, through the constraint machinery.

An ablated synapse is not just set to zero: it is removed from the
projection's :class:`~ntgraph.constraints.ConnectivityMask` (the intersection
with any mask already there), so every backend keeps it exactly zero, the
weight still satisfies Dale's law and the other constraints
(:func:`ntgraph.validate` passes), and training the ablated network further
cannot regrow it.

Strategies, for a projection with ``n`` present synapses (those its resolved
constraints allow: masked-out synapses and the diagonal of a no-self
projection do not count) and a fraction ``f`` in ``[0, 1]``; the number removed
is ``k = round(f * n)`` (half rounded up):

* ``"smallest"``: the ``k`` present synapses of smallest ``|w|`` (ties broken
  by a random order drawn from ``seed``, so exact zeros go first in random order);
* ``"largest"``: the ``k`` of largest ``|w|``;
* ``"random"``: ``k`` present synapses drawn uniformly without replacement from ``seed``.

The fraction is per projection: ``ablate(graph, ["a", "b"], 0.3)`` removes 30%
of ``a``'s synapses and 30% of ``b``'s.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Union

import numpy as np

from .constraints import ConnectivityMask, resolve
from .errors import ValidationError
from .graph import Graph
from .ir import Projection

__all__ = ["STRATEGIES", "ablation_keep", "ablate", "present_synapses"]

#: The ablation orders :func:`ablation_keep` knows.
STRATEGIES = ("smallest", "largest", "random")


def _check_fraction(fraction: float, where: str) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.integer, np.floating)) \
            or not math.isfinite(fraction) or not 0.0 <= float(fraction) <= 1.0:
        raise ValidationError(f"{where} fraction: expected a number in [0, 1], got {fraction!r}")
    return float(fraction)


def ablation_keep(weight: np.ndarray, fraction: float, strategy: str = "smallest", *,
                  present: Optional[np.ndarray] = None, seed: Union[int, np.random.Generator] = 0) -> np.ndarray:
    """Boolean array shaped like ``weight``: True for the synapses that survive ablating ``fraction`` of them.

    ``present`` (bool, shaped like ``weight``; default all True) marks the
    synapses that exist; absent ones are False in the result and are neither
    counted nor chosen.  See the module docstring for the strategies.
    """
    fraction = _check_fraction(fraction, "ablation_keep")
    if strategy not in STRATEGIES:
        raise ValidationError(f"ablation_keep strategy: expected one of {STRATEGIES}, got {strategy!r}")
    w = np.asarray(weight, dtype=np.float64)
    present = np.ones(w.shape, dtype=bool) if present is None else np.asarray(present, dtype=bool)
    if present.shape != w.shape:
        raise ValidationError(f"ablation_keep present: expected shape {w.shape} (that of the weight), got {present.shape}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    candidates = np.flatnonzero(present.ravel())
    k = int(math.floor(fraction * candidates.size + 0.5))
    tiebreak = rng.permutation(candidates.size)
    if strategy == "random":
        order = tiebreak
    else:
        magnitude = np.abs(w.ravel()[candidates])
        primary = magnitude if strategy == "smallest" else -magnitude
        order = np.lexsort((tiebreak, primary))  # by |w|, ties in random order
    keep = present.ravel().copy()
    keep[candidates[order[:k]]] = False
    return keep.reshape(w.shape)


def present_synapses(graph: Graph, projection: str) -> np.ndarray:
    """The synapses of ``projection`` that its resolved constraints allow (shaped like its stored ``weight``)."""
    payload = graph[projection]
    if not isinstance(payload, Projection):
        raise ValidationError(f"{payload.kind} '{projection}': expected a projection to ablate")
    src, dst = graph.source(projection), graph.target(projection)
    rc = resolve(projection, payload, getattr(graph[src], "dale", None), src == dst)
    return np.array(rc.mask, dtype=bool)


def ablate(graph: Graph, projections: Union[str, Iterable[str]], fraction: float, strategy: str = "smallest", *,
           seed: int = 0) -> Graph:
    """A copy of ``graph`` with ``fraction`` of each named projection's present synapses removed.

    Removed synapses get weight 0 and leave the projection's
    ``ConnectivityMask``; the input graph is untouched.  ``seed`` draws the
    random order (``"random"``) or the tie-break (``"smallest"``/``"largest"``);
    projection ``j`` of the list uses ``(seed, j)``.
    """
    names = [projections] if isinstance(projections, str) else list(projections)
    if not names:
        raise ValidationError("ablate projections: expected at least one projection id")
    fraction = _check_fraction(fraction, "ablate")
    out = graph
    for j, name in enumerate(names):
        if name not in graph:
            raise ValidationError(f"ablate: no node {name!r} in graph {graph.name!r}; projections: {graph.projections}")
        payload = graph[name]
        present = present_synapses(graph, name)
        keep = ablation_keep(payload.weight, fraction, strategy, present=present,
                             seed=np.random.default_rng([seed, j]))
        post, pre = payload.synapse_index()
        dense_keep = np.ones((payload.n_post, payload.n_pre), dtype=bool)
        dense_keep[post[~keep], pre[~keep]] = False
        constraints = []
        for c in payload.constraints:
            if isinstance(c, ConnectivityMask):
                dense_keep &= c.mask
            else:
                constraints.append(c)
        constraints.append(ConnectivityMask(dense_keep))
        weight = np.where(keep, np.asarray(payload.weight), 0.0).astype(np.asarray(payload.weight).dtype)
        out = out.with_payload(name, payload.replace(weight=weight, constraints=tuple(constraints)))
    return out
