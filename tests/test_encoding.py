"""Spike encoders (ntgraph.encoding): shapes, binary values, statistics, hand-computed traces,
and the LIF current encoder against an ntgraph graph simulated by the torch backend.

Tolerances: rate statistics use a 5-sigma binomial bound (stated in each test);
every deterministic comparison is exact.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ntgraph as ntg
from ntgraph.encoding import latency_encode, lif_current_encode, rate_encode
from ntgraph.errors import ValidationError

FAST = settings(max_examples=25, deadline=None)

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)
unit_floats = st.floats(0.0, 1.0, allow_nan=False, width=64)


def unit_arrays(shape_strategy=shapes):
    return shape_strategy.flatmap(lambda s: hnp.arrays(np.float64, s, elements=unit_floats))


# ----------------------------------------------------------------------------- rate coding
@FAST
@given(x=unit_arrays(), steps=st.integers(1, 20), seed=st.integers(0, 2**31), method=st.sampled_from(["bernoulli", "poisson"]))
def test_rate_shape_binary_and_reproducible(x, steps, seed, method):
    s = rate_encode(x, steps, max_rate_hz=200.0, dt=1e-3, rng=seed, method=method)
    assert s.shape == (steps, *x.shape)
    assert s.dtype == np.float32
    assert set(np.unique(s)) <= {0.0, 1.0}
    assert np.array_equal(s, rate_encode(x, steps, max_rate_hz=200.0, dt=1e-3, rng=seed, method=method))
    assert not s[:, x == 0].any()  # rate 0 never fires


@FAST
@given(p=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6), seed=st.integers(0, 2**31))
def test_rate_expectation_within_5_sigma(p, seed):
    """Mean spikes per step = x*max_rate*dt; tolerance 5*sqrt(p(1-p)/n) + 1/n over n = 4000 steps."""
    x = np.asarray(p)
    n = 4000
    s = rate_encode(x, n, max_rate_hz=500.0, dt=2e-3, rng=seed)  # max_rate*dt = 1: p = x
    mean = s.mean(axis=0)
    tol = 5.0 * np.sqrt(x * (1 - x) / n) + 1.0 / n
    assert np.all(np.abs(mean - x) <= tol)


def test_poisson_probability_is_one_minus_exp():
    """p = 1 - exp(-lambda*dt); 5-sigma over 20000 steps x 4 channels."""
    x = np.array([0.25, 0.5, 0.75, 1.0])
    n = 20000
    s = rate_encode(x, n, max_rate_hz=800.0, dt=1e-3, rng=3, method="poisson")
    p = 1.0 - np.exp(-x * 0.8)
    assert np.all(np.abs(s.mean(axis=0) - p) <= 5.0 * np.sqrt(p * (1 - p) / n))


def test_rate_errors_and_generator_stream():
    with pytest.raises(ValidationError, match=r"probability per step > 1"):
        rate_encode([0.5], 10, max_rate_hz=2000.0, dt=1e-3)
    rate_encode([0.5], 10, max_rate_hz=2000.0, dt=1e-3, method="poisson")  # fine: p = 1 - exp(-1)
    with pytest.raises(ValidationError, match=r"x: expected values in \[0, 1\], got 1.5 at flat index 1"):
        rate_encode([0.2, 1.5], 10, max_rate_hz=100.0, dt=1e-3)
    with pytest.raises(ValidationError, match="steps"):
        rate_encode([0.2], 0, max_rate_hz=100.0, dt=1e-3)
    with pytest.raises(ValidationError, match="method"):
        rate_encode([0.2], 3, max_rate_hz=100.0, dt=1e-3, method="gauss")
    rng = np.random.default_rng(0)
    a = rate_encode(np.full(50, 0.5), 20, max_rate_hz=1000.0, dt=1e-3, rng=rng)
    b = rate_encode(np.full(50, 0.5), 20, max_rate_hz=1000.0, dt=1e-3, rng=rng)
    assert not np.array_equal(a, b)  # a Generator is advanced, not reseeded


def test_rate_batch_is_time_major():
    x = np.random.default_rng(0).random((4, 7))  # [B, F]
    s = rate_encode(x, 30, max_rate_hz=100.0, dt=1e-3, rng=0)
    assert s.shape == (30, 4, 7)  # [T, B, F], what ntgraph.simulate takes


# ----------------------------------------------------------------------------- latency coding
@FAST
@given(x=unit_arrays(), steps=st.integers(1, 40), method=st.sampled_from(["log", "linear"]),
       threshold=st.floats(0.0, 0.9))
def test_latency_at_most_one_spike_and_silent_below_threshold(x, steps, method, threshold):
    s = latency_encode(x, steps, method=method, tau=5e-3, dt=1e-3, threshold=threshold)
    assert s.shape == (steps, *x.shape)
    assert set(np.unique(s)) <= {0.0, 1.0}
    counts = s.sum(axis=0)
    assert counts.max() <= 1
    assert not counts[x <= threshold].any()
    if method == "linear":
        assert np.all(counts[x > threshold] == 1)  # the linear code always fits the window


@FAST
@given(x=hnp.arrays(np.float64, st.integers(2, 12), elements=unit_floats), steps=st.integers(2, 60),
       method=st.sampled_from(["log", "linear"]))
def test_latency_is_monotone(x, steps, method):
    """Larger input -> earlier (or equal) spike; a silent channel counts as latency ``steps`` (after the window)."""
    s = latency_encode(x, steps, method=method, tau=10e-3, dt=1e-3, threshold=0.05)
    first = np.where(s.any(axis=0), s.argmax(axis=0), steps)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(first[order]) <= 0)


def test_latency_hand_values():
    # log: t = tau*ln(x/(x - theta)); x=0.5, theta=0.25, tau=10 ms -> 6.93 ms -> bin 6 at dt = 1 ms
    s = latency_encode([0.5, 1.0, 0.25, 0.26], 50, method="log", tau=10e-3, dt=1e-3, threshold=0.25)
    t1 = 10e-3 * math.log(1.0 / 0.75)  # 2.88 ms -> bin 2
    t3 = 10e-3 * math.log(0.26 / 0.01)  # 32.6 ms -> bin 32
    assert [int(np.argmax(s[:, i])) for i in (0, 1, 3)] == [6, int(t1 / 1e-3), int(t3 / 1e-3)] == [6, 2, 32]
    assert s[:, 2].sum() == 0  # x == threshold: silent
    assert latency_encode([0.26], 32, method="log", tau=10e-3, dt=1e-3, threshold=0.25).sum() == 0  # past the window
    # linear: k = round((1 - x)/(1 - theta)*(steps - 1))
    s = latency_encode([1.0, 0.0, 0.5, 1e-9], 11, method="linear", threshold=0.0)
    assert [int(np.argmax(s[:, i])) for i in (0, 2, 3)] == [0, 5, 10]
    assert s[:, 1].sum() == 0


def test_latency_errors():
    with pytest.raises(ValidationError, match="needs tau and dt"):
        latency_encode([0.5], 10)
    with pytest.raises(ValidationError, match="threshold"):
        latency_encode([0.5], 10, method="linear", threshold=1.0)
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        latency_encode([-0.1], 10, method="linear")


# ----------------------------------------------------------------------------- LIF current encoder
def test_lif_hand_trace():
    # dt = 1 ms, tau = 2 ms: a = 0.5; I = 1.5; v <- 0.5 v + 0.75
    z = lif_current_encode([1.5], 6, dt=1e-3, tau_mem=2e-3)
    assert z[:, 0].tolist() == [0, 1, 0, 1, 0, 1]  # 0.75, 1.125 -> reset 0, ...
    z, v = lif_current_encode([1.5], 4, dt=1e-3, tau_mem=2e-3, reset="subtract", return_voltage=True)
    # 0.75; 1.125 -> 0.125; 0.8125; 1.15625 -> 0.15625
    assert z[:, 0].tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(v[:, 0], [0.75, 0.125, 0.8125, 0.15625], rtol=0, atol=1e-15)
    assert lif_current_encode([1.0], 50, dt=1e-3, tau_mem=2e-3).sum() == 0  # v -> 1 from below, never > 1


@FAST
@given(x=hnp.arrays(np.float64, st.integers(2, 8), elements=st.floats(-2.0, 5.0)), steps=st.integers(1, 60),
       reset=st.sampled_from(["zero", "subtract"]))
def test_lif_binary_and_monotone_in_current(x, steps, reset):
    """A larger constant current never gives fewer spikes (v_reset = v_leak = 0)."""
    z = lif_current_encode(x, steps, dt=1e-3, tau_mem=10e-3, v_th=1.0, gain=2.0, reset=reset)
    assert z.shape == (steps, x.size) and set(np.unique(z)) <= {0.0, 1.0}
    counts = z.sum(axis=0)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(counts[order]) >= 0)
    assert not counts[2.0 * x <= 1.0].any()  # subthreshold drive never fires


def test_lif_errors():
    with pytest.raises(ValidationError, match="dt"):
        lif_current_encode([1.0], 5, dt=2e-3, tau_mem=1e-3)
    with pytest.raises(ValidationError, match="reset"):
        lif_current_encode([1.0], 5, dt=1e-3, tau_mem=1e-2, reset="none")
    with pytest.raises(ValidationError, match="does not broadcast"):
        lif_current_encode(np.ones((2, 3)), 5, dt=1e-3, tau_mem=np.full(4, 1e-2))


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("discretization", ["euler", "exact"])
def test_lif_encoder_matches_ntgraph_graph(reset, discretization):
    """Input -> OneToOne(gain) -> LIF simulated by ntgraph (torch, float64) spikes exactly like the encoder."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    B, F, T, dt = 3, 6, 80, 1e-3
    tau = rng.uniform(4e-3, 30e-3, F)
    v_th = rng.uniform(0.5, 1.5, F)
    v_reset = rng.uniform(-0.2, 0.1, F)
    v_leak = rng.uniform(-0.1, 0.1, F)
    gain = rng.uniform(0.5, 3.0, F)
    x = rng.uniform(0.0, 1.2, (B, F))

    g = ntg.Graph("encoder")
    g.input("x", F)
    g.population("enc", ntg.LIF(tau_mem=tau, v_th=v_th, v_leak=v_leak, v_reset=v_reset, reset=reset), F)
    g.one_to_one("x", "enc", weight=gain)
    g.output("spikes", "enc")
    out = ntg.simulate(g, np.broadcast_to(x, (T, B, F)).copy(), dt=dt, discretization=discretization,
                       record=["enc.v"], dtype=torch.float64)

    z, v = lif_current_encode(x, T, dt=dt, tau_mem=tau, v_th=v_th, gain=gain, v_leak=v_leak, v_reset=v_reset,
                              reset=reset, discretization=discretization, return_voltage=True)
    assert z.shape == out["spikes"].shape == (T, B, F)
    assert z.sum() > 20  # the comparison covers many spikes
    assert np.array_equal(z, out["spikes"])
    np.testing.assert_allclose(v, out["enc.v"], rtol=0, atol=1e-12)
