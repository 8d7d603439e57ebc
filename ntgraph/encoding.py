r"""Spike encoders: turn static values into time-major spike trains ``[T, ...]``.

Every encoder takes an array ``x`` of any shape (a sample ``[F]`` or a batch
``[B, F]``, ...) and returns ``[steps, *x.shape]``, time first, so a batch
``[B, F]`` becomes ``[T, B, F]``, the layout :func:`ntgraph.simulate` and the
torch backend take.  Spikes are 0/1 in ``dtype`` (float32 by default).

* :func:`rate_encode`: Bernoulli (or binned Poisson) rate coding, random; takes ``rng``.
* :func:`latency_encode`: time-to-first-spike coding, one spike or none per channel, deterministic.
* :func:`lif_current_encode`: ``x`` as a constant current into LIF neurons
  with exactly the semantics of :class:`ntgraph.LIF` (``docs/semantics.md``),
  deterministic.

Time is in steps of ``dt`` seconds; rates are in Hz.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import numpy as np

from .errors import ValidationError
from .models import RESET_MODES

__all__ = ["rate_encode", "latency_encode", "lif_current_encode", "RATE_METHODS", "LATENCY_METHODS"]

RATE_METHODS = ("bernoulli", "poisson")
LATENCY_METHODS = ("log", "linear")

ArrayLike = Any
SeedLike = Union[None, int, np.integer, np.random.SeedSequence, np.random.Generator]


def _rng(rng: SeedLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ValidationError(f"encoder rng: expected None, a non-negative int seed, a SeedSequence or a Generator, got {rng!r}")


def _steps(steps: Any, fn: str) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValidationError(f"{fn} steps: expected an integer >= 1, got {steps!r}")
    return int(steps)


def _positive(fn: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value) or value <= 0:
        raise ValidationError(f"{fn} {name}: expected a positive finite number, got {value!r}")
    return float(value)


def _dtype(fn: str, dtype: Any) -> np.dtype:
    """The output dtype of an encoder: a numeric numpy dtype."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.kind not in "biuf":
        raise ValidationError(f"{fn} dtype: expected a numeric numpy dtype such as float32, got {dtype!r}")
    return dt


def _float_array(fn: str, name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array; a ValidationError naming ``fn`` and ``name`` if it holds no numbers."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{fn} {name}: expected an array of real numbers, got {value!r:.60} ({exc})") from None


def _unit_interval(fn: str, x: ArrayLike) -> np.ndarray:
    arr = _float_array(fn, "x", x)
    bad = ~np.isfinite(arr) | (arr < 0.0) | (arr > 1.0)
    if np.any(bad):
        k = int(np.argmax(bad.ravel()))
        raise ValidationError(f"{fn} x: expected values in [0, 1], got {arr.ravel()[k]} at flat index {k}")
    return arr


def rate_encode(
    x: ArrayLike,
    steps: int,
    *,
    max_rate_hz: float,
    dt: float,
    rng: SeedLike = None,
    method: str = "bernoulli",
    dtype: Any = np.float32,
) -> np.ndarray:
    r"""Rate coding: channel ``i`` fires at ``x_i * max_rate_hz``, independently in every step.

    With ``lambda_i = x_i * max_rate_hz`` (Hz), the spike probability per step is

    * ``method="bernoulli"``: ``p_i = lambda_i * dt`` (each step a Bernoulli
      trial; the expected count over ``T`` steps is ``T * p_i``).  ``p_i > 1``
      is impossible, so ``max_rate_hz * dt > 1`` raises an error.
    * ``method="poisson"``: ``p_i = 1 - exp(-lambda_i * dt)``, the probability
      that a Poisson process of rate ``lambda_i`` has at least one event in a bin
      of ``dt`` (a binned Poisson train with counts clipped to one spike per step).

    ``x`` in ``[0, 1]``, any shape; returns ``[steps, *x.shape]`` of 0/1 in
    ``dtype``.  ``rng``: an int seed, a ``SeedSequence`` or a ``Generator``
    (the same seed gives the same spikes); ``None`` is not reproducible.
    """
    fn = "rate_encode"
    dtype = _dtype(fn, dtype)
    steps = _steps(steps, fn)
    max_rate_hz = _positive(fn, "max_rate_hz", max_rate_hz)
    dt = _positive(fn, "dt", dt)
    if method not in RATE_METHODS:
        raise ValidationError(f"{fn} method: expected one of {RATE_METHODS}, got {method!r}")
    arr = _unit_interval(fn, x)
    lam_dt = arr * (max_rate_hz * dt)
    if method == "bernoulli":
        if max_rate_hz * dt > 1.0:
            raise ValidationError(
                f"{fn}: max_rate_hz * dt = {max_rate_hz} * {dt} = {max_rate_hz * dt:g} is a spike probability per step > 1; "
                "expected <= 1 (lower max_rate_hz or dt, or use method='poisson')"
            )
        p = lam_dt
    else:
        p = -np.expm1(-lam_dt)
    u = _rng(rng).random((steps, *arr.shape))
    return (u < p).astype(dtype)


def latency_encode(
    x: ArrayLike,
    steps: int,
    *,
    method: str = "log",
    tau: Optional[float] = None,
    dt: Optional[float] = None,
    threshold: float = 0.01,
    dtype: Any = np.float32,
) -> np.ndarray:
    r"""Time-to-first-spike coding: each channel fires once (larger ``x``: earlier) or never.

    A channel fires no spike when ``x <= threshold``.  Otherwise its spike time is

    * ``method="log"`` (an RC membrane ``tau dv/dt = -v + x`` charged from
      ``v = 0`` crosses ``threshold`` at)::

          t = tau * ln(x / (x - threshold))        seconds

      and the spike falls in the step containing ``t``: ``k = floor(t / dt)``,
      none when ``k >= steps``.  ``tau`` and ``dt`` (seconds) are required.
    * ``method="linear"``: the window is used linearly from ``x = 1`` (step 0)
      down to ``x -> threshold`` (the last step)::

          k = round((1 - x) / (1 - threshold) * (steps - 1))

    Both are non-increasing in ``x``.  ``x`` in ``[0, 1]`` (``threshold`` in
    ``[0, 1)``), any shape; returns ``[steps, *x.shape]`` with at most one 1
    per channel, in ``dtype``.
    """
    fn = "latency_encode"
    dtype = _dtype(fn, dtype)
    steps = _steps(steps, fn)
    if method not in LATENCY_METHODS:
        raise ValidationError(f"{fn} method: expected one of {LATENCY_METHODS}, got {method!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
            or not 0.0 <= threshold < 1.0:
        raise ValidationError(f"{fn} threshold: expected a number in [0, 1), got {threshold!r}")
    threshold = float(threshold)
    arr = _unit_interval(fn, x)
    fires = arr > threshold
    safe = np.where(fires, arr, 1.0)
    if method == "log":
        if tau is None or dt is None:
            raise ValidationError(f"{fn}: method='log' needs tau and dt (seconds), got tau={tau!r}, dt={dt!r}")
        tau = _positive(fn, "tau", tau)
        dt = _positive(fn, "dt", dt)
        with np.errstate(divide="ignore"):
            t = tau * np.log(safe / (safe - threshold))  # +inf only where x == threshold, excluded by `fires`
        k = np.floor(t / dt)
    else:
        k = np.floor((1.0 - safe) / (1.0 - threshold) * (steps - 1) + 0.5)
    fires &= k < steps
    k = np.where(fires, k, 0).astype(np.int64)
    out = np.zeros((steps, *arr.shape), dtype=dtype)
    np.put_along_axis(out, k[None, ...], fires[None, ...].astype(dtype), axis=0)
    return out


def lif_current_encode(
    x: ArrayLike,
    steps: int,
    *,
    dt: float,
    tau_mem: ArrayLike,
    v_th: ArrayLike = 1.0,
    gain: ArrayLike = 1.0,
    v_leak: ArrayLike = 0.0,
    v_reset: ArrayLike = 0.0,
    r: ArrayLike = 1.0,
    reset: str = "zero",
    discretization: str = "euler",
    dtype: Any = np.float32,
    return_voltage: bool = False,
) -> Union[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    r"""Feed ``x`` as a constant current ``I = gain * x`` into LIF neurons and return their spikes.

    Exactly ntgraph's :class:`~ntgraph.LIF` step (``docs/semantics.md``),
    computed in float64, from ``v = v_leak``, for ``t = 0..steps-1``::

        v <- a*v + (1 - a)*(v_leak + r*I)      a = 1 - dt/tau_mem (euler) or exp(-dt/tau_mem) (exact)
        z  = v > v_th                          strict
        v <- v*(1 - z) + v_reset*z             reset="zero"
        v <- v - z*v_th                        reset="subtract"

    so it spikes like the graph ``Input -> OneToOne(gain) -> LIF`` simulated
    by :func:`ntgraph.simulate` with the same ``dt`` and discretisation.  A
    constant suprathreshold current gives a regular train whose rate grows
    with ``x``; ``r*I <= v_th - v_leak`` never fires.

    ``x``: any shape, any real values (not limited to ``[0, 1]``); the
    parameters are scalars or arrays broadcastable to ``x.shape`` (e.g. one
    per channel).  ``dt <= tau_mem`` is required.  Returns spikes
    ``[steps, *x.shape]`` in ``dtype``, and with ``return_voltage=True`` also
    the membrane potential after reset, float64 ``[steps, *x.shape]``.
    """
    fn = "lif_current_encode"
    dtype = _dtype(fn, dtype)
    steps = _steps(steps, fn)
    dt = _positive(fn, "dt", dt)
    if reset not in RESET_MODES:
        raise ValidationError(f"{fn} reset: expected one of {RESET_MODES}, got {reset!r}")
    if discretization not in ("euler", "exact"):
        raise ValidationError(f"{fn} discretization: expected 'euler' or 'exact', got {discretization!r}")
    current_in = _float_array(fn, "x", x)
    if not np.all(np.isfinite(current_in)):
        raise ValidationError(f"{fn} x: expected finite values")
    params = {}
    for name, value in (("tau_mem", tau_mem), ("v_th", v_th), ("gain", gain), ("v_leak", v_leak),
                        ("v_reset", v_reset), ("r", r)):
        arr = _float_array(fn, name, value)
        if not np.all(np.isfinite(arr)):
            raise ValidationError(f"{fn} {name}: expected finite values, got {value!r}")
        try:
            np.broadcast_shapes(arr.shape, current_in.shape)
        except ValueError:
            raise ValidationError(f"{fn} {name}: shape {arr.shape} does not broadcast to x's shape {current_in.shape}") from None
        params[name] = arr
    tau = params["tau_mem"]
    if np.any(tau <= 0):
        raise ValidationError(f"{fn} tau_mem: expected positive time constants (seconds), got min {tau.min()}")
    if np.any(dt > tau):
        raise ValidationError(f"{fn} dt: {dt} s exceeds tau_mem = {tau.min()} s; expected dt <= tau_mem")
    a = 1.0 - dt / tau if discretization == "euler" else np.exp(-dt / tau)
    v_th, v_leak, v_reset, rr = params["v_th"], params["v_leak"], params["v_reset"], params["r"]
    current = current_in * params["gain"]          # the OneToOne projection: I = x * w
    drive = (1.0 - a) * (v_leak + rr * current)    # constant over time
    v = np.broadcast_to(v_leak, current.shape).astype(np.float64)
    spikes = np.zeros((steps, *current.shape), dtype=dtype)
    volts = np.zeros((steps, *current.shape)) if return_voltage else None
    for t in range(steps):
        v = a * v + drive
        z = (v - v_th > 0.0).astype(np.float64)
        v = v * (1.0 - z) + v_reset * z if reset == "zero" else v - z * v_th
        spikes[t] = z
        if volts is not None:
            volts[t] = v
    return (spikes, volts) if volts is not None else spikes
