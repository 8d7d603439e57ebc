"""The grasshopper louder/quieter decoding task built from nitime's shipped data files."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import ntgraph.data._package_data as package_data
from ntgraph.data import grasshopper as gh
from ntgraph.data import load_grasshopper
from ntgraph.errors import MissingDependencyError, ValidationError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nitime") is None, reason="nitime (grasshopper data) not installed")


@pytest.fixture(scope="module")
def splits():
    return load_grasshopper(0)


def test_sizes_shapes_and_types(splits):
    # 2 recordings x 20 blocks x ((500 - 20)/10 + 1 = 49) windows, blocks split 14/3/3
    assert splits.sizes == {"train": 2 * 14 * 49, "val": 2 * 3 * 49, "test": 2 * 3 * 49}
    for part in splits:
        assert part.x.shape[1:] == (20, 1) and part.x.dtype == np.float32
        assert set(np.unique(part.x)) <= {0.0, 1.0}
        assert part.y.dtype == np.int64 and set(np.unique(part.y)) == {0, 1}
    assert splits.meta["n_classes"] == 2 and splits.meta["layout"] == "NTF"
    assert splits.meta["class_balance"]["train"] == pytest.approx(0.5)


def test_spikes_match_the_raw_file(splits):
    """Every window's raster is the histogram of the file's spike times (microseconds) in 1 ms bins."""
    root = importlib.util.find_spec("nitime").submodule_search_locations[0]
    raw = {k: np.loadtxt(os.path.join(root, "data", f"grasshopper_spike_times{k}.txt"), comments="#") for k in (1, 2)}
    assert raw[1].size == 929 and raw[2].size == 868
    part = splits.test
    for i in range(0, len(part), 37):
        t0_us = part.aux["start_ms"][i] * 1000.0
        spikes = raw[int(part.aux["recording"][i])]
        inside = spikes[(spikes >= t0_us) & (spikes < t0_us + 20_000)]
        expected = np.zeros(20)
        expected[((inside - t0_us) // 1000).astype(int)] = 1.0
        np.testing.assert_array_equal(part.x[i, :, 0], expected)


def test_labels_follow_the_level_and_the_train_median(splits):
    spikes, level = gh.grasshopper_recording(1)
    assert level.shape == (200000,) and level.max() == pytest.approx(76.4286)
    # the label of one window, recomputed by hand from the level trace (0.05 ms samples, 6 ms latency)
    part = splits.train
    i = int(np.flatnonzero(part.aux["recording"] == 1)[0])
    t0 = part.aux["start_ms"][i]
    lo, hi = int(round((t0 - 6.0) / 0.05)), int(round((t0 + 14.0) / 0.05))
    assert part.aux["level_db"][i] == pytest.approx(level[max(lo, 0):hi].mean(), rel=1e-12)
    for k in (1, 2):
        train = part.aux["recording"] == k
        median = np.median(part.aux["level_db"][train])
        np.testing.assert_array_equal(part.y[train], (part.aux["level_db"][train] > median).astype(np.int64))


def test_blocks_never_straddle_splits(splits):
    for k in (1, 2):
        blocks = [set(p.aux["block"][p.aux["recording"] == k]) for p in splits]
        assert [len(b) for b in blocks] == [14, 3, 3]
        assert not (blocks[0] & blocks[1]) and not (blocks[0] & blocks[2]) and not (blocks[1] & blocks[2])


def test_seed_determinism():
    a, b, c = load_grasshopper(3), load_grasshopper(3), load_grasshopper(4)
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.x, pb.x)
        np.testing.assert_array_equal(pa.y, pb.y)
    assert set(a.test.aux["block"]) != set(c.test.aux["block"]) or not np.array_equal(a.test.y, c.test.y)


def test_bad_arguments():
    with pytest.raises(ValidationError, match="window_ms"):
        load_grasshopper(0, window_ms=20.5)
    with pytest.raises(ValidationError, match="fractions"):
        load_grasshopper(0, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValidationError, match="1 or 2"):
        gh.grasshopper_recording(3)


def test_missing_nitime_names_it(monkeypatch):
    monkeypatch.setattr(package_data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="nitime"):
        load_grasshopper(0)
