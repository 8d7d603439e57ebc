"""The whole LIF scan over ``T`` steps as one autograd node, with a hand-written backward loop.

:class:`LIFScan` runs a LIF population for all ``T`` steps of a forward pass
at once, including its own delayed dense self-projection (the recurrent
matmul), and records a single autograd node instead of ~10 per step.  The
forward arithmetic is that of :meth:`LIFDynamics.step` in the same operation
order, so spikes and membranes are bit-identical to the step-by-step path::

    I_t  = D_t + W z_{t-d} + b                    (D: drive from outside, [T, B, n]; W, b, d: the self-projection)
    v1_t = a*v_{t-1} + (1-a)*(v_leak + r*I_t);    x_t = v1_t - v_th;    z_t = H(x_t)
    zero reset:      v_t = v1_t*(1 - z_t) + v_reset*z_t
    subtract reset:  v_t = v1_t - z_t*v_th

With ``detach`` (the backend's ``detach_reset``) the reset carries no gradient
through ``z``.  What the backward pass keeps: ``x`` (``[T, B, n]``), the spikes
(which are the node's output anyway), and ``v`` and ``I`` only when a neuron
parameter is learnable.  The backward loop runs in reverse time::

    gz_t   = dL/dz_t + (dL/dI_{t+d}) W                         (the recurrent path)
    gv_t   = dL/dv_t + a*G_{t+1}                              (G = dL/dv1)
    gz'_t  = gz_t + gv_t * dv_t/dz_t                          (only without ``detach``)
    G_t    = gv_t * dv_t/dv1_t + gz'_t * psi(x_t)             (psi: the surrogate derivative)
    dL/dI_t = G_t*(1-a)*r

and after the loop, all at once: ``dL/dW = sum_t (dL/dI_t)^T z_{t-d}`` (one
GEMM over all steps), ``dL/db``, ``dL/dD = dL/dI`` and the parameter gradients
``dL/da = sum G*(v_{t-1} - v_leak - r*I)``, ``dL/dv_leak = sum G*(1-a)``,
``dL/dr = sum G*(1-a)*I``, ``dL/dv_th = -sum gz'*psi (- sum gv*z for a
non-detached subtract reset)``, ``dL/dv_reset = sum gv*z`` (zero reset).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LIFScan", "LinearScan", "lif_scan", "linear_scan", "step_threads"]

#: Per-step GEMMs of at most this many multiply-adds run on one intra-op thread (see :func:`step_threads`).
SMALL_STEP_MACS = 1 << 21


@contextmanager
def step_threads(macs: int) -> Iterator[None]:
    """Run a per-step loop on one intra-op thread when its per-step GEMM is small (``<= SMALL_STEP_MACS``).

    The per-step work of a scan is a ``[B, n] x [n, n]`` matmul and a few
    elementwise ops on ``[B, n]`` (below torch's parallel grain, so already
    single-threaded).  Splitting so small a GEMM over threads costs a thread
    barrier per step; on a busy machine, where the other thread may not be
    scheduled for a while, that barrier dominated (measured here under load:
    ~0.4-1.7 ms per ``64x128x128`` matmul on 2 threads against ~0.09 ms on 1).
    Large per-step GEMMs keep all threads.  The thread count is restored on exit.
    """
    threads = torch.get_num_threads()
    if threads <= 1 or macs > SMALL_STEP_MACS:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _reduce_to(grad: Tensor, like: Tensor) -> Tensor:
    """Sum a ``[T, B, n]`` gradient down to the shape of a broadcast parameter (``()`` or ``(n,)``)."""
    if like.ndim == 0:
        return grad.sum().reshape(())
    return grad.reshape(-1, grad.shape[-1]).sum(0).reshape(like.shape)


class LIFScan(torch.autograd.Function):
    """``(drive, v0, a, v_leak, r, v_th, v_reset, hist, W, b) -> (z [T,B,n], v [T,B,n])``; see the module docstring."""

    @staticmethod
    def forward(ctx: Any, drive: Tensor, v0: Tensor, a: Tensor, v_leak: Tensor, r: Tensor, v_th: Tensor,
                v_reset: Tensor, hist: Optional[Tensor], weight: Optional[Tensor], bias: Optional[Tensor],
                delay: int, zero_reset: bool, detach: bool, surrogate: Any) -> tuple[Tensor, Tensor]:
        steps = drive.shape[0]
        one_minus_a = 1.0 - a
        x_all = torch.empty_like(drive)
        v_all = torch.empty_like(drive)
        recurrent = weight is not None
        zb = torch.empty(drive.shape, dtype=torch.bool, device=drive.device)
        need_params = any(ctx.needs_input_grad[2:5]) if ctx is not None else False
        if recurrent:
            z_all = torch.empty_like(drive)
            i_all = torch.empty_like(drive) if need_params else None
        else:
            # input-independent of the state: (1-a)*(v_leak + r*I) for all steps at once (same arithmetic per element)
            u_all = one_minus_a * (v_leak + r * drive)
        v = v0
        macs = drive.shape[1] * weight.shape[0] * weight.shape[1] if recurrent else 0
        with step_threads(macs):
            for t in range(steps):
                if recurrent:
                    pre = z_all[t - delay] if t >= delay else hist[t]
                    current = drive[t] + F.linear(pre, weight, bias)
                    if i_all is not None:
                        i_all[t] = current
                    u = one_minus_a * (v_leak + r * current)
                else:
                    u = u_all[t]
                v1 = a * v + u
                x = torch.sub(v1, v_th, out=x_all[t])
                z = torch.gt(x, 0, out=zb[t])
                if zero_reset:
                    v = torch.where(z, v_reset, v1, out=v_all[t])  # = v1*(1-z) + v_reset*z for z in {0, 1}
                else:
                    v = torch.where(z, x, v1, out=v_all[t])  # = v1 - z*v_th
                if recurrent:
                    z_all[t] = z
        if not recurrent:
            z_all = zb.to(drive.dtype)
        if ctx is not None:
            ctx.set_materialize_grads(False)
            ctx.zero_reset, ctx.detach, ctx.surrogate, ctx.delay = zero_reset, detach, surrogate, delay
            ctx.recurrent = recurrent
            if not recurrent:
                i_all = drive if need_params else None
            keep_v = need_params or any(ctx.needs_input_grad[5:7]) or not detach
            ctx.save_for_backward(x_all, z_all, v_all if keep_v else None, v0 if need_params else None,
                                  i_all, hist, weight, a, v_leak, r, v_th, v_reset)
        return z_all, v_all

    @staticmethod
    def backward(ctx: Any, grad_z: Optional[Tensor], grad_v: Optional[Tensor]):  # type: ignore[override]
        x_all, z_all, v_all, v0, i_all, hist, weight, a, v_leak, r, v_th, v_reset = ctx.saved_tensors
        zero_reset, detach, delay, recurrent = ctx.zero_reset, ctx.detach, ctx.delay, ctx.recurrent
        needs = ctx.needs_input_grad
        steps = x_all.shape[0]
        psi = ctx.surrogate.derivative(x_all)
        gain = (1.0 - a) * r
        need_params = any(needs[2:7])
        if grad_z is None:
            grad_z = torch.zeros_like(x_all)
        keep = (1.0 - z_all) if zero_reset else None
        dvdz = None
        if not detach:  # the reset's own gradient through z
            dvdz = (v_reset - (x_all + v_th)) if zero_reset else (-v_th).expand_as(x_all)
        g_all = torch.empty_like(x_all)
        gv_all = torch.empty_like(x_all) if (need_params or not detach) else None
        gzt_all = torch.empty_like(x_all) if needs[5] else None
        gi_all = torch.empty_like(x_all) if recurrent else None
        carry: Optional[Tensor] = None
        fast = not recurrent and detach and gv_all is None
        if fast:
            p_all = grad_z * psi  # no recurrence, detached reset: G_t = (dL/dv_t + a*G_{t+1})*keep_t + p_t
        macs = x_all.shape[1] * weight.shape[0] * weight.shape[1] if recurrent else 0
        with step_threads(macs):
            for t in range(steps - 1, -1, -1):
                gv = grad_v[t] if grad_v is not None else None
                if carry is not None:
                    gv = carry if gv is None else gv + carry
                if fast:
                    if gv is None:
                        g = p_all[t]
                    else:
                        g = gv * keep[t] + p_all[t] if zero_reset else gv + p_all[t]
                    g_all[t] = g
                    carry = a * g
                    continue
                gz = grad_z[t]
                if recurrent and t + delay < steps:
                    gz = torch.addmm(gz, gi_all[t + delay], weight)
                if gv is None:
                    gv = torch.zeros_like(gz)
                if gv_all is not None:
                    gv_all[t] = gv
                if dvdz is not None:
                    gz = gz + gv * dvdz[t]
                if gzt_all is not None:
                    gzt_all[t] = gz
                g = (gv * keep[t] if zero_reset else gv) + gz * psi[t]
                g_all[t] = g
                if recurrent:
                    torch.mul(g, gain, out=gi_all[t])
                carry = a * g
        if gi_all is None:
            gi_all = g_all * gain

        grad_drive = gi_all if needs[0] else None
        grad_v0 = carry if needs[1] else None
        grad_hist = grad_w = grad_b = None
        if recurrent:
            if needs[7]:
                grad_hist = torch.stack([gi_all[j] @ weight if j < steps else torch.zeros_like(hist[j])
                                         for j in range(delay)])
            if needs[8]:
                pre = torch.cat([hist, z_all[:steps - delay]]) if delay <= steps else hist[:steps]
                n_in = pre.shape[-1]
                grad_w = gi_all.reshape(-1, gi_all.shape[-1]).t() @ pre.reshape(-1, n_in)
            if needs[9]:
                grad_b = gi_all.reshape(-1, gi_all.shape[-1]).sum(0)
        grad_a = grad_leak = grad_r = grad_th = grad_reset = None
        if need_params:
            if needs[2]:
                v_prev = torch.cat([v0.unsqueeze(0), v_all[:-1]])
                grad_a = _reduce_to(g_all * (v_prev - (v_leak + r * i_all)), a)
            if needs[3]:
                grad_leak = _reduce_to(g_all * (1.0 - a), v_leak)
            if needs[4]:
                grad_r = _reduce_to(g_all * (1.0 - a) * i_all, r)
            if needs[5]:
                th = -(gzt_all * psi)
                if not zero_reset and not detach:
                    th = th - gv_all * z_all
                grad_th = _reduce_to(th, v_th)
            if needs[6] and zero_reset:
                grad_reset = _reduce_to(gv_all * z_all, v_reset)
            elif needs[6]:
                grad_reset = torch.zeros_like(v_reset)
        return (grad_drive, grad_v0, grad_a, grad_leak, grad_r, grad_th, grad_reset, grad_hist, grad_w, grad_b,
                None, None, None, None)


def lif_scan(drive: Tensor, v0: Tensor, a: Tensor, v_leak: Tensor, r: Tensor, v_th: Tensor, v_reset: Tensor, *,
             zero_reset: bool, detach: bool, surrogate: Any, hist: Optional[Tensor] = None,
             weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, delay: int = 1) -> tuple[Tensor, Tensor]:
    """Run :class:`LIFScan`: spikes and post-reset membranes ``[T, B, n]``.

    ``drive`` ``[T, B, n]`` is the current from outside the population;
    ``weight`` ``[n, n]`` / ``bias`` ``[n]`` the population's dense self-projection of ``delay`` steps (``hist``
    ``[delay, B, n]``: its outputs of steps ``-delay .. -1``, oldest first).  Without autograd (no tensor needing
    a gradient, or under ``torch.no_grad``) the same forward loop runs with no saved state.
    """
    args = (drive, v0, a, v_leak, r, v_th, v_reset, hist, weight, bias, delay, zero_reset, detach, surrogate)
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in args):
        return LIFScan.apply(*args)
    return LIFScan.forward(None, *args)


class LinearScan(torch.autograd.Function):
    """``y_t = k*y_{t-1} + u_t`` for all ``t``: ``(u [T,B,n], y0 [B,n], k) -> y [T,B,n]``.

    The leaky integrators (LI readouts, CubaLIF's synaptic current) are this
    recurrence with ``u`` computed for all steps at once outside (under
    autograd).  The backward loop is ``g_t = dL/dy_t + k*g_{t+1}``; then
    ``dL/du = g``, ``dL/dy0 = k*g_0`` and ``dL/dk = sum_t g_t*y_{t-1}``.
    """

    @staticmethod
    def forward(ctx: Any, u: Tensor, y0: Tensor, k: Tensor) -> Tensor:
        y_all = torch.empty_like(u)
        y = y0
        for t in range(u.shape[0]):
            y = torch.add(k * y, u[t], out=y_all[t])
        if ctx is not None:
            ctx.save_for_backward(y0 if ctx.needs_input_grad[2] else None, y_all if ctx.needs_input_grad[2] else None, k)
        return y_all

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor):  # type: ignore[override]
        y0, y_all, k = ctx.saved_tensors
        g_all = torch.empty_like(grad_y)
        g = None
        for t in range(grad_y.shape[0] - 1, -1, -1):
            g = grad_y[t] if g is None else torch.add(grad_y[t], k * g, out=g_all[t])
            if t == grad_y.shape[0] - 1:
                g_all[t] = g
        grad_y0 = k * g if ctx.needs_input_grad[1] else None
        grad_k = None
        if ctx.needs_input_grad[2]:
            y_prev = torch.cat([y0.unsqueeze(0), y_all[:-1]])
            grad_k = _reduce_to(g_all * y_prev, k)
        return g_all, grad_y0, grad_k


def linear_scan(u: Tensor, y0: Tensor, k: Tensor) -> Tensor:
    """Run :class:`LinearScan` (no saved state without autograd)."""
    if torch.is_grad_enabled() and (u.requires_grad or y0.requires_grad or k.requires_grad):
        return LinearScan.apply(u, y0, k)
    return LinearScan.forward(None, u, y0, k)
