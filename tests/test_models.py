"""Hand-computed traces of every neuron model, for the torch backend and the numpy reference.

Each test builds a tiny graph (Input -> OneToOne/Dense -> population -> Output),
feeds a short hand-chosen input, and compares the result with values worked
out here by hand from the model docstrings (``ntgraph.models``).  The step is
``dt = 1 ms`` and most time constants are ``2 ms``, so euler gives ``a = 0.5``
and exact ``a = exp(-0.5)`` (written ``E`` below): the numbers can be checked
with pencil and paper.  Every test runs twice: on the torch backend in float64
and on ``tests/reference_sim.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ntgraph as ntg
import reference_sim

DT = 1e-3
TAU = 2e-3            # euler: a = 1 - dt/tau = 0.5
E = math.exp(-0.5)    # exact: a = exp(-dt/tau) with tau = 2 ms
E4 = math.exp(-0.25)  # exact: a = exp(-dt/tau) with tau = 4 ms
ATOL = 1e-12


def S(z: float) -> float:
    """The logistic sigmoid."""
    return 1.0 / (1.0 + math.exp(-z))


@pytest.fixture(params=["torch", "reference"])
def backend(request) -> str:
    return request.param


def chain(model: ntg.NeuronModel, n: int, *, n_in: int | None = None) -> ntg.Graph:
    """Input ``x`` (n_in channels) -> weight 1 -> population ``p`` (n neurons) -> Output ``y``.

    With ``n_in == n`` (default) the projection is OneToOne(1); with ``n_in == 1``
    a Dense projection of ones feeds the same channel to every neuron.
    """
    n_in = n if n_in is None else n_in
    g = ntg.Graph("hand")
    g.input("x", n_in)
    g.population("p", model, n)
    if n_in == n:
        g.one_to_one("x", "p", weight=1.0)
    else:
        g.dense("x", "p", weight=np.ones((n, n_in)))
    g.output("y", "p")
    return g


def run(backend: str, g: ntg.Graph, x, disc: str = "euler", timing: str = "sync", dt: float = DT) -> dict:
    """Run ``g`` on the input ``x`` (``[T]`` or ``[T, F]``, batch 1); returns ``[T, n]`` arrays.

    Keys: every Output and every ``"pop.var"`` of every population.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    x = x[:, None, :]
    probes = [f"{pop}.{var}" for pop in g.populations for var in g[pop].model.recordable]
    if backend == "torch":
        m = ntg.compile(g, "torch", dt=dt, discretization=disc, timing=timing, dtype=torch.float64, record=probes)
        res = m(torch.from_numpy(x))
        out = {k: res[k].detach().numpy() for k in [*g.outputs, *probes]}
        assert all(v.dtype == np.float64 for v in out.values())
    else:
        out = reference_sim.simulate(g, {g.inputs[0]: x}, dt, disc, timing)
    return {k: v[:, 0, :] for k, v in out.items()}


def check(res: dict, key: str, *traces) -> None:
    """``res[key]`` equals the given per-neuron traces (one list over time per neuron)."""
    expected = np.stack([np.asarray(tr, dtype=np.float64) for tr in traces], axis=1)
    np.testing.assert_allclose(res[key], expected, rtol=0, atol=ATOL, err_msg=key)


# ----------------------------------------------------------------------------- LIF
def test_lif_euler_reset_zero(backend):
    # neuron 0: defaults (v_th 1, v_leak 0, r 1, v_reset 0);
    # neuron 1: v_leak 0.2, r 2, v_reset -0.5.
    model = ntg.LIF(tau_mem=TAU, v_th=1.0, v_leak=[0.0, 0.2], r=[1.0, 2.0], v_reset=[0.0, -0.5], reset="zero")
    x = [[2.0, 0.5], [2.0, 1.0], [1.5, 0.0], [1.5, 0.0], [0.0, 0.4]]
    res = run(backend, chain(model, 2), x, "euler")
    # v <- 0.5*v + 0.5*(v_leak + r*I)
    # neuron 0: t0 0.5*0 + 0.5*2 = 1.0 (== v_th: no spike); t1 0.5 + 1 = 1.5 spike -> 0;
    #           t2 0 + 0.75 = 0.75; t3 0.375 + 0.75 = 1.125 spike -> 0; t4 0.
    # neuron 1 (starts at v_leak 0.2): t0 0.1 + 0.5*(0.2 + 1) = 0.7; t1 0.35 + 0.5*(0.2 + 2) = 1.45 spike -> -0.5;
    #           t2 -0.25 + 0.1 = -0.15; t3 -0.075 + 0.1 = 0.025; t4 0.0125 + 0.5*(0.2 + 0.8) = 0.5125.
    check(res, "p.v", [1.0, 0.0, 0.75, 0.0, 0.0], [0.7, -0.5, -0.15, 0.025, 0.5125])
    check(res, "p.spikes", [0, 1, 0, 1, 0], [0, 1, 0, 0, 0])
    check(res, "y", [0, 1, 0, 1, 0], [0, 1, 0, 0, 0])


def test_lif_euler_reset_subtract(backend):
    model = ntg.LIF(tau_mem=TAU, v_th=1.0, reset="subtract")
    res = run(backend, chain(model, 1), [2.0, 2.0, 1.5, 1.5, 0.0], "euler")
    # t0 1.0 (== v_th: no spike); t1 0.5 + 1 = 1.5 spike -> 0.5; t2 0.25 + 0.75 = 1.0 (no spike);
    # t3 0.5 + 0.75 = 1.25 spike -> 0.25; t4 0.125.
    check(res, "p.v", [1.0, 0.5, 1.0, 0.25, 0.125])
    check(res, "p.spikes", [0, 1, 0, 1, 0])


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_lif_exact(backend, reset):
    model = ntg.LIF(tau_mem=TAU, v_th=1.0, reset=reset)
    res = run(backend, chain(model, 1), [2.0, 2.0, 1.5, 0.0], "exact")
    # v <- E*v + (1-E)*I, E = exp(-0.5)
    v0 = (1 - E) * 2                   # 0.787: no spike
    v1_pre = E * v0 + (1 - E) * 2      # 2*(1 - E^2) = 1.264: spike
    if reset == "zero":
        v1 = 0.0
        v2 = (1 - E) * 1.5             # 0.590
    else:
        v1 = v1_pre - 1.0              # 0.264
        v2 = E * v1 + (1 - E) * 1.5    # 0.750
    v3 = E * v2
    assert v1_pre == pytest.approx(2 * (1 - E * E))
    check(res, "p.v", [v0, v1, v2, v3])
    check(res, "p.spikes", [0, 1, 0, 0])


# ----------------------------------------------------------------------------- CubaLIF
def test_cubalif_euler_reset_zero(backend):
    # tau_syn = tau_mem = 2 ms: b = a = 0.5.  neuron 1: w_in 0.5, r 2, v_th 0.5.
    model = ntg.CubaLIF(tau_syn=TAU, tau_mem=TAU, w_in=[1.0, 0.5], r=[1.0, 2.0], v_th=[1.0, 0.5], reset="zero")
    res = run(backend, chain(model, 2, n_in=1), [4.0, 4.0, 0.0, 0.0, 0.0], "euler")
    # i <- 0.5*i + 0.5*w_in*I, then v <- 0.5*v + 0.5*r*i (new i)
    # neuron 0: i = 2, 3, 1.5, 0.75, 0.375
    #           v: t0 0.5*2 = 1.0 (== v_th: no spike); t1 0.5 + 1.5 = 2.0 spike -> 0;
    #              t2 0.75; t3 0.375 + 0.375 = 0.75; t4 0.375 + 0.1875 = 0.5625  (i is not reset)
    # neuron 1: i = 1, 1.5, 0.75, 0.375, 0.1875
    #           v: t0 0.5*2*1 = 1.0 spike -> 0; t1 0.5*2*1.5 = 1.5 spike -> 0; t2 0.75 spike -> 0;
    #              t3 0.375 (no); t4 0.1875 + 0.1875 = 0.375
    check(res, "p.i", [2, 3, 1.5, 0.75, 0.375], [1, 1.5, 0.75, 0.375, 0.1875])
    check(res, "p.v", [1.0, 0.0, 0.75, 0.75, 0.5625], [0, 0, 0, 0.375, 0.375])
    check(res, "p.spikes", [0, 1, 0, 0, 0], [1, 1, 1, 0, 0])
    check(res, "y", [0, 1, 0, 0, 0], [1, 1, 1, 0, 0])


def test_cubalif_euler_reset_subtract(backend):
    # tau_syn 2 ms (b = 0.5), tau_mem 4 ms (a = 0.75)
    model = ntg.CubaLIF(tau_syn=TAU, tau_mem=4e-3, reset="subtract")
    res = run(backend, chain(model, 1), [4.0, 4.0, 0.0, 0.0], "euler")
    # i = 2, 3, 1.5, 0.75
    # v: t0 0.25*2 = 0.5; t1 0.375 + 0.75 = 1.125 spike -> 0.125; t2 0.09375 + 0.375 = 0.46875;
    #    t3 0.3515625 + 0.1875 = 0.5390625
    check(res, "p.i", [2, 3, 1.5, 0.75])
    check(res, "p.v", [0.5, 0.125, 0.46875, 0.5390625])
    check(res, "p.spikes", [0, 1, 0, 0])


def test_cubalif_exact(backend):
    # b = exp(-1/2) = E (tau_syn 2 ms), a = exp(-1/4) = E4 (tau_mem 4 ms)
    model = ntg.CubaLIF(tau_syn=TAU, tau_mem=4e-3, reset="zero")
    res = run(backend, chain(model, 1), [6.0, 6.0, 0.0], "exact")
    i0 = (1 - E) * 6                       # 2.361
    v0 = (1 - E4) * i0                     # 0.522: no spike
    i1 = E * i0 + (1 - E) * 6              # 3.793
    v1_pre = E4 * v0 + (1 - E4) * i1       # 1.246: spike -> 0
    i2 = E * i1                            # 2.300
    v2 = (1 - E4) * i2                     # 0.509
    assert v1_pre > 1.0 and v0 < 1.0 and v2 < 1.0
    check(res, "p.i", [i0, i1, i2])
    check(res, "p.v", [v0, 0.0, v2])
    check(res, "p.spikes", [0, 1, 0])


# ----------------------------------------------------------------------------- ALIF
def test_alif_euler_reset_subtract(backend):
    # a_m = rho = 0.5, beta = 1, v_th = 1: threshold A = 1 + a (a of the previous step)
    model = ntg.ALIF(tau_mem=TAU, tau_adapt=TAU, beta=1.0, v_th=1.0, reset="subtract")
    res = run(backend, chain(model, 1), [3.0, 3.5, 3.0, 0.0, 3.0], "euler")
    # t0: v = 1.5, A = 1     -> spike, v = 0.5,           a = 0 + 1 = 1
    # t1: v = 0.25 + 1.75 = 2.0, A = 2 -> no spike (v == A; v > v_th but the threshold adapted), a = 0.5
    # t2: v = 1.0 + 1.5 = 2.5, A = 1.5 -> spike, v = 2.5 - 1.5 = 1.0, a = 0.25 + 1 = 1.25
    # t3: v = 0.5, A = 2.25  -> no,                        a = 0.625
    # t4: v = 0.25 + 1.5 = 1.75, A = 1.625 -> spike, v = 0.125, a = 0.3125 + 1 = 1.3125
    check(res, "p.v", [0.5, 2.0, 1.0, 0.5, 0.125])
    check(res, "p.a", [1.0, 0.5, 1.25, 0.625, 1.3125])
    check(res, "p.spikes", [1, 0, 1, 0, 1])


def test_alif_euler_reset_zero(backend):
    # neuron 1 has beta = 0: a plain LIF (its a still counts spikes)
    model = ntg.ALIF(tau_mem=TAU, tau_adapt=TAU, beta=[1.0, 0.0], v_th=1.0, v_reset=[0.0, -0.25], reset="zero")
    res = run(backend, chain(model, 2, n_in=1), [3.0, 3.0, 3.0, 0.0, 3.0], "euler")
    # neuron 0:
    # t0: v = 1.5 > 1 -> spike, v = 0, a = 1
    # t1: v = 1.5, A = 2 -> no, a = 0.5
    # t2: v = 0.75 + 1.5 = 2.25 > 1.5 -> spike, v = 0, a = 1.25
    # t3: v = 0, A = 2.25, a = 0.625
    # t4: v = 1.5, A = 1.625 -> no, a = 0.3125
    # neuron 1 (A = 1 always, v_reset -0.25; starts at v_leak = 0):
    # t0: 1.5 spike -> -0.25, a = 1; t1: -0.125 + 1.5 = 1.375 spike -> -0.25, a = 1.5;
    # t2: 1.375 spike -> -0.25, a = 1.75; t3: -0.125, a = 0.875; t4: -0.0625 + 1.5 = 1.4375 spike -> -0.25, a = 1.4375
    check(res, "p.v", [0, 1.5, 0, 0, 1.5], [-0.25, -0.25, -0.25, -0.125, -0.25])
    check(res, "p.a", [1, 0.5, 1.25, 0.625, 0.3125], [1, 1.5, 1.75, 0.875, 1.4375])
    check(res, "p.spikes", [1, 0, 1, 0, 0], [1, 1, 1, 0, 1])


def test_alif_exact(backend):
    # a_m = E (tau_mem 2 ms), rho = E4 (tau_adapt 4 ms), beta = 0.5, subtract
    model = ntg.ALIF(tau_mem=TAU, tau_adapt=4e-3, beta=0.5, v_th=1.0, reset="subtract")
    res = run(backend, chain(model, 1), [3.0, 3.0, 3.0], "exact")
    v0_pre = (1 - E) * 3                   # 1.180 > A = 1: spike
    v0, a0 = v0_pre - 1.0, 1.0
    v1 = E * v0 + (1 - E) * 3              # 1.290 < A = 1 + 0.5*1 = 1.5: no spike
    a1 = E4 * a0
    v2_pre = E * v1 + (1 - E) * 3          # 1.963 > A = 1 + 0.5*E4 = 1.389: spike
    A2 = 1 + 0.5 * a1
    v2, a2 = v2_pre - A2, E4 * a1 + 1
    assert v0_pre > 1 and v1 < 1.5 and v2_pre > A2
    check(res, "p.v", [v0, v1, v2])
    check(res, "p.a", [a0, a1, a2])
    check(res, "p.spikes", [1, 0, 1])


# ----------------------------------------------------------------------------- IF
@pytest.mark.parametrize("disc", ["euler", "exact"])
def test_if_reset_zero(backend, disc):
    # r = 1/dt, so v <- v + I.  neuron 1 has v_reset 0.25 (also its initial v).
    model = ntg.IF(r=1000.0, v_th=1.0, v_reset=[0.0, 0.25], reset="zero")
    res = run(backend, chain(model, 2, n_in=1), [0.5, 0.5, 0.5, 0.7, -0.3], disc)
    # neuron 0: 0.5, 1.0 (== v_th: no spike), 1.5 spike -> 0, 0.7, 0.4
    # neuron 1: 0.75, 1.25 spike -> 0.25, 0.75, 1.45 spike -> 0.25, -0.05
    check(res, "p.v", [0.5, 1.0, 0.0, 0.7, 0.4], [0.75, 0.25, 0.75, 0.25, -0.05])
    check(res, "p.spikes", [0, 0, 1, 0, 0], [0, 1, 0, 1, 0])


@pytest.mark.parametrize("disc", ["euler", "exact"])
def test_if_reset_subtract(backend, disc):
    # neuron 0: r = 1/dt (v <- v + I); neuron 1: r = 500 (v <- v + I/2)
    model = ntg.IF(r=[1000.0, 500.0], v_th=1.0, reset="subtract")
    res = run(backend, chain(model, 2, n_in=1), [0.5, 0.5, 0.5, 0.7, -0.3], disc)
    # neuron 0: 0.5, 1.0 (no), 1.5 spike -> 0.5, 1.2 spike -> 0.2, -0.1
    # neuron 1: 0.25, 0.5, 0.75, 1.1 spike -> 0.1, -0.05
    check(res, "p.v", [0.5, 1.0, 0.5, 0.2, -0.1], [0.25, 0.5, 0.75, 0.1, -0.05])
    check(res, "p.spikes", [0, 0, 1, 1, 0], [0, 0, 0, 1, 0])


# ----------------------------------------------------------------------------- LI
def test_li_euler(backend):
    # neuron 1: v_leak 0.5 (also its initial v), r 2
    model = ntg.LI(tau_mem=TAU, v_leak=[0.0, 0.5], r=[1.0, 2.0])
    res = run(backend, chain(model, 2, n_in=1), [1.0, 2.0, 0.0, -1.0], "euler")
    # neuron 0: 0.5, 0.25 + 1 = 1.25, 0.625, 0.3125 - 0.5 = -0.1875
    # neuron 1: 0.25 + 0.5*(0.5 + 2) = 1.5, 0.75 + 0.5*4.5 = 3.0, 1.5 + 0.25 = 1.75, 0.875 + 0.5*(0.5 - 2) = 0.125
    check(res, "p.v", [0.5, 1.25, 0.625, -0.1875], [1.5, 3.0, 1.75, 0.125])
    check(res, "y", [0.5, 1.25, 0.625, -0.1875], [1.5, 3.0, 1.75, 0.125])


def test_li_exact(backend):
    model = ntg.LI(tau_mem=TAU, v_leak=[0.0, 0.5], r=[1.0, 2.0])
    res = run(backend, chain(model, 2, n_in=1), [1.0, 2.0, 0.0, -1.0], "exact")
    a0 = (1 - E) * 1
    a1 = E * a0 + (1 - E) * 2
    a2 = E * a1
    a3 = E * a2 + (1 - E) * -1
    b0 = E * 0.5 + (1 - E) * (0.5 + 2 * 1)
    b1 = E * b0 + (1 - E) * (0.5 + 2 * 2)
    b2 = E * b1 + (1 - E) * 0.5
    b3 = E * b2 + (1 - E) * (0.5 - 2)
    check(res, "p.v", [a0, a1, a2, a3], [b0, b1, b2, b3])


# ----------------------------------------------------------------------------- Wilson-Cowan
# neuron 0: mu 0, r 0; neuron 1: mu 1, r 1.  dt/tau = 0.5.
WC_X = [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [2.0, 1.0 + math.log(3.0)]]  # s = 0.5, 0.5, 0.5, then S(2) and 0.75


def test_wilson_cowan_euler(backend):
    model = ntg.WilsonCowan(tau=TAU, mu=[0.0, 1.0], r=[0.0, 1.0])
    res = run(backend, chain(model, 2), WC_X, "euler")
    # x <- x + 0.5*(-x + (1 - r*x)*s)
    # neuron 0 (s = 0.5): 0.25, 0.25 + 0.5*(0.25) = 0.375, 0.375 + 0.5*0.125 = 0.4375, then s = S(2)
    # neuron 1 (s = 0.5): 0.25, 0.25 + 0.5*(-0.25 + 0.75*0.5) = 0.3125,
    #          0.3125 + 0.5*(-0.3125 + 0.6875*0.5) = 0.328125, then s = 0.75:
    #          0.328125 + 0.5*(-0.328125 + 0.671875*0.75) = 0.416015625
    check(res, "p.rate", [0.25, 0.375, 0.4375, 0.4375 + 0.5 * (-0.4375 + S(2.0))],
          [0.25, 0.3125, 0.328125, 0.416015625])


def test_wilson_cowan_exact(backend):
    model = ntg.WilsonCowan(tau=TAU, mu=[0.0, 1.0], r=[0.0, 1.0])
    res = run(backend, chain(model, 2), WC_X, "exact")
    # k = (1 + r*s)/tau, x_inf = s/(1 + r*s), x <- x_inf + (x - x_inf)*exp(-k*dt)
    # neuron 0: k*dt = 0.5, x_inf = s = 0.5 -> x = 0.5*(1 - E^(t+1)); then s = S(2)
    n0 = [0.5 * (1 - E), 0.5 * (1 - E**2), 0.5 * (1 - E**3)]
    n0.append(S(2.0) + (n0[2] - S(2.0)) * E)
    # neuron 1: s = 0.5, k*dt = 1.5*0.5 = 0.75, x_inf = 1/3 -> x = (1 - exp(-0.75*(t+1)))/3;
    #           then s = 0.75: k*dt = 1.75*0.5 = 0.875, x_inf = 0.75/1.75 = 3/7
    n1 = [(1 - math.exp(-0.75)) / 3, (1 - math.exp(-1.5)) / 3, (1 - math.exp(-2.25)) / 3]
    n1.append(3 / 7 + (n1[2] - 3 / 7) * math.exp(-0.875))
    check(res, "p.rate", n0, n1)


# ----------------------------------------------------------------------------- RateUnit
@pytest.mark.parametrize("disc", ["euler", "exact"])
def test_rate_unit_sigmoid_leaky(backend, disc):
    a = {"euler": 0.5, "exact": E}[disc]
    model = ntg.RateUnit(tau=TAU, bias=[0.0, -1.0], activation="sigmoid")
    res = run(backend, chain(model, 2), [[0.0, 1.0], [0.0, 1.0], [2.0, 3.0]], disc)
    # x <- a*x + (1-a)*sigmoid(I + bias);  f: neuron 0 = 0.5, 0.5, S(2); neuron 1 = 0.5, 0.5, S(2)
    r0 = (1 - a) * 0.5
    r1 = a * r0 + (1 - a) * 0.5
    r2 = a * r1 + (1 - a) * S(2.0)
    if disc == "euler":
        assert (r0, r1) == (0.25, 0.375)
    check(res, "p.rate", [r0, r1, r2], [r0, r1, r2])


@pytest.mark.parametrize("disc", ["euler", "exact"])
def test_rate_unit_tanh_leaky(backend, disc):
    a = {"euler": 0.5, "exact": E}[disc]
    model = ntg.RateUnit(tau=TAU, bias=[0.0, 0.5], activation="tanh")
    res = run(backend, chain(model, 2), [[1.0, 0.0], [1.0, -0.5], [-1.0, 0.0]], disc)
    t1, th = math.tanh(1.0), math.tanh(0.5)
    # neuron 0: f = tanh 1, tanh 1, -tanh 1; neuron 1: f = tanh 0.5, 0, tanh 0.5
    n0 = [(1 - a) * t1]
    n0.append(a * n0[0] + (1 - a) * t1)
    n0.append(a * n0[1] - (1 - a) * t1)
    n1 = [(1 - a) * th]
    n1.append(a * n1[0])
    n1.append(a * n1[1] + (1 - a) * th)
    if disc == "euler":  # 0.5 tanh1, 0.75 tanh1, -0.125 tanh1; 0.5 th, 0.25 th, 0.625 th
        np.testing.assert_allclose(n0, [0.5 * t1, 0.75 * t1, -0.125 * t1])
        np.testing.assert_allclose(n1, [0.5 * th, 0.25 * th, 0.625 * th])
    check(res, "p.rate", n0, n1)


@pytest.mark.parametrize("disc", ["euler", "exact"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_rate_unit_instantaneous(backend, disc, activation):
    # tau=None: x = f(I + bias), no memory, the same in both discretisations
    f = S if activation == "sigmoid" else math.tanh
    model = ntg.RateUnit(tau=None, bias=[0.0, 1.0], activation=activation)
    res = run(backend, chain(model, 2, n_in=1), [0.0, 2.0, -1.0], disc)
    check(res, "p.rate", [f(0.0), f(2.0), f(-1.0)], [f(1.0), f(3.0), f(0.0)])
    check(res, "y", [f(0.0), f(2.0), f(-1.0)], [f(1.0), f(3.0), f(0.0)])


# ----------------------------------------------------------------------------- projections, delays, timing
def worked_example() -> ntg.Graph:
    """The worked example of docs/semantics.md."""
    g = ntg.Graph("worked")
    g.input("x", 1)
    g.population("A", ntg.LIF(tau_mem=2e-3, v_th=1.0, reset="zero"), 1)
    g.dense("x", "A", weight=[[1.5]])
    g.dense("A", "A", weight=[[-0.5]])      # self-projection: delay 1
    g.population("B", ntg.LI(tau_mem=2e-3), 1)
    g.dense("A", "B", weight=[[2.0]])        # delay 0: same step
    g.output("out", "B")
    return g


def test_worked_example_sync(backend):
    g = worked_example()
    assert g["A->A"].delay == 1
    res = run(backend, g, [1, 1, 1, 0, 1], "euler", "sync")
    check(res, "A.v", [0.75, 0.0, 0.5, 0.25, 0.875])
    check(res, "A.spikes", [0, 1, 0, 0, 0])
    check(res, "out", [0.0, 1.0, 0.5, 0.25, 0.125])


def test_worked_example_pipelined(backend):
    res = run(backend, worked_example(), [1, 1, 1, 0, 1], "euler", "pipelined")
    # every hop one step later: I_A[t] = 1.5 x[t-1] - 0.5 z_A[t-2], I_B[t] = 2 z_A[t-1]
    # t0 I=0 v=0; t1 I=1.5 v=0.75; t2 I=1.5 v=1.125 spike -> 0; t3 I=1.5 v=0.75; t4 I=0-0.5 v=0.375-0.25=0.125
    check(res, "A.v", [0.0, 0.75, 0.0, 0.75, 0.125])
    check(res, "A.spikes", [0, 0, 1, 0, 0])
    check(res, "out", [0.0, 0.0, 0.0, 1.0, 0.5])


@pytest.mark.parametrize("timing", ["sync", "pipelined"])
def test_dense_bias_and_delay(backend, timing):
    g = ntg.Graph("bias")
    g.input("x", 1)
    g.population("p", ntg.LI(tau_mem=TAU), 1)
    g.dense("x", "p", weight=[[2.0]], bias=[0.5], delay=2)
    g.output("y", "p")
    res = run(backend, g, [1.0, 0.0, 0.0, 0.0, 0.0], "euler", timing)
    # I[t] = 2*x[t - d] + 0.5 (the bias also acts before the delayed input arrives)
    if timing == "sync":   # d = 2: I = 0.5, 0.5, 2.5, 0.5, 0.5
        expected = [0.25, 0.375, 1.4375, 0.96875, 0.734375]
    else:                  # d = 3: I = 0.5, 0.5, 0.5, 2.5, 0.5
        expected = [0.25, 0.375, 0.4375, 1.46875, 0.984375]
    check(res, "p.v", expected)


def test_sparse_duplicates_add(backend):
    g = ntg.Graph("sparse")
    g.input("x", 2)
    g.population("p", ntg.IF(r=1000.0, v_th=100.0), 2)
    # synapses x1 -> p0 (w 1) and again x1 -> p0 (w 0.5), x0 -> p1 (w -1)
    g.sparse("x", "p", post_index=[0, 0, 1], pre_index=[1, 1, 0], weight=[1.0, 0.5, -1.0])
    g.output("y", "p")
    res = run(backend, g, [[1.0, 2.0], [3.0, -1.0]], "euler")
    # I0 = 1.5*x1 = 3, -1.5; I1 = -x0 = -1, -3; v <- v + I
    check(res, "p.v", [3.0, 1.5], [-1.0, -4.0])


def test_input_to_output_passes_through(backend):
    g = chain(ntg.LI(tau_mem=TAU), 1)
    g.output("raw", "x")
    res = run(backend, g, [1.0, -2.0, 3.0], "euler")
    check(res, "raw", [1.0, -2.0, 3.0])


def test_populations_without_input(backend):
    # I = 0: a LIF resting above threshold fires by itself; a RateUnit relaxes towards f(bias)
    g = chain(ntg.LI(tau_mem=TAU), 1)
    g.population("z", ntg.LIF(tau_mem=TAU, v_leak=2.0, v_th=1.0, reset="zero"), 1)
    g.population("q", ntg.RateUnit(tau=TAU, bias=[0.0, 1.0]), 2)
    res = run(backend, g, [1.0, 1.0, 1.0], "euler")
    # z starts at v_leak 2: t0 0.5*2 + 0.5*2 = 2 spike -> 0; t1 0 + 1 = 1.0 (no); t2 0.5 + 1 = 1.5 spike -> 0
    check(res, "z.v", [0.0, 1.0, 0.0])
    check(res, "z.spikes", [1, 0, 1])
    # q: x <- 0.5*x + 0.5*sigmoid(bias)
    check(res, "q.rate", [0.25, 0.375, 0.4375], [0.5 * S(1.0), 0.75 * S(1.0), 0.875 * S(1.0)])
