"""Explaining divergences: one table of rules, each a limitation tag, a finder and a sentence.

A rule fires for a simulator when the simulator declares the rule's
*limitation tag* (in :data:`ntgraph.compare.simulators.SIMULATORS` or in its
backend's ``limitations`` attribute; ``None`` means any simulator) **and** the
rule's *finder* finds the feature in the graph or the run (e.g. populations
with ``reset="subtract"``).  The finder returns the nodes involved and a
detail; the rule's text is formatted with them.  A diagnosis is marked
*observed* when the simulator actually diverged from the reference (or failed
to run and its error names the rule's nodes), so the report can say "this is
why" rather than "watch out".

Limitation tags (declared by backends and routes):

=========================  ========================================================================
tag                        meaning
=========================  ========================================================================
nir:reset-mode             the simulator reads NIR, whose neuron nodes have no reset-mode field
nir:no-alif                the simulator reads NIR, which has no adaptive LIF
reset:no-subtract          the simulator rejects ``reset="subtract"``
v_reset:ignored            the simulator resets to 0 whatever ``v_reset`` is
v_leak:unsupported         the importer requires ``v_leak = 0``
r:ignored                  the LIF ignores the input resistance ``r``
threshold:uniform-only     one threshold (and input gain) per population
tau:uniform-only           one decay per population
if:leaky                   IF is imported as a leaky neuron
if:per-step                IF adds its input once per step (``dt`` and ``r`` ignored)
li:dropped                 LI readouts are dropped (their input passes through)
li:unsupported             LI readouts cannot be imported
delay:unsupported          ``nir.Delay`` nodes (delays other than a recurrent one-step delay) cannot be imported
scale:unsupported          ``nir.Scale`` nodes cannot be imported
inputs:single              only graphs with one Input run
recurrence:miswired        recurrent LIF-weight pairs are imported with the wrong wiring
cubalif:synapse-leak       the CubaLIF synapse leaks towards the membrane's ``v_leak``
cubalif:r-fixed            CubaLIF must have a unit membrane gain (``r = tau_mem/dt``)
discretization:euler-only  forward Euler only
timing:pipelined-only      every connection takes one step (Lava)
dtype:float32              float32 arithmetic
quantisation               fixed-point weights, decays and thresholds
sum-order                  weighted sums accumulated in another order (last-place differences)
=========================  ========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ..compiler import CompileOptions
from ..graph import Graph
from ..ir import Population
from ..models import ALIF, IF, LI, LIF, CubaLIF
from .metrics import Divergence

__all__ = ["Context", "Rule", "RULES", "FINDERS", "diagnose"]

Found = Optional[tuple[list[str], str]]


@dataclass
class Context:
    """What a finder may look at: the prepared graph, the options, and the simulator's run."""

    simulator: str
    graph: Graph
    options: CompileOptions
    tags: frozenset
    status: str
    diverged: bool
    reference: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)
    divergence: Optional[Divergence] = None
    max_voltage_error: Optional[float] = None
    max_voltage_error_before: Optional[float] = None
    artefacts: dict = field(default_factory=dict)
    quantization: Any = None
    inputs: dict = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class Rule:
    """``tag`` (None: every simulator), ``finder`` (a key of :data:`FINDERS`), ``text`` ({sim}, {nodes}, {detail})."""

    id: str
    tag: Optional[str]
    finder: str
    text: str


# ----------------------------------------------------------------------------- finders
def _pops(ctx: Context, *types: type) -> list[tuple[str, Population]]:
    return [(n, p) for n, p in ctx.graph.items() if isinstance(p, Population) and isinstance(p.model, types)]


def _fmt(values: np.ndarray) -> str:
    v = np.unique(np.asarray(values, dtype=np.float64))
    return f"{v[0]:g}" if v.size == 1 else f"{v.min():g}..{v.max():g}"


def _subtract_reset(ctx: Context) -> Found:
    nodes = [n for n, p in _pops(ctx, LIF, CubaLIF, IF, ALIF) if p.model.reset == "subtract"]
    return (nodes, "") if nodes else None


def _alif(ctx: Context) -> Found:
    nodes = [n for n, _ in _pops(ctx, ALIF)]
    return (nodes, "") if nodes else None


def _nir_delays(ctx: Context) -> Found:
    types = ctx.artefacts.get("nir_node_types", {})
    nodes = [k for k, kind in types.items() if kind == "Delay"]
    if not types:  # the NIR lowering did not run: every delay a NIR export writes as a Delay node
        nodes = [p for p in ctx.graph.projections
                 if ctx.graph.meta(p).get("delay", 0) >= 1
                 and not (ctx.graph.meta(p).get("delay") == 1 and ctx.graph.source(p) == ctx.graph.target(p))]
    return (nodes, "") if nodes else None


def _nir_scales(ctx: Context) -> Found:
    nodes = [k for k, kind in ctx.artefacts.get("nir_node_types", {}).items() if kind == "Scale"]
    return (nodes, "") if nodes else None


def _several_inputs(ctx: Context) -> Found:
    return (list(ctx.graph.inputs), "") if len(ctx.graph.inputs) > 1 else None


def _li(ctx: Context) -> Found:
    nodes = [n for n, _ in _pops(ctx, LI)]
    return (nodes, "") if nodes else None


def _v_reset_nonzero(ctx: Context) -> Found:
    hits = [(n, p) for n, p in _pops(ctx, LIF, CubaLIF, IF, ALIF) if p.model.reset == "zero" and np.any(p.model.v_reset != 0)]
    return ([n for n, _ in hits], ", ".join(_fmt(p.model.v_reset) for _, p in hits)) if hits else None


def _v_leak_nonzero(ctx: Context) -> Found:
    hits = [(n, p) for n, p in _pops(ctx, LIF, CubaLIF, ALIF) if np.any(p.model.v_leak != 0)]
    return ([n for n, _ in hits], "v_leak = " + ", ".join(_fmt(p.model.v_leak) for _, p in hits)) if hits else None


def _r_not_one(ctx: Context) -> Found:
    hits = [(n, p) for n, p in _pops(ctx, LIF, ALIF) if np.any(p.model.r != 1)]
    return ([n for n, _ in hits], ", ".join(_fmt(p.model.r) for _, p in hits)) if hits else None


def _heterogeneous_threshold(ctx: Context) -> Found:
    nodes = []
    for n, p in _pops(ctx, LIF, CubaLIF, IF, ALIF):
        gain = p.model.r / p.model.tau_mem if hasattr(p.model, "tau_mem") else p.model.r
        if np.unique(p.model.v_th).size > 1 or np.unique(gain).size > 1:
            nodes.append(n)
    return (nodes, "") if nodes else None


def _heterogeneous_tau(ctx: Context) -> Found:
    nodes = [n for n, p in ctx.graph.items() if isinstance(p, Population)
             and any(np.unique(getattr(p.model, t)).size > 1 for t in ("tau_mem", "tau_syn") if getattr(p.model, t, None) is not None)]
    return (nodes, "") if nodes else None


def _if_pops(ctx: Context) -> Found:
    nodes = [n for n, _ in _pops(ctx, IF)]
    return (nodes, "") if nodes else None


def _if_gain_not_one(ctx: Context) -> Found:
    hits = [(n, p) for n, p in _pops(ctx, IF) if not np.allclose(ctx.options.dt * p.model.r, 1.0)]
    return ([n for n, _ in hits], ", ".join(_fmt(ctx.options.dt * p.model.r) for _, p in hits)) if hits else None


def _recurrent_pairs(ctx: Context) -> Found:
    nodes = [p for p in ctx.graph.projections if ctx.graph.source(p) == ctx.graph.target(p)
             and isinstance(ctx.graph[ctx.graph.target(p)].model, (LIF, CubaLIF, ALIF))]
    return (nodes, "") if nodes else None


def _cuba_v_leak(ctx: Context) -> Found:
    hits = [n for n, p in _pops(ctx, CubaLIF) if np.any(p.model.v_leak != 0)]
    return (hits, "") if hits else None


def _cuba_gain_not_one(ctx: Context) -> Found:
    hits = [n for n, p in _pops(ctx, CubaLIF) if not np.allclose(p.model.r * ctx.options.dt / p.model.tau_mem, 1.0)]
    return (hits, "") if hits else None


def _exact_discretization(ctx: Context) -> Found:
    if ctx.options.discretization != "exact":
        return None
    nodes = [n for n, p in ctx.graph.items() if isinstance(p, Population) and not isinstance(p.model, IF)]
    return (nodes, "") if nodes else None


def _sync_timing(ctx: Context) -> Found:
    if ctx.options.timing == "pipelined":
        return None
    nodes = [p for p in ctx.graph.projections if ctx.graph.meta(p).get("delay", 0) == 0]
    return (nodes, "") if nodes else None


def _quantisation(ctx: Context) -> Found:
    q = ctx.quantization
    if q is None:
        return None
    parts = [f"{q.clipped} of {q.n_weights} weights clipped, {q.zeroed} rounded to zero"]
    if q.synapses:
        worst = max(q.synapses.values(), key=lambda s: s.rel_rmse)
        parts.append(f"worst relative RMS weight error {worst.rel_rmse:.2%} ('{worst.node_id}', exponent {worst.weight_exp:+d})")
    if q.neurons:
        worst_n = max(q.neurons.values(), key=lambda s: max(s.du_error, s.dv_error))
        err = max(worst_n.du_error, worst_n.dv_error)
        if err > 0:
            parts.append(f"12-bit decays off by up to {err:.1e} ('{worst_n.node_id}')")
        clipped_bias = sum(s.bias_clipped for s in q.neurons.values())
        if clipped_bias:
            parts.append(f"{clipped_bias} biases clipped")
    return ([], "; ".join(parts))


def _graded_inputs(ctx: Context) -> Found:
    """Inputs that fixed point rounds: ``round(x * input_scale)`` integers (Lava's graded spikes)."""
    q = ctx.quantization
    if q is None:
        return None
    nodes, parts = [], []
    for name, x in ctx.inputs.items():
        scales = {s.input_scale for p, s in q.synapses.items() if p in ctx.graph and ctx.graph.source(p) == name}
        for scale in sorted(scales):
            err = float(np.max(np.abs(x * scale - np.round(x * scale)))) / scale if x.size else 0.0
            if err > 0:
                nodes.append(name)
                parts.append(f"'{name}' is rounded to multiples of 1/{scale:g} (input_scale={scale:g}), "
                             f"an error of up to {err:.3g} per value")
    return (nodes, "; ".join(parts) + "; raise the quantize option input_scale") if nodes else None


def _float32_effect(ctx: Context) -> Found:
    err = ctx.max_voltage_error_before
    if err is None or err == 0 or not np.isfinite(err) or err > 1e-3:
        return None
    where = "before the first divergence" if ctx.divergence is not None else "throughout"
    return ([], f"voltages differ from the float64 reference by up to {err:.2g} {where} (float32 rounding of "
                f"weights, decays and sums); a spike flips only where the reference voltage comes that close to "
                f"the threshold")


def _threshold_tie(ctx: Context) -> Found:
    d = ctx.divergence
    if d is None or not d.key.endswith(".spikes"):
        return None
    pop = d.key[: -len(".spikes")]
    vkey = f"{pop}.v"
    if pop not in ctx.graph or vkey not in ctx.reference or vkey not in ctx.arrays:
        return None
    model = ctx.graph[pop].model
    if isinstance(model, ALIF) or not hasattr(model, "v_th"):
        return None
    v_th = float(np.asarray(model.v_th)[d.neuron])
    ref_v, sim_v = ctx.reference[vkey], ctx.arrays[vkey]
    # the run that did not spike kept its un-reset voltage: how close was it to the threshold?
    quiet, who = (ref_v, "reference") if d.reference == 0 else (sim_v, ctx.simulator)
    v = float(quiet[d.step, d.batch, d.neuron])
    before = np.abs(sim_v[: d.step + 1, :, :] - ref_v[: d.step + 1, :, :])
    drift = float(before[: d.step].max()) if d.step > 0 else 0.0
    margin = abs(v - v_th)
    scale = max(1.0, abs(v_th))
    # a tie only explains the flip when the runs differed by rounding alone until then
    if drift <= 1e-3 * scale and margin <= max(10.0 * drift, 1e-9 * scale):
        return ([pop], f"at step {d.step} neuron {d.neuron} of '{pop}' (batch {d.batch}) the {who} voltage {v:.9g} was "
                       f"{margin:.2g} from the threshold {v_th:g}, within the {drift:.2g} by which the runs already "
                       f"differed: a rounding difference decided the spike")
    return None


def _rounding_only(ctx: Context) -> Found:
    err = ctx.max_voltage_error
    if ctx.diverged or err is None or err == 0 or err > 1e-12:
        return None
    return ([], f"voltages differ by at most {err:.1e}: the simulator accumulates weighted sums in another order "
                f"(last-place rounding); spikes are identical")


#: Finder name -> function(Context) -> (nodes, detail) or None.
FINDERS: dict[str, Callable[[Context], Found]] = {
    "subtract_reset": _subtract_reset,
    "alif": _alif,
    "nir_delays": _nir_delays,
    "nir_scales": _nir_scales,
    "several_inputs": _several_inputs,
    "li": _li,
    "v_reset_nonzero": _v_reset_nonzero,
    "v_leak_nonzero": _v_leak_nonzero,
    "r_not_one": _r_not_one,
    "heterogeneous_threshold": _heterogeneous_threshold,
    "heterogeneous_tau": _heterogeneous_tau,
    "if_pops": _if_pops,
    "if_gain_not_one": _if_gain_not_one,
    "recurrent_pairs": _recurrent_pairs,
    "cuba_v_leak": _cuba_v_leak,
    "cuba_gain_not_one": _cuba_gain_not_one,
    "exact_discretization": _exact_discretization,
    "sync_timing": _sync_timing,
    "quantisation": _quantisation,
    "graded_inputs": _graded_inputs,
    "float32_effect": _float32_effect,
    "threshold_tie": _threshold_tie,
    "rounding_only": _rounding_only,
}

#: The diagnosis table.  Order = order of the report.
RULES: tuple[Rule, ...] = (
    Rule("reset-mode-lost", "nir:reset-mode", "subtract_reset",
         "reset mode lost in NIR export: {nodes} use reset='subtract', NIR's neuron nodes have no reset-mode field, "
         "and {sim} resets to a fixed value instead"),
    Rule("alif-as-lif", "nir:no-alif", "alif",
         "NIR has no adaptive LIF: {nodes} are exported as plain LIF and {sim} runs them without threshold adaptation"),
    Rule("delay-unsupported", "delay:unsupported", "nir_delays",
         "{sim}'s NIR importer cannot map nir.Delay nodes ({nodes}): graphs with delays other than a recurrent "
         "one-step delay cannot be imported"),
    Rule("scale-unsupported", "scale:unsupported", "nir_scales",
         "{sim}'s NIR importer cannot map nir.Scale nodes ({nodes}): export one-to-one projections as a diagonal "
         "nir.Linear (NIR option one_to_one='linear', the comparison's default)"),
    Rule("single-input", "inputs:single", "several_inputs",
         "{sim} runs NIR graphs through nirtorch, which takes exactly one input: the graph has Inputs {nodes}"),
    Rule("li-dropped", "li:dropped", "li",
         "{sim} drops LI: {nodes} are replaced by an identity, so the readout is the raw input current, not the "
         "leaky-integrated voltage"),
    Rule("li-unsupported", "li:unsupported", "li",
         "{sim}'s NIR importer has no mapping for nir.LI ({nodes}): a graph with an LI readout cannot be imported"),
    Rule("v-reset-ignored", "v_reset:ignored", "v_reset_nonzero",
         "{sim} resets to 0 and ignores v_reset: {nodes} have v_reset = {detail}"),
    Rule("v-leak-unsupported", "v_leak:unsupported", "v_leak_nonzero",
         "{sim}'s importer requires v_leak = 0: {nodes} have {detail}"),
    Rule("r-ignored", "r:ignored", "r_not_one",
         "{sim}'s LIF ignores the input resistance r: {nodes} have r = {detail}, so their input is scaled differently"),
    Rule("threshold-uniform", "threshold:uniform-only", "heterogeneous_threshold",
         "{sim} keeps one threshold and one input gain per population: {nodes} have heterogeneous v_th, r or tau"),
    Rule("tau-uniform", "tau:uniform-only", "heterogeneous_tau",
         "{sim} has one decay per population: {nodes} have heterogeneous time constants"),
    Rule("if-leaky", "if:leaky", "if_pops",
         "{sim} imports nir.IF as a leaky neuron (snn.Leaky with beta = 0.9) and requires r = 1: {nodes} leak"),
    Rule("if-per-step", "if:per-step", "if_gain_not_one",
         "{sim}'s IAF adds its input once per step (v += I), ignoring dt and r: {nodes} have dt*r = {detail}, not 1"),
    Rule("recurrence-miswired", "recurrence:miswired", "recurrent_pairs",
         "{sim}'s importer folds the recurrent projection(s) {nodes} and their population into a sub-graph that "
         "routes the feed-forward input through the recurrent weights (snnTorch 1.0 with nirtorch 2.x)"),
    Rule("cubalif-synapse-leak", "cubalif:synapse-leak", "cuba_v_leak",
         "{sim}'s CubaLIF synapse leaks towards the membrane's v_leak: {nodes} have v_leak != 0"),
    Rule("cubalif-gain", "cubalif:r-fixed", "cuba_gain_not_one",
         "{sim}'s importer requires a unit membrane gain for CubaLIF (r = tau_mem/dt): {nodes}"),
    Rule("euler-only", "discretization:euler-only", "exact_discretization",
         "{sim} integrates with forward Euler, but the comparison uses discretization='exact' "
         "(the reference decays {nodes} by exp(-dt/tau))"),
    Rule("pipelined-only", "timing:pipelined-only", "sync_timing",
         "Lava delays every connection by one step: run the comparison with timing='pipelined' "
         "(under timing='sync', {nodes} act within the step)"),
    Rule("no-subtract", "reset:no-subtract", "subtract_reset",
         "{sim} has no subtract reset: {nodes} use reset='subtract'"),
    Rule("quantisation", "quantisation", "quantisation", "fixed-point weight quantisation: {detail}"),
    Rule("input-quantisation", "quantisation", "graded_inputs", "fixed-point input quantisation: {detail}"),
    Rule("float32", "dtype:float32", "float32_effect", "float32 arithmetic: {detail}"),
    Rule("threshold-tie", None, "threshold_tie", "threshold tie at the first divergence: {detail}"),
    Rule("summation-order", "sum-order", "rounding_only", "agrees to rounding: {detail}"),
)


def _nodes(nodes: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in nodes[:6])
    return shown + (f" and {len(nodes) - 6} more" if len(nodes) > 6 else "")


def diagnose(ctx: Context, rules: tuple[Rule, ...] = RULES) -> list[dict]:
    """Every rule of ``rules`` that fires for ``ctx``: ``{"id", "text", "nodes", "observed"}``."""
    out = []
    for rule in rules:
        if rule.tag is not None and rule.tag not in ctx.tags:
            continue
        found = FINDERS[rule.finder](ctx)
        if found is None:
            continue
        nodes, detail = found
        text = rule.text.format(sim=ctx.simulator, nodes=_nodes(nodes), detail=detail)
        if ctx.status == "failed":
            # a failure is explained by the rules about the nodes its message names
            observed = any(f"'{n}" in ctx.reason for n in nodes)
        else:
            observed = ctx.diverged
        out.append({"id": rule.id, "text": text, "nodes": list(nodes), "observed": bool(observed)})
    return out
