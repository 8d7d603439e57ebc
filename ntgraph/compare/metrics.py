r"""Agreement metrics between two runs of one network (numpy only).

Arrays are time-major, ``[T, batch, n]``, as every ntgraph backend returns
them; spike arrays hold 0/1.  Each function is written from its formula:

* **spike agreement** -- the fraction of identical spike entries,
  ``mean(z_ref == z_sim)`` over every step, batch element and neuron;
* **spike-count correlation** -- Pearson's ``r`` between the spike counts
  ``c = sum_t z[t]`` of the two runs, one count per (batch element, neuron);
  1.0 when the two count vectors are identical (including all zero, where
  Pearson's ``r`` is undefined), ``nan`` when only one of them is constant;
* **van Rossum distance** (van Rossum 2001, *Neural Computation* 13:751) with
  time constant ``tau``: each spike train ``s`` (spikes at the step times
  ``t_k = k*dt``) is convolved with the causal kernel ``exp(-t/tau)``,
  ``f(t) = sum_k s_k exp(-(t - t_k)/tau) H(t - t_k)``, and

  .. math:: D^2 = \frac{1}{\tau} \int_0^\infty (f(t) - g(t))^2 \, dt

  so one unmatched spike gives ``D = 1/sqrt(2)`` and two spikes far apart in
  time ``D = 1``.  With ``d_k`` the difference just after step ``k``
  (``d_k = d_{k-1} e^{-dt/tau} + s_k - r_k``) the integral is exact:
  ``D^2 = 1/2 [(1 - e^{-2 dt/tau}) sum_{k<T-1} d_k^2 + d_{T-1}^2]``, the last
  term being the tail after the final step, integrated to infinity;
* **first divergence** -- the first step at which a spike entry differs, or
  an analog value (voltage, readout) differs by more than ``atol + rtol*|ref|``;
* **maximum absolute error** of analog values (voltages, currents, readouts);
* **accuracy** -- the readout's class is ``argmax`` over its features of the
  output *summed over time* for a spiking readout (spike count) or of its
  *maximum over time* for a non-spiking one (LI voltage, rate), ties to the
  lowest index; accuracy is the fraction of batch elements whose class is the label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from ..errors import ShapeError, ValidationError

__all__ = [
    "spike_agreement",
    "spike_count_correlation",
    "van_rossum_distance",
    "Divergence",
    "first_divergence",
    "max_abs_error",
    "readout_prediction",
    "accuracy",
]


def _pair(ref: np.ndarray, sim: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(ref, dtype=np.float64), np.asarray(sim, dtype=np.float64)
    if a.shape != b.shape:
        raise ShapeError(f"{what}: expected arrays of equal shape, got {a.shape} and {b.shape}")
    return a, b


def spike_agreement(ref: np.ndarray, sim: np.ndarray) -> float:
    """Fraction of identical entries of two spike arrays (1.0 for empty arrays)."""
    a, b = _pair(ref, sim, "spike_agreement")
    return 1.0 if a.size == 0 else float(np.mean(a == b))


def spike_count_correlation(ref: np.ndarray, sim: np.ndarray) -> float:
    """Pearson correlation of per-train spike counts (summed over axis 0); see the module docstring for edge cases."""
    a, b = _pair(ref, sim, "spike_count_correlation")
    ca, cb = a.sum(axis=0).ravel(), b.sum(axis=0).ravel()
    if np.array_equal(ca, cb):
        return 1.0
    sa, sb = ca.std(), cb.std()
    if sa == 0.0 or sb == 0.0:
        return float("nan")
    return float(np.mean((ca - ca.mean()) * (cb - cb.mean())) / (sa * sb))


def van_rossum_distance(ref: np.ndarray, sim: np.ndarray, dt: float, tau: float) -> np.ndarray:
    """van Rossum distance per spike train, exact for spikes on the step grid (shape of the trailing axes).

    ``ref``/``sim``: spike arrays ``[T, ...]`` (time first), ``dt`` the step
    and ``tau`` the kernel time constant, both in seconds.
    """
    a, b = _pair(ref, sim, "van_rossum_distance")
    if not (dt > 0 and tau > 0 and math.isfinite(dt) and math.isfinite(tau)):
        raise ValidationError(f"van_rossum_distance: expected dt > 0 and tau > 0 (seconds), got dt={dt!r}, tau={tau!r}")
    if a.ndim == 0 or a.shape[0] == 0:
        return np.zeros(a.shape[1:] if a.ndim else ())
    q = math.exp(-dt / tau)
    d = np.zeros(a.shape[1:])
    body = np.zeros(a.shape[1:])
    steps = a.shape[0]
    for k in range(steps):
        d = d * q + (a[k] - b[k])
        if k < steps - 1:
            body += d * d
    d2 = 0.5 * ((1.0 - q * q) * body + d * d)
    return np.sqrt(d2)


@dataclass(frozen=True)
class Divergence:
    """Where two runs first differ: step, time (s), key (``"pop.var"`` or Output), batch element, neuron, values."""

    step: int
    time: float
    key: str
    batch: int
    neuron: int
    reference: float
    value: float

    def to_dict(self) -> dict:
        return {"step": self.step, "time_s": self.time, "key": self.key, "batch": self.batch, "neuron": self.neuron,
                "reference": self.reference, "value": self.value}

    def describe(self) -> str:
        return (f"step {self.step} (t = {self.time * 1e3:.6g} ms): {self.key}[batch {self.batch}, neuron {self.neuron}] "
                f"= {self.value:.6g}, reference {self.reference:.6g}")


def _first_bad(bad: np.ndarray) -> Optional[tuple[int, int, int]]:
    """(step, batch, neuron) of the first True entry in time order (then batch, then neuron)."""
    if not bad.any():
        return None
    flat = bad.reshape(bad.shape[0], -1)
    step = int(np.argmax(flat.any(axis=1)))
    idx = int(np.argmax(flat[step]))
    rest = bad.shape[1:]
    if len(rest) >= 2:
        b, n = divmod(idx, int(np.prod(rest[1:])))
        return step, int(b), int(n)
    return step, 0, idx


def first_divergence(ref: Mapping[str, np.ndarray], sim: Mapping[str, np.ndarray], dt: float, *,
                     spike_keys: Sequence[str], analog_keys: Sequence[str] = (), atol: float = 1e-6,
                     rtol: float = 1e-6) -> Optional[Divergence]:
    """The earliest divergence over ``spike_keys`` (exact) and ``analog_keys`` (``|sim - ref| > atol + rtol*|ref|``).

    Ties in time go to spike keys first, then to the order of the keys given.
    """
    best: Optional[Divergence] = None
    for key, exact in [(k, True) for k in spike_keys] + [(k, False) for k in analog_keys]:
        a, b = _pair(ref[key], sim[key], f"first_divergence {key!r}")
        if a.ndim != 3 or a.shape[0] == 0:
            continue
        with np.errstate(invalid="ignore"):
            bad = (a != b) if exact else ~(np.abs(b - a) <= atol + rtol * np.abs(a))
        hit = _first_bad(bad)
        if hit is None:
            continue
        step, batch, neuron = hit
        if best is None or step < best.step:
            best = Divergence(step, step * dt, key, batch, neuron, float(a[step, batch, neuron]), float(b[step, batch, neuron]))
    return best


def max_abs_error(ref: Mapping[str, np.ndarray], sim: Mapping[str, np.ndarray], keys: Sequence[str]) -> Optional[float]:
    """``max |sim - ref|`` over ``keys`` (None when ``keys`` is empty; ``inf`` when a value is not finite)."""
    worst: Optional[float] = None
    for key in keys:
        a, b = _pair(ref[key], sim[key], f"max_abs_error {key!r}")
        if a.size == 0:
            continue
        with np.errstate(invalid="ignore"):
            err = np.abs(b - a)
        e = float("inf") if not np.all(np.isfinite(err)) else float(err.max())
        worst = e if worst is None else max(worst, e)
    return worst


def readout_prediction(output: np.ndarray, spiking: bool) -> np.ndarray:
    """Class per batch element: argmax of the spike count (spiking) or of the maximum over time (analog)."""
    y = np.asarray(output, dtype=np.float64)
    if y.ndim != 3:
        raise ShapeError(f"readout: expected an array [T, batch, classes], got shape {y.shape}")
    score = y.sum(axis=0) if spiking else y.max(axis=0)
    return np.argmax(score, axis=-1)


def accuracy(output: np.ndarray, labels: np.ndarray, spiking: bool) -> float:
    """Fraction of batch elements whose :func:`readout_prediction` equals its label."""
    pred = readout_prediction(output, spiking)
    lab = np.asarray(labels)
    if lab.shape != pred.shape:
        raise ShapeError(f"labels: expected one integer label per batch element, shape {pred.shape}, got {lab.shape}")
    if lab.size and (lab.dtype.kind not in "iu" and not np.all(lab == np.round(lab))):
        raise ValidationError(f"labels: expected integer class indices, got dtype {lab.dtype}")
    return float(np.mean(pred == lab.astype(np.int64))) if lab.size else float("nan")
