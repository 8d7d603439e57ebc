r"""Whole-sequence scans for rate populations (Wilson-Cowan, rate units) and IF populations.

The companions of :mod:`backends.torchsim.scan` (the LIF/ALIF scans) for the remaining neuron models: each
runs a population for all ``T`` steps of a forward pass as one autograd node, with the population's own dense
self-projection (``I_t = D_t + W y_{t-d} + b``, delay ``d >= 1``, ``hist`` for steps before 0) inside the scan
and a hand-written backward loop in reverse time; the weight gradient is one GEMM over all steps after it.

**Rate units** (:class:`RateScan`).  The step of :meth:`WilsonCowanDynamics.step` and
:meth:`RateDynamics.step` is elementwise, ``x_t = F(x_{t-1}, I_t)``, the rate ``x`` both state and
output.  With ``u_t = I_t + c`` (``c = -mu`` for Wilson-Cowan, the unit's ``bias`` for a rate unit) and
``f_t = act(u_t)`` (``sigmoid``, or ``tanh`` for a tanh rate unit), each model is one :class:`RateCell`::

    Wilson-Cowan, euler:  h = dt/tau;   x_t = (1 - h*(1 + r*f_t))*x_{t-1} + h*f_t
    Wilson-Cowan, exact:  q_t = 1 + r*f_t;  e_t = exp(-q_t*dt/tau);  x_t = lerp(f_t/q_t, x_{t-1}, e_t)
    leaky rate unit:      x_t = a*x_{t-1} + (1-a)*f_t        (a = 1 - dt/tau or exp(-dt/tau), from outside)
    instantaneous unit:   x_t = f_t

(the same recurrences as the step functions, rounded differently in the last bits).  The forward keeps
``x`` (the output) and ``f`` (not for the instantaneous unit, whose ``f`` is ``x``).  The backward loop,
with ``A_t = dx_t/dx_{t-1}`` and ``J_t = dx_t/dI_t`` computed for all steps at once from ``f`` and
``x_{t-1}`` (the partials of :mod:`~backends.torchsim.learning.rate_eligibility`)::

    gx_t = dL/dx_t + A_{t+1}*gx_{t+1} + (dL/dI_{t+d}) W;      dL/dI_t = gx_t*J_t

and after it ``dL/dW = sum_t (dL/dI_t)^T x_{t-d}``, ``dL/db = dL/dc*(+-1) = sum dL/dI``, ``dL/dD = dL/dI``,
``dL/dx_{-1} = A_0*gx_0`` and the neuron parameters (``tau``, ``r``; ``a``) from ``gx`` and ``dx_t/dparam``
(see :class:`WilsonCowanCell`, :class:`LeakyRateCell`).

**IF** (:class:`IFScan`), as :meth:`IFDynamics.step` with ``g = dt*r`` (``gain``)::

    x_t = v_{t-1} + g*I_t;   z_t = H(x_t - v_th);   v_t = lerp(x_t, v_reset, z_t) (zero) | x_t - z_t*v_th (subtract)

backward, ``psi`` the surrogate derivative at ``x_t - v_th`` (``detach``: no gradient through ``z`` in the
reset, as :meth:`NeuronDynamics.reset` with ``detach_reset``)::

    gv_t = dL/dv_t + G_{t+1};   gz_t = dL/dz_t + (dL/dI_{t+d}) W (+ gv_t*dv_t/dz_t without ``detach``)
    G_t  = gz_t*psi_t + gv_t*(1 - z_t | 1);   dL/dI_t = G_t*g

``dL/dg = sum G*I``, ``dL/dv_th = -sum gz*psi (- sum gv*z: subtract reset without detach)``,
``dL/dv_reset = sum gv*z`` (zero reset), ``dL/dv_{-1} = G_0``.  The forward keeps ``x`` and ``z`` (and
the drive, only when ``g`` needs a gradient); ``v`` only when a probe reads it.

Without autograd (:func:`rate_scan` and :func:`if_scan` under ``torch.no_grad`` or with nothing needing a
gradient) the same forward loops run with nothing saved, in place where they can.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from . import kernels
from .events import RowEvents
from .scan import (_kernel_vectors, _lif_kernel_forward, _pre_all, _reduce_to, self_projection_grads, step_threads,
                   threshold_reset_grads)

__all__ = ["RateCell", "WilsonCowanCell", "LeakyRateCell", "InstantRateCell", "RateScan", "IFScan",
           "rate_scan", "if_scan"]


def _activate(u: Tensor, tanh: bool) -> Tensor:
    """``sigmoid(u)`` or ``tanh(u)`` in place."""
    return u.tanh_() if tanh else u.sigmoid_()


def _act_derivative(f: Tensor, tanh: bool) -> Tensor:
    """``act'(u)`` from ``f = act(u)``: ``f*(1-f)`` (sigmoid) or ``1 - f^2`` (tanh), a new tensor."""
    return 1.0 - f * f if tanh else f * (1.0 - f)


class RateCell:
    """One rate model's step ``x_t = F(x_{t-1}, f_t)``, ``f_t = act(I_t + c)``, with its partial derivatives.

    ``params`` is the model's triple of tensors as :class:`RateScan` receives them (Wilson-Cowan:
    ``(tau, mu, r)``; rate units: ``(a, bias, None)``); ``offset`` is ``c`` (``-mu`` or ``bias``) and
    ``offset_sign`` the sign of ``dc/dparams[1]``.
    """

    tanh: bool = False
    offset_sign: float = 1.0
    stores_f: bool = True  # False: f is x itself (nothing more to keep)

    def offset(self, params: tuple) -> Tensor:
        return params[1]

    def prepare(self, params: tuple) -> Any:
        """Per-call constants of the step (tensors of the parameters' shape)."""
        return None

    def step(self, x_prev: Tensor, f: Tensor, k: Any, out: Tensor, bufs: list[Tensor]) -> Tensor:
        """``x_t`` from ``x_{t-1}`` and ``f_t`` into ``out`` (``bufs``: two scratch ``[B, n]`` tensors)."""
        raise NotImplementedError

    def run(self, f_all: Tensor, x0: Tensor, k: Any, x_all: Tensor, overwrite_f: bool) -> Tensor:
        """All steps without a self-projection: coefficients for all ``t`` at once, then one op per step."""
        raise NotImplementedError

    def local(self, f_all: Tensor, x_prev: Optional[Tensor], params: tuple) -> tuple[Optional[Tensor], Tensor, Any]:
        """``(A, J, extra)``: ``A = dx_t/dx_{t-1}`` (``[T, B, n]``, a parameter-shaped constant or None for 0),
        ``J = dx_t/dI_t`` (``[T, B, n]``) and whatever :meth:`param_grads` reuses."""
        raise NotImplementedError

    def param_grads(self, gx: Tensor, f_all: Tensor, x_prev: Optional[Tensor], params: tuple, extra: Any,
                    needs: tuple) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """Gradients of ``params[0]`` and ``params[2]`` (``needs``: their two ``needs_input_grad`` flags)."""
        return None, None

    def needs_x_prev(self, needs: tuple) -> bool:
        """Whether :meth:`local`/:meth:`param_grads` read ``x_{t-1}`` (``needs``: the three params' flags)."""
        return True


class WilsonCowanCell(RateCell):
    """:class:`ntgraph.models.WilsonCowan`: ``params = (tau, mu, r)``, ``f = s = sigmoid(I - mu)``, ``h = dt/tau``.

    euler: ``A = 1 - h(1 + r s)``, ``dx/ds = h(1 - r x_{t-1})``, ``dx/dtau = -(h/tau)*(s - x_{t-1}(1 + r s))``,
    ``dx/dr = -h x_{t-1} s``.  exact (``q = 1 + r s``, ``e = exp(-q dt/tau)``, ``x_inf = s/q``): ``A = e``,
    ``dx/ds = (1-e)/q^2 - (x_{t-1} - x_inf) e r dt/tau``, ``dx/dtau = (x_{t-1} - x_inf) e q dt/tau^2``,
    ``dx/dr = -(1-e) s^2/q^2 - (x_{t-1} - x_inf) e s dt/tau``.  ``J = dx/ds * s(1-s)``.
    """

    offset_sign = -1.0

    def __init__(self, dt: float, exact: bool) -> None:
        self.dt = float(dt)
        self.exact = bool(exact)

    def offset(self, params: tuple) -> Tensor:
        return -params[1]

    def prepare(self, params: tuple) -> Any:
        tau, _, r = params
        if self.exact:
            return (-self.dt / tau, r)
        h = self.dt / tau
        return (1.0 - h, -h * r, h)

    def step(self, x_prev: Tensor, f: Tensor, k: Any, out: Tensor, bufs: list[Tensor]) -> Tensor:
        if self.exact:
            neg_dt_tau, r = k
            q = torch.mul(f, r, out=bufs[0]).add_(1.0)
            e = torch.mul(q, neg_dt_tau, out=bufs[1]).exp_()
            x_inf = q.reciprocal_().mul_(f)
            return torch.lerp(x_inf, x_prev, e, out=out)
        one_minus_h, neg_hr, h = k
        decay = torch.addcmul(one_minus_h, neg_hr, f, out=bufs[0])
        x = torch.mul(decay, x_prev, out=out)
        return x.addcmul_(h, f)

    def run(self, f_all: Tensor, x0: Tensor, k: Any, x_all: Tensor, overwrite_f: bool) -> Tensor:
        x = x0
        if self.exact:
            neg_dt_tau, r = k
            q = torch.addcmul(torch.ones_like(r), f_all, r)
            e = torch.mul(q, neg_dt_tau).exp_()
            x_inf = torch.div(f_all, q, out=q)
            for t in range(f_all.shape[0]):
                x = torch.lerp(x_inf[t], x, e[t], out=x_all[t])
            return x_all
        one_minus_h, neg_hr, h = k
        decay = torch.addcmul(one_minus_h, neg_hr, f_all)
        gain = f_all.mul_(h) if overwrite_f else f_all * h
        for t in range(f_all.shape[0]):
            x = torch.addcmul(gain[t], decay[t], x, out=x_all[t])
        return x_all

    def local(self, f_all: Tensor, x_prev: Optional[Tensor], params: tuple) -> tuple[Optional[Tensor], Tensor, Any]:
        tau, _, r = params
        assert x_prev is not None
        ds = f_all * (1.0 - f_all)
        if self.exact:
            q = 1.0 + r * f_all
            e = torch.exp(q * (-self.dt / tau))
            x_inf = f_all / q
            diff = x_prev - x_inf
            dxds = (1.0 - e) / (q * q) - diff * e * (r * self.dt / tau)
            return e, dxds.mul_(ds), (q, e, diff)
        h = self.dt / tau
        q = torch.addcmul(torch.ones_like(r), f_all, r)  # 1 + r*s, reused by param_grads
        decay = torch.addcmul(torch.ones_like(h), q, -h)
        return decay, ds.mul_(torch.addcmul(torch.ones_like(r), x_prev, -r).mul_(h)), q

    def param_grads(self, gx: Tensor, f_all: Tensor, x_prev: Optional[Tensor], params: tuple, extra: Any,
                    needs: tuple) -> tuple[Optional[Tensor], Optional[Tensor]]:
        tau, _, r = params
        assert x_prev is not None
        grad_tau = grad_r = None
        if self.exact:
            q, e, diff = extra
            if needs[0]:
                grad_tau = _reduce_to(gx * diff * e * q * (self.dt / (tau * tau)), tau)
            if needs[1]:
                grad_r = _reduce_to(gx * (-(1.0 - e) * f_all * f_all / (q * q) - diff * e * f_all * (self.dt / tau)), r)
            return grad_tau, grad_r
        h = self.dt / tau
        if needs[0]:
            grad_tau = _reduce_to(torch.addcmul(f_all, x_prev, extra, value=-1.0).mul_(gx).mul_(-h / tau), tau)
        if needs[1]:
            grad_r = _reduce_to(gx * x_prev * f_all * (-h), r)
        return grad_tau, grad_r


class LeakyRateCell(RateCell):
    """:class:`ntgraph.models.RateUnit` with ``tau``: ``params = (a, bias, None)``, ``x_t = a x_{t-1} + (1-a) f_t``.

    ``A = a``, ``J = (1-a) f'``, ``dx/da = x_{t-1} - f_t``.
    """

    def __init__(self, tanh: bool) -> None:
        self.tanh = bool(tanh)

    def prepare(self, params: tuple) -> Any:
        a = params[0]
        return (a, 1.0 - a)

    def step(self, x_prev: Tensor, f: Tensor, k: Any, out: Tensor, bufs: list[Tensor]) -> Tensor:
        a, one_minus_a = k
        x = torch.mul(f, one_minus_a, out=out)
        return x.addcmul_(a.expand_as(x), x_prev)

    def run(self, f_all: Tensor, x0: Tensor, k: Any, x_all: Tensor, overwrite_f: bool) -> Tensor:
        a, one_minus_a = k
        gain = f_all.mul_(one_minus_a) if overwrite_f else f_all * one_minus_a
        a_b = a.expand_as(x0)
        x = x0
        for t in range(f_all.shape[0]):
            x = torch.addcmul(gain[t], a_b, x, out=x_all[t])
        return x_all

    def local(self, f_all: Tensor, x_prev: Optional[Tensor], params: tuple) -> tuple[Optional[Tensor], Tensor, Any]:
        a = params[0]
        return a, _act_derivative(f_all, self.tanh).mul_(1.0 - a), None

    def param_grads(self, gx: Tensor, f_all: Tensor, x_prev: Optional[Tensor], params: tuple, extra: Any,
                    needs: tuple) -> tuple[Optional[Tensor], Optional[Tensor]]:
        if not needs[0]:
            return None, None
        assert x_prev is not None
        return _reduce_to(gx * (x_prev - f_all), params[0]), None

    def needs_x_prev(self, needs: tuple) -> bool:
        return bool(needs[0])


class InstantRateCell(RateCell):
    """:class:`ntgraph.models.RateUnit` without ``tau``: ``params = (None, bias, None)``, ``x_t = f_t``.

    ``A = 0``, ``J = f'``.
    """

    stores_f = False

    def __init__(self, tanh: bool) -> None:
        self.tanh = bool(tanh)

    def step(self, x_prev: Tensor, f: Tensor, k: Any, out: Tensor, bufs: list[Tensor]) -> Tensor:
        return f if f is out else out.copy_(f)

    def run(self, f_all: Tensor, x0: Tensor, k: Any, x_all: Tensor, overwrite_f: bool) -> Tensor:
        return f_all

    def local(self, f_all: Tensor, x_prev: Optional[Tensor], params: tuple) -> tuple[Optional[Tensor], Tensor, Any]:
        return None, _act_derivative(f_all, self.tanh), None

    def needs_x_prev(self, needs: tuple) -> bool:
        return False


class RateScan(torch.autograd.Function):
    """``(drive, x0, p0, p1, p2, hist, W, b) -> x [T, B, n]`` for the rate model ``cell``; see the module docstring.

    ``p0, p1, p2``: the cell's parameters (:class:`RateCell`), computed outside (under autograd) by the
    population's :meth:`coefficients`, so their clamps are differentiated there.
    """

    @staticmethod
    def forward(ctx: Any, drive: Tensor, x0: Tensor, p0: Optional[Tensor], p1: Tensor, p2: Optional[Tensor],
                hist: Optional[Tensor], weight: Optional[Tensor], bias: Optional[Tensor], delay: int,
                cell: RateCell, overwrite_drive: bool = False) -> Tensor:
        steps, batch, n = drive.shape
        params = (p0, p1, p2)
        recurrent = weight is not None
        offset = cell.offset(params)
        if bias is not None:
            offset = offset + bias
        k = cell.prepare(params)
        # u = D + c (+ b): a fresh tensor, or the caller's temporary when it is given away (no autograd)
        u_all = drive.add_(offset) if overwrite_drive and ctx is None else drive + offset
        x_all = torch.empty_like(drive)
        if not recurrent:
            f_all = _activate(u_all, cell.tanh)
            keep_f = ctx is not None and cell.stores_f
            x_all = cell.run(f_all, x0, k, x_all, overwrite_f=not keep_f)
        else:
            f_all = u_all if cell.stores_f else x_all  # f_t overwrites u_t (or is x_t itself)
            shape = (batch, n)
            bufs = [torch.empty(shape, dtype=drive.dtype, device=drive.device) for _ in range(2)]
            w_t = weight.t()
            x = x0
            with step_threads(batch * weight.shape[0] * weight.shape[1]):
                for t in range(steps):
                    pre = x_all[t - delay] if t >= delay else hist[t]
                    u = u_all[t].addmm_(pre, w_t) if cell.stores_f else torch.addmm(u_all[t], pre, w_t, out=x_all[t])
                    f = _activate(u, cell.tanh)
                    x = cell.step(x, f, k, x_all[t], bufs)
        if ctx is not None:
            ctx.set_materialize_grads(False)
            ctx.cell, ctx.delay = cell, delay
            ctx.save_for_backward(x_all, f_all if cell.stores_f else None, x0, hist, weight, bias, p0, p1, p2)
        return x_all

    @staticmethod
    def backward(ctx: Any, grad_x: Optional[Tensor]):  # type: ignore[override]
        x_all, f_all, x0, hist, weight, bias, p0, p1, p2 = ctx.saved_tensors
        cell: RateCell = ctx.cell
        delay = ctx.delay
        needs = ctx.needs_input_grad
        params = (p0, p1, p2)
        steps, batch, n = x_all.shape
        if f_all is None:
            f_all = x_all
        recurrent = weight is not None
        if grad_x is None:
            grad_x = torch.zeros_like(x_all)
        x_prev = torch.cat([x0.unsqueeze(0), x_all[:-1]]) if cell.needs_x_prev((needs[2], needs[3], needs[4])) else None
        decay, jac, extra = cell.local(f_all, x_prev, params)
        per_step = decay is not None and decay.ndim == 3
        gx_all = torch.empty_like(x_all)
        if recurrent:
            gi_all = torch.empty_like(x_all)
            with step_threads(batch * n * weight.shape[1]):
                for t in range(steps - 1, -1, -1):
                    g = gx_all[t]
                    if decay is not None and t + 1 < steps:
                        torch.addcmul(grad_x[t], decay[t + 1] if per_step else decay, gx_all[t + 1], out=g)
                    else:
                        g.copy_(grad_x[t])
                    if t + delay < steps:
                        g.addmm_(gi_all[t + delay], weight)
                    torch.mul(g, jac[t], out=gi_all[t])
        else:
            if decay is None:
                gx_all = grad_x
            else:
                g = gx_all[steps - 1].copy_(grad_x[steps - 1])
                for t in range(steps - 2, -1, -1):
                    g = torch.addcmul(grad_x[t], decay[t + 1] if per_step else decay, g, out=gx_all[t])
            gi_all = jac.mul_(gx_all)
        grad_drive = gi_all if needs[0] else None
        grad_x0 = None
        if needs[1] and decay is not None:
            grad_x0 = (decay[0] if per_step else decay) * gx_all[0]
        grad_p0, grad_p2 = cell.param_grads(gx_all, f_all, x_prev, params, extra, (needs[2], needs[4]))
        grad_p1 = _reduce_to(gi_all, p1) * cell.offset_sign if needs[3] else None
        grad_b = _reduce_to(gi_all, bias) if bias is not None and needs[7] else None
        grad_hist = grad_w = None
        if recurrent:
            grad_hist, grad_w = self_projection_grads(gi_all, x_all, hist, weight, delay, needs[5], needs[6])
        return grad_drive, grad_x0, grad_p0, grad_p1, grad_p2, grad_hist, grad_w, grad_b, None, None, None


def rate_scan(drive: Tensor, x0: Tensor, params: tuple, cell: RateCell, *, hist: Optional[Tensor] = None,
              weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, delay: int = 1,
              overwrite_drive: bool = False) -> Tensor:
    """Run :class:`RateScan`: the rates ``x`` ``[T, B, n]`` of a rate population.

    ``drive`` ``[T, B, n]``: the current from outside the population; ``x0`` ``[B, n]``: the rate before
    step 0; ``params``: the cell's three tensors (:class:`RateCell`); ``weight`` ``[n, n]`` / ``bias``
    ``[n]``: the population's dense self-projection of ``delay >= 1`` steps (``hist`` ``[delay, B, n]``: its
    outputs of steps ``-delay .. -1``, oldest first).  Without autograd the forward runs with nothing saved;
    ``overwrite_drive=True`` (``drive`` is the caller's temporary) then lets it reuse ``drive``'s memory.
    """
    args = (drive, x0, *params, hist, weight, bias)
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in args):
        return RateScan.apply(*args, delay, cell)
    return RateScan.forward(None, *args, delay, cell, overwrite_drive)


class IFScan(torch.autograd.Function):
    """``(drive, v0, gain, v_th, v_reset, hist, W, b) -> (z, v)`` of an IF population; see the module docstring.

    The loop folds the gain into the self-projection (``W' = diag(g) W``), so a step is
    ``x = addcmul(v, D_t + b, g)``, ``x += z_{t-d} W'^T``, ``z = x > v_th`` and the reset (4 tensor operations).
    ``keep_v=False`` (no membrane probe) returns only the last membrane, ``[1, B, n]``; the backward never
    reads ``v`` (it works from ``x`` and ``z``).
    """

    @staticmethod
    def forward(ctx: Any, drive: Tensor, v0: Tensor, gain: Tensor, v_th: Tensor, v_reset: Tensor,
                hist: Optional[Tensor], weight: Optional[Tensor], bias: Optional[Tensor], delay: int,
                zero_reset: bool, detach: bool, surrogate: Any, keep_v: bool = True) -> tuple[Tensor, Tensor]:
        steps, batch, n = drive.shape
        recurrent = weight is not None
        shape = (batch, n)
        inp = drive if bias is None else drive + bias
        # IF is the LIF recurrence with a = 1 and no leak: x - v_th = (v - v_th) + g*I, run by the LIF kernel
        compiled = _lif_kernel_forward(inp, v0, torch.ones_like(gain), gain, torch.zeros_like(gain), v_th, v_reset,
                                       zero_reset, hist, weight, delay, ctx is not None, keep_v)
        if compiled is not None:  # the whole loop in one compiled call; x is kept shifted, x - v_th
            x_shift, z_all, v_all, spikes = compiled
            if ctx is not None:
                ctx.set_materialize_grads(False)
                ctx.zero_reset, ctx.detach, ctx.surrogate, ctx.delay = zero_reset, detach, surrogate, delay
                ctx.shifted = True
                ctx.spikes = spikes if recurrent and ctx.needs_input_grad[6] else None
                ctx.save_for_backward(x_shift, z_all, drive if ctx.needs_input_grad[2] else None, hist, weight,
                                      bias, gain, v_th, v_reset)
            return z_all, v_all
        w_scaled_t = (gain.unsqueeze(-1) * weight).t() if recurrent else None
        z_all = torch.empty_like(drive)
        x_all = torch.empty_like(drive) if ctx is not None else None
        v_all = torch.empty_like(drive) if keep_v else None
        v_buf = None if keep_v else torch.empty(shape, dtype=drive.dtype, device=drive.device)
        gain_b = gain.expand(shape)
        th_b = v_th.expand(shape)
        reset_to = v_reset.expand(shape) if zero_reset else None
        neg_th = (-v_th).expand(shape)
        v = v0
        with step_threads(batch * n * weight.shape[1] if recurrent else 0):
            for t in range(steps):
                # x: into x_all[t] under autograd (the backward reads it), else into v's own slot (in place)
                out = x_all[t] if x_all is not None else (v_all[t] if keep_v else v_buf)
                x = torch.addcmul(v, inp[t], gain_b, out=out)
                if recurrent:
                    x.addmm_(z_all[t - delay] if t >= delay else hist[t], w_scaled_t)
                z = torch.gt(x, th_b, out=z_all[t])
                dest = v_all[t] if keep_v else v_buf
                if zero_reset:
                    v = torch.lerp(x, reset_to, z, out=dest)
                else:
                    v = torch.addcmul(x, z, neg_th, out=dest)
        if not keep_v:
            v_all = v.unsqueeze(0).clone()
        if ctx is not None:
            ctx.set_materialize_grads(False)
            ctx.zero_reset, ctx.detach, ctx.surrogate, ctx.delay = zero_reset, detach, surrogate, delay
            ctx.shifted, ctx.spikes = False, None
            ctx.save_for_backward(x_all, z_all, drive if ctx.needs_input_grad[2] else None, hist, weight, bias,
                                  gain, v_th, v_reset)
        return z_all, v_all

    @staticmethod
    def backward(ctx: Any, grad_z: Optional[Tensor], grad_v: Optional[Tensor]):  # type: ignore[override]
        x_all, z_all, drive, hist, weight, bias, gain, v_th, v_reset = ctx.saved_tensors
        zero_reset, detach, delay = ctx.zero_reset, ctx.detach, ctx.delay
        needs = ctx.needs_input_grad
        steps, batch, n = x_all.shape
        recurrent = weight is not None
        code = kernels.surrogate_code(ctx.surrogate)
        vectors = None
        if ctx.shifted and detach and code is not None and not needs[3] and not needs[4] and \
                not torch.is_grad_enabled():
            vectors = _kernel_vectors(batch, n, recurrent, x_all, grad_z, grad_v, weight, a=torch.ones_like(gain),
                                      gain=gain)
        if vectors is not None:  # the LIF backward kernel with a = 1 (x_all is x - v_th)
            g_all, gi_all, g_first = kernels.lif_backward_detached(x_all, grad_z, grad_v, vectors["a"],
                                                                   vectors["gain"], code, zero_reset, weight, delay,
                                                                   store_g=needs[2])
            return IFScan._parameter_grads(needs, g_all, gi_all, g_first, None, None, z_all, drive, hist, weight,
                                           bias, gain, v_th, v_reset, zero_reset, detach, delay, spikes=ctx.spikes)
        if ctx.shifted:
            x_all = x_all + v_th
        v_from = steps - grad_v.shape[0] if grad_v is not None else steps  # grad_v covers steps v_from .. T-1
        psi = ctx.surrogate.derivative(x_all - v_th)
        keep = (1.0 - z_all) if zero_reset else None
        dvdz = None
        if not detach:
            dvdz = (v_reset - x_all) if zero_reset else (-v_th).expand_as(x_all)
        need_gv = needs[4] or (needs[3] and not zero_reset and not detach)
        g_all = torch.empty_like(x_all)
        gi_all = torch.empty_like(x_all)
        gv_all = torch.zeros_like(x_all) if need_gv else None
        gz_all = torch.empty_like(x_all) if needs[3] else None
        zeros = torch.zeros_like(x_all[0])
        gz_buf, gv_buf = torch.empty_like(zeros), torch.empty_like(zeros)  # no allocation per step
        gain_b = gain.expand(batch, n)
        with step_threads(batch * n * weight.shape[1] if recurrent else 0):
            for t in range(steps - 1, -1, -1):
                gv: Optional[Tensor] = grad_v[t - v_from] if t >= v_from else None
                if t + 1 < steps:
                    gv = g_all[t + 1] if gv is None else torch.add(gv, g_all[t + 1], out=gv_buf)
                gz = grad_z[t] if grad_z is not None else zeros
                if recurrent and t + delay < steps:
                    gz = torch.addmm(gz, gi_all[t + delay], weight, out=gz_buf)
                if dvdz is not None and gv is not None:
                    gz = torch.addcmul(gz, gv, dvdz[t], out=gz_buf)
                if gz_all is not None:
                    gz_all[t] = gz
                if gv_all is not None and gv is not None:
                    gv_all[t] = gv
                g = torch.mul(gz, psi[t], out=g_all[t])
                if gv is not None:
                    if zero_reset:
                        g.addcmul_(gv, keep[t])
                    else:
                        g.add_(gv)
                torch.mul(g, gain_b, out=gi_all[t])
        return IFScan._parameter_grads(needs, g_all, gi_all, g_all[0], gz_all, gv_all, z_all, drive, hist, weight,
                                       bias, gain, v_th, v_reset, zero_reset, detach, delay, psi)

    @staticmethod
    def _parameter_grads(needs: tuple, g_all: Optional[Tensor], gi_all: Tensor, g_first: Tensor,
                         gz_all: Optional[Tensor], gv_all: Optional[Tensor], z_all: Tensor, drive: Optional[Tensor],
                         hist: Optional[Tensor], weight: Optional[Tensor], bias: Optional[Tensor], gain: Tensor,
                         v_th: Tensor, v_reset: Tensor, zero_reset: bool, detach: bool, delay: int,
                         psi: Optional[Tensor] = None, spikes: Optional[RowEvents] = None) -> tuple:
        """The backward's outputs from ``G`` (``g_all``), ``dL/dI`` and ``G_0`` (see the module docstring)."""
        recurrent = weight is not None
        grad_drive = gi_all if needs[0] else None
        grad_v0 = g_first if needs[1] else None
        grad_gain = grad_hist = grad_w = grad_b = None
        if needs[2]:
            current = drive if bias is None else drive + bias
            if recurrent:
                current = current + _pre_all(hist, z_all, delay) @ weight.t()
            grad_gain = _reduce_to(g_all * current, gain)
        grad_th, grad_reset = threshold_reset_grads(gz_all, psi, gv_all, z_all, v_th, v_reset, zero_reset, detach,
                                                    needs[3], needs[4])
        if recurrent:
            grad_hist, grad_w = self_projection_grads(gi_all, z_all, hist, weight, delay, needs[5], needs[6],
                                                      spikes=spikes)
        if bias is not None and needs[7]:
            grad_b = _reduce_to(gi_all, bias)
        return (grad_drive, grad_v0, grad_gain, grad_th, grad_reset, grad_hist, grad_w, grad_b,
                None, None, None, None, None)


def if_scan(drive: Tensor, v0: Tensor, gain: Tensor, v_th: Tensor, v_reset: Tensor, *, zero_reset: bool,
            detach: bool, surrogate: Any, hist: Optional[Tensor] = None, weight: Optional[Tensor] = None,
            bias: Optional[Tensor] = None, delay: int = 1, keep_v: bool = True) -> tuple[Tensor, Tensor]:
    """Run :class:`IFScan`: spikes and post-reset membranes ``[T, B, n]`` of an IF population.

    ``gain`` is ``dt*r`` (:class:`IFCoeffs`); ``weight``/``bias``/``hist``/``delay``: the dense self-projection,
    as for :func:`rate_scan`.  ``keep_v=False``: ``v`` is ``[1, B, n]``, the last step only.  Without autograd
    the same loop runs with nothing saved (the pre-reset membrane lives in ``v``'s buffer).
    """
    args = (drive, v0, gain, v_th, v_reset, hist, weight, bias)
    flags = (delay, zero_reset, detach, surrogate, keep_v)
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in args):
        return IFScan.apply(*args, *flags)
    return IFScan.forward(None, *args, *flags)
