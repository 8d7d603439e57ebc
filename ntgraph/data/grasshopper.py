r"""Grasshopper auditory receptor spike trains and their stimulus, as shipped with ``nitime``.

``nitime`` (the nipy time-series package) ships in ``nitime/data/`` two
intracellular recordings from one primary auditory receptor cell of the
grasshopper *Locusta migratoria* (Rokem et al. 2006, *J. Neurophysiol.*
95:2541, "Spike-timing precision underlies the coding efficiency of auditory
receptor neurons"; the data are also on CRCNS).  The stimulus was a pure tone
at the cell's preferred carrier frequency (2.5 kHz) whose amplitude was
modulated by Gaussian white noise low-pass filtered at 200 Hz (recording 1) or
800 Hz (recording 2), 6 dB standard deviation:

* ``grasshopper_stimulus{k}.txt``: two columns, time in microseconds and the
  amplitude envelope (linear, peak 1.0), 200000 samples at 20 kHz (0.05 ms),
  i.e. 10 s;
* ``grasshopper_spike_times{k}.txt``: 14 ``#`` header lines (the peak
  intensity, ``# intensity (dB): 76.4286``, among them), then one spike time
  per line in microseconds at 0.1 ms resolution (929 and 868 spikes, about
  90 Hz; the shortest interval is 3.2 ms).

The envelope is converted to sound level as nitime's example does:
``L = 20*log10(a / 2e-5)`` shifted so that its maximum is the header's peak
intensity (dB SPL).  Only the text files are read (with numpy); nitime's code
is never imported, so ``pip install --no-deps nitime`` is enough.

The decoding task built here (:func:`load_grasshopper`)
-------------------------------------------------------

*Is the sound louder or quieter than usual in this window?*  Each recording is
cut into ``n_blocks`` contiguous blocks (default 20 blocks of 500 ms).  Inside a
block, windows of ``window_ms`` (default 20 ms) start every ``stride_ms``
(default 10 ms) and never cross a block boundary.  A sample is the cell's spike
train in the window, binned at ``dt_ms`` (default 1 ms, at most one spike per
bin): ``x`` ``[T, 1]`` with ``T = window_ms/dt_ms``.  Its label is 1 when the
mean sound level over the window shifted back by the response ``latency_ms``
(default 6 ms, ``[t0 - latency, t0 + window - latency)``) is above the median
of that recording's training windows, else 0.  Chance is therefore about 50%
(the exact class balance, 0.50 in training and 0.47-0.59 in the held-out
splits, is in ``meta["class_balance"]``).

The ``seed`` permutes the blocks of each recording and assigns 70% / 15% / 15%
of them (14 / 3 / 3 of 20) to train / validation / test, so overlapping windows
never straddle two splits and no test spike is ever seen in training.  With
the defaults and both recordings: 2 x 20 blocks x 49 windows = 1960 windows,
1372 / 294 / 294 in the splits (neighbouring windows overlap by half, so the
effective number of independent test samples is nearer 150).

The information available is small.  One cell fires about 1.8 spikes per
20 ms window; its spike count correlates with the window's mean level at about
r = 0.43 (200 Hz recording) and r = 0.21 (800 Hz recording), for the 6 ms
latency that maximises it.  Simple decoders on the test split (seeds 0-2): a
threshold on the spike count reaches 60-64%, logistic regression on the 20
bins 59-64%.  A network should be judged against those numbers, not 100%.

``aux`` per sample: ``recording`` (1 or 2), ``start_ms`` (window start),
``block`` (block index in its recording), ``level_db`` (the mean level that
sets the label).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import ValidationError
from ._package_data import package_data_path
from .dataset import ArrayDataset, SeedLike, Splits, _check_positive_int, make_rng

__all__ = ["load_grasshopper", "grasshopper_recording", "GRASSHOPPER_STIMULUS_DT_MS"]

#: Sampling interval of the shipped stimulus files, milliseconds (20 kHz).
GRASSHOPPER_STIMULUS_DT_MS = 0.05
_HEADER_INTENSITY = "# intensity (dB):"


def _data_dir() -> str:
    spikes = package_data_path("nitime", os.path.join("data", "grasshopper_spike_times1.txt"),
                               loader="load_grasshopper", what="the grasshopper spike trains")
    return os.path.dirname(spikes)


def grasshopper_recording(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Recording ``k`` (1 or 2): spike times in ms ``[n_spikes]`` and the sound level in dB SPL ``[200000]``.

    The level is sampled every :data:`GRASSHOPPER_STIMULUS_DT_MS` (0.05 ms),
    starting at t = 0; see the module docstring for the conversion.
    """
    if k not in (1, 2):
        raise ValidationError(f"grasshopper_recording k: expected 1 or 2 (the two shipped recordings), got {k!r}")
    folder = _data_dir()
    spikes_path = os.path.join(folder, f"grasshopper_spike_times{k}.txt")
    peak_db = None
    with open(spikes_path) as fh:
        for line in fh:
            if line.startswith(_HEADER_INTENSITY):
                peak_db = float(line[len(_HEADER_INTENSITY):])
    if peak_db is None:
        raise ValidationError(f"grasshopper_recording: {spikes_path!r} has no '{_HEADER_INTENSITY}' header line")
    spikes_us = np.loadtxt(spikes_path, comments="#", ndmin=1)
    stim = np.loadtxt(os.path.join(folder, f"grasshopper_stimulus{k}.txt"), ndmin=2)
    if stim.shape[1] != 2 or np.any(stim[:, 1] <= 0):
        raise ValidationError(f"grasshopper_recording: stimulus {k} expected two columns with positive amplitudes")
    level = 20.0 * np.log10(stim[:, 1] / 2.0e-5)
    level = peak_db - level.max() + level
    return spikes_us / 1000.0, level


def load_grasshopper(
    seed: SeedLike = 0,
    *,
    recordings: Sequence[int] = (1, 2),
    window_ms: float = 20.0,
    stride_ms: float = 10.0,
    dt_ms: float = 1.0,
    latency_ms: float = 6.0,
    n_blocks: int = 20,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Splits:
    """Louder-or-quieter decoding from one grasshopper receptor's spike train (see the module docstring).

    Returns :class:`Splits` of :class:`ArrayDataset` with ``x`` ``[N, T, 1]``
    float32 spikes (0/1, ``T = window_ms/dt_ms``), ``y`` ``[N]`` int64 labels
    (1 = louder than the recording's median training window), ``meta`` with
    ``name``, ``n_classes = 2``, ``layout = "NTF"``, ``dt_ms`` and the
    arguments, and ``aux`` ``recording``, ``start_ms``, ``block``, ``level_db``.
    """
    n_blocks = _check_positive_int("load_grasshopper n_blocks", n_blocks, 3)
    for name, value in (("window_ms", window_ms), ("stride_ms", stride_ms), ("dt_ms", dt_ms)):
        if not np.isfinite(value) or value <= 0:
            raise ValidationError(f"load_grasshopper {name}: expected a positive number of milliseconds, got {value!r}")
    if not np.isfinite(latency_ms) or latency_ms < 0:
        raise ValidationError(f"load_grasshopper latency_ms: expected >= 0 ms, got {latency_ms!r}")
    steps = int(round(window_ms / dt_ms))
    if abs(steps * dt_ms - window_ms) > 1e-9 or dt_ms < 0.1:
        raise ValidationError(
            f"load_grasshopper window_ms={window_ms}, dt_ms={dt_ms}: expected a window that is a whole number of bins "
            f"and bins of at least 0.1 ms (the spike-time resolution)"
        )
    frac = np.asarray(fractions, dtype=float)
    if frac.shape != (3,) or np.any(frac < 0) or abs(frac.sum() - 1.0) > 1e-9:
        raise ValidationError(f"load_grasshopper fractions: expected three non-negative numbers summing to 1, got {fractions!r}")
    n_val, n_test = int(round(frac[1] * n_blocks)), int(round(frac[2] * n_blocks))
    n_train = n_blocks - n_val - n_test
    if min(n_train, n_val, n_test) < 1:
        raise ValidationError(f"load_grasshopper: {n_blocks} blocks leave an empty split with fractions {fractions!r}")
    rng = make_rng(seed)
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    balance = []
    for k in recordings:
        spikes_ms, level = grasshopper_recording(k)
        duration = len(level) * GRASSHOPPER_STIMULUS_DT_MS
        block_ms = duration / n_blocks
        if window_ms > block_ms:
            raise ValidationError(f"load_grasshopper window_ms={window_ms}: longer than a block ({block_ms:g} ms)")
        per_block = int(np.floor((block_ms - window_ms) / stride_ms + 1e-9)) + 1
        cumulative = np.concatenate([[0.0], np.cumsum(level)])
        role = np.empty(n_blocks, dtype=object)
        order = rng.permutation(n_blocks)
        role[order[:n_train]], role[order[n_train:n_train + n_val]], role[order[n_train + n_val:]] = "train", "val", "test"
        rows = []
        for b in range(n_blocks):
            for w in range(per_block):
                t0 = b * block_ms + w * stride_ms
                edges = t0 + dt_ms * np.arange(steps + 1)
                counts = np.histogram(spikes_ms, bins=edges)[0]
                lo = int(round(max(t0 - latency_ms, 0.0) / GRASSHOPPER_STIMULUS_DT_MS))
                hi = int(round(max(t0 + window_ms - latency_ms, 0.0) / GRASSHOPPER_STIMULUS_DT_MS))
                hi = max(hi, lo + 1)
                mean_level = (cumulative[hi] - cumulative[lo]) / (hi - lo)
                rows.append((role[b], np.minimum(counts, 1), k, t0, b, mean_level))
        threshold = float(np.median([r[5] for r in rows if r[0] == "train"]))
        for r in rows:
            parts[r[0]].append(r[1:] + (int(r[5] > threshold),))
    meta = {
        "name": "grasshopper", "n_classes": 2, "layout": "NTF", "dt_ms": float(dt_ms), "window_ms": float(window_ms),
        "stride_ms": float(stride_ms), "latency_ms": float(latency_ms), "n_blocks": n_blocks,
        "recordings": [int(k) for k in recordings], "source": "nitime/data/grasshopper_*",
        "task": "1 if the mean sound level (dB SPL) of the latency-shifted window exceeds the median training window",
    }
    for name in ("train", "val", "test"):
        perm = rng.permutation(len(parts[name]))
        parts[name] = [parts[name][i] for i in perm]
        balance.append(float(np.mean([r[5] for r in parts[name]])))
    meta["class_balance"] = {"train": balance[0], "val": balance[1], "test": balance[2]}
    out = []
    for name in ("train", "val", "test"):
        rows = parts[name]
        y = np.array([r[5] for r in rows], dtype=np.int64)
        out.append(ArrayDataset(
            x=np.stack([r[0] for r in rows]).astype(np.float32)[:, :, None],
            y=y,
            meta=meta,
            aux={"recording": np.array([r[1] for r in rows], dtype=np.int64),
                 "start_ms": np.array([r[2] for r in rows], dtype=np.float64),
                 "block": np.array([r[3] for r in rows], dtype=np.int64),
                 "level_db": np.array([r[4] for r in rows], dtype=np.float64)},
        ))
    return Splits(*out)
