"""Loihi 2 numerics without Lava: the LIF form, the quantisation pass, the lowering plan, resources.

All numpy; no Lava process is started.  The LIF form is checked by running
Lava's floating-point equations (copied here from ``lava/proc/lif/models.py``
and ``lava/proc/dense/models.py``) on the backend's plan and comparing with
the reference simulator (``tests/reference_sim.py``) under ``timing="pipelined"``.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import ntgraph as ntg
import reference_sim
from ntgraph.compiler import CompileOptions, prepare
from ntgraph.errors import ValidationError
from ntgraph.passes import Pipeline, default_pipeline
from ntgraph.passes.quantize import (LOIHI2, QUANTIZE_LOIHI, QuantizationReport, loihi_form, quantize,
                                     quantize_weights, split_bias)

DT = 1e-3


def prepared(g: ntg.Graph, timing: str = "pipelined", discretization: str = "euler") -> ntg.Graph:
    return prepare(g, CompileOptions(dt=DT, timing=timing, discretization=discretization))


def mixed_graph(seed: int = 0) -> ntg.Graph:
    rng = np.random.default_rng(seed)
    g = ntg.Graph("q", seed=seed)
    g.input("x", 6)
    g.population("h", ntg.LIF(tau_mem=4e-3, v_th=rng.uniform(0.6, 1.0, 8), v_leak=0.1,
                               v_reset=rng.uniform(-0.2, 0.0, 8), r=rng.uniform(0.8, 1.2, 8)), 8)
    g.dense("x", "h", scale=1.2, bias=rng.normal(0.1, 0.1, 8))
    g.dense("h", "h", scale=0.4, delay=2)
    g.population("c", ntg.CubaLIF(tau_syn=3e-3, tau_mem=5e-3, v_th=0.25, w_in=1.5), 5)
    g.dense("h", "c", scale=0.8, bias=np.full(5, 0.05))
    g.sparse("x", "c", p=0.5, scale=0.8)
    g.population("f", ntg.IF(r=rng.uniform(0.5, 1.5, 4) / DT, v_th=1.0, v_reset=0.1), 4)
    g.dense("c", "f", scale=1.0)
    g.population("o", ntg.LI(tau_mem=3e-3, v_leak=0.05), 3)
    g.dense("f", "o")
    g.output("y", "o")
    return g


# ----------------------------------------------------------------------------- weights and biases
def test_quantize_weights_mixed_sign_uses_even_mantissas_and_the_smallest_exponent():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 40, 200)
    w, e, mode, clipped = quantize_weights(m)
    assert mode == "mixed" and clipped == 0
    assert np.all(w % 2 == 0) and w.min() >= -256 and w.max() <= 254
    # the exponent is the smallest whose grid holds the largest weight
    assert np.max(np.abs(m)) / 2.0 ** e <= 256 and np.max(np.abs(m)) / 2.0 ** (e - 1) > 254
    assert np.max(np.abs(w * 2.0 ** e - m)) <= 2.0 ** e + 1e-9  # half of the step of 2


def test_quantize_weights_single_sign_and_limits():
    w, e, mode, _ = quantize_weights(np.array([0.0, 3.0, 1000.0]))
    assert mode == "excitatory" and w.max() <= 255 and e == 2 and list(w) == [0, 1, 250]
    w, e, mode, _ = quantize_weights(np.array([-0.1, -0.3]))
    assert mode == "inhibitory" and e == LOIHI2.weight_exp_min and list(w) == [-26, -77]
    w, e, mode, clipped = quantize_weights(np.array([1e9, -1.0]))
    assert e == LOIHI2.weight_exp_max and clipped == 1 and w[0] == 254
    w, e, mode, clipped = quantize_weights(np.zeros(3))
    assert not np.any(w) and e == 0


def test_split_bias_uses_the_13_bit_mantissa():
    b = np.array([0.0, 100.4, -4095.0, 4095.0, 5000.0, -70000.0, 4095 * 128 + 1e6])
    mant, exp, clipped = split_bias(b)
    assert np.all(mant <= 4095) and np.all(mant >= -4096) and np.all((exp >= 0) & (exp <= 7))
    got = mant * 2.0 ** exp
    assert np.all(np.abs(got[:-1] - b[:-1]) <= 2.0 ** exp[:-1] / 2 + 1e-9)
    assert list(exp[:4]) == [0, 0, 0, 0] and exp[4] == 1 and clipped == 1


# ----------------------------------------------------------------------------- the pass
def test_quantize_pass_annotates_a_copy_and_reports():
    g = prepared(mixed_graph())
    q = quantize(g, dt=DT)
    assert all("loihi" not in g.meta(n) for n in g) and "quantization" not in g.attrs
    report = q.attrs["quantization"]
    assert isinstance(report, QuantizationReport)
    text = str(report)
    for node in ("h", "c", "f", "o", "x->h", "h->h", "x->c", "f->o"):
        assert node in text
    d = report.to_dict()
    assert d["totals"]["weights"] == report.n_weights > 0
    h = q.meta("h")["loihi"]
    assert h.du == 4095 and h.dv == round(DT / 4e-3 * 4096) and h.vth == 2048
    # heterogeneous thresholds: each neuron's voltage scale puts its threshold at vth << 6
    thr = np.asarray(g["h"].model.v_th) - np.asarray(g["h"].model.v_reset)
    np.testing.assert_allclose(h.scale * thr, 2048 * 64)
    c = q.meta("c")["loihi"]
    assert c.du == round(DT / 3e-3 * 4096) - 1 and np.any(c.const_input)
    f = q.meta("f")["loihi"]
    assert f.dv == 0 and not np.any(f.v_init)
    o = q.meta("o")["loihi"]
    assert o.vth == LOIHI2.vth_max
    for proj in g.projections:
        s = q.meta(proj)["loihi"]
        lo, hi, step = LOIHI2.weight_range(s.sign_mode)
        assert s.weight.min() >= lo and s.weight.max() <= hi and np.all(s.weight % step == 0)
        assert LOIHI2.weight_exp_min <= s.weight_exp <= LOIHI2.weight_exp_max
        assert s.rel_rmse < 0.05 and s.clipped == 0


def test_headroom_trades_range_for_resolution():
    g = prepared(mixed_graph())
    coarse = quantize(g, dt=DT, v_headroom=1024)
    fine = quantize(g, dt=DT)
    assert coarse.meta("h")["loihi"].vth == 128 and fine.meta("h")["loihi"].vth == 2048
    assert coarse.meta("x->h")["loihi"].rel_rmse == pytest.approx(fine.meta("x->h")["loihi"].rel_rmse, rel=0.5)


def test_quantize_rejects_what_loihi_cannot_hold():
    g = ntg.Graph("e")
    g.input("x", 2)
    g.population("p", ntg.LIF(tau_mem=5e-3, v_th=0.0, v_reset=0.0), 2)
    g.dense("x", "p")
    g.output("y", "p")
    with pytest.raises(ValidationError, match=r"Population 'p'\.v_th: .*unsigned.*neuron 0 has v_th - v_reset = 0"):
        quantize(prepared(g), dt=DT)
    with pytest.raises(ValidationError, match="v_headroom"):
        quantize(prepared(mixed_graph()), dt=DT, v_headroom=0.5)
    with pytest.raises(ValidationError, match=r"input_scale for Input 'x'"):
        quantize(prepared(mixed_graph()), dt=DT, input_scale={"x": -1.0})


def test_quantize_is_a_printable_pipeline_pass():
    pipeline = Pipeline([*default_pipeline(), QUANTIZE_LOIHI])
    assert str(pipeline).splitlines()[-1].split()[:2] == [str(len(pipeline)) + ".", "quantize_loihi"]
    g = pipeline.run(mixed_graph(), dt=DT, discretization="euler", timing="pipelined")
    assert isinstance(g.attrs["quantization"], QuantizationReport)


# ----------------------------------------------------------------------------- the float form
def lava_float_equations(graph: ntg.Graph, xs: dict, discretization: str) -> dict:
    """Lava's floating-point LIF and Dense equations on the backend's plan (one step delay per connection)."""
    from backends.lavasim.lowering import plan_network

    plan = plan_network(graph, precision="float", dt=DT, discretization=discretization)
    T, B = next(iter(xs.values())).shape[:2]
    out = {k: np.asarray(v, dtype=np.float64) for k, v in xs.items()}
    u = {p: np.zeros((B, n.size)) for p, n in plan.neurons.items()}
    v = {p: np.tile(n.v_init, (B, 1)) for p, n in plan.neurons.items()}
    for p, n in plan.neurons.items():
        out[p] = np.zeros((T, B, n.size))
    rec = {p: {"v": np.zeros((T, B, n.size)), "u": np.zeros((T, B, n.size))} for p, n in plan.neurons.items()}
    for t in range(T):
        for p, n in plan.neurons.items():
            a_in = np.zeros((B, n.size)) + (n.const_input if n.const_input is not None else 0.0)
            for c in plan.connections.values():
                if c.target == p and t - c.delay >= 0:
                    a_in += out[c.source][t - c.delay] @ c.matrix().T
            u[p] = u[p] * (1 - n.du) + a_in
            v[p] = v[p] * (1 - n.dv) + u[p] + n.bias_mant
            s = v[p] > n.vth
            v[p] = np.where(s, 0.0, v[p])
            out[p][t] = s
            rec[p]["v"][t] = v[p] / n.v_scale + n.v_offset
            rec[p]["u"][t] = u[p] / n.i_scale if n.i_scale is not None else u[p]
    return {"out": out, "rec": rec, "plan": plan}


@pytest.mark.parametrize("discretization", ["euler", "exact"])
def test_lava_float_form_reproduces_the_reference(discretization):
    g = mixed_graph(2)
    rng = np.random.default_rng(1)
    xs = {"x": (rng.random((30, 2, 6)) < 0.5).astype(float)}
    ref = reference_sim.simulate(g, xs, DT, discretization, timing="pipelined")
    got = lava_float_equations(prepared(g, discretization=discretization), xs, discretization)
    for p in ("h", "c", "f"):
        assert ref[f"{p}.spikes"].sum() > 0, p
        np.testing.assert_array_equal(got["out"][p], ref[f"{p}.spikes"], err_msg=p)
    for p in ("h", "c", "f", "o"):
        np.testing.assert_allclose(got["rec"][p]["v"], ref[f"{p}.v"], rtol=0, atol=1e-10, err_msg=p)
    np.testing.assert_allclose(got["rec"]["c"]["u"], ref["c.i"], rtol=0, atol=1e-10)


def test_loihi_form_of_each_model():
    g = prepared(mixed_graph())
    h = loihi_form(g, "h", DT)
    a = 1 - DT / 4e-3
    assert h.du == 1.0 and h.dv == pytest.approx(1 - a)
    np.testing.assert_allclose(h.gain, (1 - a) * np.asarray(g["h"].model.r))
    k, vth = h.float_scale()
    np.testing.assert_allclose(k * h.threshold, vth)
    f = loihi_form(g, "f", DT)
    assert f.dv == 0.0 and np.all(f.v_init == 0)
    o = loihi_form(g, "o", DT)
    assert math.isinf(o.float_scale()[1])


# ----------------------------------------------------------------------------- resources
def test_loihi2_resources():
    from backends.lavasim.resources import LOIHI2_LIMITS, Loihi2Limits, loihi2_resources

    assert LOIHI2_LIMITS.neurons_per_core == 8192 and LOIHI2_LIMITS.synapses_per_core == 937_500
    g = ntg.Graph("big")
    g.input("x", 100)
    g.population("a", ntg.LIF(tau_mem=5e-3), 20000)
    g.sparse("x", "a", p=0.01)
    g.population("b", ntg.LIF(tau_mem=5e-3), 100)
    g.dense("a", "b", init="zeros")
    g.output("y", "b")
    r = loihi2_resources(g)
    assert r.populations["a"].cores == 3 and r.populations["a"].limited_by == "neurons"
    assert r.populations["a"].synapses == r.populations["a"].stored_weights == g["x->a"].n_synapses
    assert r.populations["b"].stored_weights == 2_000_000 and r.populations["b"].synapses == 0
    assert r.populations["b"].cores == 3 and r.populations["b"].limited_by == "synapses"
    assert r.cores == 6 and r.chips == 1 and "synapses" in str(r)
    small = loihi2_resources(g, Loihi2Limits(neurons_per_core=1024, cores_per_chip=16))
    assert small.populations["a"].cores == 20 and small.chips == 2 and small.to_dict()["neuro_cores"] == 23


def test_importing_the_backend_does_not_import_lava():
    code = "import sys, backends.lavasim, ntgraph; assert 'lava' not in sys.modules, 'lava imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
