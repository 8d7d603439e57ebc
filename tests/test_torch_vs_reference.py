"""The torch backend against the plain numpy reference simulator (``tests/reference_sim.py``).

Random graphs mix every neuron model, Dense (bias, masks, sign masks, bounds,
Dale's law), Sparse (with duplicate synapses), OneToOne, recurrent and self
projections, delays 0-3, several inputs and outputs, both discretisations and
both timings.  In float64 the torch backend must match the reference to 1e-10
in every recorded variable, with identical spikes.  Further tests cover float32,
batch sizes, ``batch_first``, continuing a run from its state, inputs by name
and CUDA (skipped without a GPU).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ntgraph as ntg
import reference_sim
from random_graphs import DT, probes, random_graph, random_inputs, spiking_keys

ATOL = 1e-10
RTOL = 1e-12
SPIKING = {"LIF", "CubaLIF", "ALIF", "IF"}


# random graphs, inputs and probes: tests/random_graphs.py


def compile_torch(g: ntg.Graph, disc: str, timing: str, **opts):
    opts.setdefault("dtype", torch.float64)
    return ntg.compile(g, "torch", dt=DT, discretization=disc, timing=timing, record=probes(g), **opts)


def run_torch(g: ntg.Graph, xs: dict, disc: str, timing: str, **opts) -> dict[str, np.ndarray]:
    m = compile_torch(g, disc, timing, **opts)
    dtype, device = opts.get("dtype", torch.float64), opts.get("device", "cpu")
    res = m({k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in xs.items()})
    return {k: res[k].detach().cpu().double().numpy() for k in [*g.outputs, *probes(g)]}


def assert_match(g: ntg.Graph, got: dict, ref: dict, atol: float = ATOL) -> None:
    """Every output and probe agrees: spikes exactly, the rest within ``atol`` (+ 1e-12 relative).

    The relative part only matters for the rare runaway recurrent rate/LI loops
    whose values reach 1e5, where float64 rounding alone exceeds 1e-10.
    """
    assert set(got) == set(ref), (sorted(got), sorted(ref))
    spikes = spiking_keys(g)
    for key, want in ref.items():
        have = got[key]
        assert have.shape == want.shape, (key, have.shape, want.shape)
        bad = (have != want) if key in spikes else ~(np.abs(have - want) <= atol + RTOL * np.abs(want))
        if np.any(bad):
            t, b, n = (int(i) for i in np.argwhere(bad)[0])
            raise AssertionError(
                f"{key}: first mismatch at step {t}, batch {b}, neuron {n}: torch {have[t, b, n]!r}, "
                f"reference {want[t, b, n]!r} ({int(bad.sum())} mismatches)\n{g}"
            )


def check_against_reference(g: ntg.Graph, xs: dict, disc: str, timing: str) -> dict:
    ref = reference_sim.simulate(g, xs, DT, disc, timing)
    got = run_torch(g, xs, disc, timing)
    assert_match(g, got, ref)
    return ref


# ----------------------------------------------------------------------------- float64: torch == reference
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), disc=st.sampled_from(["euler", "exact"]),
       timing=st.sampled_from(["sync", "pipelined"]), batch=st.sampled_from([1, 7]))
def test_random_graphs_match_reference(seed, disc, timing, batch):
    rng = np.random.default_rng(seed)
    g = random_graph(rng)
    check_against_reference(g, random_inputs(rng, g, 20, batch), disc, timing)


N_SEEDED = 40


def seeded_case(seed: int):
    """Graph, inputs, discretisation and timing of seeded case ``seed`` (all four combinations, batch 1 and 7)."""
    rng = np.random.default_rng(1000 + seed)
    g = random_graph(rng)
    disc = ("euler", "exact")[seed % 2]
    timing = ("sync", "pipelined")[(seed // 2) % 2]
    return g, random_inputs(rng, g, 25, (1, 7)[(seed // 4) % 2]), disc, timing


@pytest.mark.parametrize("seed", range(N_SEEDED))
def test_seeded_random_graphs_match_reference(seed):
    check_against_reference(*seeded_case(seed))


def test_seeded_random_graphs_exercise_spikes_and_scheduling():
    """The seeded graphs are not trivial: many spike, and many step in an order other than insertion order."""
    active = reordered = 0
    for seed in range(N_SEEDED):
        g, xs, disc, timing = seeded_case(seed)
        ref = reference_sim.simulate(g, xs, DT, disc, timing)
        active += any(ref[f"{p}.spikes"].any() for p in g.populations if g[p].model.spiking)
        reordered += reference_sim.step_order(g, reference_sim.effective_delays(g, timing)) != g.populations
    assert active >= N_SEEDED // 2 and reordered >= N_SEEDED // 10, (active, reordered)


@pytest.mark.parametrize("timing", ["sync", "pipelined"])
@pytest.mark.parametrize("disc", ["euler", "exact"])
def test_every_model_in_one_graph(disc, timing):
    """Every model (both resets, both RateUnit kinds) in one recurrent graph, and the neurons really spike."""
    rng = np.random.default_rng(7)
    g = ntg.Graph("all", seed=1)
    g.input("a", 3)
    g.input("b", 2, excitatory=[1, -1])
    specs = [
        ("lif0", ntg.LIF(tau_mem=5e-3, v_th=0.3, reset="zero")),
        ("lif1", ntg.LIF(tau_mem=np.array([2e-3, 4e-3, 8e-3, 1e-3]), v_th=0.3, reset="subtract")),
        ("cuba", ntg.CubaLIF(tau_syn=3e-3, tau_mem=4e-3, v_th=0.2, reset="subtract")),
        ("alif0", ntg.ALIF(tau_mem=3e-3, tau_adapt=20e-3, beta=1.0, v_th=0.3, reset="subtract")),
        ("alif1", ntg.ALIF(tau_mem=3e-3, tau_adapt=20e-3, beta=0.5, v_th=0.3, reset="zero")),
        ("if", ntg.IF(r=500.0, v_th=0.5, reset="zero")),
        ("li", ntg.LI(tau_mem=5e-3)),
        ("wc", ntg.WilsonCowan(tau=4e-3, mu=0.5, r=0.5)),
        ("rate", ntg.RateUnit(tau=3e-3, activation="tanh")),
        ("inst", ntg.RateUnit(tau=None, bias=0.2, activation="sigmoid")),
    ]
    for name, model in specs:
        g.population(name, model, 4, excitatory=0.75 if name == "lif0" else None)
    g.dense("a", "lif0", scale=1.5, bias=np.full(4, 0.2))
    g.dense("b", "lif1", weight=np.abs(rng.normal(1.0, 0.3, (4, 2))))
    g.sparse("a", "cuba", p=0.8, scale=2.0)
    g.dense("lif0", "alif0", scale=1.0, delay=2)
    g.one_to_one("lif1", "alif1", weight=2.0)
    g.dense("cuba", "if", scale=1.0, p=0.7)
    g.dense("lif0", "lif0", scale=0.5, no_self=True)            # self, delay 1 by default
    g.dense("alif1", "lif1", scale=0.5)                         # recurrent back-edge
    g.one_to_one("if", "li", weight=1.5, delay=3)
    g.dense("alif0", "li", scale=1.0)
    g.dense("li", "wc", scale=1.0)
    g.dense("wc", "rate", scale=1.0)
    g.dense("rate", "inst", scale=1.0, bias=np.zeros(4))
    g.sparse("inst", "wc", post_index=[0, 0, 1, 3], pre_index=[2, 2, 1, 0], weight=[0.5, 0.5, -1.0, 0.3], delay=1)
    g.output("y_li", "li")
    g.output("y_spk", "alif0")
    g.output("y_in", "b")
    xs = {"a": rng.uniform(0.0, 1.5, (30, 3, 3)), "b": (rng.random((30, 3, 2)) < 0.5).astype(float)}
    ref = check_against_reference(g, xs, disc, timing)
    for name, model in specs:
        if model.spiking:
            assert ref[f"{name}.spikes"].sum() > 0, f"{name} never spikes: the test would not exercise its reset"


def test_reference_step_order_differs_from_insertion_order():
    g = ntg.Graph("order")
    g.input("x", 1)
    g.population("late", ntg.LI(tau_mem=2e-3), 1)
    g.population("early", ntg.LI(tau_mem=2e-3), 1)
    g.dense("early", "late", weight=[[1.0]])
    g.dense("x", "early", weight=[[1.0]])
    g.output("y", "late")
    delays = reference_sim.effective_delays(g, "sync")
    assert reference_sim.step_order(g, delays) == ["early", "late"]
    xs = {"x": np.array([1.0, 0.0, 0.0]).reshape(3, 1, 1)}
    ref = check_against_reference(g, xs, "euler", "sync")
    np.testing.assert_allclose(ref["y"][:, 0, 0], [0.25, 0.25, 0.1875], atol=1e-15)


# ----------------------------------------------------------------------------- float32
def well_conditioned_graph() -> ntg.Graph:
    g = ntg.Graph("f32")
    g.input("x", 3)
    g.population("hid", ntg.LIF(tau_mem=np.array([4e-3, 6e-3, 8e-3, 10e-3]), v_th=1.0, reset="zero"), 4)
    g.dense("x", "hid", weight=[[1.0, 0.5, 0.0], [0.0, 1.5, 0.5], [0.8, 0.0, 1.2], [0.4, 0.4, 0.4]])
    g.population("out", ntg.LI(tau_mem=5e-3), 2)
    g.dense("hid", "out", weight=[[1.0, -0.5, 0.5, 0.0], [0.0, 1.0, -1.0, 0.5]])
    g.population("rate", ntg.RateUnit(tau=4e-3), 2)
    g.dense("out", "rate", weight=[[2.0, 0.0], [0.0, 2.0]])
    g.output("y", "out")
    return g


@pytest.mark.parametrize("disc", ["euler", "exact"])
def test_float32_spikes_agree_with_float64_reference(disc):
    """float32 torch vs float64 reference: identical spikes, voltages and rates within 1e-5.

    The input is chosen so that no pre-reset voltage comes within 1e-3 of the
    threshold (checked below from the reference), far above float32 rounding
    (~1e-7 relative), so the spikes cannot flip.
    """
    g = well_conditioned_graph()
    rng = np.random.default_rng(27)  # a seed whose voltages keep > 1e-3 from the threshold in both discretisations
    xs = {"x": np.round(rng.uniform(0.0, 2.0, (40, 5, 3)), 2)}
    ref = reference_sim.simulate(g, xs, DT, disc, "sync")
    # pre-reset voltage of the (feed-forward, v_reset=0) LIF layer, from the reference trace
    tau = np.array([4e-3, 6e-3, 8e-3, 10e-3])
    a = 1 - DT / tau if disc == "euler" else np.exp(-DT / tau)
    current = xs["x"] @ np.asarray(g["x->hid"].weight).T
    v_prev = np.concatenate([np.zeros((1, 5, 4)), ref["hid.v"][:-1]])
    v_pre = a * v_prev + (1 - a) * current
    assert np.min(np.abs(v_pre - 1.0)) > 1e-3, "the input is not well conditioned; pick another"
    assert 0 < ref["hid.spikes"].sum() < ref["hid.spikes"].size
    got = run_torch(g, xs, disc, "sync", dtype=torch.float32)
    np.testing.assert_array_equal(got["hid.spikes"], ref["hid.spikes"])
    for key in ("hid.v", "out.v", "rate.rate", "y"):
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=1e-5, err_msg=key)


# ----------------------------------------------------------------------------- layouts, batches, state, names
@pytest.mark.parametrize("timing", ["sync", "pipelined"])
def test_batch_first_is_the_transposed_layout(timing):
    rng = np.random.default_rng(11)
    g = random_graph(rng, kinds=["LIF", "CubaLIF", "ALIF", "LI", "RateUnit"])
    xs = random_inputs(rng, g, 12, 7)
    ref = run_torch(g, xs, "euler", timing)
    m = compile_torch(g, "euler", timing, batch_first=True)
    res = m({k: torch.from_numpy(v.transpose(1, 0, 2).copy()) for k, v in xs.items()})
    for key in [*g.outputs, *probes(g)]:
        have = res[key].detach().numpy()
        assert have.shape == (7, 12, ref[key].shape[-1]), key
        np.testing.assert_array_equal(have, ref[key].transpose(1, 0, 2), err_msg=key)


def test_batch_elements_are_independent():
    rng = np.random.default_rng(12)
    g = random_graph(rng, kinds=["ALIF", "IF", "WilsonCowan", "LIF"])
    xs = random_inputs(rng, g, 15, 7)
    full = run_torch(g, xs, "exact", "sync")
    for b in (0, 3, 6):
        one = run_torch(g, {k: v[:, b:b + 1] for k, v in xs.items()}, "exact", "sync")
        for key, arr in one.items():
            np.testing.assert_allclose(arr[:, 0], full[key][:, b], rtol=0, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("split", [1, 2, 9])
@pytest.mark.parametrize("timing", ["sync", "pipelined"])
def test_continuing_from_state_equals_one_run(timing, split):
    rng = np.random.default_rng(21 + split)
    g = random_graph(rng, kinds=["LIF", "CubaLIF", "ALIF", "IF", "LI", "WilsonCowan", "RateUnit"])
    # make sure delayed inputs and delayed population outputs cross the split
    g.dense(g.inputs[0], g.populations[0], delay=3, scale=1.0)
    g.dense(g.populations[1], g.populations[1], delay=2, scale=1.0)
    xs = random_inputs(rng, g, 12, 3)
    m = compile_torch(g, "euler", timing)
    tx = {k: torch.from_numpy(v) for k, v in xs.items()}
    whole = m(tx)
    first = m({k: v[:split] for k, v in tx.items()})
    second = m({k: v[split:] for k, v in tx.items()}, state=first.state)
    for key in [*g.outputs, *probes(g)]:
        joined = torch.cat([first[key], second[key]]).detach().numpy()
        np.testing.assert_allclose(joined, whole[key].detach().numpy(), rtol=0, atol=1e-12, err_msg=key)
    ref = reference_sim.simulate(g, xs, DT, "euler", timing)
    assert_match(g, {k: whole[k].detach().numpy() for k in ref}, ref)


def test_inputs_by_name_or_position():
    rng = np.random.default_rng(5)
    g = ntg.Graph("two_inputs")
    g.input("u", 2)
    g.input("w", 3)
    g.population("p", ntg.LIF(tau_mem=5e-3, v_th=0.5), 4)
    g.dense("u", "p", scale=1.0)
    g.dense("w", "p", scale=1.0, delay=1)
    g.output("y", "p")
    xs = {"u": rng.uniform(0, 1, (10, 2, 2)), "w": rng.uniform(0, 1, (10, 2, 3))}
    m = compile_torch(g, "euler", "sync")
    by_pos = m(torch.from_numpy(xs["u"]), torch.from_numpy(xs["w"]))
    by_name = m({"w": torch.from_numpy(xs["w"]), "u": torch.from_numpy(xs["u"])})  # order of keys does not matter
    as_numpy = m(xs)
    for key in ("y", "p.v"):
        np.testing.assert_array_equal(by_pos[key].detach().numpy(), by_name[key].detach().numpy())
        np.testing.assert_array_equal(as_numpy[key].detach().numpy(), by_name[key].detach().numpy())
    ref = reference_sim.simulate(g, xs, DT, "euler", "sync")
    np.testing.assert_array_equal(by_name["y"].detach().numpy(), ref["y"])
    np.testing.assert_allclose(by_name["p.v"].detach().numpy(), ref["p.v"], rtol=0, atol=ATOL)
    with pytest.raises(ntg.ValidationError, match="missing"):
        m({"u": torch.from_numpy(xs["u"])})


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_equals_cpu(dtype):
    for seed in (31, 32, 33):
        rng = np.random.default_rng(seed)
        g = random_graph(rng)
        xs = random_inputs(rng, g, 20, 4)
        for timing in ("sync", "pipelined"):
            cpu = run_torch(g, xs, "exact", timing, dtype=dtype)
            gpu = run_torch(g, xs, "exact", timing, dtype=dtype, device="cuda")
            if dtype == torch.float64:
                assert_match(g, gpu, cpu, atol=1e-10)
            else:
                # float32: different kernels may round differently; compare only while the spikes agree
                spikes = spiking_keys(g)
                for key in sorted(spikes & set(cpu)):
                    assert np.mean(gpu[key] != cpu[key]) < 0.02, key
                for key in set(cpu) - spikes:
                    diff = np.abs(gpu[key] - cpu[key])
                    t_bad = min((int(np.argwhere(gpu[k] != cpu[k])[0][0]) for k in spikes & set(cpu)
                                 if np.any(gpu[k] != cpu[k])), default=diff.shape[0])
                    assert np.all(diff[:t_bad] <= 1e-4), key
