"""Neuron models as ONNX subgraphs: one step of each model's discretised ODE.

Each lowering precomputes its per-neuron constants (decays from ``dt`` and
the discretisation) in float64 with numpy, casts them once to the model's
float type, and emits the step with the operation order of the torch
backend's step functions (``backends/torchsim/neurons.py``), so float64
exports agree with it to rounding and float32 exports to the last bits::

    LIF       v <- a*v + (1-a)*(v_leak + r*I);   z = v > v_th;   reset
    CubaLIF   i <- b*i + ((1-b)*w_in)*I;   v <- a*v + (1-a)*(v_leak + r*i);   z;   reset
    ALIF      v as LIF;   A = v_th + beta*adapt;   z = v > A;   reset(A);   adapt <- rho*adapt + z
    IF        v <- v + (dt*r)*I;   z;   reset
    LI        v <- a*v + (1-a)*(v_leak + r*I)
    WC euler  s = sigmoid(I - mu);   x <- x + (dt/tau)*((1 - r*x)*s - x)
    WC exact  s as above;  q = 1 + r*s;  x_inf = s/q;  x <- x_inf + (x - x_inf)*exp((q/tau)*(-dt))
    RateUnit  x <- a*x + (1-a)*f(I + bias),  or  x = f(I + bias) when tau is None

``a = 1 - dt/tau`` (euler) or ``exp(-dt/tau)`` (exact).  Spikes are Heaviside:
``z = Cast(Greater(v, threshold))``.  Resets use the comparison directly:
``Where(z, v_reset, v)`` (zero) and ``Where(z, v - threshold, v)`` (subtract),
which equal the torch backend's ``v*(1-z) + v_reset*z`` and ``v - z*threshold``
exactly for 0/1 spikes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ntgraph.ir import Population
from ntgraph.models import ALIF, IF, LI, LIF, CubaLIF, NeuronModel, RateUnit, WilsonCowan

from .builder import GraphBuilder, ModelContext

__all__ = ["NeuronLowering", "NEURON_LOWERINGS", "decay"]

#: (output, next state by variable, every recordable value by variable)
StepResult = tuple[str, dict[str, str], dict[str, str]]


def decay(tau: np.ndarray, dt: float, discretization: str) -> np.ndarray:
    """Per-step decay of time constant ``tau`` (s), in float64: ``1 - dt/tau`` (euler) or ``exp(-dt/tau)`` (exact)."""
    tau = np.asarray(tau, dtype=np.float64)
    return 1.0 - dt / tau if discretization == "euler" else np.exp(-dt / tau)


class NeuronLowering:
    """Base class: the constants of one population and its step as ONNX nodes.

    ``state_vars`` are the variables carried from step to step (exported as
    named state tensors); ``initial_state()`` gives their values at t=0, one
    per neuron.
    """

    model_type: ClassVar[type[NeuronModel]]

    def __init__(self, ctx: ModelContext, node_id: str, prefix: str, population: Population, *, dt: float,
                 discretization: str) -> None:
        self.ctx = ctx
        self.node_id = node_id
        self.prefix = prefix
        self.model: Any = population.model
        self.size = population.size
        self.dt = float(dt)
        self.discretization = discretization

    def setup(self) -> None:
        """Create the population's constants (initializers); called once the interface names are taken."""
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------
    def p(self, name: str) -> np.ndarray:
        """A model parameter as a float64 array (one value per neuron)."""
        return np.asarray(getattr(self.model, name), dtype=np.float64)

    def const(self, what: str, values: Any, doc: str = "") -> str:
        return self.ctx.const(f"{self.prefix}.{what}", values, doc or f"Population '{self.node_id}': {what}")

    def scalar(self, what: str, value: float) -> str:
        return self.ctx.const(what, value, f"the constant {value!r}")

    def t(self, what: str) -> str:
        """Name of an intermediate tensor of this population."""
        return f"{self.prefix}.{what}"

    def decay_consts(self, tau_name: str, short: str) -> tuple[str, str]:
        """Initializers ``decay`` (``a``) and ``1 - a`` of time constant ``tau_name``."""
        a = decay(self.p(tau_name), self.dt, self.discretization)
        return (self.const(f"decay_{short}", a, f"Population '{self.node_id}': a = {self._decay_text(tau_name)}"),
                self.const(f"gain_{short}", 1.0 - a, f"Population '{self.node_id}': 1 - a for {tau_name}"))

    def _decay_text(self, tau_name: str) -> str:
        return f"1 - dt/{tau_name}" if self.discretization == "euler" else f"exp(-dt/{tau_name})"

    def leak(self, b: GraphBuilder, v: str, current: str, a: str, one_minus_a: str, v_leak: str, r: str, out: str) -> str:
        """``a*v + (1-a)*(v_leak + r*I)`` in the torch backend's operation order."""
        drive = b.add(v_leak, b.mul(r, current, self.t("r_I")), self.t("v_inf"))
        return b.add(b.mul(a, v, self.t(f"{out}_decayed")), b.mul(one_minus_a, drive, self.t(f"{out}_input")), self.t(out))

    def reset_const(self) -> str:
        """The ``v_reset`` initializer, needed by the zero reset only ("" for the subtract reset)."""
        return self.const("v_reset", self.p("v_reset")) if self.model.reset == "zero" else ""

    def spike_and_reset(self, b: GraphBuilder, v: str, threshold: str, v_reset: str, mode: str) -> tuple[str, str]:
        """``z = v > threshold`` as a float, and the reset ``v`` (``Where`` on the comparison)."""
        fired = b.greater(v, threshold, self.t("fired"))
        z = b.to_float(fired, self.t("spikes"))
        if mode == "zero":
            v = b.where(fired, v_reset, v, self.t("v"))
        else:
            v = b.where(fired, b.sub(v, threshold, self.t("v_minus_th")), v, self.t("v"))
        return z, v

    # -- what each model provides ------------------------------------------------------
    @property
    def state_vars(self) -> tuple[str, ...]:
        return tuple(self.model.state_vars)

    def initial_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def step(self, b: GraphBuilder, current: str, state: dict[str, str]) -> StepResult:
        raise NotImplementedError


class LIFLowering(NeuronLowering):
    model_type = LIF

    def setup(self) -> None:
        self.a, self.one_minus_a = self.decay_consts("tau_mem", "mem")
        self.v_th, self.v_leak = self.const("v_th", self.p("v_th")), self.const("v_leak", self.p("v_leak"))
        self.v_reset, self.r = self.reset_const(), self.const("r", self.p("r"))

    def initial_state(self) -> dict[str, np.ndarray]:
        return {"v": self.p("v_leak")}

    def step(self, b: GraphBuilder, current: str, state: dict[str, str]) -> StepResult:
        v = self.leak(b, state["v"], current, self.a, self.one_minus_a, self.v_leak, self.r, "v_pre")
        z, v = self.spike_and_reset(b, v, self.v_th, self.v_reset, self.model.reset)
        return z, {"v": v}, {"spikes": z, "v": v}


class CubaLIFLowering(NeuronLowering):
    model_type = CubaLIF

    def setup(self) -> None:
        b_syn = decay(self.p("tau_syn"), self.dt, self.discretization)
        self.b_syn = self.const("decay_syn", b_syn, f"Population '{self.node_id}': b = {self._decay_text('tau_syn')}")
        self.syn_gain = self.const("gain_syn", (1.0 - b_syn) * self.p("w_in"), f"Population '{self.node_id}': (1 - b)*w_in")
        self.a, self.one_minus_a = self.decay_consts("tau_mem", "mem")
        self.v_th, self.v_leak = self.const("v_th", self.p("v_th")), self.const("v_leak", self.p("v_leak"))
        self.v_reset, self.r = self.reset_const(), self.const("r", self.p("r"))

    def initial_state(self) -> dict[str, np.ndarray]:
        return {"i": np.zeros(self.size), "v": self.p("v_leak")}

    def step(self, b: GraphBuilder, current: str, state: dict[str, str]) -> StepResult:
        i = b.add(b.mul(self.b_syn, state["i"], self.t("i_decayed")), b.mul(self.syn_gain, current, self.t("i_input")),
                  self.t("i"))
        v = self.leak(b, state["v"], i, self.a, self.one_minus_a, self.v_leak, self.r, "v_pre")
        z, v = self.spike_and_reset(b, v, self.v_th, self.v_reset, self.model.reset)
        return z, {"i": i, "v": v}, {"spikes": z, "i": i, "v": v}


class ALIFLowering(NeuronLowering):
    model_type = ALIF

    def setup(self) -> None:
        self.a, self.one_minus_a = self.decay_consts("tau_mem", "mem")
        rho = decay(self.p("tau_adapt"), self.dt, self.discretization)
        self.rho = self.const("decay_adapt", rho, f"Population '{self.node_id}': rho = {self._decay_text('tau_adapt')}")
        self.beta, self.v_th = self.const("beta", self.p("beta")), self.const("v_th", self.p("v_th"))
        self.v_leak, self.v_reset = self.const("v_leak", self.p("v_leak")), self.reset_const()
        self.r = self.const("r", self.p("r"))

    def initial_state(self) -> dict[str, np.ndarray]:
        return {"v": self.p("v_leak"), "a": np.zeros(self.size)}

    def step(self, b: GraphBuilder, current: str, state: dict[str, str]) -> StepResult:
        v = self.leak(b, state["v"], current, self.a, self.one_minus_a, self.v_leak, self.r, "v_pre")
        threshold = b.add(self.v_th, b.mul(self.beta, state["a"], self.t("beta_a")), self.t("threshold"))
        z, v = self.spike_and_reset(b, v, threshold, self.v_reset, self.model.reset)
        adapt = b.add(b.mul(self.rho, state["a"], self.t("a_decayed")), z, self.t("a"))
        return z, {"v": v, "a": adapt}, {"spikes": z, "v": v, "a": adapt}


class IFLowering(NeuronLowering):
    model_type = IF

    def setup(self) -> None:
        self.gain = self.const("dt_r", self.dt * self.p("r"), f"Population '{self.node_id}': dt*r")
        self.v_th, self.v_reset = self.const("v_th", self.p("v_th")), self.reset_const()

    def initial_state(self) -> dict[str, np.ndarray]:
        return {"v": self.p("v_reset")}

    def step(self, b: GraphBuilder, current: str, state: dict[str, str]) -> StepResult:
        v = b.add(state["v"], b.mul(self.gain, current, self.t("v_input")), self.t("v_pre"))
        z, v = self.spike_and_reset(b, v, self.v_th, self.v_reset, self.model.reset)
        return z, {"v": v}, {"spikes": z, "v": v}


class LILowering(NeuronLowering):
    model_type = LI

    def setup(self) -> None:
        self.a, self.one_minus_a = self.decay_consts("tau_mem", "mem")
        self.v_leak, self.r = self.const("v_leak", self.p("v_leak")), self.const("r", self.p("r"))

    def initial_state(self) -> dict[str, np.ndarray]:
        return {"v": self.p("v_leak")}

    def step(self, b: GraphBuilder, current: str, state: dict[str, str]) -> StepResult:
        v = self.leak(b, state["v"], current, self.a, self.one_minus_a, self.v_leak, self.r, "v")
        return v, {"v": v}, {"v": v}


class WilsonCowanLowering(NeuronLowering):
    model_type = WilsonCowan

    def setup(self) -> None:
        self.mu, self.r = self.const("mu", self.p("mu")), self.const("r", self.p("r"))
        self.one = self.scalar("one", 1.0)
        if self.discretization == "euler":
            self.dt_over_tau = self.const("dt_over_tau", self.dt / self.p("tau"), f"Population '{self.node_id}': dt/tau")
        else:
            self.tau = self.const("tau", self.p("tau"))
            self.minus_dt = self.scalar("minus_dt", -self.dt)

    def initial_state(self) -> dict[str, np.ndarray]:
        return {"rate": np.zeros(self.size)}

    def step(self, b: GraphBuilder, current: str, state: dict[str, str]) -> StepResult:
        x = state["rate"]
        s = b.op("Sigmoid", [b.sub(current, self.mu, self.t("I_minus_mu"))], self.t("s"))
        if self.discretization == "euler":
            active = b.mul(b.sub(self.one, b.mul(self.r, x, self.t("r_x")), self.t("not_refractory")), s,
                           self.t("activation"))
            dx = b.sub(active, x, self.t("dx"))  # == -x + active exactly
            x = b.add(x, b.mul(self.dt_over_tau, dx, self.t("dx_scaled")), self.t("rate"))
        else:
            q = b.add(self.one, b.mul(self.r, s, self.t("r_s")), self.t("one_plus_r_s"))
            k = b.div(q, self.tau, self.t("k"))
            x_inf = b.div(s, q, self.t("x_inf"))
            e = b.op("Exp", [b.mul(k, self.minus_dt, self.t("minus_k_dt"))], self.t("decay"))
            x = b.add(x_inf, b.mul(b.sub(x, x_inf, self.t("x_minus_inf")), e, self.t("x_decayed")), self.t("rate"))
        return x, {"rate": x}, {"rate": x}


class RateUnitLowering(NeuronLowering):
    model_type = RateUnit

    def setup(self) -> None:
        self.bias = self.const("bias", self.p("bias"))
        if self.leaky:
            self.a, self.one_minus_a = self.decay_consts("tau", "rate")

    @property
    def leaky(self) -> bool:
        return self.model.tau is not None

    @property
    def state_vars(self) -> tuple[str, ...]:
        """An instantaneous unit (``tau=None``) carries no state from step to step."""
        return ("rate",) if self.leaky else ()

    def initial_state(self) -> dict[str, np.ndarray]:
        return {"rate": np.zeros(self.size)} if self.leaky else {}

    def step(self, b: GraphBuilder, current: str, state: dict[str, str]) -> StepResult:
        pre = b.add(current, self.bias, self.t("pre"))
        f = b.op("Sigmoid" if self.model.activation == "sigmoid" else "Tanh", [pre], self.t("f" if self.leaky else "rate"))
        if not self.leaky:
            return f, {}, {"rate": f}
        x = b.add(b.mul(self.a, state["rate"], self.t("rate_decayed")), b.mul(self.one_minus_a, f, self.t("rate_input")),
                  self.t("rate"))
        return x, {"rate": x}, {"rate": x}


NEURON_LOWERINGS: tuple[type[NeuronLowering], ...] = (
    LIFLowering, CubaLIFLowering, ALIFLowering, IFLowering, LILowering, WilsonCowanLowering, RateUnitLowering,
)
