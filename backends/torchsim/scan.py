"""The whole LIF scan over ``T`` steps as one autograd node, with a hand-written backward loop.

:class:`LIFScan` runs a LIF population for all ``T`` steps of a forward pass
at once, including its own delayed dense self-projection (the recurrent
matmul), and records a single autograd node instead of ~10 per step.  It
computes the recurrence of :meth:`LIFDynamics.step` (rearranged for fewer
operations per step, see :class:`LIFScan`; equal to the step-by-step path up
to rounding in the last bits)::

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

On the CPU the time loops of the LIF forward, its detached backward and the
linear scans run as compiled kernels (:mod:`.kernels`, numba) where they pay;
the PyTorch loops here are the fallback (CUDA, other surrogates, kernels off)
and the reference the kernels are tested against.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import kernels
from .events import RowEvents, StepEvents, attach_events, event_weight_grad

__all__ = ["LIFScan", "LinearScan", "ALIFScan", "lif_scan", "linear_scan", "alif_scan", "step_threads"]

#: Per-step GEMMs of at most this many multiply-adds run on one intra-op thread (see :func:`step_threads`).
#: Lowered from ``1 << 21`` (chosen under heavy load) after measuring on a quiet machine (2026-11-23, 2 threads):
#: ``[32, 256] x [256, 256]`` took 49 us on 2 threads against 61 on 1, ``[64, 128] x [128, 128]`` 22 against 29,
#: and whole SHD steps at (100, 64, 128) and (250, 32, 256) were 4-10% faster.  Raise it on a busy machine.
SMALL_STEP_MACS = 1 << 16


@contextmanager
def step_threads(macs: int) -> Iterator[None]:
    """Run a per-step loop on one intra-op thread when its per-step GEMM is small (``<= SMALL_STEP_MACS``).

    The per-step work of a scan is a ``[B, n] x [n, n]`` matmul and a few
    elementwise ops on ``[B, n]`` (below torch's parallel grain, so already
    single-threaded).  Splitting so small a GEMM over threads costs a thread
    barrier per step; on a busy machine, where the other thread may not be
    scheduled for a while, that barrier dominated (measured here under load:
    ~0.4-1.7 ms per ``64x128x128`` matmul on 2 threads against ~0.09 ms on 1),
    while on a quiet machine two threads win down to small GEMMs (see
    :data:`SMALL_STEP_MACS`).  Larger per-step GEMMs keep all threads.  The
    thread count is restored on exit.
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
    """Sum a ``[T, B, n]`` gradient down to the shape of a broadcast parameter (``()``, ``(n,)``, ``(B, n)``...)."""
    if like.ndim == 0:
        return grad.sum().reshape(())
    return grad.sum_to_size(like.shape)


class LIFScan(torch.autograd.Function):
    """``(drive, v0, a, v_leak, r, v_th, v_reset, hist, W, b) -> (z [T,B,n], v [T,B,n])``; see the module docstring.

    The loop runs on the shifted membrane ``s = v - v_th`` with the input term
    and the gain folded in once per call, so a step is 3-4 tensor operations::

        C_t = (1-a)*(v_leak - v_th) + (1-a)*r*(D_t + b),   W' = diag((1-a)*r) W     (C_t: per step into x, no buffer)
        x_t = a*s_{t-1} + C_t + z_{t-d} W'^T;   z_t = H(x_t);   s_t = lerp(x_t, v_reset - v_th, z_t) | x_t - z_t*v_th

    (``lerp`` with weight 0 or 1 returns exactly one end.)  This is the same
    recurrence as the step function, rounded differently in the last bits.
    With a large self-projection (``events``, :class:`~.events.StepEvents`) the
    product ``z_{t-d} W'^T`` is summed from the rows of ``W'^T`` of the neurons
    that spiked, and the events are kept for the weight gradient.
    """

    @staticmethod
    def forward(ctx: Any, drive: Tensor, v0: Tensor, a: Tensor, v_leak: Tensor, r: Tensor, v_th: Tensor,
                v_reset: Tensor, hist: Optional[Tensor], weight: Optional[Tensor], bias: Optional[Tensor],
                delay: int, zero_reset: bool, detach: bool, surrogate: Any,
                keep_v: bool = True, events: Optional[tuple[str, float]] = None) -> tuple[Tensor, Tensor]:
        steps, batch, n = drive.shape
        recurrent = weight is not None
        need_params = ctx is not None and any(ctx.needs_input_grad[2:7])
        # Without keep_v the backward never reads v unless it must: then v is [1, B, n], the last step only.
        store_v = keep_v or need_params or not detach
        gain = (1.0 - a) * r
        inp = drive if bias is None else drive + bias
        const = (1.0 - a) * (v_leak - v_th)
        compiled = _lif_kernel_forward(inp, v0, a, gain, const, v_th, v_reset, zero_reset, hist, weight, delay,
                                       True, store_v)
        step_events = spikes = None
        if compiled is not None:  # the whole loop in one compiled call
            x_all, z_all, v_all, spikes = compiled
        else:
            w_scaled_t = (gain.unsqueeze(-1) * weight).t() if recurrent else None
            x_all, z_all, v_all, step_events = _lif_forward_loop(inp, v0, a, gain, const, v_th, v_reset, hist,
                                                                 weight, w_scaled_t, delay, zero_reset, store_v,
                                                                 events)
        if ctx is not None:
            ctx.set_materialize_grads(False)
            ctx.zero_reset, ctx.detach, ctx.surrogate, ctx.delay = zero_reset, detach, surrogate, delay
            ctx.recurrent, ctx.step_events = recurrent, step_events
            ctx.spikes = spikes if recurrent and ctx.needs_input_grad[8] else None
            ctx.save_for_backward(x_all, z_all, v_all if need_params or not detach else None,
                                  v0 if need_params else None, drive if any(ctx.needs_input_grad[2:5]) else None,
                                  hist, weight, bias, a, v_leak, r, v_th, v_reset)
        return z_all, v_all

    @staticmethod
    def backward(ctx: Any, grad_z: Optional[Tensor], grad_v: Optional[Tensor]):  # type: ignore[override]
        x_all, z_all, v_all, v0, drive, hist, weight, bias, a, v_leak, r, v_th, v_reset = ctx.saved_tensors
        zero_reset, detach, delay, recurrent = ctx.zero_reset, ctx.detach, ctx.delay, ctx.recurrent
        needs = ctx.needs_input_grad
        steps, batch, n = x_all.shape
        fast = detach and not needs[5]
        if grad_v is not None and grad_v.shape[0] != steps and not fast:  # v was [1, B, n]: the last step only
            full = torch.zeros_like(x_all)
            full[steps - 1] = grad_v[0]
            grad_v = full
        gain = (1.0 - a) * r
        w_scaled = gain.unsqueeze(-1) * weight if recurrent and not fast else None
        code = kernels.surrogate_code(ctx.surrogate)
        vectors = None
        if fast and code is not None and not torch.is_grad_enabled():
            vectors = _kernel_vectors(batch, n, recurrent, x_all, grad_z, grad_v, weight, a=a, gain=gain)
        psi = gz_all = None
        if vectors is not None:  # the whole backward loop in one compiled call
            g_all, gi_all, g_first = kernels.lif_backward_detached(x_all, grad_z, grad_v, vectors["a"],
                                                                   vectors["gain"], code, zero_reset, weight, delay,
                                                                   store_g=any(needs[2:7]))
            gv_all = _grad_v_from(g_all, grad_v, a) if needs[6] else None
        elif fast:
            if grad_z is None:
                grad_z = torch.zeros_like(x_all)
            g_all, gi_all, gv_all, g_first = _backward_detached_fused(x_all, z_all, grad_z, grad_v, a, gain,
                                                                      ctx.surrogate, zero_reset, needs,
                                                                      weight if recurrent else None, delay)
        else:
            if grad_z is None:
                grad_z = torch.zeros_like(x_all)
            psi = ctx.surrogate.derivative(x_all)
            if detach:
                g_all, gv_all, gz_all = _backward_detached(x_all, z_all, psi, grad_z, grad_v, a, w_scaled, delay,
                                                           zero_reset, needs)
            else:
                g_all, gv_all, gz_all = _backward_general(x_all, z_all, psi, grad_z, grad_v, a, w_scaled, v_th,
                                                          v_reset, delay, zero_reset, needs)
            gi_all = g_all * gain  # dL/dI_t
            g_first = g_all[0]
        grad_drive = gi_all if needs[0] else None
        grad_v0 = a * g_first if needs[1] else None
        grad_hist = grad_w = grad_b = None
        if recurrent:
            grad_hist, grad_w = self_projection_grads(gi_all, z_all, hist, weight, delay, needs[7], needs[8],
                                                      ctx.step_events, ctx.spikes)
        if bias is not None and needs[9]:
            grad_b = gi_all.reshape(-1, n).sum(0)
        grad_a = grad_leak = grad_r = None
        if any(needs[2:5]):
            current = drive if bias is None else drive + bias
            if recurrent:
                current = current + _pre_all(hist, z_all, delay) @ weight.t()
            if needs[2]:
                v_prev = torch.cat([v0.unsqueeze(0), v_all[:-1]])
                grad_a = _reduce_to(g_all * (v_prev - (v_leak + r * current)), a)
            if needs[3]:
                grad_leak = _reduce_to(g_all * (1.0 - a), v_leak)
            if needs[4]:
                grad_r = _reduce_to(g_all * (1.0 - a) * current, r)
        grad_th, grad_reset = threshold_reset_grads(gz_all, psi, gv_all, z_all, v_th, v_reset, zero_reset, detach,
                                                    needs[5], needs[6])
        return (grad_drive, grad_v0, grad_a, grad_leak, grad_r, grad_th, grad_reset, grad_hist, grad_w, grad_b,
                None, None, None, None, None, None)


def _lif_forward_loop(inp: Tensor, v0: Tensor, a: Tensor, gain: Tensor, const: Tensor, v_th: Tensor,
                      v_reset: Tensor, hist: Optional[Tensor], weight: Optional[Tensor],
                      w_scaled_t: Optional[Tensor], delay: int, zero_reset: bool, store_v: bool,
                      events: Optional[tuple[str, float]]) -> tuple[Tensor, Tensor, Tensor, Optional[StepEvents]]:
    """:meth:`LIFScan.forward`'s per-step PyTorch loop (used where :func:`.kernels.lif_forward` is not).

    Returns ``(x, z, v, the event recorder or None)``, each ``[T, B, n]`` but ``v``, which is ``[1, B, n]`` (the
    last step) without ``store_v``.  ``C_t`` is computed per step into ``x`` (no ``[T, B, n]`` buffer).
    """
    steps, batch, n = inp.shape
    recurrent = weight is not None
    x_all = torch.empty_like(inp)
    z_all = torch.empty_like(inp)
    shape = (batch, n)
    s_all = torch.empty_like(inp) if store_v else None
    s_buf = None if store_v else torch.empty(shape, dtype=inp.dtype, device=inp.device)
    a_b = a.expand(shape)
    reset_to = (v_reset - v_th).expand(shape) if zero_reset else None
    neg_th = (-v_th).expand(shape)
    s = v0 - v_th
    macs = batch * weight.shape[0] * weight.shape[1] if recurrent else 0
    step_events, table = _step_events(events, inp, weight, steps, batch, delay, w_scaled_t)
    # per-step views taken once (indexing a tensor costs ~2 us a call); 0-dim tensors, not Python scalars
    x_rows, z_rows, inp_rows = x_all.unbind(0), z_all.unbind(0), inp.unbind(0)
    s_rows = s_all.unbind(0) if store_v else [s_buf] * steps
    zero = _scalar(0.0, inp)
    with step_threads(macs):
        for t in range(steps):
            x = torch.addcmul(const, inp_rows[t], gain, out=x_rows[t])
            if recurrent:
                _add_recurrent_input(t, delay, hist, z_rows, w_scaled_t, step_events, table, x)
            x.addcmul_(a_b, s)
            z = torch.gt(x, zero, out=z_rows[t])
            if step_events is not None and t + delay < steps:
                step_events.record(t, z)
            if zero_reset:
                s = torch.lerp(x, reset_to, z, out=s_rows[t])
            else:
                s = torch.addcmul(x, z, neg_th, out=s_rows[t])
    v_all = s_all.add_(v_th) if store_v else (s + v_th).unsqueeze(0)
    return x_all, z_all, v_all, step_events


def _kernel_vectors(batch: int, n: int, recurrent: bool, *tensors: Optional[Tensor],
                    **params: Tensor) -> Optional[dict[str, "np.ndarray"]]:
    """The per-neuron ``params`` as ``[n]`` arrays for :mod:`.kernels`, or None where the kernels do not apply.

    They apply when the kernels are enabled and pay at this size (:func:`.kernels.pays`), every tensor
    (``tensors`` and ``params``) is a CPU tensor of one dtype (float32 or float64) and every parameter is a
    scalar or per-neuron (no per-sample values).
    """
    if not kernels.pays(batch, n, recurrent) or not kernels.usable(*tensors, *params.values()):
        return None
    out = {}
    for name, value in params.items():
        vector = kernels.param_vector(value, n)
        if vector is None:
            return None
        out[name] = vector
    return out


def _lif_kernel_forward(inp: Tensor, v0: Tensor, a: Tensor, gain: Tensor, const: Tensor, v_th: Tensor,
                        v_reset: Tensor, zero_reset: bool, hist: Optional[Tensor], weight: Optional[Tensor],
                        delay: int, store_x: bool, store_v: bool
                        ) -> Optional[tuple[Optional[Tensor], Tensor, Tensor, RowEvents]]:
    """:func:`.kernels.lif_forward` where the kernels apply (else None): ``(x - v_th or None, z, v, spikes)``.

    The kernel's table ``W'^T = (diag(gain) W)^T`` is written contiguous in one pass (one ``[n_pre, n]``
    buffer; the product and then a contiguous copy of its transpose would take two).

    ``v`` is ``[T, B, n]`` with ``store_v``, else the last step ``[1, B, n]``; ``spikes`` are the events of ``z``
    as ``[T*B, n]``, also attached to ``z`` (:func:`~.events.attach_events`) for the projections that read it.
    """
    steps, batch, n = inp.shape
    vectors = _kernel_vectors(batch, n, weight is not None, inp, v0, hist, weight, a=a, gain=gain, const=const,
                              v_th=v_th, reset=(v_reset - v_th) if zero_reset else v_th)
    if vectors is None:
        return None
    table = None
    if weight is not None:
        w = weight.detach()
        table = torch.mul(w.t(), gain.detach().expand(n), out=torch.empty(w.shape[1], n, dtype=w.dtype))
    x_all, z_all, v_all, v_last, (ptr, cols) = kernels.lif_forward(
        inp, v0, vectors["a"], vectors["gain"], vectors["const"], vectors["reset"], vectors["v_th"], zero_reset,
        hist, table, delay, store_x, store_v)
    spikes = RowEvents(ptr, cols, None, n)
    attach_events(z_all, spikes)
    return x_all, z_all, (v_all if store_v else v_last), spikes


def threshold_reset_grads(gz_all: Optional[Tensor], psi: Optional[Tensor], gv_all: Optional[Tensor], z_all: Tensor,
                          v_th: Tensor, v_reset: Tensor, zero_reset: bool, detach: bool, needs_th: bool,
                          needs_reset: bool) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """``(dL/dv_th, dL/dv_reset)`` of a spiking scan (each None unless needed), from the total ``dL/dz``
    (``gz_all``), the surrogate derivative ``psi`` and ``dL/dv`` (``gv_all``)::

        dL/dv_th    = -sum gz*psi  (- sum gv*z for a subtract reset with the reset's gradient)
        dL/dv_reset = sum gv*z     (zero reset; a subtract reset never reads v_reset)
    """
    grad_th = grad_reset = None
    if needs_th:
        th = -(gz_all * psi)
        if not zero_reset and not detach:
            th = th - gv_all * z_all
        grad_th = _reduce_to(th, v_th)
    if needs_reset:
        grad_reset = _reduce_to(gv_all * z_all, v_reset) if zero_reset else torch.zeros_like(v_reset)
    return grad_th, grad_reset


def _pre_all(hist: Tensor, z_all: Tensor, delay: int) -> Tensor:
    """What the self-projection reads at every step: ``z_{t-d}`` (``hist`` before step 0), ``[T, B, n]``."""
    steps = z_all.shape[0]
    return torch.cat([hist, z_all[:max(steps - delay, 0)]])[:steps]


def _step_events(events: Optional[tuple[str, float]], drive: Tensor, weight: Optional[Tensor], steps: int,
                 batch: int, delay: int, w_scaled_t: Optional[Tensor]) -> tuple[Optional[StepEvents], Optional[Tensor]]:
    """The event recorder of a recurrent scan and the table ``W'^T`` it sums rows of, or ``(None, None)``.

    ``events`` is ``(mode, density threshold)`` of the self-projection (:class:`~.projections.DenseProjection`'s
    ``event_mode`` and ``event_threshold``); see :class:`~.events.StepEvents` for when the event path is used.
    """
    if events is None or weight is None or delay >= steps or not StepEvents.wanted(events[0], drive, weight, batch):
        return None, None
    return StepEvents(steps, batch, weight.shape[1], events[1], force=events[0] == "event"), w_scaled_t.contiguous()


def _scalar(value: float, like: Tensor) -> Tensor:
    """A 0-dim tensor of ``like``'s dtype and device (a Python scalar in an op is converted on every call)."""
    return torch.full((), value, dtype=like.dtype, device=like.device)


def _add_recurrent_input(t: int, delay: int, hist: Tensor, z_rows: Sequence[Tensor], w_scaled_t: Tensor,
                         step_events: Optional[StepEvents], table: Optional[Tensor], x: Tensor,
                         base: Optional[Tensor] = None) -> None:
    """``x = (base, or x itself) + z_{t-d} W'^T``: from the events of ``z_{t-d}`` when recorded and sparse enough.

    ``z_rows``: the spikes of every step (``z_all.unbind(0)``).
    """
    y = step_events.product(t - delay, table) if step_events is not None and t >= delay else None
    pre = None if y is not None else (z_rows[t - delay] if t >= delay else hist[t])
    if base is None and y is not None:
        x.add_(y)
    elif base is None:
        x.addmm_(pre, w_scaled_t)
    elif y is not None:
        torch.add(base, y, out=x)
    else:
        torch.addmm(base, pre, w_scaled_t, out=x)


def self_projection_grads(gi_all: Tensor, z_all: Tensor, hist: Tensor, weight: Tensor, delay: int,
                          needs_hist: bool, needs_w: bool, step_events: Optional[StepEvents] = None,
                          spikes: Optional[RowEvents] = None
                          ) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """``(dL/dhist, dL/dW)`` of a scan's own projection ``I_t += W z_{t-d}`` (each None unless needed).

    ``gi_all`` is ``dL/dI`` ``[T, B, n]``, ``z_all`` the scan's outputs; ``dL/dhist_j = dL/dI_j W`` and
    ``dL/dW`` as in :func:`_recurrent_weight_grad` (from ``step_events`` when they were recorded, or from the
    spike lists of the compiled forward).
    """
    steps = gi_all.shape[0]
    grad_hist = grad_w = None
    if needs_hist:
        grad_hist = torch.stack([gi_all[j] @ weight if j < steps else torch.zeros_like(hist[j])
                                 for j in range(delay)])
    if needs_w:
        grad_w = _recurrent_weight_grad(gi_all, z_all, hist, delay, step_events, spikes)
    return grad_hist, grad_w


def _recurrent_weight_grad(gi_all: Tensor, z_all: Tensor, hist: Tensor, delay: int,
                           step_events: Optional[StepEvents],
                           spikes: Optional[RowEvents] = None) -> Tensor:
    """``dL/dW = sum_t (dL/dI_t)^T z_{t-d}`` (``hist`` before step 0), ``[n, n]``.

    The steps that read the scan's own outputs (``t >= d``) are summed from
    the compiled forward's spike lists when it kept them
    (``spikes``, :meth:`~.events.RowEvents.weight_grad`), or from the events recorded by
    the PyTorch loop (:func:`~.events.event_weight_grad`) when they were
    recorded for all those steps and their density is at most the threshold;
    otherwise one GEMM over all those steps.  No ``[T, B, n]`` copy of the
    delayed outputs is made.
    """
    steps, batch, n = gi_all.shape
    n_pre = z_all.shape[-1]
    head = min(delay, steps)
    grad_w = gi_all[:head].reshape(-1, n).t() @ hist[:head].reshape(-1, n_pre)
    if steps > delay and spikes is not None:
        return grad_w + spikes.head((steps - delay) * batch).weight_grad(gi_all[delay:].reshape(-1, n))
    if steps > delay:
        grad_out = gi_all[delay:].reshape(-1, n)
        found = None
        if step_events is not None:
            use_events = step_events.force or step_events.density(0, steps - delay) <= step_events.threshold
            found = step_events.all_events(0, steps - delay) if use_events else None
        if found is not None:
            grad_w = grad_w + event_weight_grad(grad_out, found[0], found[1], n_pre)
        else:
            grad_w = grad_w + grad_out.t() @ z_all[:steps - delay].reshape(-1, n_pre)
    return grad_w


def _backward_detached_fused(x_all: Tensor, z_all: Tensor, grad_z: Tensor, grad_v: Optional[Tensor], a: Tensor,
                             gain: Tensor, surrogate: Any, zero_reset: bool, needs: tuple,
                             weight: Optional[Tensor] = None,
                             delay: int = 1) -> tuple[Optional[Tensor], Tensor, Optional[Tensor], Tensor]:
    """``G`` and ``dL/dI = G*(1-a)*r`` for a detached reset, fused per step (with or without a self-projection).

    Every step works on ``[B, n]`` slices that stay in cache, instead of
    ~10 whole-``[T, B, n]`` passes (surrogate, ``1 - z``, ``K``, ``gain``)::

        gz_t = dL/dz_t + (dL/dI_{t+d}) W             (the self-projection ``W``, if any)
        gv_t = dL/dv_t + a*G_{t+1};   G_t = gz_t*psi(x_t) + gv_t*(1 - z_t | 1);   dL/dI_t = G_t*(1-a)*r

    (``gv - gv*z`` is exact for ``z`` in {0, 1}.)  ``psi`` comes from the
    surrogate's :meth:`grad_input`.  Returns ``G`` (``None`` unless a neuron
    parameter needs it; then ``G_t`` lives in one ``[B, n]`` buffer), ``dL/dI``,
    ``dL/dv`` when the reset value needs a gradient, and ``G_0``.
    """
    steps, batch, n = x_all.shape
    gz_buf = torch.empty_like(x_all[0]) if weight is not None else None
    g_all = torch.empty_like(x_all) if any(needs[2:7]) else None
    g_buf = torch.empty_like(x_all[0])  # G_{t+1} is read (into carry) before G_t overwrites it
    gi_all = torch.empty_like(x_all)
    a_b = a.expand(batch, n)
    gain_b = gain.expand(batch, n)
    carry = torch.empty_like(x_all[0])
    v_from = steps - grad_v.shape[0] if grad_v is not None else steps  # grad_v covers steps v_from .. T-1
    g: Optional[Tensor] = None
    # per-step views taken once (indexing a tensor costs ~2 us a call)
    x_rows, z_rows, gz_rows, gi_rows = x_all.unbind(0), z_all.unbind(0), grad_z.unbind(0), gi_all.unbind(0)
    g_rows = g_all.unbind(0) if g_all is not None else [g_buf] * steps
    gv_rows = grad_v.unbind(0) if grad_v is not None else ()
    with step_threads(batch * n * weight.shape[1] if weight is not None else 0):
        for t in range(steps - 1, -1, -1):
            if g is not None:
                gv: Optional[Tensor] = torch.mul(g, a_b, out=carry)
                if t >= v_from:
                    gv.add_(gv_rows[t - v_from])
            else:
                gv = carry.copy_(gv_rows[t - v_from]) if t >= v_from else None
            gz = gz_rows[t]
            if weight is not None and t + delay < steps:
                gz = torch.addmm(gz, gi_rows[t + delay], weight, out=gz_buf)
            g = surrogate.grad_input(x_rows[t], gz, out=g_rows[t])
            if gv is not None:
                if zero_reset:
                    gv.addcmul_(gv, z_rows[t], value=-1.0)
                g.add_(gv)
            torch.mul(g, gain_b, out=gi_rows[t])
    gv_all = _grad_v_from(g_all, grad_v, a) if needs[6] else None
    return g_all, gi_all, gv_all, g


def _backward_detached(x_all: Tensor, z_all: Tensor, psi: Tensor, grad_z: Tensor, grad_v: Optional[Tensor],
                       a: Tensor, w_scaled: Optional[Tensor], delay: int, zero_reset: bool,
                       needs: tuple) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """``G_t = dL/dv1_t`` for a detached reset: ``G_t = E_t + K_t*G_{t+1} + gz_t*psi_t``, 1-3 ops per step.

    ``K = a*(1-z)`` (zero reset) or ``a`` (subtract), ``E = dL/dv*(1-z|1)``,
    ``gz_t = dL/dz_t + G_{t+d} W'``.  Returns ``G`` and, when the threshold or
    reset value needs a gradient, ``dL/dv_t`` and the total ``dL/dz_t``.
    """
    steps, batch, n = x_all.shape
    keep = (1.0 - z_all) if zero_reset else None
    e_all = None
    if grad_v is not None:
        e_all = grad_v * keep if zero_reset else grad_v
    k_all = keep.mul_(a) if zero_reset else a.expand(batch, n)  # keep is not read after this line
    g_all = torch.empty_like(x_all)
    recurrent = w_scaled is not None
    if not recurrent:
        # psi is not read again unless the threshold needs a gradient: then keep it, else overwrite it.
        p_all = grad_z * psi if needs[5] else psi.mul_(grad_z)
        if e_all is not None:
            p_all.add_(e_all)
        g = g_all[steps - 1]
        g.copy_(p_all[steps - 1])
        for t in range(steps - 2, -1, -1):
            k_t = k_all[t] if zero_reset else k_all
            g = torch.addcmul(p_all[t], k_t, g, out=g_all[t])
    else:
        gz_buf = torch.empty_like(x_all[0])
        g = None
        with step_threads(batch * n * w_scaled.shape[1]):
            for t in range(steps - 1, -1, -1):
                if t + delay < steps:
                    gz = torch.addmm(grad_z[t], g_all[t + delay], w_scaled, out=gz_buf)
                else:
                    gz = grad_z[t]
                out = torch.mul(gz, psi[t], out=g_all[t])
                if e_all is not None:
                    out.add_(e_all[t])
                if g is not None:
                    out.addcmul_(k_all[t] if zero_reset else k_all, g)
                g = out
    gv_all = gz_all = None
    if needs[6]:
        gv_all = _grad_v_from(g_all, grad_v, a)
    if needs[5]:
        gz_all = grad_z
        if recurrent and delay < steps:
            gz_all = grad_z.clone()
            gz_all[:steps - delay] += (g_all[delay:].reshape(-1, n) @ w_scaled).reshape(steps - delay, batch, n)
    return g_all, gv_all, gz_all


def _grad_v_from(g_all: Tensor, grad_v: Optional[Tensor], a: Tensor) -> Tensor:
    """``dL/dv_t = dL/dv_t|direct + a*G_{t+1}`` (nothing after the last step)."""
    gv = torch.zeros_like(g_all) if grad_v is None else grad_v.clone()
    gv[:-1] += a * g_all[1:]
    return gv


def _backward_general(x_all: Tensor, z_all: Tensor, psi: Tensor, grad_z: Tensor, grad_v: Optional[Tensor],
                      a: Tensor, w_scaled: Optional[Tensor], v_th: Tensor, v_reset: Tensor, delay: int,
                      zero_reset: bool, needs: tuple) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """The reset's own gradient included (``detach_reset=False``): the plain per-step chain rule of the docstring."""
    steps, batch, n = x_all.shape
    keep = (1.0 - z_all) if zero_reset else None
    dvdz = (v_reset - (x_all + v_th)) if zero_reset else (-v_th).expand_as(x_all)
    g_all = torch.empty_like(x_all)
    gv_all = torch.empty_like(x_all)
    gz_all = torch.empty_like(x_all) if needs[5] else None
    carry: Optional[Tensor] = None
    recurrent = w_scaled is not None
    with step_threads(batch * n * w_scaled.shape[1] if recurrent else 0):
        for t in range(steps - 1, -1, -1):
            gv = grad_v[t] if grad_v is not None else None
            if carry is not None:
                gv = carry if gv is None else gv + carry
            if gv is None:
                gv = torch.zeros_like(x_all[0])
            gv_all[t] = gv
            gz = grad_z[t]
            if recurrent and t + delay < steps:
                gz = torch.addmm(gz, g_all[t + delay], w_scaled)
            gz = gz + gv * dvdz[t]
            if gz_all is not None:
                gz_all[t] = gz
            g = torch.mul(gz, psi[t], out=g_all[t])
            g.add_(gv * keep[t] if zero_reset else gv)
            carry = a * g
    return g_all, gv_all, gz_all


def lif_scan(drive: Tensor, v0: Tensor, a: Tensor, v_leak: Tensor, r: Tensor, v_th: Tensor, v_reset: Tensor, *,
             zero_reset: bool, detach: bool, surrogate: Any, hist: Optional[Tensor] = None,
             weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, delay: int = 1,
             keep_v: bool = True, overwrite_drive: bool = False,
             events: Optional[tuple[str, float]] = None) -> tuple[Tensor, Tensor]:
    """Run :class:`LIFScan`: spikes and post-reset membranes ``[T, B, n]``.

    ``drive`` ``[T, B, n]`` is the current from outside the population;
    ``weight`` ``[n, n]`` / ``bias`` ``[n]`` the population's dense self-projection of ``delay`` steps (``hist``
    ``[delay, B, n]``: its outputs of steps ``-delay .. -1``, oldest first).  Without autograd (no tensor needing
    a gradient, or under ``torch.no_grad``) :func:`_lif_forward_nograd` runs the same steps with no saved state.
    ``keep_v=False`` (no membrane probe) returns only the last membrane, ``[1, B, n]`` (under autograd too,
    unless the backward needs all of ``v``: learnable neuron parameters or a non-detached reset), and
    ``overwrite_drive=True`` (``drive`` is the caller's temporary) lets it reuse ``drive``'s memory.
    ``events``: ``(mode, density threshold)`` of the self-projection (``"auto"``, ``"event"`` or ``"dense"``;
    see :class:`~.events.StepEvents`): the recurrent product and its weight gradient from the spikes' events.
    """
    args = (drive, v0, a, v_leak, r, v_th, v_reset, hist, weight, bias, delay, zero_reset, detach, surrogate)
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in args):
        return LIFScan.apply(*args, keep_v, events)
    return _lif_forward_nograd(drive, v0, a, v_leak, r, v_th, v_reset, hist, weight, bias, delay, zero_reset, keep_v,
                               overwrite_drive, events)


def _lif_forward_nograd(drive: Tensor, v0: Tensor, a: Tensor, v_leak: Tensor, r: Tensor, v_th: Tensor,
                        v_reset: Tensor, hist: Optional[Tensor], weight: Optional[Tensor], bias: Optional[Tensor],
                        delay: int, zero_reset: bool, keep_v: bool, overwrite_drive: bool = False,
                        events: Optional[tuple[str, float]] = None) -> tuple[Tensor, Tensor]:
    """:meth:`LIFScan.forward` for inference: the same recurrence, less memory.

    The input term ``C`` is computed for all steps in one pass (``LIFScan.forward``
    computes ``C_t`` per step, into ``x``, to save a ``[T, B, n]`` buffer under
    autograd); the per-step operations are those of ``LIFScan.forward`` in the
    same order, so values agree to the last bit or within rounding of ``C``.

    Nothing is kept for a backward pass and the pre-reset membrane ``x`` is
    not stored: the reset is applied in place to the step's buffer.  With
    ``keep_v=False`` the membrane lives in one (two, with a self-projection,
    whose matmul must not overwrite the previous step's membrane) ``[B, n]``
    buffer(s) and the returned ``v`` is ``[1, B, n]``, the last step only.
    With ``overwrite_drive`` the input term is computed in ``drive``'s memory
    (the caller's temporary; its values are lost).  Spikes stay float, written
    by ``gt(out=)``, and the reset stays ``lerp``: measured here on
    ``[64, 128]``, ``gt`` into a bool buffer plus a masked fill or ``where``
    took 2-3x as long per step.
    """
    steps, batch, n = drive.shape
    recurrent = weight is not None
    gain = (1.0 - a) * r
    inp = drive if bias is None else drive + bias
    const = (1.0 - a) * (v_leak - v_th)
    compiled = _lif_kernel_forward(inp, v0, a, gain, const, v_th, v_reset, zero_reset, hist, weight, delay, False,
                                   keep_v)
    if compiled is not None:  # the whole loop in one compiled call
        return compiled[1], compiled[2]
    w_scaled_t = (gain.unsqueeze(-1) * weight).t() if recurrent else None
    # C for all steps at once (one vectorised pass; LIFScan.forward computes C_t per step into x to save a
    # [T, B, n] buffer), into the memory of a temporary of ours (or one given away by the caller) if there is one
    c_all = torch.addcmul(const, inp, gain, out=None if inp is drive and not overwrite_drive else inp)
    z_all = torch.empty_like(drive)
    s_all = torch.empty_like(drive) if keep_v else None
    shape = (batch, n)
    a_b = a.expand(shape)
    reset_to = (v_reset - v_th).expand(shape) if zero_reset else None
    neg_th = (-v_th).expand(shape)
    s = v0 - v_th
    bufs = [] if keep_v else [torch.empty(shape, dtype=drive.dtype, device=drive.device)
                              for _ in range(2 if recurrent else 1)]
    w_scaled_t = (gain.unsqueeze(-1) * weight).t() if recurrent else None
    macs = batch * weight.shape[0] * weight.shape[1] if recurrent else 0
    step_events, table = _step_events(events, drive, weight, steps, batch, delay, w_scaled_t)
    z_rows, c_rows = z_all.unbind(0), c_all.unbind(0)
    x_rows = s_all.unbind(0) if keep_v else [bufs[t % len(bufs)] for t in range(steps)]
    zero = _scalar(0.0, drive)
    with step_threads(macs):
        for t in range(steps):
            x = x_rows[t]
            if recurrent:
                _add_recurrent_input(t, delay, hist, z_rows, w_scaled_t, step_events, table, x, base=c_rows[t])
                x.addcmul_(a_b, s)
            else:
                torch.addcmul(c_rows[t], a_b, s, out=x)
            z = torch.gt(x, zero, out=z_rows[t])
            if step_events is not None and t + delay < steps:
                step_events.record(t, z)
            if zero_reset:
                s = torch.lerp(x, reset_to, z, out=x)
            else:
                s = x.addcmul_(z, neg_th)
    v_all = s_all.add_(v_th) if keep_v else (s + v_th).unsqueeze(0)
    return z_all, v_all


class LinearScan(torch.autograd.Function):
    """``y_t = k*y_{t-1} + u_t`` for all ``t``: ``(u [T,B,n], y0 [B,n], k) -> y [T,B,n]``.

    The leaky integrators (LI readouts, CubaLIF's synaptic current) are this
    recurrence with ``u`` computed for all steps at once outside (under
    autograd).  The backward loop is ``g_t = dL/dy_t + k*g_{t+1}``; then
    ``dL/du = g``, ``dL/dy0 = k*g_0`` and ``dL/dk = sum_t g_t*y_{t-1}``.
    """

    @staticmethod
    def forward(ctx: Any, u: Tensor, y0: Tensor, k: Tensor) -> Tensor:
        if _linear_kernel_applies(u, y0, k):
            y_all = kernels.linear_forward(u, y0, k)
        else:
            y_all = torch.empty_like(u)
            y = y0
            k_b = k.expand_as(u[0]) if u.shape[0] else k
            for u_t, y_t in zip(u.unbind(0), y_all.unbind(0)):
                y = torch.addcmul(u_t, k_b, y, out=y_t)  # one op per step: u_t + k*y_{t-1}
        if ctx is not None:
            need_k = ctx.needs_input_grad[2]
            ctx.save_for_backward(y0 if need_k else None, y_all if need_k else None, k)
        return y_all

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor):  # type: ignore[override]
        y0, y_all, k = ctx.saved_tensors
        if not torch.is_grad_enabled() and _linear_kernel_applies(grad_y, None, k):
            g_all = kernels.linear_backward(grad_y, k)
            g = g_all[0]
        else:
            g_all = torch.empty_like(grad_y)
            g = None
            k_b = k.expand_as(grad_y[0]) if grad_y.shape[0] else k
            gy_rows, g_rows = grad_y.unbind(0), g_all.unbind(0)
            for t in range(grad_y.shape[0] - 1, -1, -1):
                g = gy_rows[t] if g is None else torch.addcmul(gy_rows[t], k_b, g, out=g_rows[t])
                if t == grad_y.shape[0] - 1:
                    g_rows[t].copy_(g)
        grad_y0 = k * g if ctx.needs_input_grad[1] else None
        grad_k = None
        if ctx.needs_input_grad[2]:
            y_prev = torch.cat([y0.unsqueeze(0), y_all[:-1]])
            grad_k = _reduce_to(g_all * y_prev, k)
        return g_all, grad_y0, grad_k


def _linear_kernel_applies(u: Tensor, y0: Optional[Tensor], k: Tensor) -> bool:
    """Whether :class:`LinearScan` can run on :mod:`.kernels`: a ``[T, B, n]`` input with ``T > 0``, ``y0`` and
    ``k`` broadcastable to ``[B, n]``, CPU tensors of one float dtype, kernels enabled."""
    if u.ndim != 3 or u.shape[0] == 0 or not kernels.pays(u.shape[1], u.shape[2], False) or \
            not kernels.usable(u, y0, k):
        return False
    shape = tuple(u.shape[1:])
    for t in (y0, k):
        if t is None:
            continue
        try:
            if torch.broadcast_shapes(t.shape, shape) != shape:
                return False
        except RuntimeError:
            return False
    return True


def linear_scan(u: Tensor, y0: Tensor, k: Tensor) -> Tensor:
    """Run :class:`LinearScan` (no saved state without autograd)."""
    if torch.is_grad_enabled() and (u.requires_grad or y0.requires_grad or k.requires_grad):
        return LinearScan.apply(u, y0, k)
    return LinearScan.forward(None, u, y0, k)


class ALIFScan(torch.autograd.Function):
    """The ALIF population over all steps (no learnable neuron parameters): ``-> (z, v, adapt)``, each ``[T,B,n]``.

    Forward, as :meth:`ALIFDynamics.step` (``A`` = the adaptation ``a``)::

        I_t = D_t + W z_{t-d} + b;   v1_t = a*v_{t-1} + (1-a)*(v_leak + r*I_t);   th_t = v_th + beta*A_{t-1}
        x_t = v1_t - th_t;   z_t = H(x_t);   v_t = reset(v1_t, z_t, th_t);   A_t = rho*A_{t-1} + z_t

    Backward, in reverse time, with ``h_t = dL/dA_t`` (total) and ``q_t = dL/dth_t``::

        gv_t = dL/dv_t + a*G_{t+1};   h_t = dL/dA_t|direct + rho*h_{t+1} + beta*q_{t+1}
        gz_t = dL/dz_t + (dL/dI_{t+d}) W + h_t (+ gv_t * dv_t/dz_t without ``detach``)
        G_t  = gv_t*(1 - z_t | 1) + gz_t*psi(x_t);   q_t = -gz_t*psi(x_t) (- gv_t*z_t: subtract reset, no ``detach``)
    """

    @staticmethod
    def forward(ctx: Any, drive: Tensor, v0: Tensor, adapt0: Tensor, a: Tensor, rho: Tensor, beta: Tensor,
                v_th: Tensor, v_leak: Tensor, v_reset: Tensor, r: Tensor, hist: Optional[Tensor],
                weight: Optional[Tensor], bias: Optional[Tensor], delay: int, zero_reset: bool, detach: bool,
                surrogate: Any, events: Optional[tuple[str, float]] = None) -> tuple[Tensor, Tensor, Tensor]:
        steps, batch, n = drive.shape
        recurrent = weight is not None
        vectors = _kernel_vectors(batch, n, recurrent, drive, v0, adapt0, hist, weight, bias, a=a,
                                  one_minus_a=1.0 - a, rho=rho, beta=beta, v_th=v_th, v_leak=v_leak,
                                  v_reset=v_reset, r=r)
        if vectors is not None:  # the whole loop in one compiled call
            x_all, z_all, v_all, ad_all, (ptr, cols) = kernels.alif_forward(drive, v0, adapt0, vectors, zero_reset,
                                                                            hist, weight, bias, delay)
            spikes = RowEvents(ptr, cols, None, n)
            attach_events(z_all, spikes)  # for the projections that read these spikes (no extraction pass)
            step_events = None
        else:
            x_all, z_all, v_all, ad_all, step_events = ALIFScan._forward_loop(
                drive, v0, adapt0, a, rho, beta, v_th, v_leak, v_reset, r, hist, weight, bias, delay, zero_reset,
                events)
            spikes = None
        if ctx is not None:
            ctx.set_materialize_grads(False)
            ctx.zero_reset, ctx.detach, ctx.surrogate, ctx.delay = zero_reset, detach, surrogate, delay
            ctx.step_events = step_events
            ctx.spikes = spikes if recurrent and ctx.needs_input_grad[11] else None
            ctx.save_for_backward(x_all, z_all, ad_all, adapt0, hist, weight, a, rho, beta, v_th, v_reset, r)
        return z_all, v_all, ad_all

    @staticmethod
    def _forward_loop(drive: Tensor, v0: Tensor, adapt0: Tensor, a: Tensor, rho: Tensor, beta: Tensor,
                      v_th: Tensor, v_leak: Tensor, v_reset: Tensor, r: Tensor, hist: Optional[Tensor],
                      weight: Optional[Tensor], bias: Optional[Tensor], delay: int, zero_reset: bool,
                      events: Optional[tuple[str, float]]) -> tuple[Tensor, Tensor, Tensor, Tensor,
                                                                    Optional[StepEvents]]:
        """The forward's per-step PyTorch loop (where :func:`.kernels.alif_forward` is not used):
        ``(x, z, v, A, the event recorder or None)``."""
        steps, batch, n = drive.shape
        recurrent = weight is not None
        x_all, z_all, v_all, ad_all = (torch.empty_like(drive) for _ in range(4))
        v, adapt = v0, adapt0
        step_events, table = _step_events(events, drive, weight, steps, batch, delay,
                                          weight.t() if recurrent else None)
        with step_threads(batch * n * n if recurrent else 0):
            for t in range(steps):
                current = drive[t]
                if recurrent:
                    y = step_events.product(t - delay, table) if step_events is not None and t >= delay else None
                    if y is None:
                        y = F.linear(z_all[t - delay] if t >= delay else hist[t], weight)
                    current = current + (y if bias is None else y + bias)
                v1 = a * v + (1.0 - a) * (v_leak + r * current)
                threshold = v_th + beta * adapt
                x = torch.sub(v1, threshold, out=x_all[t])
                z = torch.gt(x, 0, out=z_all[t])
                if zero_reset:
                    v = torch.lerp(v1, v_reset.expand_as(v1), z, out=v_all[t])
                else:
                    v = torch.lerp(v1, x, z, out=v_all[t])  # v1 - z*threshold
                adapt = torch.add(rho * adapt, z, out=ad_all[t])
                if step_events is not None and t + delay < steps:
                    step_events.record(t, z)
        return x_all, z_all, v_all, ad_all, step_events

    @staticmethod
    def backward(ctx: Any, grad_z: Optional[Tensor], grad_v: Optional[Tensor],  # type: ignore[override]
                 grad_ad: Optional[Tensor]):
        x_all, z_all, ad_all, adapt0, hist, weight, a, rho, beta, v_th, v_reset, r = ctx.saved_tensors
        zero_reset, detach, delay = ctx.zero_reset, ctx.detach, ctx.delay
        needs = ctx.needs_input_grad
        steps, batch, n = x_all.shape
        recurrent = weight is not None
        gain = (1.0 - a) * r
        code = kernels.surrogate_code(ctx.surrogate)
        vectors = None
        if detach and code is not None and not torch.is_grad_enabled():
            vectors = _kernel_vectors(batch, n, recurrent, x_all, grad_z, grad_v, grad_ad, weight, a=a, rho=rho,
                                      beta=beta, gain=gain)
        if vectors is not None:  # each step's elementwise work in one compiled call
            gi_all, g_next, h_next, q_next = kernels.alif_backward_detached(x_all, grad_z, grad_v, grad_ad, vectors,
                                                                            code, zero_reset, weight, delay)
        else:
            gi_all, g_next, h_next, q_next = ALIFScan._backward_loop(ctx, x_all, z_all, ad_all, adapt0, weight, a,
                                                                     rho, beta, v_th, v_reset, gain, grad_z,
                                                                     grad_v, grad_ad)
        grad_drive = gi_all if needs[0] else None
        grad_v0 = a * g_next if needs[1] else None
        grad_adapt0 = rho * h_next + beta * q_next if needs[2] else None
        grad_hist = grad_w = grad_b = None
        if recurrent:
            grad_hist, grad_w = self_projection_grads(gi_all, z_all, hist, weight, delay, needs[10], needs[11],
                                                      ctx.step_events, ctx.spikes)
            if needs[12]:
                grad_b = gi_all.reshape(-1, n).sum(0)
        return (grad_drive, grad_v0, grad_adapt0, None, None, None, None, None, None, None, grad_hist, grad_w,
                grad_b, None, None, None, None, None)

    @staticmethod
    def _backward_loop(ctx: Any, x_all: Tensor, z_all: Tensor, ad_all: Tensor, adapt0: Tensor,
                       weight: Optional[Tensor], a: Tensor, rho: Tensor, beta: Tensor, v_th: Tensor,
                       v_reset: Tensor, gain: Tensor, grad_z: Optional[Tensor], grad_v: Optional[Tensor],
                       grad_ad: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The backward's per-step PyTorch loop: ``(dL/dI, G_0, h_0, q_0)`` (see the class docstring)."""
        zero_reset, detach, delay = ctx.zero_reset, ctx.detach, ctx.delay
        steps, batch, n = x_all.shape
        recurrent = weight is not None
        psi = ctx.surrogate.derivative(x_all)
        thr_all = v_th + beta * torch.cat([adapt0.unsqueeze(0), ad_all[:-1]])
        dvdz = None
        if not detach:
            dvdz = (v_reset - (x_all + thr_all)) if zero_reset else -thr_all
        zeros = torch.zeros_like(x_all[0])
        gi_all = torch.empty_like(x_all)
        g_next = h_next = q_next = None
        with step_threads(batch * n * n if recurrent else 0):
            for t in range(steps - 1, -1, -1):
                gv = grad_v[t] if grad_v is not None else zeros
                h = grad_ad[t] if grad_ad is not None else zeros
                if g_next is not None:
                    gv = gv + a * g_next
                    h = h + rho * h_next + beta * q_next
                gz = (grad_z[t] if grad_z is not None else zeros) + h
                if recurrent and t + delay < steps:
                    gz = torch.addmm(gz, gi_all[t + delay], weight)
                if dvdz is not None:
                    gz = gz + gv * dvdz[t]
                gzp = gz * psi[t]
                g = (gv * (1.0 - z_all[t]) if zero_reset else gv) + gzp
                q = -gzp
                if not zero_reset and not detach:
                    q = q - gv * z_all[t]
                torch.mul(g, gain, out=gi_all[t])
                g_next, h_next, q_next = g, h, q
        return gi_all, g_next, h_next, q_next


def alif_scan(drive: Tensor, v0: Tensor, adapt0: Tensor, c: Any, *, zero_reset: bool, detach: bool, surrogate: Any,
              hist: Optional[Tensor] = None, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
              delay: int = 1, events: Optional[tuple[str, float]] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Run :class:`ALIFScan` with the coefficients ``c`` (:class:`ALIFCoeffs`; none of them may need a gradient).

    ``events``: as for :func:`lif_scan` (the recurrent product and its weight gradient from the spikes' events).
    """
    args = (drive, v0, adapt0, c.a, c.rho, c.beta, c.v_th, c.v_leak, c.v_reset, c.r, hist, weight, bias, delay,
            zero_reset, detach, surrogate, events)
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in args):
        return ALIFScan.apply(*args)
    return ALIFScan.forward(None, *args)
