"""The rate and IF scans (backends/torchsim/scan_rate.py) against the step-by-step reference loop.

Wilson-Cowan (euler and exact), rate units (sigmoid/tanh, leaky/instantaneous) and IF populations run in
the layered plan as one custom-autograd scan each, with a dense self-projection of delay >= 1 inside the
scan.  Each test compares with the reference loop (``model.fast = False``, ``capture`` set so every step
is plain autograd) at float64: identical spikes, values within 1e-9, gradients with respect to every
parameter (weights, biases, learnable neuron parameters) and every input within 1e-6 (``run_both`` /
``assert_same`` of tests/test_fast_paths.py).  The scans' use is asserted (the plan's group kinds, and
the step functions never called on the fast path).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ntgraph as ntg
from backends.torchsim import ArcTan, FastSigmoid, Triangle
from backends.torchsim.layered import plan_groups
from test_fast_paths import assert_same, chained_runs_without_autograd, run_both

WC_PARAMS = ("tau", "mu", "r")
IF_PARAMS = ("r", "v_th", "v_reset")
#: (with a dense self-projection?, its delay)
SELF_PROJECTION = [(True, 1), (True, 2), (False, 1)]
SELF_PROJECTION_IDS = ["recurrent-d1", "recurrent-d2", "feed-forward"]


def _graph(model: ntg.NeuronModel, *, n: int = 10, learnable=(), recurrent: bool = True, delay: int = 1,
           bias: bool = True, in_scale: float = 1.0, rec_scale: float = 1.5, seed: int = 1) -> ntg.Graph:
    """``x -> h`` (``h -> h`` dense with ``delay`` and a bias if ``recurrent``), ``h -> o`` (LI, delay 1)."""
    g = ntg.Graph("scan", seed=seed)
    g.input("x", 6)
    g.population("h", model, n, learnable=learnable)
    g.dense("x", "h", scale=in_scale, bias=np.linspace(-0.2, 0.2, n))
    if recurrent:
        g.dense("h", "h", scale=rec_scale, delay=delay, bias=np.full(n, 0.1) if bias else None)
    g.population("o", ntg.LI(tau_mem=5e-3), 3)
    g.dense("h", "o", delay=1)
    g.output("y", "o")
    g.output("s", "h")
    return g


def _wilson_cowan(n: int = 10) -> ntg.WilsonCowan:
    return ntg.WilsonCowan(tau=np.linspace(2e-3, 9e-3, n), mu=np.linspace(-0.5, 0.5, n), r=np.linspace(0.1, 0.9, n))


def _rate_unit(activation: str, leaky: bool, n: int = 10) -> ntg.RateUnit:
    return ntg.RateUnit(tau=np.linspace(2e-3, 8e-3, n) if leaky else None, bias=np.linspace(-0.3, 0.3, n),
                        activation=activation)


def _if(reset: str, n: int = 12) -> ntg.IF:
    return ntg.IF(r=np.linspace(200.0, 600.0, n), v_th=np.linspace(0.6, 1.2, n),
                  v_reset=np.linspace(-0.2, 0.1, n) if reset == "zero" else 0.0, reset=reset)


def _inputs(seed: int, steps: int = 30, batch: int = 4, spikes: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.random((steps, batch, 6))
    return {"x": (x < 0.35).astype(np.float64) if spikes else x - 0.3}


def _kinds(g: ntg.Graph, **options) -> list[str]:
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64, **options)
    return [grp.kind for grp in plan_groups(model)]


def _forbid_steps(monkeypatch, dynamics_type) -> None:
    """Make the model's step function raise on the fast path (the reference sets ``capture``, where it may run)."""
    original = dynamics_type.step

    def step(self, current, state, c):
        if not self.capture:
            raise AssertionError(f"{type(self).__name__}.step ran on the fast path: the scan was not used")
        return original(self, current, state, c)

    monkeypatch.setattr(dynamics_type, "step", step)


# ---------------------------------------------------------------------------------------------------------------------
# Wilson-Cowan


@pytest.mark.parametrize("learnable", [(), WC_PARAMS], ids=["fixed", "learnable"])
@pytest.mark.parametrize("recurrent,delay", SELF_PROJECTION, ids=SELF_PROJECTION_IDS)
@pytest.mark.parametrize("discretization", ["euler", "exact"])
def test_wilson_cowan_scan_equals_the_step_loop(monkeypatch, discretization, recurrent, learnable, delay):
    from backends.torchsim.neurons import WilsonCowanDynamics

    g = _graph(_wilson_cowan(), learnable=learnable, recurrent=recurrent, delay=delay)
    assert _kinds(g, discretization=discretization) == ["wc", "li"]
    _forbid_steps(monkeypatch, WilsonCowanDynamics)
    runs = run_both(g, _inputs(3), seed=2, discretization=discretization)
    rates = runs[1][1]["s"].detach()
    assert float(rates[-1].min()) > 0.01 and float(rates.max()) < 0.95 and float(rates.std()) > 0.02  # unsaturated
    grads = runs[1][3]
    for p in learnable:
        assert grads[f"populations.h.{p}"].abs().min() > 0, p
    if recurrent:
        assert grads["projections.h->h.weight"].abs().max() > 0
    assert_same(g, runs)


# ---------------------------------------------------------------------------------------------------------------------
# Rate units


@pytest.mark.parametrize("recurrent,delay", SELF_PROJECTION, ids=SELF_PROJECTION_IDS)
@pytest.mark.parametrize("leaky", [True, False], ids=["leaky", "instantaneous"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("discretization", ["euler", "exact"])
def test_rate_unit_scan_equals_the_step_loop(monkeypatch, discretization, activation, leaky, recurrent, delay):
    from backends.torchsim.neurons import RateDynamics

    learnable = ("tau", "bias") if leaky else ("bias",)
    g = _graph(_rate_unit(activation, leaky), learnable=learnable, recurrent=recurrent, delay=delay, rec_scale=1.0)
    assert _kinds(g, discretization=discretization) == ["rate", "li"]
    _forbid_steps(monkeypatch, RateDynamics)
    runs = run_both(g, _inputs(4), seed=3, discretization=discretization)
    assert float(runs[1][1]["s"].detach().std()) > 0.02
    for p in learnable:
        assert runs[1][3][f"populations.h.{p}"].abs().min() > 0, p
    assert_same(g, runs)


# ---------------------------------------------------------------------------------------------------------------------
# IF


@pytest.mark.parametrize("learnable", [(), IF_PARAMS], ids=["fixed", "learnable"])
@pytest.mark.parametrize("detach_reset", [True, False], ids=["detached", "attached"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("recurrent,delay", SELF_PROJECTION, ids=SELF_PROJECTION_IDS)
def test_if_scan_equals_the_step_loop(monkeypatch, recurrent, reset, delay, detach_reset, learnable):
    from backends.torchsim.neurons import IFDynamics

    g = _graph(_if(reset), n=12, learnable=learnable, recurrent=recurrent, delay=delay, in_scale=1.5, rec_scale=0.8)
    assert _kinds(g) == ["if", "li"]
    _forbid_steps(monkeypatch, IFDynamics)
    surrogate = [FastSigmoid(), ArcTan(), Triangle()][(delay + (reset == "zero") + detach_reset) % 3]
    runs = run_both(g, _inputs(5, spikes=True), seed=4, surrogate=surrogate, detach_reset=detach_reset)
    spikes = runs[1][1]["s"].detach()
    assert 20 < float(spikes.sum()) < spikes.numel() / 2
    grads = runs[1][3]
    for p in learnable:
        if p != "v_reset" or reset == "zero":  # a subtract reset never reads v_reset
            assert grads[f"populations.h.{p}"].abs().max() > 0, p
    assert_same(g, runs)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_if_scan_without_probes_backpropagates_through_the_final_membrane(reset):
    """Nothing recorded: the scan returns only the last membrane (``keep_v=False``); the loss reaches it through
    the final state."""
    g = _graph(_if(reset), n=12, learnable=IF_PARAMS, in_scale=1.5, rec_scale=0.8)
    runs = run_both(g, _inputs(6, spikes=True), seed=5, record=[], detach_reset=False)
    assert_same(g, runs)


# ---------------------------------------------------------------------------------------------------------------------
# Chained runs, inference, the plan


def _chained(g: ntg.Graph, xs: list[np.ndarray], fast: bool, **options):
    """Two runs, the second continuing the first's state (not detached); outputs and gradients of one loss."""
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64, record=["h"], **options)
    model.fast = fast
    if not fast:
        for dyn in model.populations.values():
            dyn.capture = True
    inputs = [torch.tensor(x, requires_grad=True) for x in xs]
    state, outs, loss = None, [], 0.0
    gen = torch.Generator().manual_seed(9)
    for x in inputs:
        res = model(x, state=state)
        state = res.state
        outs.append({k: v for k, v in {**res.outputs, **res.records}.items()})
        for _, v in sorted(outs[-1].items()):
            loss = loss + (torch.randn(v.shape, generator=gen, dtype=torch.float64) * v).sum()
    loss = loss + sum(s.sum() for _, states in sorted(state.neurons.items()) for s in states)
    leaves = dict(model.named_parameters()) | {f"input {k}": v for k, v in enumerate(inputs)}
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return outs, {k: (g_ if g_ is not None else torch.zeros_like(v)) for (k, v), g_ in zip(leaves.items(), grads)}


@pytest.mark.parametrize("kind", ["wc-euler", "wc-exact", "rate", "if"])
def test_two_chained_runs_carry_state_and_gradients(kind):
    """Run 2 continues run 1 (the rate/membrane and the self-projection's delay history): same outputs and
    gradients (through both runs) as the reference loop."""
    options: dict = {}
    if kind.startswith("wc"):
        g = _graph(_wilson_cowan(), learnable=WC_PARAMS, delay=2)
        options["discretization"] = kind.split("-")[1]
    elif kind == "rate":
        g = _graph(_rate_unit("tanh", True), learnable=("tau", "bias"), delay=2, rec_scale=1.0)
    else:
        g = _graph(_if("subtract"), n=12, learnable=IF_PARAMS, delay=2, in_scale=1.5, rec_scale=0.8)
        options["detach_reset"] = False
    rng = np.random.default_rng(12)
    xs = [(rng.random((15, 3, 6)) < 0.35).astype(np.float64) if kind == "if" else rng.random((15, 3, 6)) - 0.3
          for _ in range(2)]
    fast_outs, fast_grads = _chained(g, xs, True, **options)
    ref_outs, ref_grads = _chained(g, xs, False, **options)
    for f_run, r_run in zip(fast_outs, ref_outs):
        for key in r_run:
            if kind == "if" and key in ("s", "h.spikes"):
                assert torch.equal(f_run[key], r_run[key]), key
            torch.testing.assert_close(f_run[key], r_run[key], atol=1e-9, rtol=1e-9, msg=key)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, atol=1e-6, rtol=1e-6, msg=name)
    assert ref_grads["input 0"].abs().max() > 0 and ref_grads["projections.h->h.weight"].abs().max() > 0


@pytest.mark.parametrize("kind", ["wc-euler", "wc-exact", "rate-leaky", "rate-instant", "if-zero", "if-subtract"])
@pytest.mark.parametrize("recurrent", [True, False], ids=["recurrent", "feed-forward"])
def test_inference_scans_equal_the_reference(kind, recurrent):
    """Under ``torch.no_grad`` the scans run with nothing saved (in place): same values over two chained runs."""
    options: dict = {}
    if kind.startswith("wc"):
        g = _graph(_wilson_cowan(), recurrent=recurrent, delay=2)
        options["discretization"] = kind.split("-")[1]
    elif kind.startswith("rate"):
        g = _graph(_rate_unit("sigmoid", kind == "rate-leaky"), recurrent=recurrent, delay=2)
    else:
        g = _graph(_if(kind.split("-")[1]), n=12, recurrent=recurrent, in_scale=1.5, rec_scale=0.8)
    spiking = kind.startswith("if")
    for record in (["h"], ["h.v"] if spiking else []):
        model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64, record=record, **options)
        rng = np.random.default_rng(13)
        xs = [torch.tensor((rng.random((15, 3, 6)) < 0.35).astype(np.float64) if spiking else rng.random((15, 3, 6)))
              for _ in range(2)]
        results = chained_runs_without_autograd(model, xs)
        for f_res, r_res in zip(results[True], results[False]):
            if spiking:
                assert torch.equal(f_res["s"], r_res["s"]) and f_res["s"].sum() > 10
            assert sorted(f_res.records) == sorted(r_res.records) and len(r_res.records) == len(record)
            for key in ["y", "s", *r_res.records]:
                torch.testing.assert_close(f_res[key], r_res[key], atol=1e-12, rtol=1e-12, msg=key)
            for a, b in zip(f_res.state.neurons["h"], r_res.state.neurons["h"]):
                torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_plan_groups_picks_the_rate_and_if_scans():
    """Each model alone, with a dense delayed self-projection, or (not a scan) with a sparse one or in a cycle."""
    g = ntg.Graph("plan", seed=2)
    g.input("x", 4)
    g.population("wc", _wilson_cowan(6), 6, learnable=WC_PARAMS)
    g.population("ru", _rate_unit("tanh", False, 5), 5)
    g.population("if", _if("zero", 7), 7)
    g.population("sp", _rate_unit("sigmoid", True, 5), 5)
    g.population("e", _wilson_cowan(4), 4)
    g.population("i", _rate_unit("sigmoid", True, 3), 3)
    g.dense("x", "wc")
    g.dense("wc", "wc", delay=2)
    g.dense("wc", "ru")
    g.dense("ru", "if")
    g.dense("if", "if", delay=1)
    g.dense("if", "sp")
    g.sparse("sp", "sp", p=0.5, delay=1)
    g.dense("sp", "e")
    g.dense("e", "i", delay=0)
    g.dense("i", "e", delay=1)
    g.output("y", "i")
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    groups = plan_groups(model)
    assert [(grp.kind, grp.members) for grp in groups] == [
        ("wc", ["wc"]), ("rate", ["ru"]), ("if", ["if"]), ("steps", ["sp"]), ("steps", ["e", "i"])]
    assert groups[0].self_proj == ("wc->wc", 2) and groups[1].self_proj is None and groups[2].self_proj == ("if->if", 1)
    runs = run_both(g, {"x": np.random.default_rng(1).random((12, 2, 4))}, seed=6)
    assert_same(g, runs)


def test_step_hooks_still_use_the_reference_loop():
    """A per-step hook (e-prop, the NaN guard) steps every population together, Wilson-Cowan included."""
    g = _graph(_wilson_cowan(), delay=2)
    model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
    seen: list = []
    model(torch.zeros(4, 2, 6, dtype=torch.float64), on_step=lambda t, now, neurons, history: seen.append(sorted(now)))
    assert seen == [["h", "o"]] * 4


def test_a_wrong_gradient_is_caught(monkeypatch):
    """The comparison can fail: a scan whose tau gradient is off by 1% does not pass ``assert_same``."""
    from backends.torchsim import scan_rate

    original = scan_rate.WilsonCowanCell.param_grads

    def skewed(self, *args, **kwargs):
        grad_tau, grad_r = original(self, *args, **kwargs)
        return (None if grad_tau is None else grad_tau * 1.01), grad_r

    monkeypatch.setattr(scan_rate.WilsonCowanCell, "param_grads", skewed)
    g = _graph(_wilson_cowan(), learnable=WC_PARAMS)
    runs = run_both(g, _inputs(3), seed=2)
    with pytest.raises(AssertionError, match="tau"):
        assert_same(g, runs)
