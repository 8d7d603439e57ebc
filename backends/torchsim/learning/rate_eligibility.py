r"""Per-step partial derivatives of firing-rate units, for e-prop's eligibility traces.

A rate unit's step is elementwise: ``x_t = F(x_{t-1}, I_t)`` with ``I_t = sum_i W_ji x_i^t + b_j``
the input current (the rate is both the state and the output).  e-prop's eligibility
trace ``eps_ji^t = dx_j^t/dW_ji`` (presynaptic activity held fixed) follows

.. math::  \epsilon_{ji}^t = \underbrace{\partial x_j^t/\partial x_j^{t-1}}_{\text{leak}}\,\epsilon_{ji}^{t-1}
           + \underbrace{\partial x_j^t/\partial I_j^t}_{\text{drive}}\,x_i^t

(``x_i = 1`` for the bias).  :func:`rate_partials` gives ``(leak, drive)`` for the two
rate models, derived from the update equations of ``backends/torchsim/neurons.py``:

* :class:`ntgraph.models.WilsonCowan`, ``s = sigmoid(I - mu)``, ``s' = s(1-s)``, ``h = dt/tau``:

  - euler, ``x_t = x + h(-x + (1 - r x) s)``:
    ``leak = 1 - h(1 + r s)``, ``drive = h (1 - r x_{t-1}) s'``;
  - exact, ``q = 1 + r s``, ``E = exp(-q dt/tau)``, ``x_inf = s/q``, ``x_t = x_inf + (x - x_inf) E``:
    ``leak = E``, ``drive = s' [(1 - E)/q^2 - (x_{t-1} - x_inf) E r dt/tau]``;

* :class:`ntgraph.models.RateUnit`, ``f`` = sigmoid (``f' = f(1-f)``) or tanh (``f' = 1 - f^2``)
  of ``I + bias``: leaky ``x_t = a x + (1-a) f``: ``leak = a``, ``drive = (1-a) f'``
  (``a`` = ``1 - dt/tau`` or ``exp(-dt/tau)``); instantaneous (``tau=None``): ``leak = 0``, ``drive = f'``.

``tests/test_eprop.py`` checks the resulting e-prop gradients against autograd (BPTT) at float64.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ntgraph.errors import ValidationError

from ..neurons import RateDynamics, WilsonCowanDynamics

__all__ = ["RATE_DYNAMICS", "rate_partials"]

#: The dynamics whose eligibility traces :func:`rate_partials` provides.
RATE_DYNAMICS = (WilsonCowanDynamics, RateDynamics)


def rate_partials(dyn: Any, c: Any, current: Tensor, x_prev: Tensor) -> tuple[Tensor, Tensor]:
    """``(dx_t/dx_{t-1}, dx_t/dI_t)``, each ``[batch, n]``, for one step of a rate population.

    ``dyn``: a :class:`WilsonCowanDynamics` or :class:`RateDynamics`; ``c``: its
    :meth:`coefficients`; ``current``: the step's input current ``I_t``; ``x_prev``:
    the rate before the step.  Unitless (rates per unit current).
    """
    if isinstance(dyn, WilsonCowanDynamics):
        s = torch.sigmoid(current - c.mu)
        ds = s * (1.0 - s)
        if dyn.discretization == "euler":
            h = dyn.dt / c.tau
            leak = 1.0 - h * (1.0 + c.r * s)
            drive = h * (1.0 - c.r * x_prev) * ds
        else:
            q = 1.0 + c.r * s
            decay = torch.exp(-q * dyn.dt / c.tau)
            x_inf = s / q
            leak = decay
            drive = ds * ((1.0 - decay) / q ** 2 - (x_prev - x_inf) * decay * c.r * dyn.dt / c.tau)
        return leak.expand_as(current), drive
    if isinstance(dyn, RateDynamics):
        pre = current + c.bias
        if dyn.model.activation == "sigmoid":
            f = torch.sigmoid(pre)
            df = f * (1.0 - f)
        else:
            f = torch.tanh(pre)
            df = 1.0 - f * f
        if c.a is None:
            return torch.zeros_like(df), df
        return c.a.expand_as(df), (1.0 - c.a) * df
    raise ValidationError(f"rate_partials: {type(dyn).__name__} is not a rate unit; expected one of "
                    f"{', '.join(t.__name__ for t in RATE_DYNAMICS)}")
