"""float16 / bfloat16 simulation in the torch backend against float64 (docs/precision.md).

The reference is the same network simulated in float64 with the same weights
and input spikes.  Tolerances come from benchmarks/precision_agreement.py
(measured values in docs/precision.md) with a margin: half precision keeps
spike counts and membrane trajectories, not every spike time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ntgraph
from backends.torchsim.precision import DEFAULT_TOLERANCE, leak_resolution, max_tau_over_dt
from ntgraph import ALIF, IF, LI, LIF, CubaLIF, Graph, ValidationError

DT = 1e-3


def net(model, tau_steps: float, n_in: int = 100, n_hid: int = 200) -> Graph:
    g = Graph("ff", seed=3)
    g.input("x", n_in)
    g.population("h", model, n_hid)
    g.population("m", LI(tau_mem=tau_steps * DT, r=tau_steps), 10)
    g.dense("x", "h", scale=2.0 / np.sqrt(n_in))
    g.dense("x", "m", scale=1.0 / np.sqrt(n_in))
    g.output("spikes", "h")
    g.output("v", "m")
    return g


X = (np.random.default_rng(0).random((200, 8, 100)) < 0.05).astype(np.float32)  # 50 Hz Poisson spikes


def agreement(graph: Graph, dtype: str, **kw) -> dict[str, float]:
    ref = ntgraph.simulate(graph, X, dt=DT, dtype="float64", **kw)
    low = ntgraph.simulate(graph, X, dt=DT, dtype=dtype, **kw)
    s64, s = ref["spikes"], low["spikes"]
    assert s64.sum() > 1000  # a network that spikes (about 40 Hz)
    return {
        "agree": float(np.mean(s == s64)),
        "count": float(abs(s.sum() - s64.sum()) / s64.sum()),
        "v": float(np.max(np.abs(low["v"] - ref["v"])) / np.max(np.abs(ref["v"]))),
    }


# dtype, model, tau/dt, min spike agreement, max spike-count error, max LI membrane error
CASES = [
    ("float16", LIF(tau_mem=20 * DT, r=20), 20, 0.995, 0.01, 0.006),
    ("bfloat16", LIF(tau_mem=20 * DT, r=20), 20, 0.99, 0.03, 0.03),
    ("float16", LIF(tau_mem=200 * DT, r=200), 200, 0.985, 0.04, 0.03),
    ("bfloat16", CubaLIF(tau_mem=10 * DT, tau_syn=2.5 * DT, r=10), 10, 0.985, 0.03, 0.02),
    ("float16", ALIF(tau_mem=20 * DT, tau_adapt=20 * DT, beta=0.2, r=20), 20, 0.99, 0.015, 0.006),
    ("bfloat16", ALIF(tau_mem=10 * DT, tau_adapt=10 * DT, beta=0.2, r=10), 10, 0.985, 0.04, 0.02),
]


@pytest.mark.parametrize("dtype,model,tau_steps,agree,count,v", CASES,
                         ids=[f"{c[0]}-{type(c[1]).__name__}-{c[2]}" for c in CASES])
def test_low_precision_agrees_with_float64(dtype, model, tau_steps, agree, count, v) -> None:
    r = agreement(net(model, tau_steps), dtype)
    assert r["agree"] >= agree, r
    assert r["count"] <= count, r
    assert r["v"] <= v, r


def test_float32_is_near_exact_reference() -> None:
    """The same harness on float32 gives (almost) identical spikes: the check is sensitive to precision."""
    r = agreement(net(LIF(tau_mem=20 * DT, r=20), 20), "float32")
    assert r["agree"] == 1.0 and r["v"] < 1e-5, r


def test_half_precision_module_holds_half_tensors() -> None:
    module = ntgraph.compile(net(LIF(tau_mem=0.02), 20), "torch", dt=DT, dtype="bfloat16")
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    out = module(torch.as_tensor(X[:5]))
    assert out["spikes"].dtype == torch.bfloat16 and out["v"].dtype == torch.bfloat16


def test_resolution_formula() -> None:
    """resolution = (eps/2) / leak; the largest tau/dt at the default tolerance is 2*tol/eps."""
    assert leak_resolution(torch.bfloat16, np.array([0.05]))[0] == pytest.approx(2.0**-8 / 0.05)
    assert max_tau_over_dt(torch.bfloat16) == pytest.approx(2 * DEFAULT_TOLERANCE * 2.0**7)
    assert max_tau_over_dt(torch.float16) == pytest.approx(2 * DEFAULT_TOLERANCE * 2.0**10)


@pytest.mark.parametrize("dtype,tau_steps", [("bfloat16", 50), ("float16", 400)])
def test_too_slow_time_constant_is_refused(dtype: str, tau_steps: int) -> None:
    g = net(LIF(tau_mem=0.02), 20)
    g.population("slow", LIF(tau_mem=tau_steps * DT), 3)
    g.dense("x", "slow")
    with pytest.raises(ValidationError) as info:
        ntgraph.compile(g, "torch", dt=DT, dtype=dtype)
    msg = str(info.value)
    for part in ("'slow'", "tau_mem", f"tau/dt = {tau_steps}", dtype, "expected tau/dt <=", "low_precision_tolerance"):
        assert part in msg, msg
    # the same graph passes in float32, and in the half dtype with a looser tolerance
    ntgraph.compile(g, "torch", dt=DT, dtype="float32")
    ntgraph.compile(g, "torch", dt=DT, dtype=dtype, low_precision_tolerance=1.0)


def test_exact_discretization_and_slow_adaptation_are_checked() -> None:
    g = net(ALIF(tau_mem=0.01, tau_adapt=0.7, beta=0.1), 10)  # Bellec et al.'s LSNN adaptation: 700 steps
    with pytest.raises(ValidationError, match=r"'h'.model.tau_adapt \(ALIF\): tau/dt = 700"):
        ntgraph.compile(g, "torch", dt=DT, discretization="exact", dtype="float16")


def test_if_has_no_leak_to_resolve() -> None:
    g = net(IF(r=1.0 / DT), 10)
    ntgraph.compile(g, "torch", dt=DT, dtype="bfloat16")


def test_float16_range_is_checked() -> None:
    g = net(LIF(tau_mem=0.02), 20)
    g.population("q", LIF(tau_mem=0.02), 2)
    g.dense("x", "q", weight=np.full((2, 100), 1e5))
    with pytest.raises(ValidationError, match=r"Dense 'x->q'.weight: value 100000 .* overflows float16 \(largest 65504\)"):
        ntgraph.compile(g, "torch", dt=DT, dtype="float16")
    ntgraph.compile(g, "torch", dt=DT, dtype="bfloat16")  # bfloat16 has float32's range

    tiny = net(LIF(tau_mem=0.02), 20)
    tiny.population("q", LIF(tau_mem=0.02), 2)
    tiny.dense("x", "q", weight=np.full((2, 100), 1e-9))
    with pytest.raises(ValidationError, match=r"'x->q'.weight: 200 non-zero weight\(s\) round to 0 in float16"):
        ntgraph.compile(tiny, "torch", dt=DT, dtype="float16")


def test_bad_tolerance_option() -> None:
    with pytest.raises(ValidationError, match="low_precision_tolerance: expected a number > 0, got -1"):
        ntgraph.compile(net(LIF(tau_mem=0.02), 20), "torch", dt=DT, dtype="float16", low_precision_tolerance=-1)


def test_training_in_half_precision_is_refused() -> None:
    from backends.torchsim.learning import CrossEntropyOverTime, Trainer

    module = ntgraph.compile(net(LIF(tau_mem=0.02), 20), "torch", dt=DT, dtype="bfloat16")
    with pytest.raises(ValidationError, match="learnable parameters in bfloat16; training needs float32"):
        Trainer(module, CrossEntropyOverTime(output="v"))
