"""The ONNX export run in onnxruntime against the torch backend (the reference implementation).

Random graphs mix every neuron model (LIF and CubaLIF and ALIF and IF with
both resets, LI, Wilson-Cowan, RateUnit with and without tau, sigmoid and
tanh), Dense projections (bias, masks, sign masks, bounds, Dale's law, no
self-connections), Sparse (random and with duplicate synapses), OneToOne,
recurrent and self projections, delays 0-3, one or two inputs, one to three
outputs (an Input among them at times), both discretisations and both timings.
Both export modes run at batch sizes 1 and 7.

Tolerances: float32 export vs the float32 torch backend: spikes identical,
every other value within 1e-5 (+ 1e-5 relative: float32 resolves ~7 digits, and
the rare runaway recurrent LI or IF loop of a random graph reaches values of
100 and more, and an IF with a large gain integrates to several units, where a few
rounding steps in a different operation order exceed 1e-5).  float64 export vs
the float64 torch backend: spikes identical, values within 1e-10 (+ 1e-12 relative).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ntgraph as ntg
from backends.onnxio import OnnxRunner, run_onnx, to_onnx
from random_graphs import DT, KINDS, probes, random_graph, random_inputs, spiking_keys

TOL = {"float32": (1e-5, 1e-5), "float64": (1e-10, 1e-12)}  # (absolute, relative)
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


# random graphs, inputs and probes: tests/random_graphs.py


def run_torch(g: ntg.Graph, xs: dict, disc: str, timing: str, dtype: str) -> dict[str, np.ndarray]:
    tdt = TORCH_DTYPE[dtype]
    m = ntg.compile(g, "torch", dt=DT, discretization=disc, timing=timing, record=probes(g), dtype=tdt)
    with torch.no_grad():
        res = m({k: torch.as_tensor(v, dtype=tdt) for k, v in xs.items()})
    return {k: res[k].double().numpy() for k in [*g.outputs, *probes(g)]}


def export(g: ntg.Graph, disc: str, timing: str, mode: str, dtype: str, **opts) -> onnx.ModelProto:
    return to_onnx(g, dt=DT, discretization=disc, timing=timing, mode=mode, dtype=dtype, record=probes(g), **opts)


def assert_match(g: ntg.Graph, got: dict, ref: dict, dtype: str) -> None:
    """Same keys and shapes; spikes identical; everything else within the dtype's tolerance.

    The absolute tolerance scales with the trace's largest magnitude (at least 1): rounding errors in a
    recurrent sum grow with the size of the terms summed, not with each entry (a float32 LI cycle reaching
    148 differed by 7e-5 at an entry of 3.9, 1.5e-6 of its scale, while both backends stayed within 2e-4 of
    float64).
    """
    atol, rtol = TOL[dtype]
    assert set(got) == set(ref), (sorted(got), sorted(ref))
    spikes = spiking_keys(g)
    for key, want in ref.items():
        have = np.asarray(got[key], dtype=np.float64)
        assert have.shape == want.shape, (key, have.shape, want.shape)
        scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
        bad = (have != want) if key in spikes else ~(np.abs(have - want) <= atol * scale + rtol * np.abs(want))
        if np.any(bad):
            t, b, n = (int(i) for i in np.argwhere(bad)[0])
            raise AssertionError(f"{key}: first mismatch at step {t}, batch {b}, neuron {n}: onnx {have[t, b, n]!r}, "
                                 f"torch {want[t, b, n]!r} ({int(bad.sum())} mismatches)\n{g}")


def check(g: ntg.Graph, xs: dict, disc: str, timing: str, mode: str, dtype: str, **opts) -> dict:
    ref = run_torch(g, xs, disc, timing, dtype)
    model = export(g, disc, timing, mode, dtype, **opts)
    assert_match(g, run_onnx(model, xs), ref, dtype)
    return ref


# ----------------------------------------------------------------------------- every model, random graphs
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("kind", KINDS)
def test_random_graphs_with_each_model_float32(kind, mode, batch):
    """A random graph holding ``kind`` (and up to three other models) agrees with the float32 torch backend."""
    seed = KINDS.index(kind) * 4 + 2 * (mode == "sequence") + (batch == 7)
    rng = np.random.default_rng(100 + seed)
    g = random_graph(rng, kinds=[kind, *rng.choice(KINDS, int(rng.integers(1, 4)))])
    disc, timing = ("euler", "exact")[seed % 2], ("sync", "pipelined")[(seed // 2) % 2]
    check(g, random_inputs(rng, g, 20, batch), disc, timing, mode, "float32")


@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("kind", KINDS)
def test_random_graphs_with_each_model_float64(kind, mode):
    """float64 export vs the float64 torch backend: values within 1e-10."""
    seed = KINDS.index(kind) * 2 + (mode == "sequence")
    rng = np.random.default_rng(300 + seed)
    g = random_graph(rng, kinds=[kind, *rng.choice(KINDS, int(rng.integers(1, 4)))])
    disc, timing = ("exact", "euler")[seed % 2], ("pipelined", "sync")[(seed // 2) % 2]
    check(g, random_inputs(rng, g, 20, (1, 7)[(seed // 3) % 2]), disc, timing, mode, "float64")


def every_model_graph() -> tuple[ntg.Graph, list]:
    """Every model (both resets, both RateUnit kinds) in one recurrent graph with every projection type."""
    g = ntg.Graph("all-models", seed=1)
    g.input("a", 3)
    g.input("b->c", 2, excitatory=[1, -1])  # an id that needs sanitising
    specs = [
        ("lif0", ntg.LIF(tau_mem=5e-3, v_th=0.3, reset="zero", v_reset=-0.1)),
        ("lif1", ntg.LIF(tau_mem=np.array([2e-3, 4e-3, 8e-3, 1e-3]), v_th=0.3, reset="subtract")),
        ("cuba0", ntg.CubaLIF(tau_syn=3e-3, tau_mem=4e-3, v_th=0.2, w_in=1.5, reset="subtract")),
        ("cuba1", ntg.CubaLIF(tau_syn=2e-3, tau_mem=6e-3, v_th=0.2, v_leak=0.05, reset="zero")),
        ("alif0", ntg.ALIF(tau_mem=3e-3, tau_adapt=20e-3, beta=1.0, v_th=0.3, reset="subtract")),
        ("alif1", ntg.ALIF(tau_mem=3e-3, tau_adapt=20e-3, beta=0.5, v_th=0.3, reset="zero")),
        ("if0", ntg.IF(r=500.0, v_th=0.5, reset="zero")),
        ("if1", ntg.IF(r=700.0, v_th=0.4, v_reset=-0.2, reset="subtract")),
        ("li", ntg.LI(tau_mem=5e-3, v_leak=0.1)),
        ("wc", ntg.WilsonCowan(tau=4e-3, mu=0.5, r=0.5)),
        ("rate", ntg.RateUnit(tau=3e-3, activation="tanh")),
        ("inst", ntg.RateUnit(tau=None, bias=0.2, activation="sigmoid")),
    ]
    for name, model in specs:
        g.population(name, model, 4, excitatory=0.75 if name == "lif0" else None)
    rng = np.random.default_rng(7)
    g.dense("a", "lif0", scale=1.5, bias=np.full(4, 0.2))
    g.dense("b->c", "lif1", weight=np.abs(rng.normal(1.0, 0.3, (4, 2))))
    g.sparse("a", "cuba0", p=0.8, scale=2.0)
    g.dense("a", "cuba1", scale=2.0, delay=2)
    g.dense("lif0", "alif0", scale=1.0, delay=2)
    g.one_to_one("lif1", "alif1", weight=2.0)
    g.dense("cuba0", "if0", scale=1.0, p=0.7)
    g.dense("cuba1", "if1", scale=1.0, sign=np.tile([1, -1, 0, 1], (4, 1)), bounds=(-1.5, 1.5))
    g.dense("lif0", "lif0", scale=0.5, no_self=True)  # self, delay 1 by default
    g.dense("alif1", "lif1", scale=0.5)  # recurrent back-edge
    g.one_to_one("if0", "li", weight=1.5, delay=3)
    g.dense("alif0", "li", scale=1.0, mask=rng.random((4, 4)) < 0.5)
    g.dense("if1", "li", scale=1.0)
    g.dense("li", "wc", scale=1.0)
    g.dense("wc", "rate", scale=1.0)
    g.dense("rate", "inst", scale=1.0, bias=np.zeros(4))
    g.sparse("inst", "wc", post_index=[0, 0, 1, 3], pre_index=[2, 2, 1, 0], weight=[0.5, 0.5, -1.0, 0.3], delay=1)
    g.output("y_li", "li")
    g.output("y_spk", "alif0")
    g.output("y_in", "b->c")
    return g, specs


def every_model_inputs(batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(8)
    return {"a": rng.uniform(0.0, 1.5, (30, batch, 3)), "b->c": (rng.random((30, batch, 2)) < 0.5).astype(float)}


EVERY_MODEL_CASES = [(m, d, t, "float32") for m in ("step", "sequence") for d in ("euler", "exact")
                     for t in ("sync", "pipelined")]
EVERY_MODEL_CASES += [("step", "exact", "pipelined", "float64"), ("step", "euler", "sync", "float64"),
                      ("sequence", "euler", "pipelined", "float64"), ("sequence", "exact", "sync", "float64")]


@pytest.mark.parametrize("mode, disc, timing, dtype", EVERY_MODEL_CASES)
def test_every_model_in_one_graph(mode, disc, timing, dtype):
    g, specs = every_model_graph()
    ref = check(g, every_model_inputs(7), disc, timing, mode, dtype)
    for name, model in specs:
        if model.spiking:
            assert ref[f"{name}.spikes"].sum() > 0, f"{name} never spikes: the test would not exercise its reset"


def test_every_model_batch_one_and_seven_agree():
    """Batch elements are independent: batch 1 on element k equals element k of batch 7."""
    g, _ = every_model_graph()
    model = export(g, "exact", "sync", "sequence", "float64")
    full = run_onnx(model, every_model_inputs(7))
    for k in (0, 6):
        one = run_onnx(model, {n: v[:, k:k + 1] for n, v in every_model_inputs(7).items()})
        for key, arr in one.items():
            np.testing.assert_allclose(arr[:, 0], full[key][:, k], rtol=0, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("mode", ["step", "sequence"])
def test_sparse_scatter_lowering_matches_torch(mode):
    """``sparse="scatter"`` keeps the synapse list (Gather + ScatterElements add) and agrees like the dense form."""
    g, _ = every_model_graph()
    check(g, every_model_inputs(7), "euler", "sync", mode, "float64", sparse="scatter")
    model = export(g, "euler", "sync", mode, "float32", sparse="scatter")
    ops = {n.op_type for n in model.graph.node} | {n.op_type for a in model.graph.node for n in
                                                   (a.attribute[0].g.node if a.op_type == "Scan" else [])}
    assert "ScatterElements" in ops
    rng = np.random.default_rng(3)
    sparse = 0
    for _ in range(4):
        g = random_graph(rng, kinds=["LIF", "WilsonCowan", "IF", "CubaLIF"])
        sparse += len(g.ids(ntg.Sparse))
        check(g, random_inputs(rng, g, 15, 7), "exact", "pipelined", mode, "float32", sparse="scatter")
    assert sparse >= 2


@pytest.mark.parametrize("opset", [13, 16, 21])
def test_opsets(opset):
    g, _ = every_model_graph()
    for mode in ("step", "sequence"):
        model = export(g, "euler", "sync", mode, "float32", opset=opset)
        assert [(o.domain, o.version) for o in model.opset_import] == [("", opset)]
        onnx.checker.check_model(model, full_check=True)
        assert_match(g, run_onnx(model, every_model_inputs(2)), run_torch(g, every_model_inputs(2), "euler", "sync",
                                                                             "float32"), "float32")


# ----------------------------------------------------------------------------- state interface
def small_delayed_graph() -> ntg.Graph:
    """Delayed inputs and delayed population outputs, so every kind of state crosses a split."""
    rng = np.random.default_rng(21)
    g = random_graph(rng, kinds=["LIF", "CubaLIF", "ALIF", "IF", "LI", "WilsonCowan", "RateUnit"])
    g.dense(g.inputs[0], g.populations[0], delay=3, scale=1.0)
    g.dense(g.populations[1], g.populations[1], delay=2, scale=1.0)
    return g


@pytest.mark.parametrize("timing", ["sync", "pipelined"])
def test_step_state_equals_torch_final_state(timing):
    """The step model's state after T steps is the torch backend's SimState: neuron variables and delay lines."""
    g = small_delayed_graph()
    xs = random_inputs(np.random.default_rng(4), g, 12, 3)
    m = ntg.compile(g, "torch", dt=DT, timing=timing, dtype=torch.float64)
    with torch.no_grad():
        res = m(xs)
    runner = OnnxRunner(export(g, "euler", timing, "step", "float64"))
    _, state = runner.run(xs, return_state=True)
    names = set()
    for spec in runner.state_specs:
        node = spec["node"]
        if spec["kind"] == "neuron":
            want = res.state.neurons[node][g[node].model.state_vars.index(spec["var"])].numpy()
            assert spec["name"] == f"state.{node}.{spec['var']}".replace("-", "_")
        else:
            want = torch.stack(res.state.history[node]).numpy()
            assert spec["name"] == f"delay.{node}".replace("-", "_") and want.shape[0] == spec["length"]
        np.testing.assert_allclose(state[spec["name"]], want, rtol=0, atol=1e-12, err_msg=spec["name"])
        names.add((spec["kind"], node))
    assert {n for k, n in names if k == "delay"} == set(res.state.history)
    carried = {p for p in g.populations if not (isinstance(g[p].model, ntg.RateUnit) and g[p].model.tau is None)}
    assert {n for k, n in names if k == "neuron"} == carried


@pytest.mark.parametrize("split", [1, 5])
def test_chunks_continue_like_one_run(split):
    """Sequence mode with state_io, and step mode, continue from a previous state; the two modes share it."""
    g = small_delayed_graph()
    xs = random_inputs(np.random.default_rng(5), g, 12, 3)
    whole = run_torch(g, xs, "euler", "pipelined", "float64")
    seq = OnnxRunner(export(g, "euler", "pipelined", "sequence", "float64", state_io=True))
    step = OnnxRunner(export(g, "euler", "pipelined", "step", "float64"))
    first, state = seq.run({k: v[:split] for k, v in xs.items()}, return_state=True)
    second, state = step.run({k: v[split:9] for k, v in xs.items()}, state=state, return_state=True)
    third = seq.run({k: v[9:] for k, v in xs.items()}, state=state)
    for key, want in whole.items():
        joined = np.concatenate([first[key], second[key], third[key]])
        np.testing.assert_allclose(joined, want, rtol=0, atol=1e-12, err_msg=key)


def test_step_function_by_hand():
    """Driving the step model one call at a time (as a deployment would) gives the torch trace."""
    g, _ = every_model_graph()
    xs = every_model_inputs(2)
    runner = OnnxRunner(export(g, "exact", "sync", "step", "float32"))
    state = runner.initial_state(2)
    got: dict[str, list] = {k: [] for k in runner.keys}
    for t in range(30):
        out, state = runner.step({k: v[t] for k, v in xs.items()}, state)
        for k, v in out.items():
            assert v.shape == (2, g.node_size(k) if k in g else g[k.rsplit(".", 1)[0]].size)
            got[k].append(v)
    assert_match(g, {k: np.stack(v) for k, v in got.items()}, run_torch(g, xs, "exact", "sync", "float32"), "float32")


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), disc=st.sampled_from(["euler", "exact"]),
       timing=st.sampled_from(["sync", "pipelined"]), batch=st.sampled_from([1, 7]),
       mode=st.sampled_from(["step", "sequence"]), dtype=st.sampled_from(["float32", "float64"]),
       sparse=st.sampled_from(["dense", "scatter"]))
def test_random_graphs_property(seed, disc, timing, batch, mode, dtype, sparse):
    rng = np.random.default_rng(seed)
    g = random_graph(rng)
    check(g, random_inputs(rng, g, 25, batch), disc, timing, mode, dtype, sparse=sparse)
