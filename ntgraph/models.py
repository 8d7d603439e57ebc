r"""Neuron models: continuous-time parameter dataclasses with their ODEs.

Every model is a frozen dataclass of per-neuron parameters.  A parameter may be
given as a scalar, which :class:`~ntgraph.ir.Population` broadcasts to one value
per neuron, or as an array of one value per neuron (heterogeneity is normal).
Time constants are in seconds.  Voltages, currents and rates are in the model's
own (dimensionless) units; ``r`` converts input current to voltage.

Discretisation (compile option ``discretization``) with step ``dt``:

* ``"euler"`` (forward Euler, the NIR and Lava convention): a leak
  ``tau dx/dt = x_inf - x`` becomes ``x <- x + dt/tau * (x_inf - x)``, i.e.
  ``x <- a*x + (1-a)*x_inf`` with ``a = 1 - dt/tau``.
* ``"exact"`` (exponential integration, input held constant over the step):
  the same update with ``a = exp(-dt/tau)``.

Within a step the input ``I[t]`` is the sum of all projections into the
population (see ``docs/semantics.md`` for the whole step order).  Spikes are
``z = v > v_th`` (strict), then the reset is applied:
``"zero"``: ``v <- v_reset`` where ``z``; ``"subtract"``: ``v <- v - v_th`` where ``z``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ._data import IRData, frozen_array, param
from .errors import ValidationError

__all__ = [
    "NeuronModel",
    "LIF",
    "CubaLIF",
    "ALIF",
    "IF",
    "LI",
    "WilsonCowan",
    "RateUnit",
    "RESET_MODES",
    "ACTIVATIONS",
    "MODEL_TYPES",
]

RESET_MODES = ("zero", "subtract")
ACTIVATIONS = ("sigmoid", "tanh")


@dataclass(frozen=True, eq=False)
class NeuronModel(IRData):
    """Base class of neuron models.

    Class attributes describe the model to passes and backends:

    * ``spiking``: whether the population emits binary spikes;
    * ``state_vars``: names of the state variables, in update order;
    * ``output_var``: the variable that projections read and Outputs report
      (``"spikes"`` for spiking models, ``"v"`` for LI, ``"rate"`` for rate models).
    """

    spiking: ClassVar[bool] = False
    state_vars: ClassVar[tuple[str, ...]] = ()
    output_var: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name in self.param_names():
            value = getattr(self, name)
            if value is None:
                continue
            try:
                arr = frozen_array(value)
            except (TypeError, ValueError) as exc:
                raise ValidationError(
                    f"{type(self).__name__}.{name}: expected a number or an array of numbers, got {value!r}"
                ) from exc
            if arr.ndim > 1:
                raise ValidationError(
                    f"{type(self).__name__}.{name}: expected a scalar or one value per neuron (1-D), "
                    f"got an array of shape {arr.shape}"
                )
            self._set(name, arr)

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """Names of the per-neuron float parameters, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("per_neuron"))

    @classmethod
    def param_info(cls, name: str) -> dict[str, Any]:
        """Unit, sign requirement and doc of a per-neuron parameter."""
        for f in dataclasses.fields(cls):
            if f.name == name and f.metadata.get("per_neuron"):
                return dict(f.metadata)
        raise KeyError(name)

    @property
    def recordable(self) -> tuple[str, ...]:
        """Variables a probe can record: the output and every state variable."""
        return tuple(dict.fromkeys((self.output_var, *self.state_vars)))

    def broadcast(self, size: int) -> "NeuronModel":
        """Return a copy whose parameters all have shape ``(size,)``.

        Raises :class:`ValidationError` if an array parameter has another length.
        """
        changes = {}
        for name in self.param_names():
            arr = getattr(self, name)
            if arr is None:
                continue
            if arr.ndim == 0:
                changes[name] = np.full(size, float(arr))
            elif arr.shape != (size,):
                raise ValidationError(
                    f"{type(self).__name__}.{name}: expected a scalar or {size} values (one per neuron), "
                    f"got an array of shape {arr.shape}"
                )
        return self.replace(**changes) if changes else self

    def describe(self) -> str:
        """Short human-readable description: the model name and its parameters."""
        parts = [type(self).__name__]
        for name in self.param_names():
            arr = getattr(self, name)
            if arr is None:
                continue
            parts.append(f"{name}={_fmt_param(arr, self.param_info(name)['unit'])}")
        for f in dataclasses.fields(self):
            if not f.metadata.get("per_neuron"):
                parts.append(f"{f.name}={getattr(self, f.name)}")
        return " ".join(parts)


def _fmt_param(arr: np.ndarray, unit: str) -> str:
    flat = np.asarray(arr).ravel()
    if flat.size == 0:
        return "[]"
    lo, hi = float(flat.min()), float(flat.max())

    def one(x: float) -> str:
        if unit == "s":
            return f"{x * 1e3:g}ms"
        return f"{x:g}"

    return one(lo) if lo == hi else f"[{one(lo)}..{one(hi)}]"


def _check_choice(model: NeuronModel, attr: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValidationError(
            f"{type(model).__name__}.{attr}: expected one of {', '.join(map(repr, choices))}, got {value!r}"
        )


@dataclass(frozen=True, eq=False)
class LIF(NeuronModel):
    r"""Leaky integrate-and-fire neuron.

    ODE: ``tau_mem * dv/dt = (v_leak - v) + r * I``; spike when ``v > v_th``.

    Step (``a = 1 - dt/tau_mem`` for euler, ``exp(-dt/tau_mem)`` for exact)::

        v <- a*v + (1 - a)*(v_leak + r*I[t])
        z  = v > v_th
        v <- v_reset where z          (reset="zero")
        v <- v - v_th where z         (reset="subtract")

    The initial state is ``v = v_leak``.
    """

    tau_mem: Any = param(unit="s", positive=True, doc="membrane time constant")
    v_th: Any = param(1.0, doc="firing threshold")
    v_leak: Any = param(0.0, doc="leak (resting) potential")
    v_reset: Any = param(0.0, doc="reset potential (reset='zero')")
    r: Any = param(1.0, doc="input resistance")
    reset: str = "zero"

    spiking: ClassVar[bool] = True
    state_vars: ClassVar[tuple[str, ...]] = ("v",)
    output_var: ClassVar[str] = "spikes"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice(self, "reset", self.reset, RESET_MODES)


@dataclass(frozen=True, eq=False)
class CubaLIF(NeuronModel):
    r"""Current-based LIF neuron: an exponential synaptic current drives the membrane.

    ODEs (NIR's CubaLIF)::

        tau_syn * di/dt = -i + w_in * I
        tau_mem * dv/dt = (v_leak - v) + r * i

    Step (``b`` from ``tau_syn`` and ``a`` from ``tau_mem`` as in :mod:`ntgraph.models`).
    The current is updated first and the membrane uses the new current::

        i <- b*i + (1 - b)*w_in*I[t]
        v <- a*v + (1 - a)*(v_leak + r*i)
        z  = v > v_th, then the reset as in LIF (i is not reset)

    The initial state is ``i = 0, v = v_leak``.
    """

    tau_syn: Any = param(unit="s", positive=True, doc="synaptic current time constant")
    tau_mem: Any = param(unit="s", positive=True, doc="membrane time constant")
    v_th: Any = param(1.0, doc="firing threshold")
    v_leak: Any = param(0.0, doc="leak (resting) potential")
    v_reset: Any = param(0.0, doc="reset potential (reset='zero')")
    r: Any = param(1.0, doc="input resistance")
    w_in: Any = param(1.0, doc="input current weight")
    reset: str = "zero"

    spiking: ClassVar[bool] = True
    state_vars: ClassVar[tuple[str, ...]] = ("i", "v")
    output_var: ClassVar[str] = "spikes"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice(self, "reset", self.reset, RESET_MODES)


@dataclass(frozen=True, eq=False)
class ALIF(NeuronModel):
    r"""Adaptive LIF neuron (Bellec et al. 2020): each spike raises the threshold.

    ODEs::

        tau_mem * dv/dt = (v_leak - v) + r * I
        da/dt = -a / tau_adapt + sum_k delta(t - t_k)
        A = v_th + beta * a                  (adaptive threshold)

    Step (``a_m`` from ``tau_mem``, ``rho`` from ``tau_adapt``)::

        v <- a_m*v + (1 - a_m)*(v_leak + r*I[t])
        A  = v_th + beta*a                   (a from the previous step)
        z  = v > A
        v <- v_reset where z   (reset="zero")
        v <- v - A where z     (reset="subtract": the adaptive threshold is removed)
        a <- rho*a + z

    The initial state is ``v = v_leak, a = 0``.
    """

    tau_mem: Any = param(unit="s", positive=True, doc="membrane time constant")
    tau_adapt: Any = param(unit="s", positive=True, doc="threshold adaptation time constant")
    beta: Any = param(1.8, nonnegative=True, doc="threshold increase per unit of adaptation")
    v_th: Any = param(1.0, doc="baseline firing threshold")
    v_leak: Any = param(0.0, doc="leak (resting) potential")
    v_reset: Any = param(0.0, doc="reset potential (reset='zero')")
    r: Any = param(1.0, doc="input resistance")
    reset: str = "subtract"

    spiking: ClassVar[bool] = True
    state_vars: ClassVar[tuple[str, ...]] = ("v", "a")
    output_var: ClassVar[str] = "spikes"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice(self, "reset", self.reset, RESET_MODES)


@dataclass(frozen=True, eq=False)
class IF(NeuronModel):
    r"""Integrate-and-fire neuron without leak (NIR's IF).

    ODE: ``dv/dt = r * I``; spike when ``v > v_th``.  ``r`` has units of 1/s, so
    ``r = 1/dt`` gives the common per-step form ``v <- v + I[t]``.

    Step (euler and exact coincide for an input held over the step)::

        v <- v + dt*r*I[t]
        z  = v > v_th, then the reset as in LIF

    The initial state is ``v = v_reset``.
    """

    r: Any = param(1.0, unit="1/s", doc="input gain (dv/dt = r*I)")
    v_th: Any = param(1.0, doc="firing threshold")
    v_reset: Any = param(0.0, doc="reset and initial potential")
    reset: str = "zero"

    spiking: ClassVar[bool] = True
    state_vars: ClassVar[tuple[str, ...]] = ("v",)
    output_var: ClassVar[str] = "spikes"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice(self, "reset", self.reset, RESET_MODES)


@dataclass(frozen=True, eq=False)
class LI(NeuronModel):
    r"""Leaky integrator: the non-spiking readout (NIR's LI).

    ODE: ``tau_mem * dv/dt = (v_leak - v) + r * I``.  The output is ``v``.

    Step: ``v <- a*v + (1 - a)*(v_leak + r*I[t])``.  The initial state is ``v = v_leak``.
    """

    tau_mem: Any = param(unit="s", positive=True, doc="membrane time constant")
    v_leak: Any = param(0.0, doc="leak (resting) potential")
    r: Any = param(1.0, doc="input resistance")

    state_vars: ClassVar[tuple[str, ...]] = ("v",)
    output_var: ClassVar[str] = "v"


@dataclass(frozen=True, eq=False)
class WilsonCowan(NeuronModel):
    r"""Wilson-Cowan firing-rate unit in NeuroTorch's form.

    ODE, with ``s = sigmoid(I - mu)`` the activation of the total input ``I``::

        tau * dx/dt = -x + (1 - r*x) * s

    ``x`` is the fraction of active cells, ``mu`` the activation threshold and
    ``r`` the refractory fraction.  All three of ``tau``, ``mu`` and ``r`` may be
    learnable (``Population(learnable=("tau", "mu", "r"))``).

    Step, euler::

        x <- x + dt/tau * (-x + (1 - r*x)*s)

    exact (the ODE is linear in ``x`` for ``s`` held over the step)::

        k = (1 + r*s)/tau,  x_inf = s/(1 + r*s)
        x <- x_inf + (x - x_inf)*exp(-k*dt)

    The initial state is ``x = 0``; the output ``rate`` is ``x``.
    """

    tau: Any = param(unit="s", positive=True, doc="time constant")
    mu: Any = param(0.0, doc="activation threshold")
    r: Any = param(0.0, nonnegative=True, doc="refractory fraction")

    state_vars: ClassVar[tuple[str, ...]] = ("rate",)
    output_var: ClassVar[str] = "rate"


@dataclass(frozen=True, eq=False)
class RateUnit(NeuronModel):
    r"""Plain sigmoid or tanh rate unit, leaky or instantaneous.

    With a time constant: ``tau * dx/dt = -x + f(I + bias)``, stepped as
    ``x <- a*x + (1 - a)*f(I[t] + bias)`` (``a`` from ``tau``), initial ``x = 0``.
    With ``tau=None`` the unit is instantaneous: ``x = f(I[t] + bias)``.
    ``f`` is ``activation``: ``"sigmoid"`` or ``"tanh"``.
    """

    tau: Any = param(None, unit="s", positive=True, doc="time constant (None: instantaneous)")
    bias: Any = param(0.0, doc="bias added to the input")
    activation: str = "sigmoid"

    state_vars: ClassVar[tuple[str, ...]] = ("rate",)
    output_var: ClassVar[str] = "rate"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice(self, "activation", self.activation, ACTIVATIONS)


MODEL_TYPES: dict[str, type[NeuronModel]] = {
    cls.__name__: cls for cls in (LIF, CubaLIF, ALIF, IF, LI, WilsonCowan, RateUnit)
}
