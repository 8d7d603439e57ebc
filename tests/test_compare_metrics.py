"""The comparison metrics against values computed by hand (ntgraph.compare.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntgraph.compare.metrics import (accuracy, first_divergence, max_abs_error, readout_prediction, spike_agreement,
                                     spike_count_correlation, van_rossum_distance)
from ntgraph.errors import ShapeError, ValidationError


def train(steps: int, *spike_steps: int) -> np.ndarray:
    """One spike train ``[T]`` with spikes at ``spike_steps``."""
    s = np.zeros(steps)
    s[list(spike_steps)] = 1.0
    return s


# ----------------------------------------------------------------------------- van Rossum
def test_van_rossum_one_unmatched_spike_is_one_over_sqrt2():
    # D^2 = (1/tau) int_0^inf exp(-2t/tau) dt = 1/2, whatever dt, tau and where the spike is
    for steps, at in ((1, 0), (50, 0), (50, 49), (50, 17)):
        d = van_rossum_distance(train(steps, at), train(steps), dt=1e-3, tau=5e-3)
        assert d == pytest.approx(1 / math.sqrt(2), abs=1e-15)


@pytest.mark.parametrize("shift", [1, 3, 10])
def test_van_rossum_shifted_spike_matches_closed_form(shift):
    # f = e^{-t/tau} H(t), g = e^{-(t-D)/tau} H(t-D): D^2 = 1 - e^{-D/tau} (tails included)
    dt, tau = 1e-3, 4e-3
    d = van_rossum_distance(train(20, 2), train(20, 2 + shift), dt=dt, tau=tau)
    assert d == pytest.approx(math.sqrt(1 - math.exp(-shift * dt / tau)), abs=1e-14)


def test_van_rossum_matches_numerical_integral_of_the_definition():
    # an independent check: integrate (f - g)^2 / tau on a fine grid, tail to many tau
    dt, tau = 1e-3, 3e-3
    a, b = train(12, 0, 4, 5, 9), train(12, 1, 4, 11)
    t = np.linspace(0, 12 * dt + 20 * tau, 400001)
    def filt(s):
        return sum(np.where(t >= k * dt, np.exp(-(t - k * dt) / tau), 0.0) for k in np.nonzero(s)[0])
    diff2 = (filt(a) - filt(b)) ** 2
    integral = np.sum((diff2[1:] + diff2[:-1]) / 2 * np.diff(t)) / tau
    assert van_rossum_distance(a, b, dt=dt, tau=tau) == pytest.approx(math.sqrt(integral), rel=1e-5)


def test_van_rossum_is_zero_for_identical_trains_and_symmetric():
    rng = np.random.default_rng(0)
    a = (rng.random((30, 2, 5)) < 0.2).astype(float)
    b = (rng.random((30, 2, 5)) < 0.2).astype(float)
    assert np.all(van_rossum_distance(a, a, dt=1e-3, tau=1e-2) == 0)
    d = van_rossum_distance(a, b, dt=1e-3, tau=1e-2)
    assert d.shape == (2, 5)
    np.testing.assert_array_equal(d, van_rossum_distance(b, a, dt=1e-3, tau=1e-2))


def test_van_rossum_rejects_bad_time_constants():
    with pytest.raises(ValidationError, match="tau"):
        van_rossum_distance(train(3), train(3), dt=1e-3, tau=0.0)


# ----------------------------------------------------------------------------- agreement, correlation
def test_spike_agreement_counts_identical_entries():
    ref = np.array([[[1, 0, 0, 1]], [[0, 0, 1, 0]]], dtype=float)   # [T=2, B=1, n=4]
    sim = np.array([[[1, 1, 0, 1]], [[0, 0, 0, 0]]], dtype=float)
    assert spike_agreement(ref, sim) == 6 / 8
    assert spike_agreement(ref, ref) == 1.0
    with pytest.raises(ShapeError):
        spike_agreement(ref, sim[:1])


def test_spike_count_correlation_by_hand():
    ref = np.zeros((4, 1, 3))
    sim = np.zeros((4, 1, 3))
    ref[:1, 0, 0] = 1; ref[:2, 0, 1] = 1; ref[:3, 0, 2] = 1    # counts 1, 2, 3
    sim[:1, 0, 0] = 1; sim[:2, 0, 1] = 1; sim[:4, 0, 2] = 1    # counts 1, 2, 4
    # Pearson r of (1,2,3) and (1,2,4): deviations (-1,0,1) and (-4/3,-1/3,5/3),
    # cov = (4/3 + 0 + 5/3)/3 = 1, var_x = 2/3, var_y = (16 + 1 + 25)/27 = 14/9
    expected = 1.0 / (math.sqrt(2 / 3) * math.sqrt(14 / 9))
    assert spike_count_correlation(ref, sim) == pytest.approx(expected, abs=1e-15)
    assert spike_count_correlation(ref, ref) == 1.0
    silent = np.zeros_like(ref)
    assert spike_count_correlation(silent, silent) == 1.0       # identical, although r is undefined
    assert math.isnan(spike_count_correlation(silent, sim))     # one side constant: undefined


# ----------------------------------------------------------------------------- first divergence, errors
def test_first_divergence_finds_the_earliest_step_across_keys():
    t, b, n = 6, 2, 3
    ref = {"a.spikes": np.zeros((t, b, n)), "r.v": np.zeros((t, b, n))}
    sim = {k: v.copy() for k, v in ref.items()}
    sim["a.spikes"][4, 1, 2] = 1.0
    sim["r.v"][3, 0, 1] = 5e-7                      # within atol 1e-6: not a divergence
    sim["r.v"][5, 1, 0] = 1.0
    d = first_divergence(ref, sim, 1e-3, spike_keys=["a.spikes"], analog_keys=["r.v"], atol=1e-6, rtol=0.0)
    assert (d.step, d.key, d.batch, d.neuron, d.reference, d.value) == (4, "a.spikes", 1, 2, 0.0, 1.0)
    assert d.time == pytest.approx(4e-3)
    sim["r.v"][2, 1, 1] = 2e-6                      # beyond the tolerance, earlier
    d = first_divergence(ref, sim, 1e-3, spike_keys=["a.spikes"], analog_keys=["r.v"], atol=1e-6, rtol=0.0)
    assert (d.step, d.key, d.batch, d.neuron) == (2, "r.v", 1, 1)
    assert first_divergence(ref, ref, 1e-3, spike_keys=["a.spikes"], analog_keys=["r.v"]) is None
    sim["r.v"][0, 0, 0] = np.nan                    # NaN is always a divergence
    assert first_divergence(ref, sim, 1e-3, spike_keys=[], analog_keys=["r.v"]).step == 0


def test_max_abs_error():
    ref = {"a.v": np.zeros((2, 1, 2)), "b.v": np.ones((2, 1, 1))}
    sim = {"a.v": np.array([[[0.1, -0.3]], [[0.0, 0.2]]]), "b.v": np.ones((2, 1, 1))}
    assert max_abs_error(ref, sim, ["a.v", "b.v"]) == pytest.approx(0.3)
    assert max_abs_error(ref, sim, []) is None
    sim["b.v"][0, 0, 0] = np.inf
    assert max_abs_error(ref, sim, ["b.v"]) == math.inf


# ----------------------------------------------------------------------------- accuracy
def test_accuracy_sums_spikes_and_takes_the_maximum_of_analog_readouts():
    y = np.zeros((3, 2, 3))                         # [T, B, classes]
    y[:, 0, 1] = [1, 1, 0]                          # sample 0: class 1 spikes twice
    y[:, 0, 2] = [0, 0, 1]
    y[:, 1, 0] = [0, 1, 0]                          # sample 1: class 0 once, class 2 once -> tie -> 0
    y[:, 1, 2] = [1, 0, 0]
    np.testing.assert_array_equal(readout_prediction(y, spiking=True), [1, 0])
    assert accuracy(y, np.array([1, 2]), spiking=True) == 0.5
    v = np.zeros((3, 2, 2))
    v[:, 0, 0] = [0.1, 0.9, 0.2]                    # max 0.9 beats a larger sum (1.2 vs 1.1)
    v[:, 0, 1] = [0.4, 0.4, 0.4]
    v[:, 1, 1] = [-1, 2, -1]
    np.testing.assert_array_equal(readout_prediction(v, spiking=False), [0, 1])
    assert accuracy(v, np.array([0, 1]), spiking=False) == 1.0
    with pytest.raises(ShapeError):
        accuracy(v, np.array([0, 1, 1]), spiking=False)
