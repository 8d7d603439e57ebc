"""Neuron dynamics of the torch backend: one module per IR neuron model.

Each module holds its model's per-neuron parameters (as ``nn.Parameter`` where
the population marks them learnable, else as buffers) and three pure pieces:

* :meth:`NeuronDynamics.initial_state` -> a tuple of ``[batch, n]`` tensors,
  in the order of the model's ``state_vars``;
* :meth:`NeuronDynamics.coefficients` -> the per-step constants (decays), once
  per forward, so learnable time constants stay differentiable;
* :meth:`NeuronDynamics.step` ``(I, state, coeffs) -> (output, state)`` for one
  time step, exactly as written in the model's docstring (``ntgraph.models``).

BPTT, truncated BPTT and e-prop all drive these same ``step`` functions.
Learnable time constants are clamped to ``>= dt`` and Wilson-Cowan's ``r`` and
ALIF's ``beta`` to ``>= 0`` inside :meth:`coefficients`, so no update can leave the valid range.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ntgraph.ir import Population
from ntgraph.models import ALIF, IF, LI, LIF, CubaLIF, NeuronModel, RateUnit, WilsonCowan

from .fused import FusedLIFStep
from .surrogates import Surrogate

__all__ = [
    "NeuronDynamics",
    "LIFDynamics",
    "CubaLIFDynamics",
    "ALIFDynamics",
    "IFDynamics",
    "LIDynamics",
    "WilsonCowanDynamics",
    "RateDynamics",
]

State = tuple[Tensor, ...]
TAU_PARAMS = ("tau_mem", "tau_syn", "tau_adapt", "tau")


class NeuronDynamics(nn.Module):
    """Base class: parameters of one population and its step function."""

    model_type: ClassVar[type[NeuronModel]]

    def __init__(self, node_id: str, population: Population, *, dt: float, discretization: str,
                 surrogate: Surrogate, detach_reset: bool) -> None:
        super().__init__()
        self.node_id = node_id
        self.model = population.model
        self.size = population.size
        self.learnable = tuple(population.learnable)
        self.dt = float(dt)
        self.discretization = discretization
        self.surrogate = surrogate
        self.detach_reset = detach_reset
        self.param_names = tuple(n for n in self.model.param_names() if getattr(self.model, n) is not None)
        for name in self.param_names:
            value = torch.tensor(np.array(getattr(self.model, name)), dtype=torch.float64)  # cast once by .to(dtype)
            if name in self.learnable:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    # -- pieces every model shares -------------------------------------------------
    @property
    def state_vars(self) -> tuple[str, ...]:
        return self.model.state_vars

    @property
    def output_var(self) -> str:
        return self.model.output_var

    def param(self, name: str) -> Tensor:
        return getattr(self, name)

    def time_constant(self, name: str) -> Tensor:
        """A time constant, clamped to ``>= dt`` (matters only when it is learnable)."""
        tau = self.param(name)
        return tau.clamp(min=self.dt) if name in self.learnable else tau

    def decay(self, name: str) -> Tensor:
        """Per-step decay ``a`` of time constant ``name``: ``1 - dt/tau`` (euler) or ``exp(-dt/tau)`` (exact)."""
        tau = self.time_constant(name)
        return 1.0 - self.dt / tau if self.discretization == "euler" else torch.exp(-self.dt / tau)

    #: When True, :meth:`spike` keeps its argument ``v - threshold`` in :attr:`captured`
    #: (e-prop reads the pseudo-derivative from it), and rate units keep ``(current, previous rate)``;
    #: off on the ordinary hot path.
    capture: bool = False
    captured: Any = None

    def spike(self, v: Tensor, threshold: Tensor) -> Tensor:
        """``z = v > threshold`` with the surrogate gradient."""
        x = v - threshold
        if self.capture:
            self.captured = x
        return self.surrogate(x)

    def reset(self, v: Tensor, z: Tensor, threshold: Tensor, v_reset: Tensor, mode: str) -> Tensor:
        """Apply the reset where ``z`` is 1.

        With ``detach_reset`` the reset path carries no gradient: ``"zero"``
        gives ``v*(1 - sg(z)) + v_reset*sg(z)`` and ``"subtract"`` gives
        ``v - sg(z*threshold)`` (``sg`` = stop-gradient), so for ALIF the
        adaptive threshold inside the reset is detached too.
        """
        if mode == "zero":
            zr = z.detach() if self.detach_reset else z
            return v * (1.0 - zr) + v_reset * zr
        removed = z * threshold
        return v - (removed.detach() if self.detach_reset else removed)

    def zeros(self, batch: int, like: Tensor) -> Tensor:
        return torch.zeros(batch, self.size, dtype=like.dtype, device=like.device)

    def full(self, batch: int, value: Tensor, like: Tensor) -> Tensor:
        return value.to(dtype=like.dtype, device=like.device).expand(batch, self.size).clone()

    # -- what each model provides -------------------------------------------------
    def initial_state(self, batch: int, like: Tensor) -> State:
        raise NotImplementedError

    def coefficients(self) -> Any:
        raise NotImplementedError

    def step(self, current: Tensor, state: State, c: Any) -> tuple[Tensor, State]:
        raise NotImplementedError

    def output_of(self, out: Tensor, state: State, var: str) -> Tensor:
        """The value of ``var`` (output or a state variable) after a step."""
        if var == self.output_var:
            return out
        return state[self.state_vars.index(var)]

    def to_model(self) -> NeuronModel:
        """The IR model with the current (possibly trained) parameter values."""
        changes = {}
        for name in self.learnable:
            value = self.time_constant(name) if name in TAU_PARAMS else self.param(name)
            if self.model.param_info(name)["nonnegative"]:  # Wilson-Cowan's r, ALIF's beta
                value = value.clamp(min=0.0)
            changes[name] = value.detach().cpu().double().numpy()
        return self.model.replace(**changes) if changes else self.model


class LIFCoeffs(NamedTuple):
    a: Tensor
    v_th: Tensor
    v_leak: Tensor
    v_reset: Tensor
    r: Tensor


class LIFDynamics(NeuronDynamics):
    """:class:`ntgraph.models.LIF`: ``v <- a*v + (1-a)*(v_leak + r*I)``, spike, reset."""

    model_type = LIF

    def initial_state(self, batch: int, like: Tensor) -> State:
        return (self.full(batch, self.v_leak, like),)

    def coefficients(self) -> LIFCoeffs:
        return LIFCoeffs(self.decay("tau_mem"), self.v_th, self.v_leak, self.v_reset, self.r)

    def step(self, current: Tensor, state: State, c: LIFCoeffs) -> tuple[Tensor, State]:
        (v,) = state
        if self.detach_reset and not self.learnable and not self.capture:
            # one autograd node per step with an exact hand-written backward (backends/torchsim/fused.py)
            z, v = FusedLIFStep.apply(current, v, c.a, c.v_leak, c.r, c.v_th, c.v_reset,
                                      self.model.reset == "zero", self.surrogate)
            return z, (v,)
        v = c.a * v + (1.0 - c.a) * (c.v_leak + c.r * current)
        z = self.spike(v, c.v_th)
        v = self.reset(v, z, c.v_th, c.v_reset, self.model.reset)
        return z, (v,)


class CubaLIFCoeffs(NamedTuple):
    b: Tensor
    a: Tensor
    v_th: Tensor
    v_leak: Tensor
    v_reset: Tensor
    r: Tensor
    w_in: Tensor


class CubaLIFDynamics(NeuronDynamics):
    """:class:`ntgraph.models.CubaLIF`: current first, then the membrane with the new current."""

    model_type = CubaLIF

    def initial_state(self, batch: int, like: Tensor) -> State:
        return (self.zeros(batch, like), self.full(batch, self.v_leak, like))

    def coefficients(self) -> CubaLIFCoeffs:
        return CubaLIFCoeffs(self.decay("tau_syn"), self.decay("tau_mem"), self.v_th, self.v_leak, self.v_reset,
                             self.r, self.w_in)

    def step(self, current: Tensor, state: State, c: CubaLIFCoeffs) -> tuple[Tensor, State]:
        i, v = state
        i = c.b * i + (1.0 - c.b) * c.w_in * current
        v = c.a * v + (1.0 - c.a) * (c.v_leak + c.r * i)
        z = self.spike(v, c.v_th)
        v = self.reset(v, z, c.v_th, c.v_reset, self.model.reset)
        return z, (i, v)


class ALIFCoeffs(NamedTuple):
    a: Tensor
    rho: Tensor
    beta: Tensor
    v_th: Tensor
    v_leak: Tensor
    v_reset: Tensor
    r: Tensor


class ALIFDynamics(NeuronDynamics):
    """:class:`ntgraph.models.ALIF`: threshold ``v_th + beta*a`` from the previous step's ``a``."""

    model_type = ALIF

    def initial_state(self, batch: int, like: Tensor) -> State:
        return (self.full(batch, self.v_leak, like), self.zeros(batch, like))

    def coefficients(self) -> ALIFCoeffs:
        beta = self.beta.clamp(min=0.0) if "beta" in self.learnable else self.beta
        return ALIFCoeffs(self.decay("tau_mem"), self.decay("tau_adapt"), beta, self.v_th, self.v_leak,
                          self.v_reset, self.r)

    def step(self, current: Tensor, state: State, c: ALIFCoeffs) -> tuple[Tensor, State]:
        v, adapt = state
        v = c.a * v + (1.0 - c.a) * (c.v_leak + c.r * current)
        threshold = c.v_th + c.beta * adapt
        z = self.spike(v, threshold)
        v = self.reset(v, z, threshold, c.v_reset, self.model.reset)
        adapt = c.rho * adapt + z
        return z, (v, adapt)


class IFCoeffs(NamedTuple):
    gain: Tensor
    v_th: Tensor
    v_reset: Tensor


class IFDynamics(NeuronDynamics):
    """:class:`ntgraph.models.IF`: ``v <- v + dt*r*I``, spike, reset."""

    model_type = IF

    def initial_state(self, batch: int, like: Tensor) -> State:
        return (self.full(batch, self.v_reset, like),)

    def coefficients(self) -> IFCoeffs:
        return IFCoeffs(self.dt * self.r, self.v_th, self.v_reset)

    def step(self, current: Tensor, state: State, c: IFCoeffs) -> tuple[Tensor, State]:
        (v,) = state
        v = v + c.gain * current
        z = self.spike(v, c.v_th)
        v = self.reset(v, z, c.v_th, c.v_reset, self.model.reset)
        return z, (v,)


class LICoeffs(NamedTuple):
    a: Tensor
    v_leak: Tensor
    r: Tensor


class LIDynamics(NeuronDynamics):
    """:class:`ntgraph.models.LI`: ``v <- a*v + (1-a)*(v_leak + r*I)``; the output is ``v``."""

    model_type = LI

    def initial_state(self, batch: int, like: Tensor) -> State:
        return (self.full(batch, self.v_leak, like),)

    def coefficients(self) -> LICoeffs:
        return LICoeffs(self.decay("tau_mem"), self.v_leak, self.r)

    def step(self, current: Tensor, state: State, c: LICoeffs) -> tuple[Tensor, State]:
        (v,) = state
        v = c.a * v + (1.0 - c.a) * (c.v_leak + c.r * current)
        return v, (v,)


class WilsonCowanCoeffs(NamedTuple):
    tau: Tensor
    mu: Tensor
    r: Tensor


class WilsonCowanDynamics(NeuronDynamics):
    """:class:`ntgraph.models.WilsonCowan`: ``tau dx/dt = -x + (1 - r*x)*sigmoid(I - mu)``."""

    model_type = WilsonCowan

    def initial_state(self, batch: int, like: Tensor) -> State:
        return (self.zeros(batch, like),)

    def coefficients(self) -> WilsonCowanCoeffs:
        r = self.r.clamp(min=0.0) if "r" in self.learnable else self.r
        return WilsonCowanCoeffs(self.time_constant("tau"), self.mu, r)

    def step(self, current: Tensor, state: State, c: WilsonCowanCoeffs) -> tuple[Tensor, State]:
        (x,) = state
        if self.capture:
            self.captured = (current, x)
        s = torch.sigmoid(current - c.mu)
        if self.discretization == "euler":
            x = x + self.dt / c.tau * (-x + (1.0 - c.r * x) * s)
        else:
            k = (1.0 + c.r * s) / c.tau
            x_inf = s / (1.0 + c.r * s)
            x = x_inf + (x - x_inf) * torch.exp(-k * self.dt)
        return x, (x,)


class RateCoeffs(NamedTuple):
    a: Optional[Tensor]
    bias: Tensor


class RateDynamics(NeuronDynamics):
    """:class:`ntgraph.models.RateUnit`: ``x <- a*x + (1-a)*f(I + bias)``, or ``f(I + bias)`` if ``tau`` is None."""

    model_type = RateUnit

    def initial_state(self, batch: int, like: Tensor) -> State:
        return (self.zeros(batch, like),)

    def coefficients(self) -> RateCoeffs:
        return RateCoeffs(None if self.model.tau is None else self.decay("tau"), self.bias)

    def step(self, current: Tensor, state: State, c: RateCoeffs) -> tuple[Tensor, State]:
        if self.capture:
            self.captured = (current, state[0])
        pre = current + c.bias
        f = torch.sigmoid(pre) if self.model.activation == "sigmoid" else torch.tanh(pre)
        if c.a is None:
            return f, (f,)
        (x,) = state
        x = c.a * x + (1.0 - c.a) * f
        return x, (x,)


DYNAMICS: tuple[type[NeuronDynamics], ...] = (
    LIFDynamics, CubaLIFDynamics, ALIFDynamics, IFDynamics, LIDynamics, WilsonCowanDynamics, RateDynamics,
)
