"""A slow, plain numpy reference simulator of ntgraph networks (float64, explicit loops).

Written from ``docs/semantics.md`` and the model docstrings in
:mod:`ntgraph.models`, independently of every backend: it imports neither
torch nor ``backends``, and it computes the step order and the effective
delays itself instead of reading the passes' annotations.  It is meant to be
read next to the semantics page, so it favours plain code over speed.

Per step ``t``, populations are visited in a topological order of the
projections of effective delay 0.  Each population sums
``I[t] = sum_p W_p @ out_src(p)[t - d_p] (+ bias_p)`` over its incoming
projections (``out_src[s] = 0`` for ``s < 0``), then takes one step of its
neuron model.  ``timing="pipelined"`` adds one step to every delay.

:func:`simulate` returns every Output by name and every recordable variable of
every population as ``"pop.var"`` (``"hid.spikes"``, ``"hid.v"``,
``"cuba.i"``, ``"alif.a"``, ``"wc.rate"``), each ``[T, B, n]``.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from ntgraph.graph import Graph
from ntgraph.ir import Dense, OneToOne, Output, Population, Projection, Sparse
from ntgraph.models import ALIF, IF, LI, LIF, CubaLIF, NeuronModel, RateUnit, WilsonCowan

__all__ = ["simulate", "step_order", "decay", "MODEL_FUNCTIONS"]


# ----------------------------------------------------------------------------- helpers
def decay(tau: np.ndarray, dt: float, discretization: str) -> np.ndarray:
    """Per-step decay of a leak with time constant ``tau``: ``1 - dt/tau`` or ``exp(-dt/tau)``."""
    tau = np.asarray(tau, dtype=np.float64)
    if discretization == "euler":
        return 1.0 - dt / tau
    if discretization == "exact":
        return np.exp(-dt / tau)
    raise ValueError(f"unknown discretization {discretization!r}")


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x gives the right limit, 0
        return 1.0 / (1.0 + np.exp(-x))


def p(model: NeuronModel, name: str) -> np.ndarray:
    """A per-neuron parameter as a float64 array ``(n,)``."""
    return np.asarray(getattr(model, name), dtype=np.float64)


def spike_and_reset(v: np.ndarray, threshold: np.ndarray, v_reset: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """``z = v > threshold`` (strict); reset ``"zero"``: ``v = v_reset``, ``"subtract"``: ``v = v - threshold``."""
    z = v > threshold
    if mode == "zero":
        v = np.where(z, v_reset, v)
    elif mode == "subtract":
        v = np.where(z, v - threshold, v)
    else:
        raise ValueError(f"unknown reset {mode!r}")
    return z.astype(np.float64), v


# ----------------------------------------------------------------------------- models
# Each model has ``init(model, B, n) -> state`` and
# ``step(model, state, I, dt, discretization) -> values``, where ``values`` holds
# every recordable variable after the step (the new state plus the output).


def lif_init(m: LIF, B: int, n: int) -> dict:
    return {"v": np.broadcast_to(p(m, "v_leak"), (B, n)).copy()}


def lif_step(m: LIF, s: dict, I: np.ndarray, dt: float, disc: str) -> dict:
    a = decay(m.tau_mem, dt, disc)
    v = a * s["v"] + (1.0 - a) * (p(m, "v_leak") + p(m, "r") * I)
    z, v = spike_and_reset(v, p(m, "v_th"), p(m, "v_reset"), m.reset)
    return {"spikes": z, "v": v}


def cuba_init(m: CubaLIF, B: int, n: int) -> dict:
    return {"i": np.zeros((B, n)), "v": np.broadcast_to(p(m, "v_leak"), (B, n)).copy()}


def cuba_step(m: CubaLIF, s: dict, I: np.ndarray, dt: float, disc: str) -> dict:
    b = decay(m.tau_syn, dt, disc)
    a = decay(m.tau_mem, dt, disc)
    i = b * s["i"] + (1.0 - b) * p(m, "w_in") * I
    v = a * s["v"] + (1.0 - a) * (p(m, "v_leak") + p(m, "r") * i)  # the new current
    z, v = spike_and_reset(v, p(m, "v_th"), p(m, "v_reset"), m.reset)
    return {"spikes": z, "i": i, "v": v}


def alif_init(m: ALIF, B: int, n: int) -> dict:
    return {"v": np.broadcast_to(p(m, "v_leak"), (B, n)).copy(), "a": np.zeros((B, n))}


def alif_step(m: ALIF, s: dict, I: np.ndarray, dt: float, disc: str) -> dict:
    a_m = decay(m.tau_mem, dt, disc)
    rho = decay(m.tau_adapt, dt, disc)
    v = a_m * s["v"] + (1.0 - a_m) * (p(m, "v_leak") + p(m, "r") * I)
    A = p(m, "v_th") + p(m, "beta") * s["a"]  # a from the previous step
    z, v = spike_and_reset(v, A, p(m, "v_reset"), m.reset)
    adapt = rho * s["a"] + z
    return {"spikes": z, "v": v, "a": adapt}


def if_init(m: IF, B: int, n: int) -> dict:
    return {"v": np.broadcast_to(p(m, "v_reset"), (B, n)).copy()}


def if_step(m: IF, s: dict, I: np.ndarray, dt: float, disc: str) -> dict:
    v = s["v"] + dt * p(m, "r") * I  # the same in both discretisations
    z, v = spike_and_reset(v, p(m, "v_th"), p(m, "v_reset"), m.reset)
    return {"spikes": z, "v": v}


def li_init(m: LI, B: int, n: int) -> dict:
    return {"v": np.broadcast_to(p(m, "v_leak"), (B, n)).copy()}


def li_step(m: LI, s: dict, I: np.ndarray, dt: float, disc: str) -> dict:
    a = decay(m.tau_mem, dt, disc)
    v = a * s["v"] + (1.0 - a) * (p(m, "v_leak") + p(m, "r") * I)
    return {"v": v}


def wc_init(m: WilsonCowan, B: int, n: int) -> dict:
    return {"rate": np.zeros((B, n))}


def wc_step(m: WilsonCowan, s: dict, I: np.ndarray, dt: float, disc: str) -> dict:
    x, tau, r = s["rate"], p(m, "tau"), p(m, "r")
    sact = sigmoid(I - p(m, "mu"))
    if disc == "euler":
        x = x + dt / tau * (-x + (1.0 - r * x) * sact)
    elif disc == "exact":
        k = (1.0 + r * sact) / tau
        x_inf = sact / (1.0 + r * sact)
        x = x_inf + (x - x_inf) * np.exp(-k * dt)
    else:
        raise ValueError(f"unknown discretization {disc!r}")
    return {"rate": x}


def rate_init(m: RateUnit, B: int, n: int) -> dict:
    return {"rate": np.zeros((B, n))}


def rate_step(m: RateUnit, s: dict, I: np.ndarray, dt: float, disc: str) -> dict:
    u = I + p(m, "bias")
    f = sigmoid(u) if m.activation == "sigmoid" else np.tanh(u)
    if m.tau is None:
        return {"rate": f}
    a = decay(m.tau, dt, disc)
    return {"rate": a * s["rate"] + (1.0 - a) * f}


MODEL_FUNCTIONS: dict[type, tuple[Callable, Callable]] = {
    LIF: (lif_init, lif_step),
    CubaLIF: (cuba_init, cuba_step),
    ALIF: (alif_init, alif_step),
    IF: (if_init, if_step),
    LI: (li_init, li_step),
    WilsonCowan: (wc_init, wc_step),
    RateUnit: (rate_init, rate_step),
}


# ----------------------------------------------------------------------------- projections
def project(proj: Projection, x: np.ndarray) -> np.ndarray:
    """The current ``[B, n_post]`` a projection delivers for presynaptic output ``x [B, n_pre]``."""
    if isinstance(proj, Dense):
        out = x @ np.asarray(proj.weight, dtype=np.float64).T
        if proj.bias is not None:
            out = out + np.asarray(proj.bias, dtype=np.float64)
        return out
    if isinstance(proj, Sparse):
        out = np.zeros((x.shape[0], proj.n_post))
        for w, post, pre in zip(proj.weight, proj.post_index, proj.pre_index):
            out[:, post] += w * x[:, pre]
        return out
    if isinstance(proj, OneToOne):
        return x * np.asarray(proj.weight, dtype=np.float64)
    raise TypeError(f"reference simulator: unsupported projection {type(proj).__name__}")


# ----------------------------------------------------------------------------- schedule
def effective_delays(graph: Graph, timing: str) -> dict[str, int]:
    extra = {"sync": 0, "pipelined": 1}[timing]
    return {proj: graph[proj].delay + extra for proj in graph.projections}


def step_order(graph: Graph, delays: Mapping[str, int]) -> list[str]:
    """Populations in an order where every delay-0 projection's source comes first.

    Repeated scanning in insertion order: take the first population whose
    undelayed population sources are all done; fail if none is ready.
    """
    remaining = list(graph.populations)
    done: list[str] = []
    while remaining:
        for pop in remaining:
            needs = [graph.source(pr) for pr in graph.incoming(pop)
                     if delays[pr] == 0 and isinstance(graph[graph.source(pr)], Population)]
            if all(src in done for src in needs):
                done.append(pop)
                remaining.remove(pop)
                break
        else:
            raise ValueError(f"reference simulator: cycle of undelayed projections among {remaining}")
    return done


# ----------------------------------------------------------------------------- simulate
def simulate(graph: Graph, inputs: Mapping[str, np.ndarray], dt: float, discretization: str = "euler",
             timing: str = "sync") -> dict[str, np.ndarray]:
    """Simulate ``graph`` on ``inputs`` (``{name: [T, B, F]}``); see the module docstring."""
    names = graph.inputs
    if set(inputs) != set(names):
        raise ValueError(f"reference simulator: expected inputs {names}, got {sorted(inputs)}")
    xs = {k: np.asarray(inputs[k], dtype=np.float64) for k in names}
    T, B = xs[names[0]].shape[:2]
    for k, x in xs.items():
        if x.shape != (T, B, graph[k].size):
            raise ValueError(f"reference simulator: input {k!r} has shape {x.shape}, expected {(T, B, graph[k].size)}")

    delays = effective_delays(graph, timing)
    order = step_order(graph, delays)

    # out[node][t]: the output of every Input and Population at every step (the history).
    out: dict[str, np.ndarray] = dict(xs)
    state: dict[str, dict] = {}
    records: dict[str, np.ndarray] = {}
    for pop in order:
        payload: Population = graph[pop]
        init, _ = MODEL_FUNCTIONS[type(payload.model)]
        state[pop] = init(payload.model, B, payload.size)
        out[pop] = np.zeros((T, B, payload.size))
        for var in payload.model.recordable:
            records[f"{pop}.{var}"] = np.zeros((T, B, payload.size))

    for t in range(T):
        for pop in order:
            payload = graph[pop]
            model = payload.model
            current = np.zeros((B, payload.size))
            for proj in graph.incoming(pop):
                src, d = graph.source(proj), delays[proj]
                pre = out[src][t - d] if t - d >= 0 else np.zeros((B, graph.node_size(src)))
                current = current + project(graph[proj], pre)
            _, step = MODEL_FUNCTIONS[type(model)]
            values = step(model, state[pop], current, dt, discretization)
            state[pop] = {var: values[var] for var in model.state_vars}
            for var in model.recordable:
                records[f"{pop}.{var}"][t] = values[var]
            out[pop][t] = values[model.output_var]

    result = {o: out[graph.source(o)].copy() for o in graph.ids(Output)}
    result.update(records)
    return result
