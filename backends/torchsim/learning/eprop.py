r"""e-prop: online, forward-only eligibility propagation (Bellec et al. 2020).

"A solution to the learning dilemma for recurrent networks of spiking neurons",
Nature Communications 11, 3625 (2020).  The gradient of a loss ``L`` with
respect to a weight ``W_ji`` into hidden neuron ``j`` is approximated by

.. math::  \frac{dL}{dW_{ji}} \approx \sum_t L_j^t \, \bar e_{ji}^t

with the *learning signal* ``L_j^t = sum_k B_jk (1-kappa) r_k dL/dy_k^t`` (from the
readout error at step ``t``) and the *eligibility trace* ``e_ji^t = dz_j^t/dW_ji``
computed forward in time, filtered by the readout's leak ``kappa``
(``ebar^t = kappa*ebar^{t-1} + e^t``).  Traces for ntgraph's step order
(update, spike, reset; see ``docs/semantics.md``), with ``sg`` the stop-gradient
of the reset (``detach_reset=True``, the convention of both e-prop and BPTT here)
and ``psi^t`` the surrogate derivative at the spike:

* LIF: ``eps^t = a * rho^{t-1} * eps^{t-1} + (1-a) r x_i^t``, ``e^t = psi^t eps^t``,
  where ``rho = 1 - z`` for ``reset="zero"`` and ``1`` for ``"subtract"``;
* ALIF (threshold ``A = v_th + beta*a``): the same ``eps`` for the voltage, plus
  ``e^t = psi^t (eps^t - beta*epsa^{t-1})`` and ``epsa^t = rho_a epsa^{t-1} + e^t``.

* rate units (WilsonCowan, RateUnit; ``x_t = F(x_{t-1}, I_t)``, the rate is the output):
  ``eps^t = (dx^t/dx^{t-1}) eps^{t-1} + (dx^t/dI^t) x_i^t`` and ``e^t = eps^t``, with the partial
  derivatives of each model's update equation in :mod:`.rate_eligibility` (for a leaky
  euler unit ``(1 - dt/tau) eps^{t-1} + dt/tau f'(I^t) x_i^t``).

The readout (LI) weights get their exact gradient from the filtered presynaptic
trace ``xhat^t = kappa xhat^{t-1} + x^t``: ``dL/dW_kj = sum_t g_k^t (1-kappa) r_k xhat_j^t``.
A WilsonCowan or RateUnit population may also be read directly by the objective
(no LI readout; it must then be the only population): its learning signal is
``L_j^t = dL/dx_j^t`` and its traces are not filtered (``kappa = 0``).  Feeding it the
recorded activity of the previous step through an Input (teacher forcing,
``examples/reconstruct_activity.py``) makes the gradient exact.

Without recurrent projections into the hidden layer the result equals the
autograd (BPTT) gradient exactly (``tests/test_eprop.py``); with recurrence it
drops the indirect paths through other neurons, as in the paper.  Memory is
independent of the number of steps: per hidden projection ``O(batch*n_post*n_pre)``,
plus ``O(chunk*batch*n)`` for the simulation, which runs ``chunk`` steps per
call of the model (continuing from the previous call's state), plus the
returned outputs ``[T, batch, n_out]``.  Nothing is recorded for autograd
(``tests/test_eprop_memory.py``; ``benchmarks/eprop_memory.py`` measures it).

Feedback variants (objects): :class:`SymmetricFeedback` (``B = W_out^T``),
:class:`RandomFeedback` (fixed random ``B``), :class:`AdaptiveFeedback`
(random ``B`` that receives the same updates as ``W_out``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor

from ntgraph.errors import ValidationError
from ntgraph.ir import Dense, Input

from ..module import SimulationModule
from ..neurons import ALIFDynamics, LIDynamics, LIFDynamics
from ..scan import step_threads
from .algorithms import Inputs, Objective, StepResult, num_steps
from .rate_eligibility import RATE_DYNAMICS, rate_partials

__all__ = ["EProp", "SymmetricFeedback", "RandomFeedback", "AdaptiveFeedback"]


# ----------------------------------------------------------------------------- feedback
@dataclass
class SymmetricFeedback:
    """``B = W_out^T``: the readout's current effective weights carry the error back."""

    def matrix(self, key: str, w_out: Tensor) -> Tensor:
        return w_out

    def update(self, key: str, grad_w_out: Tensor) -> None:
        pass


@dataclass
class RandomFeedback:
    """A fixed random ``B`` with the shape of ``W_out``, entries N(0, scale^2) (default: the std of ``W_out``)."""

    seed: int = 0
    scale: Optional[float] = None
    _matrices: dict = field(default_factory=dict, repr=False)

    def matrix(self, key: str, w_out: Tensor) -> Tensor:
        if key not in self._matrices:
            gen = torch.Generator().manual_seed(self.seed + len(self._matrices))
            std = float(w_out.detach().std()) if self.scale is None else self.scale
            self._matrices[key] = (torch.randn(w_out.shape, generator=gen, dtype=torch.float64) * std).to(w_out)
        return self._matrices[key]

    def update(self, key: str, grad_w_out: Tensor) -> None:
        pass


@dataclass
class AdaptiveFeedback(RandomFeedback):
    """Random initial ``B`` that follows the readout's updates: ``B <- B - lr*(dL/dW_out + decay*B)``."""

    lr: float = 1e-3
    decay: float = 0.0

    def update(self, key: str, grad_w_out: Tensor) -> None:
        b = self._matrices[key]
        b.sub_(self.lr * (grad_w_out + self.decay * b))


# ----------------------------------------------------------------------------- plan
@dataclass
class _HiddenProj:
    key: str
    proj: Any
    src: str
    delay: int
    pop: str
    eps: Optional[Tensor] = None
    eps_a: Optional[Tensor] = None
    eps_b: Optional[Tensor] = None  # bias eligibility (x = 1)
    eps_ba: Optional[Tensor] = None
    filtered: Optional[deque] = None  # ebar of the last (readout delay + 1) steps
    filtered_b: Optional[deque] = None
    grad_w: Optional[Tensor] = None
    grad_b: Optional[Tensor] = None


@dataclass
class _ReadoutProj:
    key: str
    proj: Any
    src: str
    delay: int
    xhat: Optional[Tensor] = None
    bhat: Optional[Tensor] = None
    grad_w: Optional[Tensor] = None
    grad_b: Optional[Tensor] = None


def _wants(proj: Any, name: str) -> bool:
    return name in proj.learnable


class _Plan:
    """Which projections are hidden (eligibility traces) and which feed the readout (exact traces)."""

    def __init__(self, model: SimulationModule, objective: Objective) -> None:
        g = model.graph
        if objective.output not in model.output_sources:
            raise ValidationError(f"objective.output: the graph has no Output {objective.output!r}")
        if getattr(objective, "regularizers", ()):
            raise ValidationError("e-prop: objectives with regularizers are not supported; use BPTT or TBPTT")
        #: the population the objective reads: an LI readout, or a rate population that is its own readout
        self.output_pop: str = model.output_sources[objective.output]
        out_dyn = model._dyn.get(self.output_pop)
        self.readout: Optional[str] = self.output_pop if isinstance(out_dyn, LIDynamics) else None
        self.rate_output: Optional[str] = self.output_pop if isinstance(out_dyn, RATE_DYNAMICS) else None
        if self.readout is None and self.rate_output is None:
            raise ValidationError(
                f"e-prop: Output {objective.output!r} must read an LI population (the readout) or a WilsonCowan/"
                f"RateUnit population (its own readout), got '{self.output_pop}'"
                f" ({type(out_dyn.model).__name__ if out_dyn is not None else 'not a population'})"
            )
        self.hidden: dict[str, Any] = {}
        for pop, dyn in model._dyn.items():
            if pop == self.readout:
                continue
            if type(dyn) not in (LIFDynamics, ALIFDynamics, *RATE_DYNAMICS):
                raise ValidationError(
                    f"e-prop: Population '{pop}' is {type(dyn.model).__name__}; e-prop supports LIF, ALIF, WilsonCowan "
                    f"and RateUnit hidden populations with one LI readout"
                )
            if self.rate_output is not None and pop != self.rate_output:
                raise ValidationError(
                    f"e-prop: Output {objective.output!r} reads the rate population '{self.rate_output}' directly, so it "
                    f"must be the only population, but the graph also has '{pop}'; read a hidden layer through an LI readout"
                )
            if dyn.learnable:
                raise ValidationError(
                    f"e-prop: Population '{pop}'.learnable={dyn.learnable}: e-prop trains projection weights and biases only"
                )
            self.hidden[pop] = dyn
        if self.readout is not None and model._dyn[self.readout].learnable:
            raise ValidationError(f"e-prop: Population '{self.readout}'.learnable: e-prop trains weights and biases only")
        self.hidden_projs: list[_HiddenProj] = []
        self.readout_projs: list[_ReadoutProj] = []
        self.readout_delay: dict[str, int] = {}
        for node_id, module in model._proj.items():
            src, dst = g.source(node_id), g.target(node_id)
            delay = g.meta(node_id)["delay"]
            if not isinstance(module.payload, Dense):
                raise ValidationError(
                    f"e-prop: {module.payload.kind} '{node_id}': only Dense projections are supported"
                )
            if dst == self.readout:
                self.readout_projs.append(_ReadoutProj(node_id, module, src, delay))
                if src in self.hidden:
                    if self.readout_delay.setdefault(src, delay) != delay:
                        raise ValidationError(
                            f"e-prop: Population '{src}' reaches the readout with different delays; expected one delay"
                        )
            else:
                if src in self.hidden and delay == 0:
                    raise ValidationError(
                        f"e-prop: {module.payload.kind} '{node_id}' connects hidden populations without delay "
                        f"(a multi-layer chain); e-prop needs one hidden layer (recurrent projections need delay >= 1)"
                    )
                if src not in self.hidden and not isinstance(g[src], Input):
                    raise ValidationError(f"e-prop: projection '{node_id}' from '{src}' is not supported")
                self.hidden_projs.append(_HiddenProj(node_id, module, src, delay, dst))
        #: whether any hidden population spikes (LIF/ALIF: surrogate derivatives and resets)
        self.spiking = any(not isinstance(d, RATE_DYNAMICS) for d in self.hidden.values())
        if self.readout is None:  # the rate population is read directly: dL/dx is its learning signal, unfiltered
            self.kappa = 0.0
            self.out_gain = None
            return
        readout_dyn = model._dyn[self.readout]
        c = readout_dyn.coefficients()
        kappa = c.a.detach()
        if kappa.numel() > 1 and not torch.all(kappa == kappa.flatten()[0]):
            raise ValidationError(
                f"e-prop: Population '{self.readout}'.tau_mem must be the same for every readout neuron "
                f"(the eligibility traces are filtered by one readout leak)"
            )
        self.kappa = float(kappa.flatten()[0])
        self.out_gain = ((1.0 - c.a) * c.r).detach()  # (1-kappa) r_k per readout neuron


# ----------------------------------------------------------------------------- algorithm
@dataclass
class EProp:
    """Online e-prop for LIF/ALIF/WilsonCowan/RateUnit hidden populations with an LI readout, or for one
    WilsonCowan/RateUnit population read directly.

    ``feedback``: :class:`SymmetricFeedback` (default), :class:`RandomFeedback`
    or :class:`AdaptiveFeedback`.  ``objective`` must provide
    ``step_loss(y_t, target, t, steps)`` (the per-step decomposition of the loss).
    """

    feedback: Any = field(default_factory=SymmetricFeedback)
    step_optimizer: bool = True
    #: Steps simulated per call of the model (the run continues from the previous chunk's state).  Only
    #: the simulation's per-call buffers depend on it; the gradients do not.
    chunk: int = 128

    def state_dict(self) -> dict[str, Any]:
        """The feedback matrices (random/adaptive), for bit-identical resume from a checkpoint."""
        matrices = getattr(self.feedback, "_matrices", None)
        return {"feedback": {k: v.clone() for k, v in matrices.items()}} if matrices is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        matrices = getattr(self.feedback, "_matrices", None)
        if matrices is not None:
            matrices.clear()
            matrices.update({k: v.clone() for k, v in state.get("feedback", {}).items()})

    def train_step(self, model: SimulationModule, inputs: Inputs, target: Tensor, objective: Objective,
                   optimizer: Optional[torch.optim.Optimizer]) -> StepResult:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        result = self.compute_gradients(model, inputs, target, objective)
        if optimizer is not None and self.step_optimizer:
            optimizer.step()
        return result

    def compute_gradients(self, model: SimulationModule, inputs: Inputs, target: Tensor,
                          objective: Objective) -> StepResult:
        """Run forward once, accumulate e-prop gradients into the parameters' ``.grad``."""
        if not hasattr(objective, "step_loss"):
            raise ValidationError(f"e-prop: the objective {type(objective).__name__} has no step_loss(y_t, target, t, steps)")
        plan = _Plan(model, objective)
        if plan.spiking and model.options.extra.get("detach_reset", True) is False:
            raise ValidationError("e-prop: compile with detach_reset=True (the reset path carries no gradient)")
        steps = num_steps(model, inputs)
        xs = model._check_inputs((inputs,) if isinstance(inputs, dict) else (inputs,))
        batch = next(iter(xs.values())).shape[1]
        if target.ndim >= 3 and model.batch_first:
            target = target.transpose(0, 1)
        weights = {p.key: p.proj.effective_weight().detach() for p in plan.hidden_projs + plan.readout_projs}
        coeffs = {pop: dyn.coefficients() for pop, dyn in plan.hidden.items()}
        like = next(iter(xs.values()))
        losses: list[float] = []
        reset_factor = {pop: torch.ones(batch, dyn.size, dtype=like.dtype, device=like.device)
                        for pop, dyn in plan.hidden.items()}

        def presynaptic(src: str, delay: int, t: int, now: dict, history: dict) -> Tensor:
            if src in xs:
                return xs[src][t - delay] if t - delay >= 0 else torch.zeros_like(xs[src][0])
            return now[src] if delay == 0 else history[src][-delay]

        def on_step(t: int, now: dict, neurons: dict, history: dict) -> None:
            # learning signal: dL/dy_t of the readout
            y_t = now[plan.output_pop].detach().requires_grad_(True)
            with torch.enable_grad():
                loss_t = objective.step_loss(y_t, target, t, steps)
                (g_t,) = torch.autograd.grad(loss_t, y_t)
            losses.append(float(loss_t.detach()))
            signal = g_t * plan.out_gain if plan.readout is not None else g_t  # [B, K]
            # readout projections: exact filtered traces
            for rp in plan.readout_projs:
                x = presynaptic(rp.src, rp.delay, t, now, history)
                rp.xhat = x if rp.xhat is None else plan.kappa * rp.xhat + x
                gw = signal.transpose(0, 1) @ rp.xhat
                rp.grad_w = gw if rp.grad_w is None else rp.grad_w + gw
                if rp.proj.has_bias and _wants(rp.proj, "bias"):
                    rp.bhat = torch.ones_like(signal[:, :1]) if rp.bhat is None else plan.kappa * rp.bhat + 1.0
                    gb = (signal * rp.bhat).sum(0)
                    rp.grad_b = gb if rp.grad_b is None else rp.grad_b + gb
            # hidden learning signals, L[pop] = signal @ B for the projections pop -> readout
            # (a rate population read directly is its own readout: its learning signal is dL/dx_t itself)
            learning: dict[str, Tensor] = {} if plan.rate_output is None else {plan.rate_output: g_t}
            partials = {pop: rate_partials(dyn, coeffs[pop], *(v.detach() for v in dyn.captured))
                        for pop, dyn in plan.hidden.items() if isinstance(dyn, RATE_DYNAMICS)}
            for rp in plan.readout_projs:
                if rp.src in plan.hidden:
                    b = self.feedback.matrix(rp.key, weights[rp.key])  # [K, J]
                    contribution = signal @ b
                    learning[rp.src] = contribution if rp.src not in learning else learning[rp.src] + contribution
            # hidden projections: eligibility traces
            for hp in plan.hidden_projs:
                dyn, c = plan.hidden[hp.pop], coeffs[hp.pop]
                x = presynaptic(hp.src, hp.delay, t, now, history)  # [B, I]
                if hp.pop in partials:
                    self._rate_traces(hp, x, *partials[hp.pop], plan, learning.get(hp.pop))
                    continue
                psi = dyn.surrogate.derivative(dyn.captured.detach())  # [B, J]
                leak = (c.a * reset_factor[hp.pop])[:, :, None]
                drive = ((1.0 - c.a) * c.r)[None, :, None]
                # In place where possible: these [B, J, I] updates are the whole per-step cost of e-prop.
                if hp.eps is None:
                    hp.eps = drive * x[:, None, :]
                else:  # eps = leak*eps + drive (x) x, the outer product as a batched rank-1 update
                    hp.eps.mul_(leak).baddbmm_(drive.expand(x.shape[0], -1, -1).to(x.dtype), x[:, None, :])
                depth = plan.readout_delay.get(hp.pop, 0) + 1
                if hp.filtered is None:
                    hp.filtered = deque(maxlen=depth)
                if isinstance(dyn, ALIFDynamics):
                    e = self._eligibility(hp, dyn, c, psi, hp.eps, "eps_a")
                    hp.filtered.append(e.clone() if not hp.filtered else plan.kappa * hp.filtered[-1] + e)
                else:  # LIF: e = psi*eps goes straight into ebar = kappa*ebar + e
                    self._filter_into(hp.filtered, depth, plan.kappa, psi[:, :, None], hp.eps)
                with_bias = hp.proj.has_bias and _wants(hp.proj, "bias")
                if with_bias:
                    ones = drive[..., 0].expand(x.shape[0], -1)
                    hp.eps_b = ones if hp.eps_b is None else leak[..., 0] * hp.eps_b + ones
                    eb = self._eligibility(hp, dyn, c, psi, hp.eps_b[..., None], "eps_ba")[..., 0]
                    if hp.filtered_b is None:
                        hp.filtered_b = deque(maxlen=depth)
                    hp.filtered_b.append(eb if not hp.filtered_b else plan.kappa * hp.filtered_b[-1] + eb)
                if hp.pop in learning and len(hp.filtered) == depth:
                    sig = learning[hp.pop]
                    gw = torch.einsum("bj,bji->ji", sig, hp.filtered[0])
                    hp.grad_w = gw if hp.grad_w is None else hp.grad_w + gw
                    if with_bias:
                        gb = (sig * hp.filtered_b[0]).sum(0)
                        hp.grad_b = gb if hp.grad_b is None else hp.grad_b + gb
            for pop, dyn in plan.hidden.items():
                if not isinstance(dyn, RATE_DYNAMICS) and dyn.model.reset == "zero":
                    reset_factor[pop] = 1.0 - now[pop].detach()

        for dyn in plan.hidden.values():
            dyn.capture = True
        chunk = max(1, int(self.chunk))
        pieces: dict[str, list[Tensor]] = {}
        state = None
        # The per-step trace updates are elementwise ops on [B, J, I]; on a busy machine splitting them over
        # threads cost 25x more than they saved (measured: 26 s vs 0.9 s for T=100, benchmarks/eprop_memory.py).
        step_macs = sum(batch * p.proj.n_post * p.proj.n_pre for p in plan.hidden_projs)
        try:
            with torch.no_grad(), step_threads(step_macs):
                # Chunks of time, each continuing from the last one's state: the simulation's per-run buffers
                # (input drive, output traces) are O(chunk), so memory does not grow with the number of steps.
                for t0 in range(0, steps, chunk):
                    part = {k: v[t0:t0 + chunk] for k, v in xs.items()}  # [T, B, n]; the model wants its layout
                    if model.batch_first:
                        part = {k: v.transpose(0, 1) for k, v in part.items()}
                    result = model(part, state=state,
                                   on_step=lambda t, now, neurons, history, t0=t0: on_step(t0 + t, now, neurons, history))
                    state = result.state
                    for k, v in result.outputs.items():
                        pieces.setdefault(k, []).append(v.detach())
        finally:
            for dyn in plan.hidden.values():
                dyn.capture = False
                dyn.captured = None
        time_dim = 1 if model.batch_first else 0
        outputs = {k: torch.cat(v, dim=time_dim) if len(v) > 1 else v[0] for k, v in pieces.items()}
        self._write_gradients(plan)
        #: bytes held by the traces at the end of the run (independent of the number of steps)
        self.trace_bytes = sum(
            t.numel() * t.element_size()
            for p in plan.hidden_projs + plan.readout_projs
            for t in [getattr(p, n, None) for n in ("eps", "eps_a", "eps_b", "eps_ba", "xhat", "bhat")]
            + list(getattr(p, "filtered", None) or ()) + list(getattr(p, "filtered_b", None) or ())
            if t is not None
        )
        return StepResult(sum(losses), outputs)

    @staticmethod
    def _filter_into(filtered: deque, depth: int, kappa: float, psi: Optional[Tensor], eps: Tensor) -> None:
        """Append ``kappa*filtered[-1] + psi*eps`` to ``filtered`` (at most ``depth`` long), reusing the evicted buffer.

        ``psi=None`` stands for 1 (rate units: the eligibility trace is ``eps`` itself).
        """
        if not filtered:
            filtered.append(eps.clone() if psi is None else psi * eps)
        elif len(filtered) == depth:
            buf = filtered.popleft()  # evicted now; it becomes the newest entry
            if filtered:
                torch.mul(filtered[-1], kappa, out=buf)
            else:
                buf.mul_(kappa)
            filtered.append(buf.add_(eps) if psi is None else buf.addcmul_(psi, eps))
        else:
            filtered.append(kappa * filtered[-1] + eps if psi is None else torch.addcmul(kappa * filtered[-1], psi, eps))

    @staticmethod
    def _rate_traces(hp: _HiddenProj, x: Tensor, leak: Tensor, drive: Tensor, plan: _Plan,
                     signal: Optional[Tensor]) -> None:
        """One step of a projection into a rate population (``rate_eligibility``), and its gradient.

        ``eps = leak*eps + drive (x) x`` (``[B, J, I]``; bias: ``x = 1``); the eligibility trace is ``eps``
        itself, filtered by the readout's leak (``ebar = kappa*ebar + eps``) when an LI readout reads the
        population, used as is when the population is read directly; ``dL/dW += signal . ebar``.
        """
        x = x.to(drive.dtype)
        if hp.eps is None:
            hp.eps = drive[:, :, None] * x[:, None, :]
        else:
            hp.eps.mul_(leak[:, :, None]).baddbmm_(drive[:, :, None], x[:, None, :])
        with_bias = hp.proj.has_bias and _wants(hp.proj, "bias")
        if with_bias:
            hp.eps_b = drive.clone() if hp.eps_b is None else hp.eps_b.mul_(leak).add_(drive)
        if plan.readout is None:
            e_w, e_b = hp.eps, hp.eps_b
        else:
            depth = plan.readout_delay.get(hp.pop, 0) + 1
            if hp.filtered is None:
                hp.filtered, hp.filtered_b = deque(maxlen=depth), deque(maxlen=depth)
            EProp._filter_into(hp.filtered, depth, plan.kappa, None, hp.eps)
            if with_bias:
                EProp._filter_into(hp.filtered_b, depth, plan.kappa, None, hp.eps_b)
            if len(hp.filtered) < depth:
                return
            e_w, e_b = hp.filtered[0], hp.filtered_b[0] if with_bias else None
        if signal is None:
            return
        gw = torch.einsum("bj,bji->ji", signal, e_w)
        hp.grad_w = gw if hp.grad_w is None else hp.grad_w + gw
        if with_bias:
            gb = (signal * e_b).sum(0)
            hp.grad_b = gb if hp.grad_b is None else hp.grad_b + gb

    @staticmethod
    def _eligibility(hp: _HiddenProj, dyn: Any, c: Any, psi: Tensor, eps: Tensor, slot: str) -> Tensor:
        """``e = psi*eps`` (LIF) or ``psi*(eps - beta*epsa)`` with ``epsa`` updated (ALIF)."""
        if not isinstance(dyn, ALIFDynamics):
            return psi[:, :, None] * eps
        eps_a = getattr(hp, slot)
        if eps_a is None:
            e = psi[:, :, None] * eps
        else:
            e = psi[:, :, None] * (eps - c.beta[None, :, None] * eps_a)
        setattr(hp, slot, e if eps_a is None else c.rho[None, :, None] * eps_a + e)
        return e

    def _write_gradients(self, plan: _Plan) -> None:
        """Turn gradients w.r.t. effective weights into gradients of the free parameters (through the constraint map)."""
        for p in plan.readout_projs + plan.hidden_projs:
            module = p.proj
            if p.grad_w is not None and _wants(module, "weight"):
                with torch.enable_grad():
                    w = module.effective_weight()
                    torch.autograd.backward(w, grad_tensors=p.grad_w.to(w.dtype))
            if p.grad_b is not None and _wants(module, "bias"):
                module.bias.grad = p.grad_b.clone() if module.bias.grad is None else module.bias.grad + p.grad_b
        for rp in plan.readout_projs:
            if rp.src in plan.hidden and rp.grad_w is not None:
                self.feedback.update(rp.key, rp.grad_w)
