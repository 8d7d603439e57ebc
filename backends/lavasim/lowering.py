"""Lowering an ntgraph graph to a plan of Lava processes (numpy only; no lava import).

The plan says which Lava process every node becomes and with which numbers;
:mod:`backends.lavasim.runner` instantiates it.  Mapping (``docs/lava.md``):

* ``LIF``, ``CubaLIF``, ``IF``, ``LI`` -> ``lava.proc.lif.process.LIF`` with the
  parameters of :func:`ntgraph.passes.quantize.loihi_form` (float) or the
  ``meta['loihi']`` annotations of the quantisation pass (fixed); LI has an
  unreachable threshold and is read through its voltage;
* ``Dense`` -> ``Dense`` (``DelayDense`` with delays ``d-1`` when the effective
  delay ``d`` is above 1, since Lava delivers a ``DelayDense`` delay ``d-1``
  after ``d`` steps); ``Sparse`` and ``OneToOne`` -> ``Sparse`` / ``DelaySparse``;
  the weights are the IR weights times the target's per-neuron gain;
* an ``Input`` -> a :class:`~backends.lavasim.processes.BulkSource` of graded
  spikes (``num_message_bits=24``); population sources send binary spikes;
* Dense biases fold into the neuron bias (LIF, IF, LI) or a constant
  ``io.source.RingBuffer`` into ``a_in`` (CubaLIF, whose bias is a current).

Every Lava connection takes at least one step, so every projection's
effective delay (``meta['delay']``, ``timing="pipelined"`` adds one) must be >= 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ntgraph.errors import UnsupportedNodeError, ValidationError
from ntgraph.graph import Graph
from ntgraph.ir import Dense, Input, OneToOne, Output, Population, Projection, Sparse
from ntgraph.passes.quantize import LOIHI2, LoihiNeuronQ, LoihiSynapseQ, loihi_form, synapse_coordinates
from ntgraph.registry import LoweringTable

__all__ = ["NeuronPlan", "ConnectionPlan", "NetworkPlan", "plan_network", "LOWERINGS", "PRECISIONS"]

PRECISIONS = ("float", "fixed")
INPUT_MESSAGE_BITS = 24

#: IR type -> Lava process kind (for errors naming what this backend supports).
LOWERINGS = LoweringTable("lava")
LOWERINGS.register(Population)("LIF")
LOWERINGS.register(Dense)("Dense")
LOWERINGS.register(Sparse, OneToOne)("Sparse")
LOWERINGS.register(Input)("BulkSource")
LOWERINGS.register(Output)("BulkRecorder")


@dataclass
class NeuronPlan:
    """One Lava ``LIF`` process: its parameters and how to read its state back.

    Read-back: ``v = v_lava / v_scale + v_offset``; CubaLIF ``i = u_lava / i_scale``.
    """

    node_id: str
    kind: str
    size: int
    du: float
    dv: float
    vth: float
    bias_mant: np.ndarray
    bias_exp: np.ndarray
    v_init: np.ndarray
    const_input: Optional[np.ndarray]
    v_scale: np.ndarray
    v_offset: np.ndarray
    i_scale: Optional[np.ndarray]

    @property
    def spiking(self) -> bool:
        return self.kind != "LI"


@dataclass
class ConnectionPlan:
    """One Lava connection process from ``source`` (a population or an Input) to ``target``.

    ``post``/``pre``/``weight``: the synapses (coalesced, zeros dropped).  ``dense``
    selects a ``Dense``-family process (else ``Sparse``).  ``delay``: effective
    delay in steps (>= 1).  ``weight_exp``/``sign_mode``: fixed point only.
    """

    node_id: str
    source: str
    target: str
    n_post: int
    n_pre: int
    post: np.ndarray
    pre: np.ndarray
    weight: np.ndarray
    dense: bool
    delay: int
    graded: bool
    weight_exp: int = 0
    sign_mode: Optional[str] = None
    num_weight_bits: int = 8
    input_scale: float = 1.0

    def matrix(self) -> np.ndarray:
        """The weights as a dense ``(n_post, n_pre)`` matrix."""
        dtype = np.int32 if self.sign_mode is not None else np.float64
        w = np.zeros((self.n_post, self.n_pre), dtype=dtype)
        np.add.at(w, (self.post, self.pre), self.weight)
        return w


@dataclass
class NetworkPlan:
    """Every Lava process of one network, in the graph's order, and what to record by default."""

    precision: str
    neurons: dict[str, NeuronPlan] = field(default_factory=dict)
    connections: dict[str, ConnectionPlan] = field(default_factory=dict)
    inputs: dict[str, int] = field(default_factory=dict)
    input_scale: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


def _check_delay(graph: Graph, proj: str, precision: str) -> int:
    delay = int(graph.meta(proj).get("delay", graph[proj].delay))
    if delay < 1:
        timing = graph.attrs.get("timing", "sync")
        raise ValidationError(
            f"Projection '{proj}'.delay: the effective delay is {delay} under timing={timing!r}, but every Lava "
            f"connection takes at least one step; compile with timing='pipelined' (Lava's timing) or give the "
            f"projection delay >= 1"
        )
    if precision == "fixed" and delay > LOIHI2.max_delay_steps:
        raise ValidationError(
            f"Projection '{proj}'.delay: the effective delay is {delay} steps; Loihi 2 synapses delay by at most "
            f"{LOIHI2.max_delay_steps} steps (6-bit DelayDense delays 0..63, each plus one step)"
        )
    return delay


def _float_neuron(graph: Graph, pop: str, dt: float, discretization: str) -> tuple[NeuronPlan, np.ndarray]:
    form = loihi_form(graph, pop, dt, discretization)
    k, vth = form.float_scale()
    const = k * form.const_input
    plan = NeuronPlan(pop, form.kind, form.size, form.du, form.dv, vth, k * form.bias, np.zeros(form.size),
                      k * form.v_init, const if np.any(const) else None, k, form.offset,
                      None if form.current_scale is None else k * form.current_scale)
    return plan, k * form.gain


def _fixed_neuron(q: LoihiNeuronQ, size: int) -> NeuronPlan:
    i_scale = None if q.current_scale is None else q.scale * q.current_scale
    return NeuronPlan(q.node_id, q.kind, size, q.du, q.dv, q.vth, np.array(q.bias_mant), np.array(q.bias_exp),
                      np.array(q.v_init), np.array(q.const_input) if np.any(q.const_input) else None,
                      np.array(q.scale), np.array(q.offset), i_scale)


def plan_network(graph: Graph, *, precision: str, dt: float, discretization: str) -> NetworkPlan:
    """The Lava processes for a prepared ``graph`` (annotated by the passes; by ``quantize`` for fixed point)."""
    if precision not in PRECISIONS:
        raise ValidationError(f"lava backend option precision: expected one of {PRECISIONS}, got {precision!r}")
    plan = NetworkPlan(precision)
    gains: dict[str, np.ndarray] = {}
    for node_id, payload in graph.items():
        LOWERINGS.lookup(payload, node_id)
        if isinstance(payload, Population):
            if precision == "float":
                plan.neurons[node_id], gains[node_id] = _float_neuron(graph, node_id, dt, discretization)
            else:
                q = graph.meta(node_id).get("loihi")
                if not isinstance(q, LoihiNeuronQ):
                    raise ValidationError(f"Population '{node_id}': no Loihi fixed-point annotation; run the quantize pass")
                plan.neurons[node_id] = _fixed_neuron(q, payload.size)
        elif isinstance(payload, Input):
            plan.inputs[node_id] = payload.size
        elif isinstance(payload, Output):
            plan.outputs[node_id] = graph.source(node_id)
    for proj in graph.projections:
        payload: Projection = graph[proj]
        src, dst = graph.source(proj), graph.target(proj)
        src_payload = graph[src]
        graded = isinstance(src_payload, Input)
        if not graded and not plan.neurons[src].spiking:
            raise UnsupportedNodeError(
                f"backend 'lava': Projection '{proj}' reads the voltage of LI Population '{src}'; on Lava/Loihi "
                f"projections carry spikes only; expected a spiking source (LIF, CubaLIF, IF) or an Input"
            )
        delay = _check_delay(graph, proj, precision)
        dense = isinstance(payload, Dense)
        if precision == "float":
            post, pre, w = synapse_coordinates(payload)
            conn = ConnectionPlan(proj, src, dst, payload.n_post, payload.n_pre, post, pre, gains[dst][post] * w, dense,
                                  delay, graded)
        else:
            q = graph.meta(proj).get("loihi")
            if not isinstance(q, LoihiSynapseQ):
                raise ValidationError(f"Projection '{proj}': no Loihi fixed-point annotation; run the quantize pass")
            if q.post_index is None:
                post, pre = np.nonzero(q.weight)
                w = np.asarray(q.weight)[post, pre]
            else:
                keep = np.asarray(q.weight) != 0
                post, pre, w = np.asarray(q.post_index)[keep], np.asarray(q.pre_index)[keep], np.asarray(q.weight)[keep]
            conn = ConnectionPlan(proj, src, dst, payload.n_post, payload.n_pre, post, pre, w.astype(np.int32), dense,
                                  delay, graded, q.weight_exp, q.sign_mode, q.num_weight_bits, q.input_scale)
            if graded:
                plan.input_scale[src] = q.input_scale
        plan.connections[proj] = conn
    return plan
