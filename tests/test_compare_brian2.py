"""The Brian2 backend reproduces ntgraph's semantics: hand-computed traces and float64 agreement with torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import ntgraph as ntg
from ntgraph.errors import UnsupportedNodeError, ValidationError
from ntgraph._data import frozen_array
from ntgraph.ir import Projection

pytest.importorskip("brian2", reason="brian2 is not installed (pip install 'ntgraph[brian2]')")
pytest.importorskip("torch", reason="the reference is the torch backend")

#: voltages and currents: the two simulators accumulate a projection's weighted sum in different orders
ATOL = 1e-12


def worked_example() -> ntg.Graph:
    """The network of docs/semantics.md ("Worked example")."""
    g = ntg.Graph("worked")
    g.input("x", 1)
    g.population("A", ntg.LIF(tau_mem=2e-3, v_th=1.0, reset="zero"), 1)
    g.dense("x", "A", weight=[[1.5]])
    g.dense("A", "A", weight=[[-0.5]])
    g.population("B", ntg.LI(tau_mem=2e-3), 1)
    g.dense("A", "B", weight=[[2.0]])
    g.output("out", "B")
    return g


@pytest.mark.parametrize("timing, v_a, v_b", [
    ("sync", [0.75, 0.0, 0.5, 0.25, 0.875], [0, 1.0, 0.5, 0.25, 0.125]),
    ("pipelined", [0, 0.75, 0, 0.75, 0.125], [0, 0, 0, 1.0, 0.5]),
])
def test_worked_example_by_hand(timing, v_a, v_b):
    x = np.array([1, 1, 1, 0, 1], dtype=float).reshape(5, 1, 1)
    r = ntg.simulate(worked_example(), x, target="brian2", dt=1e-3, timing=timing, record=["A.v", "A.spikes", "B.v"])
    np.testing.assert_allclose(r["A.v"][:, 0, 0], v_a, rtol=0, atol=1e-15)
    np.testing.assert_allclose(r["B.v"][:, 0, 0], v_b, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(r["out"], r["B.v"])


def every_model(reset: str) -> ntg.Graph:
    """Every model, Dense (bias, recurrent, delays), Sparse and OneToOne projections, all populations active."""
    g = ntg.Graph("brian2-models", seed=1)
    g.input("x", 3)
    g.population("h", ntg.LIF(tau_mem=4e-3, v_th=0.5, v_leak=0.05, v_reset=-0.1 if reset == "zero" else 0.0,
                              r=1.5, reset=reset), 6)
    g.dense("x", "h", scale=1.0, bias=np.linspace(-0.1, 0.2, 6))
    g.dense("h", "h", scale=0.3)                                   # recurrent: delay 1
    g.population("c", ntg.CubaLIF(tau_mem=5e-3, tau_syn=3e-3, v_th=0.2, reset=reset), 4)
    g.dense("h", "c", init="uniform", scale=1.0, delay=2)
    g.population("a", ntg.ALIF(tau_mem=4e-3, tau_adapt=20e-3, beta=0.5, v_th=0.2, reset=reset), 3)
    g.dense("c", "a", init="uniform", scale=2.0)
    g.sparse("h", "a", p=0.5, scale=1.0)
    g.population("i", ntg.IF(r=1e3, v_th=0.5, reset=reset), 3)
    g.one_to_one("a", "i", weight=[0.9, 0.6, 0.3])
    g.population("o", ntg.LI(tau_mem=4e-3), 2)
    g.dense("h", "o", scale=1.0)
    g.dense("i", "o", scale=1.0, delay=1)
    g.population("w", ntg.WilsonCowan(tau=5e-3, mu=0.2, r=0.5), 2)
    g.dense("o", "w", scale=1.0)
    g.population("rr", ntg.RateUnit(tau=5e-3, activation="tanh"), 2)
    g.dense("w", "rr", scale=1.0)
    g.population("rs", ntg.RateUnit(activation="sigmoid", bias=0.1), 2)
    g.dense("rr", "rs", scale=1.0)
    g.output("y", "o")
    g.output("yr", "rs")
    g.output("ys", "h")
    return g


RECORD = ["h.v", "h.spikes", "c.i", "c.v", "c.spikes", "a.a", "a.v", "a.spikes", "i.v", "i.spikes", "o.v",
          "w.rate", "rr.rate"]


def assert_agree(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        if key.endswith("spikes") or key == "ys":
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("reset, discretization, timing", [
    ("zero", "euler", "sync"),
    ("subtract", "exact", "pipelined"),
    pytest.param("subtract", "euler", "sync", marks=pytest.mark.slow),
    pytest.param("zero", "exact", "pipelined", marks=pytest.mark.slow),
])
def test_every_model_agrees_with_torch_in_float64(reset, discretization, timing):
    g = every_model(reset)
    x = np.random.default_rng(0).random((40, 2, 3)) * 2
    opts = dict(dt=1e-3, discretization=discretization, timing=timing, record=RECORD)
    want = ntg.simulate(g, x, target="torch", dtype="float64", **opts)
    got = ntg.simulate(g, x, target="brian2", **opts)
    for key in ("h.spikes", "c.spikes", "a.spikes", "i.spikes"):
        assert want[key].sum() > 0, f"{key}: the test network should spike"
    assert_agree(got, want)


def test_batch_elements_are_independent():
    g = every_model("zero")
    x = np.random.default_rng(1).random((15, 2, 3)) * 2
    whole = ntg.simulate(g, x, target="brian2", dt=1e-3, record=["c.v"])
    for b in range(2):
        one = ntg.simulate(g, x[:, b:b + 1], target="brian2", dt=1e-3, record=["c.v"])
        for key in one:
            np.testing.assert_array_equal(one[key][:, 0], whole[key][:, b], err_msg=key)


@dataclass(frozen=True, eq=False, kw_only=True)
class Gap(Projection):
    """A projection type the backend has never heard of (electrical coupling, say)."""

    weight: Any

    def __post_init__(self) -> None:
        self._set("weight", frozen_array(self.weight))
        super().__post_init__()

    n_post = property(lambda self: int(self.weight.shape[0]))
    n_pre = property(lambda self: int(self.weight.shape[0]))

    def synapse_index(self):
        k = np.arange(self.weight.shape[0])
        return k, k


def test_unsupported_nodes_and_options_are_refused():
    g = ntg.Graph("odd")
    g.input("x", 2)
    g.population("h", ntg.LIF(tau_mem=5e-3), 2)
    g.add("x->h", Gap(weight=np.ones(2)), source="x", target="h")
    g.output("y", "h")
    x = np.zeros((3, 1, 2))
    with pytest.raises(UnsupportedNodeError, match="'x->h'.*Gap"):
        ntg.simulate(g, x, target="brian2", dt=1e-3)
    with pytest.raises(ValidationError, match="unknown option"):
        ntg.simulate(worked_example(), np.zeros((2, 1, 1)), target="brian2", dt=1e-3, dtype="float32")
    with pytest.raises(ValidationError, match="no variable 'i'"):
        ntg.simulate(worked_example(), np.zeros((2, 1, 1)), target="brian2", dt=1e-3, record=["A.i"])
