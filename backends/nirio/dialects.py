r"""Dialects: how each producer's NIR neuron nodes map onto ntgraph's models.

NIR defines continuous-time ODEs, but the files peers write encode their own
discrete-time simulators in those fields, each differently.  A *dialect*
reads a file the way its producer simulates it, so that ntgraph simulated at
``dt`` reproduces the producer step for step.  Each dialect describes a
neuron by its per-step coefficients (:func:`_coefficients`) and
:func:`_discrete` turns them into ntgraph parameters for the chosen ``dt`` and
``discretization``:

* a leak with per-step decay ``a`` becomes ``tau = dt/(1-a)`` (euler) or
  ``tau = -dt/ln(a)`` (exact), so ntgraph's decay is exactly ``a``;
* a per-step input gain ``g`` of the membrane (``v <- a*v + g*I + c``) becomes
  ``r = g/(1-a)`` and a constant drive ``c`` becomes ``v_leak = c/(1-a)``;
  the synaptic gain ``h`` of CubaLIF (``i <- b*i + h*I``) becomes ``w_in = h/(1-b)``;
  IF's per-step gain ``g`` (``v <- v + g*I``) becomes ``r = g/dt``.

==========  ============================================================================
dialect     per-step reading of the file (``f`` = value in the file)
==========  ============================================================================
nir         NIR's own continuous-time semantics: parameters copied unchanged
            (reset to ``v_reset``, strict threshold), any ``dt``.
snntorch    Euler at snnTorch's hard-coded ``dt_f = 1e-4``: ``a = 1 - dt_f/tau_f``,
            ``g = r_f*dt_f/tau_f`` (= 1, snnTorch's ``mem = beta*mem + input``),
            CubaLIF ``h = w_in_f*dt_f/tau_syn_f`` (= 1).  The reset mode is not in
            the file: snnTorch's default ``reset="subtract"`` with ``reset_delay=True``
            is assumed (one warning) unless ``reset=``/``reset_delay=`` are given.
            The delayed subtract reset (``mem[t] = beta*mem[t-1] + I[t] - thr*z[t-1]``)
            is reproduced exactly by a subtract-reset population plus one (LIF) or
            two (CubaLIF) one-to-one self-projections named ``<pop>.reset_delay``.
norse       Norse's ``to_nir`` writes ``tau_f = dt_n * tau`` (norse issue 411) and
            ``r = 1``; ``dt_n`` (the ``dt`` given to Norse, default 1e-3) is not in the
            file: pass ``dt=``.  ``a = 1 - dt_n^2/tau_f``, ``g = r_f*dt_n^2/tau_f``;
            LIFCell (CubaLIF) jumps its current by the input: ``h = w_in_f``;
            IAF adds the input per step: ``g = r_f``.  Reset to ``v_reset``.

Where the file holds float32 values derived from a peer's own parameters
(snnTorch's ``tau = dt/(1-beta)``, Norse's ``dt/tau_mem_inv``), the decay is
rounded back to float32, which recovers the peer's ``beta``/``1/tau`` exactly,
and a gain the peer fixes to 1 is taken as exactly 1.
rockpool    exact exponential decays at the ``dt_r`` hidden in ``r_f = tau*exp(-dt_r/tau)/dt_r``
            (recovered per neuron by solving ``u*exp(u) = 1/r_f``, ``u = dt_r/tau``):
            ``a = exp(-dt_r/tau_mem_f)``, ``b = exp(-dt_r/tau_syn_f)``, ``h = b``
            (the current decays after the input is added), ``g = 1``, ``c = v_leak_f``
            (LIFTorch, LIFNeuronTorch); LI is ExpSynTorch, ``g = b`` (``isyn = b*(isyn + x)``);
            subtract reset.  Rockpool's ``>=`` threshold and several spikes per step
            are not reproduced (documented divergences).
==========  ============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import nir
import numpy as np

from ntgraph.errors import UnsupportedNodeError, ValidationError
from ntgraph.ir import OneToOne, Population
from ntgraph.models import IF, LI, LIF, CubaLIF, NeuronModel

__all__ = [
    "DIALECTS",
    "NEURON_TYPES",
    "Context",
    "Unit",
    "convert",
    "detect",
    "rockpool_dt",
    "SNNTORCH_DT",
    "NORSE_DT",
]

DIALECTS = ("auto", "ntgraph", "nir", "snntorch", "norse", "rockpool")
#: snnTorch's exporter hard-codes this time step (snntorch/export_nir.py).
SNNTORCH_DT = 1e-4
#: Norse's ``to_nir`` default time step.
NORSE_DT = 1e-3
#: NIR neuron node classes the importer reads.
NEURON_TYPES = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I, nir.Threshold)


@dataclass
class Context:
    """Options of one import and what it learnt (assumptions to report)."""

    dialect: str
    dt: Optional[float]
    discretization: str = "euler"
    reset: Optional[str] = None
    reset_delay: Optional[bool] = None
    peer_dt: Optional[float] = None
    assumptions: list = field(default_factory=list)
    divergences: list = field(default_factory=list)

    def assume(self, text: str) -> None:
        if text not in self.assumptions:
            self.assumptions.append(text)


@dataclass
class Unit:
    """The ntgraph nodes standing for one NIR neuron node.

    ``populations``: ``(id, Population)`` in order; ``projections``: internal
    ``(id, source, target, Projection)``; ``entry`` receives the node's input,
    ``exit`` emits its output.
    """

    populations: list
    projections: list
    entry: str
    exit: str


def _arr(node: nir.NIRNode, name: str, shape: tuple) -> np.ndarray:
    value = getattr(node, name, None)
    if value is None:
        raise ValidationError(f"NIR {type(node).__name__}.{name}: missing")
    arr = np.asarray(value, dtype=np.float64)
    try:
        return np.broadcast_to(arr, shape).reshape(-1).copy()
    except ValueError:
        raise ValidationError(
            f"NIR {type(node).__name__}.{name}: expected one value per neuron (shape {shape}), got shape {arr.shape}"
        ) from None


def _tau(frac: np.ndarray, ctx: Context, where: str) -> np.ndarray:
    """The time constant whose leak fraction per step (``1 - decay``) at ``ctx.dt`` is ``frac``."""
    bad = ~((frac > 0) & (frac <= 1)) if ctx.discretization == "euler" else ~((frac > 0) & (frac < 1))
    if np.any(bad):
        k = int(np.argmax(bad))
        raise ValidationError(
            f"{where}: per-step decay {1.0 - frac[k]:g} (neuron {k}) has no time constant; expected a decay in "
            + ("[0, 1)" if ctx.discretization == "euler" else "(0, 1) for discretization='exact'")
        )
    if ctx.discretization == "euler":
        return ctx.dt / frac
    return -ctx.dt / np.log1p(-frac)


def _reset(ctx: Context, default: str) -> str:
    return ctx.reset if ctx.reset is not None else default


def _population(node_id: str, model: NeuronModel, size: int) -> Population:
    try:
        return Population(model=model, size=size)
    except ValidationError as exc:
        raise type(exc)(f"Population '{node_id}': {exc}") from None


# ----------------------------------------------------------------------------- dialect readers
def _nir(key: str, node: nir.NIRNode, shape: tuple, ctx: Context) -> Unit:
    n = int(np.prod(shape))
    if isinstance(node, nir.LIF):
        model: NeuronModel = LIF(tau_mem=_arr(node, "tau", shape), r=_arr(node, "r", shape),
                                 v_leak=_arr(node, "v_leak", shape), v_th=_arr(node, "v_threshold", shape),
                                 v_reset=_arr(node, "v_reset", shape), reset=_reset(ctx, "zero"))
    elif isinstance(node, nir.CubaLIF):
        model = CubaLIF(tau_syn=_arr(node, "tau_syn", shape), tau_mem=_arr(node, "tau_mem", shape),
                        r=_arr(node, "r", shape), v_leak=_arr(node, "v_leak", shape),
                        v_th=_arr(node, "v_threshold", shape), v_reset=_arr(node, "v_reset", shape),
                        w_in=_arr(node, "w_in", shape), reset=_reset(ctx, "zero"))
    elif isinstance(node, nir.IF):
        model = IF(r=_arr(node, "r", shape), v_th=_arr(node, "v_threshold", shape),
                   v_reset=_arr(node, "v_reset", shape), reset=_reset(ctx, "zero"))
    elif isinstance(node, nir.LI):
        model = LI(tau_mem=_arr(node, "tau", shape), r=_arr(node, "r", shape), v_leak=_arr(node, "v_leak", shape))
    elif isinstance(node, nir.CubaLI):
        # tau_syn di/dt = -i + w_in*I ; tau_mem dv/dt = v_leak - v + r*i: two leaky integrators in a row,
        # the second reading the first's new value in the same step (CubaLIF's order), exact in both discretisations.
        syn = LI(tau_mem=_arr(node, "tau_syn", shape), r=_arr(node, "w_in", shape), v_leak=np.zeros(n))
        mem = LI(tau_mem=_arr(node, "tau_mem", shape), r=_arr(node, "r", shape), v_leak=_arr(node, "v_leak", shape))
        syn_id = f"{key}.syn"
        return Unit([(syn_id, _population(syn_id, syn, n)), (key, _population(key, mem, n))],
                    [(f"{syn_id}->{key}", syn_id, key, OneToOne(weight=np.ones(n), learnable=()))], syn_id, key)
    else:
        raise _unsupported(key, node)
    return Unit([(key, _population(key, model, n))], [], key, key)


def _discrete(key: str, node: nir.NIRNode, shape: tuple, ctx: Context, c: dict, default_reset: str) -> Unit:
    """Build a unit from per-step coefficients ``c`` (see the module docstring and :func:`_coefficients`)."""
    n = int(np.prod(shape))
    where = f"NIR node '{key}' ({type(node).__name__}, dialect {ctx.dialect})"
    reset = _reset(ctx, default_reset)
    extra: list = []
    if isinstance(node, nir.LI):
        model: NeuronModel = LI(tau_mem=_tau(c["fa"], ctx, where), r=c["r"], v_leak=c["v_leak"])
    elif isinstance(node, nir.LIF):
        model = LIF(tau_mem=_tau(c["fa"], ctx, where), r=c["r"], v_leak=c["v_leak"],
                    v_th=_arr(node, "v_threshold", shape), v_reset=_arr(node, "v_reset", shape), reset=reset)
    elif isinstance(node, nir.CubaLIF):
        model = CubaLIF(tau_syn=_tau(c["fb"], ctx, where), w_in=c["w_in"], tau_mem=_tau(c["fa"], ctx, where),
                        r=c["r"], v_leak=c["v_leak"], v_th=_arr(node, "v_threshold", shape),
                        v_reset=_arr(node, "v_reset", shape), reset=reset)
    elif isinstance(node, nir.IF):
        model = IF(r=c["g"] / ctx.dt, v_th=_arr(node, "v_threshold", shape),
                   v_reset=_arr(node, "v_reset", shape), reset=reset)
    else:
        return _nir(key, node, shape, ctx)
    pop = _population(key, model, n)
    if ctx.dialect == "snntorch" and reset == "subtract" and ctx.reset_delay and isinstance(model, (LIF, CubaLIF)):
        extra = _snntorch_delayed_subtract(key, pop.model, None if "fb" not in c else 1.0 - c["fb"])
    return Unit([(key, pop)], extra, key, key)


def _snntorch_delayed_subtract(key: str, model: NeuronModel, b: Optional[np.ndarray]) -> list:
    """Self-projections that turn a subtract reset into snnTorch's delayed one.

    snnTorch (``reset_delay=True``): ``mem[t] = a*mem[t-1] + I[t] - thr*z[t-1]``.
    ntgraph's subtract reset gives ``-a*thr*z[t-1]``; the missing
    ``-(1-a)*thr*z[t-1]`` enters as a delay-1 one-to-one self-projection of
    weight ``w = -thr/(r*G)`` (``G = (1-b)*w_in`` for CubaLIF, 1 for LIF), which
    adds ``(1-a)*r*G*w*z = -(1-a)*thr*z``.  In a CubaLIF the current keeps
    ``b*w*z`` one step longer; a delay-2 self-projection of weight ``-b*w``
    cancels it.
    """
    thr = np.asarray(model.v_th)
    r = np.asarray(model.r)
    if isinstance(model, CubaLIF) and b is not None:
        gain = (1.0 - b) * np.asarray(model.w_in)
        w = -thr / (r * gain)
        return [
            (f"{key}.reset_delay", key, key, OneToOne(weight=w, delay=1, learnable=())),
            (f"{key}.reset_delay2", key, key, OneToOne(weight=-b * w, delay=2, learnable=())),
        ]
    return [(f"{key}.reset_delay", key, key, OneToOne(weight=-thr / r, delay=1, learnable=()))]


def _unsupported(key: str, node: nir.NIRNode) -> UnsupportedNodeError:
    why = {
        "I": "an integrator without threshold whose output is its voltage; ntgraph's only non-spiking neuron, LI, leaks",
        "Threshold": "a stateless Heaviside step; every spiking model of ntgraph integrates its input",
    }.get(type(node).__name__, "it has no ntgraph counterpart")
    return UnsupportedNodeError(
        f"NIR import: node '{key}' has type {type(node).__name__}, which ntgraph cannot represent: {why}"
    )


def _single(node: nir.NIRNode, name: str) -> bool:
    """Whether the producer wrote field ``name`` in single precision (float32)."""
    value = getattr(node, name, None)
    return value is not None and np.asarray(value).dtype == np.float32


def _native(x: np.ndarray, single: bool) -> np.ndarray:
    """A peer's own parameter recovered from a derived float32 field: rounded back to float32.

    snnTorch writes ``tau = dt/(1-beta)`` from a float32 ``beta``; ``1 - dt/tau``
    differs from ``beta`` by float32 round-off, and rounding it to float32 gives
    ``beta`` back, so ntgraph simulates the very decay snnTorch does.
    """
    return np.asarray(x, dtype=np.float32).astype(np.float64) if single else x


def _unit_gain(g: np.ndarray, single: bool) -> np.ndarray:
    """A gain the producer's model fixes to 1 (snnTorch's ``mem = beta*mem + input``), exact when
    the file's value is 1 up to its own round-off."""
    tol = 1e-6 if single else 1e-12
    return np.where(np.abs(g - 1.0) <= tol, 1.0, g)


def _coefficients(key: str, node: nir.NIRNode, shape: tuple, ctx: Context) -> dict:
    """Per-step coefficients of a neuron node under ``ctx.dialect``.

    Keys: ``fa`` (the membrane's leak fraction per step, ``1 - a``), ``r`` and
    ``v_leak`` (so that the membrane gets ``fa*r*I + fa*v_leak`` per step),
    ``fb`` and ``w_in`` for CubaLIF's current (``(fb*w_in)*I`` per step), ``g``
    for IF (``v += g*I``).
    """
    get = lambda name: _arr(node, name, shape)  # noqa: E731
    mem_tau = "tau_mem" if isinstance(node, nir.CubaLIF) else "tau"
    has_leak = isinstance(node, (nir.LIF, nir.LI, nir.CubaLIF))
    c: dict = {}
    if ctx.dialect == "snntorch":
        dt_f = ctx.peer_dt
        if has_leak:
            single = _single(node, mem_tau)
            fa = 1.0 - _native(1.0 - dt_f / get(mem_tau), single)  # 1 - beta
            gain = _unit_gain(dt_f / get(mem_tau) * get("r"), single)
            c.update(fa=fa, r=gain / fa, v_leak=get("v_leak"))
        if isinstance(node, nir.CubaLIF):
            single = _single(node, "tau_syn")
            fb = 1.0 - _native(1.0 - dt_f / get("tau_syn"), single)  # 1 - alpha
            c.update(fb=fb, w_in=_unit_gain(dt_f / get("tau_syn") * get("w_in"), single) / fb)
        if isinstance(node, nir.IF):
            c.update(g=dt_f * get("r"))
    elif ctx.dialect == "norse":
        dt_n = ctx.peer_dt
        if has_leak:
            inv = _native(dt_n / get(mem_tau), _single(node, mem_tau))  # Norse's tau_mem_inv = 1/tau
            c.update(fa=dt_n * inv, r=get("r"), v_leak=get("v_leak"))
        if isinstance(node, nir.CubaLIF):
            fb = dt_n * _native(dt_n / get("tau_syn"), _single(node, "tau_syn"))
            c.update(fb=fb, w_in=get("w_in") / fb)  # the input jumps into the current: fb*w_in = w_in_f
        if isinstance(node, nir.IF):
            c.update(g=get("r"))
    elif ctx.dialect == "rockpool":
        dt_r = ctx.peer_dt
        if has_leak:
            fa = -np.expm1(-dt_r / get(mem_tau))
            if isinstance(node, nir.LI):  # ExpSynTorch: isyn = b*(isyn + x)
                c.update(fa=fa, r=(1.0 - fa) / fa, v_leak=get("v_leak"))
            else:  # LIFNeuronTorch / LIFTorch: vmem = a*vmem + input + bias
                c.update(fa=fa, r=1.0 / fa, v_leak=get("v_leak") / fa)
        if isinstance(node, nir.CubaLIF):
            fb = -np.expm1(-dt_r / get("tau_syn"))
            c.update(fb=fb, w_in=(1.0 - fb) * get("w_in") / fb)  # isyn = b*(isyn + x)
        if isinstance(node, nir.IF):
            c.update(g=get("r") * dt_r)
    else:  # pragma: no cover - guarded by convert()
        raise ValueError(ctx.dialect)
    return c


def convert(key: str, node: nir.NIRNode, shape: tuple, ctx: Context) -> Unit:
    """The ntgraph populations standing for NIR neuron node ``key`` of ``shape`` under ``ctx.dialect``."""
    if not isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI)):
        raise _unsupported(key, node)
    if ctx.dialect == "nir" or isinstance(node, nir.CubaLI):
        return _nir(key, node, shape, ctx)
    defaults = {"snntorch": "subtract", "norse": "zero", "rockpool": "subtract"}
    return _discrete(key, node, shape, ctx, _coefficients(key, node, shape, ctx), defaults[ctx.dialect])


# ----------------------------------------------------------------------------- detection
def rockpool_dt(tau: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The ``dt`` Rockpool hides in ``r = tau*exp(-dt/tau)/dt``, per neuron.

    With ``u = dt/tau``: ``u*exp(u) = 1/r`` (Lambert W), solved by Newton's
    method to machine precision; ``nan`` where ``r <= 0`` or ``tau <= 0``.
    """
    tau = np.asarray(tau, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    ok = (r > 0) & (tau > 0) & np.isfinite(r) & np.isfinite(tau)
    y = np.where(ok, 1.0 / np.where(ok, r, 1.0), 1.0)
    u = np.where(y < 1.0, y * (1.0 - y), np.log1p(y))  # a start on the right branch
    for _ in range(100):
        e = np.exp(u)
        step = (u * e - y) / (e * (1.0 + u))
        u = u - step
        if np.all(np.abs(step) <= 1e-15 * np.maximum(1.0, np.abs(u))):
            break
    return np.where(ok, u * tau, np.nan)


def _close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-6) -> bool:
    return bool(np.all(np.abs(a - b) <= rtol * np.maximum(np.abs(a), np.abs(b))))


def detect(neurons: dict[str, nir.NIRNode], input_shapes: list[tuple]) -> tuple[str, str]:
    """Guess the producer of a NIR graph from its neuron parameters: ``(dialect, reason)``.

    ``neurons``: the neuron nodes by key; ``input_shapes``: the Input shapes as
    written.  Signatures, checked in this order:

    * snntorch: every LIF has ``r == tau/1e-4`` and every CubaLIF ``r == tau_mem/1e-4``
      and ``w_in == tau_syn/1e-4`` (snnTorch's exporter), ``v_leak == 0``;
    * rockpool: every LIF/CubaLIF/LI has ``r = tau*exp(-dt/tau)/dt`` for one ``dt``
      shared by all neurons, ``w_in == 1`` and ``v_leak == 0``, and an Input shape
      carries a leading batch dimension of 1;
    * norse: every neuron has ``r == 1`` (and ``w_in == 1``) and every time constant
      is below 1e-4 s (Norse writes ``dt*tau``, e.g. 1e-5 for tau = 10 ms at dt = 1 ms).

    Anything else is read as plain NIR (``("nir", reason)``).
    """
    leaky = {k: n for k, n in neurons.items() if isinstance(n, (nir.LIF, nir.CubaLIF, nir.LI))}
    if not neurons:
        return "nir", "no neuron nodes"
    spiking = {k: n for k, n in leaky.items() if isinstance(n, (nir.LIF, nir.CubaLIF))}

    def tau_mem(n: nir.NIRNode) -> np.ndarray:
        return np.asarray(n.tau_mem if isinstance(n, nir.CubaLIF) else n.tau, dtype=np.float64)

    if spiking and len(spiking) == len(neurons):
        ok = True
        for n in spiking.values():
            ok &= _close(np.asarray(n.r, dtype=np.float64), tau_mem(n) / SNNTORCH_DT)
            ok &= not np.any(np.asarray(n.v_leak))
            if isinstance(n, nir.CubaLIF):
                ok &= _close(np.asarray(n.w_in, dtype=np.float64), np.asarray(n.tau_syn) / SNNTORCH_DT)
        if ok:
            return "snntorch", "r == tau/1e-4 in every neuron (snnTorch's exporter)"
    if leaky and len(leaky) == len(neurons):
        dts = np.concatenate([np.ravel(rockpool_dt(tau_mem(n), n.r)) for n in leaky.values()])
        batch = any(len(s) >= 2 and s[0] == 1 for s in input_shapes)
        unit_w = all(np.all(np.asarray(n.w_in) == 1) for n in leaky.values() if isinstance(n, nir.CubaLIF))
        if batch and unit_w and np.all(np.isfinite(dts)) and _close(dts, np.full_like(dts, dts[0]), 1e-6):
            return "rockpool", f"r == tau*exp(-dt/tau)/dt with one dt = {dts[0]:g} s and a batch dimension in the Input"
    ones = all(np.all(np.asarray(getattr(n, "r", 1.0)) == 1) for n in neurons.values())
    unit_w = all(np.all(np.asarray(n.w_in) == 1) for n in neurons.values() if isinstance(n, nir.CubaLIF))
    taus = [np.asarray(getattr(n, name)) for n in neurons.values() for name in ("tau", "tau_mem", "tau_syn")
            if getattr(n, name, None) is not None]
    if ones and unit_w and taus and all(np.all(t < 1e-4) for t in taus):
        return "norse", "r == 1 and every time constant below 0.1 ms (Norse writes dt*tau, norse issue 411)"
    return "nir", "no producer signature recognised"

