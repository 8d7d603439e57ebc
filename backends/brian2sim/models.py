r"""Neuron models as Brian2 code: per-step update, threshold, reset, in ntgraph's exact arithmetic.

ntgraph's step is a discrete map (``docs/semantics.md``), not an ODE to be
integrated, so no model here has a ``dv/dt`` line.  Every variable is declared
as a plain state variable (``v : 1``) and the step is *abstract code* run once
per time step with ``run_regularly``; Brian2's own ``threshold`` and ``reset``
then spike and reset, exactly as ntgraph does after the update::

    update (run_regularly)      v = a*v + oma*(v_leak + r*I);  z = 0
    threshold                   v > v_th                (strict, as ntgraph)
    reset                       v = v_reset; z = 1      (reset="zero")
                                v = v - v_th; z = 1     (reset="subtract")

The decays are computed once in numpy float64 with the torch backend's own
expressions (``a = 1 - dt/tau`` for euler, ``exp(-dt/tau)`` for exact, and
``oma = 1 - a``), and every update is written with the same operation order
as :mod:`backends.torchsim.neurons`, so in float64 the two agree to the last
bit for the neuron arithmetic; only the summation order of a projection's
weighted sum (Brian2's summed variables vs a BLAS matrix product) may differ,
by a few units in the last place.

Variable names avoid Brian2's reserved ``i``, ``j``, ``t``, ``dt``, ``N`` and
``xi``: CubaLIF's synaptic current is ``isyn`` and ALIF's adaptation ``adapt``.
Every population has ``I`` (the summed input current of the step, recordable
as a debugging aid) and one ``I_<k>`` per incoming projection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ntgraph.ir import Population
from ntgraph.models import ALIF, IF, LI, LIF, CubaLIF, NeuronModel, RateUnit, WilsonCowan
from ntgraph.registry import LoweringTable

__all__ = ["NeuronCode", "MODEL_LOWERINGS", "neuron_code", "decay"]


@dataclass
class NeuronCode:
    """Everything Brian2 needs to run one population's neuron model.

    ``params``: constant per-neuron float64 arrays (declared ``(constant)``);
    ``initial``: state variables and their initial per-neuron values;
    ``update``: abstract code run once per step after ``I`` is summed;
    ``threshold``/``reset``: Brian2's spike condition and reset code (None
    for non-spiking models); ``after_reset``: code run after the reset
    (ALIF's adaptation); ``output``: the Brian2 variable projections read;
    ``variables``: ntgraph variable name -> Brian2 variable name, for probes.
    """

    params: dict[str, np.ndarray]
    initial: dict[str, np.ndarray]
    update: list[str]
    output: str
    variables: dict[str, str]
    threshold: Optional[str] = None
    reset: Optional[str] = None
    after_reset: list[str] = field(default_factory=list)


def decay(tau: np.ndarray, dt: float, discretization: str) -> np.ndarray:
    """Per-step decay, as the torch backend computes it: ``1 - dt/tau`` (euler) or ``exp(-dt/tau)`` (exact)."""
    tau = np.asarray(tau, dtype=np.float64)
    return 1.0 - dt / tau if discretization == "euler" else np.exp(-dt / tau)


def _p(model: NeuronModel, name: str) -> np.ndarray:
    return np.array(getattr(model, name), dtype=np.float64)


def _reset_code(model: NeuronModel, threshold_var: str) -> str:
    if model.reset == "zero":
        return "v = v_reset\nz = 1"
    return f"v = v - {threshold_var}\nz = 1"


MODEL_LOWERINGS = LoweringTable("brian2")


@MODEL_LOWERINGS.register(LIF)
def _lif(model: LIF, dt: float, discretization: str) -> NeuronCode:
    a = decay(model.tau_mem, dt, discretization)
    return NeuronCode(
        params={"a_m": a, "oma_m": 1.0 - a, "v_th": _p(model, "v_th"), "v_leak": _p(model, "v_leak"),
                "v_reset": _p(model, "v_reset"), "r": _p(model, "r")},
        initial={"v": _p(model, "v_leak"), "z": np.zeros_like(a)},
        update=["v = a_m*v + oma_m*(v_leak + r*I)", "z = 0"],
        threshold="v > v_th", reset=_reset_code(model, "v_th"),
        output="z", variables={"spikes": "z", "v": "v"},
    )


@MODEL_LOWERINGS.register(CubaLIF)
def _cuba(model: CubaLIF, dt: float, discretization: str) -> NeuronCode:
    a = decay(model.tau_mem, dt, discretization)
    b = decay(model.tau_syn, dt, discretization)
    return NeuronCode(
        params={"a_m": a, "oma_m": 1.0 - a, "b_s": b, "omb_s": 1.0 - b, "w_in": _p(model, "w_in"),
                "v_th": _p(model, "v_th"), "v_leak": _p(model, "v_leak"), "v_reset": _p(model, "v_reset"),
                "r": _p(model, "r")},
        initial={"isyn": np.zeros_like(a), "v": _p(model, "v_leak"), "z": np.zeros_like(a)},
        # torch: i = b*i + (1 - b)*w_in*I  -> ((1-b)*w_in)*I, left to right
        update=["isyn = b_s*isyn + omb_s*w_in*I", "v = a_m*v + oma_m*(v_leak + r*isyn)", "z = 0"],
        threshold="v > v_th", reset=_reset_code(model, "v_th"),
        output="z", variables={"spikes": "z", "i": "isyn", "v": "v"},
    )


@MODEL_LOWERINGS.register(ALIF)
def _alif(model: ALIF, dt: float, discretization: str) -> NeuronCode:
    a = decay(model.tau_mem, dt, discretization)
    rho = decay(model.tau_adapt, dt, discretization)
    return NeuronCode(
        params={"a_m": a, "oma_m": 1.0 - a, "rho": rho, "beta": _p(model, "beta"), "v_th": _p(model, "v_th"),
                "v_leak": _p(model, "v_leak"), "v_reset": _p(model, "v_reset"), "r": _p(model, "r")},
        initial={"v": _p(model, "v_leak"), "adapt": np.zeros_like(a), "thr": _p(model, "v_th"), "z": np.zeros_like(a)},
        # the threshold uses the adaptation of the previous step; subtract reset removes it
        update=["v = a_m*v + oma_m*(v_leak + r*I)", "thr = v_th + beta*adapt", "z = 0"],
        threshold="v > thr", reset=_reset_code(model, "thr"),
        after_reset=["adapt = rho*adapt + z"],
        output="z", variables={"spikes": "z", "v": "v", "a": "adapt"},
    )


@MODEL_LOWERINGS.register(IF)
def _if(model: IF, dt: float, discretization: str) -> NeuronCode:
    gain = dt * _p(model, "r")
    return NeuronCode(
        params={"gain": gain, "v_th": _p(model, "v_th"), "v_reset": _p(model, "v_reset")},
        initial={"v": _p(model, "v_reset"), "z": np.zeros_like(gain)},
        update=["v = v + gain*I", "z = 0"],
        threshold="v > v_th", reset=_reset_code(model, "v_th"),
        output="z", variables={"spikes": "z", "v": "v"},
    )


@MODEL_LOWERINGS.register(LI)
def _li(model: LI, dt: float, discretization: str) -> NeuronCode:
    a = decay(model.tau_mem, dt, discretization)
    return NeuronCode(
        params={"a_m": a, "oma_m": 1.0 - a, "v_leak": _p(model, "v_leak"), "r": _p(model, "r")},
        initial={"v": _p(model, "v_leak")},
        update=["v = a_m*v + oma_m*(v_leak + r*I)"],
        output="v", variables={"v": "v"},
    )


@MODEL_LOWERINGS.register(WilsonCowan)
def _wilson_cowan(model: WilsonCowan, dt: float, discretization: str) -> NeuronCode:
    tau = _p(model, "tau")
    params = {"mu": _p(model, "mu"), "rr": _p(model, "r"), "tau_wc": tau}
    sig = "s_wc = 1.0/(1.0 + exp(-(I - mu)))"
    if discretization == "euler":
        params["dt_tau"] = dt / tau
        update = [sig, "x = x + dt_tau*(-x + (1.0 - rr*x)*s_wc)"]
    else:
        params["dt_s"] = np.full_like(tau, dt)
        update = [sig, "k_wc = (1.0 + rr*s_wc)/tau_wc", "xinf_wc = s_wc/(1.0 + rr*s_wc)",
                  "x = xinf_wc + (x - xinf_wc)*exp(-k_wc*dt_s)"]
    return NeuronCode(params=params, initial={"x": np.zeros_like(tau), "s_wc": np.zeros_like(tau),
                                              "k_wc": np.zeros_like(tau), "xinf_wc": np.zeros_like(tau)},
                      update=update, output="x", variables={"rate": "x"})


@MODEL_LOWERINGS.register(RateUnit)
def _rate(model: RateUnit, dt: float, discretization: str) -> NeuronCode:
    bias = _p(model, "bias")
    f = "1.0/(1.0 + exp(-(I + bias)))" if model.activation == "sigmoid" else "tanh(I + bias)"
    params = {"bias": bias}
    if model.tau is None:
        update = [f"x = {f}"]
    else:
        a = decay(model.tau, dt, discretization)
        params.update({"a_x": a, "oma_x": 1.0 - a})
        update = [f"x = a_x*x + oma_x*{f}"]
    return NeuronCode(params=params, initial={"x": np.zeros_like(bias)}, update=update, output="x",
                      variables={"rate": "x"})


def neuron_code(node_id: str, population: Population, dt: float, discretization: str) -> NeuronCode:
    """The Brian2 code of ``population``; raises UnsupportedNodeError for an unknown model."""
    fn: Callable[..., NeuronCode] = MODEL_LOWERINGS.lookup(population.model, node_id)
    return fn(population.model, dt, discretization)
