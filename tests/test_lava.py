"""The Lava backend (Loihi 2 simulator) against the torch backend and a bit-accurate numpy model.

Floating point: every supported model and graph shape against the torch
backend compiled with ``timing="pipelined"`` (Lava's timing), in float64:
identical spikes and voltages/currents within ``ATOL = 1e-5``.  Fixed point:
Lava's bit-accurate models against ``tests/loihi_reference.py`` (identical
spikes and integer ``v``/``u``), and against floating point (spike agreement
>= 95%).  Lava starts one worker process per Lava process for every run; the
runner stops them before returning, so no test leaks processes.  The fast set
runs two tiny networks (<= 20 steps); the rest is marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ntgraph as ntg
from ntgraph.errors import UnsupportedNodeError, ValidationError

pytest.importorskip("lava", reason="lava-nc is not installed (see docs/lava.md)")

import loihi_reference  # noqa: E402

DT = 1e-3
ATOL = 1e-5


# ----------------------------------------------------------------------------- helpers
def spikes_input(rng: np.random.Generator, steps: int, batch: int, n: int, p: float = 0.4) -> np.ndarray:
    return (rng.random((steps, batch, n)) < p).astype(np.float64)


def run_both(graph: ntg.Graph, x, record, **lava_options):
    """(torch, lava) results of the same graph under timing='pipelined'."""
    common = dict(dt=DT, timing="pipelined", record=record)
    ref = ntg.simulate(graph, x, target="torch", dtype=torch.float64, **common)
    got = ntg.simulate(graph, x, target="lava", **common, **lava_options)
    return ref, got


def assert_same(ref: dict, got: dict, graph: ntg.Graph) -> None:
    assert set(ref) == set(got)
    spiking = {p for p in graph.populations if graph[p].model.spiking}
    for key, want in ref.items():
        have = got[key]
        assert have.shape == want.shape, key
        pop = key.split(".")[0] if "." in key else graph.source(key) if key in graph.outputs else key
        is_spikes = key.endswith(".spikes") or (key in graph.outputs and graph.source(key) in spiking)
        if is_spikes:
            np.testing.assert_array_equal(have, want, err_msg=f"spikes of {key} ({pop})")
        else:
            np.testing.assert_allclose(have, want, rtol=0, atol=ATOL, err_msg=key)


def rich_graph(seed: int = 3) -> ntg.Graph:
    """Dense+bias, recurrence, heterogeneous thresholds and resets, CubaLIF with a bias current,
    a delayed Sparse projection and an LI readout."""
    rng = np.random.default_rng(seed)
    g = ntg.Graph("rich", seed=seed)
    g.input("x", 6)
    g.population("h", ntg.LIF(tau_mem=4e-3, v_th=rng.uniform(0.6, 1.0, 8), v_leak=0.1,
                               v_reset=rng.uniform(-0.2, 0.0, 8), r=rng.uniform(0.8, 1.2, 8)), 8)
    g.dense("x", "h", scale=1.2, bias=rng.normal(0.1, 0.1, 8))
    g.dense("h", "h", scale=0.4)
    g.population("c", ntg.CubaLIF(tau_syn=3e-3, tau_mem=5e-3, v_th=0.25, w_in=1.5), 5)
    g.dense("h", "c", scale=0.8, bias=np.full(5, 0.05))
    g.sparse("x", "c", p=0.5, scale=0.8, delay=1)
    g.population("o", ntg.LI(tau_mem=3e-3, v_leak=0.05), 3)
    g.dense("c", "o")
    g.output("y", "o")
    g.output("hs", "h")
    return g


# ----------------------------------------------------------------------------- fast: one network each way
def test_float_matches_torch_on_a_rich_network():
    g = rich_graph()
    x = spikes_input(np.random.default_rng(0), 20, 2, 6)
    ref, got = run_both(g, x, ["h.v", "c", "c.v", "c.i", "o.v"])
    assert ref["hs"].sum() > 5 and ref["c.spikes"].sum() > 2, "test network must spike"
    assert_same(ref, got, g)


def test_fixed_point_is_bit_exact_with_the_numpy_model():
    g = rich_graph()
    x = spikes_input(np.random.default_rng(1), 20, 2, 6)
    runner = ntg.compile(g, "lava", dt=DT, timing="pipelined", precision="fixed")
    out = runner.run(x, record=["h", "h.v", "c", "c.v", "c.i", "o.v"], raw=True)
    assert out["h.spikes"].sum() > 5 and out["c.spikes"].sum() > 0
    for b in range(2):
        ref = loihi_reference.simulate_loihi(runner.graph, {"x": x[:, b]})
        for key, pop, var in [("h.spikes", "h", "spikes"), ("h.v", "h", "v"), ("c.spikes", "c", "spikes"),
                              ("c.v", "c", "v"), ("c.i", "c", "u"), ("o.v", "o", "v")]:
            np.testing.assert_array_equal(out[key][:, b], ref[pop][var], err_msg=f"{key} sample {b}")


# ----------------------------------------------------------------------------- fast: errors (no Lava run)
def _small(model, **dense) -> ntg.Graph:
    g = ntg.Graph("e")
    g.input("x", 2)
    g.population("p", model, 3)
    g.dense("x", "p", **dense)
    g.output("y", "p")
    return g


def test_subtractive_reset_is_rejected():
    g = _small(ntg.LIF(tau_mem=5e-3, reset="subtract"))
    with pytest.raises(ValidationError, match=r"Population 'p'\.reset: .*subtractive.*'subtract'"):
        ntg.compile(g, "lava", dt=DT, timing="pipelined")


def test_heterogeneous_time_constants_are_rejected():
    g = _small(ntg.CubaLIF(tau_syn=[2e-3, 3e-3, 3e-3], tau_mem=5e-3))
    with pytest.raises(ValidationError, match=r"Population 'p'\.tau_syn: .*single current decay du.*\[0\.002, 0\.003\]"):
        ntg.compile(g, "lava", dt=DT, timing="pipelined")
    g = _small(ntg.LIF(tau_mem=[5e-3, 5e-3, 6e-3]))
    with pytest.raises(ValidationError, match=r"Population 'p'\.tau_mem: .*voltage decay dv"):
        ntg.compile(g, "lava", dt=DT, timing="pipelined")


def test_unsupported_models_and_sources_are_named():
    g = _small(ntg.ALIF(tau_mem=5e-3, tau_adapt=50e-3, reset="zero"))
    with pytest.raises(UnsupportedNodeError, match=r"Population 'p' has model ALIF.*supported: LIF, CubaLIF, IF, LI"):
        ntg.compile(g, "lava", dt=DT, timing="pipelined")
    g = ntg.Graph("li-source")
    g.input("x", 2)
    g.population("a", ntg.LI(tau_mem=5e-3), 2)
    g.population("b", ntg.LIF(tau_mem=5e-3), 2)
    g.dense("x", "a")
    g.dense("a", "b")
    g.output("y", "b")
    with pytest.raises(UnsupportedNodeError, match=r"Projection 'a->b' reads the voltage of LI Population 'a'"):
        ntg.compile(g, "lava", dt=DT, timing="pipelined")


def test_sync_timing_needs_delays():
    g = _small(ntg.LIF(tau_mem=5e-3))
    with pytest.raises(ValidationError, match=r"Projection 'x->p'\.delay: the effective delay is 0 under timing='sync'.*pipelined"):
        ntg.compile(g, "lava", dt=DT)
    g = ntg.Graph("d")
    g.input("x", 2)
    g.population("p", ntg.LIF(tau_mem=5e-3), 2)
    g.dense("x", "p", delay=70)
    g.output("y", "p")
    with pytest.raises(ValidationError, match=r"at most 64 steps"):
        ntg.compile(g, "lava", dt=DT, timing="pipelined", precision="fixed")


def test_options_are_checked():
    g = _small(ntg.LIF(tau_mem=5e-3))
    with pytest.raises(ValidationError, match="unknown option"):
        ntg.compile(g, "lava", dt=DT, timing="pipelined", colour="red")
    with pytest.raises(ValidationError, match="precision"):
        ntg.compile(g, "lava", dt=DT, timing="pipelined", precision="double")
    with pytest.raises(ValidationError, match="batch_mode"):
        ntg.compile(g, "lava", dt=DT, timing="pipelined", batch_mode="parallel")
    with pytest.raises(ValidationError, match="only used with precision='fixed'"):
        ntg.compile(g, "lava", dt=DT, timing="pipelined", quantize={"v_headroom": 8})
    runner = ntg.compile(g, "lava", dt=DT, timing="pipelined")
    with pytest.raises(ValidationError, match=r"has no variable 'a'"):
        runner.run(np.zeros((3, 1, 2)), record=["p.a"])
    with pytest.raises(ntg.ShapeError, match=r"expected an array of shape \[T, batch, 2\]"):
        runner.run(np.zeros((3, 2)))


def test_heterogeneous_thresholds_need_v_th_above_v_reset():
    g = _small(ntg.LIF(tau_mem=5e-3, v_th=[1.0, 0.5, -0.1]))
    with pytest.raises(ValidationError, match=r"Population 'p'\.v_th: .*neuron 2 has v_th - v_reset = -0\.1"):
        ntg.compile(g, "lava", dt=DT, timing="pipelined")


# ----------------------------------------------------------------------------- slow: every model and shape
def _graph(kind: str) -> tuple[ntg.Graph, list[str]]:
    rng = np.random.default_rng(7)
    g = ntg.Graph(kind, seed=11)
    g.input("x", 5)
    record: list[str] = []
    if kind == "feedforward":
        g.population("a", ntg.LIF(tau_mem=5e-3, v_th=0.8), 6)
        g.population("b", ntg.LIF(tau_mem=8e-3, v_th=0.5, v_leak=0.2), 4)
        g.dense("x", "a", scale=1.0)
        g.dense("a", "b", scale=2.0, bias=rng.normal(0.1, 0.1, 4))
        g.output("y", "b")
        record = ["a.v", "b.v", "a"]
    elif kind == "recurrent":
        g.population("a", ntg.LIF(tau_mem=6e-3, v_th=0.7, v_reset=-0.1), 10)
        g.dense("x", "a", scale=1.0)
        g.dense("a", "a", scale=0.5, no_self=True)
        g.output("y", "a")
        record = ["a.v"]
    elif kind == "delays":
        g.population("a", ntg.LIF(tau_mem=5e-3, v_th=0.6), 6)
        g.population("b", ntg.LIF(tau_mem=5e-3, v_th=0.6), 4)
        g.dense("x", "a", scale=1.0, delay=3)
        g.dense("a", "b", scale=2.5, delay=2)
        g.dense("a", "a", scale=0.3, delay=4)
        g.output("y", "b")
        record = ["a.v", "b.v", "a"]
    elif kind == "sparse":
        g.population("a", ntg.LIF(tau_mem=5e-3, v_th=0.6), 12)
        g.sparse("x", "a", p=0.5, scale=1.2)
        g.sparse("a", "a", p=0.3, scale=0.5, delay=2)
        g.population("b", ntg.LIF(tau_mem=5e-3, v_th=0.3), 5)
        g.dense("a", "b", scale=0.8)
        g.output("y", "b")
        record = ["a.v", "a"]
    elif kind == "one_to_one":
        g.population("a", ntg.LIF(tau_mem=5e-3, v_th=0.5), 5)
        g.one_to_one("x", "a", weight=rng.uniform(0.6, 1.4, 5))
        g.population("b", ntg.IF(r=1.0 / DT, v_th=1.5, v_reset=0.2), 5)
        g.one_to_one("a", "b", weight=1.4, delay=1)
        g.output("y", "b")
        record = ["a.v", "b.v", "a"]
    elif kind == "cuba":
        g.population("a", ntg.CubaLIF(tau_syn=4e-3, tau_mem=6e-3, v_th=0.3, v_leak=0.05, r=1.3, w_in=2.0,
                                      v_reset=-0.05), 7)
        g.dense("x", "a", scale=1.0, bias=rng.normal(0.05, 0.05, 7))
        g.dense("a", "a", scale=0.3)
        g.output("y", "a")
        record = ["a.v", "a.i"]
    elif kind == "if":
        g.population("a", ntg.IF(r=rng.uniform(0.5, 1.5, 6) / DT, v_th=1.0), 6)
        g.dense("x", "a", scale=0.8, bias=np.full(6, 0.1))
        g.output("y", "a")
        record = ["a.v"]
    elif kind == "li_readout":
        g.population("a", ntg.LIF(tau_mem=5e-3, v_th=0.5), 8)
        g.dense("x", "a", scale=1.0)
        g.population("o", ntg.LI(tau_mem=rng.uniform(4e-3, 4e-3, 3), v_leak=[0.0, 0.1, -0.1], r=[1.0, 2.0, 0.5]), 3)
        g.dense("a", "o", bias=[0.1, 0.0, -0.2])
        g.output("y", "o")
        record = ["o"]
    elif kind == "two_inputs_disconnected":
        g.input("z", 3)
        g.population("a", ntg.LIF(tau_mem=5e-3, v_th=0.5), 4)
        g.population("b", ntg.LIF(tau_mem=7e-3, v_th=0.5), 4)
        g.dense("x", "a", scale=1.0)
        g.dense("z", "b", scale=1.0)
        g.output("ya", "a")
        g.output("yb", "b")
        g.output("xz", "z")
        record = ["a.v", "b.v"]
    else:
        raise AssertionError(kind)
    return g, record


KINDS = ["feedforward", "recurrent", "delays", "sparse", "one_to_one", "cuba", "if", "li_readout",
         "two_inputs_disconnected"]


def _inputs(g: ntg.Graph, steps: int, batch: int, seed: int = 0, graded: bool = False):
    rng = np.random.default_rng(seed)
    xs = {}
    for name in g.inputs:
        n = g[name].size
        xs[name] = rng.normal(0.3, 0.5, (steps, batch, n)) if graded else spikes_input(rng, steps, batch, n)
    return xs


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_float_matches_torch(kind):
    g, record = _graph(kind)
    xs = _inputs(g, 30, 3)
    spiking = [p for p in g.populations if g[p].model.spiking]
    canonical = [r if "." in r else f"{r}.{g[r].model.output_var}" for r in record]
    ref, got = run_both(g, xs, list(dict.fromkeys(canonical + [f"{p}.spikes" for p in spiking])))
    for p in spiking:
        assert ref[f"{p}.spikes"].mean() > 0.02, f"test network: population {p} must spike"
    assert_same(ref, got, g)


@pytest.mark.slow
@pytest.mark.parametrize("discretization", ["euler", "exact"])
def test_float_graded_inputs_and_discretizations(discretization):
    g, record = _graph("cuba")
    xs = _inputs(g, 25, 2, graded=True)
    common = dict(dt=DT, timing="pipelined", record=record, discretization=discretization)
    ref = ntg.simulate(g, xs, target="torch", dtype=torch.float64, **common)
    got = ntg.simulate(g, xs, target="lava", **common)
    assert ref["y"].sum() > 0
    assert_same(ref, got, g)


@pytest.mark.slow
def test_sync_timing_with_delayed_projections_matches_torch():
    g = ntg.Graph("sync")
    g.input("x", 3)
    g.population("a", ntg.LIF(tau_mem=4e-3, v_th=0.5), 4)
    g.dense("x", "a", scale=1.0, delay=1)
    g.dense("a", "a", scale=0.5)  # recurrent: delay 1
    g.output("y", "a")
    xs = _inputs(g, 20, 2)
    ref = ntg.simulate(g, xs, target="torch", dt=DT, dtype=torch.float64, record=["a.v"])
    got = ntg.simulate(g, xs, target="lava", dt=DT, record=["a.v"])
    assert_same(ref, got, g)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float", "fixed"])
def test_batch_modes_agree(precision):
    g = rich_graph(5)
    x = spikes_input(np.random.default_rng(2), 15, 5, 6)
    common = dict(dt=DT, timing="pipelined", precision=precision, record=["h.v", "c.i", "c"])
    rep = ntg.simulate(g, x, target="lava", max_replicas=2, **common)
    seq = ntg.simulate(g, x, target="lava", batch_mode="sequential", **common)
    one = ntg.simulate(g, x[:, 3:4], target="lava", **common)
    # Replicas use block-diagonal Sparse weights, a single sample Dense ones: float sums may differ in the last bit.
    tol = 0.0 if precision == "fixed" else 1e-12
    for k in rep:
        np.testing.assert_allclose(rep[k], seq[k], rtol=0, atol=tol, err_msg=k)
        np.testing.assert_allclose(rep[k][:, 3:4], one[k], rtol=0, atol=tol, err_msg=k)
    np.testing.assert_array_equal(rep["hs"], seq["hs"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["feedforward", "recurrent", "delays", "sparse", "one_to_one", "cuba", "li_readout"])
def test_fixed_point_bit_exact_and_close_to_float(kind):
    g, record = _graph(kind)
    xs = _inputs(g, 40, 2, seed=4)
    runner = ntg.compile(g, "lava", dt=DT, timing="pipelined", precision="fixed")
    pops = list(g.populations)
    rec = [p for p in pops if g[p].model.spiking] + [f"{p}.v" for p in pops]
    raw = runner.run(xs, record=rec, raw=True)
    for b in range(2):
        ref = loihi_reference.simulate_loihi(runner.graph, {k: v[:, b] for k, v in xs.items()})
        for p in pops:
            np.testing.assert_array_equal(raw[f"{p}.v"][:, b], ref[p]["v"], err_msg=f"{p}.v")
            if g[p].model.spiking:
                np.testing.assert_array_equal(raw[f"{p}.spikes"][:, b], ref[p]["spikes"], err_msg=p)
    fixed = runner.run(xs, record=rec)
    flt = ntg.simulate(g, xs, target="lava", dt=DT, timing="pipelined", record=rec)
    for p in pops:
        if g[p].model.spiking:
            agree = float(np.mean(fixed[f"{p}.spikes"] == flt[f"{p}.spikes"]))
            assert agree >= 0.95, (p, agree)


@pytest.mark.slow
def test_fixed_point_graded_inputs_with_input_scale():
    g, _ = _graph("feedforward")
    xs = _inputs(g, 30, 2, graded=True)
    runner = ntg.compile(g, "lava", dt=DT, timing="pipelined", precision="fixed", quantize={"input_scale": 64.0})
    raw = runner.run(xs, record=["a.v", "b.v", "a"], raw=True)
    ref = loihi_reference.simulate_loihi(runner.graph, {"x": xs["x"][:, 0]})
    np.testing.assert_array_equal(raw["a.v"][:, 0], ref["a"]["v"])
    np.testing.assert_array_equal(raw["b.v"][:, 0], ref["b"]["v"])
    flt = ntg.simulate(g, xs, target="lava", dt=DT, timing="pipelined", record=["a"])
    fixed = runner.run(xs, record=["a"])
    assert np.mean(flt["a.spikes"] == fixed["a.spikes"]) >= 0.95


@pytest.mark.slow
def test_runner_reports_and_pipeline_pass():
    from ntgraph.passes import Pipeline, default_pipeline
    from ntgraph.passes.quantize import QUANTIZE_LOIHI

    g = rich_graph()
    pipeline = Pipeline([*default_pipeline(), QUANTIZE_LOIHI])
    runner = ntg.compile(g, "lava", dt=DT, timing="pipelined", precision="fixed", pipeline=pipeline)
    assert "quantize_loihi" in str(pipeline)
    text = str(runner.quantization)
    assert "x->h" in text and "weights" in text
    res = runner.resources()
    assert res.neurons == 16 and res.cores == 3
    x = spikes_input(np.random.default_rng(0), 10, 1, 6)
    out = runner.run(x)
    assert set(out) == {"y", "hs"} and out["y"].shape == (10, 1, 3)
