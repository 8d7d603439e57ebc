"""Which networks the torch backend may simulate in float16 or bfloat16.

Half precision halves the memory of weights, states and recorded outputs, but
a neuron's state update loses whatever is smaller than half a unit in the last
place (ulp) of the state.  Every leaky model updates its state as

    s <- a*s + (1 - a)*target,    a = 1 - dt/tau (euler) or exp(-dt/tau) (exact)

(LIF, CubaLIF's current and membrane, ALIF's membrane and adaptation, LI,
RateUnit with ``tau``; Wilson-Cowan's euler step ``x + dt/tau*(...)`` has the
same form).  Near ``|s| ~ 1`` each step is rounded to ``eps/2`` (``eps`` =
ulp(1): 2**-10 for float16, 2**-7 for bfloat16), and the decay ``a`` itself
is stored rounded to the same resolution.  Both errors are ``~eps/2`` per
step, against a per-step change of ``leak = 1 - a``, so the leak is resolved
to a relative error of

    resolution = (eps/2) / leak  ~  (eps/2) * tau/dt

:func:`check_low_precision` requires ``resolution <= tolerance`` (backend option
``low_precision_tolerance``, default :data:`DEFAULT_TOLERANCE` = 0.1) for every
time constant of every population, and raises a
:class:`~ntgraph.errors.ValidationError` naming the population, the parameter,
``tau/dt`` and the largest ``tau/dt`` the dtype allows (25.6 for bfloat16,
204.8 for float16 at the default tolerance; measured errors in docs/precision.md).  IF has no leak and passes;
its integration still rounds, which the docs state.

float16 also has a narrow range (largest 65504, smallest normal 6.1e-5): a weight
or parameter whose magnitude overflows to inf, or a non-zero weight that
rounds to exactly 0, is an error naming the node.

Training in half precision is refused by the trainer (an optimiser step smaller
than half an ulp of a weight is lost); train in float32 and compile the
trained graph with ``dtype="bfloat16"`` for inference.  See ``docs/precision.md``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ntgraph.errors import ValidationError
from ntgraph.graph import Graph
from ntgraph.ir import Population, Projection
from ntgraph.models import WilsonCowan

__all__ = ["LOW_PRECISION", "DEFAULT_TOLERANCE", "check_low_precision", "leak_resolution", "max_tau_over_dt",
           "is_low_precision"]

LOW_PRECISION = (torch.float16, torch.bfloat16)
DEFAULT_TOLERANCE = 0.1


def is_low_precision(dtype: Any) -> bool:
    """True for float16 and bfloat16."""
    return dtype in LOW_PRECISION


def _leak(dt: float, tau: np.ndarray, discretization: str, model: Any) -> np.ndarray:
    """The per-step change ``1 - a`` of a state with time constant ``tau`` (seconds)."""
    if discretization == "euler" or isinstance(model, WilsonCowan):
        return dt / tau
    return -np.expm1(-dt / tau)


def leak_resolution(dtype: torch.dtype, leak: np.ndarray) -> np.ndarray:
    """Relative error ``(eps/2) / leak`` with which ``dtype`` resolves a per-step leak."""
    eps = float(torch.finfo(dtype).eps)
    return (eps / 2.0) / np.asarray(leak, dtype=np.float64)


def max_tau_over_dt(dtype: torch.dtype, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """The largest ``tau/dt`` (euler) that ``dtype`` simulates within ``tolerance``."""
    return 2.0 * tolerance / float(torch.finfo(dtype).eps)


def _check_range(where: str, values: np.ndarray, dtype: torch.dtype, *, weights: bool) -> None:
    finfo = torch.finfo(dtype)
    flat = np.ravel(values)
    if flat.size == 0:
        return
    big = np.abs(flat) > float(finfo.max)
    if np.any(big):
        k = int(np.argmax(big))
        raise ValidationError(
            f"{where}: value {flat[k]:g} (flat index {k}) overflows {_name(dtype)} (largest {float(finfo.max):g}); "
            f"expected magnitudes <= {float(finfo.max):g}, or use dtype float32"
        )
    if weights:
        rounded = torch.tensor(flat, dtype=torch.float64).to(dtype)
        lost = (flat != 0) & (rounded == 0).numpy()
        if np.any(lost):
            k = int(np.argmax(lost))
            raise ValidationError(
                f"{where}: {int(lost.sum())} non-zero weight(s) round to 0 in {_name(dtype)}, e.g. {flat[k]:g} at flat "
                f"index {k} (smallest {_name(dtype)} value {float(torch.finfo(dtype).tiny) * float(finfo.eps):g}); "
                f"rescale the weights or use dtype float32"
            )


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def check_low_precision(graph: Graph, dt: float, discretization: str, dtype: torch.dtype,
                        tolerance: float = DEFAULT_TOLERANCE) -> None:
    """Raise a :class:`ValidationError` if ``graph`` cannot be simulated faithfully in ``dtype``.

    Checks every time constant against :func:`leak_resolution` <= ``tolerance``
    and, for every dtype, that weights and parameters fit its range.  Does
    nothing for float32/float64.
    """
    if not is_low_precision(dtype):
        return
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or math.isnan(tolerance) or tolerance <= 0:
        raise ValidationError(f"torch backend option low_precision_tolerance: expected a number > 0, got {tolerance!r}")
    name = _name(dtype)
    for node_id, payload in graph.items():
        if isinstance(payload, Population):
            model = payload.model
            mname = type(model).__name__
            for pname in model.param_names():
                value = getattr(model, pname)
                if value is None:
                    continue
                arr = np.asarray(value, dtype=np.float64)
                where = f"Population '{node_id}'.model.{pname} ({mname})"
                _check_range(where, arr, dtype, weights=False)
                if model.param_info(pname)["unit"] != "s":
                    continue
                res = leak_resolution(dtype, _leak(dt, arr, discretization, model))
                if np.any(res > tolerance):
                    k = int(np.argmax(np.ravel(res)))
                    tau = float(np.ravel(arr)[k])
                    raise ValidationError(
                        f"{where}: tau/dt = {tau / dt:.4g} is too slow for {name}: a per-step leak of "
                        f"{float(np.ravel(_leak(dt, arr, discretization, model))[k]):.3g} is resolved only to "
                        f"{float(np.ravel(res)[k]):.0%} (half an ulp of 1 is {float(torch.finfo(dtype).eps) / 2:.3g}); "
                        f"expected tau/dt <= {max_tau_over_dt(dtype, tolerance):.0f} for {name} at "
                        f"low_precision_tolerance={tolerance:g} (use float16 or float32, a larger dt, or raise the tolerance)"
                    )
        elif isinstance(payload, Projection):
            for aname in payload.array_names():
                arr = getattr(payload, aname)
                if arr is None or not np.issubdtype(np.asarray(arr).dtype, np.floating):
                    continue
                _check_range(f"{payload.kind} '{node_id}'.{aname}", np.asarray(arr), dtype,
                             weights=aname in ("weight", "bias"))
