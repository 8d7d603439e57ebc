"""Random ntgraph networks and inputs for property tests shared by several backends' tests.

``random_graph`` mixes every neuron model, Dense (bias, masks, sign masks,
bounds, Dale's law), Sparse (with duplicate synapses), OneToOne, recurrent and
self projections, delays 0-3, several inputs and outputs; populations are fed
forward along a random permutation so the step order is not the insertion order.
"""

from __future__ import annotations

import numpy as np

import ntgraph as ntg

DT = 1e-3
KINDS = ("LIF", "CubaLIF", "ALIF", "IF", "LI", "WilsonCowan", "RateUnit")


def random_model(rng: np.random.Generator, kind: str, n: int) -> ntg.NeuronModel:
    """A model of ``kind`` with heterogeneous per-neuron parameters (time constants in [dt, 20 dt])."""

    def tau():
        return rng.uniform(1.0, 20.0, n) * DT

    def u(lo, hi):
        return rng.uniform(lo, hi, n)

    reset = str(rng.choice(["zero", "subtract"]))
    if kind == "LIF":
        return ntg.LIF(tau_mem=tau(), v_th=u(0.5, 1.5), v_leak=u(-0.2, 0.2), v_reset=u(-0.3, 0.1), r=u(0.5, 2.0),
                       reset=reset)
    if kind == "CubaLIF":
        return ntg.CubaLIF(tau_syn=tau(), tau_mem=tau(), v_th=u(0.3, 1.2), v_leak=u(-0.2, 0.2), v_reset=u(-0.3, 0.1),
                           r=u(0.5, 2.0), w_in=u(0.5, 3.0), reset=reset)
    if kind == "ALIF":
        return ntg.ALIF(tau_mem=tau(), tau_adapt=tau() * 5, beta=u(0.0, 2.0), v_th=u(0.5, 1.5), v_leak=u(-0.2, 0.2),
                        v_reset=u(-0.3, 0.1), r=u(0.5, 2.0), reset=reset)
    if kind == "IF":
        return ntg.IF(r=u(0.2, 1.0) / DT, v_th=u(0.5, 1.5), v_reset=u(-0.3, 0.1), reset=reset)
    if kind == "LI":
        return ntg.LI(tau_mem=tau(), v_leak=u(-0.5, 0.5), r=u(0.5, 2.0))
    if kind == "WilsonCowan":
        return ntg.WilsonCowan(tau=tau(), mu=u(-1.0, 1.0), r=u(0.0, 1.0))
    if kind == "RateUnit":
        return ntg.RateUnit(tau=None if rng.random() < 0.4 else tau(), bias=u(-1.0, 1.0),
                            activation=str(rng.choice(["sigmoid", "tanh"])))
    raise AssertionError(kind)


def add_projection(g: ntg.Graph, rng: np.random.Generator, src: str, dst: str, delay) -> str:
    """A random Dense, Sparse or OneToOne projection ``src -> dst`` (``delay=None``: the builder's default)."""
    n_pre, n_post = g.node_size(src), g.node_size(dst)
    has_dale = getattr(g[src], "dale", None) is not None
    scale = 2.0 / np.sqrt(n_pre)
    choices = ["dense", "dense", "sparse"] + (["one_to_one"] if n_pre == n_post else [])
    kind = str(rng.choice(choices))
    if kind == "one_to_one":
        return g.one_to_one(src, dst, weight=rng.normal(0.5, 1.0, n_post), delay=delay)
    if kind == "sparse":
        if rng.random() < 0.5:
            return g.sparse(src, dst, p=float(rng.uniform(0.3, 1.0)), scale=scale, delay=delay)
        n_syn = int(rng.integers(1, 2 * n_pre * n_post + 1))  # duplicates likely: they add up
        return g.sparse(src, dst, post_index=rng.integers(0, n_post, n_syn), pre_index=rng.integers(0, n_pre, n_syn),
                        weight=rng.normal(0.0, scale, n_syn), delay=delay)
    opts: dict = {"scale": scale, "delay": delay}
    if rng.random() < 0.5:
        opts["bias"] = rng.normal(0.0, 0.5, n_post)
    r = rng.random()
    if r < 0.25:
        opts["p"] = float(rng.uniform(0.3, 1.0))
    elif r < 0.4:
        opts["mask"] = rng.random((n_post, n_pre)) < 0.6
    if not has_dale and rng.random() < 0.25:
        opts["sign"] = rng.integers(-1, 2, (n_post, n_pre))
    if rng.random() < 0.2:
        opts["bounds"] = (-1.0, 1.0)
    if src == dst and rng.random() < 0.5:
        opts["no_self"] = True
    return g.dense(src, dst, **opts)


def random_graph(rng: np.random.Generator, kinds=None) -> ntg.Graph:
    """A random network: inputs, populations in a hidden topological order, feed-forward and recurrent projections.

    Populations are inserted in one order but fed forward along a random
    permutation, so the step order differs from the insertion order.  Feed-forward
    projections have delays 0-3; recurrent and self projections 1-3 or the
    builder's default (1).
    """
    g = ntg.Graph("random", seed=int(rng.integers(2**31)))
    inputs = []
    for k in range(int(rng.integers(1, 3))):
        exc = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.3 else None
        inputs.append(g.input(f"in{k}", int(rng.integers(1, 5)), excitatory=exc))
    if kinds is None:
        kinds = [str(k) for k in rng.choice(KINDS, int(rng.integers(2, 6)))]
    pops = []
    for k, kind in enumerate(kinds):
        n = int(rng.integers(1, 6))
        exc = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.3 else None
        pops.append(g.population(f"p{k}_{kind}", random_model(rng, kind, n), n, excitatory=exc))
    rank = {p: r for p, r in zip(pops, rng.permutation(len(pops)))}
    by_rank = sorted(pops, key=rank.get)
    for j, dst in enumerate(by_rank):
        earlier = inputs + by_rank[:j]
        n_src = int(rng.choice([0, 1, 1, 2, 2, 3])) if j else int(rng.integers(1, 3))
        for src in rng.choice(earlier, size=min(n_src, len(earlier)), replace=False):
            add_projection(g, rng, str(src), dst, int(rng.choice([0, 0, 0, 1, 2, 3])))
        if not g.incoming(dst):
            add_projection(g, rng, str(rng.choice(inputs)), dst, 0)
    for _ in range(int(rng.integers(0, 4))):  # recurrent / self projections: from a later (or the same) population back
        a, b = sorted(rng.choice(len(by_rank), size=2))
        add_projection(g, rng, by_rank[b], by_rank[a], None if rng.random() < 0.5 else int(rng.integers(1, 4)))
    sources = list(rng.choice(pops, size=int(rng.integers(1, min(3, len(pops)) + 1)), replace=False))
    if rng.random() < 0.2:
        sources.append(str(rng.choice(inputs)))
    for k, src in enumerate(sources):
        g.output(f"out{k}", str(src))
    return g


def random_inputs(rng: np.random.Generator, g: ntg.Graph, steps: int, batch: int) -> dict[str, np.ndarray]:
    """Spike trains or analogue values per Input, ``[T, B, size]``."""
    xs = {}
    for name in g.inputs:
        shape = (steps, batch, g[name].size)
        if rng.random() < 0.5:
            xs[name] = (rng.random(shape) < 0.4).astype(np.float64)
        else:
            xs[name] = rng.uniform(-0.5, 1.5, shape)
    return xs


def probes(g: ntg.Graph) -> list[str]:
    return [f"{p}.{v}" for p in g.populations for v in g[p].model.recordable]


def spiking_keys(g: ntg.Graph) -> set[str]:
    keys = {f"{p}.spikes" for p in g.populations if g[p].model.spiking}
    keys |= {o for o in g.outputs if getattr(g[g.source(o)], "model", None) is not None and g[g.source(o)].model.spiking}
    return keys
