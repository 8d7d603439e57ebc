"""The torch backend's fast paths against its plain autograd path: identical forward values, equal gradients.

The fused LIF step (backends/torchsim/fused.py) runs when the reset is detached
and no LIF parameter is learnable; setting ``capture`` on a population forces
the plain step, whose gradient autograd derives from the same arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ntgraph as ntg
from backends.torchsim import ArcTan, FastSigmoid, Triangle


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
