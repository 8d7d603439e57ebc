r"""Build and run the Brian2 network of a prepared ntgraph graph.

Layout, for a batch of ``B`` independent sequences:

* every Input and Population is one ``NeuronGroup`` of ``B*n`` neurons
  (neuron ``b*n + k`` is neuron ``k`` of batch element ``b``);
* an Input's group reads its value from a ``TimedArray`` of the input
  ``[T, B*n]`` at the start of each step (``val = stim(t, i)``);
* every projection is one ``Synapses`` object (one synapse per non-zero
  effective weight and batch element, never across batch elements) with a
  *summed variable* ``I_<k>_post = w * <source output>_pre`` into the target;
* a projection with delay ``d >= 1`` reads the source's history variable
  ``h<d>`` (the output of step ``t - d``); every step ends by shifting the
  history, ``h_D = h_{D-1}, ..., h1 = out`` (slot ``'end'``).

Brian2 sorts the objects of a time step by ``(when, order)``.  Everything of
population number ``k`` in the schedule order (``graph.attrs['order']``)
runs in slot ``'groups'`` at orders ``10k+1 .. 10k+5``: the summed variables
of its incoming projections, the update code (sum the currents in the torch
backend's order, then the neuron step), Brian2's thresholder, its resetter
and any code after the reset.  A delay-0 projection therefore sees its
source's output of the same step (the source comes earlier in the schedule),
which is ``timing="sync"``; ``timing="pipelined"`` is already in the
effective delays the passes annotate.  Monitors record at ``'end'``, order
0, before the history shift (order 1): the values after the step, as the
torch backend reports them.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from ntgraph.compiler import CompileOptions
from ntgraph.constraints import project_weights
from ntgraph.errors import ShapeError, UnsupportedNodeError, ValidationError
from ntgraph.graph import Graph
from ntgraph.ir import Dense, Input, OneToOne, Output, Population, Projection, Sparse

from .models import NeuronCode, neuron_code

__all__ = ["Brian2Network", "ProjectionPlan", "PopulationPlan", "plan"]

#: IR projection types this backend lowers.
PROJECTION_TYPES = (Dense, Sparse, OneToOne)


@dataclass
class ProjectionPlan:
    """One projection: synapse list (post, pre, weight) of the effective weights, bias, delay."""

    node_id: str
    source: str
    target: str
    post: np.ndarray
    pre: np.ndarray
    weight: np.ndarray
    bias: Optional[np.ndarray]
    delay: int
    var: str  # the summed variable in the target, "I_<k>"


@dataclass
class PopulationPlan:
    """One population: its neuron code and incoming projections in the torch backend's summation order."""

    node_id: str
    size: int
    code: NeuronCode
    incoming: list[ProjectionPlan] = field(default_factory=list)


@dataclass
class NetworkPlan:
    """The whole network, independent of batch size and length (what ``lower`` checks and returns)."""

    graph: Graph
    dt: float
    order: list[str]
    inputs: dict[str, int]
    populations: dict[str, PopulationPlan]
    projections: dict[str, ProjectionPlan]
    history: dict[str, int]  # node -> longest outgoing delay


def _synapses(node_id: str, payload: Projection, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    post, pre = payload.synapse_index()
    post, pre, w = post.ravel(), pre.ravel(), np.asarray(weight, dtype=np.float64).ravel()
    keep = w != 0.0  # an absent or zero synapse adds exactly 0: leave it out
    return post[keep].astype(np.int64), pre[keep].astype(np.int64), w[keep]


def plan(graph: Graph, options: CompileOptions) -> NetworkPlan:
    """Check every node and compute the per-neuron constants and synapse lists."""
    order = list(graph.attrs["order"])
    inputs = {i: graph[i].size for i in graph.inputs}
    pops: dict[str, PopulationPlan] = {}
    projs: dict[str, ProjectionPlan] = {}
    for node_id, payload in graph.items():
        if isinstance(payload, Projection) and not isinstance(payload, PROJECTION_TYPES):
            raise UnsupportedNodeError(
                f"backend 'brian2': node '{node_id}' has type {type(payload).__name__}, which this backend cannot lower; "
                f"supported: {', '.join(t.__name__ for t in PROJECTION_TYPES)}"
            )
        if not isinstance(payload, (Input, Output, Population, Projection)):
            raise UnsupportedNodeError(
                f"backend 'brian2': node '{node_id}' has type {type(payload).__name__}, which this backend cannot lower"
            )
    for pop in order:
        payload = graph[pop]
        pops[pop] = PopulationPlan(pop, payload.size, neuron_code(pop, payload, options.dt, options.discretization))
    history: dict[str, int] = {}
    for pop in order:
        # the torch backend adds input projections first (all steps at once), then the others, each in insertion order
        incoming = graph.incoming(pop)
        from_inputs = [p for p in incoming if isinstance(graph[graph.source(p)], Input)]
        others = [p for p in incoming if p not in from_inputs]
        for k, proj in enumerate(from_inputs + others):
            payload = graph[proj]
            meta = graph.meta(proj)
            weight = project_weights(payload.weight, meta["constraints"])
            post, pre, w = _synapses(proj, payload, weight)
            bias = getattr(payload, "bias", None)
            delay = int(meta["delay"])
            src = graph.source(proj)
            plan_ = ProjectionPlan(proj, src, pop, post, pre, w, None if bias is None else np.array(bias, dtype=np.float64),
                                   delay, f"I_{k}")
            projs[proj] = plan_
            pops[pop].incoming.append(plan_)
            if delay > 0:
                history[src] = max(history.get(src, 0), delay)
    return NetworkPlan(graph, options.dt, order, inputs, pops, projs, history)


@contextlib.contextmanager
def _numpy_target(b2: Any) -> Iterator[None]:
    """Run with Brian2's numpy code generation target (pure Python, no compiler), restoring the preference after.

    Brian2 2.9 calls pyparsing's camelCase API, which pyparsing 3.2 deprecates
    on every parse; those DeprecationWarnings are library noise and are muted here.
    """
    old = b2.prefs.codegen.target
    b2.prefs.codegen.target = "numpy"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(brian2|pyparsing)(\..*)?")
            yield
    finally:
        b2.prefs.codegen.target = old


def _equations(code: NeuronCode, extra: Sequence[str]) -> str:
    lines = [f"{name} : 1 (constant)" for name in code.params]
    lines += [f"{name} : 1" for name in code.initial]
    lines += [f"{name} : 1" for name in extra]
    return "\n".join(lines)


class Brian2Network:
    """A lowered network: ``run(inputs, record)`` builds the Brian2 objects for the batch and runs ``T`` steps."""

    def __init__(self, plan_: NetworkPlan) -> None:
        self.plan = plan_
        self.graph = plan_.graph

    def _check_inputs(self, inputs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int, int]:
        missing = [i for i in self.plan.inputs if i not in inputs]
        unknown = [k for k in inputs if k not in self.plan.inputs]
        if missing or unknown:
            raise ValidationError(
                f"inputs: expected arrays for {list(self.plan.inputs)}, got {sorted(inputs)}"
                + (f" (missing: {missing})" if missing else "") + (f" (unknown: {unknown})" if unknown else "")
            )
        if not self.plan.inputs:
            raise ValidationError("inputs: the graph has no Input; nothing to simulate")
        xs: dict[str, np.ndarray] = {}
        tb: Optional[tuple[int, int]] = None
        for name, size in self.plan.inputs.items():
            x = np.asarray(inputs[name], dtype=np.float64)
            if x.ndim != 3 or x.shape[-1] != size:
                raise ShapeError(f"Input '{name}': expected an array of shape [T, batch, {size}], got shape {x.shape}")
            if tb is None:
                tb = x.shape[:2]
            elif x.shape[:2] != tb:
                raise ShapeError(f"Input '{name}': has (T, batch) = {x.shape[:2]}, expected {tb} like the other inputs")
            xs[name] = x
        if tb is None:
            raise ValidationError("inputs: the graph has no Input; nothing to simulate")
        return xs, int(tb[0]), int(tb[1])

    def _parse_record(self, record: Sequence[str]) -> list[tuple[str, str, str]]:
        probes = []
        for spec in record:
            if spec in self.plan.populations:
                pop = spec
                var = self.graph[pop].model.output_var
            elif "." in spec and spec.rsplit(".", 1)[0] in self.plan.populations:
                pop, var = spec.rsplit(".", 1)
            else:
                raise ValidationError(
                    f"record {spec!r}: expected a population id or 'population.variable'; populations: "
                    f"{', '.join(self.plan.populations)}"
                )
            code = self.plan.populations[pop].code
            if var not in code.variables:
                raise ValidationError(
                    f"record {spec!r}: Population '{pop}' ({type(self.graph[pop].model).__name__}) has no variable "
                    f"{var!r}; expected one of {', '.join(code.variables)}"
                )
            probes.append((f"{pop}.{var}", pop, var))
        return probes

    def run(self, inputs: Mapping[str, Any], record: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Simulate; returns every Output by id and every probe ``"pop.var"``, each ``[T, batch, n]`` float64."""
        import brian2 as b2

        xs, steps, batch = self._check_inputs(inputs)
        probes = self._parse_record(record)
        p = self.plan
        dt = p.dt * b2.second
        namespace: dict[str, Any] = {}
        with _numpy_target(b2):
            clock = b2.Clock(dt=dt, name="ntgraph_clock*")
            objects: list[Any] = []
            groups: dict[str, Any] = {}
            out_var: dict[str, str] = {}
            # --- inputs
            for k, (name, size) in enumerate(p.inputs.items()):
                hist = [f"h{d}" for d in range(1, p.history.get(name, 0) + 1)]
                g = b2.NeuronGroup(batch * size, "\n".join(["val : 1"] + [f"{h} : 1" for h in hist]),
                                   clock=clock, name=f"ntgraph_input{k}*")
                stim = f"ntgraph_stim{k}"
                namespace[stim] = b2.TimedArray(xs[name].reshape(steps, batch * size), dt=dt)
                g.run_regularly(f"val = {stim}(t, i)", when="start", order=0)
                groups[name], out_var[name] = g, "val"
                objects.append(g)
            # --- populations, in schedule order
            for k, pop in enumerate(p.order):
                plan_pop = p.populations[pop]
                code = plan_pop.code
                hist = [f"h{d}" for d in range(1, p.history.get(pop, 0) + 1)]
                extra = ["I"] + [pr.var for pr in plan_pop.incoming] + hist
                extra += [f"{pr.var}b" for pr in plan_pop.incoming if pr.bias is not None]
                biases = {f"bias_{pr.var}": pr.bias for pr in plan_pop.incoming if pr.bias is not None}
                eqs = _equations(code, extra) + "".join(f"\n{name} : 1 (constant)" for name in biases)
                g = b2.NeuronGroup(batch * plan_pop.size, eqs, threshold=code.threshold,
                                   reset=code.reset, clock=clock, name=f"ntgraph_pop{k}*")
                for name, value in {**code.params, **code.initial, **biases}.items():
                    setattr(g, name, np.tile(value, batch))
                base = 10 * (k + 1)
                g.run_regularly("\n".join([self._current_code(plan_pop)] + code.update), when="groups", order=base + 2)
                if code.threshold is not None:
                    g.thresholder["spike"].when, g.thresholder["spike"].order = "groups", base + 3
                    g.resetter["spike"].when, g.resetter["spike"].order = "groups", base + 4
                if code.after_reset:
                    g.run_regularly("\n".join(code.after_reset), when="groups", order=base + 5)
                groups[pop], out_var[pop] = g, code.output
                objects.append(g)
            # --- projections (summed variables into the target, read before the target's update)
            for k, pop in enumerate(p.order):
                for pr in p.populations[pop].incoming:
                    if pr.weight.size == 0:
                        continue  # every weight is zero: I_k stays 0
                    src_var = out_var[pr.source] if pr.delay == 0 else f"h{pr.delay}"
                    n_pre, n_post = self.graph.node_size(pr.source), self.graph.node_size(pop)
                    s = b2.Synapses(groups[pr.source], groups[pop], f"w : 1 (constant)\n{pr.var}_post = w*{src_var}_pre : 1 (summed)",
                                    clock=clock, name="ntgraph_syn*")
                    offs = np.repeat(np.arange(batch), pr.weight.size)
                    s.connect(i=np.tile(pr.pre, batch) + offs * n_pre, j=np.tile(pr.post, batch) + offs * n_post)
                    s.w = np.tile(pr.weight, batch)
                    for updater in s.summed_updaters.values():
                        updater.when, updater.order = "groups", 10 * (k + 1) + 1
                    objects.append(s)
            # --- history shift at the end of the step
            for node, depth in p.history.items():
                shift = [f"h{d} = h{d - 1}" for d in range(depth, 1, -1)] + [f"h1 = {out_var[node]}"]
                groups[node].run_regularly("\n".join(shift), when="end", order=1)
            # --- monitors
            wanted: dict[str, set[str]] = {}
            for _, pop, var in probes:
                wanted.setdefault(pop, set()).add(p.populations[pop].code.variables[var])
            for out_id in self.graph.outputs:
                src = self.graph.source(out_id)
                if src in p.populations:
                    wanted.setdefault(src, set()).add(out_var[src])
            monitors = {}
            for pop, names in wanted.items():
                m = b2.StateMonitor(groups[pop], sorted(names), record=True, when="end", order=0, clock=clock,
                                    name="ntgraph_monitor*")
                monitors[pop] = m
                objects.append(m)
            net = b2.Network(*objects)
            net.run(steps * dt, namespace=namespace)

            def fetch(pop: str, var: str) -> np.ndarray:
                arr = np.asarray(getattr(monitors[pop], var)[:], dtype=np.float64)  # [B*n, T]
                if arr.shape[1] != steps:
                    raise ValidationError(f"backend 'brian2': recorded {arr.shape[1]} steps, expected {steps}")
                return arr.T.reshape(steps, batch, p.populations[pop].size).copy()

            results: dict[str, np.ndarray] = {}
            for out_id in self.graph.outputs:
                src = self.graph.source(out_id)
                results[out_id] = xs[src].copy() if src in xs else fetch(src, out_var[src])
            for key, pop, var in probes:
                results[key] = fetch(pop, p.populations[pop].code.variables[var])
        return results

    @staticmethod
    def _current_code(plan_pop: PopulationPlan) -> str:
        """``I`` summed left to right in the torch backend's order, each projection's bias added to its own sum first.

        The torch backend computes ``c_k = W_k @ x + bias_k`` (``F.linear``) and
        ``I = ((c_0 + c_1) + c_2) ...``; one binary operation per statement keeps
        that association whatever Brian2's code generation does to expressions.
        """
        if not plan_pop.incoming:
            return "I = 0.0"
        lines = []
        for n, pr in enumerate(plan_pop.incoming):
            term = pr.var if pr.weight.size else "0.0"
            if pr.bias is not None:
                lines.append(f"{pr.var}b = {term} + bias_{pr.var}")
                term = f"{pr.var}b"
            lines.append(f"I = {term}" if n == 0 else f"I = I + {term}")
        return "\n".join(lines)
