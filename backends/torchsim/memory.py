"""Memory estimate of a :class:`~backends.torchsim.module.SimulationModule` before it is built.

Called through :func:`ntgraph.estimate_memory` on the prepared graph.  With
``s`` the dtype's item size, ``B`` the batch, ``T`` the steps (``K`` the TBPTT
window, else ``T``), ``n`` a population's size and ``nnz`` a projection's
stored synapses, the components are (bytes):

* ``parameters``: every weight, bias and neuron parameter (per neuron), ``s`` each;
* ``constraint buffers``: sign (``s``), bounds (``2s``) and mask (1 byte) per
  stored weight where the resolved constraints need them (the test of
  :class:`~backends.torchsim.projections.ProjectionModule`);
* ``sparse indices``: the CSR of a Sparse projection and of its transpose,
  ``i*(4*nnz + n_post + n_pre + 2)`` with ``i = 4`` (int32) when
  ``n_post``, ``n_pre`` and ``nnz`` are below ``2**31 - 1``, else 8 (int64);
* ``IR constraint arrays``: the numpy arrays of the resolved constraints that
  the module's prepared graph keeps (sign int8, mask bool, low/high float64:
  18 bytes per stored weight), computed exactly from the prepared graph;
* ``inputs``: ``T*B*n_in*s`` per Input;
* ``effective weights``: one weight-sized tensor per projection whose
  constraints map the free weights, ``+ (s + 1)`` per weight in BPTT/TBPTT
  for what autograd keeps of a sign map (``|w|``, ``sign != 0``); in inference,
  an unconstrained Sparse projection's weights in the transpose's order
  (``nnz*s``, kept by its event-driven path);
* ``run: kept`` and ``run: transient peak``: each population's run on the fast
  path (``backends/torchsim/layered.py``) needs :data:`RUN_UNITS` times
  ``K*B*n*s`` for its input current, the scan's ``[T, B, n]`` buffers, its
  trajectory and, in training, what the backward pass keeps and allocates.  A
  fraction :data:`KEPT_FRACTION` stays until the end of the forward/backward
  and adds up over populations; the rest is transient, and only the largest
  counts (populations run one after another).  Populations that run in a step
  loop (cycles, learnable ALIF and CubaLIF, sparse self-projections) under autograd
  use :data:`STEPS_GRAD_UNITS` plus the bytes autograd saves per step and
  neuron, **probed** on a 16-neuron population of the same model, options and
  dtype under ``torch.autograd.graph.saved_tensors_hooks`` (cached), plus one
  ``B*n_pre`` per step for each projection inside the loop;
* ``states``: two copies of every state variable (``B*n*s``) and the delay history;
* ``recorded outputs``: probes (``T*B*n*s`` each); on the reference step loop
  (e-prop) also every Output's per-step list and its stack (``2*T*B*n*s``);
  TBPTT concatenates the windows' outputs;
* ``input drive``: on the reference loop (e-prop), ``min(T, chunk)*B*n*s`` per population driven by Inputs;
* ``gradients``: one copy of every learnable tensor (and two ``nnz`` buffers per Sparse projection);
* ``optimizer state``: 0 (sgd), 1 (momentum) or 2 (adam) copies of the learnable tensors;
* ``e-prop traces``: per hidden projection ``B*n_post*n_pre*s`` times
  (1 eligibility + ``d+1`` filtered (``d``: the readout delay) + 1 for ALIF's
  adaptation trace; updated in place), and ``B*n_pre*s`` per readout projection;
  e-prop runs the reference loop ``EProp.chunk`` (128) steps per call, so its
  input drive is ``O(chunk)``;

The total is the sum: the predicted peak of one forward (inference) or one
training step.  The unit tables were measured on the implementation of
2026-11-23 with ``benchmarks/memory_check.py`` (peak RSS of fresh processes);
re-measure them when the run path changes (``tests/test_memory.py`` fails
beyond 20 %).  ``docs/memory.md`` has the comparison table.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ntgraph.errors import ValidationError
from ntgraph.graph import Graph
from ntgraph.ir import Dense, Population, Projection, Sparse
from ntgraph.models import LI, NeuronModel

from . import kernels

__all__ = ["estimate", "saved_per_step", "DTYPES"]

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
_OPT_COPIES = {None: 0, "sgd": 0, "momentum": 1, "adam": 2}
_PROBE_N, _PROBE_B = 16, 4


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValidationError(f"estimate_memory dtype: expected one of {', '.join(map(repr, DTYPES))}, got {name!r}")
    return DTYPES[name]


def _scalar_model(model: NeuronModel) -> NeuronModel:
    """The model with every per-neuron parameter replaced by its first value (for the probe)."""
    changes = {}
    for name in model.param_names():
        value = getattr(model, name)
        if value is not None and np.size(value) > 1:
            changes[name] = float(np.ravel(value)[0])
    return model.replace(**changes) if changes else model


def _saved_bytes(module: Any, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves in one forward, other than parameters, buffers and x."""
    own = {t.untyped_storage().data_ptr() for t in [*module.parameters(), *module.buffers(), x]}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in own:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return sum(seen.values())


_CACHE: dict[tuple, float] = {}


def _probe(kind: str, model: NeuronModel, learnable: tuple, detach_reset: bool, dtype_name: str) -> float:
    """Saved bytes per step per unit (neuron, synapse or presynaptic neuron) / item size, by probing (cached)."""
    key = (kind, repr(model), learnable, detach_reset, dtype_name)
    if key not in _CACHE:
        _CACHE[key] = _run_probe(kind, model, learnable, detach_reset, dtype_name)
    return _CACHE[key]


def _run_probe(kind: str, model: NeuronModel, learnable: tuple, detach_reset: bool, dtype_name: str) -> float:
    import ntgraph

    if kind != "population":
        raise ValueError(f"unknown probe kind {kind!r}")
    g = Graph("probe")
    n, b = _PROBE_N, _PROBE_B
    g.input("x", n)
    g.population("p", model, n, learnable=learnable)
    g.dense("x", "p")
    g.output("y", "p")
    dtype = DTYPES[dtype_name]
    module = ntgraph.compile(g, "torch", dt=_probe_dt(model), dtype=dtype, detach_reset=detach_reset,
                             low_precision_tolerance=float("inf"))
    s3, s6 = (_saved_bytes(module, torch.rand(t, b, n, dtype=dtype)) for t in (3, 6))
    return (s6 - s3) / 3.0 / (b * n * module_itemsize(dtype))


def _probe_dt(model: NeuronModel) -> float:
    taus = [float(np.min(getattr(model, p))) for p in model.param_names()
            if getattr(model, p) is not None and model.param_info(p)["unit"] == "s"]
    return min(taus + [1e-3])


def module_itemsize(dtype: torch.dtype) -> int:
    return torch.tensor([], dtype=dtype).element_size()


def saved_per_step(kind: str, model: NeuronModel, learnable: tuple, detach_reset: bool, dtype: str) -> float:
    """Probed coefficient: autograd bytes saved per step per neuron (``kind="population"``), over the item size."""
    scalar = _scalar_model(model)
    return _probe(kind, scalar, tuple(learnable), bool(detach_reset), dtype)


def _weight_elems(p: Projection) -> int:
    return int(np.size(p.weight))


#: Bytes per ``T*B*n*s`` that one population of each execution kind needs while it runs (its input
#: current, the scan's internal ``[T, B, n]`` buffers, its trajectory, and in training what the
#: backward pass keeps and allocates), measured with benchmarks/memory_check.py on single-population
#: networks (n = 4000, T = 100, B = 32, float32) of the fast path (backends/torchsim/layered.py).
#: The LIF inference units were re-measured (2026-11-23) after the no-grad LIF scan stopped keeping
#: ``[T, B, n]`` pre-reset and (unprobed) membrane buffers: lif 5.3 -> 2.0 (single:LIF:4000), lif_rec
#: 4.7 -> 2.2 (fitted to dense-rec; single:LIF:4000:rec, dominated by its 64 MB weight, gives 3.3).
#: cuba stays 6.3: single:CubaLIF:4000 now gives 4.0, but cuba-alif, the table's CubaLIF case, did not shrink.
#: The LIF training units were re-measured (2026-11-23, later) after the fused per-step backward of the
#: recurrent scan and the per-step input term: lif 9.1 -> 4.1 (fitted to dense-ff bptt), lif_rec 9.2 -> 4.9
#: (fitted to dense-rec bptt).  The IF training units were re-measured (2026-11-23, fifth session) after IF
#: ran on the LIF kernels, which keep no surrogate or reset buffers: if 7.0 -> 4.0, if_rec 9.6 -> 6.6
#: (single:IF:4000[:rec]).  New kinds for the compiled scans that had been estimated as step loops (0.2-0.6 of
#: the measured peak): alif / alif_rec (single:ALIF:1000[:rec], T=200, B=32; 4000 without recurrence agrees
#: within 1%) and cuba_rec (single:CubaLIF:1000:rec).  single:CubaLIF:1000 and :4000 give 3.0 / 5.0 for cuba,
#: but two-population chains need more (the kept fraction is a fit; chain:CubaLIF:LIF:1000 came out at 0.78 /
#: 0.91 with 3.0 / 5.0), and cuba-alif's measured BPTT peak moves between 137 and 175 MiB from run to run (its
#: per-step tensors are small: see the allocator note in docs/memory.md), so cuba stays 6.3 / 10.1, which puts
#: cuba-alif at 0.92-1.17 (BPTT) and 0.98-1.02 (inference) with ALIF's new units.
RUN_UNITS = {
    ("lif", "inference"): 2.0, ("lif", "grad"): 4.1,
    ("lif_rec", "inference"): 2.2, ("lif_rec", "grad"): 4.9,
    ("li", "inference"): 3.1, ("li", "grad"): 3.1,
    ("cuba", "inference"): 6.3, ("cuba", "grad"): 10.1,
    ("cuba_rec", "inference"): 5.2, ("cuba_rec", "grad"): 5.3,
    ("alif", "inference"): 5.1, ("alif", "grad"): 6.1,
    ("alif_rec", "inference"): 5.2, ("alif_rec", "grad"): 6.3,
    ("steps", "inference"): 3.1,
    # the scans of backends/torchsim/scan_rate.py (2026-11-23, single:MODEL:4000[:rec], T=100, B=32, float32)
    ("if", "inference"): 2.0, ("if", "grad"): 4.0,
    ("if_rec", "inference"): 3.3, ("if_rec", "grad"): 6.6,
    ("wc", "inference"): 3.0, ("wc", "grad"): 8.0,
    ("wc_rec", "inference"): 2.0, ("wc_rec", "grad"): 11.5,
    ("rate", "inference"): 2.0, ("rate", "grad"): 5.0,
    ("rate_rec", "inference"): 2.0, ("rate_rec", "grad"): 8.5,
}
#: Models that run as one scan of backends/torchsim/scan_rate.py (alone or with a dense self-projection).
_RATE_AND_IF_KINDS = {"IF": "if", "WilsonCowan": "wc", "RateUnit": "rate"}

#: Steps e-prop simulates per call of the module (``EProp.chunk``).
EPROP_CHUNK = 128
#: Extra ``K*B*n*s`` per population in truncated BPTT (measured on dense-rec, K = 50).
TBPTT_PREVIOUS_WINDOW_UNITS = 3.0

#: A step loop under autograd: its input current and stacked trajectory (plus the probed saved tensors).
STEPS_GRAD_UNITS = 1.5
#: Part of a population's run memory that stays until the end of the forward (trajectory, membrane, what
#: autograd saves); the rest is transient and the peaks of different populations do not add up
#: (measured on two-population chains, benchmarks/memory_check.py).
KEPT_FRACTION = {"inference": 0.4, "grad": 0.25}


def plan_kinds(graph: Graph, detach_reset: bool = True) -> dict[str, str]:
    """How each population runs on the fast path, as :func:`backends.torchsim.layered.plan_groups` decides
    (recomputed from the prepared graph, without a module): ``lif``, ``lif_rec``, ``li``, ``cuba``, ``alif``,
    ``alif_rec`` (no learnable parameter), ``cuba_rec`` (the compiled CubaScan: no learnable parameter, a
    detached reset, the kernels enabled; else the step loop), ``if``, ``wc``, ``rate`` (the last three with
    ``_rec`` for a dense self-projection) or ``steps``."""
    import networkx as nx

    pops = graph.populations
    deps = nx.DiGraph()
    deps.add_nodes_from(pops)
    own: dict[str, list] = {p: [] for p in pops}
    for pop in pops:
        for proj, src, delay in graph.meta(pop)["incoming"]:
            if src in own:
                deps.add_edge(src, pop)
                if src == pop:
                    own[pop].append((proj, delay))
    kinds = {}
    for comp in nx.strongly_connected_components(deps):
        members = list(comp)
        for pop in members:
            kind = "steps"
            if len(members) == 1:
                model = type(graph[pop].model).__name__
                mine = own[pop]
                dense_self = len(mine) == 1 and isinstance(graph[mine[0][0]], Dense) and mine[0][1] >= 1
                if model == "LIF" and not mine:
                    kind = "lif"
                elif model == "LIF" and len(mine) == 1 and isinstance(graph[mine[0][0]], Dense) and mine[0][1] >= 1:
                    kind = "lif_rec"
                elif model == "LI" and not mine:
                    kind = "li"
                elif model == "CubaLIF" and not mine:
                    kind = "cuba"
                elif (model == "CubaLIF" and dense_self and not graph[pop].learnable and detach_reset
                      and kernels.enabled()):
                    kind = "cuba_rec"
                elif model == "ALIF" and not graph[pop].learnable and (not mine or dense_self):
                    kind = "alif_rec" if mine else "alif"
                elif model in _RATE_AND_IF_KINDS and not mine:
                    kind = _RATE_AND_IF_KINDS[model]
                elif (model in _RATE_AND_IF_KINDS and len(mine) == 1 and isinstance(graph[mine[0][0]], Dense)
                      and mine[0][1] >= 1):
                    kind = _RATE_AND_IF_KINDS[model] + "_rec"
            kinds[pop] = kind
    return kinds


def _ir_arrays(graph: Graph) -> int:
    """Bytes of the numpy arrays the module's prepared graph adds: the resolved constraints of every projection."""
    seen: dict[int, int] = {}
    for proj in graph.projections:
        rc = graph.meta(proj)["constraints"]
        for name in ("sign", "mask", "low", "high"):
            arr = getattr(rc, name)
            base = arr if arr.base is None else arr.base
            seen[id(base)] = max(seen.get(id(base), 0), getattr(base, "nbytes", arr.nbytes))
    return sum(seen.values())


def estimate(graph: Graph, *, batch: int, steps: int, mode: str, dtype: str, window: Optional[int],
             optimizer: Optional[str], record: list[str], options: dict[str, Any]) -> tuple[dict[str, int], list[str]]:
    """Components in bytes and notes, for the prepared ``graph`` (see the module docstring)."""
    tdtype = _dtype(dtype)
    s = module_itemsize(tdtype)
    detach_reset = bool(options.get("detach_reset", True))
    B, T = batch, steps
    K = window if mode == "tbptt" else T  # steps alive at once in one forward (+ backward)
    grad = mode in ("bptt", "tbptt")
    fast = mode != "eprop"  # e-prop's per-step hook runs the reference step loop
    c = dict.fromkeys(["parameters", "constraint buffers", "sparse indices", "IR constraint arrays", "inputs",
                       "input drive", "effective weights", "run: kept", "run: transient peak", "states",
                       "recorded outputs", "gradients", "optimizer state",
                       "e-prop traces"], 0)
    notes: list[str] = []
    learnable_elems = 0
    pops = {p: graph[p] for p in graph.populations}
    inputs = set(graph.inputs)
    kinds = plan_kinds(graph, detach_reset)
    transient = 0
    c["IR constraint arrays"] = _ir_arrays(graph)

    for node_id in graph.inputs:
        c["inputs"] += T * B * graph[node_id].size * s
    for pop_id, pop in pops.items():
        model = pop.model
        for name in model.param_names():
            value = getattr(model, name)
            if value is not None:
                n_el = int(np.size(value))
                c["parameters"] += n_el * s
                if name in pop.learnable:
                    learnable_elems += n_el
        c["states"] += 2 * len(model.state_vars) * B * pop.size * s
        incoming = graph.meta(pop_id)["incoming"]
        if not fast:  # e-prop: the reference loop without gradients, EPROP_CHUNK steps per call
            if any(e[1] in inputs for e in incoming):
                c["input drive"] += min(T, EPROP_CHUNK) * B * pop.size * s
            continue
        kind = kinds[pop_id]
        if grad and (kind, "grad") not in RUN_UNITS:  # a step loop under autograd: probed saved tensors per step
            units = STEPS_GRAD_UNITS + saved_per_step("population", model, tuple(pop.learnable), detach_reset, dtype)
            units += sum(1.0 * graph.node_size(src) / pop.size for proj, src, _ in incoming
                         if src in pops and kinds[src] == "steps"
                         and _same_group(graph, src, pop_id))  # a projection keeps its input spikes each step
        else:
            units = RUN_UNITS[(kind, "grad" if grad else "inference")]
        run_bytes = units * K * B * pop.size * s
        keep = KEPT_FRACTION["grad" if grad else "inference"]
        c["run: kept"] += int(keep * run_bytes)
        transient = max(transient, int((1.0 - keep) * run_bytes))
        if mode == "tbptt":  # the previous window's result (trajectory, membrane) lives through the next forward
            c["run: kept"] += int(TBPTT_PREVIOUS_WINDOW_UNITS * K * B * pop.size * s)

    for proj_id in graph.projections:
        p: Projection = graph[proj_id]
        w = _weight_elems(p)
        c["parameters"] += w * s
        if "weight" in p.learnable:
            learnable_elems += w
        bias = getattr(p, "bias", None)
        if bias is not None:
            c["parameters"] += int(np.size(bias)) * s
            if "bias" in p.learnable:
                learnable_elems += int(np.size(bias))
        rc = graph.meta(proj_id)["constraints"]
        has_sign, has_mask, has_bounds = rc.has_sign, rc.has_mask, rc.has_bounds
        c["constraint buffers"] += w * (s * has_sign + 2 * s * has_bounds + 1 * has_mask)
        if has_sign or has_mask or has_bounds:
            c["effective weights"] += w * s + (w * (s + 1) if (grad and has_sign) else 0)
        if isinstance(p, Sparse):
            # CSR of S and of its transpose (SparseMatmul): post, pre, t_col, t_perm per synapse, two row pointers
            index_bytes = 4 if max(p.n_post, p.n_pre, w) < 2**31 - 1 else 8  # projections._index_dtype
            c["sparse indices"] += index_bytes * (4 * w + (p.n_post + 1) + (p.n_pre + 1))
            if mode == "inference" and not (has_sign or has_mask or has_bounds):
                c["effective weights"] += w * s  # the event path's weights in the transpose's order
            if grad:  # sampled_addmm's pattern and the permuted values, one value per synapse each
                c["gradients"] += 2 * w * s

    c["run: transient peak"] = transient
    for src, n_hist in graph.attrs.get("history", {}).items():
        c["states"] += n_hist * B * graph.node_size(src) * s
    kept = [graph.source(o) for o in graph.outputs if graph.source(o) in pops]
    probed = [pops[_probe_population(spec, pops)].size for spec in record]
    if fast:  # trajectories are part of each population's run; probes of other variables add one each
        c["recorded outputs"] = sum(T * B * n * s for n in probed)
        if mode == "tbptt":  # the windows' outputs, concatenated at the end
            c["recorded outputs"] += sum(2 * T * B * pops[k].size * s for k in kept)
    else:  # e-prop: each chunk's outputs, then their concatenation
        c["recorded outputs"] = sum((T + min(T, EPROP_CHUNK)) * B * n * s for n in [pops[k].size for k in kept] + probed)
    if mode != "inference":
        c["gradients"] += learnable_elems * s
        c["optimizer state"] = _OPT_COPIES[optimizer] * learnable_elems * s
    if mode == "eprop":
        c["e-prop traces"] = _eprop_traces(graph, B, s)
        notes.append("e-prop: traces are O(batch * n_post * n_pre) per hidden projection, independent of T")
    if mode == "inference":
        notes.append("inference: one forward under torch.no_grad()")
    notes.append("compilation itself briefly needs more: parameters are staged in float64 before the cast")
    return c, notes


def _probe_population(spec: Any, pops: dict[str, Population]) -> str:
    """The population a probe ``"pop"`` or ``"pop.var"`` reads; a ValidationError naming it otherwise."""
    if isinstance(spec, str):
        if spec in pops:
            return spec
        pop, _, var = spec.rpartition(".")
        if pop in pops and var in pops[pop].model.recordable:
            return pop
    raise ValidationError(
        f"estimate_memory record {spec!r}: expected a population id or 'population.variable'; populations: "
        f"{', '.join(pops)}"
    )


def _same_group(graph: Graph, src: str, dst: str) -> bool:
    """Are ``src`` and ``dst`` in one strongly connected component of the population graph (one step loop)?"""
    import networkx as nx

    deps = nx.DiGraph()
    for pop in graph.populations:
        for _, s, _ in graph.meta(pop)["incoming"]:
            if s in graph.populations:
                deps.add_edge(s, pop)
    return src == dst or (deps.has_node(src) and deps.has_node(dst) and nx.has_path(deps, src, dst)
                          and nx.has_path(deps, dst, src))


def _eprop_traces(graph: Graph, B: int, s: int) -> int:
    outputs = [graph.source(o) for o in graph.outputs]
    readout = next((o for o in outputs if isinstance(graph[o], Population) and isinstance(graph[o].model, LI)), None)
    total = 0
    for proj_id in graph.projections:
        p = graph[proj_id]
        dst = graph.target(proj_id)
        if dst == readout:
            total += B * p.n_pre * s
            continue
        delay = 0
        for out_proj in graph.outgoing(dst):
            if graph.target(out_proj) == readout:
                delay = graph.meta(out_proj)["delay"]
        alif = type(graph[dst].model).__name__ == "ALIF"
        total += B * p.n_post * p.n_pre * s * (1 + (delay + 1) + alif)  # updated in place
    return total

