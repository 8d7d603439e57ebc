"""A plain, bit-accurate numpy model of Loihi 2's integer LIF network, for the tests.

Written from the equations of Lava's ``fixed_pt`` process models
(``PyLifModelBitAcc``, ``PyDenseModelBitAcc``, ``PyDelayDenseModelBitAcc``;
see ``docs/lava.md``), not from the backend's code, and driven only by the
``meta['loihi']`` annotations of :func:`ntgraph.passes.quantize.quantize` and
each projection's effective delay ``meta['delay']``.  One sample, Python-level
loops, int64 throughout.  Per step ``t`` and population::

    a_in = const_input + sum_p shift_p(W_p @ s_src(p)[t - d_p])         (s = 0 before t = 0)
    shift_p(x) = x << e_p  (e_p > 0)  or  x >> -e_p  (floor)
    u = trunc0(u * (4096 - (du + 1)) / 4096) + (a_in << 6), wrapped into 24 bits
    v = trunc0(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp), clipped to +-(2**23 - 1)
    s = v > (vth << 6);  v = 0 where s

``trunc0`` rounds toward zero.  Spike sources send 0/1, Inputs their integers
``round(x * input_scale)``.
"""

from __future__ import annotations

import numpy as np

from ntgraph.graph import Graph

MAX = 1 << 23


def _trunc_decay(x: np.ndarray, keep: int) -> np.ndarray:
    prod = x.astype(np.int64) * keep
    return np.sign(prod) * (np.abs(prod) >> 12)


def _wrap24(x: np.ndarray) -> np.ndarray:
    out = np.where(x > MAX, x - 2 * MAX, x)
    return np.where(out <= -MAX, x + 2 * MAX, out)


def simulate_loihi(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Run one sample: ``inputs[name]`` is ``[T, n]`` (model units).  Returns ``{pop: {spikes, v, u}}`` as int64 ``[T, n]``."""
    steps = next(iter(inputs.values())).shape[0]
    q = {n: graph.meta(n)["loihi"] for n in graph.populations}
    outputs: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        scale = 1.0
        for proj in graph.outgoing(name):
            scale = graph.meta(proj)["loihi"].input_scale
        outputs[name] = np.round(np.asarray(inputs[name], dtype=np.float64) * scale).astype(np.int64)
    for pop in graph.populations:
        outputs[pop] = np.zeros((steps, graph[pop].size), dtype=np.int64)
    u = {p: np.zeros(graph[p].size, dtype=np.int64) for p in graph.populations}
    v = {p: np.asarray(q[p].v_init, dtype=np.int64).copy() for p in graph.populations}
    trace = {p: {"spikes": np.zeros((steps, graph[p].size), np.int64), "v": np.zeros((steps, graph[p].size), np.int64),
                 "u": np.zeros((steps, graph[p].size), np.int64)} for p in graph.populations}
    weights = {}
    for proj in graph.projections:
        s = graph.meta(proj)["loihi"]
        payload = graph[proj]
        if s.post_index is None:
            w = np.asarray(s.weight, dtype=np.int64)
        else:
            w = np.zeros((payload.n_post, payload.n_pre), dtype=np.int64)
            np.add.at(w, (np.asarray(s.post_index), np.asarray(s.pre_index)), np.asarray(s.weight, dtype=np.int64))
        weights[proj] = (w, int(s.weight_exp), int(graph.meta(proj)["delay"]))
    for t in range(steps):
        for pop in graph.populations:
            p = q[pop]
            a_in = np.asarray(p.const_input, dtype=np.int64).copy()
            for proj in graph.incoming(pop):
                w, e, d = weights[proj]
                if t - d < 0:
                    continue
                acc = w @ outputs[graph.source(proj)][t - d]
                a_in += (acc << e) if e > 0 else (acc >> -e)
            u[pop] = _wrap24(_trunc_decay(u[pop], 4096 - (p.du + 1)) + (a_in << 6))
            bias = np.where(np.asarray(p.bias_exp) >= 0,
                            np.asarray(p.bias_mant, np.int64) << np.maximum(np.asarray(p.bias_exp, np.int64), 0), 0)
            vn = _trunc_decay(v[pop], 4096 - p.dv) + u[pop] + bias
            vn = np.clip(vn, -MAX + 1, MAX - 1)
            spikes = vn > (int(p.vth) << 6)
            vn[spikes] = 0
            v[pop] = vn
            outputs[pop][t] = spikes
            trace[pop]["spikes"][t] = spikes
            trace[pop]["v"][t] = vn
            trace[pop]["u"][t] = u[pop]
    return trace
