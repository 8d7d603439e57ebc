"""e-prop against autograd, its feedback variants and memory; truncated BPTT against BPTT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ntgraph as ntg
from backends.torchsim.learning.algorithms import BPTT, TBPTT
from backends.torchsim.learning.eprop import AdaptiveFeedback, EProp, RandomFeedback, SymmetricFeedback
from objectives import PerStepMSE


def hidden_model(kind: str, reset: str):
    tau = np.linspace(5e-3, 12e-3, 8)  # heterogeneous on purpose
    if kind == "LIF":
        return ntg.LIF(tau_mem=tau, v_th=0.5, reset=reset)
    return ntg.ALIF(tau_mem=tau, tau_adapt=30e-3, beta=0.3, v_th=0.5, reset=reset)


def build(kind="LIF", reset="zero", readout_delay=0, dale=None, recurrent=False, seed=1):
    g = ntg.Graph("eprop", seed=seed)
    g.input("x", 5)
    g.population("h", hidden_model(kind, reset), 8, excitatory=dale)
    g.dense("x", "h", scale=1.5, bias=np.full(8, 0.1))
    if recurrent:
        g.dense("h", "h", scale=0.5)
    g.population("o", ntg.LI(tau_mem=8e-3, r=np.linspace(1.0, 2.0, 3)), 3)
    g.dense("h", "o", delay=readout_delay, bias=np.zeros(3))
    g.output("y", "o")
    return g


def gradients(graph, algorithm, x, target, **compile_options):
    model = ntg.compile(graph, "torch", dt=1e-3, dtype=torch.float64, **compile_options)
    if isinstance(algorithm, EProp):
        algorithm.compute_gradients(model, x, target, PerStepMSE())
    else:
        algorithm.train_step(model, x, target, PerStepMSE(), None)
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 4, 5, generator=gen) < 0.3).double()
    target = torch.randn(40, 4, 3, generator=gen, dtype=torch.float64)
    return x, target


@pytest.mark.parametrize("kind", ["LIF", "ALIF"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("readout_delay, dale", [(0, None), (2, 0.6)])
def test_eprop_equals_bptt_without_recurrence(data, kind, reset, readout_delay, dale):
    x, target = data
    g = build(kind, reset, readout_delay, dale)
    exact = gradients(g, BPTT(), x, target)
    eprop = gradients(g, EProp(), x, target)
    assert exact.keys() == eprop.keys()
    for name in exact:
        assert exact[name].abs().max() > 0, name  # the comparison is not vacuous
        torch.testing.assert_close(eprop[name], exact[name], atol=1e-8, rtol=0, msg=name)


def test_eprop_with_recurrence_is_close_to_bptt_but_not_equal(data):
    x, target = data
    g = build(recurrent=True)
    exact = gradients(g, BPTT(), x, target)
    eprop = gradients(g, EProp(), x, target)
    cos = torch.nn.functional.cosine_similarity(exact["projections.h->h.weight"].flatten(),
                                                eprop["projections.h->h.weight"].flatten(), dim=0)
    assert 0.5 < cos < 1.0
    torch.testing.assert_close(eprop["projections.h->o.weight"], exact["projections.h->o.weight"], atol=1e-10, rtol=0)


def test_random_and_adaptive_feedback(data):
    x, target = data
    g = build()
    sym = gradients(g, EProp(SymmetricFeedback()), x, target)
    rnd = gradients(g, EProp(RandomFeedback(seed=3)), x, target)
    # the readout gradient is exact whatever the feedback; the hidden one follows B
    torch.testing.assert_close(rnd["projections.h->o.weight"], sym["projections.h->o.weight"], atol=1e-12, rtol=0)
    assert not torch.allclose(rnd["projections.x->h.weight"], sym["projections.x->h.weight"])
    adaptive = AdaptiveFeedback(seed=3, lr=0.1)
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    algo = EProp(adaptive)
    algo.compute_gradients(model, x, target, PerStepMSE())
    before = adaptive._matrices["h->o"].clone()
    algo.compute_gradients(model, x, target, PerStepMSE())
    assert not torch.equal(before, adaptive._matrices["h->o"])


def test_eprop_memory_does_not_grow_with_steps():
    g = build(recurrent=True)
    sizes = []
    for steps in (20, 200):
        x = (torch.rand(steps, 2, 5) < 0.3).double()
        algo = EProp()
        model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
        algo.compute_gradients(model, x, torch.zeros(steps, 2, 3, dtype=torch.float64), PerStepMSE())
        sizes.append(algo.trace_bytes)
    assert sizes[0] == sizes[1] > 0


def test_eprop_training_reduces_the_loss():
    torch.manual_seed(0)
    g = build(recurrent=True, dale=0.75)
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    x = (torch.rand(30, 8, 5) < 0.3).double()
    target = torch.sin(torch.linspace(0, 6, 30, dtype=torch.float64))[:, None, None].expand(30, 8, 3)
    opt = torch.optim.Adam(model.parameters(), lr=5e-2)
    losses = [EProp().train_step(model, x, target, PerStepMSE(), opt).loss for _ in range(25)]
    assert losses[-1] < 0.8 * losses[0]
    ntg.validate(model.to_graph())  # Dale's law still holds after e-prop updates


def test_eprop_rejects_unsupported_graphs():
    g = ntg.Graph("bad")
    g.input("x", 2)
    g.population("h1", ntg.LIF(tau_mem=0.01), 3)
    g.population("h2", ntg.LIF(tau_mem=0.01), 3)
    g.dense("x", "h1")
    g.dense("h1", "h2")
    g.population("o", ntg.LI(tau_mem=0.01), 1)
    g.dense("h2", "o")
    g.output("y", "o")
    model = ntg.compile(g, "torch", dt=1e-3)
    with pytest.raises(ntg.ValidationError, match="one hidden layer"):
        EProp().compute_gradients(model, torch.zeros(3, 1, 2), torch.zeros(3, 1, 1), PerStepMSE())


def test_tbptt_with_full_window_equals_bptt(data):
    x, target = data
    g = build(recurrent=True)
    exact = gradients(g, BPTT(), x, target)
    tb = gradients(g, TBPTT(window=40), x, target)
    for name in exact:
        torch.testing.assert_close(tb[name], exact[name], atol=1e-12, rtol=0)


def test_tbptt_detaches_state_between_windows(data):
    x, target = data
    g = build(recurrent=True)
    tb = gradients(g, TBPTT(window=10), x, target)
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    state = None
    objective = PerStepMSE()
    for start in range(0, 40, 10):
        res = model(x[start:start + 10], state=state)
        (objective(res["y"], target[start:start + 10]) * 10 / 40).backward()
        state = res.state.detach()
    for name, p in model.named_parameters():
        torch.testing.assert_close(tb[name], p.grad, atol=1e-12, rtol=0)
    full = gradients(g, BPTT(), x, target)
    assert not torch.allclose(full["projections.h->h.weight"], tb["projections.h->h.weight"])


def test_tbptt_step_per_window_takes_one_step_per_window(data):
    x, target = data
    model = ntg.compile(build(), "torch", dt=1e-3, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    steps = []
    original = opt.step
    opt.step = lambda *a, **k: (steps.append(1), original(*a, **k))[1]
    TBPTT(window=15, step_per_window=True).train_step(model, x, target, PerStepMSE(), opt)
    assert len(steps) == 3


# ----------------------------------------------------------------------------- firing-rate units
def rate_model(kind: str):
    tau = np.linspace(4e-3, 9e-3, 8)  # heterogeneous on purpose
    if kind == "WilsonCowan":
        return ntg.WilsonCowan(tau=tau, mu=np.linspace(-0.5, 0.5, 8), r=0.4)  # r > 0: the refractory term counts
    if kind == "RateUnit":
        return ntg.RateUnit(tau=tau, bias=0.2, activation="sigmoid")
    return ntg.RateUnit(tau=None, bias=-0.1, activation="tanh")  # instantaneous


def build_rate(kind, direct, readout_delay=0, dale=None, recurrent=False, seed=2):
    """Inputs -> 8 rate units, read directly (``direct``) or through an LI readout of 3."""
    g = ntg.Graph("eprop-rate", seed=seed)
    g.input("x", 5, excitatory=dale)
    g.population("h", rate_model(kind), 8)
    g.dense("x", "h", scale=1.5, bias=np.full(8, 0.1))
    if recurrent:
        g.dense("h", "h", scale=0.5)
    if direct:
        g.output("y", "h")
    else:
        g.population("o", ntg.LI(tau_mem=8e-3, r=np.linspace(1.0, 2.0, 3)), 3)
        g.dense("h", "o", delay=readout_delay, bias=np.zeros(3))
        g.output("y", "o")
    return g


@pytest.mark.parametrize("discretization", ["euler", "exact"])
@pytest.mark.parametrize("kind", ["WilsonCowan", "RateUnit", "RateUnit-instantaneous"])
@pytest.mark.parametrize("direct, readout_delay, dale", [(True, 0, 0.6), (False, 0, None), (False, 2, 0.6)])
def test_rate_eprop_equals_bptt_without_recurrence(kind, discretization, direct, readout_delay, dale):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 4, 5, generator=gen, dtype=torch.float64)
    target = torch.rand(40, 4, 8 if direct else 3, generator=gen, dtype=torch.float64)
    g = build_rate(kind, direct, readout_delay, dale)
    exact = gradients(g, BPTT(), x, target, discretization=discretization)
    eprop = gradients(g, EProp(chunk=16), x, target, discretization=discretization)  # chunks continue the traces
    assert exact.keys() == eprop.keys()
    for name in exact:
        assert exact[name].abs().max() > 1e-2, name  # the comparison is not vacuous
        torch.testing.assert_close(eprop[name], exact[name], atol=1e-10, rtol=0, msg=name)


def test_rate_eprop_with_recurrence_approximates_bptt_and_trains():
    """With recurrence e-prop drops the paths through other units' rates: close to BPTT, not equal, and it learns."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(40, 4, 5, generator=gen, dtype=torch.float64)
    target = torch.rand(40, 4, 8, generator=gen, dtype=torch.float64)
    g = build_rate("WilsonCowan", direct=True, recurrent=True)
    exact = gradients(g, BPTT(), x, target)
    eprop = gradients(g, EProp(), x, target)
    for name in ("projections.x->h.weight", "projections.h->h.weight"):
        cos = torch.nn.functional.cosine_similarity(exact[name].flatten(), eprop[name].flatten(), dim=0)
        assert 0.9 < cos < 1.0 - 1e-6, (name, float(cos))
    # e-prop alone trains a recurrent Wilson-Cowan student (Dale's law on the inputs) towards a teacher of the same
    # shape with other weights: observed loss 1.02 -> 0.025 in 30 Adam steps (BPTT: 1.02 -> 0.027)
    teacher = ntg.compile(build_rate("WilsonCowan", direct=True, recurrent=True, dale=0.8, seed=7), "torch",
                          dt=1e-3, dtype=torch.float64)
    with torch.no_grad():
        target = teacher(x)["y"]
    model = ntg.compile(build_rate("WilsonCowan", direct=True, recurrent=True, dale=0.8), "torch", dt=1e-3,
                        dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=5e-2)
    losses = [EProp().train_step(model, x, target, PerStepMSE(), opt).loss for _ in range(30)]
    assert losses[-1] < 0.1 * losses[0], losses
    ntg.validate(model.to_graph())


def test_rate_eprop_rejects_a_directly_read_rate_population_with_others():
    g = ntg.Graph("bad-rate")
    g.input("x", 2)
    g.population("h", ntg.LIF(tau_mem=0.01), 3)
    g.population("r", ntg.WilsonCowan(tau=0.01), 3)
    g.dense("x", "h")
    g.dense("h", "r")
    g.output("y", "r")
    model = ntg.compile(g, "torch", dt=1e-3)
    with pytest.raises(ntg.ValidationError, match="must be the only population"):
        EProp().compute_gradients(model, torch.zeros(3, 1, 2), torch.zeros(3, 1, 3), PerStepMSE())
