"""The torch backend's fast paths against its plain autograd path: identical forward values, equal gradients.

The fused LIF step (backends/torchsim/fused.py) runs in the step-by-step loop
(``model.fast = False``) when the reset is detached and no LIF parameter is
learnable; setting ``capture`` on a population forces the plain step, whose
gradient autograd derives from the same arithmetic.

The layered plan (backends/torchsim/layered.py: groups of populations, the
LIF scan and the linear scans of backends/torchsim/scan.py) runs by default;
it is compared with the step-by-step loop on plain autograd steps at float64:
identical spikes, other values within 1e-9, gradients with respect to every
parameter (weights, biases, learnable neuron parameters) and every input
within 1e-6, for random graphs and for every surrogate, reset mode and
``detach_reset`` setting.

Every test runs twice: on the compiled scan kernels (backends/torchsim/kernels.py,
the default on the CPU when numba is installed) and on the scans' PyTorch loops
(``kernels.disabled()``); the tests of the loops' event recorder run on the
loops only.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytest
import torch

import ntgraph as ntg
from backends.torchsim import ArcTan, FastSigmoid, Triangle
from backends.torchsim import events as events_module
from backends.torchsim import kernels
from backends.torchsim import scan as scan_module
from backends.torchsim.projections import set_event_driven


@pytest.fixture(autouse=True, params=["kernels", "loops"])
def scan_implementation(request):
    """Run the test on the compiled scan kernels and on the PyTorch loops (``loops_only`` tests: the loops)."""
    if request.param == "kernels":
        if not kernels.enabled():
            pytest.skip("numba is not installed or NTGRAPH_KERNELS=0: the scans run their PyTorch loops")
        if request.node.get_closest_marker("loops_only"):
            pytest.skip("tests the PyTorch loops' event recorder (the kernels keep spike lists instead)")
        yield request.param
        return
    with kernels.disabled():
        yield request.param


def network(reset: str) -> ntg.Graph:
    g = ntg.Graph("fast", seed=0)
    g.input("x", 30)
    n = 40
    g.population("h", ntg.LIF(tau_mem=np.linspace(5e-3, 20e-3, n), v_th=np.linspace(0.5, 1.0, n), v_leak=0.1,
                              v_reset=-0.1, r=np.linspace(5.0, 20.0, n), reset=reset), n, excitatory=0.8)
    g.dense("x", "h", scale=0.5, bias=np.full(n, 0.05))
    g.dense("h", "h", scale=0.3, no_self=True)
    g.population("o", ntg.LI(tau_mem=1e-2), 5)
    g.dense("h", "o")
    g.output("y", "o")
    return g


def run(g: ntg.Graph, x: torch.Tensor, surrogate, fused: bool):
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64, record=["h", "h.v"], surrogate=surrogate)
    model.fast = False  # the step-by-step loop, where the fused step runs (the layered plan is tested below)
    model.populations["h"].capture = not fused  # capture forces the plain (autograd) step
    result = model(x)
    loss = (result["y"] ** 2).sum() + 0.01 * result["h.v"].sum()
    loss.backward()
    return result, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("surrogate", [FastSigmoid(), ArcTan(), Triangle()], ids=["fast_sigmoid", "arctan", "triangle"])
def test_fused_lif_step_equals_the_plain_step(reset, surrogate):
    g = network(reset)
    x = (torch.rand(60, 8, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64) < 0.2).double()
    fast, fast_grads = run(g, x, surrogate, fused=True)
    plain, plain_grads = run(g, x, surrogate, fused=False)
    assert fast["h.spikes"].sum() > 0
    for key in ("y", "h.spikes", "h.v"):
        assert torch.equal(fast[key], plain[key]), key  # same arithmetic in the same order
    for name, grad in plain_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(fast_grads[name], grad, atol=1e-12, rtol=1e-10, msg=name)


@pytest.mark.slow
def test_long_runs_backpropagate_without_quadratic_buffers():
    """The input drive is unbound once: a long run's backward keeps memory linear in T (smoke test at T=2000)."""
    g = network("zero")
    model = ntg.compile(g, "torch", dt=1e-3)
    x = (torch.rand(2000, 2, 30, generator=torch.Generator().manual_seed(2)) < 0.1).float()
    model(x)["y"].sum().backward()
    assert model.projections["x->h"].weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------------------
# The layered plan with the LIF scan (backends/torchsim/layered.py, scan.py) against the step-by-step reference loop.

from backends.torchsim.layered import plan_groups  # noqa: E402
from random_graphs import probes, random_graph, random_inputs, spiking_keys  # noqa: E402

LIF_PARAMS = ("tau_mem", "v_th", "v_leak", "v_reset", "r")


def chained_runs_without_autograd(model, xs: list) -> dict:
    """``{fast: [result per input]}`` for the fast plan (True) and the reference loop (False) under
    ``torch.no_grad``, each run continuing from the previous run's state."""
    results = {}
    for fast in (True, False):
        model.fast = fast
        state, outs = None, []
        with torch.no_grad():
            for x in xs:
                res = model(x, state=state)
                state = res.state
                outs.append(res)
        results[fast] = outs
    return results


def run_both(g: ntg.Graph, xs: dict, *, seed: int, record: Optional[list] = None, event_mode: Optional[str] = None,
             **options):
    """Fast plan and reference loop (plain autograd steps) on the same graph: results and gradients.

    The loss weighs every output and every recorded variable (by default every recordable one) with fixed
    random weights, plus the final neuron states, so the gradient reaches every parameter and input through
    every recorded path, the membranes included.  ``event_mode`` sets the fast model's dense projections to
    that event mode (:func:`set_event_driven`); the reference is always dense.
    """
    runs = []
    for fast in (True, False):
        model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64, record=probes(g) if record is None else record,
                            **options)
        model.fast = fast
        set_event_driven(model, event_mode if fast and event_mode is not None else "dense")
        if not fast:
            for dyn in model.populations.values():
                dyn.capture = True  # the plain autograd step, not the fused one
        inputs = {k: torch.tensor(v, requires_grad=True) for k, v in xs.items()}
        result = model(inputs)
        gen = torch.Generator().manual_seed(seed)
        values = {**result.outputs, **result.records}
        loss = sum((torch.randn(v.shape, generator=gen, dtype=torch.float64) * v).sum() for _, v in sorted(values.items()))
        state = [s for _, states in sorted(result.state.neurons.items()) for s in states]
        loss = loss + sum(s.sum() for s in state)
        leaves = dict(model.named_parameters()) | {f"input {k}": v for k, v in inputs.items()}
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        grads = {k: (g_ if g_ is not None else torch.zeros_like(v)) for (k, v), g_ in zip(leaves.items(), grads)}
        runs.append((model, values, result.state, grads))
    return runs


def assert_same(g: ntg.Graph, runs, *, atol: float = 1e-6) -> None:
    (_, fast, fstate, fgrads), (_, ref, rstate, rgrads) = runs
    assert fast.keys() == ref.keys()
    for key in spiking_keys(g) & fast.keys():
        assert torch.equal(fast[key], ref[key]), key  # identical spikes
    for key in fast:
        torch.testing.assert_close(fast[key], ref[key], atol=1e-9, rtol=1e-9, msg=key)
    for pop in rstate.neurons:
        for a, b in zip(fstate.neurons[pop], rstate.neurons[pop]):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, msg=pop)
    for node in rstate.history:
        for a, b in zip(fstate.history[node], rstate.history[node], strict=True):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, msg=node)
    assert fgrads.keys() == rgrads.keys()
    for name, grad in rgrads.items():
        torch.testing.assert_close(fgrads[name], grad, atol=atol, rtol=1e-6, msg=name)


@pytest.mark.parametrize("seed", range(12))
def test_layered_plan_equals_the_step_loop_on_random_graphs(seed):
    rng = np.random.default_rng(1000 + seed)
    g = random_graph(rng, kinds=["LIF", "LIF", "LIF", "CubaLIF", "LI"] if seed % 3 == 0 else None)
    xs = random_inputs(rng, g, steps=25, batch=3)
    runs = run_both(g, xs, seed=seed, surrogate=[FastSigmoid(), ArcTan(), Triangle()][seed % 3],
                    detach_reset=bool(seed % 2))
    assert_same(g, runs)


def recurrent_lif(reset: str, learnable=(), delay: int = 1, bias: bool = True) -> ntg.Graph:
    g = ntg.Graph("rec", seed=3)
    g.input("x", 12)
    n = 16
    g.population("h", ntg.LIF(tau_mem=np.linspace(3e-3, 20e-3, n), v_th=np.linspace(0.4, 1.0, n), v_leak=0.05,
                              v_reset=np.linspace(-0.2, 0.1, n), r=np.linspace(1.0, 3.0, n), reset=reset), n,
                 learnable=learnable)
    g.dense("x", "h", scale=1.0)
    g.dense("h", "h", scale=0.6, delay=delay, bias=np.full(n, 0.1) if bias else None)
    g.population("o", ntg.LI(tau_mem=5e-3), 4)
    g.dense("h", "o", delay=2)
    g.output("y", "o")
    g.output("s", "h")
    return g


@pytest.mark.parametrize("detach_reset", [True, False], ids=["detached", "attached"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("surrogate", [FastSigmoid(), ArcTan(), Triangle()], ids=["fast_sigmoid", "arctan", "triangle"])
def test_lif_scan_with_recurrence_and_learnable_parameters(surrogate, reset, detach_reset):
    g = recurrent_lif(reset, learnable=LIF_PARAMS, delay=1 + (reset == "subtract"))
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    assert [grp.kind for grp in plan_groups(model)] == ["lif", "li"]  # the LIF scan runs, with its self-projection
    rng = np.random.default_rng(7)
    xs = {"x": (rng.random((40, 5, 12)) < 0.3).astype(np.float64)}
    runs = run_both(g, xs, seed=1, surrogate=surrogate, detach_reset=detach_reset)
    assert runs[1][1]["s"].sum() > 20
    used = [p for p in LIF_PARAMS if p != "v_reset" or reset == "zero"]  # a subtract reset never reads v_reset
    assert all(runs[1][3][f"populations.h.{p}"].abs().max() > 0 for p in used)
    assert_same(g, runs)


@pytest.mark.parametrize("detach_reset", [True, False], ids=["detached", "attached"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("surrogate", [FastSigmoid(), ArcTan(), Triangle()], ids=["fast_sigmoid", "arctan", "triangle"])
@pytest.mark.parametrize("event_mode", ["dense", "event"])
def test_alif_scan_with_recurrence(monkeypatch, scan_implementation, surrogate, reset, detach_reset, event_mode):
    """ALIF (adaptive threshold, gradient through the adaptation) with a delayed recurrent projection, its product
    dense or summed from the spikes' events (the loops' event recorder; the kernels always sum from their spike
    lists)."""
    g = ntg.Graph("alif", seed=6)
    g.input("x", 10)
    n = 14
    g.population("h", ntg.ALIF(tau_mem=np.linspace(3e-3, 15e-3, n), tau_adapt=np.linspace(20e-3, 60e-3, n),
                               beta=np.linspace(0.2, 1.5, n), v_th=0.5, v_leak=0.05, v_reset=-0.1, r=2.0, reset=reset), n)
    g.dense("x", "h", scale=1.2)
    g.dense("h", "h", scale=0.5, delay=1 + (reset == "zero"), bias=np.full(n, 0.05))
    g.population("o", ntg.LI(tau_mem=5e-3), 3)
    g.dense("h", "o")
    g.output("y", "o")
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    assert [grp.kind for grp in plan_groups(model)] == ["alif", "li"]
    xs = {"x": (np.random.default_rng(9).random((35, 4, 10)) < 0.35).astype(np.float64)}
    use = _EventUse(monkeypatch)
    runs = run_both(g, xs, seed=3, surrogate=surrogate, detach_reset=detach_reset, event_mode=event_mode)
    delay = 1 + (reset == "zero")
    recorder = (35 - delay, 1) if event_mode == "event" and scan_implementation == "loops" else (0, 0)
    assert (use.steps, use.grads) == recorder
    assert runs[1][1]["h.spikes"].sum() > 20
    assert_same(g, runs)


@pytest.mark.parametrize("detach_reset", [True, False], ids=["detached", "attached"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("surrogate", [FastSigmoid(), ArcTan(), Triangle()], ids=["fast_sigmoid", "arctan", "triangle"])
def test_cuba_scan_with_recurrence(monkeypatch, scan_implementation, surrogate, reset, detach_reset):
    """CubaLIF with a delayed, biased dense self-projection: the compiled CubaScan (the recurrent spikes enter the
    synaptic current) where the kernels apply with a detached reset, else the step loop; both against the
    reference, every recorded variable (spikes, current, membrane) and the final state in the loss."""
    g = ntg.Graph("cuba", seed=8)
    g.input("x", 10)
    n = 15
    g.population("h", ntg.CubaLIF(tau_mem=np.linspace(3e-3, 15e-3, n), tau_syn=np.linspace(2e-3, 6e-3, n),
                                  v_th=0.5, v_leak=0.05, v_reset=-0.1, r=2.0, reset=reset), n)
    g.dense("x", "h", scale=3.0)
    g.dense("h", "h", scale=1.5, delay=1 + 2 * (reset == "zero"), bias=np.full(n, 0.2))
    g.population("o", ntg.LI(tau_mem=5e-3), 3)
    g.dense("h", "o")
    g.output("y", "o")
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    assert [(grp.kind, grp.self_proj) for grp in plan_groups(model)] == [("cuba", ("h->h", 1 + 2 * (reset == "zero"))),
                                                                        ("li", None)]
    calls = []
    original = kernels.cuba_forward
    monkeypatch.setattr(kernels, "cuba_forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    xs = {"x": (np.random.default_rng(4).random((35, 4, 10)) < 0.35).astype(np.float64)}
    runs = run_both(g, xs, seed=5, surrogate=surrogate, detach_reset=detach_reset)
    assert len(calls) == (scan_implementation == "kernels" and detach_reset)  # else the step loop
    assert 20 < runs[1][1]["h.spikes"].sum() < 0.5 * runs[1][1]["h.spikes"].numel()
    assert_same(g, runs)


def test_cuba_with_learnable_time_constants_keeps_the_step_loop():
    """The compiled CubaScan has no parameter gradients: learnable CubaLIF parameters plan the step loop."""
    g = ntg.Graph("cuba", seed=8)
    g.input("x", 4)
    g.population("h", ntg.CubaLIF(tau_mem=0.01, tau_syn=0.005), 5, learnable=("tau_syn",))
    g.dense("x", "h")
    g.dense("h", "h")
    g.output("s", "h")
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    assert [grp.kind for grp in plan_groups(model)] == ["steps"]


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_linear_scans_with_learnable_parameters(reset):
    """CubaLIF (current as a linear scan, then the LIF scan) and LI readouts, every parameter learnable."""
    g = ntg.Graph("cuba", seed=4)
    g.input("x", 10)
    n = 12
    g.population("c", ntg.CubaLIF(tau_syn=np.linspace(2e-3, 8e-3, n), tau_mem=np.linspace(4e-3, 15e-3, n), v_th=0.6,
                                  v_leak=0.05, v_reset=-0.1, r=1.5, w_in=np.linspace(1.0, 3.0, n), reset=reset), n,
                 learnable=("tau_syn", "tau_mem", "v_th", "v_leak", "v_reset", "r", "w_in"))
    g.population("o", ntg.LI(tau_mem=np.linspace(3e-3, 9e-3, 3), v_leak=0.1, r=2.0), 3,
                 learnable=("tau_mem", "v_leak", "r"))
    g.dense("x", "c", scale=1.5)
    g.dense("c", "o", delay=1)
    g.output("y", "o")
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    assert [grp.kind for grp in plan_groups(model)] == ["cuba", "li"]
    xs = {"x": (np.random.default_rng(5).random((30, 4, 10)) < 0.4).astype(np.float64)}
    runs = run_both(g, xs, seed=2, detach_reset=False)
    assert runs[1][1]["c.spikes"].sum() > 20
    assert_same(g, runs)


def test_fused_matmul_per_target_in_a_cycle_of_populations():
    """E <-> I: each population gets two dense projections from inside its group, fused into one matmul per step."""
    g = ntg.Graph("ei", seed=8)
    g.input("x", 8)
    g.population("e", ntg.LIF(tau_mem=10e-3, v_th=0.8, reset="subtract"), 12, excitatory=1.0)
    g.population("i", ntg.ALIF(tau_mem=5e-3, tau_adapt=30e-3, beta=0.5, v_th=0.6), 6, excitatory=0.0)
    g.dense("x", "e", scale=1.5)
    g.dense("e", "e", scale=0.4, delay=1, no_self=True, bias=np.full(12, 0.02))
    g.dense("i", "e", scale=0.6, delay=2)
    g.dense("e", "i", scale=0.8, delay=0, bias=np.full(6, -0.05))
    g.dense("i", "i", scale=0.3, delay=1)
    g.output("y", "e")
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    assert [(grp.kind, grp.members) for grp in plan_groups(model)] == [("steps", ["e", "i"])]
    xs = {"x": (np.random.default_rng(4).random((30, 3, 8)) < 0.4).astype(np.float64)}
    runs = run_both(g, xs, seed=5)
    assert runs[1][1]["y"].sum() > 10 and runs[1][1]["i.spikes"].sum() > 5
    assert_same(g, runs)


@pytest.mark.parametrize("detach_reset", [True, False], ids=["detached", "attached"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("surrogate", [FastSigmoid(), ArcTan()], ids=["fast_sigmoid", "arctan"])
@pytest.mark.parametrize("learnable", [(), LIF_PARAMS], ids=["fixed", "learnable"])
def test_feed_forward_scan_without_probes_backpropagates_through_the_final_membrane(learnable, surrogate, reset,
                                                                                    detach_reset):
    """Nothing recorded: the scan keeps only the last membrane (``keep_v=False``) under autograd, and the loss
    reaches it through the final state; gradients equal the reference loop's."""
    g = ntg.Graph("ff", seed=5)
    g.input("x", 10)
    n = 12
    g.population("h", ntg.LIF(tau_mem=np.linspace(3e-3, 20e-3, n), v_th=np.linspace(0.4, 1.0, n), v_leak=0.05,
                              v_reset=np.linspace(-0.2, 0.1, n), r=np.linspace(1.0, 3.0, n), reset=reset), n,
                 learnable=learnable)
    g.dense("x", "h", scale=1.5, bias=np.full(n, 0.05))
    g.population("o", ntg.LI(tau_mem=5e-3), 3)
    g.dense("h", "o")
    g.output("y", "o")
    g.output("s", "h")
    xs = {"x": (np.random.default_rng(11).random((30, 4, 10)) < 0.3).astype(np.float64)}
    runs = run_both(g, xs, seed=7, record=[], surrogate=surrogate, detach_reset=detach_reset)
    assert_same(g, runs)


class _EventUse:
    """Counts the recurrent steps summed from events and the weight gradients taken from events (monkeypatched)."""

    def __init__(self, monkeypatch) -> None:
        self.steps = self.grads = 0
        product, grad = events_module.StepEvents.product, scan_module.event_weight_grad

        def counting_product(step_events, t, table):
            y = product(step_events, t, table)
            self.steps += y is not None
            return y

        def counting_grad(*args, **kwargs):
            self.grads += 1
            return grad(*args, **kwargs)

        monkeypatch.setattr(events_module.StepEvents, "product", counting_product)
        monkeypatch.setattr(scan_module, "event_weight_grad", counting_grad)


@pytest.mark.loops_only
@pytest.mark.parametrize("learnable", [(), ("tau_mem", "r"), LIF_PARAMS], ids=["fixed", "some", "all"])
@pytest.mark.parametrize("reset,delay", [("zero", 1), ("subtract", 2)])
@pytest.mark.parametrize("detach_reset", [True, False], ids=["detached", "attached"])
def test_event_driven_recurrence_equals_the_reference(monkeypatch, learnable, reset, delay, detach_reset):
    """The LIF scan's recurrent product summed from the spikes' events (``event`` mode) and its weight gradient
    from the same events, against the dense step loop: identical spikes, gradients within 1e-6 at float64.

    ``all`` includes the threshold (the scan's unfused backward), ``fixed``/``some`` take the fused one."""
    g = recurrent_lif(reset, learnable=learnable, delay=delay)
    xs = {"x": (np.random.default_rng(21).random((30, 4, 12)) < 0.3).astype(np.float64)}
    use = _EventUse(monkeypatch)
    runs = run_both(g, xs, seed=5, event_mode="event", detach_reset=detach_reset)
    assert use.steps == 30 - delay and use.grads == 1  # every step that reads the scan's own spikes
    assert 10 < runs[1][1]["s"].sum() < runs[1][1]["s"].numel() / 2
    assert_same(g, runs)


@pytest.mark.loops_only
def test_event_driven_recurrence_auto_mode_follows_size_and_density(monkeypatch):
    """``auto``: the event path only for step GEMMs of >= EVENT_MIN_STEP_MACS multiply-adds, and per step only at
    density <= the threshold (else the dense GEMM); the weight gradient from events only when the density over
    all steps is at most the threshold.  Values equal the dense path's either way."""
    n, batch = 512, 32
    assert batch * n * n >= events_module.EVENT_MIN_STEP_MACS > 8 * n * n
    g = ntg.Graph("wide", seed=2)
    g.input("x", 20)
    g.population("h", ntg.LIF(tau_mem=10e-3, v_th=1.0, reset="zero"), n)
    g.dense("x", "h", scale=3.0)
    g.dense("h", "h", scale=0.5, no_self=True)
    g.output("s", "h")
    rng = np.random.default_rng(3)
    x = torch.tensor((rng.random((8, batch, 20)) < 0.1).astype(np.float64))
    ref = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    set_event_driven(ref, "dense")
    expected = ref(x)["s"]
    expected.sum().backward()
    for threshold, size_ok in ((0.5, True), (0.0, True), (0.5, False)):
        use = _EventUse(monkeypatch)
        model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
        set_event_driven(model, "auto", threshold=threshold)
        xb = x if size_ok else x[:, :8]
        out = model(xb)["s"]
        out.sum().backward()
        assert use.steps == (7 if threshold > 0 and size_ok else 0), (threshold, size_ok)
        assert use.grads == (1 if threshold > 0 and size_ok else 0), (threshold, size_ok)
        if size_ok:
            assert torch.equal(out, expected)
            assert 0.01 < float(out[1:].detach().mean()) < 0.5
            torch.testing.assert_close(model.projections["h->h"].weight.grad, ref.projections["h->h"].weight.grad,
                                       atol=1e-9, rtol=1e-9)


@pytest.mark.loops_only
def test_event_driven_recurrence_without_autograd_equals_the_reference(monkeypatch):
    """The inference scan with the event-driven recurrence: same spikes and membranes as the dense step loop."""
    g = recurrent_lif("zero", delay=1)
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64, record=["h.v"])
    x = torch.tensor((np.random.default_rng(8).random((30, 3, 12)) < 0.3).astype(np.float64))
    use = _EventUse(monkeypatch)
    with torch.no_grad():
        set_event_driven(model, "event")
        fast = model(x)
        set_event_driven(model, "dense")
        model.fast = False
        ref = model(x)
    assert use.steps == 29
    assert torch.equal(fast["s"], ref["s"]) and fast["s"].sum() > 10
    torch.testing.assert_close(fast["h.v"], ref["h.v"], atol=1e-12, rtol=0)


def test_state_carries_over_between_fast_runs():
    """Two fast runs of 20 steps, the second continuing the first's state, equal one reference run of 40 steps."""
    g = recurrent_lif("zero", delay=2)
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64, record=["h.v"])
    x = torch.tensor((np.random.default_rng(3).random((40, 4, 12)) < 0.3).astype(np.float64))
    model.fast = False
    whole = model(x)
    model.fast = True
    first = model(x[:20])
    second = model(x[20:], state=first.state)
    assert torch.equal(torch.cat([first["s"], second["s"]]), whole["s"])
    torch.testing.assert_close(torch.cat([first["h.v"], second["h.v"]]), whole["h.v"], atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.cat([first["y"], second["y"]]), whole["y"], atol=1e-12, rtol=1e-12)


def test_step_hooks_and_capture_use_the_reference_loop():
    g = recurrent_lif("zero")
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    seen = []
    x = torch.zeros(5, 2, 12, dtype=torch.float64)
    model(x, on_step=lambda t, now, neurons, history: seen.append(sorted(now)))
    assert seen == [["h", "o"]] * 5  # every population stepped together, once per step


def test_inference_without_autograd_equals_the_reference():
    """Under ``torch.no_grad`` the scans run their forward loops with nothing saved; same values."""
    g = recurrent_lif("subtract", delay=1)
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64, record=["h.v", "o.v"])
    x = torch.tensor((np.random.default_rng(8).random((30, 3, 12)) < 0.3).astype(np.float64))
    with torch.no_grad():
        fast = model(x)
        model.fast = False
        ref = model(x)
    assert fast["s"].sum() > 10
    assert torch.equal(fast["s"], ref["s"])
    for key in ("y", "h.v", "o.v"):
        torch.testing.assert_close(fast[key], ref[key], atol=1e-12, rtol=0, msg=key)


@pytest.mark.parametrize("record", [["h.v"], []], ids=["v-recorded", "v-not-recorded"])
@pytest.mark.parametrize("reset,delay,recurrent", [("zero", 1, True), ("subtract", 2, True), ("zero", 1, False),
                                                   ("subtract", 1, False)])
def test_inference_scan_variant_equals_the_reference(reset, delay, recurrent, record):
    """The no-grad LIF scan (bool spikes, masked-fill reset, membrane kept only when probed) against the step loop.

    Spikes identical, membranes and the carried-over state equal to 1e-12 at float64, over two chained runs.
    """
    g = recurrent_lif(reset, delay=delay)
    if not recurrent:
        g = ntg.Graph("ff", seed=3)
        g.input("x", 12)
        g.population("h", ntg.LIF(tau_mem=8e-3, v_th=0.7, v_reset=-0.1 if reset == "zero" else 0.0, reset=reset), 16)
        g.dense("x", "h", scale=1.5)
        g.population("o", ntg.LI(tau_mem=5e-3), 4)
        g.dense("h", "o")
        g.output("y", "o")
        g.output("s", "h")
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64, record=record)
    rng = np.random.default_rng(11)
    xs = [torch.tensor((rng.random((20, 3, 12)) < 0.3).astype(np.float64)) for _ in range(2)]
    results = chained_runs_without_autograd(model, xs)
    for fast_res, ref_res in zip(results[True], results[False]):
        assert torch.equal(fast_res["s"], ref_res["s"])
        assert 5 < fast_res["s"].sum() < fast_res["s"].numel() / 2
        for key in ["y"] + record:
            torch.testing.assert_close(fast_res[key], ref_res[key], atol=1e-12, rtol=0, msg=key)
        for pop in ref_res.state.neurons:
            for a, b in zip(fast_res.state.neurons[pop], ref_res.state.neurons[pop]):
                torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=pop)


def test_fast_sigmoid_in_place_derivative_equals_the_formula():
    """The buffer-reusing derivative (no autograd) equals ``1 / (slope*|x| + 1)^2`` exactly; with autograd it stays
    differentiable (second derivative by gradcheck)."""
    sg = FastSigmoid(slope=7.0)
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(sg.derivative(x), 1.0 / (7.0 * x.abs() + 1.0) ** 2)
    xg = (x[x != 0] + 0.01).clone().requires_grad_()
    assert torch.autograd.gradcheck(sg.derivative, (xg,))
