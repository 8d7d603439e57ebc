r"""A chaotic random rate network as a "teacher": neural-activity-like time series with known ground truth.

The model is the random network of Sompolinsky, Crisanti & Sommers (1988,
"Chaos in random neural networks", *Phys. Rev. Lett.* 61:259)::

    tau * dx/dt = -x + J @ tanh(x),        J_ij ~ N(0, g**2 / N)

For ``g < 1`` the activity decays to the fixed point ``x = 0``; for ``g > 1``
(in the limit of large ``N``) the network is chaotic and produces irregular,
smooth fluctuations on a time scale of a few ``tau``.  It is integrated with
forward Euler, ``substeps`` sub-steps of ``dt/substeps`` per recorded step::

    x <- x + (h/tau) * (-x + J @ tanh(x)),     h = dt / substeps

so with ``substeps=1`` a rate network with the same ``J``, ``tau`` and ``dt``
under ntgraph's euler discretisation reproduces the teacher exactly.

Dale-like variant (``excitatory=f``): the first ``round(f*N)`` units are
excitatory (all outgoing weights ``>= 0``), the others inhibitory (``<= 0``).
Magnitudes are half-normal, inhibitory magnitudes of each row are scaled so
that every row sums to zero (``J @ 1 = 0``, the balanced condition of Rajan &
Abbott 2006, which removes the outlier eigenvalue of the E/I means), and ``J``
is scaled so that ``N * (f*Var_E + (1-f)*Var_I) = g**2``, the variances taken
within the excitatory and the inhibitory columns.  Because rows sum to zero,
``J @ tanh(x) = 2 * J @ r`` with ``r = (1 + tanh(x))/2`` in ``(0, 1)``: the
network is exactly one whose units exchange non-negative rates through a
Dale-respecting matrix ``2*J``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from ..errors import ShapeError, ValidationError
from .dataset import ArrayDataset, SeedLike, Splits, _check_positive_int, make_rng, time_split

__all__ = ["TeacherData", "chaotic_teacher", "OBSERVABLES"]

#: What the splits hold as targets: rates ``(1 + tanh x)/2`` in (0, 1), ``tanh(x)`` in (-1, 1), or the state ``x``.
OBSERVABLES = ("rate", "tanh", "state")


@dataclass(frozen=True, eq=False)
class TeacherData:
    """The teacher's traces after the transient, its ground truth and time-split datasets.

    * ``state``: ``x`` ``[T, N]`` float64, ``state[t]`` the state after
      ``transient_steps + t`` recorded steps; ``phi = tanh(state)``;
      ``rates = (1 + phi)/2`` in ``(0, 1)``.
    * ``time``: ``[T]`` seconds, ``t * dt`` (0 at the end of the transient).
    * ``J``: ``[N, N]`` connectivity (row = postsynaptic unit); ``sign``:
      ``[N]`` +1/-1 per presynaptic unit for the Dale-like variant, else ``None``.
    * ``initial_state``: ``[N]`` the state ``x`` the simulation started from
      (before the transient).
    * ``params``: ``n_units``, ``steps``, ``dt`` (s), ``tau`` (s), ``g``,
      ``seed``, ``transient_steps``, ``substeps``, ``excitatory``, ``observable``,
      ``window``, ``lag``, the split ranges.
    * ``splits``: :class:`~ntgraph.data.Splits` along time (see :func:`chaotic_teacher`).
    """

    state: np.ndarray
    phi: np.ndarray
    rates: np.ndarray
    time: np.ndarray
    J: np.ndarray
    sign: Optional[np.ndarray]
    initial_state: np.ndarray
    params: Mapping[str, Any]
    splits: Splits

    @property
    def targets(self) -> np.ndarray:
        """The trace of the chosen observable, ``[T, N]``."""
        return {"rate": self.rates, "tanh": self.phi, "state": self.state}[self.params["observable"]]

    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of ``J`` (``x = 0`` is unstable when one has real part > 1)."""
        return np.linalg.eigvals(self.J)

    def lyapunov_exponent(self, steps: int = 2000, *, eps: float = 1e-8, seed: SeedLike = 0) -> float:
        """Largest Lyapunov exponent (1/s), estimated from the end of the recording (Benettin's method).

        Follows the trajectory from ``state[-1]`` for ``steps`` steps together
        with a copy displaced by ``eps`` in a random direction (from ``seed``),
        renormalising the distance to ``eps`` every step:
        ``lambda = sum_t ln(d_t / eps) / (steps * dt)``.  Positive: chaotic;
        about 0: a limit cycle; negative: a stable fixed point.
        """
        steps = _check_positive_int("lyapunov_exponent steps", steps)
        a = self.state[-1].copy()
        d = make_rng(seed, "lyapunov_exponent seed").normal(size=a.shape)
        b = a + d * (eps / np.linalg.norm(d))
        total = 0.0
        for _ in range(steps):
            a, b = self.step(a), self.step(b)
            dist = float(np.linalg.norm(b - a))
            if dist == 0.0:
                return -math.inf
            total += math.log(dist / eps)
            b = a + (b - a) * (eps / dist)
        return total / (steps * float(self.params["dt"]))

    def step(self, x: np.ndarray) -> np.ndarray:
        """One recorded step (``substeps`` Euler sub-steps) of the teacher from state ``x`` ``[..., N]``."""
        return _integrate(np.asarray(x, dtype=np.float64), self.J, 1, float(self.params["dt"]),
                          float(self.params["tau"]), int(self.params["substeps"]))[-1]


def _integrate(x0: np.ndarray, J: np.ndarray, n_steps: int, dt: float, tau: float, substeps: int) -> np.ndarray:
    """States ``[n_steps + 1, ..., N]``: ``x0`` and the state after each recorded step."""
    h = dt / substeps
    k = h / tau
    out = np.empty((n_steps + 1, *x0.shape))
    x = x0.copy()
    out[0] = x
    for t in range(n_steps):
        for _ in range(substeps):
            x = x + k * (-x + np.tanh(x) @ J.T)
        out[t + 1] = x
    return out


def _connectivity(n: int, g: float, excitatory: Optional[float], rng: np.random.Generator) -> tuple[np.ndarray, Optional[np.ndarray]]:
    if excitatory is None:
        return rng.normal(0.0, g / math.sqrt(n), (n, n)), None
    n_e = int(math.floor(excitatory * n + 0.5))
    if not 1 <= n_e <= n - 1:
        raise ValidationError(
            f"chaotic_teacher excitatory: the fraction {excitatory} of {n} units gives {n_e} excitatory units; "
            "expected at least one excitatory and one inhibitory unit"
        )
    sign = np.where(np.arange(n) < n_e, 1.0, -1.0)
    mag = np.abs(rng.normal(size=(n, n)))
    mag[:, n_e:] *= (mag[:, :n_e].sum(axis=1) / mag[:, n_e:].sum(axis=1))[:, None]
    J = mag * sign[None, :]
    var = (n_e * J[:, :n_e].var() + (n - n_e) * J[:, n_e:].var()) / n
    return J * (g / math.sqrt(n * var)), sign


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or value <= 0:
        raise ValidationError(f"chaotic_teacher {name}: expected a positive finite number, got {value!r}")
    return float(value)


def chaotic_teacher(
    n_units: int = 200,
    steps: int = 2000,
    *,
    dt: float = 1e-3,
    g: float = 1.5,
    tau: float = 20e-3,
    seed: SeedLike = 0,
    transient_steps: int = 500,
    substeps: int = 1,
    excitatory: Optional[float] = None,
    x0_std: float = 1.0,
    x0: Optional[np.ndarray] = None,
    observable: str = "rate",
    window: Optional[int] = None,
    lag: int = 1,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    dtype: type = np.float32,
    require_activity: bool = True,
) -> TeacherData:
    r"""Simulate a chaotic random rate network and split its activity along time.

    Draws ``J`` (``N(0, g^2/N)``, or the Dale-like balanced variant with
    ``excitatory`` = fraction of excitatory units) and an initial state
    ``x0 ~ N(0, x0_std^2)`` (or the given ``x0``) from ``seed``, runs
    ``transient_steps`` steps that are discarded, then records ``steps`` steps
    (``dt`` seconds each; ``dt <= tau``).  See the module docstring for the
    equations.

    The recorded steps are split along **time**: the first part trains, the
    next ``val_fraction`` validates, the last ``test_fraction`` tests (held-out
    future).  Each split is an :class:`~ntgraph.data.ArrayDataset` of
    non-overlapping windows of ``window`` steps (default: the whole split as
    one sample; a remainder shorter than ``window`` is dropped):

    * ``y``: ``[n_windows, window, N]`` the observable (``"rate"``: ``(1 +
      tanh x)/2``, ``"tanh"``, or ``"state"``), ``dtype``;
    * ``x``: ``[n_windows, window, N]`` the same observable ``lag`` steps
      earlier (teacher forcing; the first ``lag`` values of the training split
      come from the end of the transient);
    * ``aux["t0"]``: window start steps; ``aux["state_before"]``: ``[n, N]``
      the teacher's state ``x`` one step before each window, to start a
      free-running student so that its first step produces ``y[:, 0]``.

    A finite network is chaotic only for a while: depending on ``N``, ``g``
    and the seed it may settle into a limit cycle or a fixed point (small
    ``N`` and ``g`` near 1 make that likelier; ``N = 200``, ``g = 1.5`` keeps
    fluctuating for most seeds).  With ``require_activity`` (default) a
    teacher whose state has a temporal standard deviation below ``1e-3``
    (mean over units) in the last quarter of the recording raises an error
    instead of returning a flat trace; ``params["activity_std"]`` holds the
    value, and :meth:`TeacherData.lyapunov_exponent` estimates the largest
    Lyapunov exponent (> 0: chaotic).

    Returns :class:`TeacherData` with the float64 traces, ``J`` and the parameters.
    """
    n_units = _check_positive_int("chaotic_teacher n_units", n_units, 2)
    steps = _check_positive_int("chaotic_teacher steps", steps)
    dt, tau, g = _positive("dt", dt), _positive("tau", tau), _positive("g", g)
    if dt > tau:
        raise ValidationError(f"chaotic_teacher dt: expected dt <= tau = {tau} s for a stable Euler step, got {dt}")
    transient_steps = _check_positive_int("chaotic_teacher transient_steps", transient_steps)
    substeps = _check_positive_int("chaotic_teacher substeps", substeps)
    lag = _check_positive_int("chaotic_teacher lag", lag)
    if lag > transient_steps:
        raise ValidationError(f"chaotic_teacher lag: expected at most transient_steps={transient_steps}, got {lag}")
    if observable not in OBSERVABLES:
        raise ValidationError(f"chaotic_teacher observable: expected one of {OBSERVABLES}, got {observable!r}")
    if excitatory is not None:
        if isinstance(excitatory, bool) or not isinstance(excitatory, (float, int, np.floating)) or not 0 < excitatory < 1:
            raise ValidationError(f"chaotic_teacher excitatory: expected a fraction in (0, 1) or None, got {excitatory!r}")
        excitatory = float(excitatory)
    x0_std = _positive("x0_std", x0_std)
    ranges = time_split(steps, val_fraction=val_fraction, test_fraction=test_fraction)
    if window is not None:
        window = _check_positive_int("chaotic_teacher window", window)
        shortest = min(len(r) for r in ranges if len(r))
        if window > shortest:
            raise ValidationError(f"chaotic_teacher window: expected at most {shortest} steps (the shortest split), got {window}")

    rng = make_rng(seed, "chaotic_teacher seed")
    J, sign = _connectivity(n_units, g, excitatory, rng)
    if x0 is None:
        start = rng.normal(0.0, x0_std, n_units)
    else:
        start = np.array(x0, dtype=np.float64)
        if start.shape != (n_units,) or not np.all(np.isfinite(start)):
            raise ShapeError(f"chaotic_teacher x0: expected {n_units} finite values, got shape {start.shape}")
    full = _integrate(start, J, transient_steps + steps - 1, dt, tau, substeps)  # full[s]: after s steps
    if not np.all(np.isfinite(full)):
        raise ValidationError("chaotic_teacher: the simulation diverged; use a smaller dt or more substeps")
    state = full[transient_steps:]
    activity_std = float(state[-max(1, steps // 4):].std(axis=0).mean())
    if require_activity and activity_std < 1e-3:
        raise ValidationError(
            f"chaotic_teacher: the network (n_units={n_units}, g={g}, seed={seed!r}) settled to a fixed point "
            f"(temporal std {activity_std:.1e} < 1e-3 at the end of the recording); expected ongoing activity: "
            "use a larger g or n_units, another seed, or require_activity=False"
        )
    phi = np.tanh(full)
    obs_full = {"rate": 0.5 * (1.0 + phi), "tanh": phi, "state": full}[observable]

    params = {"n_units": n_units, "steps": steps, "dt": dt, "tau": tau, "g": g,
              "seed": int(seed) if isinstance(seed, (int, np.integer)) else repr(seed),
              "transient_steps": transient_steps, "substeps": substeps, "excitatory": excitatory,
              "x0_std": x0_std, "observable": observable, "activity_std": activity_std, "window": window, "lag": lag,
              "split_steps": {name: (r.start, r.stop) for name, r in zip(("train", "val", "test"), ranges)}}
    meta = {"name": "chaotic_teacher", "n_classes": None, "n_features": n_units,
            "layout": "[n_windows, window, n_units] (time, unit)", "observable": observable,
            "dt": dt, "tau": tau, "g": g, "excitatory": excitatory}

    def split(r: range) -> ArrayDataset:
        w = window if window is not None else len(r)
        starts = np.arange(r.start, r.stop - w + 1, w, dtype=np.int64) if w and len(r) >= w else np.zeros(0, np.int64)
        offs = transient_steps + starts[:, None] + np.arange(w)[None, :]  # indices into full
        y = obs_full[offs].astype(dtype)
        x = obs_full[offs - lag].astype(dtype)
        before = full[transient_steps + starts - 1]
        if not len(starts):
            y = np.zeros((0, w, n_units), dtype)
            x = np.zeros((0, w, n_units), dtype)
            before = np.zeros((0, n_units))
        return ArrayDataset(x, y, meta, {"t0": starts, "state_before": before})

    splits = Splits(*(split(r) for r in ranges))
    return TeacherData(state=state, phi=phi[transient_steps:], rates=0.5 * (1.0 + phi[transient_steps:]),
                       time=np.arange(steps) * dt, J=J, sign=sign, initial_state=start, params=params, splits=splits)
