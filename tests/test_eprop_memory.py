"""e-prop's memory does not grow with the number of steps (issue 10), and chunking leaves its gradients unchanged.

Two probes, each checked against a control that must grow:

* ``torch.autograd.graph.saved_tensors_hooks`` tracks the peak bytes autograd
  keeps for backward passes: the same at two ``T`` for e-prop (only the per-step
  learning signal's tiny graph), growing with ``T`` for BPTT;
* a ``TorchDispatchMode`` records the largest tensor any operation creates:
  for e-prop it is the same at ``T = 32`` and ``T = 128`` (with ``chunk=16``),
  while simulating all steps in one call (``chunk >= T``) makes it grow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import ntgraph as ntg
from backends.torchsim.learning.algorithms import BPTT
from backends.torchsim.learning.eprop import EProp
from objectives import PerStepMSE


def _graph():
    g = ntg.Graph("eprop-mem", seed=2)
    g.input("x", 6)
    g.population("h", ntg.LIF(tau_mem=np.linspace(5e-3, 12e-3, 10), v_th=0.5), 10)
    g.dense("x", "h", scale=2.0, bias=np.full(10, 0.1))
    g.dense("x", "h", scale=1.0, delay=2, name="x->h late")  # needs the input history across chunks
    g.dense("h", "h", scale=0.4, no_self=True)
    g.population("o", ntg.LI(tau_mem=8e-3), 3)
    g.dense("h", "o", delay=1)
    g.output("y", "o")
    return g


def _data(steps: int, batch: int = 2):
    gen = torch.Generator().manual_seed(steps)
    x = (torch.rand(steps, batch, 6, generator=gen) < 0.3).double()
    return x, torch.randn(steps, batch, 3, generator=gen, dtype=torch.float64)


def _model(batch_first: bool = False):
    return ntg.compile(_graph(), "torch", dt=1e-3, dtype=torch.float64, batch_first=batch_first)


class _Largest(TorchDispatchMode):
    """Largest number of elements of any tensor an aten op returns (``aten.cat`` of the outputs excepted)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is not torch.ops.aten.cat.default:
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.numel())
        return out


class _Held:
    """A tensor saved for backward; counts itself out when autograd frees it."""

    def __init__(self, t: torch.Tensor, tally: dict) -> None:
        self.t, self.tally, self.nbytes = t, tally, t.numel() * t.element_size()
        tally["live"] += self.nbytes
        tally["peak"] = max(tally["peak"], tally["live"])

    def __del__(self) -> None:
        self.tally["live"] -= self.nbytes


def _peak_saved_bytes(run) -> int:
    """Peak bytes of tensors autograd holds for backward passes during ``run()`` (saved_tensors_hooks)."""
    tally = {"live": 0, "peak": 0}
    with torch.autograd.graph.saved_tensors_hooks(lambda t: _Held(t, tally), lambda h: h.t):
        run()
    return tally["peak"]


def test_eprop_saved_tensors_flat_in_T_while_bptt_grows():
    eprop = []
    for steps in (16, 64):
        x, target = _data(steps)
        model = _model()
        eprop.append(_peak_saved_bytes(lambda: EProp(chunk=8).compute_gradients(model, x, target, PerStepMSE())))
    assert eprop[0] == eprop[1]
    small = _peak_saved_bytes(lambda: BPTT().train_step(_model(), *_data(16), PerStepMSE(), None))
    large = _peak_saved_bytes(lambda: BPTT().train_step(_model(), *_data(64), PerStepMSE(), None))
    assert large > 3 * small  # control: the probe sees memory that grows with T
    assert eprop[1] < large / 10


def _largest_tensor(steps: int, chunk: int) -> int:
    x, target = _data(steps)
    model = _model()
    algo = EProp(chunk=chunk)
    with _Largest() as probe:
        algo.compute_gradients(model, x, target, PerStepMSE())
    return probe.largest


def test_eprop_largest_tensor_is_flat_in_T():
    assert _largest_tensor(32, 16) == _largest_tensor(128, 16)
    assert _largest_tensor(128, 128) > _largest_tensor(32, 32)  # control: one call over all steps grows


@pytest.mark.parametrize("batch_first", [False, True])
def test_eprop_chunking_does_not_change_gradients(batch_first):
    x, target = _data(40, batch=3)
    grads, outs = [], []
    for chunk in (1000, 7):
        model = _model(batch_first)
        xi = x.transpose(0, 1) if batch_first else x
        ti = target.transpose(0, 1) if batch_first else target
        res = EProp(chunk=chunk).compute_gradients(model, xi, ti, PerStepMSE())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        outs.append(res)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert grads[0][name].abs().max() > 0, name
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-12, rtol=0, msg=name)
    y0, y1 = outs[0].outputs["y"], outs[1].outputs["y"]
    assert y0.shape == y1.shape == ((3, 40, 3) if batch_first else (40, 3, 3))
    torch.testing.assert_close(y1, y0, atol=1e-12, rtol=0)
    assert outs[0].loss == pytest.approx(outs[1].loss, abs=1e-12)
